#!/usr/bin/env bash
# Docker smoke test: builds the image and proves, against real containers,
# what a user's first `docker run` relies on:
#   - /health answers, the page / is served, a WebSocket join/chat/echo works;
#   - the server runs as PID 1 under a non-root user that owns /data;
#   - `docker stop` is a graceful shutdown: open sockets get 1001, the
#     messages are stored, exit code 0, well inside the 10 s grace period;
#   - a new container on the same named volume still has the history;
#   - configuration passes through `-e` (PORT, and a bad value is refused).
# It removes the containers and the volume it made, keeps the image (its
# layers are the build cache; SMOKE_KEEP_IMAGE=0 removes it too) and stops
# the Docker engine only if it started it.
#
# Without a Docker engine: under CI (CI set) that is a failure; elsewhere it
# says so and exits 0. On machines without registry access it gets an engine
# and the base images from ../shared/docker/prepare.sh (or DOCKER_PREPARE).
#
# usage: scripts/docker-smoke.sh        (from anywhere; run by .ci/run)
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"

IMAGE=${SMOKE_IMAGE:-chatterbox:smoke}
RUN_ID="smoke-$$"
VOLUME="chatterbox-$RUN_ID"
FIRST="chatterbox-$RUN_ID-1"
SECOND="chatterbox-$RUN_ID-2"
BAD="chatterbox-$RUN_ID-bad"
ROOM="smoke-$$"
TEXT="docker smoke $(date -u +%Y-%m-%dT%H:%M:%SZ) pid $$"
STOP_GRACE=10
WORK=$(mktemp -d /tmp/chatterbox-smoke.XXXXXX)
STARTED_ENGINE=0
STOP_SCRIPT=""
HOLDER_PID=""
CHECKS=0
T0=$(date +%s)

ok() { CHECKS=$((CHECKS + 1)); printf 'ok   %s\n' "$*"; }
note() { printf '...  %s\n' "$*"; }
fail() { printf 'FAIL %s\n' "$*" >&2; exit 1; }
# Seconds since $1 (a `date +%s.%N` value), to one decimal.
since() { awk -v a="$1" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }'; }

cleanup() {
  local rc=$?
  set +e
  [ -n "$HOLDER_PID" ] && kill "$HOLDER_PID" 2>/dev/null
  if [ "$rc" -ne 0 ]; then
    for c in "$FIRST" "$SECOND"; do
      if docker container inspect "$c" >/dev/null 2>&1; then
        echo "--- last log lines of $c" >&2
        docker logs --tail 40 "$c" >&2 2>&1
      fi
    done
  fi
  if command -v docker >/dev/null && docker info >/dev/null 2>&1; then
    docker rm -f "$FIRST" "$SECOND" "$BAD" >/dev/null 2>&1
    docker volume rm -f "$VOLUME" >/dev/null 2>&1
    [ "${SMOKE_KEEP_IMAGE:-1}" = 0 ] && docker rmi "$IMAGE" "$IMAGE-builder" >/dev/null 2>&1
  fi
  if [ "$STARTED_ENGINE" = 1 ] && [ -n "$STOP_SCRIPT" ]; then
    "$STOP_SCRIPT" && note "stopped the Docker engine this script started"
  fi
  rm -rf "$WORK"
  if [ "$rc" -eq 0 ]; then
    echo "docker smoke: $CHECKS checks passed in $(( $(date +%s) - T0 )) s"
  else
    echo "docker smoke: FAILED after $CHECKS checks" >&2
  fi
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# Where no engine can be had: a failure under CI, a note elsewhere.
no_engine() {
  if [ -n "${CI:-}" ]; then
    fail "no Docker engine: $*"
  fi
  echo "docker smoke: skipped, no Docker engine ($*)"
  trap - EXIT
  rm -rf "$WORK"
  exit 0
}

# --- a Docker engine and the base images --------------------------------------
# shellcheck source=scripts/docker-engine.sh
. "$ROOT/scripts/docker-engine.sh"
docker_engine rust:1-bookworm debian:bookworm-slim

command -v curl >/dev/null || fail "curl is needed on the host"

# --- the WebSocket client (examples/ws_roundtrip.rs), built on the host -------
cargo build --quiet --example ws_roundtrip
TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}
case "$TARGET_DIR" in /*) ;; *) TARGET_DIR="$ROOT/$TARGET_DIR" ;; esac
CLIENT="$TARGET_DIR/debug/examples/ws_roundtrip"
[ -x "$CLIENT" ] || fail "no client binary at $CLIENT"
ok "WebSocket client built ($CLIENT)"

# --- the image ----------------------------------------------------------------
t=$(date +%s.%N)
note "docker build -t $IMAGE . (the first build compiles every dependency: minutes; later ones reuse them)"
# The builder stage gets a tag of its own: it holds the compiled
# dependencies, the cache of the next build, which the pruning below (of the
# stale stages earlier runs left untagged) must keep.
if ! docker build --target builder -t "$IMAGE-builder" . >"$WORK/build.log" 2>&1 ||
  ! docker build --build-arg "REVISION=$(git rev-parse HEAD 2>/dev/null || echo unknown)" \
    -t "$IMAGE" . >>"$WORK/build.log" 2>&1; then
  tail -60 "$WORK/build.log" >&2
  fail "docker build"
fi
for label in chatterbox.build-stage=planner chatterbox.build-stage=builder \
  org.opencontainers.image.title=chatterbox; do
  docker image prune -f --filter "label=$label" >/dev/null # untagged ones only
done
ok "image $IMAGE built in $(since "$t") s, $(docker image inspect -f '{{.Size}}' "$IMAGE" | awk '{ printf "%.1f MB", $1 / 1e6 }')"

user=$(docker image inspect -f '{{.Config.User}}' "$IMAGE")
case "${user%%:*}" in "" | 0 | root) fail "image user is '$user' (root)" ;; esac
[ "$(docker image inspect -f '{{json .Config.ExposedPorts}}' "$IMAGE")" = '{"8080/tcp":{}}' ] ||
  fail "image does not expose exactly 8080/tcp"
# (Outputs are captured before grep -q: under pipefail, grep quitting early
# would fail the pipeline with SIGPIPE.)
volumes=$(docker image inspect -f '{{json .Config.Volumes}}' "$IMAGE")
grep -q '"/data"' <<<"$volumes" || fail "/data is not a declared volume"
healthcheck=$(docker image inspect -f '{{json .Config.Healthcheck.Test}}' "$IMAGE")
grep -q healthcheck <<<"$healthcheck" ||
  fail "image has no HEALTHCHECK using the binary"
for label in title description source licenses; do
  [ -n "$(docker image inspect -f "{{index .Config.Labels \"org.opencontainers.image.$label\"}}" "$IMAGE")" ] ||
    fail "label org.opencontainers.image.$label missing"
done
ok "image metadata: user $user, EXPOSE 8080, VOLUME /data, HEALTHCHECK, OCI labels"

# --- helpers for a running container ------------------------------------------
# Published host port of container $1's port $2 (docker picks a free one).
host_port() { docker port "$1" "$2/tcp" | sed -n '1s/.*://p'; }

# Waits until container $1 answers /health on host port $2.
wait_ready() {
  local c=$1 port=$2 t
  t=$(date +%s.%N)
  for _ in $(seq 150); do
    curl -fsS -o /dev/null "http://127.0.0.1:$port/health" 2>/dev/null && {
      note "$c ready after $(since "$t") s"
      return 0
    }
    [ "$(docker inspect -f '{{.State.Running}}' "$c")" = true ] || fail "$c exited during start"
    sleep 0.2
  done
  fail "$c did not answer /health within 30 s"
}

# Stops container $1 like `docker stop` does and checks the exit was clean.
graceful_stop() {
  local c=$1 t elapsed code logs
  t=$(date +%s.%N)
  docker stop -t "$STOP_GRACE" "$c" >/dev/null
  elapsed=$(since "$t")
  code=$(docker inspect -f '{{.State.ExitCode}}' "$c")
  [ "$code" = 0 ] || fail "$c exited with $code after docker stop (${elapsed} s)"
  # Docker kills at the grace period; the server's own drain takes ~1 s.
  awk -v e="$elapsed" -v g="$STOP_GRACE" 'BEGIN { exit !(e < g - 2) }' ||
    fail "docker stop of $c took ${elapsed} s (grace period ${STOP_GRACE} s)"
  logs=$(docker logs "$c" 2>&1)
  for line in "SIGTERM received" "shutting down: closing" "all accepted messages are stored"; do
    grep -qF "$line" <<<"$logs" || fail "$c log lacks '$line'"
  done
  ok "docker stop $c: exit code 0 in ${elapsed} s; log: SIGTERM received, shutting down, all accepted messages are stored"
}

# --- first container: a fresh named volume ------------------------------------
docker volume create "$VOLUME" >/dev/null
docker run -d --name "$FIRST" -p 127.0.0.1::8080 -v "$VOLUME:/data" "$IMAGE" >/dev/null
PORT1=$(host_port "$FIRST" 8080)
wait_ready "$FIRST" "$PORT1"
logs=$(docker logs "$FIRST" 2>&1)
grep -qF "listening on http://0.0.0.0:8080" <<<"$logs" ||
  fail "$FIRST did not log 'listening on http://0.0.0.0:8080'"
ok "container $FIRST on volume $VOLUME listens on 0.0.0.0:8080, published at 127.0.0.1:$PORT1"

body=$(curl -fsS "http://127.0.0.1:$PORT1/health")
grep -q '"status" *: *"ok"' <<<"$body" || fail "/health answered $body"
ok "GET /health: 200 $body"

curl -fsS -D "$WORK/page.headers" -o "$WORK/page.html" "http://127.0.0.1:$PORT1/"
grep -qi '^content-type: *text/html' "$WORK/page.headers" || fail "GET / is not text/html"
cmp -s "$WORK/page.html" static/index.html || fail "GET / is not static/index.html"
ok "GET /: 200 text/html, the page in static/index.html ($(wc -c <"$WORK/page.html") bytes)"

assets=0
while IFS= read -r file; do
  curl -fsS -o "$WORK/asset" "http://127.0.0.1:$PORT1/${file#static/}" || fail "GET /${file#static/}"
  cmp -s "$WORK/asset" "$file" || fail "GET /${file#static/} is not $file"
  assets=$((assets + 1))
done < <(find static -type f | sort)
ok "every file of static/ is served as it is ($assets files: the page's scripts and styles are in the image)"

status=$(docker exec "$FIRST" cat /proc/1/status)
pid1=$(awk '/^Name:/ { print $2 }' <<<"$status")
uid1=$(awk '/^Uid:/ { print $2 }' <<<"$status")
[ "$pid1" = chatterbox ] || fail "PID 1 in the container is '$pid1', not chatterbox"
case "$uid1" in "" | 0) fail "PID 1 runs as uid '$uid1'" ;; esac
exec_uid=$(docker exec "$FIRST" id -u)
[ "$exec_uid" != 0 ] || fail "docker exec runs as root"
data_owner=$(docker exec "$FIRST" stat -c %u /data/chatterbox.db)
[ "$data_owner" = "$uid1" ] || fail "/data/chatterbox.db is owned by $data_owner, the server runs as $uid1"
ok "PID 1 is chatterbox running as uid $uid1 (non-root), owner of /data/chatterbox.db"

docker exec "$FIRST" chatterbox healthcheck || fail "chatterbox healthcheck failed inside $FIRST"
ok "chatterbox healthcheck (the HEALTHCHECK command) exits 0 inside the container"

"$CLIENT" --url "ws://127.0.0.1:$PORT1/ws" --user alice --room "$ROOM" --say "$TEXT" >"$WORK/alice.out" 2>&1 ||
  { cat "$WORK/alice.out" >&2; fail "WebSocket round trip"; }
sed 's/^/     /' "$WORK/alice.out"
ok "WebSocket round trip: join $ROOM (history, presence), chat, echo with its ref"

# A client that stays connected through the shutdown: it must get 1001.
"$CLIENT" --url "ws://127.0.0.1:$PORT1/ws" --user bob --room "$ROOM" --expect-close 1001 \
  --close-timeout 30 >"$WORK/bob.out" 2>&1 &
HOLDER_PID=$!
for _ in $(seq 50); do grep -q '^ready$' "$WORK/bob.out" && break; sleep 0.2; done
grep -q '^ready$' "$WORK/bob.out" || { cat "$WORK/bob.out" >&2; fail "second client did not connect"; }
ok "a second client (bob) is connected to $ROOM for the shutdown"

t=$(date +%s.%N)
for _ in $(seq 150); do
  health=$(docker inspect -f '{{.State.Health.Status}}' "$FIRST")
  [ "$health" = healthy ] && break
  [ "$health" = unhealthy ] && fail "docker reports $FIRST unhealthy"
  sleep 0.2
done
[ "$health" = healthy ] || fail "$FIRST not healthy within 30 s (status $health)"
ok "docker reports $FIRST healthy (waited $(since "$t") s for the first HEALTHCHECK)"

graceful_stop "$FIRST"
wait "$HOLDER_PID" || { cat "$WORK/bob.out" >&2; fail "bob's connection did not close with 1001"; }
HOLDER_PID=""
ok "the connected client got close code 1001 ($(tail -1 "$WORK/bob.out"))"

# --- second container: same volume, configuration through -e ------------------
docker run -d --name "$SECOND" -e PORT=9000 -p 127.0.0.1::9000 \
  -v "$VOLUME:/data" "$IMAGE" >/dev/null
PORT2=$(host_port "$SECOND" 9000)
wait_ready "$SECOND" "$PORT2"
logs=$(docker logs "$SECOND" 2>&1)
grep -qF "listening on http://0.0.0.0:9000" <<<"$logs" ||
  fail "$SECOND did not take PORT=9000 from -e"
docker exec "$SECOND" chatterbox healthcheck || fail "healthcheck does not follow PORT=9000"
ok "new container $SECOND on the same volume: -e PORT=9000 moves the server and its healthcheck"

curl -fsS "http://127.0.0.1:$PORT2/api/rooms/$ROOM/messages" >"$WORK/messages.json"
grep -qF "\"text\":\"$TEXT\"" "$WORK/messages.json" ||
  { cat "$WORK/messages.json" >&2; fail "the message is not in GET /api/rooms/$ROOM/messages"; }
ok "history survived the restart: GET /api/rooms/$ROOM/messages has \"$TEXT\""

"$CLIENT" --url "ws://127.0.0.1:$PORT2/ws" --user carol --room "$ROOM" --expect-history "$TEXT" \
  >"$WORK/carol.out" 2>&1 || { cat "$WORK/carol.out" >&2; fail "history on join after restart"; }
sed 's/^/     /' "$WORK/carol.out"
ok "a join on the new container gets the message in its history"

graceful_stop "$SECOND"

# A bad value stops start-up with a message naming the variable.
# Bounded and named: if a regression let the server start, the run must not
# hang, and cleanup must find the container.
if timeout 30 docker run --rm --name "$BAD" -e PORT=eighty "$IMAGE" >"$WORK/bad.out" 2>&1; then
  fail "the server started with PORT=eighty"
fi
grep -qF PORT "$WORK/bad.out" || { cat "$WORK/bad.out" >&2; fail "the error does not name PORT"; }
ok "-e PORT=eighty is refused at start: $(tail -1 "$WORK/bad.out" | sed 's/^\[[^]]*\] *//')"

#!/usr/bin/env bash
# Cluster smoke test: runs docker-compose.yml (PostgreSQL, three nodes,
# nginx in front) and proves, through the proxy, what a user of
# `docker compose up` relies on:
#   - the proxy serves the page and spreads requests over the three nodes;
#   - WebSocket clients that came through the proxy to different nodes see
#     each other in the room and chat (each sees the other's message with
#     the same id);
#   - `docker-compose stop` of one node: its client gets 1001, the others see
#     its user leave within NODE_TIMEOUT + 5 s, the proxy goes on serving
#     (new connections included) and the clients on the other nodes go on
#     chatting; started again, the node is back behind the proxy;
#   - `docker-compose kill` of that node (SIGKILL: no goodbye): the others
#     see its user leave within NODE_TIMEOUT + 5 s and go on chatting;
#   - after `down` (the volume kept) and `up`, the history is intact.
# It removes the containers, network and volumes it made (also on failure),
# keeps the image (its layers are the build cache; CLUSTER_SMOKE_KEEP_IMAGE=0
# removes it) and stops the Docker engine only if it started it.
#
# Which node a client is on: the smoke adds scripts/cluster-smoke.yml, which
# publishes each node on a free port of 127.0.0.1 (never on other
# addresses), and reads each node's own /health (`node`, `connections`).
# The image has no HTTP client, so `docker exec` could not ask.
#
# Without a Docker engine or a compose command: under CI (CI set) that is a
# failure; elsewhere it says so and exits 0. On machines without registry
# access it gets an engine and the base images from
# ../shared/docker/prepare.sh (or DOCKER_PREPARE).
#
# usage: scripts/cluster-smoke.sh        (from anywhere; run by .ci/run)
set -euo pipefail
# A failure inside $(...) fails the substitution too.
shopt -s inherit_errexit

ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"

IMAGE=${CLUSTER_SMOKE_IMAGE:-chatterbox:cluster-smoke}
PROJECT="chatterbox-cluster-smoke-$$"
ROOM="cluster-$$"
STAMP="$(date -u +%H%M%S)-$$"
NODE_TIMEOUT_SECS=10
NODES=(node1 node2 node3)
WORK=$(mktemp -d /tmp/chatterbox-cluster-smoke.XXXXXX)
STARTED_ENGINE=0
STOP_SCRIPT=""
COMPOSE=()
UP=0
CHECKS=0
T0=$(date +%s)
declare -A CLIENT_PID=() CLIENT_FD=() NODE_PORT=()

# What docker-compose.yml reads from the environment: the smoke's own image
# tag, the proxy on a free port of 127.0.0.1 ("127.0.0.1:" + ":80" is
# "127.0.0.1::80"), and a known NODE_TIMEOUT (not one from an .env file).
export CHATTERBOX_IMAGE="$IMAGE"
export CHATTERBOX_LISTEN="127.0.0.1:"
export NODE_TIMEOUT="${NODE_TIMEOUT_SECS}s"
export RUST_LOG=info

ok() { CHECKS=$((CHECKS + 1)); printf 'ok   %s\n' "$*"; }
note() { printf '...  %s\n' "$*"; }
fail() { printf 'FAIL %s\n' "$*" >&2; exit 1; }
# Seconds since $1 (a `date +%s.%N` value), to one decimal.
since() { awk -v a="$1" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }'; }
# Bounded compose command: $1 seconds, then the compose arguments.
compose() {
  local limit=$1
  shift
  timeout "$limit" "${COMPOSE[@]}" "$@"
}

cleanup() {
  local rc=$?
  set +e
  for name in "${!CLIENT_PID[@]}"; do
    kill "${CLIENT_PID[$name]}" 2>/dev/null
  done
  if [ "$rc" -ne 0 ] && [ "$UP" = 1 ]; then
    for name in "$WORK"/*.out; do
      [ -f "$name" ] || continue
      echo "--- what client $(basename "$name" .out) heard (last 10 lines)" >&2
      tail -10 "$name" >&2
    done
    echo "--- last log lines of the services" >&2
    compose 60 logs --no-color --tail 30 >&2 2>&1
  fi
  if [ "${#COMPOSE[@]}" -gt 0 ] && docker info >/dev/null 2>&1; then
    compose 120 down -v --remove-orphans -t 10 >"$WORK/cleanup.log" 2>&1 ||
      { echo "--- docker-compose down failed" >&2; cat "$WORK/cleanup.log" >&2; }
    [ "${CLUSTER_SMOKE_KEEP_IMAGE:-1}" = 0 ] && docker rmi "$IMAGE" "$IMAGE-builder" >/dev/null 2>&1
  fi
  if [ "$STARTED_ENGINE" = 1 ] && [ -n "$STOP_SCRIPT" ]; then
    "$STOP_SCRIPT" && note "stopped the Docker engine this script started"
  fi
  rm -rf "$WORK"
  if [ "$rc" -eq 0 ]; then
    echo "cluster smoke: $CHECKS checks passed in $(($(date +%s) - T0)) s"
  else
    echo "cluster smoke: FAILED after $CHECKS checks" >&2
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
  echo "cluster smoke: skipped, no Docker engine ($*)"
  trap - EXIT
  rm -rf "$WORK"
  exit 0
}

# --- a Docker engine, the base images, a compose command ----------------------
# shellcheck source=scripts/docker-engine.sh
. "$ROOT/scripts/docker-engine.sh"
docker_engine rust:1-bookworm debian:bookworm-slim postgres:15 nginx:1.22

if command -v docker-compose >/dev/null; then
  COMPOSE=(docker-compose)
elif docker compose version >/dev/null 2>&1; then
  COMPOSE=(docker compose)
else
  no_engine "neither docker-compose nor the docker compose plugin is installed"
fi
COMPOSE+=(-p "$PROJECT" -f docker-compose.yml -f scripts/cluster-smoke.yml)
compose 30 config -q || fail "docker-compose.yml does not validate"
ok "$("${COMPOSE[0]}" version --short 2>/dev/null | sed "s/^/${COMPOSE[0]} /") accepts docker-compose.yml (project $PROJECT)"

command -v curl >/dev/null || fail "curl is needed on the host"

# --- the WebSocket client (examples/ws_pipe.rs), built on the host ------------
cargo build --quiet --example ws_pipe
TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}
case "$TARGET_DIR" in /*) ;; *) TARGET_DIR="$ROOT/$TARGET_DIR" ;; esac
CLIENT="$TARGET_DIR/debug/examples/ws_pipe"
[ -x "$CLIENT" ] || fail "no client binary at $CLIENT"
ok "WebSocket client built ($CLIENT)"

# --- helpers ------------------------------------------------------------------
# The container of service $1.
cid() { compose 30 ps -q "$1"; }

# Waits up to $1 s until every service has a healthy container.
wait_healthy() {
  local limit=$1 t service c health pending
  t=$(date +%s.%N)
  for _ in $(seq $((limit * 2))); do
    pending=""
    for service in postgres "${NODES[@]}"; do
      c=$(cid "$service")
      health=$([ -n "$c" ] && docker inspect -f '{{.State.Health.Status}}' "$c" 2>/dev/null || echo missing)
      [ "$health" = healthy ] || pending="$pending $service:$health"
    done
    [ -z "$pending" ] && { note "postgres and the nodes healthy after $(since "$t") s"; return 0; }
    sleep 0.5
  done
  fail "not healthy within $limit s:$pending"
}

# Learns the host ports: PROXY (the one address users get) and each node's.
read_ports() {
  local service
  PROXY=$(compose 30 port proxy 80) || fail "the proxy publishes no port"
  PROXY=${PROXY/0.0.0.0/127.0.0.1}
  for service in "${NODES[@]}"; do
    NODE_PORT[$service]=$(compose 30 port "$service" 8080 | sed -n '1s/.*://p')
    [ -n "${NODE_PORT[$service]}" ] || fail "$service publishes no port"
  done
}

# Waits up to $1 s for the proxy to answer /health.
wait_proxy() {
  local limit=$1 t
  t=$(date +%s.%N)
  for _ in $(seq $((limit * 5))); do
    curl -fsS -o /dev/null --max-time 2 "http://$PROXY/health" 2>/dev/null && {
      note "the proxy answers at http://$PROXY after $(since "$t") s"
      return 0
    }
    sleep 0.2
  done
  fail "the proxy did not answer /health within $limit s"
}

# Field $2 (a number or a string) of the JSON object in $1, flat fields only.
field() {
  sed -n "s/.*\"$2\":\"\\{0,1\\}\\([^,\"}]*\\).*/\\1/p" <<<"$1"
}

# Open WebSocket connections of node $1, from its own /health.
connections() {
  local body
  body=$(curl -fsS --max-time 5 "http://127.0.0.1:${NODE_PORT[$1]}/health") || fail "GET /health on $1"
  field "$body" connections
}

# Each node's connection count, as "node1=N node2=N node3=N".
census() {
  local service out=""
  for service in "${NODES[@]}"; do out="$out $service=$(connections "$service")"; done
  echo "${out# }"
}

# Starts client $1 on URL $2: ws_pipe reading the FIFO $WORK/$1.in (the
# script keeps it open for writing) and writing what it hears to $WORK/$1.out.
client_start() {
  local name=$1 url=$2 fd
  rm -f "$WORK/$name.in" "$WORK/$name.out"
  mkfifo "$WORK/$name.in"
  # Without the other clients' FIFOs: a client holding one open for writing
  # would keep that client from seeing the end of its input.
  (
    for other in "${CLIENT_FD[@]}"; do eval "exec $other>&-"; done
    exec "$CLIENT" --lifetime 900 "$url"
  ) <"$WORK/$name.in" >"$WORK/$name.out" 2>&1 &
  CLIENT_PID[$name]=$!
  exec {fd}>"$WORK/$name.in"
  CLIENT_FD[$name]=$fd
  wait_line "$name" '^connected$' 10 || fail "client $name did not connect to $url: $(cat "$WORK/$name.out")"
}

# Sends the JSON frame $2 as client $1.
send() {
  kill -0 "${CLIENT_PID[$1]}" 2>/dev/null || fail "client $1 has exited: $(tail -3 "$WORK/$1.out")"
  printf '%s\n' "$2" >&"${CLIENT_FD[$1]}"
}

# Closes client $1's input: it closes with 1000 and exits within 5 s.
client_stop() {
  local name=$1 pid=${CLIENT_PID[$1]} fd=${CLIENT_FD[$1]}
  exec {fd}>&-
  for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  kill "$pid" 2>/dev/null && fail "client $name did not exit 10 s after its input closed"
  wait "$pid" || fail "client $name failed: $(tail -3 "$WORK/$name.out")"
  unset "CLIENT_PID[$name]" "CLIENT_FD[$name]"
}

# Waits up to $3 s for a line of client $1 that contains every fixed string
# after $3 ($2 is a regular expression when it starts with ^, else fixed).
wait_line() {
  local name=$1 pattern=$2 limit=$3
  shift 3
  for _ in $(seq $((limit * 10))); do
    if [ -f "$WORK/$name.out" ] && awk -v p="$pattern" -v rest="$*" '
        BEGIN { n = split(rest, want, "\037") }
        {
          if (substr(p, 1, 1) == "^") { if ($0 !~ p) next } else if (!index($0, p)) next
          for (i = 1; i <= n; i++) if (want[i] != "" && !index($0, want[i])) next
          found = 1; exit
        }
        END { exit !found }' "$WORK/$name.out"; then
      return 0
    fi
    sleep 0.1
  done
  return 1
}
# Joins its arguments with the separator wait_line splits on.
all_of() { local IFS=$'\037'; echo "$*"; }

# The id of the chat with text $2 client $1 received (empty if none yet).
chat_id() {
  awk -v t="\"text\":\"$2\"" '
    index($0, "{\"type\":\"chat\"") == 1 && index($0, t) {
      if (match($0, /"id":[0-9]+/)) { print substr($0, RSTART + 5, RLENGTH - 5); exit }
    }' "$WORK/$1.out"
}

# Connects client $1 through the proxy until it lands on one of the nodes
# $2... (round robin: at most one try per node); sets LANDED to its node.
client_via_proxy() {
  local name=$1 before after service
  shift
  for _ in 1 2 3 4; do
    before=$(census)
    client_start "$name" "ws://$PROXY/ws?user=$name"
    LANDED=""
    for _ in $(seq 30); do
      after=$(census)
      LANDED=$(diff_census "$before" "$after")
      [ -n "$LANDED" ] && break
      sleep 0.1
    done
    [ -n "$LANDED" ] || fail "client $name connected, but no node counts it ($before -> $after)"
    for service in "$@"; do
      [ "$LANDED" = "$service" ] && return 0
    done
    note "$name landed on $LANDED, wants one of $*: reconnects"
    client_stop "$name"
  done
  fail "client $name never landed on one of $* through the proxy"
}

# The node whose count rose from census $1 to census $2.
diff_census() {
  awk -v a="$1" -v b="$2" 'BEGIN {
    n = split(a, x, " "); split(b, y, " ")
    for (i = 1; i <= n; i++) {
      split(x[i], p, "="); split(y[i], q, "=")
      if (q[2] + 0 == p[2] + 1) { print p[1]; exit }
    }
  }'
}

# Sends $1 requests for /health through the proxy; fails on any answer that
# is not 200. Sets SPREAD to the nodes that answered ("node1 x2, ...") and
# SLOWEST to the longest answer's time in seconds.
nodes_behind_proxy() {
  local count=$1 body seen="" time
  SLOWEST=0
  for _ in $(seq "$count"); do
    body=$(curl -fsS --max-time 15 -w ' %{time_total}' "http://$PROXY/health") ||
      fail "GET /health through the proxy failed"
    time=${body##* }
    SLOWEST=$(awk -v a="$SLOWEST" -v b="$time" 'BEGIN { print (b > a ? b : a) }')
    seen="$seen $(field "${body% *}" node)"
  done
  SPREAD=$(tr ' ' '\n' <<<"$seen" | sed '/^$/d' | sort | uniq -c |
    awk '{ printf "%s%s x%s", sep, $2, $1; sep = ", " }')
}

# --- build and start ----------------------------------------------------------
# The builder stage gets a tag of its own, as in docker-smoke.sh: it holds
# the compiled dependencies, the cache of the next build, which the pruning
# below (of stale stages earlier runs left untagged) must keep.
t=$(date +%s.%N)
note "docker build --target builder -t $IMAGE-builder . (a first build compiles every dependency: minutes)"
timeout 3600 docker build --target builder -t "$IMAGE-builder" . >"$WORK/build.log" 2>&1 ||
  { tail -60 "$WORK/build.log" >&2; fail "docker build of the builder stage"; }
note "builder stage ready after $(since "$t") s"

t=$(date +%s.%N)
UP=1
compose 1800 up -d --build >"$WORK/up.log" 2>&1 || { tail -60 "$WORK/up.log" >&2; fail "docker-compose up -d --build"; }
for label in chatterbox.build-stage=planner chatterbox.build-stage=builder \
  org.opencontainers.image.title=chatterbox; do
  docker image prune -f --filter "label=$label" >/dev/null # untagged ones only
done
ok "docker-compose up -d --build: image $IMAGE built, 5 services started in $(since "$t") s"

images=""
for service in "${NODES[@]}"; do
  images="$images $(docker inspect -f '{{.Image}}' "$(cid "$service")")"
done
[ "$(tr ' ' '\n' <<<"$images" | sed '/^$/d' | sort -u | wc -l)" = 1 ] || fail "the nodes run different images:$images"
[ "$(docker image inspect -f '{{.Id}}' "$IMAGE")" = "$(awk '{ print $1 }' <<<"$images")" ] ||
  fail "the nodes do not run $IMAGE"
ok "node1, node2 and node3 run the one image $IMAGE"

wait_healthy 120
read_ports
wait_proxy 30
ok "postgres, node1, node2, node3 healthy; the proxy answers at http://$PROXY (nodes at 127.0.0.1:${NODE_PORT[node1]}, :${NODE_PORT[node2]}, :${NODE_PORT[node3]})"

libs=$(docker exec "$(cid node1)" ldd /usr/local/bin/chatterbox 2>&1) || fail "ldd in node1: $libs"
if grep -q 'not found' <<<"$libs"; then
  fail "the binary lacks libraries in the image: $(grep 'not found' <<<"$libs" | tr '\n' ' ')"
fi
grep -q 'libpq' <<<"$libs" && fail "the binary links libpq dynamically (it should be compiled in)"
ok "ldd in node1: nothing missing, libpq compiled in; links $(awk '/=>/ { printf "%s%s", sep, $1; sep = " " }' <<<"$libs")"

for service in "${NODES[@]}"; do
  body=$(curl -fsS --max-time 5 "http://127.0.0.1:${NODE_PORT[$service]}/health") || fail "GET /health on $service"
  [ "$(field "$body" node)" = "$service" ] || fail "$service reports node $(field "$body" node)"
  [ "$(field "$body" database)" = postgresql ] || fail "$service is not on PostgreSQL: $body"
done
ok "each node's own /health: status ok, database postgresql, node = its NODE_ID"

nodes_behind_proxy 6
for service in "${NODES[@]}"; do
  grep -q "$service x2" <<<"$SPREAD" || fail "six /health requests through the proxy went to $SPREAD"
done
ok "six GET /health through the proxy: round robin over the nodes ($SPREAD)"

curl -fsS --max-time 5 -D "$WORK/page.headers" -o "$WORK/page.html" "http://$PROXY/"
grep -qi '^content-type: *text/html' "$WORK/page.headers" || fail "GET / through the proxy is not text/html"
cmp -s "$WORK/page.html" static/index.html || fail "GET / through the proxy is not static/index.html"
ok "GET / through the proxy: the page of static/index.html"

# --- three clients through the proxy, on three nodes --------------------------
client_via_proxy alice "${NODES[@]}"
ALICE_NODE=$LANDED
others=()
for service in "${NODES[@]}"; do [ "$service" = "$ALICE_NODE" ] || others+=("$service"); done
client_via_proxy bob "${others[@]}"
BOB_NODE=$LANDED
for service in "${others[@]}"; do [ "$service" = "$BOB_NODE" ] || CAROL_WANT=$service; done
client_via_proxy carol "$CAROL_WANT"
CAROL_NODE=$LANDED
ok "three WebSocket clients through the proxy, one per node: alice on $ALICE_NODE, bob on $BOB_NODE, carol on $CAROL_NODE ($(census))"

send alice "{\"type\":\"join\",\"room\":\"$ROOM\"}"
wait_line alice '{"type":"presence"' 10 "\"room\":\"$ROOM\"" || fail "alice got no presence for $ROOM"
send bob "{\"type\":\"join\",\"room\":\"$ROOM\"}"
wait_line bob '{"type":"presence"' 10 "$(all_of "\"room\":\"$ROOM\"" '"alice"' '"bob"')" ||
  fail "bob's presence does not list alice and bob"
send carol "{\"type\":\"join\",\"room\":\"$ROOM\"}"
wait_line carol '{"type":"presence"' 10 "$(all_of "\"room\":\"$ROOM\"" '"alice"' '"bob"' '"carol"')" ||
  fail "carol's presence does not list alice, bob and carol"
for who in alice bob; do
  wait_line "$who" '{"type":"join"' 10 "\"user\":\"carol\"" || fail "$who did not see carol join"
done
wait_line alice '{"type":"join"' 10 "\"user\":\"bob\"" || fail "alice did not see bob join"
ok "presence spans the nodes: carol's lists alice, bob, carol; alice saw bob and carol join, bob saw carol"

# Each says something; everyone sees everyone's message, with the same id.
# $1 speaker, $2 text, then the listeners. Sets ID to the message's id.
chat() {
  local speaker=$1 text=$2 listener id
  shift 2
  send "$speaker" "{\"type\":\"chat\",\"room\":\"$ROOM\",\"text\":\"$text\",\"ref\":\"r-$text\"}"
  wait_line "$speaker" '{"type":"chat"' 10 "$(all_of "\"text\":\"$text\"" "\"ref\":\"r-$text\"")" ||
    fail "$speaker got no echo of \"$text\""
  ID=$(chat_id "$speaker" "$text")
  for listener in "$@"; do
    wait_line "$listener" '{"type":"chat"' 10 "$(all_of "\"text\":\"$text\"" "\"user\":\"$speaker\"")" ||
      fail "$listener did not get $speaker's \"$text\""
    id=$(chat_id "$listener" "$text")
    [ "$id" = "$ID" ] || fail "$listener got \"$text\" with id $id, $speaker's echo has $ID"
  done
}
A="hello-from-alice-$STAMP"
B="hello-from-bob-$STAMP"
C="hello-from-carol-$STAMP"
chat alice "$A" bob carol
ID_A=$ID
chat bob "$B" alice carol
ID_B=$ID
chat carol "$C" alice bob
ID_C=$ID
ok "chat across three nodes: each of alice, bob, carol got the others' messages with the sender's id ($ID_A, $ID_B, $ID_C)"

# --- one node stops -----------------------------------------------------------
STOPPED=$CAROL_NODE
t=$(date +%s.%N)
compose 60 stop -t 10 "$STOPPED" >"$WORK/stop.log" 2>&1 || { cat "$WORK/stop.log" >&2; fail "docker-compose stop $STOPPED"; }
stop_took=$(since "$t")
code=$(docker inspect -f '{{.State.ExitCode}}' "$(cid "$STOPPED")")
[ "$code" = 0 ] || fail "$STOPPED exited with $code"
wait_line carol '^closed 1001$' 10 || fail "carol was not closed with 1001: $(tail -2 "$WORK/carol.out")"
unset "CLIENT_PID[carol]"
ok "docker-compose stop $STOPPED: exit code 0 in $stop_took s; carol, on it, got close code 1001 through the proxy"

for who in alice bob; do
  limit=$((NODE_TIMEOUT_SECS + 5))
  wait_line "$who" '{"type":"leave"' "$limit" "$(all_of "\"room\":\"$ROOM\"" '"user":"carol"')" ||
    fail "$who did not see carol leave within NODE_TIMEOUT + 5 s ($limit s) of the stop"
done
ok "alice and bob saw carol leave $(since "$t") s after the stop began (bound: NODE_TIMEOUT + 5 = $((NODE_TIMEOUT_SECS + 5)) s)"

nodes_behind_proxy 9
grep -q "$STOPPED" <<<"$SPREAD" && fail "the proxy answered from the stopped $STOPPED: $SPREAD"
ok "nine GET /health through the proxy with $STOPPED down: all 200, slowest ${SLOWEST} s ($SPREAD)"

# Three new connections in a row: one of them is $STOPPED's turn in the
# round robin, unless nginx already left it out.
for i in 1 2 3; do
  t=$(date +%s.%N)
  client_start "dave$i" "ws://$PROXY/ws?user=dave$i"
  send "dave$i" "{\"type\":\"join\",\"room\":\"$ROOM\"}"
  wait_line "dave$i" '{"type":"history"' 10 "$(all_of "\"text\":\"$A\"" "\"text\":\"$B\"" "\"text\":\"$C\"")" ||
    fail "dave$i's history of $ROOM lacks the three messages"
  wait_line "dave$i" '{"type":"presence"' 10 '"alice"' || fail "dave$i's presence lacks alice"
  presence=$(grep -F '{"type":"presence"' "$WORK/dave$i.out")
  grep -qF '"carol"' <<<"$presence" && fail "dave$i sees carol, whose node is stopped: $presence"
  took[i]=$(since "$t")
  client_stop "dave$i"
done
ok "three new WebSocket clients through the proxy after the stop: each connected and joined (${took[1]} s, ${took[2]} s, ${took[3]} s), history has the three messages, presence has no carol"

A2="alice-after-the-stop-$STAMP"
B2="bob-after-the-stop-$STAMP"
chat alice "$A2" bob
ID_A2=$ID
chat bob "$B2" alice
ID_B2=$ID
ok "alice ($ALICE_NODE) and bob ($BOB_NODE) go on chatting: each got the other's message with the same id ($ID_A2, $ID_B2)"

t=$(date +%s.%N)
compose 60 start "$STOPPED" >"$WORK/start.log" 2>&1 || { cat "$WORK/start.log" >&2; fail "docker-compose start $STOPPED"; }
wait_healthy 60
read_ports # $STOPPED is published on a new port
back=""
for _ in $(seq 30); do
  nodes_behind_proxy 3
  grep -q "$STOPPED" <<<"$SPREAD" && { back=1; break; }
  sleep 1
done
[ -n "$back" ] || fail "$STOPPED, started again, does not get requests from the proxy within 30 s"
ok "docker-compose start $STOPPED: healthy and back behind the proxy $(since "$t") s later"

# --- one node dies without a word ---------------------------------------------
# SIGKILL: the node cannot remove itself, so the others must time it out
# (NODE_TIMEOUT, plus a third of it between their beats). A killed container
# counts as stopped by hand: its restart policy leaves it down.
client_via_proxy frank "$STOPPED"
send frank "{\"type\":\"join\",\"room\":\"$ROOM\"}"
wait_line frank '{"type":"presence"' 10 "$(all_of '"alice"' '"bob"' '"frank"')" ||
  fail "frank's presence on $STOPPED does not list alice, bob and frank"
for who in alice bob; do
  wait_line "$who" '{"type":"join"' 10 '"user":"frank"' || fail "$who did not see frank join"
done
t=$(date +%s.%N)
compose 30 kill "$STOPPED" >"$WORK/kill.log" 2>&1 || { cat "$WORK/kill.log" >&2; fail "docker-compose kill $STOPPED"; }
unset "CLIENT_PID[frank]"
for who in alice bob; do
  limit=$((NODE_TIMEOUT_SECS + 5))
  wait_line "$who" '{"type":"leave"' "$limit" "$(all_of "\"room\":\"$ROOM\"" '"user":"frank"')" ||
    fail "$who did not see frank leave within NODE_TIMEOUT + 5 s ($limit s) of the kill"
done
ok "docker-compose kill $STOPPED (SIGKILL) with frank on it: alice and bob saw frank leave $(since "$t") s later (NODE_TIMEOUT ${NODE_TIMEOUT_SECS} s; bound $((NODE_TIMEOUT_SECS + 5)) s)"

A3="alice-after-the-kill-$STAMP"
chat alice "$A3" bob
ID_A3=$ID
nodes_behind_proxy 6
grep -q "$STOPPED" <<<"$SPREAD" && fail "the proxy answered from the killed $STOPPED: $SPREAD"
ok "after the kill: alice and bob still chat (id $ID_A3); six GET /health through the proxy all 200, slowest ${SLOWEST} s ($SPREAD)"

client_stop alice
client_stop bob

# --- down (the volume stays) and up again -------------------------------------
t=$(date +%s.%N)
compose 120 down -t 10 >"$WORK/down.log" 2>&1 || { cat "$WORK/down.log" >&2; fail "docker-compose down"; }
[ -z "$(compose 30 ps -q)" ] || fail "containers left after docker-compose down"
volume=$(docker volume ls -q --filter "label=com.docker.compose.project=$PROJECT" | grep pgdata) ||
  fail "the pgdata volume is gone after docker-compose down"
ok "docker-compose down in $(since "$t") s: no container left, volume $volume kept"

t=$(date +%s.%N)
compose 300 up -d >"$WORK/up2.log" 2>&1 || { tail -40 "$WORK/up2.log" >&2; fail "docker-compose up -d (again)"; }
wait_healthy 120
read_ports
wait_proxy 30
ok "docker-compose up -d again: healthy and serving in $(since "$t") s"

curl -fsS --max-time 10 "http://$PROXY/api/rooms/$ROOM/messages" >"$WORK/messages.json" ||
  fail "GET /api/rooms/$ROOM/messages through the proxy"
# One message object a line (the messages have no nested objects).
objects=$(grep -o '{"id":[^}]*}' "$WORK/messages.json") || true
for m in "$ID_A alice $A" "$ID_B bob $B" "$ID_C carol $C" "$ID_A2 alice $A2" "$ID_B2 bob $B2" "$ID_A3 alice $A3"; do
  read -r id user text <<<"$m"
  object=$(grep -F "{\"id\":$id," <<<"$objects") || object=""
  for want in "\"room\":\"$ROOM\"" "\"user\":\"$user\"" "\"text\":\"$text\""; do
    grep -qF "$want" <<<"$object" ||
      { cat "$WORK/messages.json" >&2; fail "message $id ($user: $text) is not in the history after down and up"; }
  done
done
count=$(grep -c . <<<"$objects")
[ "$count" = 6 ] || { cat "$WORK/messages.json" >&2; fail "the history of $ROOM has $count messages, not 6"; }
ok "history intact after down and up: GET /api/rooms/$ROOM/messages through the proxy has the 6 messages, same ids and senders"

client_start erin "ws://$PROXY/ws?user=erin"
send erin "{\"type\":\"join\",\"room\":\"$ROOM\"}"
wait_line erin '{"type":"history"' 10 "$(all_of "\"text\":\"$A\"" "\"text\":\"$A3\"")" ||
  fail "a join after down and up does not get the history"
client_stop erin
ok "a join through the proxy after down and up gets the history"

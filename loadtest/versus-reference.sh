#!/usr/bin/env bash
# Puts chatterbox beside wsbench's minimal tokio server (no storage) in one
# sitting, every server driven by wsbench's own generator, so that neither
# the server nor the load tester is judged by itself (docs/BENCHMARKS.md,
# issue 14):
#   loadtest/versus-reference.sh WSBENCH LABEL=SERVER_BIN [LABEL=SERVER_BIN ...]
# WSBENCH is a built wsbench binary (see ../shared/wsbench/README.md: build
# it in a copy outside the project). For each round, each of fanout
# (1 room x 1000 members, 10 senders, 100 msg/s) and rooms (200 x 10, 1 msg/s
# per member) runs against the reference and then every build in turn: a
# change in the machine's load hits them alike. Each server is pinned to
# SERVER_CPUS with a fresh SQLite file, the generator to LOADTEST_CPUS, and
# every run is bounded (RUN_TIMEOUT seconds). Each run's JSON line goes to
# OUT/SCENARIO-LABEL-ROUND.json, and a summary of this invocation's runs
# (median p99 and its ratio to the reference's) is printed at the end.
# Environment: ROUNDS (default 3), OUT (default a new folder
# docs/bench/versus/DATE-TIME, so earlier sittings are kept apart),
# SERVER_CPUS (default 0), LOADTEST_CPUS (default 1), PORT (default 19001;
# the reference listens on PORT-1; both must be free), RUN_TIMEOUT
# (default 150).
set -euo pipefail
cd "$(dirname "$0")/.."
[ $# -ge 2 ] || { sed -n '2,18p' "$0" >&2; exit 2; }
WSBENCH=$1
shift
[ -x "$WSBENCH" ] || { echo "versus-reference.sh: $WSBENCH is not an executable" >&2; exit 2; }
ROUNDS=${ROUNDS:-3}
OUT=${OUT:-docs/bench/versus/$(date -u +%Y-%m-%dT%H%M%S)}
SERVER_CPUS=${SERVER_CPUS:-0}
LOADTEST_CPUS=${LOADTEST_CPUS:-1}
PORT=${PORT:-19001}
RUN_TIMEOUT=${RUN_TIMEOUT:-150}
LABELS=(reference)
declare -A BINS
for build in "$@"; do
    label=${build%%=*}
    bin=${build#*=}
    [ "$label" != "$build" ] && [ -x "$bin" ] ||
        { echo "versus-reference.sh: expected LABEL=SERVER_BIN, got $build" >&2; exit 2; }
    LABELS+=("$label")
    BINS[$label]=$bin
done
mkdir -p "$OUT"
ulimit -n 20000
DIR=$(mktemp -d)
SERVER=
cleanup() {
    if [ -n "$SERVER" ]; then
        kill "$SERVER" 2>/dev/null || true
        wait "$SERVER" 2>/dev/null || true
    fi
    rm -rf "$DIR"
}
trap cleanup EXIT

answers() { (exec 3<>"/dev/tcp/${1%:*}/${1#*:}") 2>/dev/null; }

# Starts the reference or a build; sets SERVER (its pid) and HOST. A port
# that answers before the server starts is someone else's: measuring that
# would be measuring the wrong process.
start() {
    local label=$1
    HOST=127.0.0.1:$PORT
    [ "$label" = reference ] && HOST=127.0.0.1:$((PORT - 1))
    if answers "$HOST"; then
        echo "versus-reference.sh: something already listens on $HOST; stop it or set PORT" >&2
        exit 1
    fi
    if [ "$label" = reference ]; then
        taskset -c "$SERVER_CPUS" "$WSBENCH" min-server --listen "$HOST" >"$DIR/server.log" 2>&1 &
    else
        rm -rf "$DIR/db" && mkdir "$DIR/db"
        RUST_LOG=warn PORT=$PORT DB_PATH="$DIR/db/chatterbox.db" STATIC_DIR=static MAX_ROOMS=5000 \
            RATE_LIMIT=1000000 RATE_BURST=1000000 \
            taskset -c "$SERVER_CPUS" "${BINS[$label]}" >"$DIR/server.log" 2>&1 &
    fi
    SERVER=$!
    for _ in $(seq 100); do
        kill -0 "$SERVER" 2>/dev/null || break
        answers "$HOST" && return 0
        sleep 0.1
    done
    echo "versus-reference.sh: $label did not start listening on $HOST" >&2
    cat "$DIR/server.log" >&2
    exit 1
}

stop() {
    kill "$SERVER" 2>/dev/null || true
    wait "$SERVER" 2>/dev/null || true
    SERVER=
}

for round in $(seq "$ROUNDS"); do
    for scenario in fanout rooms; do
        for label in "${LABELS[@]}"; do
            start "$label"
            case $scenario in
            fanout) args=(fanout --members 1000 --senders 10 --rate 100 --secs 10 --drain-secs 5 --max-secs 90) ;;
            rooms) args=(rooms --rooms 200 --members 10 --client-rate 1 --secs 10) ;;
            esac
            echo "round $round: $scenario against $label" >&2
            timeout "$RUN_TIMEOUT" taskset -c "$LOADTEST_CPUS" "$WSBENCH" "${args[@]}" \
                --adapter ours --host "$HOST" --server-pid "$SERVER" 2>/dev/null |
                tail -n 1 >"$OUT/$scenario-$label-$round.json" || true
            stop
        done
    done
done

# The summary: medians over the rounds, and each build's against the
# reference's.
python3 - "$OUT" "${LABELS[@]}" <<'EOF'
import json, statistics, sys, glob
out, labels = sys.argv[1], sys.argv[2:]
for scenario in ("fanout", "rooms"):
    ref = None
    for label in labels:
        runs = []
        for path in sorted(glob.glob(f"{out}/{scenario}-{label}-*.json")):
            try:
                runs.append(json.load(open(path)))
            except (OSError, ValueError):
                pass
        if not runs:
            print(f"{scenario:7} {label:12} no result")
            continue
        p99 = [r["lat_ms"]["p99"] for r in runs]
        p50 = [r["lat_ms"]["p50"] for r in runs]
        median = statistics.median(p99)
        ref = median if label == "reference" else ref
        ratio = f"{median / ref:.2f}x the reference" if ref and label != "reference" else ""
        lost = sum(r["lost"] for r in runs)
        cpu = ", ".join(f"{r['server_cpu_pct']:.0f}" for r in runs)
        print(f"{scenario:7} {label:12} p50 {p50}  p99 {p99}  median p99 {median:.1f} ms {ratio}"
              f"  lost {lost}  server CPU % {cpu}")
EOF

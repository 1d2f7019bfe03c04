#!/usr/bin/env bash
# Runs the sweeps docs/BENCHMARKS.md charts, each run through bench.sh
# (a fresh release server pinned to SERVER_CPUS, the load tester to
# LOADTEST_CPUS), and saves every run's --json result as
# OUT/LABEL/SCENARIO-X-RUN.json for `chart` (loadtest/src/bin/chart.rs):
#   loadtest/sweep.sh [LABEL=SERVER_BIN[:LOADTEST_BIN] ...]
# With several builds, runs alternate between them (for each point and each
# repetition, every build in turn), so a change in the machine's load hits
# them alike. With none, the label is `current` and the builds are TARGET's.
# Then draw the charts:
#   cargo run --release -p loadtest --bin chart -- docs/bench
# Environment: OUT (default docs/bench), SWEEP (fanout, connect or all;
# default all), RUNS (repetitions per point, default 2), RATES (fanout
# msg/s, default "100 250 500 1000 1500 2000"), CONNS (connect sizes,
# default "1000 5000 10000 19500"), MEMBERS (fanout room size, default
# 1000), SENDERS (default 10), DURATION (fanout sending time, default 10s),
# HOLD (connect: how long connections are held, default 5s), and whatever
# bench.sh reads (TARGET, PORT, SERVER_CPUS, LOADTEST_CPUS, SERVER_ENV,
# RUN_TIMEOUT, default 300 here). Every run is bounded by RUN_TIMEOUT.
# Example, main against this branch:
#   git worktree add /tmp/main main && (cd /tmp/main && cargo build --release)
#   loadtest/sweep.sh before=/tmp/main/target/release/chatterbox \
#       after=target/release/chatterbox
set -euo pipefail
cd "$(dirname "$0")/.."
TARGET=${TARGET:-${CARGO_TARGET_DIR:-target}}
OUT=${OUT:-docs/bench}
SWEEP=${SWEEP:-all}
RUNS=${RUNS:-2}
RATES=${RATES:-100 250 500 1000 1500 2000}
CONNS=${CONNS:-1000 5000 10000 19500}
MEMBERS=${MEMBERS:-1000}
SENDERS=${SENDERS:-10}
DURATION=${DURATION:-10s}
HOLD=${HOLD:-5s}
export RUN_TIMEOUT=${RUN_TIMEOUT:-300}
case "$SWEEP" in
fanout | connect | all) ;;
*) echo "sweep.sh: SWEEP must be fanout, connect or all, not $SWEEP" >&2; exit 2 ;;
esac
BUILDS=("$@")
[ ${#BUILDS[@]} -gt 0 ] || BUILDS=("current=$TARGET/release/chatterbox")
for build in "${BUILDS[@]}"; do
    case "$build" in
    *=*) ;;
    *) echo "sweep.sh: a build is LABEL=SERVER_BIN[:LOADTEST_BIN], not $build" >&2; exit 2 ;;
    esac
    bins=${build#*=}
    [ -x "${bins%%:*}" ] || { echo "sweep.sh: ${bins%%:*} is not an executable" >&2; exit 2; }
done

# run LABEL=BINS NAME bench.sh-flags...: one run, saved as OUT/LABEL/NAME.json.
run() {
    local label=${1%%=*} bins=${1#*=} name=$2
    shift 2
    local server=${bins%%:*} loadtest=$TARGET/release/loadtest
    [ "$bins" != "$server" ] && loadtest=${bins#*:}
    mkdir -p "$OUT/$label"
    echo "sweep: $label $name" >&2
    # The result goes to stdout; the server's log and bench.sh's notes to
    # stderr, kept beside it for when a run looks odd.
    SERVER_BIN=$server LOADTEST_BIN=$loadtest loadtest/bench.sh "$@" --json -q \
        >"$OUT/$label/$name.json" 2>"$OUT/$label/$name.log" || true
    [ -s "$OUT/$label/$name.log" ] || rm -f "$OUT/$label/$name.log"
    if ! [ -s "$OUT/$label/$name.json" ]; then
        echo "sweep: $label $name gave no result" >&2
        rm -f "$OUT/$label/$name.json"
    fi
}

if [ "$SWEEP" != connect ]; then
    for rate in $RATES; do
        for n in $(seq "$RUNS"); do
            for build in "${BUILDS[@]}"; do
                run "$build" "fanout-$rate-$n" -s fanout -c "$MEMBERS" --senders "$SENDERS" \
                    --rate "$rate" -d "$DURATION"
            done
        done
    done
fi
if [ "$SWEEP" != fanout ]; then
    for conns in $CONNS; do
        for n in $(seq "$RUNS"); do
            for build in "${BUILDS[@]}"; do
                run "$build" "connect-$conns-$n" -s connect -c "$conns" -d "$HOLD"
            done
        done
    done
fi
echo "sweep: results in $OUT; draw with: cargo run --release -p loadtest --bin chart -- $OUT" >&2

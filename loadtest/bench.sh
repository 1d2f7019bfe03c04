#!/usr/bin/env bash
# Runs one load test against a fresh release server, the server pinned to
# core 0 and the load tester to core 1 (docs/BENCHMARKS.md).
#   loadtest/bench.sh [loadtest flags...]
# Environment: PORT (default 18080), SERVER_ENV (extra VAR=value for the
# server, e.g. "OUTBOX_LIMIT=4096"), TARGET (cargo target dir), SERVER_BIN and
# LOADTEST_BIN (binaries to use instead of TARGET's, to compare builds).
set -euo pipefail
cd "$(dirname "$0")/.."
TARGET=${TARGET:-${CARGO_TARGET_DIR:-target}}
PORT=${PORT:-18080}
SERVER_BIN=${SERVER_BIN:-$TARGET/release/chatterbox}
LOADTEST_BIN=${LOADTEST_BIN:-$TARGET/release/loadtest}
DIR=$(mktemp -d)
trap 'kill "$SERVER" 2>/dev/null; wait "$SERVER" 2>/dev/null; rm -rf "$DIR"' EXIT
ulimit -n 20000
env PORT="$PORT" DB_PATH="$DIR/bench.db" RUST_LOG=warn \
    RATE_LIMIT=1000000 RATE_BURST=1000000 ${SERVER_ENV:-} \
    taskset -c 0 "$SERVER_BIN" 2>"$DIR/server.log" &
SERVER=$!
for _ in $(seq 50); do
    (exec 3<>/dev/tcp/127.0.0.1/"$PORT") 2>/dev/null && break
    sleep 0.1
done
taskset -c 1 "$LOADTEST_BIN" --url "ws://127.0.0.1:$PORT" \
    --server-pid "$SERVER" --server-rate-limit 1000000 --server-rate-burst 1000000 "$@" || true
grep -v "AUTH_SECRET" "$DIR/server.log" >&2 || true

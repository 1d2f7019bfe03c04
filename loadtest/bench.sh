#!/usr/bin/env bash
# Runs one load test against fresh release servers (docs/BENCHMARKS.md): by
# default one node on SQLite pinned to core 0, the load tester on core 1.
#   loadtest/bench.sh [loadtest flags...]
# With DB=postgres it first makes a PostgreSQL cluster of its own in a
# temporary folder (Debian's programs, run as the postgres user when root),
# starts NODES nodes on it, spreads the members over them (--url with every
# node) and reports each node's CPU and the database's (--server-pid,
# --db-pid).
# Environment: DB (sqlite or postgres; default sqlite), NODES (default 1;
# more needs DB=postgres), PORT (first node's port, default 18080; node K
# listens on PORT+K), PG_PORT (default 15432), PG_BIN (default
# /usr/lib/postgresql/15/bin), SERVER_CPUS (taskset list for the nodes and
# the database, default 0), LOADTEST_CPUS (default 1), SERVER_ENV (extra
# VAR=value for the nodes, e.g. "OUTBOX_LIMIT=4096"), TARGET (cargo target
# dir), SERVER_BIN and LOADTEST_BIN (binaries to use instead of TARGET's,
# to compare builds), RUN_TIMEOUT (seconds the load tester may take,
# default 600).
set -euo pipefail
cd "$(dirname "$0")/.."
TARGET=${TARGET:-${CARGO_TARGET_DIR:-target}}
PORT=${PORT:-18080}
DB=${DB:-sqlite}
NODES=${NODES:-1}
PG_PORT=${PG_PORT:-15432}
PG_BIN=${PG_BIN:-/usr/lib/postgresql/15/bin}
SERVER_CPUS=${SERVER_CPUS:-0}
LOADTEST_CPUS=${LOADTEST_CPUS:-1}
RUN_TIMEOUT=${RUN_TIMEOUT:-600}
SERVER_BIN=${SERVER_BIN:-$TARGET/release/chatterbox}
LOADTEST_BIN=${LOADTEST_BIN:-$TARGET/release/loadtest}
case "$DB" in
sqlite) [ "$NODES" = 1 ] || { echo "bench.sh: NODES=$NODES needs DB=postgres" >&2; exit 2; } ;;
postgres) ;;
*) echo "bench.sh: DB must be sqlite or postgres, not $DB" >&2; exit 2 ;;
esac
DIR=$(mktemp -d)
PIDS=()
# As root, PostgreSQL's programs run as the postgres user.
as_pg() { if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }
cleanup() {
    for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
    for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
    if [ -f "$DIR/pg/postmaster.pid" ]; then
        as_pg "$PG_BIN/pg_ctl" stop -D "$DIR/pg" -m fast -w -t 60 >/dev/null 2>&1 || true
    fi
    rm -rf "$DIR"
}
trap cleanup EXIT
ulimit -n 20000

DB_ENV=()
DB_PID_FLAG=()
if [ "$DB" = postgres ]; then
    [ "$(id -u)" = 0 ] && chown postgres: "$DIR"
    as_pg "$PG_BIN/initdb" -D "$DIR/pg" --username postgres --auth trust \
        --encoding UTF8 --locale C --no-instructions >"$DIR/initdb.log" 2>&1 ||
        { cat "$DIR/initdb.log" >&2; exit 1; }
    # Durable, as SQLite is here (synchronous=FULL): fsync and
    # synchronous_commit stay on. Only 127.0.0.1, socket in the folder.
    cat >>"$DIR/pg/postgresql.conf" <<EOF
listen_addresses = '127.0.0.1'
port = $PG_PORT
unix_socket_directories = '$DIR'
EOF
    # The postmaster and every backend it forks inherit the affinity.
    as_pg taskset -c "$SERVER_CPUS" "$PG_BIN/pg_ctl" start -D "$DIR/pg" \
        -l "$DIR/pg.log" -w -t 60 >/dev/null ||
        { cat "$DIR/pg.log" >&2; exit 1; }
    "$PG_BIN/createdb" -h 127.0.0.1 -p "$PG_PORT" -U postgres chatterbox
    DB_ENV=(DATABASE_URL="postgres://postgres@127.0.0.1:$PG_PORT/chatterbox")
    DB_PID_FLAG=(--db-pid "$(head -1 "$DIR/pg/postmaster.pid")")
fi

URLS=""
PID_LIST=""
for k in $(seq 0 $((NODES - 1))); do
    port=$((PORT + k))
    NODE_ENV=("${DB_ENV[@]}")
    [ "$DB" = postgres ] && NODE_ENV+=(NODE_ID="bench$k")
    env PORT="$port" HOST=127.0.0.1 DB_PATH="$DIR/bench$k.db" RUST_LOG=warn \
        RATE_LIMIT=1000000 RATE_BURST=1000000 "${NODE_ENV[@]}" ${SERVER_ENV:-} \
        taskset -c "$SERVER_CPUS" "$SERVER_BIN" 2>"$DIR/server$k.log" &
    PIDS+=($!)
    URLS="${URLS:+$URLS,}ws://127.0.0.1:$port"
    PID_LIST="${PID_LIST:+$PID_LIST,}$!"
done
for k in $(seq 0 $((NODES - 1))); do
    for _ in $(seq 100); do
        (exec 3<>/dev/tcp/127.0.0.1/$((PORT + k))) 2>/dev/null && break
        sleep 0.1
    done
done
timeout "$RUN_TIMEOUT" taskset -c "$LOADTEST_CPUS" "$LOADTEST_BIN" --url "$URLS" \
    --server-pid "$PID_LIST" "${DB_PID_FLAG[@]}" \
    --server-rate-limit 1000000 --server-rate-burst 1000000 "$@" || true
for k in $(seq 0 $((NODES - 1))); do
    # What each node's cluster traffic was (notifications heard, catch-up
    # reads), from its /metrics.
    if [ "$DB" = postgres ] && command -v curl >/dev/null; then
        curl -s --max-time 5 "http://127.0.0.1:$((PORT + k))/metrics" |
            sed -n "s/^\(chatterbox_cluster_[a-z_]*_total\) /node $k: \1 /p" >&2 || true
    fi
    grep -v "AUTH_SECRET" "$DIR/server$k.log" >&2 || true
done

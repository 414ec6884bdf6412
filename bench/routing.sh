#!/bin/sh
# The routing load test (BENCHMARKS.md): 50 reps on their streams accepting every offer,
# 10,000 open conversations, handoffs at RATE per second for SECONDS; trigger -> offer latency
# and the server's peak memory. Usage, from the repository root: bench/routing.sh
#   BATON_BENCH_DATABASE_URL=postgres://postgres@127.0.0.1:5432/baton_load bench/routing.sh
#                                          # ... then on that PostgreSQL database (emptied first)
set -eu
RATE=${RATE:-100}
SECONDS_=${SECONDS_:-30}
CONVERSATIONS=${CONVERSATIONS:-10000}
PORT=${PORT:-18081}
cargo build --release -q -p baton -p baton-server --bin baton --example routing_load
BIN=./target/release/baton
run() {
    # $1: storage flags for keys and serve
    ADMIN=$($BIN keys create --name load-admin --role admin $1 2>/dev/null)
    BOT=$($BIN keys create --name load-bot --role bot $1 2>/dev/null)
    $BIN serve $1 --listen "127.0.0.1:$PORT" --policy bench/routing-policy.toml 2>/dev/null &
    SERVER=$!
    i=0
    until curl -s "http://127.0.0.1:$PORT/v1/health" >/dev/null 2>&1 || [ $i -ge 100 ]; do sleep 0.1; i=$((i+1)); done
    ./target/release/examples/routing_load "http://127.0.0.1:$PORT" "$ADMIN" "$BOT" "$RATE" "$SECONDS_" "$CONVERSATIONS"
    grep -E "VmHWM" /proc/$SERVER/status
    kill $SERVER; wait $SERVER 2>/dev/null || true
}

DIR=$(mktemp -d)
echo "== SQLite"
run "--data-dir $DIR"
rm -rf "$DIR"
if [ -n "${BATON_BENCH_DATABASE_URL:-}" ]; then
    echo "== PostgreSQL"
    PGOPTIONS=--client-min-messages=warning psql "$BATON_BENCH_DATABASE_URL" -qc "DROP SCHEMA public CASCADE; CREATE SCHEMA public;" >/dev/null
    run "--database-url $BATON_BENCH_DATABASE_URL"
fi

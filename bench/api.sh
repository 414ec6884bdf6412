#!/bin/sh
# The turn API under load, with the bare axum echo as the ceiling, in one run (BENCHMARKS.md).
# Needs wrk (apt-get install wrk). Usage, from the repository root:
#   bench/api.sh                                   # echo, then baton on a fresh SQLite file
#   BATON_BENCH_DATABASE_URL=postgres://postgres@127.0.0.1:5432/baton_load bench/api.sh
#                                                  # ... then on that PostgreSQL database (emptied first)
# DURATION (default 20s) and CONNECTIONS (default 64) tune wrk; TURNS=20 ends each conversation
# after 20 turns and starts a new one (by default the conversations grow without end).
set -eu
DURATION=${DURATION:-20s}
CONNECTIONS=${CONNECTIONS:-64}
PORT=${PORT:-18080}
cargo build --release -q -p baton -p baton-server --bin baton --example echo
BIN=./target/release/baton
load() {
    KEY=$1 wrk -t2 -c"$CONNECTIONS" -d"$DURATION" -s bench/turns.lua --latency "http://127.0.0.1:$PORT" \
        | grep -E "Latency  |50%|99%|Requests/sec|Non-2xx|Socket errors"
}
wait_port() {
    i=0
    until curl -s "http://127.0.0.1:$PORT/v1/health" >/dev/null 2>&1 || [ $i -ge 100 ]; do sleep 0.1; i=$((i+1)); done
}

echo "== bare axum JSON echo (the ceiling)"
./target/release/examples/echo "127.0.0.1:$PORT" 2>/dev/null &
ECHO=$!
sleep 1
load none
kill $ECHO; wait $ECHO 2>/dev/null || true

DIR=$(mktemp -d)
echo "== baton serve, SQLite in $DIR"
KEY=$($BIN keys create --name load --role bot --data-dir "$DIR" 2>/dev/null)
$BIN serve --data-dir "$DIR" --listen "127.0.0.1:$PORT" 2>/dev/null &
SERVER=$!
wait_port
load "$KEY"
kill $SERVER; wait $SERVER 2>/dev/null || true
rm -rf "$DIR"

if [ -n "${BATON_BENCH_DATABASE_URL:-}" ]; then
    echo "== baton serve, PostgreSQL"
    PGOPTIONS=--client-min-messages=warning psql "$BATON_BENCH_DATABASE_URL" -qc "DROP SCHEMA public CASCADE; CREATE SCHEMA public;" >/dev/null
    KEY=$($BIN keys create --name load --role bot --database-url "$BATON_BENCH_DATABASE_URL" 2>/dev/null)
    $BIN serve --database-url "$BATON_BENCH_DATABASE_URL" --listen "127.0.0.1:$PORT" 2>/dev/null &
    SERVER=$!
    wait_port
    load "$KEY"
    kill $SERVER; wait $SERVER 2>/dev/null || true
fi

#!/usr/bin/env bash
# Start the whole pipeline: [simulator ->] recorder -> Dagster (webserver + daemon).
#   scripts/stack.sh demo   offline, on the feed simulator
#   scripts/stack.sh live   on $RUGS_FEED_URL (default the live server)
#   scripts/stack.sh stop   stop the stack of $RUGS_DATA_DIR started by one of the above (make stop)
# Ctrl-C (or SIGTERM, which `stop` sends) stops everything; the recorder seals what it holds before it exits.
# RUGS_UI_READONLY=1 serves a read-only UI (dagster-webserver --read-only, beside dagster-daemon) instead of
# `dagster dev`: the writable UI takes GraphQL mutations from any web page (README, Operations).
# Nothing starts when a port it needs is taken or the store already has a stack: one line says which.
set -euo pipefail
cd "$(dirname "$0")/.."
mode=${1:?usage: stack.sh demo|live|stop}
BIN=.venv/bin
export RUGS_DATA_DIR=${RUGS_DATA_DIR:-$HOME/rugs_data}
if [[ $RUGS_DATA_DIR == s3://* ]]; then
  # an s3 lake: the instance, the logs and the spool stay on local disk, and the legacy capture (written under
  # RUGS_DATA_DIR) is off unless asked for
  : "${DAGSTER_HOME:?must be set when RUGS_DATA_DIR is s3://...}" "${RUGS_SPOOL_DIR:?must be set when RUGS_DATA_DIR is s3://...}"
  export RUGS_LEGACY_RECORDERS=${RUGS_LEGACY_RECORDERS:-false}
  logs=$DAGSTER_HOME/logs
else
  export DAGSTER_HOME=${DAGSTER_HOME:-$RUGS_DATA_DIR/dagster_home}
  logs=$RUGS_DATA_DIR/logs
  [ "$mode" = stop ] || mkdir -p "$RUGS_DATA_DIR"
fi
UI_HOST=${RUGS_UI_HOST:-127.0.0.1}
UI_PORT=${RUGS_UI_PORT:-3000}
SIM_PORT=${RUGS_SIM_PORT:-8765}
pidfile=$logs/stack.pid

# the pid of this store's running stack, if any (a stale file's pid may since belong to another program)
stack_pid() {
  local pid
  pid=$(cat "$pidfile" 2>/dev/null) || return 0
  grep -qs stack.sh "/proc/$pid/cmdline" && echo "$pid" || true
}

if [ "$mode" = stop ]; then
  pid=$(stack_pid)
  if [ -z "$pid" ]; then
    echo "no stack running for $RUGS_DATA_DIR"
    exit 0
  fi
  kill -TERM "$pid"
  for _ in $(seq 600); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  if kill -0 "$pid" 2>/dev/null; then echo "error: the stack of $RUGS_DATA_DIR (pid $pid) did not stop within 60 s" >&2; exit 1; fi
  echo "stopped the stack of $RUGS_DATA_DIR (pid $pid)"
  exit 0
fi

die() { echo "error: $*" >&2; exit 1; }
case ${RUGS_UI_READONLY:-0} in
  1|true|yes|on) readonly=1 ;;
  0|false|no|off) readonly=0 ;;
  *) die "RUGS_UI_READONLY=$RUGS_UI_READONLY: give 1 (a read-only UI) or 0" ;;
esac
running=$(stack_pid)
if [ -n "$running" ]; then
  die "a stack is already running for $RUGS_DATA_DIR (pid $running): make stop, or give this one its own RUGS_DATA_DIR"
fi
# a port taken by another stack would, for the simulator's, attach this recorder to that stack's feed
port_free() { "$BIN/python" -c 'import socket, sys; socket.create_server((sys.argv[1], int(sys.argv[2])))' "$1" "$2" 2>/dev/null; }
port_free "$UI_HOST" "$UI_PORT" || die "port $UI_PORT on $UI_HOST is in use (RUGS_UI_PORT): another stack or service holds it; make stop, or set RUGS_UI_PORT to a free port"
if [ "$mode" = demo ]; then
  port_free 127.0.0.1 "$SIM_PORT" || die "port $SIM_PORT on 127.0.0.1 is in use (RUGS_SIM_PORT): another stack's simulator or a service holds it; make stop, or set RUGS_SIM_PORT to a free port"
fi
mkdir -p "$DAGSTER_HOME" "$logs"
# RUGS_INSTANCE_YAML=deploy/dagster.postgres.yaml keeps the instance in Postgres (RUGS_PG_* settings)
cp "${RUGS_INSTANCE_YAML:-dagster.yaml}" "$DAGSTER_HOME/dagster.yaml"

# Children run in their own sessions (so Ctrl-C reaches only this script, which stops them in
# order) with SIGINT/SIGTERM restored: a shell started in the background ignores them, and
# dagster dev would inherit that and never stop.
spawn() { setsid env --default-signal=INT,TERM "$@" & pids+=($!); }

pids=()
stop() {
  trap - INT TERM EXIT
  stopping=1
  echo "stopping..."
  for pid in "${pids[@]}"; do kill -TERM -- "-$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -f "$pidfile"
}
trap stop INT TERM EXIT
echo $$ >"$pidfile"

if [ "$mode" = demo ]; then
  spawn "$BIN/rugs-pipeline" simulate --host 127.0.0.1 --port "$SIM_PORT" --seed "${RUGS_SIM_SEED:-7}" \
    >"$logs/simulator.log" 2>&1
  url="ws://127.0.0.1:$SIM_PORT/socket.io/?EIO=4&transport=websocket"
  # the recorder must not race the simulator's bind
  for _ in $(seq 50); do grep -q listening "$logs/simulator.log" && break; sleep 0.2; done
else
  url=""  # the recorder reads $RUGS_FEED_URL itself: a URL with credentials stays off the process list
fi

spawn "$BIN/rugs-pipeline" record ${url:+--url "$url"} --seal-interval "${RUGS_SEAL_INTERVAL:-30}" \
  >>"$logs/recorder.log" 2>&1

if [ "$readonly" = 1 ]; then
  ui="read-only: no runs, backfills or sensor changes from the UI; use the CLI"
  # the instance's storage first, in one process: on a fresh DAGSTER_HOME the daemon and the webserver would
  # each create its SQLite files at once and both stamp the schema version (two alembic heads: neither loads again)
  "$BIN/python" -c 'import dagster as dg; dg.DagsterInstance.get().dispose()' >>"$logs/dagster.log" 2>&1 \
    || die "could not create the Dagster instance in $DAGSTER_HOME; see $logs/dagster.log"
  spawn "$BIN/dagster-daemon" run -w workspace.yaml >>"$logs/dagster.log" 2>&1
  spawn "$BIN/dagster-webserver" -w workspace.yaml -h "$UI_HOST" -p "$UI_PORT" --read-only >>"$logs/dagster.log" 2>&1
else
  ui="sensors and automation start on their own"
  spawn "$BIN/dagster" dev -w workspace.yaml -h "$UI_HOST" -p "$UI_PORT" >>"$logs/dagster.log" 2>&1
fi

cat <<MSG
rugs_pipeline ($mode) is running
  Dagster UI   http://$UI_HOST:$UI_PORT   ($ui)
  data         $RUGS_DATA_DIR
  logs         $logs/{simulator,recorder,dagster}.log
  query        RUGS_DATA_DIR=$RUGS_DATA_DIR $BIN/rugs-pipeline query "SELECT count(*) FROM game_tick"
Ctrl-C (or make stop) stops everything.
MSG
wait -n "${pids[@]}" || true
[ -n "${stopping:-}" ] || echo "a process exited unexpectedly; see $logs" >&2

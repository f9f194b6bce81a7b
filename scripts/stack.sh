#!/usr/bin/env bash
# Start the whole pipeline: [simulator ->] recorder -> Dagster (webserver + daemon).
#   scripts/stack.sh demo   offline, on the feed simulator
#   scripts/stack.sh live   on $RUGS_FEED_URL (default the live server)
# Ctrl-C stops everything; the recorder seals what it holds before it exits.
set -euo pipefail
cd "$(dirname "$0")/.."
mode=${1:?usage: stack.sh demo|live}
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
  mkdir -p "$RUGS_DATA_DIR"
fi
UI_HOST=${RUGS_UI_HOST:-127.0.0.1}
UI_PORT=${RUGS_UI_PORT:-3000}
SIM_PORT=${RUGS_SIM_PORT:-8765}
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
}
trap stop INT TERM EXIT

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

spawn "$BIN/dagster" dev -w workspace.yaml -h "$UI_HOST" -p "$UI_PORT" >>"$logs/dagster.log" 2>&1

cat <<MSG
rugs_pipeline ($mode) is running
  Dagster UI   http://$UI_HOST:$UI_PORT   (sensors and automation start on their own)
  data         $RUGS_DATA_DIR
  logs         $logs/{simulator,recorder,dagster}.log
  query        RUGS_DATA_DIR=$RUGS_DATA_DIR $BIN/rugs-pipeline query "SELECT count(*) FROM game_tick"
Ctrl-C stops everything.
MSG
wait -n "${pids[@]}" || true
[ -n "${stopping:-}" ] || echo "a process exited unexpectedly; see $logs" >&2

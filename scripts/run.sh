#!/usr/bin/env bash
# Runs a local Clover cluster under ./run: a standalone ZooKeeper (or, with ZK=3, an ensemble of three),
# FerretDB (SQLite), two servers and two clients with the example jobs in examples/. Ctrl-C stops every
# process it started.
# Ports can be moved with CLOVER_RUN_PORT_BASE (default 17700).
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
run="$root/run"
base=${CLOVER_RUN_PORT_BASE:-17700}
zk_port=$((base + 81)); mongo_port=$((base + 17))
api1=$((base + 0)); zmq1=$((base + 1)); api2=$((base + 10)); zmq2=$((base + 11)); mon=$((base + 90))
clover="$root/bin/clover"
ferretdb=$(scripts/ferretdb.sh)

for p in $zk_port $mongo_port $api1 $zmq1 $api2 $zmq2 $mon; do
  if (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then
    echo "run: port $p is in use (another 'make run'?). Stop it, or set CLOVER_RUN_PORT_BASE." >&2; exit 1
  fi
done

mkdir -p "$run"/{ferretdb/data,logs}
# Secure by default: CURVE keys for the servers and each client, the cluster secret, and API tokens (an
# admin's for the CLI, a viewer's for the monitor). Made once; a second run keeps them.
"$clover" keys gen --dir "$run/keys" --client client-a --client client-b --client client-tagged >/dev/null
if [ ! -s "$run/admin.token" ]; then
  (umask 077; "$clover" keys token --dir "$run/keys" --name make-run-admin --role admin >"$run/admin.token")
fi
if [ ! -s "$run/keys/monitor.token" ]; then
  (umask 077; "$clover" keys token --dir "$run/keys" --name monitor-1 --role viewer >"$run/keys/monitor.token")
fi
export CLOVER_KEYS_DIR="$run/keys"
pids=()
cleanup() {
  trap - INT TERM EXIT
  echo; echo "run: stopping..."
  for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  for _ in $(seq 1 90); do  # clients let runs under way end for up to 5 s
    alive=0; for pid in "${pids[@]}"; do kill -0 "$pid" 2>/dev/null && alive=1; done
    [ $alive = 0 ] && break; sleep 0.1
  done
  for pid in "${pids[@]}"; do kill -KILL "$pid" 2>/dev/null || true; done
  echo "run: stopped. Logs are in $run/logs."
}
trap cleanup EXIT
trap 'cleanup; exit 130' INT TERM  # a signal to this script alone (not Ctrl-C's to the group) ends it too

wait_port() { # port name
  for _ in $(seq 1 300); do (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0; sleep 0.1; done
  echo "run: $2 did not start on port $1; see $run/logs/$2.log" >&2; exit 1
}

# ZK=3 (make run ZK=3) runs a three-server ZooKeeper ensemble on ports zk_port, +1, +2 (quorum and
# election ports above them), as production does; the default is one standalone server.
zk_count=${ZK:-1}
case "$zk_count" in 1|3|5) ;; *) echo "run: ZK=$zk_count: want 1, 3 or 5 ZooKeeper servers" >&2; exit 1;; esac
zk_servers=""; zk_lines=""
for i in $(seq 1 "$zk_count"); do
  zk_servers+="${zk_servers:+,}127.0.0.1:$((zk_port + i - 1))"
  [ "$zk_count" -gt 1 ] && zk_lines+="server.$i=127.0.0.1:$((base + 200 + i)):$((base + 210 + i))"$'\n'
done
for i in $(seq 1 "$zk_count"); do
  dir="$run/zookeeper"; [ "$zk_count" -gt 1 ] && dir="$run/zookeeper-$i"
  mkdir -p "$dir/data"
  [ "$zk_count" -gt 1 ] && echo "$i" >"$dir/data/myid"
  cat > "$dir/zoo.cfg" <<CFG
tickTime=500
initLimit=10
syncLimit=5
dataDir=$dir/data
clientPort=$((zk_port + i - 1))
clientPortAddress=127.0.0.1
admin.enableServer=false
4lw.commands.whitelist=ruok,srvr,stat,mntr,cons
$zk_lines
CFG
  log=zookeeper; [ "$zk_count" -gt 1 ] && log="zookeeper-$i"
  JMXDISABLE=true ZOO_LOG_DIR="$run/logs" /usr/share/zookeeper/bin/zkServer.sh start-foreground "$dir/zoo.cfg" >"$run/logs/$log.log" 2>&1 &
  pids+=($!)
done
for i in $(seq 1 "$zk_count"); do
  log=zookeeper; [ "$zk_count" -gt 1 ] && log="zookeeper-$i"
  wait_port $((zk_port + i - 1)) "$log"
done
if [ "$zk_count" -gt 1 ]; then  # the ensemble serves once a quorum has elected its leader
  for _ in $(seq 1 300); do
    for i in $(seq 1 "$zk_count"); do
      (exec 3<>"/dev/tcp/127.0.0.1/$((zk_port + i - 1))"; echo srvr >&3; cat <&3) 2>/dev/null | grep -q "Mode: leader" && break 2
    done
    sleep 0.2
  done
fi

"$ferretdb" --handler=sqlite --sqlite-url="file:$run/ferretdb/data/" --listen-addr="127.0.0.1:$mongo_port" \
  --telemetry=disable --debug-addr=- --state-dir="$run/ferretdb" --log-level=warn >"$run/logs/ferretdb.log" 2>&1 &
pids+=($!)
wait_port $mongo_port ferretdb

export CLOVER_ZOOKEEPER_SERVERS="$zk_servers"
export CLOVER_MONGO_URI="mongodb://127.0.0.1:$mongo_port/"
# Clients keep what no server takes in the fallback queue (MongoDB), or in a local spool while MongoDB is
# down too. Servers do not read these keys.
export CLOVER_FALLBACK_MONGO_URI="$CLOVER_MONGO_URI" CLOVER_FALLBACK_SPOOL_DIR="$run/spool"
# Clients journal the runs they start there: one killed and restarted reports what ended meanwhile.
export CLOVER_STATE_DIR="$run/state"
# A store made by an earlier version (a run folder kept from before) has its open set and audit log in its
# own database: moved to theirs while no server runs. A new store needs nothing; a failure leaves the
# store as it was, which works (slower on FerretDB). Servers of a run killed a moment ago stay registered
# for their session timeout: wait that out.
for try in 1 2 3; do
  if "$clover" server split-store --config examples/server.yaml >>"$run/logs/split-store.log" 2>&1; then break; fi
  [ $try = 3 ] && echo "warning: the store was not split (see $run/logs/split-store.log); it works as it is" >&2 || sleep 6
done
"$clover" server --config examples/server.yaml --id server-1 --api-listen "127.0.0.1:$api1" --listen "tcp://127.0.0.1:$zmq1" >"$run/logs/server-1.log" 2>&1 &
pids+=($!)
"$clover" server --config examples/server.yaml --id server-2 --api-listen "127.0.0.1:$api2" --listen "tcp://127.0.0.1:$zmq2" >"$run/logs/server-2.log" 2>&1 &
pids+=($!)
wait_port $api1 server-1
wait_port $api2 server-2
"$clover" client --config examples/client-a.yaml >"$run/logs/client-a.log" 2>&1 &
pids+=($!)
"$clover" client --config examples/client-b.yaml >"$run/logs/client-b.log" 2>&1 &
pids+=($!)
# The monitor: it records what dies or hangs as alerts (`clover alert list`) and mails them when
# CLOVER_SMTP_HOST (and _PORT, _FROM, _USERNAME, _PASSWORD) is set.
CLOVER_TOKEN_FILE="$run/keys/monitor.token" CLOVER_OPERATORS="${CLOVER_OPERATORS:-ops@example.com}" "$clover" monitor --id monitor-1 --listen "127.0.0.1:$mon" \
  >"$run/logs/monitor-1.log" 2>&1 &
pids+=($!)
# A client that declares its jobs in Go code (tagged handler fields) and serves the file jobs' handlers.
"$root/bin/clover-tagged" -zookeeper "$zk_servers" >"$run/logs/client-tagged.log" 2>&1 &
pids+=($!)

export CLOVER_API="http://127.0.0.1:$api1" CLOVER_TOKEN_FILE="$run/admin.token"
for _ in $(seq 1 100); do
  "$clover" cluster status 2>/dev/null | grep -q "^leader: *server" && break; sleep 0.1
done
# One job made through the API, beside the ones the clients declare.
"$clover" job add api-date --schedule "*/15 * * * * ?" --command 'date -u +"api job ran at %T"' >/dev/null 2>&1 || true
# A batch workflow declared in a job file: two jobs without a schedule (they run only in the batch), the
# year-end batch, and a run of it for today's cycle.
"$clover" config apply examples/year-end.yaml >"$run/logs/config-year-end.log" 2>&1 || true
"$clover" batch run year-end --cycle "$(date -u +%F)" --frequency Y --why "make run" >/dev/null 2>&1 || true
# The jobs of a Spring-like job file, applied through the API and kept in step with the file: edit
# examples/jobs.yaml while this runs and the change is applied (an invalid edit is refused as a whole).
"$clover" config apply examples/jobs.yaml --profile dev --watch >"$run/logs/config.log" 2>&1 &
pids+=($!)

cat <<MSG

Clover is running (everything lives in $run):
$("$clover" cluster status | sed 's/^/  /')

  Console:       http://127.0.0.1:$api1/ui/  (log in with the token in $run/admin.token:
                 $(cat "$run/admin.token"); any server serves it, e.g. http://127.0.0.1:$api2/ui/)
  Logs:          $run/logs/  (server-1.log, server-2.log, client-a.log, client-b.log, client-tagged.log,
                 monitor-1.log, config.log, zookeeper*.log, ferretdb.log)
  ZooKeeper:     $zk_servers  ($zk_count server(s); make run ZK=3 runs an ensemble of three)
  Use the CLI:   export CLOVER_API=$CLOVER_API CLOVER_TOKEN_FILE=$CLOVER_TOKEN_FILE
                 bin/clover job list
                 bin/clover exec list --limit 10
                 bin/clover job trigger go-hello
                 bin/clover exec live          (what the leader tracks now: waiting, running, retrying...)
                 bin/clover job next nightly-etl -n 5
  Batches:       bin/clover batch status year-end $(date -u +%F)   (or the console's Batches page)
                 bin/clover batch run year-end --cycle 2026-12-31 --frequency Y
                 bin/clover batch rerun|pause|resume|stop year-end <cycle>
  Job files:     examples/jobs.yaml is applied live (profile dev): edit it and watch run/logs/config.log
                 bin/clover config validate examples/jobs.yaml examples/jobs.xml   (the same jobs twice: an error)
                 bin/clover config validate examples/jobs.xml --profile prod
  Monitor:       bin/clover alert list   (kill client-b: an alert opens; it clears when the client is back)
                 bin/clover contact add owner --email owner@example.com; set CLOVER_SMTP_HOST to mail
  REST API:      curl -H "Authorization: Bearer \$(cat $CLOVER_TOKEN_FILE)" $CLOVER_API/api/v1/cluster
                 (second server: http://127.0.0.1:$api2; without the token: 401)
  Metrics:       curl -H "Authorization: Bearer \$(cat $CLOVER_TOKEN_FILE)" $CLOVER_API/metrics
  Security:      keys and tokens are in $run/keys (see README, "Security model"); every ZeroMQ socket
                 is CURVE, the API takes tokens, ZooKeeper nodes have ACLs; bin/clover audit list
  Failover:      kill the leader named above and run 'bin/clover cluster status --api http://127.0.0.1:$api2'
  Outage:        pkill -STOP -f 'clover server'; sleep 15; pkill -CONT -f 'clover server'
                 (no server answers for 15 s: clients queue their results in MongoDB, and the leader
                 replays them once the servers are back; 'bin/clover fallback status' shows it)
  Stop:          Ctrl-C (stops every process started here)

MSG
# Keep running until Ctrl-C, even when a member is killed on purpose (to watch a failover).
names=()
if [ "$zk_count" -gt 1 ]; then for i in $(seq 1 "$zk_count"); do names+=("zookeeper-$i"); done; else names+=(zookeeper); fi
names+=(ferretdb server-1 server-2 client-a client-b monitor-1 client-tagged config)
declare -A reported=()
while sleep 1; do
  for i in "${!pids[@]}"; do
    if [ -z "${reported[$i]:-}" ] && ! kill -0 "${pids[$i]}" 2>/dev/null; then
      echo "run: ${names[$i]} (pid ${pids[$i]}) exited; see $run/logs/${names[$i]}.log" >&2
      reported[$i]=1
    fi
  done
done

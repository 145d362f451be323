#!/usr/bin/env bash
# A real single-node SLURM cluster on this machine, for tests: munge, MariaDB + slurmdbd
# (so `sacct` answers, as on real clusters), slurmctld and slurmd, with fake GPUs as GRES.
#
#   tests/slurm/cluster.sh install   # apt-get install slurm-wlm, munge, slurmdbd, mariadb (root)
#   tests/slurm/cluster.sh up        # start everything; prints `export SLURM_CONF=...`
#   tests/slurm/cluster.sh status    # sinfo, squeue and the daemons' PIDs
#   tests/slurm/cluster.sh logs      # the tail of every daemon log (for failures)
#   tests/slurm/cluster.sh down      # stop the daemons (by PID file) and remove the state
#
# Needs root (daemons run as root, no systemd). All state lives in $VLCORE_SLURM_DIR
# (default /tmp/vlcore-slurm). The client commands read $SLURM_CONF, and also
# /etc/slurm/slurm.conf, which becomes a symlink to ours: the SLURM job-step executor of
# Snakemake strips every SLURM_* variable before its inner srun. An existing regular file
# there is never touched (we refuse to start). Ports: VLCORE_SLURM_PORT_BASE (default 16817)
# for slurmctld, +1 slurmd, +2 slurmdbd, +3 MariaDB (TCP on 127.0.0.1 only).
#
# The node has the machine's CPUs, 90% of its memory, and VLCORE_SLURM_GPUS (default 2) fake
# GPUs of type VLCORE_SLURM_GPU_TYPE (default fakegpu), backed by character devices made with
# mknod (a GPU line without File= is dropped by slurmd and the node drains). Jobs see
# CUDA_VISIBLE_DEVICES but no CUDA device: the workflow's code falls back to the CPU.
# The partition is `vlcore`, the account `vlcore_ci` (root is its user).
set -euo pipefail

STATE=${VLCORE_SLURM_DIR:-/tmp/vlcore-slurm}
PORT_BASE=${VLCORE_SLURM_PORT_BASE:-16817}
GPUS=${VLCORE_SLURM_GPUS:-2}
GPU_TYPE=${VLCORE_SLURM_GPU_TYPE:-fakegpu}
PARTITION=vlcore
ACCOUNT=vlcore_ci
CLUSTER=vlcore
ETC_CONF=/etc/slurm/slurm.conf
CONF=$STATE/etc/slurm.conf
MUNGE_SOCKET=$STATE/munge/munge.socket
DB_SOCKET=$STATE/mysql/mysqld.sock
PACKAGES=(slurm-wlm slurm-client munge slurmdbd mariadb-server mariadb-client)
CTLD_PORT=$PORT_BASE
SLURMD_PORT=$((PORT_BASE + 1))
DBD_PORT=$((PORT_BASE + 2))
DB_PORT=$((PORT_BASE + 3))

log() { echo "[cluster.sh] $*" >&2; }
die() {
  log "ERROR: $*"
  show_logs >&2 || true
  exit 1
}

need_root() {
  [ "$(id -u)" -eq 0 ] || { log "ERROR: needs root (daemons run as root)"; exit 1; }
}

# wait_for SECONDS DESCRIPTION COMMAND...: poll COMMAND every half second.
wait_for() {
  local seconds=$1 what=$2
  shift 2
  local deadline=$((SECONDS + seconds))
  until "$@" >/dev/null 2>&1; do
    [ $SECONDS -lt $deadline ] || die "timed out after ${seconds}s waiting for $what"
    sleep 0.5
  done
}

install() {
  need_root
  local missing=()
  for pkg in "${PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "ok installed" || missing+=("$pkg")
  done
  if [ ${#missing[@]} -eq 0 ]; then
    log "packages already installed"
    return
  fi
  log "installing ${missing[*]}"
  # Keep the packages' post-install scripts from starting system services.
  local guard=/usr/sbin/policy-rc.d created=0
  if [ ! -e $guard ]; then
    printf '#!/bin/sh\nexit 101\n' >$guard
    chmod +x $guard
    created=1
  fi
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" \
    >/dev/null
  [ $created -eq 0 ] || rm -f $guard
}

alive() { # alive PIDFILE
  [ -s "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null
}

# A daemon's config lines are written once per `up`; re-running `up` on a live cluster is a no-op.
write_configs() {
  local host cpus boards sockets cores threads mem
  host=$(hostname -s)
  local topo
  topo=$(slurmd -C | head -1)
  field() { sed -n "s/.*\b$1=\([0-9]*\).*/\1/p" <<<"$topo"; }
  cpus=$(field CPUs)
  boards=$(field Boards)
  sockets=$(field SocketsPerBoard)
  cores=$(field CoresPerSocket)
  threads=$(field ThreadsPerCore)
  mem=$(($(field RealMemory) * 9 / 10))
  mkdir -p "$STATE"/{etc,log,run,ctld,spool,gpu}
  local gpu_files="" i
  for ((i = 0; i < GPUS; i++)); do
    [ -e "$STATE/gpu/gpu$i" ] || mknod "$STATE/gpu/gpu$i" c 1 3 # like /dev/null
  done
  [ "$GPUS" -gt 0 ] && gpu_files="$STATE/gpu/gpu[0-$((GPUS - 1))]"

  cat >"$CONF" <<EOF
# Written by tests/slurm/cluster.sh: a throw-away single-node cluster.
ClusterName=$CLUSTER
SlurmctldHost=$host(127.0.0.1)
SlurmctldPort=$CTLD_PORT
SlurmdPort=$SLURMD_PORT
AuthType=auth/munge
AuthInfo=socket=$MUNGE_SOCKET
CredType=cred/munge
SlurmUser=root
SlurmdUser=root
StateSaveLocation=$STATE/ctld
SlurmdSpoolDir=$STATE/spool
SlurmctldPidFile=$STATE/run/slurmctld.pid
SlurmdPidFile=$STATE/run/slurmd.pid
SlurmctldLogFile=$STATE/log/slurmctld.log
SlurmdLogFile=$STATE/log/slurmd.log
SlurmctldDebug=info
SlurmdDebug=info
ProctrackType=proctrack/linuxproc
TaskPlugin=task/affinity
MpiDefault=none
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
# Without a default, a job with no --mem takes the whole node.
DefMemPerCPU=1000
ReturnToService=2
# Finished jobs stay visible to squeue/scontrol for 5 minutes.
MinJobAge=300
GresTypes=gpu
JobAcctGatherType=jobacct_gather/linux
JobAcctGatherFrequency=10
AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=localhost
AccountingStoragePort=$DBD_PORT
AccountingStoragePass=$MUNGE_SOCKET
AccountingStorageTRES=gres/gpu
# sacct shows the rule in the Comment field (the plugin sets --comment rule_<name>...).
AccountingStoreFlags=job_comment
NodeName=$host NodeAddr=127.0.0.1 CPUs=$cpus Boards=$boards SocketsPerBoard=$sockets CoresPerSocket=$cores ThreadsPerCore=$threads RealMemory=$mem Gres=gpu:$GPU_TYPE:$GPUS State=UNKNOWN
PartitionName=$PARTITION Nodes=$host Default=YES MaxTime=INFINITE State=UP
EOF
  # gres.conf is looked up next to the slurm.conf a daemon is given.
  if [ "$GPUS" -gt 0 ]; then
    echo "NodeName=$host Name=gpu Type=$GPU_TYPE File=$gpu_files" >"$STATE/etc/gres.conf"
  else
    : >"$STATE/etc/gres.conf"
  fi
  # slurmdbd reads slurmdbd.conf next to $SLURM_CONF; it must be mode 600.
  (
    umask 077
    cat >"$STATE/etc/slurmdbd.conf" <<EOF
AuthType=auth/munge
AuthInfo=socket=$MUNGE_SOCKET
DbdHost=localhost
DbdPort=$DBD_PORT
SlurmUser=root
LogFile=$STATE/log/slurmdbd.log
PidFile=$STATE/run/slurmdbd.pid
StorageType=accounting_storage/mysql
StorageHost=127.0.0.1
StoragePort=$DB_PORT
StorageUser=slurm
StoragePass=slurm
StorageLoc=slurm_acct_db
EOF
  )
}

link_etc_conf() {
  mkdir -p "$(dirname $ETC_CONF)"
  if [ -L $ETC_CONF ]; then
    [ "$(readlink $ETC_CONF)" = "$CONF" ] && return
    die "$ETC_CONF links to $(readlink $ETC_CONF), not to this cluster's $CONF; remove it first"
  fi
  [ ! -e $ETC_CONF ] || die "$ETC_CONF is a regular file (a real SLURM set-up?); not touching it"
  ln -s "$CONF" $ETC_CONF
}

start_munge() {
  alive "$STATE/munge/munged.pid" && return
  mkdir -p "$STATE/munge"
  chmod 755 "$STATE/munge" # clients fail with "Socket is inaccessible" otherwise
  [ -s "$STATE/munge/munge.key" ] || mungekey --create --keyfile="$STATE/munge/munge.key"
  chmod 600 "$STATE/munge/munge.key"
  munged --force --socket="$MUNGE_SOCKET" --key-file="$STATE/munge/munge.key" \
    --pid-file="$STATE/munge/munged.pid" --log-file="$STATE/log/munged.log" \
    --seed-file="$STATE/munge/munged.seed"
  wait_for 20 "munged" test -S "$MUNGE_SOCKET"
}

start_mariadb() {
  alive "$STATE/run/mariadb.pid" && return
  if [ ! -d "$STATE/mysql/mysql" ]; then
    mkdir -p "$STATE/mysql"
    mariadb-install-db --no-defaults --user=root --datadir="$STATE/mysql" \
      --auth-root-authentication-method=socket --skip-test-db >"$STATE/log/mariadb-install.log" 2>&1 ||
      die "mariadb-install-db failed (see $STATE/log/mariadb-install.log)"
  fi
  # Recommended by slurmdbd (it logs an error for smaller values).
  nohup mariadbd --no-defaults --user=root --datadir="$STATE/mysql" --socket="$DB_SOCKET" \
    --port=$DB_PORT --bind-address=127.0.0.1 --skip-name-resolve \
    --pid-file="$STATE/run/mariadb.pid" --log-error="$STATE/log/mariadb.log" \
    --innodb-buffer-pool-size=128M --innodb-lock-wait-timeout=900 >/dev/null 2>&1 &
  wait_for 60 "MariaDB" mariadb-admin --no-defaults --socket="$DB_SOCKET" ping
  mariadb --no-defaults --socket="$DB_SOCKET" -u root <<'EOF'
CREATE USER IF NOT EXISTS 'slurm'@'127.0.0.1' IDENTIFIED BY 'slurm';
GRANT ALL ON slurm_acct_db.* TO 'slurm'@'127.0.0.1';
EOF
}

start_slurm() {
  export SLURM_CONF=$CONF
  if ! alive "$STATE/run/slurmdbd.pid"; then
    slurmdbd
    wait_for 60 "slurmdbd" sacctmgr -n list cluster
  fi
  # The cluster and the account jobs are charged to (the SLURM plugin checks it with sacctmgr).
  sacctmgr -i -n list cluster format=cluster | grep -qw $CLUSTER || sacctmgr -i add cluster $CLUSTER >/dev/null
  sacctmgr -i -n list account format=account | grep -qw $ACCOUNT ||
    sacctmgr -i add account $ACCOUNT cluster=$CLUSTER description=tests organization=vlcore >/dev/null
  sacctmgr -i -n list user root format=account%30 | grep -qw $ACCOUNT ||
    sacctmgr -i add user root account=$ACCOUNT cluster=$CLUSTER >/dev/null
  alive "$STATE/run/slurmctld.pid" || slurmctld -f "$CONF"
  wait_for 60 "slurmctld" scontrol ping
  alive "$STATE/run/slurmd.pid" || slurmd -f "$CONF"
  wait_for 60 "the node to register" sh -c "sinfo -h -N -o %T | grep -qvE 'unknown|not_responding|^$'"
  # A drain reason survives in the saved state of an earlier run: resume the node.
  if sinfo -h -N -o %T | grep -qE 'drain|down|inval'; then
    scontrol update nodename="$(hostname -s)" state=resume || true
  fi
  wait_for 60 "the node to be idle" sh -c "sinfo -h -N -o %T | grep -qE '^(idle|mixed|allocated)'"
  # The accounting database answers for this cluster only once slurmctld registered with it.
  wait_for 60 "sacct to answer" sacct -n -X -S now
}

up() {
  need_root
  for cmd in slurmctld slurmd slurmdbd munged mariadbd sacct mknod; do
    command -v $cmd >/dev/null || die "$cmd is missing: run '$0 install' first"
  done
  # Torch's rendezvous (multi-process training inside a job) reaches the node by its name.
  getent hosts "$(hostname -s)" >/dev/null ||
    die "this machine's name $(hostname -s) does not resolve: add '127.0.0.1 $(hostname -s)' to /etc/hosts"
  write_configs
  link_etc_conf
  start_munge
  start_mariadb
  start_slurm
  log "up: partition $PARTITION, account $ACCOUNT, $GPUS fake GPU(s) of type $GPU_TYPE"
  echo "export SLURM_CONF=$CONF"
}

stop_pidfile() { # stop_pidfile NAME PIDFILE
  local name=$1 pidfile=$2 pid i
  alive "$pidfile" || return 0
  pid=$(cat "$pidfile")
  kill "$pid" 2>/dev/null || true
  for ((i = 0; i < 60; i++)); do
    kill -0 "$pid" 2>/dev/null || return 0
    sleep 0.5
  done
  log "$name ($pid) did not stop in 30 s; killing it"
  kill -9 "$pid" 2>/dev/null || true
}

down() {
  need_root
  if [ -f "$CONF" ] && command -v scancel >/dev/null && alive "$STATE/run/slurmctld.pid"; then
    SLURM_CONF=$CONF scancel --user=root --quiet 2>/dev/null || true
  fi
  stop_pidfile slurmd "$STATE/run/slurmd.pid"
  stop_pidfile slurmctld "$STATE/run/slurmctld.pid"
  stop_pidfile slurmdbd "$STATE/run/slurmdbd.pid"
  stop_pidfile mariadbd "$STATE/run/mariadb.pid"
  stop_pidfile munged "$STATE/munge/munged.pid"
  if [ -L $ETC_CONF ] && [ "$(readlink $ETC_CONF)" = "$CONF" ]; then
    rm -f $ETC_CONF
  fi
  if [ "${1:-}" != "--keep" ]; then
    rm -rf "$STATE"
  fi
  log "down"
}

show_logs() {
  local f
  for f in "$STATE"/log/*.log; do
    [ -f "$f" ] || continue
    echo "===== $f (last 40 lines) ====="
    tail -n 40 "$f"
  done
}

status() {
  export SLURM_CONF=$CONF
  local name
  for name in munge/munged run/mariadb run/slurmdbd run/slurmctld run/slurmd; do
    if alive "$STATE/$name.pid"; then
      echo "$(basename $name): running ($(cat "$STATE/$name.pid"))"
    else
      echo "$(basename $name): stopped"
    fi
  done
  sinfo -N -o "%N %T %c %m %G %E" 2>&1 || true
  squeue 2>&1 || true
}

case "${1:-}" in
install) install ;;
up) up ;;
down) down "${2:-}" ;;
logs) show_logs ;;
status) status ;;
*)
  echo "usage: $0 install|up|down [--keep]|logs|status" >&2
  exit 2
  ;;
esac

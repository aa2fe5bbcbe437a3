#!/usr/bin/env bash
# A single-node SLURM cluster on this machine, for testing examples/cluster/slurm-array.sh
# (test/slurm.test.ts). Everything lives in one directory: a generated munge key and slurm.conf,
# the daemons' state, logs and pid files. Every address is 127.0.0.1; nothing is installed as a
# service and nothing outside DIR is written except the packages.
#
#   bash scripts/slurm-local.sh install     # apt-get install slurm-wlm munge if missing (root)
#   bash scripts/slurm-local.sh start DIR   # install, configure, start munged, slurmctld, slurmd;
#                                           # returns once sinfo shows the node idle
#   bash scripts/slurm-local.sh stop DIR    # cancel every job, stop the three daemons
#
# Then use the cluster with SLURM_CONF=DIR/slurm.conf (sbatch, squeue, scancel, sinfo).
# start and stop are safe to run twice: start leaves running daemons alone, stop those gone.
# Exit status 3 means this host cannot run it (not root, apt unreachable): stderr says why.
set -euo pipefail

CANNOT=3
NODE=dinofeat-node
DAEMONS=(slurmd slurmctld munged) # in the order they are stopped

cannot() { echo "slurm-local: cannot run here: $*" >&2; exit "$CANNOT"; }
fail() { echo "slurm-local: $*" >&2; exit 1; }

install() {
  if command -v slurmctld >/dev/null && command -v slurmd >/dev/null && command -v munged >/dev/null && command -v sbatch >/dev/null; then
    return 0
  fi
  [[ $(id -u) == 0 ]] || cannot "slurm-wlm and munge are not installed and installing them needs root"
  command -v apt-get >/dev/null || cannot "slurm-wlm and munge are not installed and there is no apt-get"
  # Debian's packages would start munge as a service; only the daemons below may run.
  local log
  log=$(mktemp)
  if ! apt-get update >"$log" 2>&1; then tail -5 "$log" >&2; rm -f "$log"; cannot "apt-get update failed (apt unreachable?)"; fi
  if ! DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends slurm-wlm munge >"$log" 2>&1; then
    tail -5 "$log" >&2; rm -f "$log"; cannot "apt-get install slurm-wlm munge failed"
  fi
  rm -f "$log"
}

alive() { [[ -s $1 ]] && kill -0 "$(cat "$1")" 2>/dev/null; }

# A TCP port nothing on 127.0.0.1 answers, from 16817 up (SLURM's defaults 6817/6818 may be taken).
free_port() {
  local port=${1:-16817}
  while (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; do port=$((port + 1)); done
  echo "$port"
}

configure() {
  local dir=$1
  mkdir -p "$dir"/state "$dir"/spool "$dir"/munge
  chmod 700 "$dir"/munge
  [[ -s $dir/munge/munge.key ]] || mungekey --create --keyfile="$dir/munge/munge.key"
  [[ -s $dir/slurm.conf ]] && return 0
  local ctld_port slurmd_port hardware
  ctld_port=$(free_port)
  slurmd_port=$(free_port $((ctld_port + 1)))
  # This machine's CPUs, topology and memory, as slurmd itself sees them (a mismatch drains the node).
  hardware=$(slurmd -C | head -1 | sed 's/^NodeName=[^ ]* //')
  cat >"$dir/slurm.conf.tmp" <<EOF
ClusterName=dinofeat-local
SlurmctldHost=$(uname -n | cut -d. -f1)(127.0.0.1)
SlurmctldPort=$ctld_port
SlurmdPort=$slurmd_port
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket=$dir/munge/munge.socket
StateSaveLocation=$dir/state
SlurmdSpoolDir=$dir/spool
SlurmctldPidFile=$dir/slurmctld.pid
SlurmdPidFile=$dir/slurmd.pid
SlurmctldLogFile=$dir/slurmctld.log
SlurmdLogFile=$dir/slurmd.log
# A task's processes are its process group, so killing a task kills all of them, as cgroups do on a
# real cluster (cgroups may not be writable in a container; proctrack/linuxproc walks parent pids
# and misses npx's node once the batch shell is gone: it ran on after scancel --signal=KILL).
ProctrackType=proctrack/pgid
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
MpiDefault=none
SwitchType=switch/none
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
ReturnToService=2
SlurmdTimeout=60
NodeName=$NODE NodeAddr=127.0.0.1 $hardware State=UNKNOWN
PartitionName=local Nodes=$NODE Default=YES MaxTime=INFINITE State=UP
EOF
  mv "$dir/slurm.conf.tmp" "$dir/slurm.conf"
}

start() {
  local dir
  dir=$(realpath -m "$1")
  install
  [[ $(id -u) == 0 ]] || cannot "slurmd runs jobs as root here, which needs root"
  configure "$dir"
  export SLURM_CONF=$dir/slurm.conf
  alive "$dir/munged.pid" || munged --force --key-file="$dir/munge/munge.key" --socket="$dir/munge/munge.socket" \
    --pid-file="$dir/munged.pid" --log-file="$dir/munged.log" --seed-file="$dir/munge/munged.seed"
  alive "$dir/slurmctld.pid" || slurmctld -f "$SLURM_CONF"
  alive "$dir/slurmd.pid" || slurmd -f "$SLURM_CONF" -N "$NODE"
  local state=''
  for _ in $(seq 120); do
    state=$(sinfo -h -N -n "$NODE" -o '%t' 2>/dev/null || true)
    [[ $state == idle ]] && return 0
    sleep 0.5
  done
  for log in munged slurmctld slurmd; do echo "--- $dir/$log.log" >&2; tail -20 "$dir/$log.log" >&2 || true; done
  fail "node $NODE is not idle after 60 s (state: '${state:-no answer}')"
}

stop() {
  local dir
  dir=$(realpath -m "$1")
  export SLURM_CONF=$dir/slurm.conf
  if alive "$dir/slurmctld.pid"; then
    # Jobs first, so no slurmstepd outlives the cluster.
    local jobs
    jobs=$(squeue -h -o '%A' 2>/dev/null || true)
    if [[ -n $jobs ]]; then
      # shellcheck disable=SC2086 # one job id per word
      scancel --signal=KILL $jobs 2>/dev/null || true
      for _ in $(seq 60); do [[ -z $(squeue -h -o '%A' 2>/dev/null) ]] && break; sleep 0.5; done
    fi
  fi
  local daemon pid
  for daemon in "${DAEMONS[@]}"; do
    alive "$dir/$daemon.pid" || continue
    pid=$(cat "$dir/$daemon.pid")
    kill -TERM "$pid"
    for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
    if kill -0 "$pid" 2>/dev/null; then kill -KILL "$pid"; fi
  done
}

case "${1:-}" in
  install) install ;;
  start) [[ -n ${2:-} ]] || fail "usage: $0 start DIR"; start "$2" ;;
  stop) [[ -n ${2:-} ]] || fail "usage: $0 stop DIR"; stop "$2" ;;
  *) fail "usage: $0 install | start DIR | stop DIR" ;;
esac

#!/bin/bash
# Runs `posembed slurm` against a real single-node SLURM cluster: starts
# munge, slurmctld and slurmd from Debian's packages in a scratch directory
# (as root, no systemd), submits the generated job array and merge job, waits
# for them, and checks that the merged eval frame and report equal those of
# an unsharded `posembed run`. Needs root and:
#   apt-get install -y --no-install-recommends munge slurmctld slurmd slurm-client
# Usage: bash tests/slurm_cluster.sh [path/to/posembed]   (default: target/release/posembed)
set -euo pipefail

POSEMBED=$(realpath "${1:-target/release/posembed}")
D=$(mktemp -d /tmp/posembed-slurm.XXXXXX)
chmod 755 "$D"
mkdir -p "$D"/{etc,state,spool,log,run,munge,work}
HOST=$(hostname -s)
MEM=$(( $(awk '/MemTotal/ {print int($2 / 1024)}' /proc/meminfo) - 1024 ))
CPUS=$(nproc)

cleanup() {
    scancel --user=root 2>/dev/null || true
    for f in "$D"/run/slurmd.pid "$D"/run/slurmctld.pid "$D"/run/munged.pid; do
        [ -f "$f" ] && kill -TERM "$(cat "$f")" 2>/dev/null || true
    done
}
trap cleanup EXIT

mungekey --create --force --keyfile="$D/munge/munge.key"
setsid munged --foreground --force --key-file="$D/munge/munge.key" \
    --socket="$D/run/munge.socket" --pid-file="$D/run/munged.pid" \
    --seed-file="$D/munge/seed" --log-file="$D/log/munged.log" </dev/null >/dev/null 2>&1 &

cat > "$D/etc/slurm.conf" <<EOF
ClusterName=posembed
SlurmctldHost=$HOST(127.0.0.1)
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket=$D/run/munge.socket
StateSaveLocation=$D/state
SlurmdSpoolDir=$D/spool
SlurmctldPidFile=$D/run/slurmctld.pid
SlurmdPidFile=$D/run/slurmd.pid
SlurmctldLogFile=$D/log/slurmctld.log
SlurmdLogFile=$D/log/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
SchedulerType=sched/backfill
SchedulerParameters=batch_sched_delay=0
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
SlurmdParameters=config_overrides
DependencyParameters=kill_invalid_depend
ReturnToService=2
MinJobAge=3600
MailProg=/bin/true
NodeName=$HOST NodeAddr=127.0.0.1 CPUs=$CPUS RealMemory=$MEM
PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP
EOF
export SLURM_CONF="$D/etc/slurm.conf"
setsid slurmctld -D -f "$SLURM_CONF" </dev/null >/dev/null 2>&1 &
for _ in $(seq 100); do scontrol ping >/dev/null 2>&1 && break; sleep 0.1; done
setsid slurmd -D -f "$SLURM_CONF" </dev/null >/dev/null 2>&1 &
for _ in $(seq 100); do [ "$(sinfo -h -N -o %t 2>/dev/null)" = idle ] && break; sleep 0.1; done
echo "cluster up: $(sinfo -h -N -o '%N %t %c')"

cd "$D/work"
cat > sweep.yaml <<'EOF'
name: slurm_sweep
seeds: [0, 1]
defaults:
  model: {d_model: 16, ff: 64, layers: 1, heads: 2}
  positional: {scheme: none}
  task: {name: copy, symbols: 4, train_lengths: [1, 4]}
  train: {steps: 60, batch_size: 8, lr: 3.0e-3, warmup: 5, log_every: 20}
  eval: {lengths: [2, 4, 6], samples: 16}
grid:
  positional.scheme: [none, alibi, rope]
EOF

"$POSEMBED" slurm sweep.yaml --array-size 3 --time 00:10:00 --partition debug
output=$(bash results/slurm_sweep/slurm/submit.sh)
echo "$output"
merge_job=$(echo "$output" | awk '{print $NF}')

state=""
for _ in $(seq 600); do
    state=$(scontrol -o show job "$merge_job" | sed -n 's/.*JobState=\([A-Z_]*\).*/\1/p')
    case "$state" in COMPLETED|FAILED|CANCELLED|TIMEOUT|NODE_FAIL) break ;; esac
    sleep 0.2
done
echo "merge job $merge_job: $state"
cat results/slurm_sweep/slurm/logs/*.out
[ "$state" = COMPLETED ] || { echo "FAIL: merge job ended $state"; exit 1; }

"$POSEMBED" run sweep.yaml --results-dir unsharded/results --reports-dir unsharded/reports --jobs 2 >/dev/null 2>&1
cmp results/slurm_sweep/eval.parquet unsharded/results/slurm_sweep/eval.parquet
cmp reports/slurm_sweep/summary.md unsharded/reports/slurm_sweep/summary.md
echo "OK: SLURM array + merge equals the unsharded run (eval.parquet and summary.md identical)"

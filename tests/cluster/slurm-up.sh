#!/usr/bin/env bash
# Start a single-node SLURM test cluster on this machine: this host is the controller and the
# only compute node, partition `debug` (default), no accounting database, no cgroups.
#
#   bash tests/cluster/slurm-up.sh      # install if needed, configure, start, wait idle, smoke test
#   bash tests/cluster/slurm-down.sh    # stop everything again (tests call it in a finalizer)
#
# Needs root and Debian (bookworm: SLURM 22.05, munge 0.5.15). Idempotent: packages are installed
# only when missing, daemons that already run with the same slurm.conf are left alone, so a
# second call costs a few seconds. Exits non-zero with a message on stderr when the cluster
# cannot be brought up (the tests turn that into a failure, never a skip).
#
# Settings that matter (see ../../profiles/README.md and the slurm research notes):
#   AccountingStorageType=accounting_storage/none  -> `sacct` does not work; snakemake's SLURM
#       plugin must poll with `squeue` (profiles/slurm: slurm-status-command: squeue),
#   MinJobAge=600   finished jobs stay visible to squeue for 10 min (the plugin needs >= 120 s),
#   JobCompType=jobcomp/filetxt  one line per finished job in $JOBCOMP (evidence for tests),
#   proctrack/linuxproc + task/none  no cgroups (works in containers and micro-VMs).
set -euo pipefail

SLURM_CONF=/etc/slurm/slurm.conf
JOBCOMP=/var/log/slurm/jobcomp.log
PACKAGES=(slurmctld slurmd slurm-client munge)
HOST=$(hostname -s)

say() { echo "slurm-up: $*" >&2; }
die() {
    echo "slurm-up: ERROR: $*" >&2
    for log in /var/log/slurm/slurmctld.log /var/log/slurm/slurmd.log /var/log/munge/munged.log; do
        [ -s "$log" ] && { echo "--- last lines of $log" >&2; tail -n 15 "$log" >&2; }
    done
    exit 1
}

[ "$(id -u)" = 0 ] || die "must run as root (installs Debian packages and starts daemons)"
command -v apt-get >/dev/null || die "needs a Debian-like system with apt-get"

# ---------------------------------------------------------------- install (only what is missing)
missing=0
for bin in /usr/sbin/slurmctld /usr/sbin/slurmd /usr/bin/sinfo /usr/bin/sbatch /usr/sbin/munged; do
    [ -x "$bin" ] || missing=1
done
if [ "$missing" = 1 ]; then
    say "installing ${PACKAGES[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt=(apt-get -o DPkg::Lock::Timeout=300 -y -qq)
    # Keep the packages' postinst scripts from starting daemons themselves (we start them below,
    # with our configuration); only if the machine has no such policy already.
    own_policy=0
    if [ ! -e /usr/sbin/policy-rc.d ]; then
        printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d && chmod 755 /usr/sbin/policy-rc.d
        own_policy=1
    fi
    install() { "${apt[@]}" install --no-install-recommends "${PACKAGES[@]}" >/dev/null; }
    if ! install; then
        say "install from the cached package lists failed: apt-get update, then again"
        "${apt[@]}" update >/dev/null || true
        install || { [ "$own_policy" = 1 ] && rm -f /usr/sbin/policy-rc.d; die "apt-get install ${PACKAGES[*]} failed"; }
    fi
    [ "$own_policy" = 1 ] && rm -f /usr/sbin/policy-rc.d
fi
id slurm >/dev/null 2>&1 && SLURM_USER=slurm || SLURM_USER=root
id munge >/dev/null 2>&1 || die "user munge missing after installing munge"

# ---------------------------------------------------------------- helpers
# PID from a pid file if that process runs and its command name is $2 (never trust a stale file).
running_pid() {   # running_pid PIDFILE COMM -> PID of a live (non-zombie) process of that name
    local pid
    pid=$({ tr -dc '0-9' <"$1"; } 2>/dev/null) || return 1
    [ -n "$pid" ] && alive "$pid" "$2" || return 1
    echo "$pid"
}

alive() {   # alive PID COMM: that process exists, has that name and is not a zombie
    local name stat
    { read -r name <"/proc/$1/comm" && read -r stat <"/proc/$1/stat"; } 2>/dev/null || return 1
    stat=${stat##*) }   # the fields after "pid (comm) ": state first
    [ "$name" = "$2" ] && [ "${stat%% *}" != Z ]
}

stop_pid() {   # stop_pid PIDFILE COMM: TERM, wait up to 15 s, then KILL
    local pid i
    pid=$(running_pid "$1" "$2") || return 0
    kill -TERM "$pid" 2>/dev/null || true
    for i in $(seq 150); do alive "$pid" "$2" || return 0; sleep 0.1; done
    kill -KILL "$pid" 2>/dev/null || true
    for i in $(seq 50); do alive "$pid" "$2" || return 0; sleep 0.1; done
}

# ---------------------------------------------------------------- munge
mkdir -p /etc/munge /run/munge /var/lib/munge /var/log/munge
if [ ! -s /etc/munge/munge.key ]; then
    if command -v mungekey >/dev/null; then mungekey --create --keyfile /etc/munge/munge.key
    else dd if=/dev/urandom bs=1 count=1024 of=/etc/munge/munge.key status=none; fi
fi
chown munge:munge /etc/munge /etc/munge/munge.key /run/munge /var/lib/munge /var/log/munge
chmod 700 /etc/munge; chmod 400 /etc/munge/munge.key; chmod 755 /run/munge
if ! running_pid /run/munge/munged.pid munged >/dev/null; then
    say "starting munged"
    runuser -u munge -- /usr/sbin/munged || die "munged did not start"
fi
for i in $(seq 50); do munge -n 2>/dev/null | unmunge >/dev/null 2>&1 && break; sleep 0.1; done
munge -n | unmunge >/dev/null 2>&1 || die "munge credentials do not work (munge -n | unmunge)"

# ---------------------------------------------------------------- slurm.conf
cpus=$(nproc)
mem_mb=$(awk '/^MemTotal:/ {print int($2 / 1024 * 0.9)}' /proc/meminfo)
conf=$(cat <<EOF
# generated by tests/cluster/slurm-up.sh - single-node SLURM test cluster
ClusterName=testcluster
SlurmctldHost=$HOST(127.0.0.1)
SlurmUser=$SLURM_USER
SlurmctldPort=6817
SlurmdPort=6818
AuthType=auth/munge
CredType=cred/munge
StateSaveLocation=/var/lib/slurm/slurmctld
SlurmdSpoolDir=/var/lib/slurm/slurmd
SlurmctldPidFile=/run/slurm/slurmctld.pid
SlurmdPidFile=/run/slurm/slurmd.pid
SlurmctldLogFile=/var/log/slurm/slurmctld.log
SlurmdLogFile=/var/log/slurm/slurmd.log
SlurmctldDebug=info
SlurmdDebug=info
# no cgroups: works in containers and VMs without a delegated cgroup tree
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
# no accounting database: sacct does not work, poll with squeue (MinJobAge below)
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
# a plain-text record of every finished job (evidence for the tests)
JobCompType=jobcomp/filetxt
JobCompLoc=$JOBCOMP
MpiDefault=none
MailProg=/bin/true
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
# a job that gives no --mem would otherwise get the whole node's memory
DefMemPerCPU=1024
# trust the CPUs/memory below even where the hardware detection of a VM differs
SlurmdParameters=config_overrides
ReturnToService=2
# finished jobs stay visible to squeue/scontrol for 10 min: snakemake's SLURM plugin polls with
# squeue here and wants MinJobAge >= 3 x its first status-check delay
MinJobAge=600
KillWait=5
InactiveLimit=0
SlurmdTimeout=60
NodeName=$HOST NodeAddr=127.0.0.1 CPUs=$cpus RealMemory=$mem_mb State=UNKNOWN
PartitionName=debug Nodes=$HOST Default=YES MaxTime=INFINITE State=UP
EOF
)
mkdir -p /etc/slurm /run/slurm /var/lib/slurm/slurmctld /var/lib/slurm/slurmd /var/log/slurm
chown "$SLURM_USER:" /var/lib/slurm/slurmctld /var/log/slurm /run/slurm
touch "$JOBCOMP" && chown "$SLURM_USER:" "$JOBCOMP"
if [ ! -f "$SLURM_CONF" ] || [ "$(cat "$SLURM_CONF")" != "$conf" ]; then
    if running_pid /run/slurm/slurmctld.pid slurmctld >/dev/null || running_pid /run/slurm/slurmd.pid slurmd >/dev/null; then
        say "slurm.conf changed: restarting slurmctld and slurmd"
        stop_pid /run/slurm/slurmd.pid slurmd
        stop_pid /run/slurm/slurmctld.pid slurmctld
    fi
    printf '%s\n' "$conf" >"$SLURM_CONF"
fi

# ---------------------------------------------------------------- daemons
if ! running_pid /run/slurm/slurmctld.pid slurmctld >/dev/null; then
    say "starting slurmctld"
    /usr/sbin/slurmctld || die "slurmctld did not start"
fi
for i in $(seq 100); do scontrol ping 2>/dev/null | grep -q 'is UP' && break; sleep 0.2; done
scontrol ping 2>/dev/null | grep -q 'is UP' || die "slurmctld does not answer (scontrol ping)"
if ! running_pid /run/slurm/slurmd.pid slurmd >/dev/null; then
    say "starting slurmd"
    /usr/sbin/slurmd || die "slurmd did not start"
fi

state=
for i in $(seq 150); do
    state=$(sinfo -h -n "$HOST" -o '%t' 2>/dev/null | head -n 1)
    case "$state" in
        idle|mix|alloc) break ;;
        down*|drain*|drng*) scontrol update NodeName="$HOST" State=RESUME 2>/dev/null || true ;;
    esac
    sleep 0.2
done
case "$state" in idle|mix|alloc) ;; *) die "node $HOST is not usable after 30 s (sinfo state '${state:-none}'; $(sinfo -h -R 2>/dev/null | head -n 1))" ;; esac

# smoke test: one real job step through slurmctld -> slurmd -> slurmstepd
out=$(timeout 60 srun -N1 -n1 -t 1 --mem 50 -J slurm-up-smoke hostname 2>&1) \
    || die "smoke-test job failed: $out"
say "cluster up: node $HOST ($cpus CPUs, ${mem_mb} MB), partition debug, $(sinfo -V)"

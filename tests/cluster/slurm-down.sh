#!/usr/bin/env bash
# Stop the single-node SLURM test cluster that slurm-up.sh started: cancel every queued or running
# job, then stop slurmd, slurmctld and munged, each by the PID in its pid file after checking the
# process's name (never by pattern). Safe to call when nothing runs (exit 0). Exits non-zero if a
# daemon or a job step survives.
#
#   SLURM_DOWN_PURGE=1 bash tests/cluster/slurm-down.sh   # also forget job state and logs
set -uo pipefail

say() { echo "slurm-down: $*" >&2; }

. "$(dirname "${BASH_SOURCE[0]}")/proc.sh"

stop_pid() {   # TERM, wait up to 15 s, then KILL
    local pidfile=$1 comm=$2 pid i
    pid=$(running_pid "$pidfile" "$comm") || return 0
    say "stopping $comm (pid $pid)"
    kill -TERM "$pid" 2>/dev/null || true
    for i in $(seq 150); do alive "$pid" "$comm" || return 0; sleep 0.1; done
    say "$comm did not stop on TERM: KILL"
    kill -KILL "$pid" 2>/dev/null || true
    for i in $(seq 50); do alive "$pid" "$comm" || return 0; sleep 0.1; done
}

# Number of live processes with this command name (to wait for job steps and to check that
# nothing is left; nothing is killed by name).
live() {
    local d n=0
    for d in /proc/[0-9]*; do
        alive "${d#/proc/}" "$1" && n=$((n + 1))
    done
    echo "$n"
}

if running_pid /run/slurm/slurmctld.pid slurmctld >/dev/null && command -v squeue >/dev/null; then
    jobs=$(squeue -h -t PENDING,RUNNING,SUSPENDED,CONFIGURING,COMPLETING -o '%i' 2>/dev/null | tr '\n' ' ')
    if [ -n "${jobs// /}" ]; then
        say "cancelling jobs $jobs"
        # shellcheck disable=SC2086
        scancel $jobs 2>/dev/null || true
    fi
    # let slurmd clean up the job steps (slurmstepd) before it goes
    for i in $(seq 150); do [ "$(live slurmstepd)" = 0 ] && break; sleep 0.2; done
fi

stop_pid /run/slurm/slurmd.pid slurmd
stop_pid /run/slurm/slurmctld.pid slurmctld
stop_pid /run/munge/munged.pid munged

if [ "${SLURM_DOWN_PURGE:-0}" = 1 ]; then
    say "purging job state and logs"
    rm -rf /var/lib/slurm/slurmctld/* /var/lib/slurm/slurmd/* /var/log/slurm/*
fi

left=
for comm in slurmstepd slurmd slurmctld munged; do
    n=$(live "$comm")
    [ "$n" = 0 ] || left="$left $comm($n)"
done
if [ -n "$left" ]; then
    say "ERROR: still running:$left"
    exit 1
fi
say "all stopped"

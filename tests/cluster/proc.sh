# Process helpers shared by slurm-up.sh and slurm-down.sh (sourced, not run).

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

#!/usr/bin/env bash
# Stop the single-node Slurm started by tests/slurm_up.sh: each daemon by its pid file (never
# by process name, so nothing else on the machine is touched). Jobs still queued are
# cancelled first. The packages and the configuration stay; slurm_up.sh starts it again.
set -uo pipefail

stop_pidfile() { # stop_pidfile PIDFILE COMM
    local pid
    [ -s "$1" ] || return 0
    pid="$(cat "$1" 2>/dev/null)"
    if [ -n "$pid" ] && [ -d "/proc/$pid" ] && grep -qx "$2" "/proc/$pid/comm" 2>/dev/null; then
        echo "slurm_down: stopping $2 (pid $pid)" >&2
        kill "$pid" 2>/dev/null
        for _ in $(seq 1 50); do [ -d "/proc/$pid" ] || break; sleep 0.2; done
        [ -d "/proc/$pid" ] && kill -9 "$pid" 2>/dev/null
    fi
    rm -f "$1"
}

if command -v scancel >/dev/null 2>&1 && [ -s /run/slurmctld.pid ]; then
    scancel --user="$(id -un)" </dev/null >/dev/null 2>&1 || true
    sleep 1
fi
stop_pidfile /run/slurmd.pid slurmd
stop_pidfile /run/slurmctld.pid slurmctld
stop_pidfile /run/munge/munged.pid munged
exit 0

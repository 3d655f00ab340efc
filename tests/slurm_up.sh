#!/usr/bin/env bash
# Start a single-node Slurm (munged + slurmctld + slurmd) on this machine for the tests.
#
#   bash tests/slurm_up.sh      # idempotent: reuses running daemons, installs what is missing
#   bash tests/slurm_down.sh    # stops the daemons (by their pid files)
#
# Made for CI (root, fresh Debian, no systemd, no stdin, output piped). It:
#   * installs slurmctld slurmd slurm-client munge with apt-get when they are missing;
#   * creates the munge key and /run/munge, starts munged as user munge;
#   * writes /etc/slurm/slurm.conf for one node named `hostname -s`, pinned to 127.0.0.1,
#     advertising $SLURM_TEST_CPUS CPUs (SlurmdParameters=config_overrides lets a 2-core
#     machine run several 1-CPU worker jobs) and one fake `gpu` GRES backed by a fake device
#     file, so `--gres=gpu:1` submissions are accepted (the GPU is not usable, of course);
#   * uses proctrack/linuxproc and task/none, which need no cgroups;
#   * starts slurmctld, then slurmd, with their output in $SLURM_TEST_LOGS, and waits
#     until `sinfo` shows the node idle.
# Exit status 0 when Slurm is up, 1 otherwise (with the reason on stderr).
set -uo pipefail

CPUS="${SLURM_TEST_CPUS:-8}"
LOGS="${SLURM_TEST_LOGS:-/var/log/slurm}"
CONF_DIR=/etc/slurm
HOST="$(hostname -s)"
FAKE_GPU=/dev/wsb-fake-gpu0

say() { echo "slurm_up: $*" >&2; }
die() { say "$*"; exit 1; }

if [ "$(id -u)" -ne 0 ]; then
    if command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
        exec sudo -n -E bash "$0" "$@"
    fi
    die "needs root (or password-less sudo) to install and start Slurm"
fi

# An already running, healthy Slurm is left alone (the suite may be rerun).
node_ready() {
    local state
    state="$(sinfo -h -n "$HOST" -o '%T' 2>/dev/null | head -n1)"
    case "$state" in idle*|mix*|alloc*|completing*) return 0 ;; esac
    return 1
}

alive() { # alive PIDFILE COMM: process of the pid file is running and is COMM
    local pid
    [ -s "$1" ] || return 1
    pid="$(cat "$1" 2>/dev/null)"
    [ -n "$pid" ] && [ -d "/proc/$pid" ] && grep -qx "$2" "/proc/$pid/comm" 2>/dev/null
}

if command -v sinfo >/dev/null 2>&1 && alive /run/slurmctld.pid slurmctld \
        && alive /run/slurmd.pid slurmd && node_ready; then
    say "Slurm already up on $HOST"
    exit 0
fi

# --- packages ------------------------------------------------------------------------------
missing=()
for cmd in slurmctld:slurmctld slurmd:slurmd sinfo:slurm-client munged:munge; do
    command -v "${cmd%%:*}" >/dev/null 2>&1 || missing+=("${cmd##*:}")
done
if [ "${#missing[@]}" -gt 0 ]; then
    command -v apt-get >/dev/null 2>&1 || die "Slurm is not installed and apt-get is not available"
    say "installing ${missing[*]} with apt-get"
    export DEBIAN_FRONTEND=noninteractive
    # Keep the packages' maintainer scripts from starting services (there is no init system
    # to start them with): the daemons are started below.
    created_policy=0
    if [ ! -e /usr/sbin/policy-rc.d ]; then
        printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d && chmod +x /usr/sbin/policy-rc.d
        created_policy=1
    fi
    apt-get update -qq </dev/null >"/tmp/slurm_up-apt.log" 2>&1 \
        || { cat /tmp/slurm_up-apt.log >&2; die "apt-get update failed"; }
    apt-get install -y -qq --no-install-recommends slurmctld slurmd slurm-client munge \
        </dev/null >>"/tmp/slurm_up-apt.log" 2>&1 \
        || { tail -n 30 /tmp/slurm_up-apt.log >&2; die "apt-get install failed (log: /tmp/slurm_up-apt.log)"; }
    [ "$created_policy" = 1 ] && rm -f /usr/sbin/policy-rc.d
fi

# --- munge ---------------------------------------------------------------------------------
getent passwd munge >/dev/null || die "user 'munge' does not exist (is the munge package installed?)"
mkdir -p /etc/munge /run/munge /var/lib/munge /var/log/munge
if [ ! -s /etc/munge/munge.key ]; then
    say "creating /etc/munge/munge.key"
    if command -v mungekey >/dev/null 2>&1; then
        mungekey --create --keyfile=/etc/munge/munge.key --force >/dev/null 2>&1 \
            || dd if=/dev/urandom of=/etc/munge/munge.key bs=1024 count=1 status=none
    else
        dd if=/dev/urandom of=/etc/munge/munge.key bs=1024 count=1 status=none
    fi
fi
chown munge:munge /etc/munge /etc/munge/munge.key /run/munge /var/lib/munge /var/log/munge
chmod 0700 /etc/munge /var/lib/munge /var/log/munge
chmod 0400 /etc/munge/munge.key
chmod 0755 /run/munge
if ! alive /run/munge/munged.pid munged; then
    say "starting munged"
    rm -f /run/munge/munged.pid /run/munge/munge.socket.2*
    if command -v runuser >/dev/null 2>&1; then
        runuser -u munge -- /usr/sbin/munged </dev/null >/tmp/munged.out 2>&1
    else
        su -s /bin/sh munge -c /usr/sbin/munged </dev/null >/tmp/munged.out 2>&1
    fi || { cat /tmp/munged.out >&2; die "munged did not start"; }
fi
for _ in $(seq 1 20); do
    munge -n </dev/null 2>/dev/null | unmunge >/dev/null 2>&1 && break
    sleep 0.5
done
munge -n </dev/null 2>/dev/null | unmunge >/dev/null 2>&1 || die "munge does not work (see /tmp/munged.out and /var/log/munge/munged.log)"

# --- configuration -------------------------------------------------------------------------
mkdir -p "$CONF_DIR" "$LOGS" /var/spool/slurmctld /var/spool/slurmd
# The node's real memory comes from `slurmd -C` (the node must not claim more than it has);
# the CPU count is overridden (config_overrides) so that several 1-CPU jobs fit on 2 cores.
node_line="$(slurmd -C 2>/dev/null | head -n1)"
real_mem="$(sed -n 's/.*RealMemory=\([0-9]*\).*/\1/p' <<<"$node_line")"
[ -n "$real_mem" ] || die "could not read RealMemory from 'slurmd -C' (got: $node_line)"

# A fake GPU device for the gpu GRES: slurmd only checks that the file exists. A character
# device like /dev/null (1,3) if mknod is allowed, else a plain file.
if [ ! -e "$FAKE_GPU" ]; then
    mknod -m 0666 "$FAKE_GPU" c 1 3 2>/dev/null || { touch "$FAKE_GPU" && chmod 0666 "$FAKE_GPU"; }
fi

cat > "$CONF_DIR/slurm.conf.new" <<EOF
# Written by wsb_gpu tests/slurm_up.sh: a single-node Slurm for the test suite.
ClusterName=wsbtest
SlurmctldHost=${HOST}(127.0.0.1)
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
SlurmctldPort=6817
SlurmdPort=6818
StateSaveLocation=/var/spool/slurmctld
SlurmdSpoolDir=/var/spool/slurmd
SlurmctldPidFile=/run/slurmctld.pid
SlurmdPidFile=/run/slurmd.pid
SlurmctldLogFile=${LOGS}/slurmctld.log
SlurmdLogFile=${LOGS}/slurmd.log
# No cgroups in containers / CI machines without systemd.
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
MpiDefault=none
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
# Let the node advertise the CPUs configured below rather than the ones it has.
SlurmdParameters=config_overrides
ReturnToService=2
SlurmctldTimeout=30
SlurmdTimeout=60
InactiveLimit=0
KillWait=5
MinJobAge=600
GresTypes=gpu
NodeName=${HOST} NodeAddr=127.0.0.1 CPUs=${CPUS} Sockets=1 CoresPerSocket=${CPUS} ThreadsPerCore=1 RealMemory=${real_mem} Gres=gpu:1 State=UNKNOWN
PartitionName=debug Nodes=${HOST} Default=YES MaxTime=INFINITE State=UP
EOF
cat > "$CONF_DIR/gres.conf.new" <<EOF
# A fake GPU: accepted by the scheduler so --gres=gpu:1 jobs run; it is not a real device.
AutoDetect=off
NodeName=${HOST} Name=gpu File=${FAKE_GPU}
EOF
changed=0
for f in slurm.conf gres.conf; do
    if ! cmp -s "$CONF_DIR/$f.new" "$CONF_DIR/$f"; then
        mv "$CONF_DIR/$f.new" "$CONF_DIR/$f"
        changed=1
    else
        rm -f "$CONF_DIR/$f.new"
    fi
done

# --- daemons -------------------------------------------------------------------------------
stop_pidfile() { # stop_pidfile PIDFILE COMM
    if alive "$1" "$2"; then
        local pid
        pid="$(cat "$1")"
        kill "$pid" 2>/dev/null
        for _ in $(seq 1 50); do [ -d "/proc/$pid" ] || break; sleep 0.2; done
        [ -d "/proc/$pid" ] && kill -9 "$pid" 2>/dev/null
    fi
    rm -f "$1"
}
if [ "$changed" = 1 ]; then
    # New configuration: restart whatever runs with the old one.
    stop_pidfile /run/slurmd.pid slurmd
    stop_pidfile /run/slurmctld.pid slurmctld
fi

if ! alive /run/slurmctld.pid slurmctld; then
    say "starting slurmctld (log: $LOGS/slurmctld.log)"
    rm -f /run/slurmctld.pid
    slurmctld </dev/null >"$LOGS/slurmctld.out" 2>&1 \
        || { tail -n 20 "$LOGS/slurmctld.out" "$LOGS/slurmctld.log" >&2; die "slurmctld did not start"; }
fi
for _ in $(seq 1 40); do
    scontrol ping </dev/null 2>/dev/null | grep -q "is UP" && break
    sleep 0.5
done
scontrol ping </dev/null 2>/dev/null | grep -q "is UP" \
    || { tail -n 20 "$LOGS/slurmctld.log" >&2; die "slurmctld does not answer (scontrol ping)"; }

if ! alive /run/slurmd.pid slurmd; then
    say "starting slurmd (log: $LOGS/slurmd.log)"
    rm -f /run/slurmd.pid
    slurmd </dev/null >"$LOGS/slurmd.out" 2>&1 \
        || { tail -n 20 "$LOGS/slurmd.out" "$LOGS/slurmd.log" >&2; die "slurmd did not start"; }
fi

for i in $(seq 1 60); do
    node_ready && break
    state="$(sinfo -h -n "$HOST" -o '%T' 2>/dev/null | head -n1)"
    case "$state" in
        down*|drain*|fail*)
            # A node left down by an earlier run (or an unclean stop) is brought back.
            scontrol update NodeName="$HOST" State=RESUME </dev/null >/dev/null 2>&1 ;;
    esac
    sleep 1
done
if ! node_ready; then
    sinfo -N -l >&2
    tail -n 20 "$LOGS/slurmctld.log" "$LOGS/slurmd.log" >&2
    die "node $HOST did not become idle"
fi
say "Slurm is up: $(sinfo -h -N -o '%N %T CPUs=%c Gres=%G')"

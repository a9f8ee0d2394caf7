#!/usr/bin/env bash
# A real 2-node SLURM cluster on this one machine, for trying (and testing) mnist_lab's cluster path:
# `hydra/launcher=slurm_cpu`, sweeps and multi-node DDP submitted with sbatch.
#
#   sudo scripts/local_slurm.sh up      # start munged, slurmctld and two slurmd (nodes n1, n2; 1 CPU each)
#   sudo scripts/local_slurm.sh status  # the daemons and `sinfo`
#   sudo scripts/local_slurm.sh down    # cancel the jobs, stop the daemons, remove what `up` added
#
# Needs root and Debian's slurm-wlm and munge packages (`apt-get install slurm-wlm munge`). With slurmdbd
# and mariadb-server installed as well, `up` also keeps job accounting (a MariaDB of its own on 127.0.0.1
# and slurmdbd), so that `sacct` answers: submitit polls job states with sacct only, and without
# accounting it warns on every poll and cannot tell that a job SLURM killed has ended. `up` and `down`
# are idempotent. `up` writes /etc/slurm/slurm.conf (and refuses to replace one it did not write), adds
# "127.0.0.1 n1 n2" to /etc/hosts (torch's rendezvous connects to the first node by name), and keeps its
# spool, pid and log files under $LOCAL_SLURM_DIR (default /var/tmp/mnist_lab_slurm; per node via %n).
set -euo pipefail

STATE=${LOCAL_SLURM_DIR:-/var/tmp/mnist_lab_slurm}
CONF=/etc/slurm/slurm.conf
DBD_CONF=/etc/slurm/slurmdbd.conf
DB_SOCKET=$STATE/db/run/mysqld.sock
DB_PORT=16306
DBD_PORT=16819
MARK="# written by mnist_lab scripts/local_slurm.sh"
HOSTS_LINE="127.0.0.1 n1 n2 $MARK"
NODES=(n1 n2)
TIMEOUT_S=${LOCAL_SLURM_TIMEOUT_S:-30}

die() {
    echo "local_slurm: error: $*" >&2
    exit 1
}
say() { echo "local_slurm: $*"; }

# The pid in FILE if that process is alive.
alive() { [[ -s $1 ]] && kill -0 "$(cat "$1")" 2>/dev/null; }

# Accounting when its daemons are installed (apt-get install slurmdbd mariadb-server).
accounting() { command -v slurmdbd >/dev/null && command -v mariadbd >/dev/null; }

need_root() { [[ $(id -u) == 0 ]] || die "run as root (sudo $0 $1): slurmd and munged need it"; }

need_tools() {
    local missing=()
    for tool in munged mungekey munge unmunge slurmctld slurmd sinfo sbatch scontrol; do
        command -v "$tool" >/dev/null || missing+=("$tool")
    done
    [[ ${#missing[@]} == 0 ]] ||
        die "not installed: ${missing[*]}; install them with: apt-get install slurm-wlm munge"
}

write_conf() {
    for file in "$CONF" "$DBD_CONF"; do
        if [[ -e $file ]] && ! grep -qF "$MARK" "$file"; then
            die "$file exists and was not written by this script; move it aside to use the local cluster"
        fi
    done
    local host mem_mb storage="AccountingStorageType=accounting_storage/none"
    if accounting; then
        storage="AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=127.0.0.1
AccountingStoragePort=$DBD_PORT"
    fi
    host=$(hostname -s)
    # each node reports the whole machine's memory; half of it each keeps slurmd from draining a node
    mem_mb=$(($(awk '/^MemTotal:/ {print $2}' /proc/meminfo) / 1024 / 2))
    mkdir -p /etc/slurm "$STATE"/{ctld,log,run} "${NODES[@]/#/$STATE/spool/}"
    cat >"$CONF" <<EOF
$MARK
# A local 2-node cluster: nodes n1 and n2 are two slurmd on this machine (127.0.0.1), 1 CPU each.
ClusterName=mnist-lab-local
SlurmctldHost=$host(127.0.0.1)
SlurmUser=root
AuthType=auth/munge
StateSaveLocation=$STATE/ctld
SlurmdSpoolDir=$STATE/spool/%n
SlurmctldPidFile=$STATE/run/slurmctld.pid
SlurmdPidFile=$STATE/run/slurmd-%n.pid
SlurmctldLogFile=$STATE/log/slurmctld.log
SlurmdLogFile=$STATE/log/slurmd-%n.log
# no cgroups here: track processes by /proc, bind no CPUs, gather no per-job usage
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
$storage
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
# the node lines below, not the hardware slurmd sees, say what each node has
SlurmdParameters=config_overrides
ReturnToService=2
MpiDefault=none
KillWait=5
NodeName=n[1-2] NodeHostname=$host NodeAddr=127.0.0.1 Port=17001-17002 CPUs=1 RealMemory=$mem_mb State=UNKNOWN
PartitionName=cpu Nodes=n[1-2] Default=YES MaxTime=INFINITE State=UP
EOF
    grep -qF "$MARK" /etc/hosts || echo "$HOSTS_LINE" >>/etc/hosts
}

start_munge() {
    if munge -n 2>/dev/null | unmunge >/dev/null 2>&1; then
        return
    fi
    [[ -s /etc/munge/munge.key ]] || mungekey -c
    chown munge:munge /etc/munge/munge.key
    chmod 400 /etc/munge/munge.key
    mkdir -p /run/munge /var/log/munge /var/lib/munge
    chown munge:munge /run/munge /var/log/munge /var/lib/munge
    runuser -u munge -- munged
    munge -n | unmunge >/dev/null || die "munged started but cannot (un)munge a credential"
    touch "$STATE/run/munged.ours" # `down` stops only a munged that `up` started
    say "munged started"
}

# MariaDB (a data dir of its own, TCP on 127.0.0.1 only) and slurmdbd, which slurmctld reports jobs to.
start_accounting() {
    accounting || return 0
    local deadline
    mkdir -p "$STATE/db/run"
    chown mysql:mysql "$STATE/db" "$STATE/db/run"
    if [[ ! -d $STATE/db/data/mysql ]]; then
        mariadb-install-db --user=mysql --datadir="$STATE/db/data" --auth-root-authentication-method=socket \
            --skip-test-db >"$STATE/log/mariadb-install.log" 2>&1 ||
            die "mariadb-install-db failed; see $STATE/log/mariadb-install.log"
    fi
    if ! alive "$STATE/db/run/mysqld.pid"; then
        mariadbd --user=mysql --datadir="$STATE/db/data" --socket="$DB_SOCKET" \
            --pid-file="$STATE/db/run/mysqld.pid" --bind-address=127.0.0.1 --port="$DB_PORT" \
            --innodb-buffer-pool-size=64M --log-error="$STATE/db/mariadb.log" </dev/null >/dev/null 2>&1 &
        deadline=$((SECONDS + TIMEOUT_S))
        until mariadb --socket="$DB_SOCKET" -e 'SELECT 1' >/dev/null 2>&1; do
            ((SECONDS < deadline)) || die "MariaDB did not start; see $STATE/db/mariadb.log"
            sleep 0.2
        done
        mariadb --socket="$DB_SOCKET" -e "CREATE USER IF NOT EXISTS 'slurm'@'127.0.0.1' IDENTIFIED BY 'slurm';
            GRANT ALL ON slurm_acct_db.* TO 'slurm'@'127.0.0.1';"
        say "MariaDB started"
    fi
    cat >"$DBD_CONF" <<EOF
$MARK
AuthType=auth/munge
DbdAddr=127.0.0.1
DbdHost=localhost
DbdPort=$DBD_PORT
SlurmUser=root
StorageType=accounting_storage/mysql
StorageHost=127.0.0.1
StoragePort=$DB_PORT
StorageUser=slurm
StoragePass=slurm
StorageLoc=slurm_acct_db
PidFile=$STATE/run/slurmdbd.pid
LogFile=$STATE/log/slurmdbd.log
EOF
    chmod 600 "$DBD_CONF"
    if ! alive "$STATE/run/slurmdbd.pid"; then
        slurmdbd || die "slurmdbd did not start; see $STATE/log/slurmdbd.log"
        deadline=$((SECONDS + TIMEOUT_S))
        until sacctmgr -n list cluster >/dev/null 2>&1; do
            ((SECONDS < deadline)) || die "slurmdbd does not answer; see $STATE/log/slurmdbd.log"
            sleep 0.2
        done
        say "slurmdbd started"
    fi
}

start_daemons() {
    if ! alive "$STATE/run/slurmctld.pid"; then
        slurmctld || die "slurmctld did not start; see $STATE/log/slurmctld.log"
        say "slurmctld started"
    fi
    for node in "${NODES[@]}"; do
        if ! alive "$STATE/run/slurmd-$node.pid"; then
            slurmd -N "$node" || die "slurmd -N $node did not start; see $STATE/log/slurmd-$node.log"
            say "slurmd -N $node started"
        fi
    done
}

wait_idle() {
    local deadline=$((SECONDS + TIMEOUT_S)) states
    while ((SECONDS < deadline)); do
        states=$(sinfo -h -N -o '%N %T' 2>/dev/null | sort -u | tr '\n' ' ' || true)
        if [[ $states =~ n1\ (idle|mixed|allocated).*n2\ (idle|mixed|allocated) ]]; then
            say "cluster up: $states"
            return
        fi
        sleep 1
    done
    die "nodes not ready after ${TIMEOUT_S}s (sinfo: ${states:-no answer}); see the logs in $STATE/log"
}

up() {
    need_root up
    need_tools
    write_conf
    start_munge
    start_accounting
    start_daemons
    wait_idle
    accounting || say "no job accounting (sacct fails, submitit warns on each poll): apt-get install slurmdbd mariadb-server"
}

stop_pidfile() {
    local file=$1 name=$2 pid
    alive "$file" || return 0
    pid=$(cat "$file")
    kill "$pid"
    for _ in $(seq 50); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    say "$name stopped"
}

down() {
    need_root down
    if alive "$STATE/run/slurmctld.pid"; then
        scancel --full --quiet --partition=cpu 2>/dev/null || true
    fi
    for node in "${NODES[@]}"; do
        stop_pidfile "$STATE/run/slurmd-$node.pid" "slurmd -N $node"
    done
    stop_pidfile "$STATE/run/slurmctld.pid" slurmctld
    stop_pidfile "$STATE/run/slurmdbd.pid" slurmdbd
    stop_pidfile "$STATE/db/run/mysqld.pid" MariaDB
    if [[ -e $STATE/run/munged.ours ]]; then stop_pidfile /run/munge/munged.pid munged; fi
    # a fresh cluster on the next `up`: no saved jobs, job ids from 1
    rm -rf "$STATE"
    for file in "$CONF" "$DBD_CONF"; do
        if [[ -e $file ]] && grep -qF "$MARK" "$file"; then rm -f "$file"; fi
    done
    if grep -qF "$MARK" /etc/hosts; then
        # /etc/hosts may be a bind mount (containers): rewrite it in place, never replace the file
        grep -vF "$MARK" /etc/hosts >"/tmp/hosts.$$" || true
        cat "/tmp/hosts.$$" >/etc/hosts
        rm -f "/tmp/hosts.$$"
    fi
    say "cluster down"
}

status() {
    for file in "$STATE"/run/*.pid "$STATE"/db/run/*.pid /run/munge/munged.pid; do
        if alive "$file"; then say "running: $(basename "$file" .pid) (pid $(cat "$file"))"; fi
    done
    sinfo -N || die "no cluster answers (scripts/local_slurm.sh up starts one)"
}

case ${1:-} in
up) up ;;
down) down ;;
status) status ;;
*) die "usage: $0 up|down|status" ;;
esac

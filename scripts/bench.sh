#!/usr/bin/env bash
# make bench: Strata against nfs-ganesha (Debian's 4.3, FSAL_VFS), in one run, on identical data,
# measured by `strata bench` (the project's own asynchronous NFSv3 client), inside a private
# network and mount namespace that this script creates (only lo; traffic to 127.0.0.1 only).
#
#   plain pair:  ganesha-plain   a plain directory        strata-plain  that content as its one
#                                                                        lower, an empty upper
#   union pair:  ganesha-overlay kernel overlayfs L1:L2,  strata-union  lowers [L1, L2], an
#                                an empty upper                          empty upper
#   durable pair: ganesha-durable a directory with ext4's strata-durable an empty lower, an
#                                dirsync attribute         empty upper, on the same file system
#                 (a fresh ext4 with a journal: every namespace change durable before its reply,
#                 as Strata makes its own; see phase_durable)
#
# Each server has its own copy of the data (no shared page cache). The two servers of a pair
# run at the same time on different ports; every row measures ganesha, then Strata. The table
# gives each row's rate, the ratio strata/ganesha (above 1: Strata is faster; for the copy-up
# row, the ratio of latencies: above 1, Strata is slower), and the client's and the server's
# CPU per call. Read ratios, not rates: the host is shared (its load is printed).
#
# Usage (as root): make bench, or bash scripts/bench.sh [RESULTS_DIR]
# Settings (environment): SIZE (64M), N_META (5000), N_LAT (1000), N_CREATE (500), QD (32),
#   TREE_DIRS (20), TREE_FILES (100), MT_DIRS (10), MT_FILES (50), WORKDIR (/var/tmp),
#   DURABLE_SIZE (4G), PHASES ("plain union durable boot"), KEEP=1 (keep the data), STRATA_BIN (.build/release/strata),
#   BOOT_N ("1 10": the boot storm's client counts; the full curve: scripts/boot-storm.sh).
#
# Adding a section (e.g. the boot storm): write a function phase_NAME that starts its servers
# with start_strata/start_ganesha, measures rows with `row` (or writes its own JSON lines into
# $RESULTS/results.jsonl with "server", "pair" and "row" fields) and stops its servers with
# stop_servers; then add NAME to PHASES. The table prints every row of every pair in the file.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD

SIZE=${SIZE:-64M}
N_META=${N_META:-5000}
N_LAT=${N_LAT:-1000}
N_CREATE=${N_CREATE:-500}
QD=${QD:-32}
TREE_DIRS=${TREE_DIRS:-20}
TREE_FILES=${TREE_FILES:-100}
MT_DIRS=${MT_DIRS:-10}
MT_FILES=${MT_FILES:-50}
WORKDIR=${WORKDIR:-/var/tmp}
PHASES=${PHASES:-plain union durable boot}
BOOT_N=${BOOT_N:-1 10}
BIN=${STRATA_BIN:-$ROOT/.build/release/strata}
G_NFS_PORT=2049 G_MOUNT_PORT=20048 S_NFS_PORT=3049 S_MOUNT_PORT=30048

die() { echo "bench: $*" >&2; exit 1; }

if [ -z "${STRATA_BENCH_NAMESPACE:-}" ]; then
    [ "$(id -u)" -eq 0 ] || die "run as root (network namespace, overlayfs mount): sudo make bench"
    [ -x "$BIN" ] || die "$BIN missing; build it: swift build -c release --product strata"
    for c in unshare ip rpcbind ganesha.nfsd python3 mount; do
        command -v "$c" >/dev/null || die "missing $c; install the bench set: bash scripts/deps.sh bench"
    done
    [ -n "$(ls /usr/lib/*/ganesha/libfsalvfs.so 2>/dev/null)" ] || die "missing ganesha's FSAL_VFS: bash scripts/deps.sh bench"
    export STRATA_BENCH_NAMESPACE=1
    exec unshare --net --mount --propagation private "$0" "$@"
fi

# ---------------------------------------------------------------- inside the namespace ---
ip link set lo up
mount -t tmpfs -o mode=755 strata-bench-run /run  # private: rpcbind's and ganesha's sockets
mkdir -p /run/rpcbind /run/lock /run/ganesha
WORK=$(mktemp -d "$WORKDIR/strata-bench.XXXXXX")
RESULTS=${1:-$WORK/results}
RESULTS_OUTSIDE=${1:+1}
mkdir -p "$RESULTS"
: > "$RESULTS/results.jsonl"
LOG=$RESULTS/bench.log
# The binary is copied: a rebuild during the run changes nothing.
cp "$BIN" "$WORK/strata"
STRATA=$WORK/strata
GANESHA_FSAL_DIR=$(dirname "$(ls /usr/lib/*/ganesha/libfsalvfs.so | head -1)")

declare -A PID=() NFSPORT=() MOUNTPORT=() EXPORT=() DATA=()
SERVERS_UP=()
RPCBIND_PID=
OVERLAY=
DURABLE_MOUNT=

log() { echo "$(date +%T) $*" >> "$LOG"; }

stop_pid() { # NAME PID: SIGTERM, SIGKILL after 15 s
    local name=$1 pid=$2 i
    [ -n "$pid" ] || return 0
    kill -TERM "$pid" 2>/dev/null || return 0
    for i in $(seq 150); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -0 "$pid" 2>/dev/null && kill -KILL "$pid" 2>/dev/null
    wait "$pid" 2>/dev/null || true
    log "stopped $name ($pid)"
}

stop_servers() {
    local s
    for s in "${SERVERS_UP[@]}"; do stop_pid "$s" "${PID[$s]}"; done
    SERVERS_UP=()
    if [ -n "$OVERLAY" ]; then umount "$OVERLAY" 2>> "$LOG" || true; OVERLAY=; fi
}

unmount_durable() {
    [ -n "$DURABLE_MOUNT" ] || return 0
    umount "$DURABLE_MOUNT" 2>> "$LOG" || umount -l "$DURABLE_MOUNT" 2>> "$LOG" || true
    DURABLE_MOUNT=
}

cleanup() {
    local rc=$?
    set +e
    stop_servers
    unmount_durable
    stop_pid rpcbind "$RPCBIND_PID"
    if [ "${KEEP:-0}" = 1 ]; then echo "bench: data and results kept in $WORK" >&2
    elif [ -n "$RESULTS_OUTSIDE" ]; then rm -rf "$WORK"
    else find "$WORK" -mindepth 1 -maxdepth 1 ! -name results -exec rm -rf {} +; echo "bench: results in $RESULTS" >&2
    fi
    exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT TERM HUP

listening() { # PORT: a TCP socket listens on it (IPv4 or IPv6: ganesha binds ::)
    awk -v port=":$(printf '%04X' "$1")" '$4 == "0A" && substr($2, length($2) - 4) == port { found = 1 }
        END { exit !found }' /proc/net/tcp /proc/net/tcp6 2>/dev/null
}

wait_port() { # PORT PID: up to 30 s
    local i
    for i in $(seq 300); do
        listening "$1" && return 0
        kill -0 "$2" 2>/dev/null || return 1
        sleep 0.1
    done
    return 1
}

start_rpcbind() {
    rpcbind -f > "$RESULTS/rpcbind.log" 2>&1 &
    RPCBIND_PID=$!
    wait_port 111 "$RPCBIND_PID" || die "rpcbind did not come up (see $RESULTS/rpcbind.log)"
}

start_ganesha() { # NAME DIRECTORY
    local s=$1 path=$2 conf=$RESULTS/$1.conf
    mkdir -p "$WORK/recovery-$s"
    cat > "$conf" <<EOF
NFS_CORE_PARAM {
    NFS_Port = $G_NFS_PORT;
    MNT_Port = $G_MOUNT_PORT;
    Enable_NLM = false;
    Enable_RQUOTA = false;
    Protocols = 3;
    Plugins_Dir = $GANESHA_FSAL_DIR;
}
NFSV4 { Graceless = true; RecoveryRoot = "$WORK/recovery-$s"; }
EXPORT {
    Export_Id = 1;
    Path = "$path";
    Pseudo = /export;
    Protocols = 3;
    Transports = TCP;
    Access_Type = RW;
    Squash = No_Root_Squash;
    SecType = sys;
    FSAL { Name = VFS; }
}
LOG { Default_Log_Level = EVENT; }
EOF
    ganesha.nfsd -F -f "$conf" -L "$RESULTS/$s.log" -p "$WORK/$s.pid" &
    PID[$s]=$!
    SERVERS_UP+=("$s")
    wait_port $G_NFS_PORT "${PID[$s]}" && wait_port $G_MOUNT_PORT "${PID[$s]}" ||
        die "ganesha did not come up (see $RESULTS/$s.log)"
    # NFSv3 MNT takes the export's Path, not its Pseudo.
    NFSPORT[$s]=$G_NFS_PORT MOUNTPORT[$s]=$G_MOUNT_PORT EXPORT[$s]=$path
    log "$s: ganesha pid ${PID[$s]} exporting $path"
}

start_strata() { # NAME EXPORT UPPER LOWER...
    local s=$1 export=$2 upper=$3 conf=$RESULTS/$1.toml ready=$WORK/$1.ready lowers="" l i
    shift 3
    for l in "$@"; do lowers+="${lowers:+, }\"$l\""; done
    mkdir -p "$WORK/$s-state" "$upper"
    cat > "$conf" <<EOF
[server]
listen = ["127.0.0.1"]
nfs_port = $S_NFS_PORT
mount_port = $S_MOUNT_PORT
portmapper = "off"
state_dir = "$WORK/$s-state"
log_level = "warning"

[[export]]
path = "$export"
lowers = [$lowers]
upper = "$upper"
clients = ["127.0.0.0/8(rw,no_root_squash,insecure)"]
EOF
    "$STRATA" check-config --config "$conf" >> "$LOG" 2>&1 || die "strata check-config $conf failed (see $LOG)"
    "$STRATA" serve --config "$conf" --ready-file "$ready" > "$RESULTS/$s.log" 2>&1 &
    PID[$s]=$!
    SERVERS_UP+=("$s")
    for i in $(seq 600); do
        [ -s "$ready" ] && break
        kill -0 "${PID[$s]}" 2>/dev/null || die "strata exited at start (see $RESULTS/$s.log)"
        sleep 0.1
    done
    [ -s "$ready" ] || die "strata did not come up in 60 s (see $RESULTS/$s.log)"
    NFSPORT[$s]=$S_NFS_PORT MOUNTPORT[$s]=$S_MOUNT_PORT EXPORT[$s]=$export
    log "$s: strata pid ${PID[$s]} exporting $export (upper $upper, lowers $lowers)"
}

# fill BOTTOM TOP: data.dat and the first half of every tree directory's files in BOTTOM, the
# second half in TOP (BOTTOM = TOP for a plain directory): every tree directory of a union is a
# merged one. The names are the ones mkdir-tree makes (dNNNN/fNNNNN).
fill() {
    local bottom=$1 top=$2 half=$((TREE_FILES / 2)) d f dn
    mkdir -p "$bottom" "$top"
    head -c "$(numfmt --from=iec "$SIZE")" /dev/urandom > "$bottom/data.dat"
    head -c 1M /dev/urandom > "$bottom/copyup.dat"
    for ((d = 0; d < TREE_DIRS; d++)); do
        printf -v dn 'd%04d' "$d"
        mkdir -p "$bottom/tree/$dn" "$top/tree/$dn"
        for ((f = 0; f < TREE_FILES; f++)); do
            if [ "$f" -lt "$half" ]; then : > "$(printf '%s/tree/%s/f%05d' "$bottom" "$dn" "$f")"
            else : > "$(printf '%s/tree/%s/f%05d' "$top" "$dn" "$f")"; fi
        done
    done
}

# row SERVER PAIR ROW [strata bench arguments...]: one measurement, appended to results.jsonl.
row() {
    local s=$1 pair=$2 name=$3 out
    shift 3
    log "$s $name: strata bench $*"
    out=$("$STRATA" bench --json --label "$s" --nfs-port "${NFSPORT[$s]}" --mount-port "${MOUNTPORT[$s]}" \
        --export "${EXPORT[$s]}" --watch-pid "${PID[$s]}" "$@" 2>> "$LOG") || log "$s $name: exit status $?"
    [ -n "$out" ] || { echo "{\"server\":\"$s\",\"pair\":\"$pair\",\"row\":\"$name\",\"failed\":true}" >> "$RESULTS/results.jsonl"; return 0; }
    # An invocation with several phases (readdirplus, create) gives one row per phase.
    echo "$out" | python3 -c '
import json, sys
server, pair, row = sys.argv[1:4]
lines = [json.loads(line) for line in sys.stdin if line.strip()]
for o in lines:
    o.update(server=server, pair=pair, row=o["phase"] if len(lines) > 1 else row)
    print(json.dumps(o))' "$s" "$pair" "$name" >> "$RESULTS/results.jsonl"
}

# The rows of a pair, ganesha first then Strata in each.
measure_pair() { # PAIR GANESHA STRATA
    local pair=$1 s
    shift
    for s in "$@"; do row "$s" "$pair" readdirplus --workload readdirplus --path tree --passes 3 --qd "$QD"; done
    for s in "$@"; do row "$s" "$pair" getattr --workload getattr --path tree/d0000/f00000 --n "$N_META" --qd "$QD"; done
    for s in "$@"; do row "$s" "$pair" "getattr qd1" --workload getattr --path tree/d0000/f00000 --n "$N_LAT" --qd 1; done
    for s in "$@"; do row "$s" "$pair" lookup --workload lookup --path tree/d0000 --n "$N_META" --qd "$QD"; done
    for s in "$@"; do row "$s" "$pair" create --workload create --dir "c-$s" --n "$N_CREATE" --qd "$QD"; done
    for s in "$@"; do row "$s" "$pair" mkdir-tree --workload mkdir-tree --dir "mt-$s" --dirs "$MT_DIRS" --files "$MT_FILES" --qd "$QD"; done
    for s in "$@"; do
        cat "${DATA[$s]}" > /dev/null  # warm: the page cache holds the file for both servers
        row "$s" "$pair" read --workload read --path data.dat --qd 8
    done
    for s in "$@"; do row "$s" "$pair" write --workload write --path "w-$s.dat" --size "$SIZE" --qd 8; done
    for s in "$@"; do row "$s" "$pair" write-sync --workload write-sync --path "ws-$s.dat" --size "$SIZE" --qd 8; done
}

phase_plain() {
    fill "$WORK/gp" "$WORK/gp"
    fill "$WORK/sp/lower" "$WORK/sp/lower"
    DATA[ganesha-plain]=$WORK/gp/data.dat DATA[strata-plain]=$WORK/sp/lower/data.dat
    sync
    start_ganesha ganesha-plain "$WORK/gp"
    start_strata strata-plain /plain "$WORK/sp/upper" "$WORK/sp/lower"
    measure_pair plain ganesha-plain strata-plain
    stop_servers
    # The trees stay until `cleanup`: on ext4 without a journal every new inode skips, one by one, the inodes of its
    # group freed in the last minute (`recently_deleted`), so removing them here made the next phase's CREATEs pay.
}

phase_union() {
    local o=$WORK/go options
    fill "$o/L2" "$o/L1"
    fill "$WORK/su/L2" "$WORK/su/L1"
    DATA[ganesha-overlay]=$o/L2/data.dat DATA[strata-union]=$WORK/su/L2/data.dat
    sync
    mkdir -p "$o/U" "$o/W" "$o/M"
    # NFS export of an overlay needs index=on,nfs_export=on (file handles that survive).
    for options in "index=on,nfs_export=on,redirect_dir=nofollow" "index=on,nfs_export=on"; do
        if mount -t overlay overlay -o "lowerdir=$o/L1:$o/L2,upperdir=$o/U,workdir=$o/W,$options" "$o/M" 2>> "$LOG"; then
            OVERLAY=$o/M
            break
        fi
    done
    [ -n "$OVERLAY" ] || die "the kernel refused the overlay mount (see $LOG)"
    start_ganesha ganesha-overlay "$o/M"
    start_strata strata-union /union "$WORK/su/upper" "$WORK/su/L1" "$WORK/su/L2"
    measure_pair union ganesha-overlay strata-union
    # The first WRITE to a lower file: the whole file is copied up before it lands.
    sync
    for s in ganesha-overlay strata-union; do
        row "$s" union "copy-up first write" --workload write --path copyup.dat --size 1M --bs 1M --qd 1
    done
    stop_servers  # the trees stay until `cleanup`, as in phase_plain
}

# The durable pair: nfs-ganesha makes no namespace change durable before its reply (FSAL_VFS calls no fsync for
# CREATE, MKDIR, REMOVE, ...; Strata does, as RFC 1813 asks and knfsd's default `sync` export does). Here both
# servers export directories of one freshly made ext4 WITH a journal (DURABLE_SIZE, default 4G, a sparse file in
# the work directory, loop-mounted in this script's mount namespace only), and ganesha's directory carries the
# `dirsync` attribute (`chattr +D`, inherited by every directory made under it): each directory change of its
# export is committed to the journal before the system call returns, so its replies are as durable as Strata's.
# The reference for "is Strata fast for what it promises"; the plain and union pairs answer "against what users
# run today".
phase_durable() {
    local fs=$WORK/durable-fs image=$WORK/durable.img
    truncate -s "${DURABLE_SIZE:-4G}" "$image"
    mkfs.ext4 -q -F -E lazy_itable_init=0,lazy_journal_init=0 "$image" >> "$LOG" 2>&1 ||
        die "mkfs.ext4 of $image failed (apt-get install -y e2fsprogs)"
    mkdir -p "$fs"
    mount -o loop "$image" "$fs" 2>> "$LOG" || die "the loop mount of $image on $fs failed (see $LOG)"
    DURABLE_MOUNT=$fs
    mkdir -p "$fs/gd" "$fs/sd/lower"
    chattr +D "$fs/gd" 2>> "$LOG" || die "chattr +D $fs/gd failed: the durable pair needs ext4's dirsync attribute"
    lsattr -d "$fs/gd" | cut -d' ' -f1 | grep -q D || die "$fs/gd lacks the dirsync attribute after chattr +D"
    start_ganesha ganesha-durable "$fs/gd"
    start_strata strata-durable /durable "$fs/sd/upper" "$fs/sd/lower"
    local s
    for s in ganesha-durable strata-durable; do row "$s" durable create --workload create --dir "c-$s" --n "$N_CREATE" --qd "$QD"; done
    for s in ganesha-durable strata-durable; do row "$s" durable mkdir-tree --workload mkdir-tree --dir "mt-$s" --dirs "$MT_DIRS" --files "$MT_FILES" --qd "$QD"; done
    for s in ganesha-durable strata-durable; do row "$s" durable write-sync --workload write-sync --path "ws-$s.dat" --size "$SIZE" --qd 8; done
    stop_servers
}

# The boot storm, quick form: scripts/boot-storm.sh (its own namespace inside this one, its own
# servers: Strata with per-client uppers, ganesha with one overlay mount per client, ganesha
# read-only) for BOOT_N clients; its table is printed after the others.
phase_boot() {
    STRATA_BIN=$BIN RESULTS=$RESULTS/boot-storm bash "$ROOT/scripts/boot-storm.sh" $BOOT_N >> "$LOG" 2>&1 \
        || echo "bench: the boot storm failed (see $LOG)" >&2
}

{
    echo "strata: $("$STRATA" --version) ($BIN)"
    echo "nfs-ganesha: $(dpkg-query -W -f '${Version}' nfs-ganesha 2>/dev/null || echo unknown)"
    echo "kernel: $(uname -r), $(nproc) CPUs"
    echo "settings: SIZE=$SIZE N_META=$N_META N_LAT=$N_LAT N_CREATE=$N_CREATE QD=$QD TREE=${TREE_DIRS}x$TREE_FILES MKDIR-TREE=${MT_DIRS}x$MT_FILES"
} > "$RESULTS/machine.txt"
LOAD_BEFORE=$(cut -d' ' -f1-3 /proc/loadavg)
start_rpcbind
for phase in $PHASES; do
    declare -F "phase_$phase" > /dev/null || die "unknown phase '$phase' (PHASES: plain union ...)"
    echo "bench: $phase ..." >&2
    "phase_$phase"
done
LOAD_AFTER=$(cut -d' ' -f1-3 /proc/loadavg)
echo "host load average (1, 5, 15 min): before $LOAD_BEFORE, after $LOAD_AFTER" >> "$RESULTS/machine.txt"

python3 - "$RESULTS/results.jsonl" > "$RESULTS/table.md" <<'EOF'
import json, sys
rows, order = {}, []
for line in open(sys.argv[1]):
    o = json.loads(line)
    key = (o["pair"], o["row"])
    if key not in rows:
        rows[key] = {}
        order.append(key)
    rows[key][o["server"]] = o
pairs = {"plain": ("ganesha-plain", "strata-plain"), "union": ("ganesha-overlay", "strata-union"),
         "durable": ("ganesha-durable", "strata-durable")}

def figure(o):
    if o is None or o.get("failed"): return "failed"
    if o["row"] == "copy-up first write": return "%.1f ms" % (o["max_us"] / 1000)
    return "%.0f %s" % (o["rate"], o["unit"])

def ratio(g, s):
    if not g or not s or g.get("failed") or s.get("failed"): return "-"
    if g["row"] == "copy-up first write":
        return "%.2f (latency)" % (s["max_us"] / g["max_us"]) if g["max_us"] else "-"
    return "%.2f" % (s["rate"] / g["rate"]) if g["rate"] else "-"

def cpu(o):
    if o is None or o.get("failed"): return "-"
    server = o.get("server_us_per_op")
    return "%.1f / %s" % (o["client_us_per_op"], "%.1f" % server if server is not None else "-")

def errors(o):
    return "-" if o is None or o.get("failed") else str(o["errors"])

print("| pair | row | ganesha | strata | strata/ganesha | errors g/s | µs CPU per call, client / server: ganesha | strata | host busy % g/s |")
print("|---|---|---:|---:|---:|---:|---:|---:|---:|")
for pair, row in order:
    g_name, s_name = pairs.get(pair, (None, None))
    servers = rows[(pair, row)]
    if g_name is None:  # a section with servers of its own: one line per server
        for name, o in servers.items():
            print("| %s | %s %s | | %s | | %s | | %s | |" % (pair, row, name, figure(o), errors(o), cpu(o)))
        continue
    g, s = servers.get(g_name), servers.get(s_name)
    host = "%s/%s" % tuple("%.0f" % o["host_cpu_pct"] if o and "host_cpu_pct" in o else "-" for o in (g, s))
    print("| %s | %s | %s | %s | %s | %s/%s | %s | %s | %s |" % (
        pair, row, figure(g), figure(s), ratio(g, s), errors(g), errors(s), cpu(g), cpu(s), host))
EOF
echo
cat "$RESULTS/machine.txt"
echo
cat "$RESULTS/table.md"
if [ -f "$RESULTS/boot-storm/table.txt" ]; then
    echo
    echo "boot storm, N = $BOOT_N (the recorded boot replayed by N clients at once; full curve: scripts/boot-storm.sh):"
    cat "$RESULTS/boot-storm/table.txt"
fi

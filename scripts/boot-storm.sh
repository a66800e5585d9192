#!/usr/bin/env bash
# Boot storm: how many diskless clients can one server boot at once, and how long does a boot
# take when the whole room powers on? The recorded boot (Bench/boot-trace.script, see
# Docs/BOOT-TRACE.md) is replayed by N clients at once (strata bench boot), each from its own
# loopback address, against, in the same run:
#   strata           one export, the image as its lower, a private upper per client
#                    (upper = ".../{client}", made on the client's first MNT, inside the storm);
#   strata-premounted the same, every client having mounted once before the storm (not timed):
#                    the uppers exist, as the incumbent's overlay directories do;
#   strata-spares    the same as strata, with spare_uppers = N: N blank uppers made when the server
#                    starts (before the clock), each new client's first MNT renames one into place;
#   ganesha-overlay  nfs-ganesha (FSAL_VFS) exporting one kernel overlayfs mount per client
#                    (the image as the shared lower, a private upper each, one EXPORT each,
#                    restricted to that client): what a site does by hand today;
#   ganesha-ro       nfs-ganesha exporting the image read-only, no uppers: the clients replay
#                    only the reads of the boot (their writable directories would be local).
#   strata-ro        strata-spares, the clients replaying only the reads of the boot, as for
#                    ganesha-ro: beside strata-spares, what the boot's changes cost (each reply
#                    durable); beside ganesha-ro, what the reads cost with a namespace per client.
# Each server is started fresh for every N (new uppers) and stopped after it.
#
# Usage (root):  flock /tmp/bench.lock bash scripts/boot-storm.sh [N ...]   (default 1 10 50 100 200)
# Environment:   STRATA_BIN (default .build/release/strata)   TRACE (default Bench/boot-trace.script)
#                SERVERS (default "strata strata-premounted ganesha-overlay ganesha-ro")   RESULTS (default a new
#                /var/tmp/boot-storm-DATE directory: results.jsonl, table.txt, logs, configs)
#                WORKDIR (default /var/tmp; images, uppers, overlay mounts; removed at the end;
#                "tmpfs": a private tmpfs, so that neither server waits for a shared, busy disk;
#                "ext4": a freshly made ext4 without a journal, EXT4_SIZE (default 4G) in a sparse file under
#                /var/tmp, loop-mounted for this run only: no inode on it was freed lately, see the probe below;
#                figures compare within a run, not with another disk's)
#                STRATA_THREADS: Strata's `[server] threads` (default: the server's, 64)
#                PROFILE=1: each Strata storm runs under `perf record -e cpu-clock -g -p PID`
#                (RESULTS/perf-SERVER-N.data and a report, RESULTS/perf-SERVER-N.txt)
# Everything runs in a private network and mount namespace (only lo; the overlay mounts, rpcbind
# and the servers exist only there). Needs: nfs-ganesha, nfs-ganesha-vfs, rpcbind, python3.
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
die() { echo "boot-storm: $*" >&2; exit 1; }
ALL_SERVERS="strata strata-premounted strata-spares ganesha-overlay ganesha-ro strata-ro"
SERVERS=${SERVERS:-$ALL_SERVERS}
for s in $SERVERS; do [[ " $ALL_SERVERS " == *" $s "* ]] || die "SERVERS: unknown server $s (known: $ALL_SERVERS)"; done

if [ "${BOOT_STORM_INNER:-}" != 1 ]; then
  [ "$(id -u)" = 0 ] || die "run as root (namespaces, overlay mounts, servers)"
  bin=${STRATA_BIN:-$HERE/.build/release/strata}
  [ -x "$bin" ] || die "no strata binary at $bin: swift build -c release --product strata (or set STRATA_BIN)"
  trace=${TRACE:-$HERE/Bench/boot-trace.script}
  [ -f "$trace" ] || die "no boot script $trace (scripts/record-boot.sh records one)"
  # The image is the VM tests' busybox root (make_diskless_image copies /bin/busybox).
  [ -x /bin/busybox ] || die "missing /bin/busybox for the image (apt-get install -y busybox-static, or: bash scripts/deps.sh bench)"
  if [[ " $SERVERS " == *" ganesha"* ]]; then
    for c in ganesha.nfsd rpcbind python3; do command -v $c >/dev/null || die "missing $c (apt-get install -y nfs-ganesha nfs-ganesha-vfs rpcbind python3)"; done
    [ -f /usr/lib/x86_64-linux-gnu/ganesha/libfsalvfs.so ] || die "missing FSAL_VFS (apt-get install -y nfs-ganesha-vfs)"
  fi
  RESULTS=${RESULTS:-/var/tmp/boot-storm-$(date +%Y%m%d-%H%M%S)}
  mkdir -p "$RESULTS"
  export BOOT_STORM_INNER=1 STRATA_BIN=$(realpath "$bin") TRACE=$(realpath "$trace") RESULTS=$(realpath "$RESULTS") SERVERS
  exec unshare -n -m --propagation private "$0" "$@"
fi

# ---- inside the namespaces -----------------------------------------------------------------
COUNTS=${*:-1 10 50 100 200}
ip link set lo up
mount -t tmpfs tmpfs /run
mkdir -p /run/rpcbind /run/lock /run/ganesha
if [ "${WORKDIR:-}" = tmpfs ]; then
  mkdir -p /var/tmp/boot-storm-tmpfs && mount -t tmpfs -o size=4g,mode=755 tmpfs /var/tmp/boot-storm-tmpfs  # this mount namespace only
  WORK=$(mktemp -d /var/tmp/boot-storm-tmpfs/work.XXXXXX)
elif [ "${WORKDIR:-}" = ext4 ]; then
  FS_IMAGE=$(mktemp /var/tmp/boot-storm-ext4.XXXXXX)
  truncate -s "${EXT4_SIZE:-4G}" "$FS_IMAGE"
  mkfs.ext4 -q -F -O ^has_journal -E lazy_itable_init=0 "$FS_IMAGE" || die "mkfs.ext4 of $FS_IMAGE failed (apt-get install -y e2fsprogs)"
  mkdir -p /var/tmp/boot-storm-ext4 && mount -o loop "$FS_IMAGE" /var/tmp/boot-storm-ext4  # this mount namespace only
  WORK=$(mktemp -d /var/tmp/boot-storm-ext4/work.XXXXXX)
else
  WORK=$(mktemp -d "${WORKDIR:-/var/tmp}/boot-storm.XXXXXX")
fi
chmod 755 "$WORK"
JSONL=$RESULTS/results.jsonl; : >"$JSONL"
LOG=$RESULTS/boot-storm.log; : >"$LOG"
log() { echo "[$(date +%T)] $*" | tee -a "$LOG" >&2; }
SERVER_PID= RPCBIND_PID=
MOUNTED=()
FIRST_SOURCE=127.1.0.1

stop_pid() { # PID: TERM, up to 15 s, then KILL; only this pid
  local pid=$1 i
  [ -n "$pid" ] || return 0
  kill -TERM "$pid" 2>/dev/null || return 0
  for i in $(seq 150); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  kill -0 "$pid" 2>/dev/null && kill -KILL "$pid" 2>/dev/null
  wait "$pid" 2>/dev/null || true
}
unmount_all() { local m; for m in "${MOUNTED[@]}"; do umount "$m" 2>/dev/null || umount -l "$m" 2>/dev/null || true; done; MOUNTED=(); }
cleanup() {
  set +e
  stop_pid "$SERVER_PID"; stop_pid "$RPCBIND_PID"; unmount_all
  rm -rf "$WORK"
  if [ -n "${FS_IMAGE:-}" ]; then umount /var/tmp/boot-storm-ext4 2>/dev/null || umount -l /var/tmp/boot-storm-ext4; rm -f "$FS_IMAGE"; fi
}
# A run's directory (uppers, overlay directories) is removed at the end, not right after the run: on ext4 without a
# journal every inode allocation skips, one by one, the inodes of its group freed in the last minute
# (`recently_deleted`), so removing one server's thousands of files made the next server's creates scan them (a
# sixth of Strata's CPU in a profile of N = 50, whichever server came next paid it). `cleanup` removes them all.
trap cleanup EXIT

port_listening() { # PORT
  local hex; hex=$(printf '%04X' "$1")
  awk -v h=":$hex" '$4=="0A" && substr($2, length($2)-4)==h {f=1} END {exit !f}' /proc/net/tcp /proc/net/tcp6 2>/dev/null
}
wait_ports() { # PID SECONDS PORT...
  local pid=$1 end=$(( $(date +%s) + $2 )) p; shift 2
  for p in "$@"; do
    until port_listening "$p"; do
      kill -0 "$pid" 2>/dev/null || return 1
      [ "$(date +%s)" -lt "$end" ] || return 1
      sleep 0.1
    done
  done
}
source_address() { # N (1-based): the address client N replays from (as strata bench boot counts)
  python3 -c "import ipaddress,sys; print(ipaddress.ip_address('$FIRST_SOURCE') + int(sys.argv[1]) - 1)" "$1"
}

# The image: the one the boot was recorded on (Tests/VM/host/fixtures.sh).
VM_DIR=$HERE/Tests/VM
# shellcheck source=../Tests/VM/host/fixtures.sh
. "$VM_DIR/host/fixtures.sh"
make_diskless_image "$WORK/image"
log "image: $(du -sh "$WORK/image" | cut -f1), $(find "$WORK/image" | wc -l) entries; boot script $TRACE ($(grep -vc '^#' "$TRACE") calls)"
{ echo "host: $(uname -r), $(nproc) cores, $(free -m | awk '/Mem:/ {print $2}') MiB"
  echo "strata: $("$STRATA_BIN" --version 2>/dev/null)"; echo "nfs-ganesha: $(dpkg-query -W -f '${Version}' nfs-ganesha 2>/dev/null)"
  echo "work directory: $WORK on $(findmnt -n -o FSTYPE -T "$WORK")"
  echo "load at start: $(cat /proc/loadavg)"; } | tee "$RESULTS/machine.txt" >&2
# What a new inode costs on the work directory's file system right now. ext4 without a journal skips, at every
# allocation, each inode of the group freed in the last minute (`recently_deleted`): after something deleted many
# files (an earlier run's clean-up, a test suite), every server's CREATEs and MKDIRs pay for it, and the disk figures
# say more about that than about the servers. The probe's files stay until the clean-up.
probe_us=$(python3 - "$WORK/inode-probe" <<'EOF_PROBE'
import os, sys, time
os.mkdir(sys.argv[1])
start = time.perf_counter()
for i in range(300):
    os.close(os.open(os.path.join(sys.argv[1], "p%d" % i), os.O_CREAT | os.O_WRONLY, 0o644))
print(round((time.perf_counter() - start) / 300 * 1e6))
EOF_PROBE
)
echo "inode allocation: ${probe_us} us per new file (300 created in a new directory)" | tee -a "$RESULTS/machine.txt" >&2
if [ "${probe_us:-0}" -gt 100 ]; then
  log "warning: a new inode costs ${probe_us} us on $WORK's file system (about 25 on this kind of disk when nothing was deleted lately): recently deleted inodes slow every server's creates; wait a few minutes, or use WORKDIR=ext4 (a fresh file system of the same kind) or WORKDIR=tmpfs"
fi

# bench SERVER N PID EXPORT [--reads-only]: one storm; appends a JSON line
bench() {
  local server=$1 n=$2 pid=$3 export=$4 port_nfs=$5 port_mount=$6; shift 6
  local out=$RESULTS/$server-$n.json
  if ! timeout 900 "$STRATA_BIN" bench boot --clients "$n" --trace "$TRACE" --nfs-port "$port_nfs" --mount-port "$port_mount" \
      --export "$export" --source "$FIRST_SOURCE" --watch-pid "$pid" --json "$@" >"$out" 2>>"$LOG"; then
    log "$server N=$n: strata bench boot failed (see $LOG)"; return 1
  fi
}
# record SERVER N UPPER_BYTES: the storm's JSON plus the server's name, N, bytes in its uppers, load
record() {
  python3 - "$RESULTS/$1-$2.json" "$1" "$2" "$3" "$(cut -d' ' -f1-3 /proc/loadavg)" >>"$JSONL" <<'EOF'
import json, sys
r = json.load(open(sys.argv[1]))
r.update(server=sys.argv[2], n=int(sys.argv[3]), upperBytes=int(sys.argv[4]), load=sys.argv[5])
print(json.dumps(r, sort_keys=True))
EOF
  log "$1 N=$2: $(python3 -c 'import json,sys; r=json.load(open(sys.argv[1]))["storm"]; print("all booted %.2f s, p99 boot %.2f s, %d errors" % (r["allBootedSeconds"], r["bootP99Seconds"], r["errors"]))' "$RESULTS/$1-$2.json")"
}

run_strata() { # N [NAME [--premount]]
  local n=$1 name=${2:-strata} d=$WORK/${2:-strata}-$1 spares=0; shift; shift || true
  [ "$name" = strata-spares ] || [ "$name" = strata-ro ] && spares=$n
  mkdir -p "$d/state" "$d/uppers"
  cat >"$RESULTS/$name-$n.toml" <<EOF
[server]
listen = ["127.0.0.1"]
nfs_port = 3049
mount_port = 30048
portmapper = "off"
state_dir = "$d/state"
log_level = "warning"
${STRATA_THREADS:+threads = $STRATA_THREADS}

[[export]]
path = "/diskless"
lowers = ["$WORK/image"]
upper = "$d/uppers/{client}"
clients = ["127.0.0.0/8(rw,no_root_squash,insecure)"]
$( [ "$spares" -gt 0 ] && echo "spare_uppers = $spares" )
EOF
  local started; started=$(date +%s.%N)
  "$STRATA_BIN" serve --config "$RESULTS/$name-$n.toml" >"$RESULTS/$name-$n.log" 2>&1 &
  SERVER_PID=$!
  # With spare uppers the server makes them before it listens.
  wait_ports "$SERVER_PID" 300 3049 30048 || { log "strata did not listen (see $RESULTS/$name-$n.log)"; stop_pid "$SERVER_PID"; SERVER_PID=; return 1; }
  log "$name N=$n: listening $(python3 -c 'import sys; print("%.2f" % (float(sys.argv[2]) - float(sys.argv[1])))' "$started" "$(date +%s.%N)") s after its start"
  # What the start left dirty (the spares) is not the storm's to flush.
  sync -f "$d"
  local perf_pid=
  if [ "${PROFILE:-}" = 1 ]; then
    perf record -q -e cpu-clock -g -p "$SERVER_PID" -o "$RESULTS/perf-$name-$n.data" 2>>"$LOG" &
    perf_pid=$!
  fi
  bench "$name" "$n" "$SERVER_PID" /diskless 3049 30048 "$@" || true
  if [ -n "$perf_pid" ]; then
    kill -INT "$perf_pid" 2>/dev/null; wait "$perf_pid" 2>/dev/null || true
    perf report -i "$RESULTS/perf-$name-$n.data" --no-children --percent-limit 1 --stdio >"$RESULTS/perf-$name-$n.txt" 2>>"$LOG" || true
  fi
  stop_pid "$SERVER_PID"; SERVER_PID=
  [ -f "$RESULTS/$name-$n.json" ] && record "$name" "$n" "$(du -sb "$d/uppers" | cut -f1)"
  # "$d" stays until cleanup (above)
}

start_rpcbind() {
  [ -n "$RPCBIND_PID" ] && return 0
  rpcbind -f >"$RESULTS/rpcbind.log" 2>&1 &
  RPCBIND_PID=$!
  wait_ports "$RPCBIND_PID" 10 111 || die "rpcbind did not listen on 111"
}

ganesha_core() {
  cat <<EOF
NFS_CORE_PARAM { NFS_Port = 2049; MNT_Port = 20048; Enable_NLM = false; Enable_RQUOTA = false; Protocols = 3;
  Plugins_Dir = /usr/lib/x86_64-linux-gnu/ganesha; }
NFSV4 { Graceless = true; RecoveryRoot = "$1/recovery"; }
LOG { Default_Log_Level = EVENT; }
EOF
}

# run_ganesha SERVER N CONF UPPERS EXPORT [--reads-only]
run_ganesha() {
  local server=$1 n=$2 conf=$3 uppers=$4 export=$5; shift 5
  start_rpcbind
  ganesha.nfsd -F -f "$conf" -L "$RESULTS/$server-$n.log" -p "$WORK/ganesha.pid" &
  SERVER_PID=$!
  # A ganesha with hundreds of exports takes a while to come up.
  wait_ports "$SERVER_PID" 120 2049 20048 || { log "ganesha did not listen (see $RESULTS/$server-$n.log)"; stop_pid "$SERVER_PID"; SERVER_PID=; return 1; }
  bench "$server" "$n" "$SERVER_PID" "$export" 2049 20048 "$@" || true
  stop_pid "$SERVER_PID"; SERVER_PID=
  [ -f "$RESULTS/$server-$n.json" ] && record "$server" "$n" "$( [ -n "$uppers" ] && du -scb $uppers | tail -1 | cut -f1 || echo 0)"
}

run_ganesha_overlay() { # N
  local n=$1 d=$WORK/overlay-$1 i conf=$RESULTS/ganesha-overlay-$1.conf opts=
  mkdir -p "$d/recovery"
  ganesha_core "$d" >"$conf"
  for i in $(seq "$n"); do
    mkdir -p "$d/u$i" "$d/w$i" "$d/m$i"
    if [ -z "$opts" ]; then
      for o in "index=on,nfs_export=on,redirect_dir=nofollow" "index=on,nfs_export=on"; do
        mount -t overlay overlay -o "lowerdir=$WORK/image,upperdir=$d/u$i,workdir=$d/w$i,$o" "$d/m$i" 2>>"$LOG" && { opts=$o; break; }
      done
      [ -n "$opts" ] || { log "the kernel refused the overlay mount options (see $LOG)"; return 1; }
      log "overlay options: $(findmnt -n -o OPTIONS "$d/m$i")"
    else
      mount -t overlay overlay -o "lowerdir=$WORK/image,upperdir=$d/u$i,workdir=$d/w$i,$opts" "$d/m$i"
    fi
    MOUNTED+=("$d/m$i")
    cat >>"$conf" <<EOF
EXPORT { Export_Id = $i; Path = "$d/m$i"; Pseudo = "/c$i"; Protocols = 3; Transports = TCP; Access_Type = None;
  Squash = No_Root_Squash; SecType = sys; FSAL { Name = VFS; } CLIENT { Clients = $(source_address "$i"); Access_Type = RW; } }
EOF
  done
  log "ganesha-overlay N=$n: $n overlay mounts, $n exports"
  run_ganesha ganesha-overlay "$n" "$conf" "$d/u*" "$d/m{n}" || true
  unmount_all
  # "$d" stays until cleanup (above)
}

run_ganesha_ro() { # N
  local n=$1 d=$WORK/ro-$1 conf=$RESULTS/ganesha-ro-$1.conf
  mkdir -p "$d/recovery"
  { ganesha_core "$d"
    echo "EXPORT { Export_Id = 1; Path = \"$WORK/image\"; Pseudo = \"/image\"; Protocols = 3; Transports = TCP; Access_Type = RO;"
    echo "  Squash = No_Root_Squash; SecType = sys; FSAL { Name = VFS; } }"; } >"$conf"
  run_ganesha ganesha-ro "$n" "$conf" "" "$WORK/image" --reads-only || true
  # "$d" stays until cleanup (above)
}

for n in $COUNTS; do
  for s in $SERVERS; do
    # What the previous step left dirty (the image, the last server's uppers) is written back now, not by the first
    # syncfs of the next storm (Strata's first CREATE waited 30 ms for it at N = 1, and ganesha never syncs).
    sync -f "$WORK"
    log "=== $s N=$n (load $(cut -d' ' -f1-3 /proc/loadavg))"
    case $s in
      strata) run_strata "$n" ;;
      strata-premounted) run_strata "$n" strata-premounted --premount ;;
      strata-spares) run_strata "$n" strata-spares ;;
      ganesha-overlay) run_ganesha_overlay "$n" ;;
      ganesha-ro) run_ganesha_ro "$n" ;;
      strata-ro) run_strata "$n" strata-ro --reads-only ;;
    esac
  done
done
echo "load at end: $(cat /proc/loadavg)" | tee -a "$RESULTS/machine.txt" >&2

python3 - "$JSONL" <<'EOF' | tee "$RESULTS/table.txt"
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
by = {(r["server"], r["n"]): r for r in rows}
hdr = f'{"server":16} {"N":>4} {"all booted s":>12} {"boot p50 s":>10} {"boot p99 s":>10} {"call p50 ms":>11} {"call p99 ms":>11} {"errors":>6} {"srv CPU s":>9} {"srv us/call":>11} {"cli us/call":>11} {"host us/call":>12} {"host busy %":>11} {"peak RSS MiB":>12} {"RSS/client KiB":>14} {"upper KiB":>9}'
print(hdr); print("-" * len(hdr))
for r in sorted(rows, key=lambda r: (r["n"], r["server"])):
    s = r["storm"]
    print(f'{r["server"]:16} {r["n"]:>4} {s["allBootedSeconds"]:>12.2f} {s["bootP50Seconds"]:>10.2f} {s["bootP99Seconds"]:>10.2f} '
          f'{s["callP50Milliseconds"]:>11.2f} {s["callP99Milliseconds"]:>11.2f} {s["errors"]:>6} {r.get("serverCPUSeconds", 0):>9.2f} '
          f'{r.get("serverCPUPerCallMicroseconds", 0):>11.0f} {r["clientCPUPerCallMicroseconds"]:>11.0f} '
          f'{r.get("hostCPUPerCallMicroseconds", 0):>12.0f} {r.get("hostBusyPercent", 0):>11.0f} '
          f'{r.get("serverPeakRSSBytes", 0) / 1048576:>12.1f} {r.get("serverRSSPerClientBytes", 0) / 1024:>14.0f} {r["upperBytes"] / 1024:>9.0f}')
print()
# Where a client's boot goes: each instant of a boot given to the oldest call outstanding then (strata bench boot).
reads = {"LOOKUP", "GETATTR", "ACCESS", "READ", "READLINK", "READDIR", "READDIRPLUS", "FSSTAT", "FSINFO", "PATHCONF", "NULL"}
hdr = f'{"where a boot goes (s)":22} {"N":>4} {"mean boot":>9} {"(client)":>8} {"MNT":>6} {"reads":>6} {"changes":>7}  heaviest'
print(hdr); print("-" * len(hdr))
for r in sorted(rows, key=lambda r: (r["n"], r["server"])):
    b = r["storm"].get("bootSeconds") or {}
    if not b: continue
    client, mnt = b.get("(client)", 0), b.get("MNT", 0)
    rd = sum(v for k, v in b.items() if k in reads)
    ch = sum(v for k, v in b.items() if k not in reads and k not in ("(client)", "MNT", "UMNT"))
    top = ", ".join(f"{k} {v:.2f}" for k, v in sorted(b.items(), key=lambda kv: -kv[1])[:3])
    print(f'{r["server"]:22} {r["n"]:>4} {sum(b.values()):>9.2f} {client:>8.2f} {mnt:>6.2f} {rd:>6.2f} {ch:>7.2f}  {top}')
print()
# Per operation, per server: call latency p50 / p99 (ms), the operations ordered by their total latency.
for n in sorted({r["n"] for r in rows}):
    servers = [r for r in sorted(rows, key=lambda r: r["server"]) if r["n"] == n and r["storm"].get("operations")]
    if not servers: continue
    totals = {}
    for r in servers:
        for op, f in r["storm"]["operations"].items(): totals[op] = totals.get(op, 0) + f["totalMilliseconds"]
    print(f'call latency by operation, N={n}, p50 / p99 ms (calls per client):')
    print(f'  {"":12}' + "".join(f'{r["server"]:>22}' for r in servers))
    for op in sorted(totals, key=lambda op: -totals[op]):
        cells = []
        for r in servers:
            f = r["storm"]["operations"].get(op)
            cells.append(f'{f["p50Milliseconds"]:>9.2f} / {f["p99Milliseconds"]:>8.2f}' if f else f'{"-":>22}')
        calls = next((r["storm"]["operations"][op]["calls"] // max(r["n"], 1) for r in servers if op in r["storm"]["operations"]), 0)
        print(f'  {op:12}' + "".join(f'{c:>22}' for c in cells) + f'  ({calls})')
    print()
for strata in ("strata", "strata-premounted", "strata-spares"):
    if not any(r["server"] == strata for r in rows): continue
    print(f"ratios ganesha-overlay / {strata} (above 1: Strata faster):")
    for n in sorted({r["n"] for r in rows}):
        g, s = by.get(("ganesha-overlay", n)), by.get((strata, n))
        if g and s:
            gs, ss = g["storm"], s["storm"]
            f = lambda a, b: f"{a / b:.2f}x" if b > 0 else "-"
            print(f'  N={n:<4} time to all booted {f(gs["allBootedSeconds"], ss["allBootedSeconds"])}, boot p99 {f(gs["bootP99Seconds"], ss["bootP99Seconds"])}, '
                  f'boot p50 {f(gs["bootP50Seconds"], ss["bootP50Seconds"])}, server CPU {f(g.get("serverCPUSeconds", 0), s.get("serverCPUSeconds", 0))}, '
                  f'host CPU {f(g.get("hostCPUSeconds", 0), s.get("hostCPUSeconds", 0))}')
EOF
log "results: $RESULTS"

#!/usr/bin/env bash
# Strata benchmarks: throughput and listing cost through an independent client (libnfs tools)
# against a release build on loopback, each figure next to a reference measured in the same run:
#   - copy in/out of a large file through NFS vs a local cp of the same file (the disk's speed);
#   - listing a 10,000-entry directory merged from three layers vs the same entries in one layer
#     (the price of the union);
#   - reading a lower-layer file vs the same file after copy-up.
# Usage: bash scripts/bench.sh [SIZE_MIB] (default 256). Needs: a release build, libnfs-utils.
set -euo pipefail
cd "$(dirname "$0")/.."
size_mib=${1:-256}
bin=${STRATA_BIN:-$PWD/.build/release/strata}
[ -x "$bin" ] || { echo "bench: $bin missing; run: swift build -c release --product strata" >&2; exit 1; }
work=$(mktemp -d /tmp/strata-bench.XXXXXX)
server_pid=""
cleanup() { [ -n "$server_pid" ] && kill "$server_pid" 2>/dev/null && wait "$server_pid" 2>/dev/null; rm -rf "$work"; }
trap cleanup EXIT

now() { date +%s.%N; }
rate() { awk -v b="$1" -v s="$2" 'BEGIN { printf "%.1f MiB/s", b / 1048576 / s }'; }
secs() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.3f", b - a }'; }

echo "bench: preparing fixtures in $work ($size_mib MiB file, 10,000-entry directories)"
mkdir -p "$work"/{l1,l2,l3,single,upper,state}
head -c $((size_mib << 20)) /dev/urandom > "$work/big.bin"
cp "$work/big.bin" "$work/l3/lower-big.bin"
mkdir -p "$work"/{l1,l2,l3}/merged "$work/single/merged"
for i in $(seq 0 9999); do : > "$work/l$(( i % 3 + 1 ))/merged/e-$i"; : > "$work/single/merged/e-$i"; done
# Overlap: a third of the names also exist in a second layer (the merge must drop duplicates).
for i in $(seq 0 3 9999); do : > "$work/l2/merged/e-$i"; done

cat > "$work/strata.toml" <<TOML
[server]
listen = ["127.0.0.1"]
nfs_port = 0
mount_port = 0
portmapper = "off"
state_dir = "$work/state"
log_level = "warning"

[[export]]
path = "/union"
lowers = ["$work/l1", "$work/l2", "$work/l3"]
upper = "$work/upper"
clients = ["127.0.0.0/8(rw,no_root_squash,insecure)"]

[[export]]
path = "/single"
lowers = ["$work/single"]
clients = ["127.0.0.0/8(ro,insecure)"]
TOML
"$bin" serve --config "$work/strata.toml" --ready-file "$work/ready" > "$work/log" 2>&1 &
server_pid=$!
for _ in $(seq 200); do [ -s "$work/ready" ] && break; sleep 0.05; done
[ -s "$work/ready" ] || { cat "$work/log"; exit 1; }
nfs=$(sed -n 's/.*nfs=\([0-9]*\).*/\1/p' "$work/ready"); mount=$(sed -n 's/.*mount=\([0-9]*\).*/\1/p' "$work/ready")
url() { echo "nfs://127.0.0.1$1?version=3&nfsport=$nfs&mountport=$mount"; }
bytes=$((size_mib << 20))

sync; t0=$(now); cp "$work/big.bin" "$work/local-copy.bin"; sync; t1=$(now)
local_cp=$(secs "$t0" "$t1")
t0=$(now); nfs-cp "$work/big.bin" "$(url /union/big.bin)" >/dev/null; t1=$(now)
nfs_in=$(secs "$t0" "$t1")
t0=$(now); nfs-cp "$(url /union/big.bin)" "$work/back.bin" >/dev/null; t1=$(now)
nfs_out=$(secs "$t0" "$t1")
cmp -s "$work/big.bin" "$work/back.bin" || { echo "bench: data read back differs" >&2; exit 1; }
t0=$(now); nfs-cat "$(url /union/lower-big.bin)" > /dev/null; t1=$(now)
read_lower=$(secs "$t0" "$t1")
t0=$(now); nfs-cat "$(url /union/big.bin)" > /dev/null; t1=$(now)
read_upper=$(secs "$t0" "$t1")

t0=$(now); n_single=$(nfs-ls "$(url /single/merged)" | wc -l); t1=$(now)
ls_single=$(secs "$t0" "$t1")
t0=$(now); n_union=$(nfs-ls "$(url /union/merged)" | wc -l); t1=$(now)
ls_union=$(secs "$t0" "$t1")
t0=$(now); nfs-ls "$(url /union/merged)" > /dev/null; t1=$(now)
ls_union_warm=$(secs "$t0" "$t1")

printf '\n%-46s %14s %22s\n' "measurement" "strata" "reference"
printf '%-46s %14s %22s\n' "copy ${size_mib} MiB in (nfs-cp → upper)" "$(rate $bytes $nfs_in)" "local cp $(rate $bytes $local_cp)"
printf '%-46s %14s %22s\n' "copy ${size_mib} MiB out (nfs-cp ← upper)" "$(rate $bytes $nfs_out)" "local cp $(rate $bytes $local_cp)"
printf '%-46s %14s %22s\n' "read ${size_mib} MiB from a lower (nfs-cat)" "$(rate $bytes $read_lower)" "from upper $(rate $bytes $read_upper)"
printf '%-46s %13ss %21ss\n' "list 10,000 names merged from 3 layers" "$ls_union" "$ls_single"
printf '%-46s %13ss %21ss\n' "  same, second listing (cached merge)" "$ls_union_warm" "$ls_single"
printf 'entries listed: union %s, single layer %s\n' "$n_union" "$n_single"
[ "$n_union" = "$n_single" ] || { echo "bench: merged listing has $n_union entries, expected $n_single" >&2; exit 1; }

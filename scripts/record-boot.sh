#!/usr/bin/env bash
# Re-records the boot script of the boot storm (Bench/boot-trace.script): the VM harness boots
# a diskless client (Debian cloud kernel under qemu TCG, root on NFSv3) from `strata serve
# --trace`, and the trace is converted into a path-based script (Docs/BOOT-TRACE.md).
# Usage (root): bash scripts/record-boot.sh [OUT]   (default Bench/boot-trace.script)
# Needs a strata build: STRATA_BIN (default .build/debug/strata, then .build/release/strata).
set -euo pipefail
cd "$(dirname "$0")/.."
out=$(realpath -m "${1:-Bench/boot-trace.script}")
bin=${STRATA_BIN:-}
[ -n "$bin" ] || for b in .build/debug/strata .build/release/strata; do [ -x "$b" ] && { bin=$b; break; }; done
[ -n "$bin" ] && [ -x "$bin" ] || { echo "record-boot: no strata binary; run: swift build --product strata" >&2; exit 2; }
tmp=$(mktemp /tmp/boot-trace.XXXXXX)
trap 'rm -f "$tmp"' EXIT
STRATA_BIN=$(realpath "$bin") STRATA_RECORD_OUT=$tmp bash Tests/VM/run.sh record-boot
[ -s "$tmp" ] || { echo "record-boot: no script was produced (see the VM log above)" >&2; exit 1; }
mkdir -p "$(dirname "$out")"
cp "$tmp" "$out"
"$bin" trace check "$out"
echo "record-boot: wrote $out ($(wc -l <"$out") lines, $(du -h "$out" | cut -f1))"

# Shared helpers for the Strata VM harness. Sourced, not executed.
# shellcheck shell=bash
VM_DIR=${VM_DIR:-$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)}
CACHE=${STRATA_VM_CACHE:-/var/cache/strata-vm}
QEMU=${QEMU:-qemu-system-x86_64}
# Memory for each guest (MiB). TCG only: nested KVM is not usable here.
VM_MEM=${VM_MEM:-512}

log()  { printf '[vm %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die()  { log "FATAL: $*"; exit 2; }

now_ms() { date +%s%3N; }
elapsed() { # elapsed START_MS -> "12.3s"
  local d=$(( $(now_ms) - $1 )); printf '%d.%ds' $((d/1000)) $(((d%1000)/100)); }

# wait_for TIMEOUT_S CMD...: poll CMD every 0.2 s until it succeeds or the timeout expires.
wait_for() {
  local t=$1; shift; local end=$(( $(date +%s) + t ))
  while ! "$@" >/dev/null 2>&1; do
    [ "$(date +%s)" -ge "$end" ] && return 1
    sleep 0.2
  done
}

# port_listening PORT [tcp|udp]: is something bound to PORT (IPv4 or IPv6) in this netns?
port_listening() {
  local port=$1 proto=${2:-tcp}
  local hex; hex=$(printf '%04X' "$port")
  cat /proc/net/$proto /proc/net/${proto}6 2>/dev/null | awk -v h=":$hex" -v p="$proto" \
    '$1 ~ /:$/ && substr($2, length($2)-4)==h && (p=="udp" || $4=="0A") {found=1} END{exit !found}'
}

# kill_pid PID [NAME]: TERM, wait up to 5 s, then KILL. Only the given PID.
kill_pid() {
  local pid=$1 i
  [ -n "$pid" ] || return 0
  kill -0 "$pid" 2>/dev/null || return 0
  kill -TERM "$pid" 2>/dev/null
  for i in $(seq 50); do kill -0 "$pid" 2>/dev/null || return 0; sleep 0.1; done
  kill -KILL "$pid" 2>/dev/null; sleep 0.1
  return 0
}

# Kernel version: the cached one if present, else the one Debian's metapackage points to.
kernel_version() {
  if [ -n "${STRATA_VM_KVER:-}" ]; then echo "$STRATA_VM_KVER"; return; fi
  local v
  v=$(apt-cache depends linux-image-cloud-amd64 2>/dev/null | sed -n 's/.*Depends: linux-image-\(.*-cloud-amd64\)$/\1/p' | head -1)
  if [ -z "$v" ]; then  # no apt lists: fall back to the newest cached kernel
    v=$(ls -d "$CACHE"/kernel-*/ 2>/dev/null | sed 's#.*/kernel-\(.*\)/#\1#' | sort -V | tail -1)
  fi
  echo "$v"
}

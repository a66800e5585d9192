# Guest-side helpers (busybox sh). Sourced by the test scripts in /test.
# Every check prints one line "STEP <name> OK|FAIL [detail]"; the host parses these lines.
. /test/env
FAILS=0
export PATH=/sbin:/usr/sbin:/bin:/usr/bin

ok()   { echo "STEP $1 OK${2:+ $2}"; }
bad()  { echo "STEP $1 FAIL${2:+ $2}"; FAILS=$((FAILS+1)); }

# step NAME CMD...: run CMD, OK if it exits 0; on failure show the tail of its output.
step() {
  _n=$1; shift
  if "$@" >/tmp/step.out 2>&1; then ok "$_n"; return 0; fi
  _rc=$?; bad "$_n" "rc=$_rc"; tail -n 15 /tmp/step.out | sed 's/^/    | /'; return $_rc
}

# check NAME EXPECTED ACTUAL
check() {
  if [ "$2" = "$3" ]; then ok "$1"; else bad "$1" "expected [$2] got [$3]"; fi
}

# host_req NAME [TIMEOUT_S]: ask the host harness to do something (restart the server...) and
# wait until it says done (it publishes /done/NAME on its control web server).
host_req() {
  echo "HOST-REQ $1"
  _t=${2:-60}; _i=0
  while [ $_i -lt $((_t*5)) ]; do
    if timeout 3 wget -q -O /tmp/req.out "http://$SERVER:$CTL_PORT/done/$1" 2>/dev/null; then
      _r=$(cat /tmp/req.out); [ "$_r" = ok ] && return 0
      echo "host request $1 answered: $_r"; return 1
    fi
    sleep 0.2; _i=$((_i+1))
  done
  echo "host request $1 timed out"; return 1
}

# nfs_mount DIR OPTIONS [EXPORT]: mount with a bounded number of tries
nfs_mount() {
  _d=$1 _o=$2 _e=${3:-$EXPORT}
  mkdir -p "$_d"
  timeout 60 mount.nfs "$SERVER:$_e" "$_d" -o "$_o" && return 0   # the real nfs-utils mount helper
  _rc=$?; dmesg | tail -n 4 | sed 's/^/    | dmesg: /' >/dev/console; return $_rc
}
# wait_for TIMEOUT_S CMD...: poll CMD every 0.1 s until it succeeds (0) or TIMEOUT_S pass (1). Never a fixed
# sleep: a busy host (TCG) may be many times slower than expected.
wait_for() {
  _t=$1; shift; _i=0
  while ! "$@" >/dev/null 2>&1; do
    [ $_i -ge $((_t*10)) ] && return 1
    sleep 0.1; _i=$((_i+1))
  done
}
# count_above FILE N: the number in FILE is greater than N
count_above() { _c=$(cat "$1" 2>/dev/null || echo 0); [ "${_c:-0}" -gt "$2" ]; }
drop_caches() { sync; echo 3 >/proc/sys/vm/drop_caches; }
finish() { echo "GUEST-FAILS $FAILS"; [ "$FAILS" -eq 0 ]; }

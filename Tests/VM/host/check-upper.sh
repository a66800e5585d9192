# Server-side check of the union upper layer after the workout (guest/t-workout.sh).
# shellcheck shell=bash

# check_upper SUITE UPPER_DIR SERIAL_LOG
check_upper() {
  local S=$1 U=$2 serial=$3 T=$2/tree p want got
  if [ ! -d "$T" ]; then record "$S" upper-tree-exists FAIL "$T missing"; return; fi
  record "$S" upper-tree-exists OK
  # contents the guest reported (FILESUM lines) must be in the upper tree, byte for byte
  while read -r _ p want; do
    if [ -f "$T/$p" ]; then got=$(md5sum <"$T/$p" | cut -d' ' -f1); else got=missing; fi
    [ "$got" = "$want" ] && record "$S" "upper-content:$p" OK || record "$S" "upper-content:$p" FAIL "guest $want, upper $got"
  done < <(tr -d '\r' <"$serial" | grep '^FILESUM ')
  srv_attr() { stat -c "$2" "$T/$1" 2>/dev/null || echo missing; }
  expect() { [ "$3" = "$4" ] && record "$S" "$1" OK || record "$S" "$1" FAIL "expected [$3] got [$4] ($2)"; }
  expect upper-append common/a.txt "$(printf 'lower1-a\nappended')" "$(cat "$T/common/a.txt" 2>&1)"
  expect upper-truncate trunc.txt "0123" "$(cat "$T/trunc.txt" 2>&1)"
  expect upper-chmod-chown chmod.txt "640 1234 5678" "$(srv_attr chmod.txt '%a %u %g')"
  expect upper-chown-new owned.txt "600 4321 8765" "$(srv_attr owned.txt '%a %u %g')"
  expect upper-hardlink created-link "$(srv_attr created2.txt %i)" "$(srv_attr created-link %i)"
  expect upper-hardlink-copyup hl/x2 "$(srv_attr hl/x %i)" "$(srv_attr hl/x2 %i)"
  expect upper-symlink sym.txt "common/a.txt" "$(readlink "$T/sym.txt")"
  expect upper-rmdir-recreated-empty rmdir "directory:" "$(srv_attr rmdir %F):$(ls -A "$T/rmdir" 2>/dev/null)"
  expect upper-renamed-dir dir2moved "directory" "$(srv_attr dir2moved %F)"
  expect upper-renamed-merged-dir merged-moved "directory" "$(srv_attr merged-moved %F)"
  expect upper-big-untouched big "3000" "$(ls "$T/big" | wc -l)"
  # copy-up keeps holes: 64 MiB with 11 bytes of data must not occupy megabytes
  local kb; kb=$(du -k "$T/sparse.bin" 2>/dev/null | cut -f1)
  [ -n "$kb" ] && [ "$kb" -lt 1024 ] && record "$S" upper-copyup-keeps-holes OK "${kb} KiB allocated for $(stat -c %s "$T/sparse.bin") bytes" \
    || record "$S" upper-copyup-keeps-holes FAIL "${kb:-missing} KiB allocated for a 64 MiB sparse file"
  # nothing that must be gone is in the upper tree
  local present=""
  for p in created.txt ren-lower.txt rmme.txt gone1.txt common/only2.txt common/only1.txt dir2only newdir rmdir/l1a rmdir/l2a merged; do
    [ -e "$T/$p" ] || [ -L "$T/$p" ] && present="$present $p"
  done
  expect upper-no-removed-names "" "" "$present"
  # exactly the expected changes: every path in tree/ is expected or an allowed parent/alias
  local extra
  extra=$(cd "$T" && find . -mindepth 1 | sed 's#^\./##' | grep -vxE \
    'big|big/f0(7|8|9)[0-9]{3}|upper-only\.txt|created2\.txt|created-link|rand\.bin|big32\.bin|sparse\.bin|common|common/a\.txt|trunc\.txt|renamed\.txt|chmod\.txt|owned\.txt|rootfile\.txt|hl|hl/x|hl/x2|hl/y|sym\.txt|newdir2|newdir2/inner\.txt|rmdir|dir2moved(/.*)?|merged-moved(/.*)?' | head -20 | tr '\n' ' ')
  expect upper-exactly-expected-changes "unexpected paths" "" "$extra"
  # lowers are never written
  { manifest "$FIX/lower1"; manifest "$FIX/lower2"; } >"$WORK/lowers.after"
  if cmp -s "$WORK/lowers.manifest" "$WORK/lowers.after"; then record "$S" lowers-unchanged OK
  else
    diff "$WORK/lowers.manifest" "$WORK/lowers.after" >"$WORK/lowers.diff"
    record "$S" lowers-unchanged FAIL "a lower layer was modified: $(grep '^[<>]' "$WORK/lowers.diff" | head -4 | tr '\n' ' ')"
  fi
  # whiteouts: via 'strata layer inspect' when it exists, else a dump of the sidecar
  local report="$WORK/upper-inspect.txt" how
  if [ "$SERVER_KIND" = strata ] && "$STRATA_BIN" layer inspect "$U" >"$report" 2>&1; then
    how="strata layer inspect"
  elif [ -f "$U/layer.db" ]; then
    sqlite3 "$U/layer.db" .dump >"$report" 2>&1; how="sqlite3 layer.db .dump"
  else
    record "$S" whiteouts FAIL "no layer.db and no 'strata layer inspect'"; return
  fi
  for p in rmme.txt gone1.txt only2.txt ren-lower.txt dir2only merged; do
    grep -q -- "$p" "$report" && record "$S" "whiteout:$p" OK "($how)" || record "$S" "whiteout:$p" FAIL "not in $how output ($report)"
  done
}

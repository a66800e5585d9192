# Server restart under a mounted client: open files and a write loop keep running while the
# host restarts the server (SIGTERM, then SIGKILL), same ports and state. No errors may
# reach the application and everything read back must match (checksums).
. /test/lib.sh
M=/mnt/r
if nfs_mount $M "vers=3,nolock,proto=tcp,hard" >/tmp/m.out 2>&1; then ok restart-mount; else bad restart-mount "$(cat /tmp/m.out)"; finish; exit 1; fi

# files held open across the restarts
echo "before restart" >$M/held-w.txt
exec 3>>$M/held-w.txt
exec 4<$M/common/a.txt          # lower-layer file, open for reading
seq 1 30000 >$M/held-r.txt
exec 5<$M/held-r.txt

# the write loop: appends a deterministic block per iteration to loop.dat and keeps the same
# data in /tmp as the reference; also rewrites a small file and creates/removes names
rm -f /tmp/stop /tmp/loop.err /tmp/loop.ref /tmp/loop.msg; echo before >/tmp/phase
(
  i=0
  while [ ! -e /tmp/stop ] && [ $i -lt 100000 ]; do
    i=$((i+1))
    seq $i $((i+400)) >/tmp/blk
    if cat /tmp/blk >>$M/loop.dat; then cat /tmp/blk >>/tmp/loop.ref
    else echo "append $i failed ($(cat /tmp/phase))" >>/tmp/loop.err; fi
    echo "$i" >$M/counter.txt && echo "$i" >/tmp/counter.ref || echo "rewrite $i failed ($(cat /tmp/phase))" >>/tmp/loop.err
    touch $M/tmp-$i 2>>/tmp/loop.msg || echo "create $i failed ($(cat /tmp/phase))" >>/tmp/loop.err
    rm $M/tmp-$i 2>>/tmp/loop.msg || echo "remove $i failed ($(cat /tmp/phase))" >>/tmp/loop.err
    echo $i >/tmp/loop.count
  done
) &
LOOP=$!
# a lister: re-reads the 10,000-entry merged directory from the server (caches dropped) again and
# again across the restarts; every listing must hold each name exactly once (READDIR cookies
# stay valid across a restart)
rm -f /tmp/ls.err /tmp/ls.count; touch /tmp/ls.err
[ "${LISTER:-0}" = 1 ] && (
  j=0
  while [ ! -e /tmp/stop ] && [ $j -lt 1000 ]; do
    j=$((j+1)); echo 2 >/proc/sys/vm/drop_caches
    ls -1 $M/big >/tmp/ls.out 2>>/tmp/ls.err || echo "ls $j failed ($(cat /tmp/phase))" >>/tmp/ls.err
    n=$(wc -l </tmp/ls.out); u=$(sort -u /tmp/ls.out | wc -l)
    [ "$n" = 10000 ] && [ "$u" = 10000 ] || echo "listing $j: $n names, $u unique ($(cat /tmp/phase))" >>/tmp/ls.err
    echo $j >/tmp/ls.count
  done
) &
LISTER_PID=$!; [ "${LISTER:-0}" = 1 ] || LISTER_PID=""
# the loop must be running before the restarts (bounded wait, no fixed sleep: TCG on a busy host is slow)
wait_for 120 count_above /tmp/loop.count 2
c0=$(cat /tmp/loop.count 2>/dev/null || echo 0)
[ "$c0" -gt 2 ] && ok write-loop-running "$c0 iterations before the restarts" || bad write-loop-running "$c0 iterations in 120 s"
# read from the held files before the restart
read -r l <&5; check held-read-before "1" "$l"

# A restart by the host ($1: term or kill) under the loop; $2: the line the held file reads next.
restart_under_load() {
  echo during-$1-restart >/tmp/phase
  host_req restart-$1 90 && ok server-restart-$1 || bad server-restart-$1
  echo after-$1-restart >/tmp/phase
  # the loop goes on against the restarted server (a few iterations, bounded)
  c=$(cat /tmp/loop.count); wait_for 120 count_above /tmp/loop.count $((c+2)) || bad loop-after-$1-restart "stuck at $(cat /tmp/loop.count)"
  echo "after $1 restart" >&3 && ok held-write-after-$1 || bad held-write-after-$1
  read -r l <&5; check held-read-after-$1 "$2" "$l"
}
restart_under_load term 2
restart_under_load kill 3
check held-lower-read-after-restarts "lower1-a" "$(cat <&4)"
c1=$(cat /tmp/loop.count)
touch /tmp/stop
i=0; while kill -0 $LOOP 2>/dev/null && [ $i -lt 600 ]; do sleep 0.1; i=$((i+1)); done
kill -0 $LOOP 2>/dev/null && { bad write-loop-stopped "still running"; kill $LOOP; } || ok write-loop-stopped
if [ -n "$LISTER_PID" ]; then
  i=0; while kill -0 $LISTER_PID 2>/dev/null && [ $i -lt 900 ]; do sleep 0.1; i=$((i+1)); done
  kill -0 $LISTER_PID 2>/dev/null && { bad lister-stopped "still running"; kill $LISTER_PID; }
  check readdir-across-restarts-each-name-once "" "$(head -5 /tmp/ls.err 2>/dev/null | tr '\n' ';')"
  echo "    | the lister read the 10,000-entry directory $(cat /tmp/ls.count 2>/dev/null || echo 0) times"
fi
c2=$(cat /tmp/loop.count)
[ "$c1" -gt "$c0" ] && ok write-loop-progressed "$c0 -> $c1 -> $c2 iterations" || bad write-loop-progressed "$c0 -> $c1"
# A REMOVE in flight when the server stops may have been done by the old process whose reply
# never left it; the client's retransmission then meets ENOENT (the duplicate request cache is
# in memory, as in knfsd). After SIGKILL that is inherent: reported, not failed. After SIGTERM
# the server could have drained its replies: a failure of its own step.
touch /tmp/loop.err
lost_kill=$(grep -E '^remove [0-9]+ failed \((during|after)-kill-restart\)$' /tmp/loop.err | tr '\n' ';')
lost_term=$(grep -E '^remove [0-9]+ failed \((during|after)-term-restart\)$' /tmp/loop.err | tr '\n' ';')
check write-loop-no-errors "" "$(grep -vE '^remove [0-9]+ failed \((during|after)-(kill|term)-restart\)$' /tmp/loop.err | head -5 | tr '\n' ';')"
check term-restart-no-lost-remove-reply "" "$lost_term"
[ -n "$lost_kill" ] && ok kill-restart-retransmitted-remove "NOTE: ENOENT after SIGKILL (reply lost with the old process): $lost_kill"
exec 3>&- 4<&- 5<&-

check loop-data-matches "$(md5sum </tmp/loop.ref)" "$(md5sum <$M/loop.dat)"
check counter-matches "$(cat /tmp/counter.ref)" "$(cat $M/counter.txt)"
drop_caches
check loop-data-after-drop-caches "$(md5sum </tmp/loop.ref)" "$(md5sum <$M/loop.dat)"
check held-file-content "$(printf 'before restart\nafter term restart\nafter kill restart')" "$(cat $M/held-w.txt)"
check no-leftover-temp-names "" "$(ls $M | grep '^tmp-' | head -3)"
cd /; umount $M && nfs_mount $M "vers=3,nolock,proto=tcp" && ok remount || bad remount
check loop-data-after-remount "$(md5sum </tmp/loop.ref)" "$(md5sum <$M/loop.dat)"
step umount-clean umount $M
dmesg | grep -iE 'nfs|rpc' | tail -n 8 | sed 's/^/    | dmesg: /'
finish

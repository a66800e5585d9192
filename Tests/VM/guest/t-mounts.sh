# Mount paths: TCP and UDP, with explicit ports (MOUNT_MODE=explicit) or through the
# portmapper (MOUNT_MODE=portmap: rpcinfo -p and showmount -e must work too).
. /test/lib.sh

if [ "$MOUNT_MODE" = explicit ]; then
  base="vers=3,nolock,port=$NFS_PORT,mountport=$MOUNT_PORT"
else
  base="vers=3,nolock"
  if rpcinfo -p "$SERVER" >/tmp/rpcinfo.out 2>&1; then
    sed 's/^/    | /' /tmp/rpcinfo.out
    for p in "100003 *3 *tcp *$NFS_PORT" "100003 *3 *udp *$NFS_PORT" "100005 *3 *tcp *$MOUNT_PORT" "100005 *3 *udp *$MOUNT_PORT" "100005 *1 *tcp *$MOUNT_PORT"; do
      grep -Eq "^ *$p " /tmp/rpcinfo.out || { bad rpcinfo-$(echo $p | tr -s ' ' '-') "missing"; }
    done
    ok rpcinfo-p
  else
    bad rpcinfo-p "$(tail -1 /tmp/rpcinfo.out)"
  fi
  if timeout 30 showmount -e "$SERVER" >/tmp/showmount.out 2>&1 && grep -q "^$EXPORT " /tmp/showmount.out; then
    ok showmount-e "$(tail -n +2 /tmp/showmount.out | tr -s ' ' | tr '\n' ';')"
  else
    bad showmount-e "$(cat /tmp/showmount.out | tr '\n' ';')"
  fi
fi

for proto in tcp udp; do
  m=/mnt/$proto
  opts="$base,proto=$proto,mountproto=$proto"
  if nfs_mount $m "$opts" >/tmp/mount.out 2>&1; then
    ok mount-$proto "$opts"
  else
    bad mount-$proto "$opts: $(tail -1 /tmp/mount.out)"; continue
  fi
  grep " $m nfs " /proc/mounts | grep -q "proto=$proto" && ok mount-$proto-is-$proto || bad mount-$proto-is-$proto "$(grep " $m " /proc/mounts)"
  [ -n "$(ls $m)" ] && ok read-dir-$proto || bad read-dir-$proto "empty listing"
  f=$m/mounttest-$proto.$$
  seq 1 20000 >/tmp/src
  if cp /tmp/src $f && drop_caches && [ "$(md5sum <$f)" = "$(md5sum </tmp/src)" ]; then
    ok write-read-$proto
  else
    bad write-read-$proto
  fi
  rm -f $f
  step umount-$proto umount $m
done
finish

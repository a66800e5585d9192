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

# RPC NULL calls over both transports, to the known ports (rpcinfo -a: no portmapper involved)
for t in tcp udp; do
  for pv in "100003 3 $NFS_PORT" "100005 3 $MOUNT_PORT" "100005 1 $MOUNT_PORT"; do
    set -- $pv
    ua="$SERVER.$(($3/256)).$(($3%256))"   # universal address: no portmapper lookup
    if timeout 20 rpcinfo -a "$ua" -T $t $1 $2 >/tmp/ri.out 2>&1; then ok "rpc-null-$t-$1-v$2"
    else bad "rpc-null-$t-$1-v$2" "$ua: $(tr '\n' ' ' </tmp/ri.out)"; fi
  done
done
if [ "$MOUNT_MODE" = portmap ]; then  # the same through the portmapper, with rpcinfo
  for t in tcp udp; do
    for pv in "nfs 3" "mountd 3" "mountd 1"; do
      set -- $pv
      if timeout 20 rpcinfo -${t%${t#?}} "$SERVER" $1 $2 >/tmp/ri.out 2>&1; then ok "rpcinfo-$t-$1-v$2"
      else bad "rpcinfo-$t-$1-v$2" "$(tr '\n' ' ' </tmp/ri.out)"; fi
    done
  done
fi

# NFS over TCP, MOUNT over TCP and over UDP. (NFS over UDP itself cannot be mounted: Debian
# kernels are built with CONFIG_NFS_DISABLE_UDP_SUPPORT=y, the upstream default.)
for v in tcp:tcp tcp:udp; do
  proto=${v%:*} mproto=${v#*:}
  m=/mnt/$proto-$mproto
  opts="$base,proto=$proto,mountproto=$mproto"
  if nfs_mount $m "$opts" >/tmp/mount.out 2>&1; then
    ok mount-nfs-$proto-mount-$mproto "$opts"
  else
    bad mount-nfs-$proto-mount-$mproto "$opts: $(tail -1 /tmp/mount.out)"; continue
  fi
  grep " $m nfs " /proc/mounts | grep -q "proto=$proto" && ok mounted-proto-$proto-$mproto || bad mounted-proto-$proto-$mproto "$(grep " $m " /proc/mounts)"
  [ -n "$(ls $m)" ] && ok read-dir-$proto-$mproto || bad read-dir-$proto-$mproto "empty listing"
  f=$m/mounttest-$proto-$mproto.$$
  seq 1 20000 >/tmp/src
  if cp /tmp/src $f && drop_caches && [ "$(md5sum <$f)" = "$(md5sum </tmp/src)" ]; then
    ok write-read-$proto-$mproto
  else
    bad write-read-$proto-$mproto
  fi
  rm -f $f
  step umount-$proto-$mproto umount $m
done
finish

# Harness self-check (no NFS server needed): kernel, modules, guest network to the namespace.
. /test/lib.sh
check kernel-booted "$(uname -r)" "$(uname -r)"
for m in sunrpc lockd nfs nfsv3 virtio_net; do
  grep -q "^$m " /proc/modules && ok module-$m || bad module-$m
done
grep -q nfs /proc/filesystems && ok fs-nfs-registered || bad fs-nfs-registered
if timeout 10 wget -q -O /tmp/hello "http://$SERVER:$CTL_PORT/hello.txt"; then
  check guest-to-host-http strata-vm-harness "$(cat /tmp/hello)"
else
  bad guest-to-host-http "wget failed"
fi
for b in mount.nfs showmount rpcinfo; do
  command -v $b >/dev/null && ok tool-$b || bad tool-$b
done
mount.nfs -V 2>&1 | grep -q nfs-utils && ok mount.nfs-runs "$(mount.nfs -V 2>&1 | head -1)" || bad mount.nfs-runs "$(mount.nfs -V 2>&1 | head -2)"
finish

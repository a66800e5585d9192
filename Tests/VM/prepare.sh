#!/bin/bash
# Prepare everything the VM harness needs, from Debian packages, into $CACHE
# (default /var/cache/strata-vm). Idempotent and cached: a second run costs ~1 s.
# Writes $CACHE/env (sourced by run.sh): KERNEL, INITRD, NFSUTILS, KVER.
set -euo pipefail
. "$(dirname "$0")/lib.sh"

HOST_PKGS="qemu-system-x86 ipxe-qemu busybox-static cpio kmod gzip libtirpc3 libtirpc-common libwrap0 sqlite3 iproute2 util-linux"

need_pkgs() {
  local missing=() p
  for p in $HOST_PKGS; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
  done
  if [ ${#missing[@]} -gt 0 ]; then
    log "installing: ${missing[*]}"
    if [ ! -e "$CACHE/.apt-updated" ]; then apt-get update -qq >/dev/null && mkdir -p "$CACHE" && touch "$CACHE/.apt-updated"; fi
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  fi
}

# download_pkg NAME -> prints path of the .deb in $CACHE/debs (downloaded once)
download_pkg() {
  local name=$1 f
  mkdir -p "$CACHE/debs"
  f=$(ls "$CACHE"/debs/"${name}"_*.deb 2>/dev/null | head -1 || true)
  if [ -z "$f" ]; then
    ( cd "$CACHE/debs" && apt-get download "$name" >/dev/null 2>&1 ) || {
      apt-get update -qq >/dev/null; ( cd "$CACHE/debs" && apt-get download "$name" >/dev/null ); }
    f=$(ls "$CACHE"/debs/"${name}"_*.deb | head -1)
  fi
  echo "$f"
}

need_pkgs
mkdir -p "$CACHE"
# one prepare at a time per cache (concurrent runs of the suite share it)
exec 9>"$CACHE/.lock"; flock -w 900 9 || die "cache $CACHE is locked"
[ -e "$CACHE/.apt-updated" ] || { apt-cache show linux-image-cloud-amd64 >/dev/null 2>&1 || apt-get update -qq >/dev/null; touch "$CACHE/.apt-updated"; }

KVER=$(kernel_version)
[ -n "$KVER" ] || die "cannot determine the cloud kernel version (apt-cache depends linux-image-cloud-amd64)"
KDIR=$CACHE/kernel-$KVER
if [ ! -e "$KDIR/.ok" ]; then
  log "fetching kernel linux-image-$KVER"
  deb=$(download_pkg "linux-image-$KVER")
  rm -rf "$KDIR"; mkdir -p "$KDIR"
  dpkg-deb -x "$deb" "$KDIR"
  depmod -b "$KDIR" "$KVER"
  touch "$KDIR/.ok"
fi
KERNEL=$KDIR/boot/vmlinuz-$KVER
MODDIR=$KDIR/lib/modules/$KVER

# nfs-common (mount.nfs, showmount) and rpcbind (rpcinfo in the guest, rpcbind on the host side)
NFSUTILS=$CACHE/nfsutils
if [ ! -e "$NFSUTILS/.ok" ]; then
  log "fetching nfs-common and rpcbind"
  rm -rf "$NFSUTILS"; mkdir -p "$NFSUTILS"
  dpkg-deb -x "$(download_pkg nfs-common)" "$NFSUTILS"
  dpkg-deb -x "$(download_pkg rpcbind)" "$NFSUTILS"
  touch "$NFSUTILS/.ok"
fi

# rpcbind (run from the unpacked package) drops privileges to _rpc, as the package would
getent passwd _rpc >/dev/null || useradd --system --no-create-home --home-dir /run/rpcbind \
  --shell /usr/sbin/nologin --gid nogroup _rpc 2>/dev/null || useradd --system --no-create-home _rpc || true

# ---- initramfs -------------------------------------------------------------------------------
GUEST_MODS="virtio_pci virtio_net sunrpc grace lockd nfs_acl nfs nfsv3"
key=$( { echo "$KVER"; cat "$VM_DIR/prepare.sh" "$VM_DIR/guest/init" "$VM_DIR/guest/udhcpc.script"; ls -l /bin/busybox "$NFSUTILS/sbin/mount.nfs"; } | sha256sum | cut -c1-12)
INITRD=$CACHE/initramfs-$KVER-$key.cpio.gz
if [ ! -e "$INITRD" ]; then
  log "building initramfs $INITRD"
  R=$(mktemp -d "$CACHE/rootfs.XXXXXX")
  trap 'rm -rf "$R"' EXIT
  mkdir -p "$R"/{bin,sbin,usr/bin,usr/sbin,etc,proc,sys,dev,run,tmp,mnt,newroot,root,var/lib/nfs,lib/modules/$KVER}
  cp /bin/busybox "$R/bin/busybox"
  # modules and their dependencies (modules.dep)
  declare -A seen=()
  add_mod() {
    local m=$1 line path dep
    line=$(grep -E "(^|/)${m}\.ko(\.[a-z]+)?:" "$MODDIR/modules.dep" | head -1) || true
    if [ -z "$line" ]; then
      grep -qE "/${m}\.ko" "$MODDIR/modules.builtin" && return 0
      die "module $m not found"
    fi
    path=${line%%:*}
    [ -n "${seen[$path]:-}" ] && return 0
    seen[$path]=1
    for dep in ${line#*:}; do add_mod "$(basename "$dep" | sed 's/\.ko.*//')"; done
    mkdir -p "$R/lib/modules/$KVER/$(dirname "$path")"
    cp "$MODDIR/$path" "$R/lib/modules/$KVER/$path"
  }
  for m in $GUEST_MODS; do add_mod "$m"; done
  cp "$MODDIR"/modules.builtin* "$MODDIR/modules.order" "$R/lib/modules/$KVER/"
  depmod -b "$R" "$KVER"
  # userland NFS tools with their shared libraries
  for b in sbin/mount.nfs sbin/showmount usr/bin/rpcinfo; do
    mkdir -p "$R/$(dirname "$b")"; cp -a "$NFSUTILS/$b" "$R/$b"
  done
  ln -sf mount.nfs "$R/sbin/umount.nfs" 2>/dev/null || true
  for lib in $(ldd "$NFSUTILS/sbin/mount.nfs" "$NFSUTILS/sbin/showmount" "$NFSUTILS/usr/bin/rpcinfo" | awk '/=>/ {print $3} /^\s*\/lib/ {print $1}' | sort -u); do
    [ -e "$lib" ] || die "library $lib missing on the host"
    mkdir -p "$R$(dirname "$lib")"; cp -L "$lib" "$R$lib"
  done
  mkdir -p "$R/lib64"; cp -L /lib64/ld-linux-x86-64.so.2 "$R/lib64/"
  cp /etc/netconfig "$R/etc/netconfig"
  printf 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n' >"$R/etc/passwd"
  printf 'root:x:0:\nnogroup:x:65534:\n' >"$R/etc/group"
  printf 'passwd: files\ngroup: files\nhosts: files\nservices: files\nprotocols: files\nrpc: files\n' >"$R/etc/nsswitch.conf"
  printf '127.0.0.1 localhost\n10.0.2.2 strata-server\n' >"$R/etc/hosts"
  cp /etc/protocols "$R/etc/protocols" 2>/dev/null || printf 'ip 0 IP\ntcp 6 TCP\nudp 17 UDP\n' >"$R/etc/protocols"
  cp /etc/services "$R/etc/services" 2>/dev/null || true
  cp "$NFSUTILS/etc/rpc" "$R/etc/rpc" 2>/dev/null || cp /etc/rpc "$R/etc/rpc" 2>/dev/null || true
  ln -sf /proc/mounts "$R/etc/mtab"
  install -m 0755 "$VM_DIR/guest/init" "$R/init"
  install -m 0755 "$VM_DIR/guest/udhcpc.script" "$R/etc/udhcpc.script"
  ( cd "$R" && find . | LC_ALL=C sort | cpio -o -H newc --quiet -R 0:0 ) | gzip -1 >"$INITRD.tmp.$$"
  mv "$INITRD.tmp.$$" "$INITRD"
  rm -rf "$R"; trap - EXIT
fi

ENV_OUT=${1:-$CACHE/env}
cat >"$ENV_OUT.$$" <<EOT
KVER=$KVER
KERNEL=$KERNEL
INITRD=$INITRD
NFSUTILS=$NFSUTILS
EOT
mv "$ENV_OUT.$$" "$ENV_OUT"
log "ready: kernel $KVER, initramfs $(du -h "$INITRD" | cut -f1)"

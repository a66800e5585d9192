# Host-side fixtures. Sourced by run.sh.
# shellcheck shell=bash

# make_union_fixture DIR: DIR/lower2 (bottom), DIR/lower1, DIR/upper/tree (top) with
# overlapping trees; the 10,000 names of big/ are split across all three layers with overlaps.
make_union_fixture() {
  local D=$1 i
  rm -rf "$D"; mkdir -p "$D"/lower1 "$D"/lower2 "$D"/upper/tree "$D"/upper/work
  ( cd "$D/lower2"
    mkdir -p common dir2only/sub big hl rmdir/sub
    echo lower2-a >common/a.txt
    echo "only in lower2" >common/only2.txt
    echo "deep file" >dir2only/sub/deep.txt
    echo top >dir2only/top.txt
    echo hardlink >hl/x; ln hl/x hl/y
    echo "remove me" >rmme.txt
    echo l2a >rmdir/l2a; echo l2b >rmdir/l2b; echo l2c >rmdir/sub/l2c
    echo chmod >chmod.txt; chmod 0644 chmod.txt
    echo 0123456789abcdef >trunc.txt
    echo "rename me" >ren-lower.txt
    printf head >sparse.bin; printf tail | dd of=sparse.bin bs=1 seek=$((32<<20)) conv=notrunc 2>/dev/null
    truncate -s $((64<<20)) sparse.bin          # 64 MiB, two 4-byte islands, the rest holes
    mkdir -p merged/sub; echo m2 >merged/m2.txt; echo m2sub >merged/sub/deep2.txt
    cd big && for ((i=0; i<5000; i++)); do printf 'f%05d\n' $i; done | xargs touch )
  ( cd "$D/lower1"
    mkdir -p common big rmdir
    echo lower1-a >common/a.txt
    echo "only in lower1" >common/only1.txt
    echo l1a >rmdir/l1a
    echo "gone" >gone1.txt
    mkdir -p merged; echo m1 >merged/m1.txt
    cd big && for ((i=3000; i<8000; i++)); do printf 'f%05d\n' $i; done | xargs touch )
  ( cd "$D/upper/tree"
    mkdir -p big
    echo upper >upper-only.txt
    mkdir -p merged; echo mu >merged/mu.txt
    cd big && for ((i=7000; i<10000; i++)); do printf 'f%05d\n' $i; done | xargs touch )
  chown -R 0:0 "$D"
}

# manifest DIR: one line per path with type, mode, owner, size, inode-independent checksum
manifest() {
  ( cd "$1" && find . -printf '%p %y %m %u %g %s %l\n' | LC_ALL=C sort
    find . -type f -print0 | LC_ALL=C sort -z | xargs -0 -r md5sum )
}

# make_diskless_image DIR: a small busybox root for the PXE clients. /sbin/init is
# guest/image-init; /etc/motd belongs to the shared image (a client deletes it).
make_diskless_image() {
  local D=$1 a
  rm -rf "$D"; mkdir -p "$D"/{bin,sbin,usr/bin,usr/sbin,etc,proc,sys,dev,tmp,run,root,var/lib/strata-test,mnt}
  mkdir -p "$D"/var/{log,tmp,cache,lib/dhcp,lib/systemd,lib/misc}   # as a Debian image has them
  cp /bin/busybox "$D/bin/busybox"
  for a in $(/bin/busybox --list-full); do
    [ -e "$D/$a" ] || ln -s /bin/busybox "$D/$a"
  done
  install -m 0755 "$VM_DIR/guest/image-init" "$D/sbin/init.strata"
  install -m 0755 "$VM_DIR/guest/image-boot" "$D/sbin/init.boot"   # the record-boot suite's init
  install -m 0755 "$VM_DIR/guest/image-update" "$D/sbin/init.update"   # the image-update suite's init
  printf 'proc /proc proc defaults 0 0\n' >"$D/etc/fstab"
  ln -sf init.strata "$D/sbin/init" 2>/dev/null; rm -f "$D/sbin/init"; ln -s init.strata "$D/sbin/init"
  echo "Welcome to the Strata shared image" >"$D/etc/motd"
  echo "image-build $(date -u +%FT%TZ)" >"$D/etc/image-release"
  printf 'root:x:0:0:root:/root:/bin/sh\n' >"$D/etc/passwd"
  printf 'root:x:0:\n' >"$D/etc/group"
  chmod 1777 "$D/tmp"
  chown -R 0:0 "$D"
}

#!/usr/bin/env bash
# Installs the Debian packages Strata needs for a purpose: `run` (serving), `test` (the whole
# suite, including the VM tests) or `bench` (make bench: nfs-ganesha to compare with). As root it installs what is missing; otherwise it prints the
# exact apt-get line and fails, so nothing half-works silently.
set -euo pipefail
purpose=${1:-run}
packages=(libtirpc-dev libsqlite3-dev pkg-config)
if [ "$purpose" = test ]; then
    # rpcbind (rpcinfo), nfs-common (showmount), libnfs-utils (nfs-ls/nfs-cp/nfs-cat): independent
    # clients; qemu, iPXE, busybox, cpio, kmod: the kernel-client VM tests; iproute2 + util-linux
    # (unshare): network namespaces; util-linux (setpriv) + perl (Essential): union permission tests
    # compared with the kernel; sqlite3: inspecting sidecars from tests; e2fsprogs (mkfs.ext4) + util-linux
    # (losetup, mount): the loop-device file system whose block requests the flush-order test traces.
    packages+=(rpcbind nfs-common libnfs-utils qemu-system-x86 ipxe-qemu busybox-static cpio kmod
        iproute2 util-linux sqlite3 python3 procps psmisc e2fsprogs)
fi
if [ "$purpose" = bench ]; then
    # nfs-ganesha + its VFS FSAL: the reference server; rpcbind: ganesha registers there;
    # iproute2 + util-linux (unshare, mount): the private namespace and the overlayfs mount;
    # python3: the table; busybox-static: the boot storm's image is the VM tests' busybox root
    # (Tests/VM/host/fixtures.sh, make_diskless_image), which `make bench` builds too.
    packages+=(nfs-ganesha nfs-ganesha-vfs rpcbind iproute2 util-linux python3 coreutils busybox-static)
fi
missing=()
for p in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0
if [ "$(id -u)" -ne 0 ]; then
    echo "strata: missing Debian packages: ${missing[*]}" >&2
    echo "strata: install them with: sudo apt-get update && sudo apt-get install -y ${missing[*]}" >&2
    exit 1
fi
echo "strata: installing ${missing[*]}" >&2
# Keep package scripts from starting daemons (rpcbind, nfs-common's services): the tests start
# exactly the daemons they need, by PID, in namespaces they create.
policy=/usr/sbin/policy-rc.d
created_policy=0
if [ ! -e "$policy" ]; then
    printf '#!/bin/sh\nexit 101\n' > "$policy"; chmod +x "$policy"; created_policy=1
fi
trap '[ $created_policy = 1 ] && rm -f "$policy"' EXIT
export DEBIAN_FRONTEND=noninteractive
apt-get -o DPkg::Lock::Timeout=600 update -qq
apt-get -o DPkg::Lock::Timeout=600 install -y -qq --no-install-recommends "${missing[@]}" >/dev/null

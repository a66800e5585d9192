# File-system workout through the Linux NFSv3 client on the three-layer export built by
# host/fixtures.sh (lower2 at the bottom, lower1 above it, upper on top).
# Prints FILESUM lines (path md5) that the host compares with the upper layer afterwards.
. /test/lib.sh
M=/mnt/w
OPTS=${WORK_OPTS:-vers=3,nolock,proto=tcp}
remount() { cd /; umount $M && nfs_mount $M "$OPTS" && cd $M; }

if nfs_mount $M "$OPTS" >/tmp/m.out 2>&1; then ok workout-mount "$OPTS"; else bad workout-mount "$(cat /tmp/m.out)"; finish; exit 1; fi
cd $M || exit 1

# --- the merged view as created
check view-top-lower-wins "lower1-a" "$(cat common/a.txt)"
check view-bottom-only "only in lower2" "$(cat common/only2.txt)"
check view-upper "upper" "$(cat upper-only.txt)"
check view-deep "deep file" "$(cat dir2only/sub/deep.txt)"

# --- create, write, append, truncate
seq 1 50000 >created.txt && check create "$(seq 1 50000 | md5sum)" "$(md5sum <created.txt)"
dd if=/dev/urandom of=/tmp/rand.bin bs=64k count=32 2>/dev/null
cp /tmp/rand.bin rand.bin && check write-2MiB "$(md5sum </tmp/rand.bin)" "$(md5sum <rand.bin)"
dd if=/tmp/rand.bin of=rand.bin bs=4k seek=100 count=3 conv=notrunc 2>/dev/null   # overwrite in the middle
dd if=/tmp/rand.bin of=/tmp/rand.bin bs=4k seek=100 count=3 conv=notrunc 2>/dev/null
check overwrite-middle "$(md5sum </tmp/rand.bin)" "$(md5sum <rand.bin)"
echo appended >>common/a.txt
check append-lower-file "$(printf 'lower1-a\nappended')" "$(cat common/a.txt)"
truncate -s 4 trunc.txt
check truncate-lower-file "0123" "$(cat trunc.txt)"
truncate -s 100000 created.txt; truncate -s 10 created.txt
check truncate-upper-file "$(seq 1 50000 | head -c 10 | md5sum)" "$(md5sum <created.txt)"
seq 1 50000 >created.txt

# a 32 MiB file: many 1 MiB WRITEs, COMMIT, then READs after the cache is dropped
dd if=/dev/urandom of=/tmp/big.bin bs=1M count=32 2>/dev/null
t0=$(date +%s)
cp /tmp/big.bin big32.bin && sync
drop_caches
check write-read-32MiB "$(md5sum </tmp/big.bin)" "$(md5sum <big32.bin)"
echo "    | 32 MiB written and read back in $(( $(date +%s) - t0 ))s"
rm -f /tmp/big.bin
# copy-up of a sparse lower file (64 MiB, two 4-byte islands) by appending to it
printf end >>sparse.bin
check copyup-sparse-size "$(( (64<<20) + 3 ))" "$(stat -c %s sparse.bin)"
check copyup-sparse-content "head|tail|end" "$(dd if=sparse.bin bs=4 count=1 2>/dev/null)|$(dd if=sparse.bin bs=1 skip=$((32<<20)) count=4 2>/dev/null)|$(tail -c 3 sparse.bin)"

# --- read back with checksums, after dropping caches and after a remount
sums() { for f in created.txt rand.bin common/a.txt trunc.txt; do echo "$f $(md5sum <$f)"; done; }
sums >/tmp/sums.before
drop_caches; sums >/tmp/sums.drop
check readback-after-drop-caches "$(cat /tmp/sums.before)" "$(cat /tmp/sums.drop)"
step remount-1 remount
sums >/tmp/sums.remount
check readback-after-remount "$(cat /tmp/sums.before)" "$(cat /tmp/sums.remount)"

# --- rename files and directories
mv ren-lower.txt renamed.txt && check rename-lower-file "rename me" "$(cat renamed.txt)"
[ ! -e ren-lower.txt ] && ok rename-lower-file-source-gone || bad rename-lower-file-source-gone
mv created.txt created2.txt && check rename-upper-file "$(seq 1 50000 | md5sum)" "$(md5sum <created2.txt)"
mkdir newdir && echo inner >newdir/inner.txt && mv newdir newdir2
check rename-upper-dir "inner" "$(cat newdir2/inner.txt 2>&1)"
ino_before=$(stat -c %i dir2only/sub/deep.txt)
mv dir2only dir2moved; rc=$?
check rename-lower-dir-rc 0 $rc
check rename-lower-dir-content "deep file|top" "$(cat dir2moved/sub/deep.txt 2>&1)|$(cat dir2moved/top.txt 2>&1)"
[ ! -e dir2only ] && ok rename-lower-dir-source-gone || bad rename-lower-dir-source-gone
check rename-lower-dir-keeps-fileid "$ino_before" "$(stat -c %i dir2moved/sub/deep.txt)"
# a directory merged from all three layers
mv merged merged-moved; check rename-merged-dir-rc 0 $?
check rename-merged-dir-content "m1 m2 mu m2sub" "$(cat merged-moved/m1.txt merged-moved/m2.txt merged-moved/mu.txt merged-moved/sub/deep2.txt 2>&1 | tr '\n' ' ' | sed 's/ $//')"
check rename-merged-dir-listing "m1.txt m2.txt mu.txt sub" "$(ls merged-moved | tr '\n' ' ' | sed 's/ $//')"
[ ! -e merged ] && ok rename-merged-dir-source-gone || bad rename-merged-dir-source-gone

# --- hard links and symlinks
ln created2.txt created-link
check hardlink-upper "$(stat -c %i created2.txt) 2" "$(stat -c '%i %h' created-link)"
ln hl/x hl/x2
check hardlink-lower "$(stat -c %i hl/x)" "$(stat -c %i hl/x2)"
check hardlink-lower-sibling-follows-copyup "$(stat -c %i hl/x)" "$(stat -c %i hl/y)"
check hardlink-content "hardlink" "$(cat hl/x2)"
ln -s common/a.txt sym.txt
check symlink-readlink "common/a.txt" "$(readlink sym.txt)"
check symlink-follow "$(cat common/a.txt)" "$(cat sym.txt)"

# --- chmod / chown as root (no_root_squash)
chmod 0640 chmod.txt && chown 1234:5678 chmod.txt
check chmod-chown "640 1234 5678" "$(stat -c '%a %u %g' chmod.txt)"
touch owned.txt && chown 4321:8765 owned.txt && chmod 0600 owned.txt
check chown-new-file "600 4321 8765" "$(stat -c '%a %u %g' owned.txt)"
check create-owned-by-root "0 0" "$(touch rootfile.txt; stat -c '%u %g' rootfile.txt)"

# --- remove lower files, rm -rf + mkdir
rm rmme.txt gone1.txt common/only2.txt; check rm-lower-files-rc 0 $?
rm -rf rmdir; check rm-rf-merged-dir 0 $?
mkdir rmdir; check mkdir-after-rm-rf-empty "" "$(ls -A rmdir)"

step remount-2 remount
gone=""; for f in rmme.txt gone1.txt common/only2.txt ren-lower.txt dir2only created.txt newdir merged; do [ -e "$f" ] && gone="$gone $f"; done
check removed-stay-gone-after-remount "" "$gone"
check removed-not-listed "" "$(ls -a . common | grep -E '^(rmme.txt|gone1.txt|only2.txt|ren-lower.txt|dir2only)$')"
check rmdir-empty-after-remount "" "$(ls -A rmdir)"
check rename-merged-dir-after-remount "m1.txt m2.txt mu.txt sub|m2sub|" "$(ls merged-moved | tr '\n' ' ' | sed 's/ $//')|$(cat merged-moved/sub/deep2.txt)|$(ls -d merged 2>/dev/null)"
check chmod-chown-after-remount "640 1234 5678" "$(stat -c '%a %u %g' chmod.txt)"
sums2() { for f in created2.txt rand.bin common/a.txt trunc.txt; do echo "$(md5sum <$f)"; done; }
check readback-after-remount-2 "$(cut -d' ' -f2- /tmp/sums.before)" "$(sums2)"

# --- 10,000-entry merged directory
t0=$(date +%s)
ls -l big >/tmp/big.ls; rc=$?
n=$(grep -c '^-' /tmp/big.ls); u=$(awk '/^-/ {print $NF}' /tmp/big.ls | sort -u | wc -l)
check ls-l-big-rc 0 $rc
check ls-l-big-count "10000 10000" "$n $u"
check ls-l-big-range "f00000 f09999" "$(awk '/^-/ {print $NF}' /tmp/big.ls | sort | sed -n '1p;$p' | tr '\n' ' ' | sed 's/ $//')"
echo "    | ls -l of 10000 entries took $(( $(date +%s) - t0 ))s"
step remount-3 remount
check ls-big-after-remount 10000 "$(ls big | sort -u | wc -l)"

# --- tar of the whole tree, inode consistency
( set -o pipefail; tar cf - . 2>/tmp/tar.err | tar tf - >/tmp/tar.list ); rc=$?   # streamed: no copy in RAM
check tar-c-rc "0" "$rc$(head -c 200 /tmp/tar.err)"
find . >/tmp/find.list
check tar-lists-every-path "$(wc -l </tmp/find.list)" "$(wc -l </tmp/tar.list)"
find . -print0 | xargs -0 stat -c '%i %h %F %n' >/tmp/inodes
# an inode shared by several paths must be a hard-linked non-directory (nlink > 1) ...
bad_ino=$(awk '{c[$1]++; l[$1]=$2; if ($3=="directory") d[$1]=1; p[$1]=p[$1] " " $NF "(nlink " $2 ")"}
  END {for (i in c) if (c[i]>1 && (d[i] || l[i]<2)) print i ":" p[i]}' /tmp/inodes | head -5)
check inode-unique-except-hardlinks "" "$bad_ino"
# ... whose link count covers every name it has
bad_nlink=$(awk '$3!="directory" {c[$1]++; l[$1]=$2; p[$1]=p[$1] " " $NF}
  END {for (i in c) if (c[i]>l[i]) print i ": " c[i] " names, nlink " l[i] ":" p[i]}' /tmp/inodes | head -5)
check hardlink-nlink-counts-every-name "" "$bad_nlink"
ino=$(stat -c %i created2.txt)
check find-inum-hardlink "./created-link ./created2.txt" "$(find . -inum $ino | sort | tr '\n' ' ' | sed 's/ $//')"
ino=$(stat -c %i dir2moved/sub/deep.txt)
check find-inum-renamed "./dir2moved/sub/deep.txt" "$(find . -inum $ino)"

# --- report content for the server-side check, then unmount
for f in created2.txt created-link rand.bin big32.bin sparse.bin common/a.txt trunc.txt renamed.txt chmod.txt hl/x hl/x2 newdir2/inner.txt; do
  echo "FILESUM $f $(md5sum <$f | cut -d' ' -f1)"
done
cd /
step umount-clean umount $M
finish

#!/usr/bin/env bash
# build-disk.sh OUT.img DIR [SIZE_MB]
#
# Makes a raw ext2 disk image holding the contents of DIR (mke2fs -d; no root
# privileges or loop devices needed). The guest sees it as /dev/vda (a
# virtio-mmio block device) and init mounts it read-write on /mnt; programs
# at its top level are found by name (PATH=/bin:/mnt). Use it for tests and
# for large binaries or inputs (e.g. PARSEC) that would make the initramfs
# slow to unpack.
#
# SIZE_MB defaults to the size of DIR plus 25% and 8 MB of headroom.
# Filesystem UUID, hash seed and superblock times are fixed, so the same
# DIR (same file contents, owners and mtimes) gives the same image.
# Packages: e2fsprogs (see guest-images/deps.txt).
set -euo pipefail

die() { printf 'build-disk: ERROR: %s\n' "$*" >&2; exit 1; }

[ $# -ge 2 ] && [ $# -le 3 ] || die "usage: $0 OUT.img DIR [SIZE_MB]"
OUT=$1 DIR=$2
[ -d "$DIR" ] || die "$DIR is not a directory"

MKE2FS=$(command -v mke2fs || true)
for c in /sbin/mke2fs /usr/sbin/mke2fs; do
	[ -n "$MKE2FS" ] || { [ -x "$c" ] && MKE2FS=$c; } || true
done
[ -n "$MKE2FS" ] || die "mke2fs not found (apt-get install e2fsprogs)"

if [ $# -eq 3 ]; then
	SIZE_MB=$3
	[[ $SIZE_MB =~ ^[0-9]+$ ]] && [ "$SIZE_MB" -ge 1 ] || die "SIZE_MB must be a positive integer"
else
	kb=$(du -sk "$DIR" | cut -f1)
	SIZE_MB=$(((kb * 5 / 4 + 1023) / 1024 + 8))
fi

mkdir -p "$(dirname "$OUT")"
rm -f "$OUT.tmp"
truncate -s "${SIZE_MB}M" "$OUT.tmp"
ZERO=00000000-0000-0000-0000-000000000000
SEED=73616d73-6172-6100-0000-000000000001 # fixed directory-hash seed
if ! E2FSPROGS_FAKE_TIME=1 "$MKE2FS" -q -F -t ext2 -b 4096 -m 0 -L samsara \
	-U "$ZERO" -E "root_owner=0:0,hash_seed=$SEED" -d "$DIR" "$OUT.tmp" >&2; then
	rm -f "$OUT.tmp"
	die "mke2fs failed (is ${SIZE_MB} MB enough for $DIR?)"
fi
mv -f "$OUT.tmp" "$OUT"
echo "$OUT: ${SIZE_MB} MB ext2 image of $DIR"

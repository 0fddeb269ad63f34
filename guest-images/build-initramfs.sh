#!/usr/bin/env bash
# build-initramfs.sh OUT.cpio [EXTRA_BIN_DIR...]
#
# Builds samsara's guest initramfs: an uncompressed newc cpio with
#   /init                  init/init.c (static, musl, -O2)
#   /bin/*                 userland/*.c and programs/*.c (static, musl, -Os, stripped)
#                          plus every executable file at the top of each EXTRA_BIN_DIR
#   /dev /proc /sys /tmp /mnt   (empty mount points)
#   /dev/console           character device 5:1, so the kernel can open the
#                          initial console before init mounts devtmpfs
#
# The output is byte-reproducible: fixed modes, owner root (0:0), mtime 0,
# sorted names, renumbered inodes (cpio --reproducible). It is meant to be
# small: under PVM the guest kernel unpacks ~30 ms per KB.
#
# Guest programs are built with -march=x86-64 (no AVX): under PVM the guest
# sees the host's CPUID but boots with noxsave, so AVX state would not be
# saved across context switches. The script fails if any of its own
# binaries contains AVX (ymm/zmm) instructions, and warns for extra ones.
#
# Environment: MUSL_GCC (default musl-gcc). Packages: guest-images/deps.txt.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
MUSL_GCC=${MUSL_GCC:-musl-gcc}

log() { printf 'build-initramfs: %s\n' "$*" >&2; }
die() { printf 'build-initramfs: ERROR: %s\n' "$*" >&2; exit 1; }

[ $# -ge 1 ] || die "usage: $0 OUT.cpio [EXTRA_BIN_DIR...]"
OUT=$1
shift
for d in "$@"; do
	[ -d "$d" ] || die "extra bin dir $d does not exist"
done
command -v "$MUSL_GCC" >/dev/null || die "$MUSL_GCC not found (apt-get install musl-tools)"
command -v cpio >/dev/null || die "cpio not found (apt-get install cpio)"

TMP=$(mktemp -d "${TMPDIR:-/tmp}/samsara-initramfs.XXXXXX")
trap 'rm -rf "$TMP"' EXIT
ROOT="$TMP/root"
mkdir -p "$ROOT"/{bin,dev,proc,sys,tmp,mnt}

COMMON=(-static -march=x86-64 -mtune=generic -Wall -Wextra -Wno-unused-parameter
	-fno-asynchronous-unwind-tables -ffunction-sections -fdata-sections
	-Wl,--gc-sections -Wl,--build-id=none -Wl,-z,noseparate-code -Wl,-z,norelro -s)

has_avx() { objdump -d --no-show-raw-insn "$1" 2>/dev/null | grep -qE '%[yz]mm[0-9]'; }

build() { # build OUT SRC OPT
	"$MUSL_GCC" "${COMMON[@]}" "$3" -o "$1" "$2" -pthread || die "compiling $2 failed"
	if command -v objdump >/dev/null && has_avx "$1"; then
		die "$1 contains AVX instructions"
	fi
}

log "compiling init and programs with $MUSL_GCC"
build "$ROOT/init" "$HERE/init/init.c" -O2
for src in "$HERE"/userland/*.c "$HERE"/programs/*.c; do
	[ -e "$src" ] || continue
	build "$ROOT/bin/$(basename "$src" .c)" "$src" -Os
done

for d in "$@"; do
	n=0
	while IFS= read -r -d '' f; do
		name=$(basename "$f")
		[ -e "$ROOT/bin/$name" ] && log "warning: $d/$name replaces /bin/$name"
		cp -f "$f" "$ROOT/bin/$name"
		if command -v objdump >/dev/null && has_avx "$f"; then
			log "warning: $f contains AVX instructions (guests boot with noxsave: AVX state is not preserved across context switches)"
		fi
		n=$((n + 1))
	done < <(find "$d" -maxdepth 1 -type f -perm -u+x -print0 | LC_ALL=C sort -z)
	log "added $n program(s) from $d"
done

# Normalise metadata for a reproducible archive.
find "$ROOT" -type d -exec chmod 0755 {} +
find "$ROOT" -type f -exec chmod 0755 {} +
chmod 1777 "$ROOT/tmp"
find "$ROOT" -exec touch -h -d @0 {} +

mkdir -p "$(dirname "$OUT")"
(cd "$ROOT" && find . | LC_ALL=C sort | cpio -o -H newc --reproducible -R 0:0 --quiet) >"$TMP/out.cpio"

# Second, concatenated newc archive with /dev/console (a device node cannot
# be created in the temp root without root privileges; the kernel unpacks
# concatenated archives in order).
newc_entry() { # name mode(octal) rdevmajor rdevminor ino
	local name=$1 mode=$((8#$2)) namesize=$((${#1} + 1))
	printf '070701%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X' \
		"$5" "$mode" 0 0 1 0 0 0 0 "$3" "$4" "$namesize" 0
	printf '%s\0' "$name"
	# pad header (110) + name to a multiple of 4
	local pad=$(((4 - (110 + namesize) % 4) % 4))
	head -c "$pad" /dev/zero
}
{
	newc_entry dev/console 020600 5 1 1
	newc_entry 'TRAILER!!!' 0 0 0 0
} >>"$TMP/out.cpio"

mv -f "$TMP/out.cpio" "$OUT"
size=$(stat -c %s "$OUT")
echo "$OUT: $size bytes ($(find "$ROOT/bin" -type f | wc -l) programs in /bin)"

#!/usr/bin/env bash
# build-kernel.sh: build samsara's reference guest kernel (an ELF vmlinux with
# a PVH entry point) from Debian's linux-source-6.1, cached by content.
#
# Usage: guest-images/build-kernel.sh
#   stdout: the directory holding vmlinux, System.map, task-offsets and
#           config (one line)
#   stderr: progress and errors
#
# Environment:
#   SAMSARA_CACHE           cache root (default $HOME/.cache/samsara)
#   SAMSARA_KERNEL_TARBALL  source tarball (default /usr/src/linux-source-6.1.tar.xz,
#                           Debian package linux-source-6.1)
#   SAMSARA_KERNEL_JOBS     make -j value (default: nproc)
#   CC                      compiler (default gcc)
#
# Cache key: SHA-256 over the tarball's SHA-256 (itself cached per
# path+size+mtime, so the 138 MB tarball is hashed once), the config
# fragment, every patch (name and content, in order), this script and the
# compiler's version line. Result: $SAMSARA_CACHE/kernel-<key>/.
# Build packages (Debian 12): see guest-images/deps.txt.
set -euo pipefail
T0=$(date +%s)

# Everything but the final result goes to stderr.
exec 3>&1 1>&2

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
SCRIPT="$HERE/$(basename "${BASH_SOURCE[0]}")"
TARBALL=${SAMSARA_KERNEL_TARBALL:-/usr/src/linux-source-6.1.tar.xz}
CACHE=${SAMSARA_CACHE:-$HOME/.cache/samsara}
FRAGMENT="$HERE/kernel/config.fragment"
PATCHDIR="$HERE/patches"
JOBS=${SAMSARA_KERNEL_JOBS:-$(nproc)}
CC=${CC:-gcc}

log() { printf 'build-kernel: [%4ss] %s\n' "$(($(date +%s) - T0))" "$*" >&2; }
die() { printf 'build-kernel: ERROR: %s\n' "$*" >&2; exit 1; }
sha() { sha256sum "$1" | cut -d' ' -f1; }

[ -f "$TARBALL" ] || die "kernel source $TARBALL not found (apt-get install linux-source-6.1, or set SAMSARA_KERNEL_TARBALL)"
[ -f "$FRAGMENT" ] || die "missing $FRAGMENT"
command -v "$CC" >/dev/null || die "compiler $CC not found (see guest-images/deps.txt)"
mkdir -p "$CACHE"

# --- cache key -----------------------------------------------------------
tarball_sha() {
	local abs size mtime id memo h
	abs=$(readlink -f "$TARBALL")
	size=$(stat -c %s "$abs")
	mtime=$(stat -c %Y "$abs")
	id=$(printf '%s\0%s\0%s' "$abs" "$size" "$mtime" | sha256sum | cut -d' ' -f1)
	memo="$CACHE/src-sha256/$id"
	if [ -s "$memo" ]; then
		cat "$memo"
		return
	fi
	log "hashing $abs (once per size/mtime)"
	h=$(sha "$abs")
	mkdir -p "$CACHE/src-sha256"
	printf '%s\n' "$h" >"$memo.tmp.$$" && mv -f "$memo.tmp.$$" "$memo"
	printf '%s\n' "$h"
}

shopt -s nullglob
PATCHES=("$PATCHDIR"/*.patch)
shopt -u nullglob

KEY=$(
	{
		printf 'tarball %s %s\n' "$(basename "$TARBALL")" "$(tarball_sha)"
		printf 'fragment %s\n' "$(sha "$FRAGMENT")"
		for p in "${PATCHES[@]}"; do
			printf 'patch %s %s\n' "$(basename "$p")" "$(sha "$p")"
		done
		printf 'script %s\n' "$(sha "$SCRIPT")"
		printf 'cc %s\n' "$("$CC" --version | head -n1)"
	} | sha256sum | cut -d' ' -f1
)
OUT="$CACHE/kernel-$KEY"

if [ -f "$OUT/vmlinux" ] && [ -f "$OUT/task-offsets" ]; then
	log "cached: $OUT"
	echo "$OUT" >&3
	exit 0
fi

# --- build ---------------------------------------------------------------
TMP=$(mktemp -d "$CACHE/kernel-build.XXXXXX")
trap 'rm -rf "$TMP"' EXIT
log "building kernel $KEY in $TMP (-j$JOBS)"

log "extracting $TARBALL"
mkdir "$TMP/src"
tar -xf "$TARBALL" -C "$TMP/src" --strip-components=1
SRC="$TMP/src"
[ -f "$SRC/Makefile" ] || die "$TARBALL does not look like a kernel source tarball"

for p in "${PATCHES[@]}"; do
	log "applying $(basename "$p")"
	patch -p1 -s -d "$SRC" <"$p" || die "patch $(basename "$p") does not apply"
done

# Reproducible build metadata (the banner ends up in /proc/version).
export KBUILD_BUILD_USER=samsara KBUILD_BUILD_HOST=samsara
export KBUILD_BUILD_TIMESTAMP="Thu Jan  1 00:00:00 UTC 1970" KBUILD_BUILD_VERSION=1
MAKE=(make -C "$SRC" -s ARCH=x86_64 "CC=$CC" "HOSTCC=$CC")

log "make tinyconfig + config.fragment"
"${MAKE[@]}" tinyconfig >/dev/null
(cd "$SRC" && ARCH=x86_64 scripts/kconfig/merge_config.sh -m -O "$SRC" "$SRC/.config" "$FRAGMENT" >/dev/null)
"${MAKE[@]}" olddefconfig >/dev/null

# Verify that every setting of the fragment holds in the final .config.
bad=0
while IFS= read -r line || [ -n "$line" ]; do
	name='' want=''
	if [[ $line =~ ^(CONFIG_[A-Za-z0-9_]+)=(.*)$ ]]; then
		name=${BASH_REMATCH[1]} want=${BASH_REMATCH[2]}
	elif [[ $line =~ ^#\ (CONFIG_[A-Za-z0-9_]+)\ is\ not\ set$ ]]; then
		name=${BASH_REMATCH[1]} want=n
	else
		continue
	fi
	have=$(grep -E "^$name=|^# $name is not set$" "$SRC/.config" || true)
	case "$have" in
	"$name="*) have=${have#"$name="} ;;
	*) have=n ;; # "is not set" or absent (dependency unmet): both mean n
	esac
	if [ "$have" != "$want" ]; then
		printf 'build-kernel: ERROR: %s: fragment wants %s, final .config has %s\n' \
			"$name" "$want" "$have" >&2
		bad=1
	fi
done <"$FRAGMENT"
[ "$bad" = 0 ] || die "kernel config does not satisfy $FRAGMENT (see above; check dependencies with make menuconfig)"
log "config verified: all $(grep -cE '^CONFIG_|^# CONFIG_[A-Za-z0-9_]+ is not set$' "$FRAGMENT") fragment settings hold"

log "make vmlinux"
"${MAKE[@]}" -j"$JOBS" vmlinux

# The PVH entry point (Xen ELF note type 0x12, XEN_ELFNOTE_PHYS32_ENTRY): a
# 32-bit protected-mode entry without a BIOS. Its description is the entry's
# physical address (little-endian). samsara may instead use the 64-bit boot
# protocol (ELF entry = startup_64); both are recorded in "info".
PVH_ENTRY=$(LC_ALL=C readelf -n "$SRC/vmlinux" | awk '
	/^ +Xen / && /0x00000012|PHYS32_ENTRY/ { want = 1; next }
	want && /description data:/ {
		sub(/.*description data: */, ""); n = split($0, b, " ")
		s = ""; for (i = n; i >= 1; i--) s = s b[i]
		sub(/^0+/, "", s); print "0x" s; exit
	}')
[ -n "$PVH_ENTRY" ] || die "vmlinux has no PVH entry note (XEN_ELFNOTE_PHYS32_ENTRY); is CONFIG_PVH set?"

STAGE="$TMP/out"
mkdir "$STAGE"
cp "$SRC/vmlinux" "$SRC/System.map" "$STAGE/"

# task-offsets: where pid, tgid and comm sit in struct task_struct of this
# build, for `samsara trace` (who ran), from the kernel's own asm-offsets
# (patches/0006): one "name value" line each.
OFFS="$SRC/include/generated/asm-offsets.h"
awk '$1 == "#define" && $2 ~ /^SAMSARA_TASK_/ { sub(/^SAMSARA_TASK_/, "", $2); print $2, $3 }' "$OFFS" >"$STAGE/task-offsets"
for want in pid tgid comm COMM_LEN; do
	grep -q "^$want [0-9]" "$STAGE/task-offsets" || die "$OFFS has no SAMSARA_TASK_$want (is patches/0006 applied?)"
done
cp "$SRC/.config" "$STAGE/config"
{
	echo "key=$KEY"
	echo "release=$(cat "$SRC/include/config/kernel.release")"
	echo "entry=$(LC_ALL=C readelf -h "$SRC/vmlinux" | awk '/Entry point/ {print $4}')"
	echo "pvh_entry=$PVH_ENTRY"
	echo "vmlinux_bytes=$(stat -c %s "$SRC/vmlinux")"
} >"$STAGE/info"

# Atomic publish: rename the finished directory into place. If another
# build won the race, keep its result.
if ! mv -T "$STAGE" "$OUT" 2>/dev/null; then
	[ -f "$OUT/vmlinux" ] || die "cannot move result to $OUT"
	log "another build already produced $OUT"
fi
log "done: $OUT ($(stat -c %s "$OUT/vmlinux") bytes vmlinux)"
echo "$OUT" >&3

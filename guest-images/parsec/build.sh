#!/usr/bin/env bash
# build.sh PARSEC_SRC_DIR OUT.img [SUITE.yaml]
#
# Builds the PARSEC 3.0 pthreads programs from YOUR OWN PARSEC source tree
# (the project ships no PARSEC code: get parsec-3.0 from
# https://parsec.cs.princeton.edu/ and unpack it, with its simsmall input
# tarballs), static and without AVX, puts them and their simsmall inputs on
# an ext2 disk image (guest-images/build-disk.sh), and writes a samsara
# suite file (default: OUT.yaml next to the image) that runs them:
#
#   guest-images/parsec/build.sh ~/parsec-3.0 parsec.img
#   bin/samsara suite run parsec.yaml -o parsec-out
#
# Programs (the Samsara paper's PARSEC set that builds without PARSEC's
# bundled libraries): blackscholes, swaptions, streamcluster, canneal,
# fluidanimate. A program that does not build is reported and left out;
# the script fails only if none builds.
#
# Compilers: C with musl-gcc -static (no run-time CPU dispatch); C++ with
# g++ -static (glibc: its string functions pick AVX variants from CPUID at
# run time, so the suite sets GLIBC_TUNABLES to hide AVX from them; the
# guest kernel runs with noxsave and would not save AVX registers).
# Environment: CC (musl-gcc), CXX (g++), THREADS (2), SIZE_MB (image size).
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
usage() {
	cat >&2 <<USAGE
usage: $0 PARSEC_SRC_DIR OUT.img [SUITE.yaml]
  PARSEC_SRC_DIR  an unpacked PARSEC 3.0 tree (it has pkgs/apps/blackscholes/src)
  OUT.img         the ext2 disk image to write
  SUITE.yaml      the suite file to write (default: OUT.img with .yaml)
USAGE
	exit 2
}
die() { printf 'parsec/build.sh: ERROR: %s\n' "$*" >&2; exit 1; }
log() { printf 'parsec/build.sh: %s\n' "$*" >&2; }

[ $# -ge 2 ] && [ $# -le 3 ] || usage
SRC=$1
OUT=$2
SUITE=${3:-${OUT%.img}.yaml}
[ -d "$SRC/pkgs/apps/blackscholes/src" ] || die "$SRC is not a PARSEC 3.0 tree (no pkgs/apps/blackscholes/src)"
CC=${CC:-musl-gcc}
CXX=${CXX:-g++}
THREADS=${THREADS:-2}
command -v "$CC" >/dev/null || die "$CC not found (apt-get install musl-tools)"
command -v "$CXX" >/dev/null || die "$CXX not found (apt-get install g++)"
command -v m4 >/dev/null || die "m4 not found (apt-get install m4)"

# -march=x86-64: no AVX (noxsave guest); -ffp-contract=off: no FMA
# fusion, so results do not depend on the compiler's choice.
FLAGS=(-static -O2 -march=x86-64 -mno-avx -mno-avx2 -ffp-contract=off -pthread -DENABLE_THREADS -w)
TMP=$(mktemp -d "${TMPDIR:-/tmp}/samsara-parsec.XXXXXX")
trap 'rm -rf "$TMP"' EXIT
DISK="$TMP/disk"
mkdir -p "$DISK"
built=()

# input PKGDIR: unpack the simsmall inputs of a package into the disk.
input() {
	local tar="$SRC/$1/inputs/input_simsmall.tar"
	[ -f "$tar" ] || { log "no $tar: $(basename "$1") gets no input files"; return 0; }
	tar -xf "$tar" -C "$DISK"
}

build_blackscholes() {
	local d="$SRC/pkgs/apps/blackscholes/src"
	m4 "$d/c.m4.pthreads" "$d/blackscholes.c" >"$TMP/blackscholes.c"
	"$CC" "${FLAGS[@]}" -DNCO=4 -o "$DISK/blackscholes" "$TMP/blackscholes.c" -lm
	input pkgs/apps/blackscholes
}
build_swaptions() {
	local d="$SRC/pkgs/apps/swaptions/src"
	"$CXX" "${FLAGS[@]}" -o "$DISK/swaptions" "$d"/*.cpp -lm
}
build_streamcluster() {
	"$CXX" "${FLAGS[@]}" -o "$DISK/streamcluster" "$SRC/pkgs/kernels/streamcluster/src/streamcluster.cpp" -lm
}
build_canneal() {
	local d="$SRC/pkgs/kernels/canneal/src"
	"$CXX" "${FLAGS[@]}" -fpermissive -o "$DISK/canneal" "$d"/*.cpp -lm
	input pkgs/kernels/canneal
}
build_fluidanimate() {
	local d="$SRC/pkgs/apps/fluidanimate/src"
	"$CXX" "${FLAGS[@]}" -o "$DISK/fluidanimate" "$d/pthreads.cpp" "$d/cellpool.cpp" "$d/parsec_barrier.cpp" -lm
	input pkgs/apps/fluidanimate
}

for p in blackscholes swaptions streamcluster canneal fluidanimate; do
	log "building $p"
	if "build_$p" >"$TMP/$p.log" 2>&1; then
		if objdump -d --no-show-raw-insn "$DISK/$p" 2>/dev/null | grep -qE '%[yz]mm[0-9]'; then
			log "warning: $p contains AVX instructions; the guest (noxsave) may corrupt them"
		fi
		built+=("$p")
	else
		log "$p did not build (left out):"
		tail -5 "$TMP/$p.log" >&2
		rm -f "$DISK/$p"
	fi
done
[ ${#built[@]} -gt 0 ] || die "no program built"

"$HERE/../build-disk.sh" "$OUT" "$DISK"
IMG=$(cd "$(dirname "$OUT")" && pwd)/$(basename "$OUT")

# The simsmall command lines of PARSEC's own run configurations
# (pkgs/*/parsec/simsmall.runconf), with the thread count and /mnt paths.
cmdline() {
	case $1 in
	blackscholes) echo "[/mnt/blackscholes, \"$THREADS\", /mnt/in_4K.txt, /tmp/prices.txt]" ;;
	swaptions) echo "[/mnt/swaptions, -ns, \"16\", -sm, \"10000\", -nt, \"$THREADS\"]" ;;
	streamcluster) echo "[/mnt/streamcluster, \"10\", \"20\", \"32\", \"4096\", \"4096\", \"1000\", none, /tmp/output.txt, \"$THREADS\"]" ;;
	canneal) echo "[/mnt/canneal, \"$THREADS\", \"10000\", \"2000\", /mnt/100000.nets, \"32\"]" ;;
	fluidanimate) echo "[/mnt/fluidanimate, \"$THREADS\", \"5\", /mnt/in_35K.fluid, /tmp/out.fluid]" ;;
	esac
}
{
	echo "# Written by guest-images/parsec/build.sh from $SRC: PARSEC 3.0 simsmall."
	echo "name: parsec"
	echo "defaults:"
	echo "  image: $IMG"
	echo "  vcpus: [$THREADS]"
	echo "  modes: [serialized, parallel]"
	echo "  replays: 1"
	echo "  # simsmall runs for seconds natively; under PVM each job takes minutes."
	echo "  timeout: 30m"
	echo "  cwd: /tmp"
	echo "  # glibc (the C++ programs) must not pick AVX string functions."
	echo "  env: [\"GLIBC_TUNABLES=glibc.cpu.hwcaps=-AVX,-AVX2,-AVX512F,-AVX_Fast_Unaligned_Load\"]"
	echo "workloads:"
	for p in "${built[@]}"; do
		echo "  - name: $p"
		echo "    command: $(cmdline "$p")"
	done
} >"$SUITE"
log "wrote $OUT (${built[*]}) and $SUITE"

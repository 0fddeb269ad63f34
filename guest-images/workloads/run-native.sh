#!/usr/bin/env bash
# Build every workload into a temporary directory and run it natively.
#
#   guest-images/workloads/run-native.sh [--small]
#
# Each workload runs with 1 and 2 threads (THREADS="1 2" to change) at size
# tiny, and also at small with --small (or SIZES="tiny small").  A run fails
# if it exits non-zero or its summary line does not end in " ok".  For each
# workload and size the summary line, minus the threads= field, must be the
# same for every thread count: the printed results are independent of the
# number of threads and of their interleaving.  The binaries are also
# checked for AVX (VEX-encoded) instructions when objdump is available.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
sizes=${SIZES:-tiny}
threads=${THREADS:-1 2}
for arg in "$@"; do
	case $arg in
	--small) sizes="tiny small" ;;
	*)
		echo "usage: $0 [--small]" >&2
		exit 2
		;;
	esac
done

if ! command -v musl-gcc >/dev/null; then
	echo "run-native: musl-gcc not found (apt-get install musl-tools)" >&2
	exit 1
fi

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
make -s -C "$here" O="$tmp/bin"
progs=$(make -s -C "$here" list)

fail=0
if command -v objdump >/dev/null; then
	for p in $progs; do
		if objdump -d --no-show-raw-insn "$tmp/bin/$p" |
			grep -qP '\tv(?!err|erw)[a-z0-9]+\s|%[yz]mm'; then
			echo "FAIL $p: binary contains AVX instructions"
			fail=1
		fi
	done
fi

TIMEFORMAT='%R %U %S'
for p in $progs; do
	for s in $sizes; do
		ref=""
		for t in $threads; do
			out="$tmp/out.$p.$s.$t"
			set +e
			{ time "$tmp/bin/$p" "$t" "$s" >"$out" 2>"$out.err"; } 2>"$out.time"
			rc=$?
			set -e
			line=$(head -n 1 "$out")
			read -r real user sys <"$out.time"
			printf '%-64s real %ss user %ss sys %ss\n' "$line" "$real" "$user" "$sys"
			if [ "$rc" -ne 0 ] || [[ "$line" != *" ok" ]]; then
				echo "FAIL $p threads=$t size=$s (exit $rc)"
				sed 's/^/    /' "$out.err"
				fail=1
				continue
			fi
			norm=${line/threads=$t /}
			if [ -z "$ref" ]; then
				ref=$norm
			elif [ "$norm" != "$ref" ]; then
				echo "FAIL $p size=$s: output differs between thread counts"
				echo "    $ref"
				echo "    $norm"
				fail=1
			fi
		done
	done
done

if [ "$fail" -ne 0 ]; then
	echo "run-native: FAILED"
	exit 1
fi
echo "run-native: all workloads passed"

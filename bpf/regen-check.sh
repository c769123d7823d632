#!/usr/bin/env bash
# Checks that the committed bpf2go output (steer_bpfel.go, steer_bpfel.o)
# is what steer.c compiles to. It regenerates twice, in two scratch copies
# of this directory with different paths, using the exact bpf2go command of
# the //go:generate line in gen.go and the bpf2go version pinned in go.mod,
# and fails if either result differs from the committed files (which also
# proves the build is reproducible).
#
# Needs: go, clang (Debian 12's clang 14, which built the committed object;
# other versions emit different bytes), llvm-strip, libbpf-dev (bpf/*.h)
# and linux-libc-dev (linux/*.h, asm-generic/*.h; a UAPI change there, e.g.
# to struct xdp_md, changes the object's BTF too). On Debian 12:
#   apt-get install -y clang llvm libbpf-dev linux-libc-dev
#
# Usage: bpf/regen-check.sh        (from anywhere)
# To update the committed files instead: go generate ./bpf/
set -euo pipefail

expected_clang_major=14
generated=(steer_bpfel.go steer_bpfel.o)

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/.." && pwd)

fail() {
	echo "regen-check: $*" >&2
	exit 1
}

for tool in go clang llvm-strip; do
	command -v "$tool" >/dev/null || fail "$tool not found in PATH"
done
[[ -f /usr/include/bpf/bpf_helpers.h ]] || fail "libbpf-dev headers missing (/usr/include/bpf/bpf_helpers.h)"
[[ -f /usr/include/linux/bpf.h ]] || fail "linux-libc-dev headers missing (/usr/include/linux/bpf.h)"

clang_major=$(clang -dumpversion | cut -d. -f1)
if [[ "$clang_major" != "$expected_clang_major" ]]; then
	fail "clang $clang_major found, the committed object was built with clang $expected_clang_major; byte-identical output needs the same major version"
fi

mapfile -t lines < <(grep -h '^//go:generate go tool bpf2go ' "$here"/*.go)
[[ ${#lines[@]} -eq 1 ]] || fail "expected exactly one bpf2go //go:generate line in $here/*.go, found ${#lines[@]}"
args=${lines[0]#//go:generate go tool bpf2go }

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# The bpf2go version pinned by go.mod's tool directive.
(cd "$repo" && go build -o "$tmp/bpf2go" github.com/cilium/ebpf/cmd/bpf2go)

status=0
for copy in a longer-scratch-path-b; do
	dir="$tmp/$copy/bpf"
	mkdir -p "$dir"
	cp -R "$here/." "$dir/"
	for f in "${generated[@]}"; do
		rm -f "$dir/$f"
	done
	(
		cd "$dir"
		eval "set -- $args"
		GOPACKAGE=bpf GOFILE=gen.go "$tmp/bpf2go" "$@"
	) || fail "bpf2go failed in $dir"
	for f in "${generated[@]}"; do
		if ! cmp -s "$here/$f" "$dir/$f"; then
			echo "regen-check: bpf/$f differs from a fresh build ($copy); run 'go generate ./bpf/' and commit" >&2
			status=1
		fi
	done
done
[[ $status -eq 0 ]] && echo "regen-check: committed bpf2go output matches steer.c (two clean builds)"
exit $status

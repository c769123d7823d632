//go:build linux && !(386 || amd64 || arm || arm64 || loong64 || mips64le || mipsle || ppc64le || riscv64 || wasm)

package bpf

import (
	"fmt"

	"github.com/cilium/ebpf"
)

// loadSteer stands in for the bpf2go-generated loader on big-endian Linux:
// only a little-endian object is built (see gen.go).
func loadSteer() (*ebpf.CollectionSpec, error) {
	return nil, fmt.Errorf("bpf: %w: the steering program is only built for little-endian CPUs", ErrNotSupported)
}

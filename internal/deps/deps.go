//go:build never

// Package deps pins module dependencies that are used by packages still
// being written; it is never built.
package deps

import (
	_ "github.com/asavie/xdp"
	_ "github.com/cilium/ebpf"
	_ "github.com/google/gopacket/layers"
	_ "github.com/google/gopacket/pcapgo"
	_ "golang.org/x/crypto/chacha20poly1305"
	_ "golang.org/x/sys/unix"
	_ "gopkg.in/yaml.v3"
)

//go:build !linux

// Command policy-based needs Linux (network namespaces, XDP, AF_XDP).
package main

import (
	"fmt"
	"os"
)

func main() {
	fmt.Fprintln(os.Stderr, "policy-based: Linux only")
	os.Exit(1)
}

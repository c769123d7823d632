//go:build !linux

// Command site-to-site needs Linux (network namespaces, XDP, AF_XDP,
// TUN).
package main

import (
	"fmt"
	"os"
)

func main() {
	fmt.Fprintln(os.Stderr, "site-to-site: Linux only")
	os.Exit(1)
}

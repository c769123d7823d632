//go:build !linux

package main

import (
	"errors"
	"io"
)

// cmdDemo needs Linux network namespaces and AF_XDP.
func cmdDemo(args []string, stdout, stderr io.Writer) error {
	return errors.New("demo: needs Linux (network namespaces and AF_XDP)")
}

//go:build !linux

package topo

import "errors"

// Do runs fn inside the network namespace bound at path; network
// namespaces exist only on Linux.
func Do(path string, fn func() error) error {
	return errors.New("topo: network namespaces need Linux")
}

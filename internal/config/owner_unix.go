//go:build unix

package config

import (
	"os"
	"syscall"
)

// openNoBlock opens path for reading without blocking on a FIFO (whose
// open would wait for a writer); the caller refuses what is not a
// regular file.
func openNoBlock(path string) (*os.File, error) {
	return os.OpenFile(path, os.O_RDONLY|syscall.O_NONBLOCK, 0)
}

// fileOwner returns the uid owning fi.
func fileOwner(fi os.FileInfo) (int, bool) {
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		return int(st.Uid), true
	}
	return 0, false
}

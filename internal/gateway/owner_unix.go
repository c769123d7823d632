//go:build unix

package gateway

import (
	"os"
	"syscall"
)

// fileOwner returns the uid owning fi.
func fileOwner(fi os.FileInfo) (int, bool) {
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		return int(st.Uid), true
	}
	return 0, false
}

//go:build !linux

package gateway

import (
	"errors"
	"os"
)

func openLinkMonitor() (*os.File, error) { return nil, errors.New("link monitor: Linux only") }

func linkIndex(string) int { return 0 }

func readLinkEvents(*os.File, func(int, bool, bool)) {}

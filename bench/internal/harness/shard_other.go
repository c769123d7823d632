//go:build !linux

package harness

import (
	"runtime"
	"sync/atomic"
	"time"
)

// threadCPU is not implemented here: no per-core figures.
func threadCPU() (int64, bool) { return 0, false }

// yieldThread yields the processor.
func yieldThread() { runtime.Gosched() }

// sleepWhile waits while *word == v, at most d, yielding.
func sleepWhile(word *atomic.Uint32, v uint32, d time.Duration) {
	for end := time.Now().Add(d); word.Load() == v && time.Now().Before(end); {
		runtime.Gosched()
	}
}

// wakeWord does nothing: sleepWhile polls.
func wakeWord(*atomic.Uint32) {}

// pinThread does nothing here.
func pinThread(int) (restore func() bool) { return func() bool { return true } }

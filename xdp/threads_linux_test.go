//go:build linux

package xdp

import (
	"os"
	"strconv"
	"strings"
	"testing"

	"github.com/espxdp/espxdp/sa"
)

// TestEngineWorkerThreads: a running engine reports one thread per
// worker, each a thread of this process (its /proc/self/task entry
// exists and counts CPU time), distinct; a stopped one reports none.
func TestEngineWorkerThreads(t *testing.T) {
	requireNet(t)
	n := newEngNetQ(t, 2)
	s := newEngSAs(t, n)
	cfg := n.config(s)
	cfg.Queues = 2
	proc, err := sa.NewProcessor(sa.ProcessorOptions{SAD: s.sad, Workers: 2})
	if err != nil {
		t.Fatal(err)
	}
	cfg.Processor = proc
	e, err := NewEngine(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if got := e.WorkerThreads(); got != nil {
		t.Fatalf("WorkerThreads before Start = %v", got)
	}
	if err := n.nsE.Do(e.Start); err != nil {
		t.Fatal(err)
	}
	tids := e.WorkerThreads()
	if len(tids) != 2 || tids[0] == tids[1] {
		t.Errorf("WorkerThreads = %v, want 2 distinct", tids)
	}
	for _, tid := range tids {
		b, err := os.ReadFile("/proc/self/task/" + strconv.Itoa(tid) + "/stat")
		if err != nil || !strings.HasPrefix(string(b), strconv.Itoa(tid)+" (") {
			t.Errorf("thread %d: %q, %v", tid, b, err)
		}
	}
	if err := e.Stop(); err != nil {
		t.Fatal(err)
	}
	if got := e.WorkerThreads(); got != nil {
		t.Errorf("WorkerThreads after Stop = %v", got)
	}
}

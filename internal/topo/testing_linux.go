//go:build linux

package topo

import "testing"

// NewForTest is New for a test: the topology is closed when t ends (a
// namespace left behind is a test error), and add is AddNS that fails t
// at once on error.
func NewForTest(t testing.TB, prefix string) (tp *Topology, add func(label string) *NS) {
	t.Helper()
	tp = New(prefix)
	t.Cleanup(func() {
		if err := tp.Close(); err != nil {
			t.Error(err)
		}
	})
	return tp, func(label string) *NS {
		t.Helper()
		ns, err := tp.AddNS(label)
		if err != nil {
			t.Fatal(err)
		}
		return ns
	}
}

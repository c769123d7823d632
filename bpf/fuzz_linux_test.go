//go:build linux

package bpf

import (
	"net/netip"
	"testing"

	"github.com/cilium/ebpf"
)

// Frames the kernel accepts for an XDP test run: at least an Ethernet
// header, and they must fit in a page with head- and tailroom.
const (
	minTestFrame = 14
	maxTestFrame = 3000
)

// FuzzClassify runs arbitrary frames through the program with the default
// configuration, with every feature on, and on the ciphertext side with
// the clear-text discard. The program must never fail to run, never
// return anything but XDP_PASS or XDP_REDIRECT (or XDP_DROP, exactly when
// it counts an UnprotectedDropped or FailClosedDropped), count every frame exactly once, and
// redirect only where a socket is registered.
//
// The seed corpus is in testdata/fuzz/FuzzClassify plus the frames of the
// classification table; "go test" runs just those (as root). Fuzz with
//
//	go test -run '^$' -fuzz FuzzClassify -fuzztime 30s ./bpf/
func FuzzClassify(f *testing.F) {
	for _, c := range classifyCases() {
		f.Add(c.frame)
	}

	plain := loadTest(f, Options{})
	all := allFeatures
	all.NATTPort = DefaultNATTPort
	all.ProtectedPrefixes = append([]netip.Prefix{netip.PrefixFrom(protExact4, 32)}, all.ProtectedPrefixes...)
	full := loadTest(f, all)
	fd := xskSocket(f)
	fillQueue(f, full, 0, fd)
	unprot := loadTest(f, unprotOptions())
	fillQueue(f, unprot, 0, fd)

	f.Fuzz(func(t *testing.T, frame []byte) {
		if len(frame) < minTestFrame || len(frame) > maxTestFrame {
			t.Skip("the kernel refuses this size for a test run")
		}
		for _, tc := range []struct {
			name     string
			p        *Program
			canRedir bool
		}{
			{"default, no sockets", plain, false},
			{"all features, sockets", full, true},
			{"clear-text discard, sockets", unprot, true},
		} {
			v, s, err := tryRun(tc.p, &ebpf.RunOptions{Data: frame})
			if err != nil {
				t.Fatalf("%s: %v", tc.name, err)
			}
			switch {
			case v == VerdictRedirect && !tc.canRedir:
				t.Errorf("%s: XDP_REDIRECT with an empty XSKMAP", tc.name)
			case (v == VerdictDrop) != (s.UnprotectedDropped+s.FailClosedDropped == 1):
				t.Errorf("%s: verdict %v but counters %+v", tc.name, v, s)
			case v != VerdictPass && v != VerdictRedirect && v != VerdictDrop:
				t.Errorf("%s: verdict %v", tc.name, v)
			}
			if s.Total() != 1 {
				t.Errorf("%s: counted %d times: %+v", tc.name, s.Total(), s)
			}
			if (v == VerdictRedirect) != (s.Redirected() == 1) {
				t.Errorf("%s: verdict %v but counters %+v", tc.name, v, s)
			}
		}
	})
}

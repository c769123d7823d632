package main

import (
	"io"
	"testing"
)

// TestRun runs the example end to end on loopback for a few transforms
// and checks the counters on both sides against what was sent.
func TestRun(t *testing.T) {
	for _, tr := range []string{"aes256gcm16", "aes128-sha256", "chacha20poly1305"} {
		t.Run(tr, func(t *testing.T) {
			const n = 300
			res, err := run(io.Discard, n, tr)
			if err != nil {
				t.Fatal(err)
			}
			if res.Sent != n || res.Echoed != n {
				t.Fatalf("sent %d, echoed %d, want %d", res.Sent, res.Echoed, n)
			}
			for _, c := range []struct {
				name string
				got  uint64
			}{
				{"alice encaps", res.AliceOut.EncapsPkts},
				{"bob decaps", res.BobIn.DecapsPkts},
				{"bob encaps", res.BobOut.EncapsPkts},
				{"alice decaps", res.AliceIn.DecapsPkts},
			} {
				if c.got != n {
					t.Errorf("%s = %d, want %d", c.name, c.got, n)
				}
			}
			if res.ReplayDrops != 1 || res.AuthDrop != 1 {
				t.Errorf("replay drops %d, auth failures %d; want 1 and 1", res.ReplayDrops, res.AuthDrop)
			}
		})
	}
}

func TestRunRejectsUnknownTransform(t *testing.T) {
	if _, err := run(io.Discard, 1, "rot13"); err == nil {
		t.Fatal("want an error for an unknown transform")
	}
}

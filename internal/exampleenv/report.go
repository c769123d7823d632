package exampleenv

import (
	"crypto/rand"
	"fmt"
	"io"

	"github.com/espxdp/espxdp/esp"
	"github.com/espxdp/espxdp/sa"
	"github.com/espxdp/espxdp/xdp"
)

// Agreement prints lines "WHAT  A  B  ok" (or MISMATCH) to W, WHAT
// padded to Width: the counters of two ends side by side.
type Agreement struct {
	W     io.Writer
	Width int
}

// Print prints one line.
func (a Agreement) Print(what string, x, y uint64) {
	verdict := "ok"
	if x != y {
		verdict = "MISMATCH"
	}
	fmt.Fprintf(a.W, "  %-*s %8d %8d  %s\n", a.Width, what, x, y, verdict)
}

// ManualKeys returns the keys of the two directions of a tunnel
// between gwA and gwB, named "gwA-to-gwB" (SPI spiAB) and "gwB-to-gwA"
// (SPI spiBA): sa.Configs with the name, SPI and transform, random keys
// and ESN on. This is manual keying, standing in for an IKE exchange:
// both gateways use the same Configs, completed with direction, mode
// and addresses. wipe clears the keys.
func ManualKeys(tr esp.Transform, spiAB, spiBA uint32) (ab, ba sa.Config, wipe func()) {
	keys := func(name string, spi uint32) sa.Config {
		key := make([]byte, tr.KeyLen())
		auth := make([]byte, tr.AuthKeyLen())
		rand.Read(key)
		rand.Read(auth)
		return sa.Config{Name: name, SPI: spi, Transform: tr, Key: key, AuthKey: auth, ESN: true}
	}
	ab, ba = keys("gwA-to-gwB", spiAB), keys("gwB-to-gwA", spiBA)
	return ab, ba, func() {
		for _, c := range []sa.Config{ab, ba} {
			clear(c.Key)
			clear(c.AuthKey)
		}
	}
}

// SumWorkers sums the engine workers' packet counters.
func SumWorkers(st xdp.EngineStats) xdp.EngineWorkerStats {
	var s xdp.EngineWorkerStats
	for _, w := range st.Workers {
		s.CipherRX += w.CipherRX
		s.Decrypted += w.Decrypted
		s.Encrypted += w.Encrypted
		s.SADrops += w.SADrops
		s.MTUDrops += w.MTUDrops
		s.TXFull += w.TXFull
		s.Sent += w.Sent
		s.SendFull += w.SendFull
	}
	return s
}

package xdp

import (
	"net"
	"net/netip"
	"testing"

	"github.com/espxdp/espxdp/sa"
)

// TestEngineFramesDefault: an engine's UMEM holds every socket's fill,
// RX and TX ring at once unless configured otherwise, with the ring
// sizes configured. With 4096 frames
// for two sockets of 2048-entry rings, a burst that filled one side's RX
// ring left the other's fill ring short, and the kernel dropped packets
// for want of a frame (RxFillRingEmptyDescs).
func TestEngineFramesDefault(t *testing.T) {
	proc, err := sa.NewProcessor(sa.ProcessorOptions{Workers: 2, SAD: sa.NewSAD(sa.SADOptions{})})
	if err != nil {
		t.Fatal(err)
	}
	mac := net.HardwareAddr{2, 0, 0, 0, 0, 1}
	base := EngineConfig{Processor: proc, Cipher: Port{Name: "c", NextHop: mac}}
	for _, tc := range []struct {
		name  string
		cfg   func(c *EngineConfig)
		wantN int
	}{
		{"two ports", func(c *EngineConfig) {
			c.Plain = &Port{Name: "p", NextHop: mac}
			c.ProtectedPrefixes = []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")}
		}, 2 * (EngineFillSize + EngineRXSize + EngineTXSize)},
		{"deliver, two queues, one worker each", func(c *EngineConfig) {
			c.Deliver = func([][]byte) {}
			c.Queues, c.Steering = 2, SteerQueue
		}, 2 * (EngineFillSize + EngineRXSize + EngineTXSize)},
		{"deliver, two queues, two workers on each", func(c *EngineConfig) {
			// Spread: 2 fill rings, 4 RX rings (a socket per worker and
			// queue), 2 TX rings.
			c.Deliver = func([][]byte) {}
			c.Queues = 2
		}, 2*EngineFillSize + 4*EngineRXSize + 2*EngineTXSize},
		{"deliver, one queue, two workers", func(c *EngineConfig) {
			c.Deliver = func([][]byte) {}
			c.Workers = 2
		}, EngineFillSize + 2*EngineRXSize + 2*EngineTXSize},
		{"ring sizes", func(c *EngineConfig) {
			c.Deliver = func([][]byte) {}
			c.RXSize, c.TXSize = 8192, 1024
		}, EngineFillSize + 8192 + 1024},
		{"explicit", func(c *EngineConfig) {
			c.Deliver = func([][]byte) {}
			c.UMEM = UMEMConfig{NumFrames: 2048, FillSize: 512}
		}, 2048},
		{"small fill ring", func(c *EngineConfig) {
			c.Deliver = func([][]byte) {}
			c.UMEM = UMEMConfig{FillSize: 64}
		}, 64 + EngineRXSize + EngineTXSize},
	} {
		c := base
		tc.cfg(&c)
		n, err := c.normalize()
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		if n.UMEM.NumFrames != tc.wantN {
			t.Errorf("%s: NumFrames %d, want %d", tc.name, n.UMEM.NumFrames, tc.wantN)
		}
	}
}

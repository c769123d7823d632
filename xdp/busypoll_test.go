package xdp

import (
	"errors"
	"net"
	"testing"

	"github.com/espxdp/espxdp/sa"
)

// TestBusyPollValidate: BusyPoll and the engine's ring sizes are checked
// before anything is opened; out-of-range values are ErrInvalidConfig.
func TestBusyPollValidate(t *testing.T) {
	for _, tc := range []struct {
		b  BusyPoll
		ok bool
	}{
		{BusyPoll{}, true},
		{BusyPoll{Usecs: 20, Budget: 64, Prefer: true}, true},
		{BusyPoll{Usecs: MaxBusyPollUsecs}, true},
		{BusyPoll{Usecs: -1}, false},
		{BusyPoll{Usecs: MaxBusyPollUsecs + 1}, false},
		{BusyPoll{Usecs: 20, Budget: -1}, false},
		{BusyPoll{Usecs: 20, Budget: MaxBusyPollBudget + 1}, false},
	} {
		err := tc.b.validate()
		if (err == nil) != tc.ok || (err != nil && !errors.Is(err, ErrInvalidConfig)) {
			t.Errorf("%+v: validate() = %v, want ok %v", tc.b, err, tc.ok)
		}
		_, err = SocketConfig{Ifindex: 1, BusyPoll: tc.b}.normalize()
		if (err == nil) != tc.ok {
			t.Errorf("%+v: SocketConfig.normalize() = %v, want ok %v", tc.b, err, tc.ok)
		}
	}
	if (BusyPoll{Budget: 8, Prefer: true}).Enabled() {
		t.Error("BusyPoll without Usecs is enabled")
	}
}

// TestEngineTuningConfig: the engine fills in its ring defaults, passes
// ring sizes and busy polling to every socket, and refuses ring sizes
// that are not powers of two.
func TestEngineTuningConfig(t *testing.T) {
	proc, err := sa.NewProcessor(sa.ProcessorOptions{SAD: sa.NewSAD(sa.SADOptions{})})
	if err != nil {
		t.Fatal(err)
	}
	base := EngineConfig{Processor: proc, Cipher: Port{Name: "c", NextHop: net.HardwareAddr{2, 0, 0, 0, 0, 1}},
		Deliver: func([][]byte) {}}
	c, err := base.normalize()
	if err != nil {
		t.Fatal(err)
	}
	if c.RXSize != EngineRXSize || c.TXSize != EngineTXSize || c.UMEM.FillSize != EngineFillSize || c.UMEM.CompletionSize != EngineTXSize {
		t.Errorf("defaults: RX %d TX %d fill %d completion %d", c.RXSize, c.TXSize, c.UMEM.FillSize, c.UMEM.CompletionSize)
	}
	small := base
	small.UMEM.NumFrames = DefaultRingSize
	if c, err := small.normalize(); err != nil || c.UMEM.FillSize != DefaultRingSize {
		t.Errorf("UMEM of %d frames: fill ring %d, %v", DefaultRingSize, c.UMEM.FillSize, err)
	}
	tuned := base
	tuned.RXSize, tuned.TXSize, tuned.BusyPoll = 1024, 512, BusyPoll{Usecs: 50, Budget: 32, Prefer: true}
	if c, err = tuned.normalize(); err != nil {
		t.Fatal(err)
	}
	sc := c.socketConfig(3, 1)
	if sc.RXSize != 1024 || sc.TXSize != 512 || sc.BusyPoll != tuned.BusyPoll || sc.Ifindex != 3 || sc.Queue != 1 {
		t.Errorf("socketConfig = %+v", sc)
	}
	if _, err := sc.normalize(); err != nil {
		t.Errorf("engine's socket configuration invalid: %v", err)
	}
	for _, bad := range []func(*EngineConfig){
		func(c *EngineConfig) { c.RXSize = 3000 },
		func(c *EngineConfig) { c.TXSize = -2 },
		func(c *EngineConfig) { c.RXSize = 2 * MaxRingSize },
		func(c *EngineConfig) { c.BusyPoll.Usecs = -5 },
	} {
		c := base
		bad(&c)
		if _, err := c.normalize(); !errors.Is(err, ErrInvalidConfig) {
			t.Errorf("%+v: normalize() = %v, want ErrInvalidConfig", c, err)
		}
	}
}

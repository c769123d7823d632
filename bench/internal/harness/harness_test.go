package harness

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"strings"
	"testing"
	"time"

	"github.com/espxdp/espxdp/esp"
	"github.com/espxdp/espxdp/sa"
)

func TestMedian(t *testing.T) {
	for _, c := range []struct {
		in   []float64
		want float64
	}{{nil, 0}, {[]float64{5}, 5}, {[]float64{3, 1, 2}, 2}, {[]float64{4, 1, 3, 2}, 2.5}, {[]float64{100, 1, 1, 1, 1000}, 1}} {
		if got := median(append([]float64(nil), c.in...)); got != c.want {
			t.Errorf("median(%v) = %v, want %v", c.in, got, c.want)
		}
	}
}

func TestParseCPUInfo(t *testing.T) {
	info := "processor\t: 0\nvendor_id\t: GenuineIntel\nmodel name\t: Some CPU @ 3GHz\nflags\t\t: fpu sse aes pclmulqdq avx2 sha_ni adx\n\nprocessor\t: 1\nmodel name\t: Other\nflags\t: vaes\n"
	model, flags := parseCPUInfo(bufio.NewScanner(strings.NewReader(info)))
	if model != "Some CPU @ 3GHz" {
		t.Errorf("model %q", model)
	}
	if got := strings.Join(flags, " "); got != "aes pclmulqdq avx2 sha_ni adx" {
		t.Errorf("flags %q", got)
	}
	model, flags = parseCPUInfo(bufio.NewScanner(strings.NewReader("garbage\n")))
	if model != "unknown" || len(flags) != 0 {
		t.Errorf("empty cpuinfo: %q %v", model, flags)
	}
}

func TestDescribeMachine(t *testing.T) {
	m := DescribeMachine()
	if m.Cores < 1 || m.GOMAXPROCS < 1 || m.GoVersion == "" || m.Commit == "" {
		t.Errorf("%+v", m)
	}
	if _, err := time.Parse(time.RFC3339, m.Date); err != nil {
		t.Errorf("date %q: %v", m.Date, err)
	}
}

func TestValidate(t *testing.T) {
	good := Config{Suites: []string{"crypto", "sa"}, Sizes: []int{64}, Transforms: []string{"aes128gcm16"}, DurationNs: 1, Workers: []int{1}, SAs: []int{1}}
	if err := good.Validate(); err != nil {
		t.Fatal(err)
	}
	for name, mod := range map[string]func(*Config){
		"no suite":      func(c *Config) { c.Suites = nil },
		"bad suite":     func(c *Config) { c.Suites = []string{"xdp"} },
		"bad transform": func(c *Config) { c.Transforms = []string{"rot13"} },
		"size 0":        func(c *Config) { c.Sizes = []int{0} },
		"workers 0":     func(c *Config) { c.Workers = []int{0} },
		"sas 0":         func(c *Config) { c.SAs = []int{0} },
		"duration":      func(c *Config) { c.DurationNs = 0 },
	} {
		c := good
		mod(&c)
		if err := c.Validate(); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

// TestRawBaselines checks that every baseline's Open accepts what its
// Seal produced and rejects a flipped bit, and that the transforms
// without one get none.
func TestRawBaselines(t *testing.T) {
	for _, name := range esp.TransformNames() {
		tr := esp.MustParseTransform(name)
		r, err := newRaw(tr, 1)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		noBase := strings.Contains(name, "ctr") || strings.HasPrefix(name, "3des") || strings.HasPrefix(name, "null")
		if noBase != (r == nil) {
			t.Errorf("%s: baseline %v, want none=%v", name, r != nil, noBase)
			continue
		}
		if r == nil {
			continue
		}
		k, a := keys(tr, 1)
		c, err := esp.New(esp.Config{Transform: tr, Key: k, AuthKey: a})
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		side, err := rawSide(r, c, 100, 4, 1)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if d := side.open(4); d <= 0 {
			t.Errorf("%s: open took %v", name, d)
		}
		body := 100 + c.Overhead(100) - c.HeaderLen() - tr.ICVLen()
		pkt := payloadBuf(100, 1)[esp.MaxHeadroom-r.hdrLen() : esp.MaxHeadroom+body+r.icvLen()]
		r.seal(pkt, 9)
		good := append([]byte(nil), pkt...)
		if !r.open(pkt, 9) {
			t.Errorf("%s: baseline rejects its own packet", name)
		}
		copy(pkt, good)
		pkt[len(pkt)-1] ^= 1
		if r.open(pkt, 9) {
			t.Errorf("%s: baseline accepts a corrupted ICV", name)
		}
	}
}

func TestCrypto(t *testing.T) {
	rs, err := Crypto("aes128gcm16", 64, time.Millisecond, 1)
	if err != nil {
		t.Fatal(err)
	}
	if len(rs) != 2 || rs[0].Op != "seal" || rs[1].Op != "open" {
		t.Fatalf("%+v", rs)
	}
	for _, r := range rs {
		for _, n := range []string{"ns/pkt", "raw-ns/pkt", "x-raw", "MB/s"} {
			if v, ok := r.Get(n); !ok || v <= 0 {
				t.Errorf("%s %s = %v %v", r.Op, n, v, ok)
			}
		}
		if v, _ := r.Get("allocs/op"); v != 0 {
			t.Errorf("%s allocates %v per packet", r.Op, v)
		}
	}
	if _, err := Crypto("nope", 64, time.Millisecond, 1); err == nil {
		t.Error("unknown transform accepted")
	}
}

func TestInnerPacket(t *testing.T) {
	p := innerPacket(100, 3)
	if len(p) != 100 || p[0] != 0x45 || binary.BigEndian.Uint16(p[2:]) != 100 || p[9] != 17 {
		t.Fatalf("bad header % x", p[:28])
	}
	var s uint32
	for i := 0; i < 20; i += 2 {
		s += uint32(binary.BigEndian.Uint16(p[i:]))
	}
	for s>>16 != 0 {
		s = s&0xffff + s>>16
	}
	if s != 0xffff {
		t.Errorf("IPv4 header checksum does not verify: %#x", s)
	}
	if !bytes.Equal(p, innerPacket(100, 3)) || bytes.Equal(p[28:], innerPacket(100, 4)[28:]) {
		t.Error("payload is not a function of the seed")
	}
}

func TestSASuite(t *testing.T) {
	if _, err := Lookup(0, time.Millisecond, 1); err == nil {
		t.Error("Lookup with 0 SAs accepted")
	}
	r, err := Lookup(50, time.Millisecond, 1)
	if v, ok := r.Get("ns/op"); err != nil || !ok || v <= 0 {
		t.Errorf("Lookup: %v %v %v", v, ok, err)
	}
	rp, err := Replay(time.Millisecond)
	if err != nil || len(rp) != 2 {
		t.Fatalf("Replay: %v %v", rp, err)
	}
	ve, err := VsESP("aes128gcm16", 1420, time.Millisecond, 1)
	if v, ok := ve.Get("x-esp"); err != nil || !ok || v <= 0 {
		t.Errorf("VsESP: %v %v %v", v, ok, err)
	}
	if v, _ := ve.Get("allocs/op"); v != 0 {
		t.Errorf("processor allocates %v per packet", v)
	}
	if _, err := Skew(sa.Sharded, "zipf", 2, 4, 200, time.Millisecond, 1); err == nil {
		t.Error("unknown distribution accepted")
	}
	// Sharded elephant: exactly one worker busy; uniform over 16 SAs on
	// 2 workers: both (the SPI hash spreads 16 SAs over 2 workers).
	el, err := Skew(sa.Sharded, "elephant", 2, 16, 200, 2*time.Millisecond, 1)
	if err != nil {
		t.Fatal(err)
	}
	un, err := Skew(sa.Sharded, "uniform", 2, 16, 200, 2*time.Millisecond, 1)
	if err != nil {
		t.Fatal(err)
	}
	if b, _ := el.Get("busy-workers"); b != 1 {
		t.Errorf("elephant: %v busy workers", b)
	}
	if b, _ := un.Get("busy-workers"); b != 2 {
		t.Errorf("uniform: %v busy workers", b)
	}
	for _, m := range []sa.Concurrency{sa.Shared, sa.Sharded, sa.PerCPU} {
		r, err := Modes(m, 2, 200, 2*time.Millisecond, 1)
		if err != nil {
			t.Fatalf("%v: %v", m, err)
		}
		if v, ok := r.Get("packets"); !ok || v <= 0 {
			t.Errorf("%v: %v packets", m, v)
		}
		if v, _ := r.Get("drops"); m != sa.Shared && v != 0 {
			t.Errorf("%v: %v drops without sharing", m, v)
		}
	}
}

func TestAllocsPer(t *testing.T) {
	var sink []byte
	if got := allocsPer(100, func() { sink = make([]byte, 64+len(sink)%2) }); got != 1 {
		t.Errorf("one allocation per call counted as %v", got)
	}
	x := 0
	if got := allocsPer(100, func() { x++ }); got != 0 {
		t.Errorf("no allocation counted as %v", got)
	}
	_ = sink
}

// TestRunWorkersLateStart: a worker that the scheduler starts only after
// the time budget passed (here: a budget of zero, over before any
// goroutine runs) still processes a few batches, so no modes row of a
// loaded machine reports zero packets.
func TestRunWorkersLateStart(t *testing.T) {
	for _, mode := range []sa.Concurrency{sa.Shared, sa.Sharded} {
		r, err := newModeRig(mode, 2, 1, 1)
		if mode == sa.Sharded {
			r, err = newPinnedRig(2, 1)
		}
		if err != nil {
			t.Fatal(err)
		}
		for range 20 {
			o := r.runWorkers(allWorkers(2), innerPacket(64, 1), 0, nil)
			if o.ok+o.drops < 8*batchLen || o.drops != 0 {
				t.Fatalf("%v: budget 0: %d packets, %d drops; want at least %d packets, no drops", mode, o.ok, o.drops, 8*batchLen)
			}
		}
	}
}

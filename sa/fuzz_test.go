package sa

import (
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"testing"

	"github.com/espxdp/espxdp/esp"
)

// fuzzSAs are fixed-key SA pairs, so that corpus entries made by one run
// decrypt in another.
var fuzzSAs = []struct {
	transform string
	spi       uint32
	mod       func(*Config)
}{
	{"aes128gcm16", 0x101, nil},
	{"aes256-sha256", 0x102, func(c *Config) { c.ESN = true; c.ReplayWindow = 64 }},
	{"chacha20poly1305", 0x103, func(c *Config) { c.Mode = esp.Transport }},
	{"aes128gcm8", 0x104, func(c *Config) { c.UDPEncap = true }},
	{"null-sha1", 0x105, func(c *Config) {
		c.Selectors = []Selector{{Src: netip.MustParsePrefix("10.1.0.0/16")}}
	}},
	{"aes128gmac", 0x106, func(c *Config) { c.Local, c.Remote = gwA6, gwB6; c.ReplayWindow = ReplayDisabled }},
}

func fuzzPair(tb testing.TB, i int) (out, in Config) {
	f := fuzzSAs[i]
	oc, ic := pairCfg(f.transform, f.spi, f.mod)
	for j := range oc.Key {
		oc.Key[j] = byte(i*31 + j)
	}
	for j := range oc.AuthKey {
		oc.AuthKey[j] = byte(i*17 + j)
	}
	ic.Key, ic.AuthKey = oc.Key, oc.AuthKey
	return oc, ic
}

// fuzzReceiver builds a receiver with the inbound halves of fuzzSAs.
func fuzzReceiver(tb testing.TB, mode Concurrency) *Processor {
	sad := NewSAD(SADOptions{})
	for i := range fuzzSAs {
		_, ic := fuzzPair(tb, i)
		sad.Add(mustSA(tb, ic))
	}
	p, err := NewProcessor(ProcessorOptions{SAD: sad, Concurrency: mode, Workers: 1})
	if err != nil {
		tb.Fatal(err)
	}
	return p
}

// fuzzSeeds returns valid ESP packets of every fuzz SA plus control and
// broken packets.
func fuzzSeeds(tb testing.TB) [][]byte {
	var seeds [][]byte
	for i := range fuzzSAs {
		oc, _ := fuzzPair(tb, i)
		out := mustSA(tb, oc)
		sad := NewSAD(SADOptions{})
		sad.Add(out)
		tun := NewTunnel("f")
		tun.SetOutbound(out)
		p, _ := NewProcessor(ProcessorOptions{SAD: sad, Tunnel: tun})
		src, dst := hostA, hostB
		if oc.Mode == esp.Transport {
			src, dst = oc.Local, oc.Remote
		}
		for _, n := range []int{0, 40} {
			b := []Packet{packetFor(udpPacket(src, dst, 7, 9, n, 1))}
			p.Worker(0).Outbound(b)
			if b[0].Verdict != VerdictOK {
				tb.Fatalf("seed %s: %v", oc.Transform, b[0].Reason)
			}
			seeds = append(seeds, append([]byte(nil), b[0].Data()...))
		}
	}
	udp := func(pl ...byte) []byte {
		u := append([]byte{0x11, 0x94, 0x11, 0x94, 0, byte(8 + len(pl)), 0, 0}, pl...)
		return ipv4(gwA, gwB, 17, u)
	}
	seeds = append(seeds,
		udp(0, 0, 0, 0, 1, 2, 3, 4), // IKE
		udp(0xff),                   // keepalive
		udp(0, 0, 1, 1, 0, 0, 0, 1), // ESP-in-UDP, unknown SPI, truncated
		ipv4(gwA, gwB, 50, []byte{0, 0, 1, 1}),
		[]byte{0x60},
		nil,
	)
	return seeds
}

// TestWriteFuzzCorpus regenerates sa/testdata/fuzz/FuzzInbound when
// SA_WRITE_CORPUS=1.
func TestWriteFuzzCorpus(t *testing.T) {
	if os.Getenv("SA_WRITE_CORPUS") == "" {
		t.Skip("set SA_WRITE_CORPUS=1 to rewrite the seed corpus")
	}
	dir := filepath.Join("testdata", "fuzz", "FuzzInbound")
	os.MkdirAll(dir, 0o755)
	for i, s := range fuzzSeeds(t) {
		body := fmt.Sprintf("go test fuzz v1\n[]byte(%q)\n", s)
		if err := os.WriteFile(filepath.Join(dir, fmt.Sprintf("seed%02d", i)), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// TestFuzzSeedsDecrypt makes sure the valid seeds do decrypt, so the
// fuzzer starts from packets that reach the deep paths.
func TestFuzzSeedsDecrypt(t *testing.T) {
	p := fuzzReceiver(t, Shared)
	ok := 0
	for _, s := range fuzzSeeds(t) {
		b := []Packet{packetFor(s)}
		p.Worker(0).Inbound(b)
		if b[0].Verdict == VerdictOK {
			ok++
		}
	}
	if ok != 2*len(fuzzSAs) {
		t.Fatalf("%d seeds decrypt, want %d", ok, 2*len(fuzzSAs))
	}
}

func FuzzInbound(f *testing.F) {
	for _, s := range fuzzSeeds(f) {
		f.Add(s)
	}
	p := fuzzReceiver(f, Shared)
	w := p.Worker(0)
	f.Fuzz(func(t *testing.T, data []byte) {
		// The packet, a truncated copy and a bit-flipped copy.
		mut := append([]byte(nil), data...)
		if len(mut) > 0 {
			mut[len(mut)-1] ^= 0x80
		}
		b := []Packet{packetFor(data), packetFor(data[:len(data)/2]), packetFor(mut)}
		w.Inbound(b)
		for i, q := range b {
			if q.Verdict == VerdictNone || q.Verdict == VerdictHandedOff {
				t.Fatalf("packet %d: verdict %v", i, q.Verdict)
			}
			if (q.Verdict == VerdictDrop) != (q.Reason != DropNone) {
				t.Fatalf("packet %d: verdict %v with reason %v", i, q.Verdict, q.Reason)
			}
			if q.Off < 0 || q.Len < 0 || q.Off+q.Len > len(q.Buf) {
				t.Fatalf("packet %d: result %d+%d outside a %d-byte buffer", i, q.Off, q.Len, len(q.Buf))
			}
			if q.Verdict == VerdictOK && (q.SA == nil || q.Data()[0]>>4 != 4 && q.Data()[0]>>4 != 6) {
				t.Fatalf("packet %d: OK without SA or IP result", i)
			}
		}
	})
}

func FuzzOutbound(f *testing.F) {
	f.Add(udpPacket(hostA, hostB, 1, 2, 10, 1))
	f.Add(udpPacket(host6, hst6B, 1, 2, 100, 1))
	f.Add([]byte{0x45})
	f.Add([]byte{0x60, 0, 0, 0, 0, 0, 0, 0})
	sad := NewSAD(SADOptions{})
	tuns := []*Tunnel{}
	for i := range fuzzSAs {
		oc, _ := fuzzPair(f, i)
		oc.PathMTU = 1400
		out := mustSA(f, oc)
		sad.Add(out)
		t := NewTunnel("f")
		t.SetOutbound(out)
		tuns = append(tuns, t)
	}
	spd := NewSPD(SPDOptions{})
	spd.Set([]*Policy{
		{Selector: Selector{Proto: 17, DstPorts: PortRange{53, 53}}, Action: Bypass},
		{Selector: Selector{Src: pfx("10.1.0.0/16")}, Action: Protect, Tunnel: tuns[0]},
		{Selector: Selector{Proto: 6}, Action: Discard},
	})
	p, _ := NewProcessor(ProcessorOptions{SAD: sad, SPD: spd})
	w := p.Worker(0)
	f.Fuzz(func(t *testing.T, data []byte) {
		b := make([]Packet, len(tuns)+1)
		for i := range b {
			b[i] = packetFor(data)
			if i < len(tuns) {
				b[i].Tunnel = tuns[i]
			}
		}
		// Also a packet with no room at all.
		b = append(b, Packet{Buf: append([]byte(nil), data...), Len: len(data), Tunnel: tuns[0]})
		w.Outbound(b)
		for i, q := range b {
			if q.Verdict == VerdictNone || (q.Verdict == VerdictDrop) != (q.Reason != DropNone) {
				t.Fatalf("packet %d: %v %v", i, q.Verdict, q.Reason)
			}
			if q.Off < 0 || q.Off+q.Len > len(q.Buf) {
				t.Fatalf("packet %d: result outside the buffer", i)
			}
			if q.Verdict == VerdictOK {
				var pp esp.Parsed
				if err := esp.ParseOuter(q.Data(), 0, &pp); err != nil {
					t.Fatalf("packet %d: output does not parse: %v", i, err)
				}
			}
		}
	})
}

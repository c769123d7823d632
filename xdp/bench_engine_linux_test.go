//go:build linux

package xdp

import (
	"fmt"
	"io"
	"testing"
	"time"

	"github.com/espxdp/espxdp/bpf"
	"github.com/espxdp/espxdp/esp"
	"github.com/espxdp/espxdp/internal/netns"
	"github.com/espxdp/espxdp/sa"
)

// BenchmarkEngine measures the engine end to end over veth, beside the
// Forwarder without crypto on the same interfaces in the same run:
//
//	forward  AF_XDP generator in nsC → Forwarder (c.A → p.A, one UMEM)
//	decrypt  generator in nsC sends ESP (AES-128-GCM, tunnel mode) →
//	         engine decrypts → plaintext out of p.A
//	encrypt  generator in nsP sends plaintext to the protected prefix →
//	         engine encrypts → ESP out of c.A
//
// size is the plaintext Ethernet frame (64, 512, 1420 bytes); the ESP
// frames of decrypt are larger by the ESP overhead. Reported: Mpps and
// Gbps (of plaintext frames) that left the engine, loss-% (sent by the
// generator, not processed), and x-forward, the ratio to the forwarder's
// Mpps at the same size. The inbound SA has anti-replay off, so the
// generator can send one ciphertext over and over; everything else is
// the full data path. allocs/op counts the whole process (generator,
// engine, counters read by the test) per packet. Bounded by b.N packets and 30 s of sending; run
// e.g. with -bench Engine -benchtime 200000x.
func BenchmarkEngine(b *testing.B) {
	requireNet(b)
	n := newEngNet(b)
	sizes := []int{64, 512, 1420}
	gC := newGenerator(b, n.c.B, 0, false)
	gP := newGenerator(b, n.p.B, 0, false)
	baseline := map[int]float64{}

	// Forwarder baseline on the same path.
	fw := benchForwarder(b, n)
	for _, size := range sizes {
		tmpl := ether(n.c.A.MAC, n.c.B.MAC, 0x0800, ipv4(n.pC, n.eC, 50, 1, espPayload(fwdMagic|9, 1, size-14-28)))
		gC.fillAll(tmpl)
		b.Run(fmt.Sprintf("forward/size=%d", size), func(b *testing.B) {
			baseline[size] = benchRun(b, gC, len(tmpl), size, 0, func() uint64 { return fw.Stats().TXPackets })
		})
	}
	if err := fw.Stop(); err != nil {
		b.Fatal(err)
	}

	tr := esp.MustParseTransform("aes128gcm16")
	newSA := func(cfg sa.Config) *sa.SA {
		cfg.Mode, cfg.Transform, cfg.Key = esp.Tunnel, tr, engKey
		s, err := sa.New(cfg)
		if err != nil {
			b.Fatal(err)
		}
		return s
	}
	in := newSA(sa.Config{SPI: spiIn, Direction: sa.In, Local: n.eC, Remote: n.pC, ReplayWindow: sa.ReplayDisabled})
	out := newSA(sa.Config{SPI: spiOut, Direction: sa.Out, Local: n.eC, Remote: n.pC})
	peerOut := newSA(sa.Config{SPI: spiIn, Direction: sa.Out, Local: n.pC, Remote: n.eC})
	sad, peerSAD := sa.NewSAD(sa.SADOptions{}), sa.NewSAD(sa.SADOptions{})
	sad.Add(in)
	sad.Add(out)
	peerSAD.Add(peerOut)
	tun, peerTun := sa.NewTunnel("peer"), sa.NewTunnel("engine")
	tun.SetOutbound(out)
	peerTun.SetOutbound(peerOut)
	proc, err := sa.NewProcessor(sa.ProcessorOptions{SAD: sad, Tunnel: tun})
	if err != nil {
		b.Fatal(err)
	}
	peer, err := sa.NewProcessor(sa.ProcessorOptions{SAD: peerSAD, Tunnel: peerTun})
	if err != nil {
		b.Fatal(err)
	}
	cfg := n.config(&engSAs{proc: proc})
	cfg.UMEM = UMEMConfig{}
	e := startEngine(b, n, cfg)
	worker := func() EngineWorkerStats { return e.Stats().Workers[0] }

	for _, size := range sizes {
		inner := innerUDP(n.remote, n.pP, 1, size-14-28)
		pkt := []sa.Packet{{Buf: make([]byte, esp.MaxHeadroom+len(inner)+esp.MaxTailroom), Off: esp.MaxHeadroom, Len: len(inner)}}
		copy(pkt[0].Buf[esp.MaxHeadroom:], inner)
		peer.Worker(0).Outbound(pkt)
		if pkt[0].Verdict != sa.VerdictOK {
			b.Fatalf("peer encrypt: %v %v", pkt[0].Verdict, pkt[0].Reason)
		}
		tmpl := ether(n.c.A.MAC, n.c.B.MAC, 0x0800, pkt[0].Data())
		gC.fillAll(tmpl)
		b.Run(fmt.Sprintf("decrypt/size=%d", size), func(b *testing.B) {
			benchRun(b, gC, len(tmpl), size, baseline[size], func() uint64 { return worker().Decrypted })
		})
	}
	for _, size := range sizes {
		tmpl := ether(n.p.A.MAC, n.p.B.MAC, 0x0800, innerUDP(n.pP, n.remote, 1, size-14-28))
		gP.fillAll(tmpl)
		b.Run(fmt.Sprintf("encrypt/size=%d", size), func(b *testing.B) {
			benchRun(b, gP, len(tmpl), size, baseline[size], func() uint64 { return worker().Encrypted })
		})
	}
	if d := worker().SADrops; d != 0 {
		b.Errorf("engine dropped %d packets in the SA processor: %+v", d, e.Stats().Processor)
	}
}

// benchForwarder runs a Forwarder from c.A to p.A of n on one UMEM.
func benchForwarder(b *testing.B, n *engNet) *Forwarder {
	prog, err := bpf.Load(bpf.Options{Queues: 1})
	if err != nil {
		b.Fatal(err)
	}
	att := attach(b, prog, n.c.A)
	u, err := NewUMEM(UMEMConfig{})
	if err != nil {
		b.Fatal(err)
	}
	in, err := tryOpenSocket(n.nsE, u, SocketConfig{Ifindex: n.c.A.Index, TXSize: -1})
	if err != nil {
		b.Fatal(err)
	}
	out, err := tryOpenSocket(n.nsE, u, SocketConfig{Ifindex: n.p.A.Index, RXSize: -1})
	if err != nil {
		b.Fatal(err)
	}
	register(b, prog, 0, in)
	fw, err := NewForwarder(ForwarderConfig{In: in, Out: out, Detach: []io.Closer{att, prog}})
	if err != nil {
		b.Fatal(err)
	}
	if err := fw.Start(); err != nil {
		b.Fatal(err)
	}
	return fw
}

// benchRun sends b.N frames of length wire from g and reports how fast
// counter grew: the packets the forwarder or engine put out.
func benchRun(b *testing.B, g *generator, wire, size int, base float64, counter func() uint64) float64 {
	c0 := counter()
	b.ReportAllocs() // process-wide: the generator, the engine and the test
	b.ResetTimer()
	start := time.Now()
	sent := g.send(b.N, wire, 30*time.Second, nil)
	last, lastChange := counter(), time.Now()
	netns.WaitFor(5*time.Second, func() bool {
		c := counter()
		if c != last {
			last, lastChange = c, time.Now()
		}
		return c-c0 >= uint64(sent) || time.Since(lastChange) > 100*time.Millisecond
	})
	b.StopTimer()
	done := last - c0
	pps := float64(done) / lastChange.Sub(start).Seconds()
	b.ReportMetric(pps/1e6, "Mpps")
	b.ReportMetric(pps*float64(size)*8/1e9, "Gbps")
	loss := 0.0
	if sent > 0 && done < uint64(sent) {
		loss = 100 * float64(uint64(sent)-done) / float64(sent)
	}
	b.ReportMetric(loss, "loss-%")
	if base > 0 {
		b.ReportMetric(pps/base, "x-forward")
	}
	return pps
}

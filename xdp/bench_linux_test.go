//go:build linux

package xdp

import (
	"fmt"
	"testing"
	"time"

	"github.com/espxdp/espxdp/internal/netns"
)

// BenchmarkForward measures the Forwarder without crypto (the AF_XDP
// I/O ceiling) over veth: an AF_XDP generator in ns1 sends b.N ESP
// frames of each size; the forwarder in nsF hands them over (one UMEM)
// or copies them (two UMEMs) to the veth towards ns2. Reported:
//
//	Mpps      packets the forwarder transmitted per second
//	gen-Mpps  packets the generator sent per second
//	loss-%    packets sent but not received by ns2's interface
//	xsk-drop-% packets the kernel dropped at the forwarder's RX socket
//	          (RX ring full or no frame on the fill ring)
//
// Every run is bounded by b.N packets and 30 s of sending. Run it with
// e.g. -bench Forward -benchtime 200000x; on a shared 2-core machine the
// generator, the forwarder and the veth softirqs compete for the CPUs.
func BenchmarkForward(b *testing.B) {
	requireNet(b)
	f := newFwdNet(b)
	g := newGenerator(b, f.a.A, 0, false)
	for _, shared := range []bool{true, false} {
		s := newForwarder(b, f, shared, nil)
		s.start(b)
		mode := "copy"
		if shared {
			mode = "handover"
		}
		for _, size := range []int{64, 512, 1420} {
			template := ether(f.a.B.MAC, f.a.A.MAC, 0x0800,
				ipv4(f.src, f.dst, 50, 1, espPayload(fwdMagic|9, 1, size-14-28)))
			g.fillAll(template)
			b.Run(fmt.Sprintf("%s/size=%d", mode, size), func(b *testing.B) {
				rx0, fw0, in0 := rxPackets(b, f.b.B), s.fw.Stats(), socketStats(b, s.in)
				b.ResetTimer()
				start := time.Now()
				sent := g.send(b.N, size, 30*time.Second, nil)
				genTime := time.Since(start)
				// Wait (bounded) until the forwarder has sent everything it
				// took: the run ends at its last transmission.
				last, lastChange := s.fw.Stats().TXPackets, time.Now()
				netns.WaitFor(5*time.Second, func() bool {
					st := s.fw.Stats()
					if st.TXPackets != last {
						last, lastChange = st.TXPackets, time.Now()
					}
					return st.RXPackets-fw0.RXPackets >= uint64(sent) && st.TXPackets == st.RXPackets ||
						time.Since(lastChange) > 100*time.Millisecond
				})
				st := s.fw.Stats()
				fwdTime := lastChange.Sub(start)
				b.StopTimer()
				got := rxPackets(b, f.b.B) - rx0
				in := socketStats(b, s.in).Kernel
				xskDrops := in.RxDropped + in.RxRingFull - in0.Kernel.RxDropped - in0.Kernel.RxRingFull
				tx := st.TXPackets - fw0.TXPackets
				b.ReportMetric(float64(tx)/fwdTime.Seconds()/1e6, "Mpps")
				b.ReportMetric(float64(sent)/genTime.Seconds()/1e6, "gen-Mpps")
				loss := 0.0
				if sent > 0 && got < uint64(sent) {
					loss = 100 * float64(uint64(sent)-got) / float64(sent)
				}
				b.ReportMetric(loss, "loss-%")
				b.ReportMetric(100*float64(xskDrops)/float64(max(sent, 1)), "xsk-drop-%")
			})
		}
		if err := s.fw.Stop(); err != nil {
			b.Fatal(err)
		}
	}
}

func socketStats(t testing.TB, s *Socket) Stats {
	t.Helper()
	st, err := s.Stats()
	if err != nil {
		t.Fatal(err)
	}
	return st
}

//go:build linux

package xdp

import (
	"bytes"
	"encoding/binary"
	"net/netip"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/espxdp/espxdp/esp"
	"github.com/espxdp/espxdp/internal/race"
	"github.com/espxdp/espxdp/sa"
)

// portPair is an offloadPair whose devices are TUNPorts on one UMEM:
// worker 0 of each port carries A → B (a's Receive, b's Transmit),
// worker 1 B → A, so each worker index of a port is used by one
// goroutine, as the engine does.
type portPair struct {
	*offloadPair
	u      *UMEM
	pa, pb *TUNPort
}

func newPortPair(t testing.TB, v6 bool) *portPair {
	t.Helper()
	p := &portPair{offloadPair: newOffloadPair(t, v6)}
	u, err := NewUMEM(UMEMConfig{NumFrames: 4096})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { u.Close() })
	p.u = u
	env := PortEnv{UMEM: u, Workers: 2, BatchSize: DefaultBatch, Headroom: esp.MaxHeadroom, Tailroom: esp.MaxTailroom}
	for _, x := range []struct {
		tun  *TUN
		port **TUNPort
	}{{p.tunA, &p.pa}, {p.tunB, &p.pb}} {
		port, err := NewTUNPort([]*TUN{x.tun})
		if err != nil {
			t.Fatal(err)
		}
		if err := port.Bind(env); err != nil {
			t.Fatal(err)
		}
		*x.port = port
	}
	return p
}

// pumpStep moves what src's worker w has to dst (worker w), first
// waiting up to wait for src's queue to become readable when it has
// nothing; it returns how many packets it moved.
func pumpStep(src, dst *TUNPort, w int, pkts []sa.Packet, wait time.Duration) int {
	k := src.Receive(w, pkts)
	if k == 0 && wait > 0 {
		fds := []unix.PollFd{{Fd: int32(src.q[w].fd), Events: unix.POLLIN}}
		unix.Poll(fds, int(wait/time.Millisecond))
		k = src.Receive(w, pkts)
	}
	if k > 0 {
		dst.Transmit(w, pkts[:k])
	}
	return k
}

// forward runs both directions until the test ends.
func (p *portPair) forward(t testing.TB) {
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for w, d := range [][2]*TUNPort{{p.pa, p.pb}, {p.pb, p.pa}} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			pkts := make([]sa.Packet, DefaultBatch)
			for {
				select {
				case <-stop:
					return
				default:
				}
				pumpStep(d[0], d[1], w, pkts, 10*time.Millisecond)
			}
		}()
	}
	t.Cleanup(func() {
		close(stop)
		wg.Wait()
	})
}

// TestTUNPortForward: TCP (checked byte for byte: the splitter's and the
// coalescer's checksums, sequence numbers and lengths are the kernel's
// to judge) and UDP (single datagrams and a UDP GSO burst) cross two
// offload TUNs joined only by TUNPort Receive and Transmit, over IPv4
// and IPv6 inside; the sender's super-packets are split into UMEM
// frames and written back coalesced with writev(2).
func TestTUNPortForward(t *testing.T) {
	forEachFamily(t, func(t *testing.T, v6 bool) {
		p := newPortPair(t, v6)
		p.forward(t)
		p.transferBoth(t, 5211)
		pa, pb := p.pa.Stats(), p.pb.Stats()
		if pa.Drops+pb.Drops != 0 || pa.RX == 0 || pb.RX == 0 {
			t.Errorf("port counters: A %+v B %+v", pa, pb)
		}
		// Every frame goes back to the UMEM (the pumps may hold a
		// late ACK's for a moment).
		for deadline := time.Now().Add(time.Second); ; time.Sleep(time.Millisecond) {
			if c := p.u.Counts(); c.Free == c.Total {
				break
			} else if time.Now().After(deadline) {
				t.Errorf("frames not all free after the transfer: %+v", c)
				break
			}
		}
	})
}

// withID sets the IPv4 packet p's ID (a sender's consecutive segments
// have consecutive IDs, which the coalescer requires) and its header
// checksum.
func withID(p []byte, id uint16) []byte {
	binary.BigEndian.PutUint16(p[4:], id)
	p[10], p[11] = 0, 0
	binary.BigEndian.PutUint16(p[10:], csum(p[:20]))
	return p
}

// framesOf copies each of raw into a UMEM frame, as a worker's decrypted
// packets lie.
func framesOf(t testing.TB, u *UMEM, raw [][]byte) []sa.Packet {
	t.Helper()
	env := PortEnv{UMEM: u, Headroom: esp.MaxHeadroom, Tailroom: esp.MaxTailroom}
	pkts := make([]sa.Packet, len(raw))
	if k := env.Alloc(pkts); k != len(raw) {
		t.Fatalf("%d frames of %d", k, len(raw))
	}
	for i, r := range raw {
		pkts[i].Len = copy(pkts[i].Buf[pkts[i].Off:], r)
	}
	return pkts
}

// TestTUNPortKeepsBadChecksums: the invariant of the write path (a
// segment whose TCP checksum is wrong never joins a super-packet, whose
// checksum the kernel would compute afresh, and is written alone and
// unmarked) seen from the kernel: random batches of consecutive
// segments with a random subset corrupted; the receiving stack's
// InCsumErrors grows by exactly the number corrupted.
func TestTUNPortKeepsBadChecksums(t *testing.T) {
	p := newPortPair(t, false)
	p.checkBadChecksums(t, 5, 32, func(raw [][]byte) { p.pa.Transmit(1, framesOf(t, p.u, raw)) })
	if s := p.tunA.Stats(); s.WriteErrors != 0 {
		t.Errorf("write errors: %+v", s)
	}
}

// TestTUNPortAlloc: Transmit (coalescing, writev) and Receive (read,
// split into frames) allocate nothing, measured on a TCP transfer's
// packets.
func TestTUNPortAlloc(t *testing.T) {
	if race.Enabled {
		t.Skip("allocation counts are meaningless under the race detector")
	}
	p := newPortPair(t, false)
	src := netip.MustParseAddr("10.61.2.9")
	const batch = 32
	raw := make([][]byte, batch)
	seq := uint32(1000)
	for i := range raw {
		raw[i] = withID(tcpSegment(src, p.addrA, 9, seq, bytes.Repeat([]byte{byte(i)}, 1000)), uint16(i))
		seq += 1000
	}
	pkts := framesOf(t, p.u, raw)
	for i := range pkts {
		pkts[i].Len = 0
	}
	env := PortEnv{UMEM: p.u, Headroom: esp.MaxHeadroom, Tailroom: esp.MaxTailroom}
	allocs := testing.AllocsPerRun(50, func() {
		if k := env.Alloc(pkts); k != batch {
			t.Fatalf("%d frames", k)
		}
		for i, r := range raw {
			pkts[i].Len = copy(pkts[i].Buf[pkts[i].Off:], r)
		}
		p.pa.Transmit(1, pkts)
	})
	if allocs != 0 {
		t.Errorf("%v allocations per Transmit", allocs)
	}
	if s := p.tunA.Stats(); s.CoalescedSuperPackets < 51 || s.Writes != 51 {
		t.Errorf("51 batches of one flow's %d segments: %+v", batch, s)
	}

	// Reads: B → A by a goroutine, A → B measured here during a
	// transfer (after the handshake).
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		in := make([]sa.Packet, DefaultBatch)
		for {
			select {
			case <-stop:
				return
			default:
			}
			pumpStep(p.pb, p.pa, 1, in, 10*time.Millisecond)
		}
	}()
	defer func() {
		close(stop)
		wg.Wait()
	}()
	out := make([]sa.Packet, DefaultBatch)
	done := make(chan error, 1)
	go func() { done <- p.tcpTransfer(5311, 32<<20) }()
	before := p.tunA.Stats().SplitSuperPackets
	for deadline := time.Now().Add(5 * time.Second); p.tunA.Stats().SplitSuperPackets-before < 4; {
		if time.Now().After(deadline) {
			t.Fatal("no super-packets from the TCP sender")
		}
		pumpStep(p.pa, p.pb, 0, out, 10*time.Millisecond)
	}
	// The sender may pause (waiting for ACKs) through a whole
	// measurement on a busy machine: measure again, bounded, until some
	// steps moved packets; the worst measurement counts.
	moved := 0
	allocs = 0
	for try := 0; try < 50 && moved == 0; try++ {
		allocs = max(allocs, testing.AllocsPerRun(2000, func() { moved += pumpStep(p.pa, p.pb, 0, out, 0) }))
		if moved == 0 {
			pumpStep(p.pa, p.pb, 0, out, 10*time.Millisecond)
		}
	}
	if moved == 0 {
		t.Fatal("the measured steps moved nothing")
	}
	for {
		select {
		case err := <-done:
			if err != nil {
				t.Fatalf("tcp: %v", err)
			}
			if allocs != 0 {
				t.Errorf("%v allocations per Receive+Transmit", allocs)
			}
			return
		default:
			pumpStep(p.pa, p.pb, 0, out, 10*time.Millisecond)
		}
	}
}

// TestTUNPortOversizeSegments: with the TUN's MTU above what a frame
// takes, the kernel hands the port super-packets whose segments do not
// fit a frame: they are dropped and counted (OversizeDrops, the port's
// Drops), every frame goes back, never a panic or a truncated packet.
func TestTUNPortOversizeSegments(t *testing.T) {
	p := newPortPair(t, false)
	p.forward(t)
	p.oversize(t, 5611, func(s TUNStats) uint64 { return s.OversizeDrops })
	if st := p.pa.Stats(); st.Drops == 0 {
		t.Errorf("port drops not counted: %+v", st)
	}
}

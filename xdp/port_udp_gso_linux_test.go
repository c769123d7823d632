//go:build linux

package xdp

import (
	"bytes"
	"encoding/binary"
	"math/rand/v2"
	"net/netip"
	"sync"
	"testing"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/espxdp/espxdp/esp"
	"github.com/espxdp/espxdp/internal/netns"
	"github.com/espxdp/espxdp/sa"
)

// udpFamilies are the loopback addresses of the UDP port tests: both
// ports of a pair on one address, told apart by their (free) ports.
var udpFamilies = []struct {
	name string
	addr netip.Addr
}{{"IPv4", netip.MustParseAddr("127.0.0.1")}, {"IPv6", netip.MustParseAddr("::1")}}

// bindUDPPortCfg binds a UDPPort of cfg (Local's port 0: a free one) for
// one worker asking for batch packets at once over a new UMEM; it skips
// t when the address cannot be bound. Port and UMEM are released when t
// ends.
func bindUDPPortCfg(t *testing.T, cfg UDPPortConfig, batch int, noCheck bool) (*UMEM, *UDPPort, PortEnv) {
	t.Helper()
	u, err := NewUMEM(UMEMConfig{NumFrames: 512, FillSize: 64, CompletionSize: 64})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { u.Close() })
	cfg.EphemeralPort = true
	port := NewUDPPort(cfg)
	port.noCheckTX = noCheck
	if noCheck {
		// Three batches: the first two refused and sent singly, then
		// GSO is off (two refusals in a row).
		port.refusals = 2
	}
	env := PortEnv{UMEM: u, Workers: 1, BatchSize: batch, Headroom: esp.MaxHeadroom, Tailroom: esp.MaxTailroom, Wake: func(int) {}}
	if err := port.Bind(env); err != nil {
		t.Skipf("loopback UDP on %v: %v", cfg.Local, err)
	}
	t.Cleanup(func() { port.Unbind() })
	return u, port, env
}

// putOuter writes outer IP and UDP headers from src to dst in front of
// the payload after them in b (IPv4 or IPv6 by the addresses).
func putOuter(b []byte, src, dst netip.AddrPort) {
	if src.Addr().Is4() {
		putIPv4UDP(b, src.Addr().As4(), dst.Addr().As4(), src.Port(), dst.Port())
		return
	}
	s, d := src.Addr().As16(), dst.Addr().As16()
	putIPv6UDP(b, &s, &d, src.Port(), dst.Port())
}

// gsoModel is the specification of how UDPPort.Transmit groups packets
// into datagrams with GSO on: consecutive packets to one destination
// (here all are) form a super-datagram while all but the last have the
// first one's length and the last is no longer, at most UDPMaxSegments
// of them and maxBytes of payload. It returns the number of datagrams
// and of super-datagrams.
func gsoModel(lens []int, maxBytes int) (dgrams, super int) {
	for i := 0; i < len(lens); {
		g, total := 1, lens[i]
		for i+g < len(lens) && g < UDPMaxSegments && lens[i+g] <= lens[i] && total+lens[i+g] <= maxBytes {
			total += lens[i+g]
			g++
			if lens[i+g-1] < lens[i] {
				break
			}
		}
		dgrams++
		if g > 1 {
			super++
		}
		i += g
	}
	return dgrams, super
}

// TestUDPPortGSOGRO sends batches of ESP-sized payloads from one UDP
// port to another over loopback (IPv4 and IPv6), with GSO and GRO on,
// and with the kernel refusing GSO (SO_NO_CHECK / UDP_NO_CHECK6_TX make
// it answer EINVAL). Invariants: every packet arrives once, in order,
// with its payload unchanged and outer headers from the sender to the
// receiver; with GSO the sender sends exactly the datagrams and
// super-datagrams of the grouping rule (gsoModel) and the receiver
// splits coalesced datagrams (RXSuper > 0); on refusal (EINVAL) the
// port counts one fallback per refused batch, turns GSO off after
// refusals in a row (2 here, of 3 batches) and still delivers
// everything, one datagram per packet; every frame is back in its UMEM.
func TestUDPPortGSOGRO(t *testing.T) {
	for _, fam := range udpFamilies {
		for _, fallback := range []bool{false, true} {
			name := fam.name
			if fallback {
				name += "/fallback"
			}
			t.Run(name, func(t *testing.T) {
				local := netip.AddrPortFrom(fam.addr, 0)
				ua, a, envA := bindUDPPortCfg(t, UDPPortConfig{Local: local}, 64, fallback)
				ub, b, envB := bindUDPPortCfg(t, UDPPortConfig{Local: local}, 64, false)
				if fallback && fam.addr.Is6() {
					// Zero-checksum IPv6 UDP is dropped unless allowed.
					for _, q := range b.q {
						unix.SetsockoptInt(q.fd, unix.SOL_UDP, unix.UDP_NO_CHECK6_RX, 1)
					}
				}
				hl := a.hdrLen()
				rng := rand.New(rand.NewPCG(3, uint64(len(name))))
				// Runs of equal lengths, a shorter one ending some, and
				// odd ones between: 3 batches of 64.
				var lens []int
				for len(lens) < 3*64 {
					l, run := 100+rng.IntN(1400), 1+rng.IntN(50)
					for range run {
						lens = append(lens, l)
					}
					if rng.IntN(2) == 0 {
						lens = append(lens, 8+rng.IntN(l-8))
					}
				}
				lens = lens[:3*64]
				var sent [][]byte
				pkts := make([]sa.Packet, 64)
				for batch := range 3 {
					n := envA.Alloc(pkts)
					if n != 64 {
						t.Fatalf("%d frames", n)
					}
					for i := range n {
						p := &pkts[i]
						l := lens[batch*64+i]
						pl := p.Buf[p.Off+hl : p.Off+hl+l]
						for j := range pl {
							pl[j] = byte(rng.Uint32())
						}
						pl[0] |= 1 // not the non-ESP marker
						p.Len = hl + l
						putOuter(p.Buf[p.Off:p.Off+p.Len], a.Addr(), b.Addr())
						sent = append(sent, bytes.Clone(pl))
					}
					a.Transmit(0, pkts[:n])
				}
				var got [][]byte
				rx := make([]sa.Packet, 64)
				netns.WaitFor(5*time.Second, func() bool {
					k := b.Receive(0, rx)
					for _, p := range rx[:k] {
						d := p.Data()
						if len(d) < hl {
							t.Fatalf("received %d bytes", len(d))
						}
						var src, dst netip.Addr
						var sport, dport uint16
						if hl == 28 {
							src, dst = netip.AddrFrom4([4]byte(d[12:16])), netip.AddrFrom4([4]byte(d[16:20]))
						} else {
							src, dst = netip.AddrFrom16([16]byte(d[8:24])), netip.AddrFrom16([16]byte(d[24:40]))
						}
						sport, dport = binary.BigEndian.Uint16(d[hl-8:]), binary.BigEndian.Uint16(d[hl-6:])
						if netip.AddrPortFrom(src, sport) != a.Addr() || netip.AddrPortFrom(dst, dport) != b.Addr() {
							t.Errorf("outer %v:%d → %v:%d, want %v → %v", src, sport, dst, dport, a.Addr(), b.Addr())
						}
						var op esp.Parsed
						if err := esp.ParseOuter(d, b.Addr().Port(), &op); err != nil || op.ESPOffset != hl {
							t.Errorf("outer headers do not parse: %v", err)
						}
						got = append(got, bytes.Clone(d[hl:]))
					}
					envB.Free(rx[:k])
					return len(got) >= len(sent)
				})
				if len(got) != len(sent) {
					t.Fatalf("received %d of %d packets; sender %+v receiver %+v", len(got), len(sent), *a.Stats().UDP, *b.Stats().UDP)
				}
				for i := range sent {
					if !bytes.Equal(got[i], sent[i]) {
						t.Fatalf("packet %d: %d bytes, want %d, or other content", i, len(got[i]), len(sent[i]))
					}
				}
				stA, stB := a.Stats(), b.Stats()
				maxBytes := udpMaxGSO4
				if fam.addr.Is6() {
					maxBytes = udpMaxGSO6
				}
				var dgrams, super int
				for batch := range 3 {
					d, s := gsoModel(lens[batch*64:(batch+1)*64], maxBytes)
					dgrams, super = dgrams+d, super+s
				}
				if fallback {
					dgrams, super = len(sent), 0
					if stA.UDP.GSOFallbacks != 2 || stA.UDP.GSO {
						t.Errorf("fallback: %+v", *stA.UDP)
					}
				} else if stA.UDP.GSOFallbacks != 0 || !stA.UDP.GSO || stB.UDP.RXSuper == 0 || stB.UDP.RXSegments == 0 {
					t.Errorf("GSO/GRO: sender %+v receiver %+v", *stA.UDP, *stB.UDP)
				}
				if stA.TX != uint64(len(sent)) || stA.Drops != 0 || stA.UDP.TXDatagrams != uint64(dgrams) || stA.UDP.TXSuper != uint64(super) {
					t.Errorf("sender %+v %+v, want %d datagrams, %d super", stA, *stA.UDP, dgrams, super)
				}
				if stB.RX != uint64(len(sent)) || stB.Drops != 0 || stB.UDP.RXDatagrams > uint64(dgrams) {
					t.Errorf("receiver %+v %+v", stB, *stB.UDP)
				}
				for _, u := range []*UMEM{ua, ub} {
					if c := u.Counts(); c.App != 0 {
						t.Errorf("frames not returned: %+v", c)
					}
				}
			})
		}
	}
}

// TestUDPPortHostile sends a UDP port hostile datagrams: random bytes,
// empty ones, NAT keepalives, IKE behind the non-ESP marker, datagrams
// too long for a frame, and super-datagrams (UDP_SEGMENT from the peer)
// with markers among their segments; with and without a NonESP
// callback. Invariants: no panic; every segment is accounted for once:
// delivered (RX, payload unchanged), handed to the callback (NonESP,
// with the sender's address and the bytes sent) or counted as a drop by
// its reason; every frame is back.
func TestUDPPortHostile(t *testing.T) {
	for _, withCB := range []bool{false, true} {
		name := "drops"
		if withCB {
			name = "callback"
		}
		t.Run(name, func(t *testing.T) {
			var mu sync.Mutex
			var handed [][]byte
			cfg := UDPPortConfig{Local: netip.MustParseAddrPort("127.0.0.1:0")}
			if withCB {
				cfg.NonESP = func(b []byte, from netip.AddrPort) {
					mu.Lock()
					handed = append(handed, append(bytes.Clone(b), byte(from.Port()), byte(from.Port()>>8)))
					mu.Unlock()
				}
			}
			u, port, env := bindUDPPortCfg(t, cfg, 64, false)
			peer := loopbackUDPPeer(t)
			psa, _ := unix.Getsockname(peer)
			pport := uint16(psa.(*unix.SockaddrInet4).Port)
			to := &unix.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}, Port: int(port.Addr().Port())}
			rng := rand.New(rand.NewPCG(11, 17))
			var wantESP, wantNonESP [][]byte
			var wantKA, wantNE, wantEmpty, wantLong uint64
			classify := func(b []byte) {
				switch {
				case len(b) == 0:
					wantEmpty++
				case len(b) == 1 && b[0] == 0xff:
					wantKA++
					wantNonESP = append(wantNonESP, append(bytes.Clone(b), byte(pport), byte(pport>>8)))
				case len(b) >= 4 && binary.BigEndian.Uint32(b) == 0:
					wantNE++
					wantNonESP = append(wantNonESP, append(bytes.Clone(b), byte(pport), byte(pport>>8)))
				case len(b)+28 > env.MaxPacket():
					wantLong++
				default:
					wantESP = append(wantESP, bytes.Clone(b))
				}
			}
			random := func(n int) []byte {
				b := make([]byte, n)
				for i := range b {
					b[i] = byte(rng.Uint32())
				}
				switch rng.IntN(6) {
				case 0:
					if n >= 4 {
						clear(b[:4]) // IKE
					}
				case 1:
					b = []byte{0xff} // keepalive
				}
				return b
			}
			rx := make([]sa.Packet, 64)
			var got [][]byte
			drain := func() {
				k := port.Receive(0, rx)
				for _, p := range rx[:k] {
					got = append(got, bytes.Clone(p.Data()[udpHdrs:]))
				}
				env.Free(rx[:k])
			}
			for round := range 200 {
				switch rng.IntN(4) {
				case 0: // a single datagram, sometimes empty or too long
					n := rng.IntN(100)
					if rng.IntN(10) == 0 {
						n = env.MaxPacket() - 28 + 1 + rng.IntN(1000)
					}
					b := random(n)
					if err := unix.Sendto(peer, b, 0, to); err != nil {
						t.Fatal(err)
					}
					classify(b)
				default: // a super-datagram of equal segments, the last shorter
					seg := 1 + rng.IntN(300)
					nseg := 2 + rng.IntN(20)
					var all []byte
					for i := range nseg {
						l := seg
						if i == nseg-1 {
							l = 1 + rng.IntN(seg)
						}
						s := random(l)
						if len(s) != l { // keepalive swapped in: keep the length
							s = append(s, make([]byte, l-len(s))...)
							s[0] = 0xfe
						}
						all = append(all, s...)
						classify(s)
					}
					oob := make([]byte, unix.CmsgSpace(2))
					h := (*unix.Cmsghdr)(unsafe.Pointer(&oob[0]))
					h.Level, h.Type = unix.SOL_UDP, unix.UDP_SEGMENT
					h.SetLen(unix.CmsgLen(2))
					binary.NativeEndian.PutUint16(oob[unix.SizeofCmsghdr:], uint16(seg))
					if err := unix.Sendmsg(peer, all, oob, to, 0); err != nil {
						t.Skipf("peer cannot send with UDP_SEGMENT: %v", err)
					}
				}
				if round%10 == 9 {
					drain()
				}
			}
			st := port.Stats()
			want := func() uint64 {
				return uint64(len(wantESP)) + wantKA + wantNE + wantEmpty + wantLong
			}
			netns.WaitFor(5*time.Second, func() bool {
				drain()
				st = port.Stats()
				return st.RX+st.UDP.NonESP+st.Drops >= want()
			})
			if len(got) != len(wantESP) {
				t.Fatalf("delivered %d, want %d; %+v", len(got), len(wantESP), *st.UDP)
			}
			for i := range got {
				if !bytes.Equal(got[i], wantESP[i]) {
					t.Fatalf("packet %d altered", i)
				}
			}
			us := st.UDP
			if us.DropEmpty != wantEmpty || us.DropTooLong != wantLong || us.DropTruncated != 0 || us.RXSuper == 0 {
				t.Errorf("counters %+v, want %d empty, %d too long", *us, wantEmpty, wantLong)
			}
			if withCB {
				mu.Lock()
				defer mu.Unlock()
				if us.NonESP != wantKA+wantNE || us.DropKeepalive+us.DropNonESP != 0 || len(handed) != len(wantNonESP) {
					t.Fatalf("callback got %d, counters %+v, want %d", len(handed), *us, len(wantNonESP))
				}
				for i := range handed {
					if !bytes.Equal(handed[i], wantNonESP[i]) {
						t.Fatalf("non-ESP datagram %d altered or from elsewhere", i)
					}
				}
			} else if us.NonESP != 0 || us.DropKeepalive != wantKA || us.DropNonESP != wantNE {
				t.Errorf("counters %+v, want %d keepalives, %d IKE", *us, wantKA, wantNE)
			}
			if c := u.Counts(); c.App != 0 {
				t.Errorf("frames not returned: %+v", c)
			}
		})
	}
}

// TestUDPPortGSOAlloc holds one UDP port's transmit of a batch of equal
// packets (one super-datagram) and another's receive of it (one GRO
// datagram split into its packets) to zero allocations.
func TestUDPPortGSOAlloc(t *testing.T) {
	local := netip.MustParseAddrPort("127.0.0.1:0")
	_, a, envA := bindUDPPortCfg(t, UDPPortConfig{Local: local}, 64, false)
	_, b, envB := bindUDPPortCfg(t, UDPPortConfig{Local: local}, 64, false)
	const batch, size = 32, 1400
	pkts := make([]sa.Packet, batch)
	moved := 0
	allocs := testing.AllocsPerRun(20, func() {
		n := envA.Alloc(pkts)
		for i := range n {
			p := &pkts[i]
			p.Len = udpHdrs + size
			p.Buf[p.Off+udpHdrs] = 1
			putIPv4UDP(p.Buf[p.Off:p.Off+p.Len], a.Addr().Addr().As4(), b.Addr().Addr().As4(), a.Addr().Port(), b.Addr().Port())
		}
		a.Transmit(0, pkts[:n])
		k := 0
		for tries := 0; k < n && tries < 100000; tries++ {
			k += b.Receive(0, pkts[k:n])
		}
		envB.Free(pkts[:k])
		moved += k
	})
	if allocs != 0 {
		t.Errorf("%v allocations per batch of %d", allocs, batch)
	}
	stA, stB := a.Stats(), b.Stats()
	if moved != 21*batch || stA.UDP.TXSuper == 0 || stB.UDP.RXSuper == 0 {
		t.Errorf("moved %d of %d; sender %+v receiver %+v", moved, 21*batch, *stA.UDP, *stB.UDP)
	}
}

// TestUDPPortEngineGSO runs two engines against each other over
// loopback (IPv4 and IPv6 outer), their ciphertext sides UDP ports with
// GSO and GRO, both ways at once, injecting bursts of equal-sized
// packets so that a worker's batch holds many. Invariants: every packet
// arrives exactly once and unchanged; both engines sent super-datagrams
// and received coalesced ones (the counters > 0); the port counters
// agree with the workers'; every frame is back.
func TestUDPPortEngineGSO(t *testing.T) {
	for _, fam := range udpFamilies {
		t.Run(fam.name, func(t *testing.T) {
			a, b := newUDPPairOn(t, 2, sa.Shared, fam.addr, fam.addr, UDPPortConfig{})
			netA, netB := netip.MustParseAddr("192.0.2.1"), netip.MustParseAddr("198.51.100.1")
			const bursts, burst = 8, 48
			mk := func(from, to netip.Addr, base int) [][]byte {
				var ps [][]byte
				for i := range bursts * burst {
					ps = append(ps, innerUDP(from, to, uint16(base+i), 1000))
				}
				return ps
			}
			ab, ba := mk(netA, netB, 0), mk(netB, netA, 5000)
			var wg sync.WaitGroup
			send := func(from, to *udpSide, ps [][]byte) {
				defer wg.Done()
				for i := 0; i < len(ps); i += burst {
					for _, p := range ps[i : i+burst] {
						from.plain.in[0] <- p // a burst, then one wake: one batch
					}
					from.plain.env.Wake(0)
					netns.WaitFor(3*time.Second, func() bool { return len(to.plain.received()) >= i+burst })
				}
			}
			wg.Add(2)
			go send(a, b, ab)
			go send(b, a, ba)
			wg.Wait()
			checkArrivedBothWays(t, a, b, ab, ba)
			for _, s := range []*udpSide{a, b} {
				st := s.e.Stats()
				var rx, enc uint64
				for _, w := range st.Workers {
					rx, enc = rx+w.CipherRX, enc+w.Encrypted
				}
				cp := st.CipherPort
				if cp == nil || cp.UDP == nil || cp.RX != rx || cp.TX != enc || cp.Drops != 0 ||
					cp.UDP.TXSuper == 0 || cp.UDP.RXSuper == 0 || cp.UDP.TXSegments <= cp.UDP.TXSuper {
					t.Errorf("counters: port %+v %+v, workers CipherRX %d Encrypted %d", cp, cp.UDP, rx, enc)
				}
				checkFrames(t, s.e)
			}
		})
	}
}

// TestUDPPortKeepsSegments receives one super-datagram of 20 packets
// while the UMEM has only 3 free frames. Invariants: a Receive hands
// over at most the frames there are and keeps the rest of the datagram
// (InFlight reports it, so the worker will not sleep on its quiet
// socket); once frames come back the rest arrives, in order and
// unchanged, and no packet is lost or delivered twice.
func TestUDPPortKeepsSegments(t *testing.T) {
	u, err := NewUMEM(UMEMConfig{NumFrames: 16, FillSize: 4, CompletionSize: 4})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { u.Close() })
	port := NewUDPPort(UDPPortConfig{Local: netip.MustParseAddrPort("127.0.0.1:0"), EphemeralPort: true})
	env := PortEnv{UMEM: u, Workers: 1, BatchSize: 64, Headroom: esp.MaxHeadroom, Tailroom: esp.MaxTailroom, Wake: func(int) {}}
	if err := port.Bind(env); err != nil {
		t.Skipf("loopback UDP: %v", err)
	}
	t.Cleanup(func() { port.Unbind() })
	hold := make([]sa.Packet, 13)
	if env.Alloc(hold) != 13 {
		t.Fatal("no frames to hold")
	}
	peer := loopbackUDPPeer(t)
	const nseg, seg = 20, 500
	all := make([]byte, nseg*seg)
	for i := range nseg {
		for j := range seg {
			all[i*seg+j] = byte(i + 1)
		}
	}
	oob := make([]byte, unix.CmsgSpace(2))
	h := (*unix.Cmsghdr)(unsafe.Pointer(&oob[0]))
	h.Level, h.Type = unix.SOL_UDP, unix.UDP_SEGMENT
	h.SetLen(unix.CmsgLen(2))
	binary.NativeEndian.PutUint16(oob[unix.SizeofCmsghdr:], seg)
	if err := unix.Sendmsg(peer, all, oob, &unix.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}, Port: int(port.Addr().Port())}, 0); err != nil {
		t.Skipf("peer cannot send with UDP_SEGMENT: %v", err)
	}
	rx := make([]sa.Packet, 64)
	var got []byte
	k := 0
	netns.WaitFor(2*time.Second, func() bool { k = port.Receive(0, rx); return k > 0 })
	if k != 3 || port.InFlight(0) != 1 {
		t.Fatalf("first Receive with 3 free frames: %d packets, InFlight %d", k, port.InFlight(0))
	}
	for _, p := range rx[:k] {
		got = append(got, p.Data()[udpHdrs:]...)
	}
	env.Free(rx[:k])
	env.Free(hold)
	for tries := 0; len(got) < len(all) && tries < 10; tries++ {
		k = port.Receive(0, rx)
		for _, p := range rx[:k] {
			got = append(got, p.Data()[udpHdrs:]...)
		}
		env.Free(rx[:k])
	}
	if !bytes.Equal(got, all) || port.InFlight(0) != 0 {
		t.Fatalf("received %d of %d bytes (or altered), InFlight %d; %+v", len(got), len(all), port.InFlight(0), *port.Stats().UDP)
	}
	if c := u.Counts(); c.App != 0 {
		t.Errorf("frames not returned: %+v", c)
	}
}

// TestGROSizeRandom feeds groSize random control buffers, some with a
// well-formed UDP_GRO message somewhere. Invariants: no panic, no read
// past the buffer (the slices are exact), and a well-formed message
// first in the buffer is always found with its value.
func TestGROSizeRandom(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 9))
	for range 20000 {
		b := make([]byte, rng.IntN(3*udpCtrl))
		for i := range b {
			b[i] = byte(rng.Uint32())
		}
		want := -1
		if rng.IntN(2) == 0 && len(b) >= unix.CmsgSpace(4) {
			h := (*unix.Cmsghdr)(unsafe.Pointer(&b[0]))
			h.Level, h.Type = unix.SOL_UDP, unix.UDP_GRO
			h.SetLen(unix.CmsgLen(4))
			want = 1 + rng.IntN(65535)
			binary.NativeEndian.PutUint32(b[unix.SizeofCmsghdr:], uint32(want))
		}
		got := groSize(b)
		if want >= 0 && got != want {
			t.Fatalf("groSize = %d, want %d", got, want)
		}
	}
}

// TestUDPPortGSORefusalTransient: a refusal (EINVAL, here SO_NO_CHECK
// switched on for one batch) sends that batch singly but keeps GSO; a
// super-datagram that goes out resets the count, so isolated refusals
// (a segment over a path MTU that later rises again) never turn GSO off,
// while refusals in a row do. Every packet arrives.
func TestUDPPortGSORefusalTransient(t *testing.T) {
	local := netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), 0)
	ua, a, envA := bindUDPPortCfg(t, UDPPortConfig{Local: local}, 64, false)
	ub, b, envB := bindUDPPortCfg(t, UDPPortConfig{Local: local}, 64, false)
	a.refusals = 2
	const hl, l = 28, 1000
	pkts, rx := make([]sa.Packet, 16), make([]sa.Packet, 64)
	got := 0
	batch := func(refuse bool) {
		t.Helper()
		unix.SetsockoptInt(a.q[0].fd, unix.SOL_SOCKET, unix.SO_NO_CHECK, map[bool]int{false: 0, true: 1}[refuse])
		n := envA.Alloc(pkts)
		if n != len(pkts) {
			t.Fatalf("%d frames", n)
		}
		for i := range n {
			p := &pkts[i]
			p.Len = hl + l
			p.Buf[p.Off+hl] = 1 // not the non-ESP marker
			putOuter(p.Buf[p.Off:p.Off+p.Len], a.Addr(), b.Addr())
		}
		a.Transmit(0, pkts[:n])
		want := got + n
		netns.WaitFor(5*time.Second, func() bool {
			k := b.Receive(0, rx)
			got += k
			envB.Free(rx[:k])
			return got >= want
		})
		if got != want {
			t.Fatalf("received %d of %d", got, want)
		}
	}
	st := func() UDPPortStats { return *a.Stats().UDP }
	// refused, works, refused, works: GSO stays on.
	for i, refuse := range []bool{true, false, true, false} {
		supers := st().TXSuper
		batch(refuse)
		if s := st(); !s.GSO || s.GSOFallbacks != uint64(i/2+1) || (!refuse && s.TXSuper == supers) {
			t.Fatalf("batch %d (refused %v): %+v", i, refuse, s)
		}
	}
	// Two refusals in a row: off for good, later batches singly.
	batch(true)
	batch(true)
	supers := st().TXSuper
	batch(false)
	if s := st(); s.GSO || s.GSOFallbacks != 4 || s.TXSuper != supers {
		t.Fatalf("after refusals in a row: %+v", s)
	}
	for _, u := range []*UMEM{ua, ub} {
		if c := u.Counts(); c.App != 0 {
			t.Errorf("frames not returned: %+v", c)
		}
	}
}

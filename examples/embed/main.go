// Command embed shows espxdp embedded the way a Go VPN product would use
// it, without AF_XDP: two peers on loopback carry ESP in UDP (RFC 3948
// style, the kernel handles IP and UDP) and use the sa package for SAs,
// anti-replay and counters. Alice sends inner IPv4/UDP packets in
// batches; Bob decrypts each, answers through his own SA, and Alice
// checks every echo. An attacker's replayed and tampered packets are
// dropped and counted.
//
//	go run ./examples/embed [-n packets] [-transform aes256gcm16]
package main

import (
	"bytes"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"time"

	"github.com/espxdp/espxdp/esp"
	"github.com/espxdp/espxdp/sa"
)

// batchSize is how many packets go through the processor per call.
const batchSize = 32

// Result is what a run measured.
type Result struct {
	Sent, Echoed          int
	AliceOut, AliceIn     sa.Stats
	BobOut, BobIn         sa.Stats
	Elapsed               time.Duration
	ReplayDrops, AuthDrop uint64
}

// peer is one end: a UDP socket, its SAs and one processor worker.
type peer struct {
	name    string
	conn    *net.UDPConn
	out, in *sa.SA
	w       *sa.Worker
	tun     *sa.Tunnel
	batch   []sa.Packet
	bufs    [][]byte
}

func newPeer(name string, out, in *sa.SA) (*peer, error) {
	conn, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		return nil, err
	}
	sad := sa.NewSAD(sa.SADOptions{})
	if err := sad.Add(out); err != nil {
		return nil, err
	}
	if err := sad.Add(in); err != nil {
		return nil, err
	}
	tun := sa.NewTunnel(name)
	tun.SetOutbound(out)
	proc, err := sa.NewProcessor(sa.ProcessorOptions{SAD: sad, Tunnel: tun})
	if err != nil {
		return nil, err
	}
	p := &peer{name: name, conn: conn, out: out, in: in, w: proc.Worker(0), tun: tun,
		batch: make([]sa.Packet, batchSize), bufs: make([][]byte, batchSize)}
	for i := range p.bufs {
		p.bufs[i] = make([]byte, esp.MaxHeadroom+2048+esp.MaxTailroom)
	}
	return p, nil
}

// send encrypts the inner packets and writes each ESP packet to dst.
func (p *peer) send(inner [][]byte, dst *net.UDPAddr) error {
	b := p.batch[:len(inner)]
	for i, pkt := range inner {
		n := copy(p.bufs[i][esp.MaxHeadroom:], pkt)
		b[i] = sa.Packet{Buf: p.bufs[i], Off: esp.MaxHeadroom, Len: n, ESPOnly: true, Tunnel: p.tun}
	}
	p.w.Outbound(b)
	for i := range b {
		if b[i].Verdict != sa.VerdictOK {
			return fmt.Errorf("%s: outbound packet %d: %v %v", p.name, i, b[i].Verdict, b[i].Reason)
		}
		if _, err := p.conn.WriteToUDP(b[i].Data(), dst); err != nil {
			return err
		}
	}
	return nil
}

// receive reads up to want datagrams (until the deadline) and decrypts
// them; it returns the inner packets that were accepted, as slices of
// the peer's buffers (valid until the next call).
func (p *peer) receive(want int, deadline time.Time) ([][]byte, error) {
	b := p.batch[:0]
	for len(b) < want {
		i := len(b)
		p.conn.SetReadDeadline(deadline)
		n, _, err := p.conn.ReadFromUDP(p.bufs[i][esp.MaxHeadroom:])
		if err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				break
			}
			return nil, err
		}
		b = append(b, sa.Packet{Buf: p.bufs[i], Off: esp.MaxHeadroom, Len: n, ESPOnly: true})
	}
	p.w.Inbound(b)
	var ok [][]byte
	for i := range b {
		if b[i].Verdict == sa.VerdictOK {
			ok = append(ok, b[i].Data())
		}
	}
	return ok, nil
}

// innerPacket builds an IPv4/UDP packet carrying id.
func innerPacket(src, dst netip.Addr, id uint32, size int) []byte {
	p := make([]byte, size)
	p[0], p[8], p[9] = 0x45, 64, 17
	binary.BigEndian.PutUint16(p[2:], uint16(size))
	s, d := src.As4(), dst.As4()
	copy(p[12:], s[:])
	copy(p[16:], d[:])
	var sum uint32
	for i := 0; i < 20; i += 2 {
		sum += uint32(binary.BigEndian.Uint16(p[i:]))
	}
	for sum > 0xffff {
		sum = sum>>16 + sum&0xffff
	}
	binary.BigEndian.PutUint16(p[10:], ^uint16(sum))
	binary.BigEndian.PutUint16(p[20:], 5000)
	binary.BigEndian.PutUint16(p[22:], 7) // echo
	binary.BigEndian.PutUint16(p[24:], uint16(size-20))
	binary.BigEndian.PutUint32(p[28:], id)
	return p
}

// newPair makes the SA of one direction at both ends.
func newPair(name string, spi uint32, tr esp.Transform, src, dst netip.Addr) (out, in *sa.SA, err error) {
	key := make([]byte, tr.KeyLen())
	auth := make([]byte, tr.AuthKeyLen())
	rand.Read(key)
	rand.Read(auth)
	cfg := sa.Config{Name: name, SPI: spi, Direction: sa.Out, Mode: esp.Tunnel, Local: src, Remote: dst,
		UDPEncap: true, Transform: tr, Key: key, AuthKey: auth, ESN: true, ReplayWindow: 1024, PathMTU: 1500}
	if out, err = sa.New(cfg); err != nil {
		return nil, nil, err
	}
	cfg.Direction, cfg.Local, cfg.Remote = sa.In, dst, src
	in, err = sa.New(cfg)
	clear(key)
	clear(auth)
	return out, in, err
}

func run(w io.Writer, n int, transform string) (*Result, error) {
	tr, err := esp.ParseTransform(transform)
	if err != nil {
		return nil, err
	}
	a, b := netip.MustParseAddr("192.0.2.1"), netip.MustParseAddr("192.0.2.2")
	abOut, abIn, err := newPair("alice-to-bob", 0xa11ce, tr, a, b)
	if err != nil {
		return nil, err
	}
	baOut, baIn, err := newPair("bob-to-alice", 0xb0b, tr, b, a)
	if err != nil {
		return nil, err
	}
	alice, err := newPeer("alice", abOut, baIn)
	if err != nil {
		return nil, err
	}
	defer alice.conn.Close()
	bob, err := newPeer("bob", baOut, abIn)
	if err != nil {
		return nil, err
	}
	defer bob.conn.Close()
	aliceAddr, bobAddr := alice.conn.LocalAddr().(*net.UDPAddr), bob.conn.LocalAddr().(*net.UDPAddr)

	hostA, hostB := netip.MustParseAddr("10.1.0.5"), netip.MustParseAddr("10.2.0.7")
	res := &Result{}
	start := time.Now()
	deadline := start.Add(20 * time.Second) // every loop below is bounded
	seen := make([]bool, n)
	var captured []byte // one ESP packet an attacker recorded
	for sent := 0; sent < n && time.Now().Before(deadline); {
		k := min(batchSize, n-sent)
		inner := make([][]byte, k)
		for i := range inner {
			inner[i] = innerPacket(hostA, hostB, uint32(sent+i), 64+(sent+i)%1300)
		}
		if err := alice.send(inner, bobAddr); err != nil {
			return nil, err
		}
		sent += k
		res.Sent = sent
		// Bob decrypts, turns each packet around, and answers.
		got, err := bob.receive(k, time.Now().Add(time.Second))
		if err != nil {
			return nil, err
		}
		replies := make([][]byte, len(got))
		for i, g := range got {
			r := append([]byte(nil), g...)
			copy(r[12:16], g[16:20])
			copy(r[16:20], g[12:16])
			replies[i] = r
		}
		if err := bob.send(replies, aliceAddr); err != nil {
			return nil, err
		}
		if captured == nil && len(replies) > 0 {
			captured = append([]byte(nil), bob.batch[0].Data()...) // an attacker records Bob's first reply
		}
		echoes, err := alice.receive(len(replies), time.Now().Add(time.Second))
		if err != nil {
			return nil, err
		}
		for _, e := range echoes {
			id := binary.BigEndian.Uint32(e[28:])
			if int(id) >= n || seen[id] || !bytes.Equal(e[12:16], hostB.AsSlice()) {
				return nil, fmt.Errorf("unexpected echo %d", id)
			}
			seen[id] = true
			res.Echoed++
		}
		fmt.Fprintf(w, "\rsent %d, echoed %d", res.Sent, res.Echoed)
	}
	fmt.Fprintln(w)
	res.Elapsed = time.Since(start)

	// The attacker replays the recorded packet and sends a tampered copy.
	if captured != nil {
		// The forgery claims a fresh sequence number, so it passes the
		// replay pre-check and must fail the ICV.
		tampered := append([]byte(nil), captured...)
		binary.BigEndian.PutUint32(tampered[4:8], uint32(n+100))
		for _, pkt := range [][]byte{captured, tampered} {
			if _, err := bob.conn.WriteToUDP(pkt, aliceAddr); err != nil {
				return nil, err
			}
		}
		if _, err := alice.receive(2, time.Now().Add(time.Second)); err != nil {
			return nil, err
		}
	}
	res.AliceOut, res.AliceIn = abOut.Stats(), baIn.Stats()
	res.BobOut, res.BobIn = baOut.Stats(), abIn.Stats()
	res.ReplayDrops, res.AuthDrop = res.AliceIn.Drops[sa.DropReplay], res.AliceIn.Drops[sa.DropAuth]

	fmt.Fprintf(w, "%d packets each way with %s over UDP on loopback in %v\n", res.Echoed, tr, res.Elapsed.Round(time.Millisecond))
	for _, st := range []sa.Stats{res.AliceOut, res.BobIn, res.BobOut, res.AliceIn} {
		fmt.Fprintf(w, "  %-13s spi 0x%08x %-3v #pkts encaps: %d, #pkts decaps: %d, #pkts verify: %d, replay drops: %d, auth failures: %d, plaintext MTU %d\n",
			st.Name, st.SPI, st.Direction, st.EncapsPkts, st.DecapsPkts, st.VerifyPkts,
			st.Drops[sa.DropReplay], st.Drops[sa.DropAuth], st.PlaintextMTU)
	}
	if res.Echoed != n {
		return res, fmt.Errorf("only %d of %d packets came back", res.Echoed, n)
	}
	return res, nil
}

func main() {
	n := flag.Int("n", 2000, "packets to send each way")
	transform := flag.String("transform", "aes256gcm16", "ESP transform ("+fmt.Sprint(len(esp.TransformNames()))+" names, e.g. aes128gcm16, aes256-sha256, chacha20poly1305)")
	flag.Parse()
	if _, err := run(os.Stdout, *n, *transform); err != nil {
		fmt.Fprintln(os.Stderr, "embed:", err)
		os.Exit(1)
	}
}

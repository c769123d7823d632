//go:build linux

package harness

import (
	"encoding/binary"
	"encoding/json"
	"fmt"
	"net"
	"net/netip"
	"os"
	"runtime"
	"slices"
	"time"

	"github.com/espxdp/espxdp/bpf"
	"github.com/espxdp/espxdp/esp"
	"github.com/espxdp/espxdp/internal/topo"
	"github.com/espxdp/espxdp/sa"
	"github.com/espxdp/espxdp/xdp"
)

// The e2e topology: gen —(genEth/gwA)— gw —(gwB/sinkEth)— sink.
var (
	e2eGenIP   = netip.MustParseAddr("192.0.2.2")     // gen, the peer gateway of decrypt
	e2eGwAIP   = netip.MustParseAddr("192.0.2.1")     // gw, gen side
	e2eGwBIP   = netip.MustParseAddr("198.51.100.1")  // gw, sink side
	e2eSinkIP  = netip.MustParseAddr("198.51.100.2")  // sink, the peer gateway of encrypt
	e2eSrcNet  = netip.MustParsePrefix("10.7.0.0/16") // inner sources (behind gen)
	e2eDstNet  = netip.MustParsePrefix("10.9.0.0/16") // inner destinations (behind sink), protected
	e2eSinkMAC = net.HardwareAddr{0x02, 0xe2, 0xe2, 0, 0, 0x99}
)

const (
	e2eTransform = E2ETransformName
	e2eSPIIn     = 0x0e2e0001 // gen → gw (decrypt)
	e2eSPIOut    = 0x0e2e0002 // gw → sink (encrypt)
	e2eFlows     = 16
	e2eTemplates = 48 // a multiple of e2eFlows and of len(imixPattern)
	e2eGenFrames = e2eTemplates * 40
)

// e2eNet is the e2e topology.
type e2eNet struct {
	untrack       func()
	tp            *topo.Topology
	gen, gw, sink *topo.NS
	genEth, gwA   *topo.Link
	gwB, sinkEth  *topo.Link
	queues        int
}

// disableIPv6 keeps IPv6 (router solicitations, MLD) off the links, so
// that the sink counts only the generator's packets.
func disableIPv6(ns *topo.NS) error {
	for _, k := range []string{"net.ipv6.conf.all.disable_ipv6", "net.ipv6.conf.default.disable_ipv6"} {
		if err := ns.Sysctl(k, "1"); err != nil {
			return err
		}
	}
	return nil
}

func newE2ENet(queues int) (n *e2eNet, err error) {
	n = &e2eNet{tp: topo.New("e2e"), queues: queues}
	n.untrack = trackNet(n.tp.Close)
	defer func() {
		if err != nil {
			n.close()
		}
	}()
	for _, p := range []struct {
		ns    **topo.NS
		label string
	}{{&n.gen, "gen"}, {&n.gw, "gw"}, {&n.sink, "sink"}} {
		if *p.ns, err = n.tp.AddNS(p.label); err != nil {
			return nil, err
		}
		if err = disableIPv6(*p.ns); err != nil {
			return nil, err
		}
	}
	opts := topo.VethOptions{Queues: queues}
	if n.genEth, n.gwA, err = n.tp.AddVeth(n.gen, "eth0", n.gw, "ethA", opts); err != nil {
		return nil, err
	}
	if n.gwB, n.sinkEth, err = n.tp.AddVeth(n.gw, "ethB", n.sink, "eth0", opts); err != nil {
		return nil, err
	}
	steps := []func() error{
		func() error { return n.genEth.AddAddr(netip.PrefixFrom(e2eGenIP, 24)) },
		func() error { return n.gwA.AddAddr(netip.PrefixFrom(e2eGwAIP, 24)) },
		func() error { return n.gwB.AddAddr(netip.PrefixFrom(e2eGwBIP, 24)) },
		func() error { return n.sinkEth.AddAddr(netip.PrefixFrom(e2eSinkIP, 24)) },
		func() error { return n.genEth.SetNeighbour(e2eGwAIP, n.gwA.MAC) },
		func() error { return n.gwA.SetNeighbour(e2eGenIP, n.genEth.MAC) },
		// The sink's address resolves to a MAC that is not the sink's:
		// the sink's kernel drops the frames at once (PACKET_OTHERHOST)
		// after its interface counted them, so it costs little CPU.
		func() error { return n.gwB.SetNeighbour(e2eSinkIP, e2eSinkMAC) },
		func() error { return n.gw.AddRoute(e2eDstNet, e2eSinkIP, "", 0) },
		func() error { return n.gw.AddRoute(e2eSrcNet, e2eGenIP, "", 0) },
		func() error { return n.gw.Sysctl("net.ipv4.ip_forward", "1") },
		func() error { return n.gw.Sysctl("net.ipv4.conf.all.rp_filter", "0") },
	}
	for _, s := range steps {
		if err = s(); err != nil {
			return nil, err
		}
	}
	return n, nil
}

func (n *e2eNet) close() error {
	n.untrack()
	return n.tp.Close()
}

// linkRXPackets reads the rx packet counter of an interface with
// "ip -s -j link show" (sysfs shows the namespace it was mounted in, not
// the caller's).
func linkRXPackets(l *topo.Link) (uint64, error) {
	out, err := l.NS.IP("-s", "-j", "link", "show", "dev", l.Name)
	if err != nil {
		return 0, err
	}
	var info []struct {
		Stats struct {
			RX struct {
				Packets uint64 `json:"packets"`
			} `json:"rx"`
		} `json:"stats64"`
	}
	if err := json.Unmarshal([]byte(out), &info); err != nil || len(info) != 1 {
		return 0, fmt.Errorf("harness: parse ip -s -j link show %s: %v", l.Name, err)
	}
	return info[0].Stats.RX.Packets, nil
}

// ipv4UDP returns an IPv4/UDP packet of total length n (≥ 28) with a
// valid header checksum and a zero UDP checksum (allowed in IPv4).
func ipv4UDP(src, dst netip.Addr, sport, dport uint16, n int) []byte {
	p := make([]byte, n)
	p[0] = 0x45
	binary.BigEndian.PutUint16(p[2:], uint16(n))
	binary.BigEndian.PutUint16(p[4:], sport)
	p[6] = 0x40 // DF
	p[8] = 64
	p[9] = 17
	s, d := src.As4(), dst.As4()
	copy(p[12:], s[:])
	copy(p[16:], d[:])
	binary.BigEndian.PutUint16(p[10:], ^sum16(p[:20]))
	binary.BigEndian.PutUint16(p[20:], sport)
	binary.BigEndian.PutUint16(p[22:], dport)
	binary.BigEndian.PutUint16(p[24:], uint16(n-20))
	for i := 28; i < n; i++ {
		p[i] = byte(i)
	}
	return p
}

// sum16 is the ones' complement sum of b (RFC 1071), not inverted.
func sum16(b []byte) uint16 {
	var s uint32
	for ; len(b) >= 2; b = b[2:] {
		s += uint32(binary.BigEndian.Uint16(b))
	}
	if len(b) == 1 {
		s += uint32(b[0]) << 8
	}
	for s > 0xffff {
		s = s>>16 + s&0xffff
	}
	return uint16(s)
}

func ethernet(dst, src net.HardwareAddr, payload []byte) []byte {
	b := make([]byte, 14+len(payload))
	copy(b, dst)
	copy(b[6:], src)
	binary.BigEndian.PutUint16(b[12:], 0x0800)
	copy(b[14:], payload)
	return b
}

// frame is one pre-built packet of the generator: the Ethernet frame
// and the length of the inner (plaintext) IP packet it carries.
type frame struct {
	wire  []byte
	inner int
}

// innerSizes returns the inner packet size of each template for size n
// (0: the IMIX).
func innerSizes(n int) []int {
	pat := []int{n}
	if n == 0 {
		pat = imixPattern
	}
	out := make([]int, e2eTemplates)
	for i := range out {
		out[i] = pat[i%len(pat)]
	}
	return out
}

// plainFrames are the plaintext packets gen sends towards the protected
// prefix, e2eFlows flows (UDP source port and destination address).
func (n *e2eNet) plainFrames(size int) []frame {
	var fs []frame
	for i, sz := range innerSizes(size) {
		f := i % e2eFlows
		src := netip.AddrFrom4([4]byte{10, 7, 0, byte(1 + f)})
		dst := netip.AddrFrom4([4]byte{10, 9, 0, byte(1 + f)})
		p := ipv4UDP(src, dst, uint16(5000+f), 9, sz)
		fs = append(fs, frame{wire: ethernet(n.gwA.MAC, n.genEth.MAC, p), inner: sz})
	}
	return fs
}

// espFrames are the plaintext frames encrypted by a peer SA (gen → gw),
// built once with the sa package at setup; each has its own sequence
// number (the gateway's inbound SA has anti-replay off, so the
// generator can send them again and again).
func (n *e2eNet) espFrames(size int, out *sa.SA) ([]frame, error) {
	tun := sa.NewTunnel("gen")
	tun.SetOutbound(out)
	sad := sa.NewSAD(sa.SADOptions{})
	if err := sad.Add(out); err != nil {
		return nil, err
	}
	proc, err := sa.NewProcessor(sa.ProcessorOptions{SAD: sad, Tunnel: tun})
	if err != nil {
		return nil, err
	}
	var fs []frame
	for i, sz := range innerSizes(size) {
		f := i % e2eFlows
		src := netip.AddrFrom4([4]byte{10, 7, 0, byte(1 + f)})
		dst := netip.AddrFrom4([4]byte{10, 8, 0, byte(1 + f)})
		inner := ipv4UDP(src, dst, uint16(5000+f), 9, sz)
		pk := []sa.Packet{{Buf: make([]byte, esp.MaxHeadroom+sz+esp.MaxTailroom), Off: esp.MaxHeadroom, Len: sz}}
		copy(pk[0].Buf[esp.MaxHeadroom:], inner)
		proc.Worker(0).Outbound(pk)
		if pk[0].Verdict != sa.VerdictOK {
			return nil, fmt.Errorf("harness: e2e: build ESP: %v %v", pk[0].Verdict, pk[0].Reason)
		}
		fs = append(fs, frame{wire: ethernet(n.gwA.MAC, n.genEth.MAC, pk[0].Data()), inner: sz})
	}
	return fs, nil
}

// genSocket is one AF_XDP socket of the generator, on its own UMEM
// whose frames all hold pre-built packets.
type genSocket struct {
	u     *xdp.UMEM
	s     *xdp.Socket
	wire  []uint32 // by frame index: wire length
	inner []uint32 // by frame index: inner packet length
}

// generator sends pre-built frames from an AF_XDP socket per queue, in
// batches, round robin over its sockets from one goroutine.
type generator struct {
	socks []*genSocket
	descs []xdp.Desc
	shift uint
	// stamp, if set, writes timestamps into each batch's frames before
	// they are transmitted (latency trials, e2e_latency_linux.go).
	stamp func(g *generator, gs *genSocket, descs []xdp.Desc)
}

const genFrameSize = 2048

func newGenerator(l *topo.Link, queues int) (*generator, error) {
	g := &generator{descs: make([]xdp.Desc, xdp.MaxBatch), shift: 11}
	ok := false
	defer func() {
		if !ok {
			g.close()
		}
	}()
	for q := range queues {
		u, err := xdp.NewUMEM(xdp.UMEMConfig{FrameSize: genFrameSize, NumFrames: e2eGenFrames, FillSize: 64, CompletionSize: 2048})
		if err != nil {
			return nil, err
		}
		gs := &genSocket{u: u, wire: make([]uint32, e2eGenFrames), inner: make([]uint32, e2eGenFrames)}
		g.socks = append(g.socks, gs)
		if err := l.NS.Do(func() (err error) {
			gs.s, err = u.NewSocket(xdp.SocketConfig{Ifindex: l.Index, Queue: q, RXSize: -1, TXSize: 2048})
			return err
		}); err != nil {
			return nil, fmt.Errorf("harness: generator socket on %s queue %d: %w", l.Name, q, err)
		}
	}
	ok = true
	return g, nil
}

// fill writes frames into every UMEM frame of the first queues
// sockets, cyclically.
func (g *generator) fill(frames []frame, queues int) error {
	for _, gs := range g.socks[:queues] {
		all := make([]xdp.Desc, e2eGenFrames)
		k := gs.u.Alloc(all)
		for _, d := range all[:k] {
			buf, off := gs.u.Frame(d)
			idx := d.Addr >> g.shift
			f := frames[int(idx)%len(frames)]
			if off+len(f.wire) > len(buf) {
				gs.u.Free(all[:k])
				return fmt.Errorf("harness: %d-byte frame does not fit", len(f.wire))
			}
			copy(buf[off:], f.wire)
			gs.wire[idx], gs.inner[idx] = uint32(len(f.wire)), uint32(f.inner)
		}
		gs.u.Free(all[:k])
	}
	return nil
}

// run sends as fast as it can for d and returns the packets and inner
// bytes put on the TX rings and the time spent.
func (g *generator) run(d time.Duration, queues int) (sent, innerBytes uint64, elapsed time.Duration) {
	return g.runPaced(d, queues, 0)
}

// runPaced is run at no more than pps packets per second (0: as fast as
// it can): a token bucket refilled from the clock before each round
// over the sockets, holding at most one batch per socket (a generator
// that fell behind does not catch up in a burst), sent when a whole
// batch is due. The rate achieved is
// sent/elapsed, for the caller to measure.
func (g *generator) runPaced(d time.Duration, queues int, pps float64) (sent, innerBytes uint64, elapsed time.Duration) {
	socks := g.socks[:queues]
	start := time.Now()
	deadline := start.Add(d)
	burst := float64(xdp.MaxBatch * len(socks))
	tokens, last := 0.0, start
	for i := 0; ; i++ {
		if pps > 0 {
			now := time.Now()
			if now.After(deadline) {
				break
			}
			tokens = min(burst, tokens+pps*now.Sub(last).Seconds())
			last = now
			// Send in batches: wait for one (sleeping when the wait is
			// long enough for the timer, yielding the CPU otherwise).
			if need := min(burst, float64(xdp.MaxBatch)); tokens < need {
				if wait := time.Duration((need - tokens) / pps * 1e9); wait > 200*time.Microsecond {
					time.Sleep(wait / 2)
				} else {
					runtime.Gosched()
				}
				continue
			}
		} else if i&7 == 0 && time.Now().After(deadline) {
			break
		}
		progress := false
		for j := range socks {
			// Paced, a round may carry one batch: start each round at
			// the next socket so that every queue gets its share.
			gs := socks[(i+j)%len(socks)]
			gs.s.Complete()
			descs := g.descs
			if pps > 0 {
				descs = descs[:min(len(descs), int(tokens))]
			}
			k := gs.u.Alloc(descs)
			for j := range k {
				g.descs[j].Len = gs.wire[g.descs[j].Addr>>g.shift]
			}
			if g.stamp != nil {
				g.stamp(g, gs, g.descs[:k])
			}
			n := gs.s.Transmit(g.descs[:k])
			if n < k {
				gs.u.Free(g.descs[n:k])
			}
			for j := range n {
				innerBytes += uint64(gs.inner[g.descs[j].Addr>>g.shift])
			}
			sent += uint64(n)
			tokens -= float64(n)
			progress = progress || n > 0
		}
		if !progress && pps == 0 {
			runtime.Gosched()
		}
	}
	elapsed = time.Since(start)
	// Let the kernel finish what is on the TX rings (bounded).
	for end := time.Now().Add(time.Second); time.Now().Before(end); {
		left := 0
		for _, gs := range socks {
			gs.s.Complete()
			left += gs.s.TXOutstanding()
		}
		if left == 0 {
			break
		}
		time.Sleep(time.Millisecond)
	}
	return sent, innerBytes, elapsed
}

func (g *generator) close() {
	for _, gs := range g.socks {
		if gs.s != nil {
			gs.s.Close()
		}
		gs.u.Close()
	}
	g.socks = nil
}

// e2eRun holds the state of the e2e suite across its steps.
type e2eRun struct {
	cfg  Config
	d    time.Duration
	net  *e2eNet
	gen  *generator         // one socket per queue of gen's interface
	base map[string]float64 // "op/size/workers" → delivered pps
	ceil map[string]float64 // "open|seal/size" → 1-core raw AEAD pps
	// newSA makes a fresh SA (an SA belongs to one SAD) with the
	// suite's key.
	newSA func(spi uint32, dir sa.Direction, local, remote netip.Addr, replay int) (*sa.SA, error)
}

// inSA is gen → gw at gw (anti-replay off, so the generator can repeat
// its packets); peerSA the same SA at gen, which builds the ESP frames;
// outSA gw → sink.
func (r *e2eRun) inSA() (*sa.SA, error) {
	return r.newSA(e2eSPIIn, sa.In, e2eGwAIP, e2eGenIP, sa.ReplayDisabled)
}
func (r *e2eRun) peerSA() (*sa.SA, error) { return r.newSA(e2eSPIIn, sa.Out, e2eGenIP, e2eGwAIP, 0) }
func (r *e2eRun) outSA() (*sa.SA, error)  { return r.newSA(e2eSPIOut, sa.Out, e2eGwBIP, e2eSinkIP, 0) }

// espFrames builds the ESP frames of size with a fresh peer SA.
func (r *e2eRun) espFrames(size int) ([]frame, error) {
	p, err := r.peerSA()
	if err != nil {
		return nil, err
	}
	return r.net.espFrames(size, p)
}

func e2eKey(op string, size, w int) string { return fmt.Sprintf("%s/%d/%d", op, size, w) }

func (r *e2eRun) setup() error {
	if r.net != nil {
		return nil
	}
	if os.Geteuid() != 0 {
		return ErrNeedRoot
	}
	n, err := newE2ENet(slices.Max(r.cfg.Workers))
	if err != nil {
		return err
	}
	r.net = n
	t, err := esp.ParseTransform(e2eTransform)
	if err != nil {
		return err
	}
	key, auth := keys(t, r.cfg.Seed)
	r.newSA = func(spi uint32, dir sa.Direction, local, remote netip.Addr, replay int) (*sa.SA, error) {
		return sa.New(sa.Config{Name: fmt.Sprintf("e2e-%x", spi), SPI: spi, Direction: dir, Mode: esp.Tunnel,
			Local: local, Remote: remote, Transform: t, Key: key, AuthKey: auth, ReplayWindow: replay})
	}
	return nil
}

func (r *e2eRun) close() {
	if r.gen != nil {
		r.gen.close()
		r.gen = nil
	}
	if r.net != nil {
		r.net.close()
		r.net = nil
	}
}

func (r *e2eRun) generator() (*generator, error) {
	if r.gen != nil {
		return r.gen, nil
	}
	g, err := newGenerator(r.net.genEth, r.net.queues)
	if err != nil {
		return nil, err
	}
	r.gen = g
	return g, nil
}

// sender is a traffic generator of the e2e suite: generator (a frame
// per packet) or chainGenerator (a descriptor chain per packet, the
// jumbo rows).
type sender interface {
	// fill writes frames into the UMEMs of the first w sockets.
	fill(frames []frame, w int) error
	// run sends as fast as it can for d from the first w sockets and
	// returns the packets and inner bytes put on the TX rings and the
	// time spent.
	run(d time.Duration, w int) (sent, innerBytes uint64, elapsed time.Duration)
}

// measure sends frames from gen over w queues for the duration and
// counts what the sink's interface received.
func (r *e2eRun) measure(op string, size, w int, frames []frame) (Result, error) {
	g, err := r.generator()
	if err != nil {
		return Result{}, err
	}
	return r.measureOn(g, op, size, w, frames)
}

// measureOn is measure with the generator g. Sizes above e2eMaxInner
// are the jumbo rows: Traffic TrafficJumbo and the links' MTU as the
// "mtu" metric.
func (r *e2eRun) measureOn(g sender, op string, size, w int, frames []frame) (Result, error) {
	res := Result{Suite: "e2e", Kind: KindE2E, Op: op, Size: size, Workers: w, Transform: e2eTransform}
	if op == "forward" || op == "kernel" {
		res.Transform = ""
	}
	if size == 0 {
		res.Traffic = "imix"
	}
	if size > e2eMaxInner {
		res.Traffic = TrafficJumbo
		res.add("mtu", E2EJumboMTU, UnitBytes)
	}
	if err := g.fill(frames, w); err != nil {
		return res, err
	}
	g.run(min(r.d/10, 50*time.Millisecond), w) // warm up: caches, rings, neighbour entries
	if _, err := r.settle(); err != nil {
		return res, err
	}
	rx0, err := linkRXPackets(r.net.sinkEth)
	if err != nil {
		return res, err
	}
	sent, innerBytes, el := g.run(r.d, w)
	rx1, err := r.settle()
	if err != nil {
		return res, err
	}
	got := rx1 - rx0
	sec := el.Seconds()
	res.add("offered-Mpps", float64(sent)/sec/1e6, UnitMpps)
	res.add("Mpps", float64(got)/sec/1e6, UnitMpps)
	res.add("Mpps/worker", float64(got)/sec/1e6/float64(w), UnitMpps)
	if sent > 0 {
		// Inner bytes of the delivered packets: the sent mix scaled by
		// the delivered fraction (exact for a single size).
		res.add("Gbps", float64(innerBytes)*float64(got)/float64(sent)*8/sec/1e9, UnitGbps)
		res.add("loss%", 100*(float64(sent)-float64(min(got, sent)))/float64(sent), UnitPercent)
	}
	res.add("sent", float64(sent), UnitPackets)
	res.add("delivered", float64(got), UnitPackets)
	res.add("seconds", sec, UnitSeconds)
	r.base[e2eKey(op, size, w)] = float64(got) / sec
	return res, nil
}

// trial sends frames (already in g's UMEMs) at pps for the trial length
// of the configuration and counts what the sink received.
func (r *e2eRun) trial(g *generator, w int, pps float64) (Trial, error) {
	rx0, err := linkRXPackets(r.net.sinkEth)
	if err != nil {
		return Trial{}, err
	}
	sent, _, el := g.runPaced(r.cfg.e2eTrial(), w, pps)
	rx1, err := r.settle()
	if err != nil {
		return Trial{}, err
	}
	t := Trial{Target: pps, Sent: sent, Delivered: rx1 - rx0}
	if s := el.Seconds(); s > 0 {
		t.Offered = float64(sent) / s
	}
	return t, nil
}

// searchRates finds the NDR and PDR of the engine that runs now (the
// frames of res in g's UMEMs) with SearchRate: the upper end is the
// overload measurement's offered rate, the PDR search starts from the
// NDR. It adds the rates (the achieved offered rate of the best passing
// trial), their inner Gbit/s and the trial count to res, and the latency
// percentiles at LatencyLoad of the NDR (e2eRun.latency).
func (r *e2eRun) searchRates(g *generator, res *Result, w int, frames []frame) error {
	offered, _ := res.Get("offered-Mpps")
	max := offered * 1e6
	if max <= 0 {
		return fmt.Errorf("harness: e2e %s: nothing offered, no rate to search", res.Op)
	}
	trial := func(pps float64) (Trial, error) { return r.trial(g, w, pps) }
	ndr, t1, err := SearchRate(max, Trial{}, 0, SearchTolerance, SearchMaxTrials, trial)
	if err != nil {
		return err
	}
	pdr, t2, err := SearchRate(max, ndr, PDRLoss, SearchTolerance, SearchMaxTrials, trial)
	if err != nil {
		return err
	}
	inner := 0.0
	for _, f := range frames {
		inner += float64(f.inner)
	}
	inner /= float64(len(frames))
	res.add("ndr-Mpps", ndr.Offered/1e6, UnitMpps)
	res.add("ndr-Gbps", ndr.Offered*inner*8/1e9, UnitGbps)
	res.add("pdr-Mpps", pdr.Offered/1e6, UnitMpps)
	res.add("pdr-Gbps", pdr.Offered*inner*8/1e9, UnitGbps)
	res.add("pdr-loss%", 100*pdr.Loss(), UnitPercent)
	res.add("trials", float64(len(t1)+len(t2)), "")
	res.add("trial-s", r.cfg.e2eTrial().Seconds(), UnitSeconds)
	return r.latency(g, res, w, frames, ndr)
}

// settle waits (bounded) until the sink's counter stops moving and
// returns it.
func (r *e2eRun) settle() (uint64, error) { return settleRX(r.net.sinkEth) }

// settleRX waits (at most a second) until the rx packet counter of l
// stops moving and returns it.
func settleRX(l *topo.Link) (uint64, error) {
	last, err := linkRXPackets(l)
	if err != nil {
		return 0, err
	}
	for range 50 {
		time.Sleep(20 * time.Millisecond)
		v, err := linkRXPackets(l)
		if err != nil {
			return 0, err
		}
		if v == last {
			return v, nil
		}
		last = v
	}
	return last, nil
}

func (r *e2eRun) sizes() []int { return r.cfg.E2ESizes }

// ceiling returns the raw AEAD's packets per second on one core for op
// ("open" or "seal") at inner size n (0: the IMIX, the harmonic mix of
// its sizes), measured once with the crypto suite's code.
func (r *e2eRun) ceiling(op string, n int) (float64, error) {
	if n == 0 {
		ns := 0.0
		for _, sz := range imixPattern {
			pps, err := r.ceiling(op, sz)
			if err != nil {
				return 0, err
			}
			ns += 1e9 / pps
		}
		return 1e9 / (ns / float64(len(imixPattern))), nil
	}
	k := fmt.Sprintf("%s/%d", op, n)
	if v, ok := r.ceil[k]; ok {
		return v, nil
	}
	rs, err := Crypto(e2eTransform, n, min(r.d/4, 200*time.Millisecond), r.cfg.Seed)
	if err != nil {
		return 0, err
	}
	for _, x := range rs {
		if v, ok := x.Get("raw-ns/pkt"); ok && v > 0 {
			r.ceil[fmt.Sprintf("%s/%d", x.Op, n)] = 1e9 / v
		}
	}
	v, ok := r.ceil[k]
	if !ok {
		return 0, fmt.Errorf("harness: no raw %s baseline for %s", op, e2eTransform)
	}
	return v, nil
}

// forward runs the AF_XDP Forwarder without crypto from gwA to gwB, one
// per queue, on the ESP frames of decrypt.
func (r *e2eRun) forward(w int) ([]Result, error) {
	n := r.net
	prog, err := bpf.Load(bpf.Options{Queues: w})
	if err != nil {
		return nil, err
	}
	defer prog.Close()
	var fws []*xdp.Forwarder
	defer func() {
		for _, f := range fws {
			f.Stop()
		}
	}()
	for q := range w {
		u, err := xdp.NewUMEM(xdp.UMEMConfig{NumFrames: 4096, FillSize: 2048, CompletionSize: 2048})
		if err != nil {
			return nil, err
		}
		var in, out *xdp.Socket
		err = n.gw.Do(func() (err error) {
			if in, err = u.NewSocket(xdp.SocketConfig{Ifindex: n.gwA.Index, Queue: q, TXSize: -1, RXSize: 2048}); err != nil {
				return err
			}
			out, err = u.NewSocket(xdp.SocketConfig{Ifindex: n.gwB.Index, Queue: q, RXSize: -1, TXSize: 2048})
			return err
		})
		if err == nil {
			var idx int
			if idx, err = prog.SocketIndex(q, 0); err == nil {
				err = prog.RegisterSocket(idx, in.FD())
			}
		}
		var fw *xdp.Forwarder
		if err == nil {
			fw, err = xdp.NewForwarder(xdp.ForwarderConfig{In: in, Out: out})
		}
		if err == nil {
			err = fw.Start()
		}
		if err != nil {
			if in != nil {
				in.Close()
			}
			if out != nil {
				out.Close()
			}
			u.Close()
			return nil, fmt.Errorf("harness: forwarder on queue %d: %w", q, err)
		}
		fws = append(fws, fw)
	}
	var att *bpf.Attachment
	if err := n.gw.Do(func() (err error) {
		att, err = prog.Attach(n.gwA.Index, bpf.AttachAuto)
		return err
	}); err != nil {
		return nil, err
	}
	defer att.Close()
	var out []Result
	for _, size := range r.sizes() {
		frames, err := r.espFrames(size)
		if err != nil {
			return nil, err
		}
		res, err := r.measure("forward", size, w, frames)
		if err != nil {
			return nil, err
		}
		out = append(out, res)
	}
	return out, nil
}

// kernel measures the gateway's own IP forwarding (no XDP program) of
// the plaintext frames of encrypt.
func (r *e2eRun) kernel(w int) ([]Result, error) {
	var out []Result
	for _, size := range r.sizes() {
		res, err := r.measure("kernel", size, w, r.net.plainFrames(size))
		if err != nil {
			return nil, err
		}
		out = append(out, res)
	}
	return out, nil
}

// engine runs an xdp.Engine in gw with w queues and workers: for
// decrypt with its ciphertext port towards gen, for encrypt towards
// the sink.
func (r *e2eRun) engine(op string, w int) ([]Result, error) {
	g, err := r.generator()
	if err != nil {
		return nil, err
	}
	return r.engineOn(g, op, w, r.sizes(), false)
}

// engineOn is engine with the generator g, over sizes, and with
// EngineConfig.MultiBuffer set to multiBuffer (the jumbo rows).
func (r *e2eRun) engineOn(g sender, op string, w int, sizes []int, multiBuffer bool) ([]Result, error) {
	n := r.net
	sad := sa.NewSAD(sa.SADOptions{})
	tun := sa.NewTunnel("sink")
	cfg := xdp.EngineConfig{Queues: w, UMEM: xdp.UMEMConfig{NumFrames: 4096 * w, FillSize: 2048, CompletionSize: 2048},
		MultiBuffer: multiBuffer}
	if multiBuffer {
		// The fill rings of both ports hold 4096 frames per queue: a
		// packet sent as a chain needs free frames beyond them, which
		// RX rings larger than the fill rings would hold instead.
		cfg.UMEM.NumFrames = 8192 * w
		cfg.RXSize = cfg.UMEM.FillSize
	}
	if op == "decrypt" {
		in, err := r.inSA()
		if err != nil {
			return nil, err
		}
		if err := sad.Add(in); err != nil {
			return nil, err
		}
		cfg.Cipher = xdp.Port{Name: n.gwA.Name, NextHop: n.genEth.MAC}
		cfg.Plain = &xdp.Port{Name: n.gwB.Name, NextHop: e2eSinkMAC}
		cfg.ProtectedPrefixes = []netip.Prefix{e2eSrcNet}
	} else {
		out, err := r.outSA()
		if err != nil {
			return nil, err
		}
		if err := sad.Add(out); err != nil {
			return nil, err
		}
		tun.SetOutbound(out)
		cfg.Cipher = xdp.Port{Name: n.gwB.Name, NextHop: e2eSinkMAC}
		cfg.Plain = &xdp.Port{Name: n.gwA.Name, NextHop: n.genEth.MAC}
		cfg.ProtectedPrefixes = []netip.Prefix{e2eDstNet}
	}
	e, err := n.startEngine(cfg, sad, tun, w, sa.Shared)
	if err != nil {
		return nil, err
	}
	defer e.Stop()
	aeadOp := "open"
	if op == "encrypt" {
		aeadOp = "seal"
	}
	var out []Result
	for _, size := range sizes {
		var frames []frame
		if op == "decrypt" {
			if frames, err = r.espFrames(size); err != nil {
				return nil, err
			}
		} else {
			frames = n.plainFrames(size)
		}
		st0 := e.Stats()
		res, err := r.measureOn(g, op, size, w, frames)
		if err != nil {
			return nil, err
		}
		st := e.Stats()
		if pg, ok := g.(*generator); ok && !multiBuffer {
			if err := r.searchRates(pg, &res, w, frames); err != nil {
				return nil, err
			}
		}
		var drops, busy, jumbo uint64
		for i, ws := range st.Workers {
			drops += ws.SADrops - st0.Workers[i].SADrops + ws.TXFull - st0.Workers[i].TXFull
			drops += ws.JumboDrops - st0.Workers[i].JumboDrops
			jumbo += ws.JumboRX - st0.Workers[i].JumboRX
			if ws.CipherRX+ws.PlainRX > st0.Workers[i].CipherRX+st0.Workers[i].PlainRX {
				busy++
			}
		}
		res.add("gw-drops", float64(drops), UnitPackets)
		res.add("xsk-drops", float64(xskDrops(st)-xskDrops(st0)), UnitPackets)
		res.add("busy-workers", float64(busy), "")
		if multiBuffer {
			// Packets the engine received as descriptor chains.
			res.add("jumbo-rx", float64(jumbo), UnitPackets)
		}
		c1, err := r.ceiling(aeadOp, size)
		if err != nil {
			return nil, err
		}
		crypto := c1 * float64(w)
		res.add("crypto-Mpps", crypto/1e6, UnitMpps)
		pps := r.base[e2eKey(op, size, w)]
		if io := r.base[e2eKey("forward", size, w)]; io > 0 {
			res.add("io-Mpps", io/1e6, UnitMpps)
			res.add("x-ceiling", pps/min(io, crypto), UnitRatio)
		}
		if k := r.base[e2eKey("kernel", size, w)]; k > 0 {
			res.add("x-kernel", pps/k, UnitRatio)
		}
		out = append(out, res)
	}
	return out, nil
}

// xskDrops is what the kernel dropped at the engine's sockets (RX ring
// full, no frame to receive into).
func xskDrops(st xdp.EngineStats) uint64 {
	k := st.KernelTotals()
	return k.RxDropped + k.RxRingFull
}

// E2ESteps returns the steps of the e2e suite and a function that
// removes what they built; it must be called after the steps ran (or
// failed).
func E2ESteps(cfg Config) ([]suiteStep, func()) {
	r := &e2eRun{cfg: cfg, d: time.Duration(cfg.E2EDurationNs), base: map[string]float64{}, ceil: map[string]float64{}}
	var steps []suiteStep
	for _, w := range cfg.Workers {
		for _, op := range e2eSteps(cfg) {
			steps = append(steps, suiteStep{fmt.Sprintf("e2e %s %d workers", op, w), func() ([]Result, error) {
				if err := r.setup(); err != nil {
					return nil, err
				}
				switch op {
				case "forward":
					return r.forward(w)
				case "kernel":
					return r.kernel(w)
				case TrafficJumbo:
					return r.jumbo(w)
				}
				return r.engine(op, w)
			}})
		}
	}
	return steps, r.close
}

// startEngine starts in gw an engine of cfg whose Processor, of w
// workers in mode, serves sad and tun. The caller stops it.
func (n *e2eNet) startEngine(cfg xdp.EngineConfig, sad *sa.SAD, tun *sa.Tunnel, w int, mode sa.Concurrency) (*xdp.Engine, error) {
	proc, err := sa.NewProcessor(sa.ProcessorOptions{SAD: sad, Tunnel: tun, Workers: w, Concurrency: mode})
	if err != nil {
		return nil, err
	}
	cfg.Processor = proc
	e, err := xdp.NewEngine(cfg)
	if err != nil {
		return nil, err
	}
	if err := n.gw.Do(e.Start); err != nil {
		return nil, fmt.Errorf("harness: engine start: %w", err)
	}
	return e, nil
}

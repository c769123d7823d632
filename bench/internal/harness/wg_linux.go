//go:build linux

package harness

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net/netip"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	"golang.org/x/crypto/curve25519"
	"golang.zx2c4.com/wireguard/conn"
	"golang.zx2c4.com/wireguard/device"
	"golang.zx2c4.com/wireguard/tun"

	"github.com/espxdp/espxdp/esp"
	"github.com/espxdp/espxdp/internal/topo"
	"github.com/espxdp/espxdp/sa"
	"github.com/espxdp/espxdp/xdp"
)

// The wg topology: hostA —(lan)— gwA —(wan)— gwB —(lan)— hostB.
var (
	wgHostA   = netip.MustParseAddr("10.1.0.2")
	wgGwALan  = netip.MustParseAddr("10.1.0.1")
	wgGwAWan  = netip.MustParseAddr("192.0.2.1")
	wgGwBWan  = netip.MustParseAddr("192.0.2.2")
	wgGwBLan  = netip.MustParseAddr("10.2.0.1")
	wgHostB   = netip.MustParseAddr("10.2.0.2")
	wgNetA    = netip.MustParsePrefix("10.1.0.0/24")
	wgNetB    = netip.MustParsePrefix("10.2.0.0/24")
	wgESPSuit = []string{"aes128gcm16", "chacha20poly1305"}
)

const (
	// Variants of the hosts' and gateways' offload settings (Result.Op).
	wgNoOffload = "no-offload"
	wgOffload   = "offload"

	wgPort    = 51820
	wgInnerMT = 1420 // MTU of the hosts' links and of the WireGuard TUNs
	wgTCPPort = 5201
)

// wgNet is the two-gateway topology of the wg suite.
type wgNet struct {
	untrack            func()
	tp                 *topo.Topology
	hostA, gwA         *topo.NS
	gwB, hostB         *topo.NS
	aEth, gwALan       *topo.Link
	gwAWan, gwBWan     *topo.Link
	gwBLan, bEth       *topo.Link
	gateways           []*topo.NS
	lanOf, wanOf, peer map[*topo.NS]*topo.Link // per gateway
	// tune, if set, adjusts the espxdp engines' configuration before
	// they start (socket tuning, wg_tcp_linux.go); engines are the
	// running espxdp engines (nil while none run).
	tune    func(*xdp.EngineConfig)
	engines []*xdp.Engine
	tuns    []*xdp.TUN // the espxdp TUNs (nil while none run)
}

// setTXChecksum turns transmit checksum offload of l on or off: see
// topo.Link.DisableTXChecksum for why the espxdp runs need it off.
func setTXChecksum(l *topo.Link, on bool) error { return l.SetTXChecksum(on) }

// setGRO turns generic receive offload of l on or off.
func setGRO(l *topo.Link, on bool) error { return l.SetGRO(on) }

func newWGNet() (n *wgNet, err error) {
	n = &wgNet{tp: topo.New("wg")}
	n.untrack = trackNet(n.tp.Close)
	defer func() {
		if err != nil {
			n.close()
		}
	}()
	for _, p := range []struct {
		ns    **topo.NS
		label string
	}{{&n.hostA, "hostA"}, {&n.gwA, "gwA"}, {&n.gwB, "gwB"}, {&n.hostB, "hostB"}} {
		if *p.ns, err = n.tp.AddNS(p.label); err != nil {
			return nil, err
		}
		if err = disableIPv6(*p.ns); err != nil {
			return nil, err
		}
	}
	lan := topo.VethOptions{MTU: wgInnerMT}
	if n.aEth, n.gwALan, err = n.tp.AddVeth(n.hostA, "eth0", n.gwA, "lan", lan); err != nil {
		return nil, err
	}
	if n.gwAWan, n.gwBWan, err = n.tp.AddVeth(n.gwA, "wan", n.gwB, "wan", topo.VethOptions{}); err != nil {
		return nil, err
	}
	if n.gwBLan, n.bEth, err = n.tp.AddVeth(n.gwB, "lan", n.hostB, "eth0", lan); err != nil {
		return nil, err
	}
	n.gateways = []*topo.NS{n.gwA, n.gwB}
	n.lanOf = map[*topo.NS]*topo.Link{n.gwA: n.gwALan, n.gwB: n.gwBLan}
	n.wanOf = map[*topo.NS]*topo.Link{n.gwA: n.gwAWan, n.gwB: n.gwBWan}
	n.peer = map[*topo.NS]*topo.Link{n.gwA: n.gwBWan, n.gwB: n.gwAWan}
	steps := []func() error{
		func() error { return n.aEth.AddAddr(netip.PrefixFrom(wgHostA, 24)) },
		func() error { return n.gwALan.AddAddr(netip.PrefixFrom(wgGwALan, 24)) },
		func() error { return n.gwAWan.AddAddr(netip.PrefixFrom(wgGwAWan, 24)) },
		func() error { return n.gwBWan.AddAddr(netip.PrefixFrom(wgGwBWan, 24)) },
		func() error { return n.gwBLan.AddAddr(netip.PrefixFrom(wgGwBLan, 24)) },
		func() error { return n.bEth.AddAddr(netip.PrefixFrom(wgHostB, 24)) },
		func() error { return n.aEth.SetNeighbour(wgGwALan, n.gwALan.MAC) },
		func() error { return n.gwALan.SetNeighbour(wgHostA, n.aEth.MAC) },
		func() error { return n.gwAWan.SetNeighbour(wgGwBWan, n.gwBWan.MAC) },
		func() error { return n.gwBWan.SetNeighbour(wgGwAWan, n.gwAWan.MAC) },
		func() error { return n.gwBLan.SetNeighbour(wgHostB, n.bEth.MAC) },
		func() error { return n.bEth.SetNeighbour(wgGwBLan, n.gwBLan.MAC) },
		func() error { return n.hostA.AddRoute(wgNetB, wgGwALan, "", 0) },
		func() error { return n.hostB.AddRoute(wgNetA, wgGwBLan, "", 0) },
		func() error { return setTXChecksum(n.aEth, false) },
		func() error { return setTXChecksum(n.bEth, false) },
	}
	for _, g := range n.gateways {
		steps = append(steps,
			func() error { return g.Sysctl("net.ipv4.ip_forward", "1") },
			func() error { return g.Sysctl("net.ipv4.conf.all.rp_filter", "0") })
	}
	for _, s := range steps {
		if err = s(); err != nil {
			return nil, err
		}
	}
	return n, n.kernelRoutes()
}

// kernelRoutes routes each side's remote network over the wan.
func (n *wgNet) kernelRoutes() error {
	if err := n.gwA.AddRoute(wgNetB, wgGwBWan, "", 0); err != nil {
		return err
	}
	return n.gwB.AddRoute(wgNetA, wgGwAWan, "", 0)
}

// quietTUN hides the TUN's up/down events from the wireguard-go
// device: the device reacts to "up" by opening its UDP sockets from the
// goroutine that reads the events, which is not in the gateway's
// namespace. The harness brings the device up itself, inside the
// namespace. MTU events pass.
type quietTUN struct {
	tun.Device
	events chan tun.Event
}

func newQuietTUN(d tun.Device) *quietTUN {
	q := &quietTUN{Device: d, events: make(chan tun.Event, 4)}
	go func() {
		defer close(q.events)
		for ev := range d.Events() {
			if ev&tun.EventMTUUpdate != 0 {
				select {
				case q.events <- tun.EventMTUUpdate:
				default:
				}
			}
		}
	}()
	return q
}

func (q *quietTUN) Events() <-chan tun.Event { return q.events }

// wgKeys returns a Curve25519 private key and its public key.
func wgKeys() (priv, pub []byte, err error) {
	priv = make([]byte, curve25519.ScalarSize)
	if _, err := rand.Read(priv); err != nil {
		return nil, nil, err
	}
	priv[0] &= 248
	priv[31] = priv[31]&127 | 64
	pub, err = curve25519.X25519(priv, curve25519.Basepoint)
	return priv, pub, err
}

// setOffloads turns on (or back off) what helps wireguard-go and that
// the espxdp path cannot use: checksum offload (and with it TSO) on the
// hosts, GRO on the gateways' links, so that the gateways' kernels
// pass TCP and UDP super-packets to the TUN and the UDP sockets.
func (n *wgNet) setOffloads(on bool) error {
	for _, l := range []*topo.Link{n.aEth, n.bEth} {
		if err := setTXChecksum(l, on); err != nil {
			return err
		}
	}
	for _, l := range []*topo.Link{n.gwALan, n.gwAWan, n.gwBWan, n.gwBLan} {
		if err := setGRO(l, on); err != nil {
			return err
		}
	}
	return nil
}

// startWireGuard starts a wireguard-go device "wg0" in each gateway and
// routes the remote network into it (with offloads, see setOffloads);
// stop undoes it.
func (n *wgNet) startWireGuard(offloads bool) (stop func(), err error) {
	type gwKey struct{ priv, pub []byte }
	keys := map[*topo.NS]gwKey{}
	for _, g := range n.gateways {
		priv, pub, err := wgKeys()
		if err != nil {
			return nil, err
		}
		keys[g] = gwKey{priv, pub}
	}
	var devs []*device.Device
	stop = func() {
		for _, d := range devs {
			d.Close()
		}
		n.kernelRoutes()
		if offloads {
			n.setOffloads(false)
		}
	}
	defer func() {
		if err != nil {
			stop()
		}
	}()
	for _, g := range n.gateways {
		other, remote := n.gwB, wgNetB
		if g == n.gwB {
			other, remote = n.gwA, wgNetA
		}
		peerAddr := netip.AddrPortFrom(wgGwBWan, wgPort)
		if g == n.gwB {
			peerAddr = netip.AddrPortFrom(wgGwAWan, wgPort)
		}
		uapi := fmt.Sprintf("private_key=%s\nlisten_port=%d\nreplace_peers=true\npublic_key=%s\nendpoint=%s\nreplace_allowed_ips=true\nallowed_ip=%s\n",
			hex.EncodeToString(keys[g].priv), wgPort, hex.EncodeToString(keys[other].pub), peerAddr, remote)
		var dev *device.Device
		if err := g.Do(func() error {
			td, err := tun.CreateTUN("wg0", wgInnerMT)
			if err != nil {
				return fmt.Errorf("harness: wireguard-go TUN: %w", err)
			}
			dev = device.NewDevice(newQuietTUN(td), conn.NewDefaultBind(), device.NewLogger(device.LogLevelSilent, ""))
			if err := dev.IpcSet(uapi); err != nil {
				dev.Close()
				return fmt.Errorf("harness: wireguard-go config: %w", err)
			}
			// Opens the UDP sockets, on this thread: in the namespace.
			if err := dev.Up(); err != nil {
				dev.Close()
				return fmt.Errorf("harness: wireguard-go up: %w", err)
			}
			return nil
		}); err != nil {
			return nil, err
		}
		devs = append(devs, dev)
		if _, err := g.IP("link", "set", "dev", "wg0", "up"); err != nil {
			return nil, err
		}
		if err := g.AddRoute(remote, netip.Addr{}, "wg0", 0); err != nil {
			return nil, err
		}
	}
	if offloads {
		if err := n.setOffloads(true); err != nil {
			return nil, err
		}
	}
	return stop, nil
}

// startESP starts an espxdp engine in each gateway with transform tr:
// ciphertext on the wan link, plaintext on the lan link.
func (n *wgNet) startESP(tr string, seed uint64) (stop func(), err error) {
	return n.startESPMode(tr, seed, false, false, false)
}

// startESPMode starts an espxdp engine in each gateway with transform
// tr; with useTUN as a route-based tunnel: ciphertext on the wan link,
// plaintext on a TUN device "esp0" with offloads (xdp.OpenTUNOffload)
// into which the kernel routes the remote network, and, if offloads, the
// hosts' and links' offloads on (setOffloads), as for wireguard-go with
// offloads (the AF_XDP path needs them off). With udp, the ciphertext
// side is an xdp.UDPPort on the wan address, port 4500 (ESP in UDP,
// RFC 3948, with UDP GSO and GRO, as wireguard-go's UDP side), instead
// of AF_XDP on the wan link: the SAs are UDP-encapsulated then.
func (n *wgNet) startESPMode(tr string, seed uint64, useTUN, offloads, udp bool) (stop func(), err error) {
	t, err := esp.ParseTransform(tr)
	if err != nil {
		return nil, err
	}
	var engines []*xdp.Engine
	var tuns []*xdp.TUN
	stop = func() {
		n.engines, n.tuns = nil, nil
		for _, e := range engines {
			e.Stop()
		}
		for _, d := range tuns {
			d.Close()
		}
		if useTUN {
			n.kernelRoutes()
			n.setOffloads(false)
		}
	}
	defer func() {
		if err != nil {
			stop()
		}
	}()
	keyAB, authAB := keys(t, seed)
	keyBA, authBA := keys(t, seed+1)
	const spiAB, spiBA = 0x0a0b0001, 0x0b0a0001
	for _, g := range n.gateways {
		local, remote := wgGwAWan, wgGwBWan
		outSPI, inSPI := uint32(spiAB), uint32(spiBA)
		outKey, outAuth, inKey, inAuth := keyAB, authAB, keyBA, authBA
		prot := wgNetB
		if g == n.gwB {
			local, remote = remote, local
			outSPI, inSPI = inSPI, outSPI
			outKey, outAuth, inKey, inAuth = inKey, inAuth, outKey, outAuth
			prot = wgNetA
		}
		out, err := sa.New(sa.Config{Name: "wg-out", SPI: outSPI, Direction: sa.Out, Mode: esp.Tunnel, Local: local, Remote: remote, UDPEncap: udp, Transform: t, Key: outKey, AuthKey: outAuth})
		if err != nil {
			return nil, err
		}
		in, err := sa.New(sa.Config{Name: "wg-in", SPI: inSPI, Direction: sa.In, Mode: esp.Tunnel, Local: local, Remote: remote, UDPEncap: udp, Transform: t, Key: inKey, AuthKey: inAuth})
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
		tunnel := sa.NewTunnel("peer")
		tunnel.SetOutbound(out)
		proc, err := sa.NewProcessor(sa.ProcessorOptions{SAD: sad, Tunnel: tunnel})
		if err != nil {
			return nil, err
		}
		ec := n.engineConfig(g, proc, prot, local)
		if udp {
			ec.Cipher, ec.LocalAddrs = xdp.Port{}, nil
			ec.CipherPort = xdp.NewUDPPort(xdp.UDPPortConfig{Local: netip.AddrPortFrom(local, esp.NATTPort)})
		}
		var dev *xdp.TUN
		if useTUN {
			if err := g.Do(func() (err error) { dev, err = xdp.OpenTUNOffload("esp0"); return err }); err != nil {
				return nil, fmt.Errorf("harness: TUN in %s: %w", g.Label, err)
			}
			tuns = append(tuns, dev)
			port, err := xdp.NewTUNPort([]*xdp.TUN{dev})
			if err != nil {
				return nil, err
			}
			ec.Plain, ec.ProtectedPrefixes, ec.PlainPort = nil, nil, port
			if _, err := g.IP("link", "set", "dev", "esp0", "mtu", strconv.Itoa(wgInnerMT), "up"); err != nil {
				return nil, err
			}
			if err := g.AddRoute(prot, netip.Addr{}, "esp0", 0); err != nil {
				return nil, err
			}
		}
		if n.tune != nil {
			n.tune(&ec)
		}
		e, err := xdp.NewEngine(ec)
		if err != nil {
			return nil, err
		}
		if err := g.Do(e.Start); err != nil {
			return nil, fmt.Errorf("harness: engine in %s: %w", g.Label, err)
		}
		engines = append(engines, e)
	}
	if useTUN && offloads {
		if err := n.setOffloads(true); err != nil {
			return nil, err
		}
	}
	n.engines, n.tuns = engines, tuns
	return stop, nil
}

// engineConfig is the configuration of an espxdp engine in gateway g
// with one queue: ciphertext on the wan link (to the other gateway),
// plaintext on the lan link (to g's host), prot the remote protected
// network, local g's wan address.
func (n *wgNet) engineConfig(g *topo.NS, proc *sa.Processor, prot netip.Prefix, local netip.Addr) xdp.EngineConfig {
	lanHost := n.aEth
	if g == n.gwB {
		lanHost = n.bEth
	}
	return xdp.EngineConfig{
		Processor:         proc,
		Cipher:            xdp.Port{Name: n.wanOf[g].Name, NextHop: n.peer[g].MAC},
		Plain:             &xdp.Port{Name: n.lanOf[g].Name, NextHop: lanHost.MAC},
		ProtectedPrefixes: []netip.Prefix{prot},
		LocalAddrs:        []netip.Addr{local},
	}
}

// wgUDPSizes are the inner packet sizes of the UDP runs.
var wgUDPSizes = []int{64, wgInnerMT}

// udpFrames are plaintext UDP packets from hostA to hostB (16 flows by
// source port; the source address stays hostA's, which WireGuard's
// allowed IPs require), addressed to gwA.
func (n *wgNet) udpFrames(size int) []frame {
	var fs []frame
	for i := range e2eTemplates {
		p := ipv4UDP(wgHostA, wgHostB, uint16(6000+i%e2eFlows), 9, size)
		fs = append(fs, frame{wire: ethernet(n.gwALan.MAC, n.aEth.MAC, p), inner: size})
	}
	return fs
}

// wgRun holds the state of the wg suite across its steps.
type wgRun struct {
	cfg  Config
	net  *wgNet
	gen  *generator         // AF_XDP on hostA's link, for the UDP runs
	pps  map[string]float64 // impl/transform/variant/size → delivered UDP pps
	gbps map[string]float64 // wgKey → median TCP Gbps
	// cpuGB and sirqGB are the TCP rows' gateway CPU and softirq
	// seconds per GB, by wgKey.
	cpuGB, sirqGB map[string]float64
	streams       []int // TCP connections of the TCP rows
	runs          int
	bytes         int64
}

func (r *wgRun) setup() error {
	if r.net != nil {
		return nil
	}
	if os.Geteuid() != 0 {
		return ErrNeedRoot
	}
	n, err := newWGNet()
	if err != nil {
		return err
	}
	r.net = n
	return nil
}

func (r *wgRun) close() {
	if r.gen != nil {
		r.gen.close()
		r.gen = nil
	}
	if r.net != nil {
		r.net.close()
		r.net = nil
	}
}

func (n *wgNet) close() error {
	n.untrack()
	return n.tp.Close()
}

// tcpRuns is what measureTCP measured: the transfers' goodputs and
// durations, the client's MSS, its retransmitted segments over all
// runs, and the ping before them.
type tcpRuns struct {
	gbps, secs []float64
	mss        int
	retrans    uint64
	ping       topo.PingResult
}

// tcpTransfer runs transfer number run of a measureTCP measurement
// hostA → hostB, within ctx, and returns its goodput in Gbit/s, its
// duration in seconds and the client's MSS.
type tcpTransfer func(ctx context.Context, run int) (gbps, secs float64, mss int, err error)

// measureTCP measures TCP goodput hostA → hostB with whatever the
// gateways run now: pings first (handshakes, and proof of a path), then
// start (when not nil), then runs transfers of size bytes each, done by
// transfer. The wg and peers suites share it.
func (n *wgNet) measureTCP(impl string, runs, pings int, size int64, start func() error, transfer tcpTransfer) (tcpRuns, error) {
	var m tcpRuns
	var err error
	for range 3 { // the first packets may wait for a handshake
		if m.ping, err = topo.Ping(n.hostA, wgHostB, pings, 56, 20*time.Millisecond, time.Second); err == nil && m.ping.Received > 0 {
			break
		}
	}
	if err != nil {
		return m, fmt.Errorf("harness: ping through %s: %w", impl, err)
	}
	if m.ping.Received == 0 {
		return m, fmt.Errorf("harness: no ping reply through %s", impl)
	}
	re0, err := tcpRetrans(n.hostA)
	if err != nil {
		return m, err
	}
	if start != nil {
		if err := start(); err != nil {
			return m, err
		}
	}
	// Generous bound: 50 Mbit/s at least.
	timeout := 30*time.Second + time.Duration(size*8/50e6)*time.Second
	for i := range runs {
		ctx, cancel := context.WithTimeout(context.Background(), timeout)
		gbps, secs, mss, err := transfer(ctx, i)
		cancel()
		if err != nil {
			return m, fmt.Errorf("harness: TCP through %s: %w", impl, err)
		}
		m.gbps = append(m.gbps, gbps)
		m.secs = append(m.secs, secs)
		m.mss = mss
	}
	re1, err := tcpRetrans(n.hostA)
	if err != nil {
		return m, err
	}
	m.retrans = re1 - re0
	return m, nil
}

// transferTCP is the tcpTransfer of the peers suite: size bytes in
// this process (topo.Transfer), seeded with seed plus the run number.
func (n *wgNet) transferTCP(size int64, seed uint64) tcpTransfer {
	return func(ctx context.Context, run int) (float64, float64, int, error) {
		tr, err := topo.Transfer(ctx, n.hostB, netip.AddrPortFrom(wgHostB, wgTCPPort), n.hostA, size, seed+uint64(run), nil)
		if err != nil {
			return 0, 0, 0, err
		}
		return tr.Gbps(), tr.Duration.Seconds(), tr.ClientMSS, nil
	}
}

// add records m in res: the median goodput and the rest.
func (m tcpRuns) add(res *Result, size int64) float64 {
	g := median(m.gbps)
	res.add("retransmits", float64(m.retrans), UnitPackets)
	res.add("Gbps", g, UnitGbps)
	res.add("min-Gbps", slices.Min(m.gbps), UnitGbps)
	res.add("max-Gbps", slices.Max(m.gbps), UnitGbps)
	res.add("seconds", median(m.secs), UnitSeconds)
	res.add("bytes", float64(size), UnitBytes)
	res.add("runs", float64(len(m.gbps)), "")
	res.add("mss", float64(m.mss), UnitBytes)
	res.add("ping-ms", avgMs(m.ping.RTTs), "ms")
	return g
}

// udp sends UDP from hostA to hostB as fast as hostA's AF_XDP generator
// can for the e2e duration, at each of wgUDPSizes, with whatever the
// gateways run now, and counts what hostB's interface received.
func (r *wgRun) udp(impl, tr, variant string) ([]Result, error) {
	n := r.net
	if r.gen == nil {
		g, err := newGenerator(n.aEth, 1)
		if err != nil {
			return nil, err
		}
		r.gen = g
	}
	d := time.Duration(r.cfg.E2EDurationNs)
	var out []Result
	for _, size := range wgUDPSizes {
		res := Result{Suite: "wg", Kind: KindWG, Impl: impl, Transform: tr, Traffic: "udp", Size: size, Op: variant}
		if err := r.gen.fill(n.udpFrames(size), 1); err != nil {
			return nil, err
		}
		r.gen.run(min(d/10, 50*time.Millisecond), 1) // warm up
		var sent, innerBytes, got uint64
		var el time.Duration
		// A short (quick-mode) window can fall entirely into a stall of
		// the peer on a loaded machine and deliver nothing: measure once
		// more then, and say so in the result ("retried").
		retried := 0
		for {
			rx0, err := settleRX(n.bEth)
			if err != nil {
				return nil, err
			}
			sent, innerBytes, el = r.gen.run(d, 1)
			rx1, err := settleRX(n.bEth)
			if err != nil {
				return nil, err
			}
			got = rx1 - rx0
			if got > 0 || sent == 0 || retried == 1 {
				break
			}
			retried++
		}
		res.add("retried", float64(retried), "")
		sec := el.Seconds()
		res.add("offered-Mpps", float64(sent)/sec/1e6, UnitMpps)
		res.add("Mpps", float64(got)/sec/1e6, UnitMpps)
		if sent > 0 {
			res.add("Gbps", float64(innerBytes)*float64(got)/float64(sent)*8/sec/1e9, UnitGbps)
			res.add("loss%", 100*(float64(sent)-float64(min(got, sent)))/float64(sent), UnitPercent)
		}
		res.add("sent", float64(sent), UnitPackets)
		res.add("delivered", float64(got), UnitPackets)
		res.add("seconds", sec, UnitSeconds)
		pps := float64(got) / sec
		r.pps[fmt.Sprintf("%s/%s/%s/%d", impl, tr, variant, size)] = pps
		wg := max(r.pps[fmt.Sprintf("wireguard-go//%s/%d", wgNoOffload, size)], r.pps[fmt.Sprintf("wireguard-go//%s/%d", wgOffload, size)])
		if strings.HasPrefix(impl, "espxdp") && wg > 0 {
			res.add("x-wireguard", pps/wg, UnitRatio)
		}
		if k := r.pps[fmt.Sprintf("kernel//%s/%d", wgNoOffload, size)]; impl != "kernel" && k > 0 {
			res.add("x-kernel", pps/k, UnitRatio)
		}
		out = append(out, res)
	}
	return out, nil
}

// measure runs the TCP transfers (one stream, then wgStreams), then the
// UDP runs (unless Config.WGNoUDP).
func (r *wgRun) measure(impl, tr, variant string) ([]Result, error) {
	var out []Result
	for _, streams := range r.streams {
		res, err := r.tcp(impl, tr, variant, streams)
		if err != nil {
			return nil, err
		}
		out = append(out, res)
	}
	if r.cfg.WGNoUDP {
		return out, nil
	}
	us, err := r.udp(impl, tr, variant)
	return append(out, us...), err
}

// tcpRetrans returns the TCP RetransSegs counter of ns (/proc/net/snmp
// read by a process in the namespace).
func tcpRetrans(ns *topo.NS) (uint64, error) {
	v, err := snmpCounters(ns, "Tcp:", "RetransSegs")
	if err != nil {
		return 0, err
	}
	return v[0], nil
}

// udpSockDrops returns the sum over the gateways of the UDP sockets'
// buffer drops (RcvbufErrors and SndbufErrors of /proc/net/snmp):
// datagrams the kernel dropped because a socket's buffer was full
// (wireguard-go's and espxdp's UDP ports alike), which no other counter
// of the suite sees.
func (n *wgNet) udpSockDrops() (uint64, error) {
	var sum uint64
	for _, g := range n.gateways {
		v, err := snmpCounters(g, "Udp:", "RcvbufErrors", "SndbufErrors")
		if err != nil {
			return 0, err
		}
		sum += v[0] + v[1]
	}
	return sum, nil
}

// snmpCounters returns the named counters of one protocol line
// ("Tcp:", "Udp:") of /proc/net/snmp, read by a process in ns.
func snmpCounters(ns *topo.NS, proto string, names ...string) ([]uint64, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	out, err := ns.Exec(ctx, "cat", "/proc/net/snmp")
	if err != nil {
		return nil, err
	}
	var head []string
	for _, l := range strings.Split(string(out), "\n") {
		f := strings.Fields(l)
		if len(f) < 2 || f[0] != proto {
			continue
		}
		if head == nil {
			head = f
			continue
		}
		vals := make([]uint64, len(names))
		for k, name := range names {
			i := slices.Index(head, name)
			if i <= 0 || i >= len(f) {
				return nil, fmt.Errorf("harness: no %s %s in /proc/net/snmp of %s", proto, name, ns.Label)
			}
			if vals[k], err = strconv.ParseUint(f[i], 10, 64); err != nil {
				return nil, err
			}
		}
		return vals, nil
	}
	return nil, fmt.Errorf("harness: no %s line in /proc/net/snmp of %s", proto, ns.Label)
}

func avgMs(d []time.Duration) float64 {
	if len(d) == 0 {
		return 0
	}
	var s time.Duration
	for _, x := range d {
		s += x
	}
	return s.Seconds() * 1e3 / float64(len(d))
}

// WGSteps returns the steps of the wg suite and a function that removes
// what they built; it must be called after the steps ran (or failed).
func WGSteps(cfg Config) ([]suiteStep, func()) {
	r := &wgRun{cfg: cfg, gbps: map[string]float64{}, pps: map[string]float64{}, cpuGB: map[string]float64{}, sirqGB: map[string]float64{},
		streams: wgStreams, runs: 3, bytes: cfg.WGBytes}
	if cfg.Quick {
		r.runs = 1
	}
	if len(cfg.WGStreams) > 0 {
		r.streams = cfg.WGStreams
	}
	steps := []suiteStep{
		{"wg kernel forwarding (no encryption)", func() ([]Result, error) {
			if err := r.setup(); err != nil {
				return nil, err
			}
			return r.measure("kernel", "", wgNoOffload)
		}},
	}
	for _, v := range []string{wgNoOffload, wgOffload} {
		steps = append(steps, suiteStep{"wg wireguard-go " + v, func() ([]Result, error) {
			if err := r.setup(); err != nil {
				return nil, err
			}
			stop, err := r.net.startWireGuard(v == wgOffload)
			if err != nil {
				return nil, err
			}
			defer stop()
			return r.measure("wireguard-go", "", v)
		}})
	}
	for _, tr := range wgESPSuit {
		steps = append(steps, suiteStep{"wg espxdp " + tr, func() ([]Result, error) {
			if err := r.setup(); err != nil {
				return nil, err
			}
			stop, err := r.net.startESP(tr, cfg.Seed)
			if err != nil {
				return nil, err
			}
			defer stop()
			return r.measure("espxdp", tr, wgNoOffload)
		}})
	}
	steps = append(steps, suiteStep{"wg espxdp busy-poll " + wgESPSuit[0], r.busyPollStep(wgESPSuit[0])})
	for _, tr := range wgESPSuit {
		steps = append(steps, suiteStep{"wg espxdp-tun " + tr, func() ([]Result, error) {
			if err := r.setup(); err != nil {
				return nil, err
			}
			// The host settings of wireguard-go's best single-stream run.
			v, _ := r.bestWG(1)
			stop, err := r.net.startESPMode(tr, cfg.Seed, true, v == wgOffload, false)
			if err != nil {
				return nil, err
			}
			defer stop()
			return r.measure("espxdp-tun", tr, v)
		}})
	}
	for _, tr := range wgESPSuit {
		steps = append(steps, suiteStep{"wg espxdp-tun-udp " + tr, func() ([]Result, error) {
			if err := r.setup(); err != nil {
				return nil, err
			}
			// The TUN side and host settings exactly as espxdp-tun; the
			// wan side ESP in UDP through xdp.UDPPort (GSO/GRO).
			v, _ := r.bestWG(1)
			stop, err := r.net.startESPMode(tr, cfg.Seed, true, v == wgOffload, true)
			if err != nil {
				return nil, err
			}
			defer stop()
			return r.measure("espxdp-tun-udp", tr, v)
		}})
	}
	steps = append(steps, suiteStep{"wg paired wireguard-go / espxdp-tun-udp", r.paired})
	return steps, r.close
}

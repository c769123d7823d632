//go:build linux

package main

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/espxdp/espxdp/esp"
	"github.com/espxdp/espxdp/ike"
	"github.com/espxdp/espxdp/internal/config"
	"github.com/espxdp/espxdp/internal/exampleenv"
	"github.com/espxdp/espxdp/internal/gateway"
	"github.com/espxdp/espxdp/internal/show"
	"github.com/espxdp/espxdp/internal/topo"
	"github.com/espxdp/espxdp/sa"
)

// The demo's network, in five namespaces joined by veth pairs:
//
//	hostA eth0 ── lan0 gwA wan0 ── toA wan toB ── wan0 gwB lan0 ── eth0 hostB
//
// The gateways run ESP over AF_XDP on both of their interfaces; wan is a
// plain IP router. Every address and MAC is fixed so that the gateways'
// configurations can name their next hops, and every neighbour is static
// (the XDP programs take the traffic, and no ARP is needed).
var (
	demoHostA   = netip.MustParsePrefix("10.1.0.2/24")
	demoGwALan  = netip.MustParsePrefix("10.1.0.1/24")
	demoGwBLan  = netip.MustParsePrefix("10.2.0.1/24")
	demoHostB   = netip.MustParsePrefix("10.2.0.2/24")
	demoNetA    = netip.MustParsePrefix("10.1.0.0/24")
	demoNetB    = netip.MustParsePrefix("10.2.0.0/24")
	demoPort    = uint16(5001)
	demoAToBSPI = uint32(0x1001)
	demoBToASPI = uint32(0x2001)
)

// demoWAN is the addressing of the wan: gwA's wan0 and the router's toA
// on one network, the router's toB and gwB's wan0 on another.
type demoWAN struct {
	GwA, WanA, WanB, GwB netip.Prefix
}

// The wan's addresses: IPv4 by default, IPv6 with -ipv6 (the outer
// network; the hosts stay IPv4).
var (
	demoWAN4 = demoWAN{
		GwA: netip.MustParsePrefix("192.0.2.1/24"), WanA: netip.MustParsePrefix("192.0.2.254/24"),
		WanB: netip.MustParsePrefix("198.51.100.254/24"), GwB: netip.MustParsePrefix("198.51.100.1/24")}
	demoWAN6 = demoWAN{
		GwA: netip.MustParsePrefix("2001:db8:a::1/64"), WanA: netip.MustParsePrefix("2001:db8:a::fe/64"),
		WanB: netip.MustParsePrefix("2001:db8:b::fe/64"), GwB: netip.MustParsePrefix("2001:db8:b::1/64")}
)

// demoMAC returns 02:00:00:00:net:host, a locally administered address.
func demoMAC(netw, host byte) net.HardwareAddr {
	return net.HardwareAddr{0x02, 0, 0, 0, netw, host}
}

var (
	macHostA  = demoMAC(0x01, 0x02)
	macGwALan = demoMAC(0x01, 0x01)
	macGwAWan = demoMAC(0x0a, 0x01)
	macWanA   = demoMAC(0x0a, 0xfe)
	macWanB   = demoMAC(0x0b, 0xfe)
	macGwBWan = demoMAC(0x0b, 0x01)
	macGwBLan = demoMAC(0x02, 0x01)
	macHostB  = demoMAC(0x02, 0x02)
)

// Defaults of the demo's flags.
const (
	demoDefaultSize      = 64 << 20
	demoDefaultTransform = "aes128gcm16"
	demoDefaultDuration  = 2 * time.Minute
	demoPingCount        = 5
	// demoMSSClamp is the gateways' TCP MSS clamp: the hosts' MTU is
	// 1500, and a full-size packet would not fit the wan's 1500 bytes
	// after ESP.
	demoMSSClamp = 1360
)

// demoOptions are the demo's settings.
type demoOptions struct {
	// Size is the number of bytes pushed from hostA to hostB.
	Size int64
	// Transform is the ESP transform of both SAs.
	Transform string
	// IPv6 runs the wan, and so ESP, over IPv6 (demoWAN6).
	IPv6 bool
	// IKE makes the gateways negotiate their SAs with IKEv2 (a peers:
	// section with a fresh random PSK) instead of static keys.
	IKE bool
	// Duration caps the setup and the traffic (0: no limit); the
	// cleanup always runs.
	Duration time.Duration
	// progressEvery is the least time between progress line updates
	// (0: 250ms).
	progressEvery time.Duration
	// onTransfer, if set, is called once when the transfer has started
	// (tests cancel the demo from it).
	onTransfer func()
	// editSpecs, if set, may change the gateways' configurations before
	// they start (tests break the tunnel with it).
	editSpecs func([]*gwSpec)
}

// demoResult is what a demo run measured. Namespaces are the ones it
// created (all removed when runDemo returns).
type demoResult struct {
	Ping       topo.PingResult
	Transfer   topo.TransferResult
	Reports    []*show.Report // gwA, gwB
	Flows      []demoFlow     // A→B, B→A
	Namespaces []*topo.NS
}

// demoFlow compares the counters of one direction's SA at both gateways.
type demoFlow struct {
	SA               string
	From, To         string
	Encaps, Decaps   uint64
	EncapsB, DecapsB uint64
	SenderDrops      uint64
	ReceiverDrops    uint64
	// PathDrops are the drops the interfaces between the two engines
	// counted in this direction (sender's wan TX, the router's RX and
	// TX, the receiver's wan RX, which includes frames the receiving
	// engine's AF_XDP rings had no room for): under a TCP transfer on a
	// busy machine a few are normal, and TCP retransmits them.
	PathDrops uint64
}

// Agree reports whether every packet encrypted by the sender was
// decrypted by the receiver, or lost where an interface counted it.
func (f demoFlow) Agree() bool {
	return f.Encaps > 0 && f.Decaps <= f.Encaps && f.Encaps-f.Decaps <= f.PathDrops
}

// demoStall is how long a transfer may make no progress.
const demoStall = 15 * time.Second

// errStalled: the transfer made no progress for demoStall.
var errStalled = fmt.Errorf("transfer stalled: no progress for %v", demoStall)

// errDemoFailed is wrapped by the error of a demo whose checks failed.
var errDemoFailed = errors.New("demo failed")

func cmdDemo(args []string, stdout, stderr io.Writer) error {
	fs := newFlags("demo", stderr)
	size := fs.String("size", "64MiB", "bytes to transfer from hostA to hostB (e.g. 4MiB, 1GiB, 1000000)")
	transform := fs.String("transform", demoDefaultTransform, "ESP `transform` of both SAs (see esp.ParseTransform)")
	duration := fs.Duration("duration", demoDefaultDuration, "give up after this long (0: no limit)")
	ipv6 := fs.Bool("ipv6", false, "run the wan between the gateways, and so ESP, over IPv6")
	withIKE := fs.Bool("ike", false, "the gateways negotiate the SAs with IKEv2 (PSK) instead of static keys")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	n, err := parseSize(*size)
	if err != nil {
		return usagef("demo: -size: %v", err)
	}
	if _, err := esp.ParseTransform(*transform); err != nil {
		if _, perr := ike.ESPProposal([]string{*transform}, "no"); perr == nil {
			// "aes256gcm16-ecp384": an IKE ESP proposal with a PFS group.
			return usagef("demo: -transform %q: an ESP transform without a DH group is needed here (PFS groups belong in a peer's esp_proposals)", *transform)
		}
		return usagef("demo: -transform: %v", err)
	}
	if *duration < 0 {
		return usagef("demo: -duration must not be negative")
	}
	if err := demoPrivileged(); err != nil {
		return err
	}
	// Ctrl-C, kill and a closed terminal stop the demo, which then
	// cleans up. A closed output pipe ("espxdp demo | head") must not
	// kill it before it has: writes fail instead.
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM, syscall.SIGHUP)
	defer stop()
	signal.Ignore(syscall.SIGPIPE)
	_, err = runDemo(ctx, demoOptions{Size: n, Transform: *transform, Duration: *duration, IPv6: *ipv6, IKE: *withIKE}, stdout, stderr)
	return err
}

// parseSize parses a byte count with an optional binary (KiB, MiB, GiB)
// or decimal (kB, MB, GB) suffix.
func parseSize(s string) (int64, error) {
	units := []struct {
		suffix string
		mult   int64
	}{{"KiB", 1 << 10}, {"MiB", 1 << 20}, {"GiB", 1 << 30}, {"kB", 1e3}, {"KB", 1e3}, {"MB", 1e6}, {"GB", 1e9}, {"B", 1}}
	num, mult := strings.TrimSpace(s), int64(1)
	for _, u := range units {
		if strings.HasSuffix(num, u.suffix) {
			num, mult = strings.TrimSpace(strings.TrimSuffix(num, u.suffix)), u.mult
			break
		}
	}
	f, err := strconv.ParseFloat(num, 64)
	if err != nil || f <= 0 || f*float64(mult) > 1<<40 {
		return 0, fmt.Errorf("bad size %q (want e.g. 64MiB, between 1 byte and 1 TiB)", s)
	}
	return max(1, int64(f*float64(mult))), nil
}

// Capabilities the demo needs: namespaces and links (NET_ADMIN,
// SYS_ADMIN for setns and the netns bind mounts), ping (NET_RAW), XDP
// programs and AF_XDP sockets (BPF, or SYS_ADMIN on older kernels).
const (
	capNetAdmin = 12
	capNetRaw   = 13
	capSysAdmin = 21
)

// errNotPrivileged is returned when the demo lacks the privileges it
// needs.
var errNotPrivileged = errors.New("demo needs root: it creates network namespaces and attaches XDP programs; run it with sudo, e.g. sudo go run ./cmd/espxdp demo")

// checkPrivileges refuses to run without root. A non-root user passes
// only if the needed capabilities are both effective and ambient (the
// demo runs ip(8), which must inherit them). procStatus returns the
// contents of /proc/self/status.
func checkPrivileges(euid int, procStatus func() (string, error)) error {
	if euid == 0 {
		return nil
	}
	status, err := procStatus()
	if err != nil {
		return errNotPrivileged
	}
	want := uint64(1)<<capNetAdmin | 1<<capNetRaw | 1<<capSysAdmin
	eff, amb := capSet(status, "CapEff"), capSet(status, "CapAmb")
	if eff&want == want && amb&want == want {
		return nil
	}
	return errNotPrivileged
}

// demoPrivileged checks the process's privileges (a variable so tests
// can pretend to be unprivileged).
var demoPrivileged = func() error { return checkPrivileges(os.Geteuid(), readProcStatus) }

func readProcStatus() (string, error) {
	b, err := os.ReadFile("/proc/self/status")
	return string(b), err
}

// capSet returns the capability mask of the /proc/PID/status line field
// ("CapEff:\t000001ffffffffff"), 0 if absent.
func capSet(status, field string) uint64 {
	sc := bufio.NewScanner(strings.NewReader(status))
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), ":")
		if ok && k == field {
			x, err := strconv.ParseUint(strings.TrimSpace(v), 16, 64)
			if err == nil {
				return x
			}
		}
	}
	return 0
}

// demo is one run of the demo.
type demo struct {
	opts   demoOptions
	tr     esp.Transform
	out    io.Writer // steps, tables, summary
	status io.Writer // the progress line
	tp     *topo.Topology
	res    *demoResult

	hostA, gwA, wan, gwB, hostB *topo.NS
	pskDir, pskFile             string // --ike: the PSK both gateways read
	gws                         []demoGateway
	failures                    []string
}

// runDemo builds the network, runs the gateways and the traffic, prints
// the results and removes everything it created, whether it succeeded,
// failed or ctx was cancelled. It returns an error wrapping
// errDemoFailed when a check failed, or the error that stopped it.
func runDemo(ctx context.Context, opts demoOptions, stdout, stderr io.Writer) (*demoResult, error) {
	tr, err := esp.ParseTransform(opts.Transform)
	if err != nil {
		return nil, err
	}
	if opts.Size <= 0 {
		return nil, fmt.Errorf("demo: size %d", opts.Size)
	}
	if opts.progressEvery == 0 {
		opts.progressEvery = 250 * time.Millisecond
	}
	if opts.Duration > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, opts.Duration)
		defer cancel()
	}
	d := &demo{opts: opts, tr: tr, out: stdout, status: &lockedWriter{w: stderr}, tp: topo.New("demo"), res: &demoResult{}}
	runErr := d.run(ctx)
	if cerr := d.cleanup(); cerr != nil {
		runErr = errors.Join(runErr, cerr)
	}
	switch {
	case runErr != nil && ctx.Err() != nil:
		if cause := context.Cause(ctx); !errors.Is(runErr, cause) {
			runErr = fmt.Errorf("%w: %w", cause, runErr)
		}
		runErr = fmt.Errorf("demo stopped: %w", runErr)
		fmt.Fprintf(d.out, "\nFAIL: %v\n", runErr)
	case runErr != nil:
		fmt.Fprintf(d.out, "\nFAIL: %v\n", runErr)
	case len(d.failures) > 0:
		runErr = fmt.Errorf("%w: %s", errDemoFailed, strings.Join(d.failures, "; "))
		fmt.Fprintf(d.out, "\nFAIL: %s\n", strings.Join(d.failures, "; "))
	default:
		t := d.res.Transfer
		fmt.Fprintf(d.out, "\nOK: ping %d/%d, %s intact hostA → hostB at %s through ESP %s over AF_XDP; gateway counters agree\n",
			d.res.Ping.Received, d.res.Ping.Sent, mib(t.Received), rate(t.Gbps()*1e9), d.tr)
	}
	return d.res, runErr
}

// step prints a finished step: ✓ when err is nil, ✗ and the error
// otherwise; it returns err.
func (d *demo) step(err error, format string, args ...any) error {
	msg := fmt.Sprintf(format, args...)
	if err != nil {
		fmt.Fprintf(d.out, "  ✗ %s: %v\n", msg, err)
		return err
	}
	fmt.Fprintf(d.out, "  ✓ %s\n", msg)
	return nil
}

// check records a check that must hold for the demo to pass.
func (d *demo) check(ok bool, format string, args ...any) {
	msg := fmt.Sprintf(format, args...)
	if ok {
		fmt.Fprintf(d.out, "  ✓ %s\n", msg)
		return
	}
	fmt.Fprintf(d.out, "  ✗ %s\n", msg)
	d.failures = append(d.failures, msg)
}

func (d *demo) plan() {
	w := d.wanNet()
	roleA, roleB := "SA a-to-b out, b-to-a in", "SA a-to-b in, b-to-a out"
	if d.opts.IKE {
		roleA, roleB = "IKE peer gwB (initiator)", "IKE peer gwA (responder)"
	}
	fmt.Fprintf(d.out, `espxdp demo: two ESP gateways over AF_XDP, in network namespaces

  hostA eth0 ── lan0 gwA wan0 ══ toA wan toB ══ wan0 gwB lan0 ── eth0 hostB
        (── plaintext, ══ ESP; gwA and gwB run AF_XDP on both interfaces)

  hostA  eth0 %-18s default route via %s
  gwA    lan0 %-18s wan0 %-20s AF_XDP on both, %s
  wan    toA  %-18s toB  %-20s IP forwarding
  gwB    wan0 %-18s lan0 %-20s AF_XDP on both, %s
  hostB  eth0 %-18s default route via %s

  %s
  traffic: ping %s → %s, then %s over TCP %s → %s:%d (SHA-256 checked)

`,
		demoHostA, demoGwALan.Addr(),
		demoGwALan, w.GwA, roleA,
		w.WanA, w.WanB,
		w.GwB, demoGwBLan, roleB,
		demoHostB, demoGwBLan.Addr(),
		d.keying(),
		demoHostA.Addr(), demoHostB.Addr(), mib(d.opts.Size), demoHostA.Addr(), demoHostB.Addr(), demoPort)
}

// writePSK writes a random PSK for both gateways.
func (d *demo) writePSK() error {
	dir, err := os.MkdirTemp("", "espxdp-demo")
	if err != nil {
		return err
	}
	d.pskDir = dir
	k := make([]byte, 32)
	rand.Read(k)
	d.pskFile = filepath.Join(dir, "peer.psk")
	err = os.WriteFile(d.pskFile, []byte(fmt.Sprintf("0x%x\n", k)), 0o600)
	clear(k)
	return err
}

// keying describes how the SAs get their keys.
func (d *demo) keying() string {
	if d.opts.IKE {
		return fmt.Sprintf("ESP %s tunnel negotiated with IKEv2 (gwA initiates, random PSK): SPIs and keys from IKE", d.tr)
	}
	return fmt.Sprintf("ESP %s tunnel, SPI %#x (A→B) and %#x (B→A), fresh random keys", d.tr, demoAToBSPI, demoBToASPI)
}

// waitIKE waits until gwA's peer has an IKE SA and a child SA.
func (d *demo) waitIKE(ctx context.Context) error {
	type ikeInfo interface{ IKEInfo() []gateway.IKEPeerInfo }
	g, ok := d.gws[0].(ikeInfo)
	if !ok {
		return errors.New("gateway without IKE")
	}
	deadline := time.Now().Add(15 * time.Second)
	for {
		for _, p := range g.IKEInfo() {
			for _, s := range p.IKESAs {
				for _, c := range s.Children {
					if p.Up && c.Primary {
						return d.step(nil, "IKEv2: IKE SA %s (%s), child SA SPIs %s in, %s out, %s === %s",
							s.SPIs, s.Proposal, c.SPIIn, c.SPIOut, strings.Join(c.LocalTS, ","), strings.Join(c.RemoteTS, ","))
					}
				}
			}
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		if time.Now().After(deadline) {
			return d.step(errors.New("no IKE SA after 15s"), "IKEv2 negotiation")
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func (d *demo) run(ctx context.Context) error {
	d.plan()
	if err := d.step(d.build(), "namespaces and veth links"); err != nil {
		return err
	}
	names := make([]string, 0, 5)
	for _, ns := range d.tp.Namespaces() {
		names = append(names, ns.Label+"="+ns.Name)
	}
	fmt.Fprintf(d.out, "      %s\n", strings.Join(names, " "))
	if err := ctx.Err(); err != nil {
		return err
	}

	if d.opts.IKE {
		if err := d.step(d.writePSK(), "random IKE pre-shared key (mode 0600, removed at the end)"); err != nil {
			return err
		}
	}
	specs := d.gatewaySpecs()
	if d.opts.editSpecs != nil {
		d.opts.editSpecs(specs)
	}
	for _, s := range specs {
		g, err := startGateway(s.ns, s, d.status)
		if err := d.step(err, "gateway %s: ESP between %s (%s) and %s (%s)", s.Label, s.Plain, s.PlainAddr, s.Cipher, s.Local); err != nil {
			return err
		}
		d.gws = append(d.gws, g)
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	if d.opts.IKE {
		if err := d.waitIKE(ctx); err != nil {
			return err
		}
	}

	err := d.traffic(ctx)
	if err == nil && ctx.Err() == nil {
		d.compareCounters(ctx)
	} else {
		d.res.Reports = d.reports() // for the tables: drops explain failures
	}
	fmt.Fprintln(d.out)
	for _, r := range d.res.Reports {
		if err := show.Text(d.out, r); err != nil {
			return err
		}
		fmt.Fprintln(d.out)
	}
	if t := d.res.Transfer; t.Intact() && t.Received == d.opts.Size {
		fmt.Fprintf(d.out, "throughput: %s in %v = %s (TCP goodput hostA → hostB through both gateways)\n",
			mib(t.Received), t.Duration.Round(time.Millisecond), rate(t.Gbps()*1e9))
	}
	if err == nil {
		err = ctx.Err()
	}
	return err
}

// traffic pings hostB from hostA and, if that works, pushes the
// transfer.
func (d *demo) traffic(ctx context.Context) error {
	ping, err := topo.Ping(d.hostA, demoHostB.Addr(), demoPingCount, 56, 100*time.Millisecond, 2*time.Second)
	d.res.Ping = ping
	if err != nil {
		return d.step(err, "ping %s → %s", demoHostA.Addr(), demoHostB.Addr())
	}
	ok := ping.Sent > 0 && ping.Received == ping.Sent
	d.check(ok, "ping %s → %s: %d/%d replies%s",
		demoHostA.Addr(), demoHostB.Addr(), ping.Received, ping.Sent, rttSummary(ping.RTTs))
	if err := ctx.Err(); err != nil {
		return err
	}
	if ping.Received == 0 {
		fmt.Fprintf(d.out, "  - transfer skipped: the tunnel does not answer\n")
		return nil
	}
	return d.transfer(ctx)
}

// build creates the namespaces, links, addresses, routes and neighbours.
func (d *demo) build() error {
	w := d.wanNet()
	var err error
	add := func(label string) *topo.NS {
		if err != nil {
			return nil
		}
		var ns *topo.NS
		ns, err = d.tp.AddNS(label)
		return ns
	}
	d.hostA, d.gwA, d.wan, d.gwB, d.hostB = add("hostA"), add("gwA"), add("wan"), add("gwB"), add("hostB")
	d.res.Namespaces = d.tp.Namespaces()
	if err != nil {
		return err
	}
	type end struct {
		ns   *topo.NS
		dev  string
		mac  net.HardwareAddr
		addr netip.Prefix
	}
	type pair struct {
		a, b end
	}
	pairs := []pair{
		{end{d.hostA, "eth0", macHostA, demoHostA}, end{d.gwA, "lan0", macGwALan, demoGwALan}},
		{end{d.gwA, "wan0", macGwAWan, w.GwA}, end{d.wan, "toA", macWanA, w.WanA}},
		{end{d.wan, "toB", macWanB, w.WanB}, end{d.gwB, "wan0", macGwBWan, w.GwB}},
		{end{d.gwB, "lan0", macGwBLan, demoGwBLan}, end{d.hostB, "eth0", macHostB, demoHostB}},
	}
	for _, p := range pairs {
		la, lb, err := d.tp.AddVeth(p.a.ns, p.a.dev, p.b.ns, p.b.dev, topo.VethOptions{MACA: p.a.mac, MACB: p.b.mac})
		if err != nil {
			return err
		}
		for _, x := range []struct {
			l        *topo.Link
			me, peer end
		}{{la, p.a, p.b}, {lb, p.b, p.a}} {
			if err := x.l.AddAddr(x.me.addr); err != nil {
				return err
			}
			if err := x.l.SetNeighbour(x.peer.addr.Addr(), x.peer.mac); err != nil {
				return err
			}
		}
	}
	return errors.Join(
		disableTXChecksum(d.hostA, "eth0"),
		disableTXChecksum(d.hostB, "eth0"),
		d.hostA.AddRoute(netip.MustParsePrefix("0.0.0.0/0"), demoGwALan.Addr(), "eth0", 0),
		d.hostB.AddRoute(netip.MustParsePrefix("0.0.0.0/0"), demoGwBLan.Addr(), "eth0", 0),
		d.gwA.AddRoute(defaultRoute(w.WanA.Addr()), w.WanA.Addr(), "wan0", 0),
		d.gwB.AddRoute(defaultRoute(w.WanB.Addr()), w.WanB.Addr(), "wan0", 0),
		// The gateways' kernels never forward: plaintext that the XDP
		// programs do not take goes nowhere.
		d.gwA.Sysctl("net.ipv4.ip_forward", "0"),
		d.gwB.Sysctl("net.ipv4.ip_forward", "0"),
		d.wan.Sysctl("net.ipv4.ip_forward", "1"),
		d.wan.Sysctl("net.ipv6.conf.all.forwarding", "1"),
	)
}

// wanNet is the wan's addressing: IPv6 with -ipv6, else IPv4.
func (d *demo) wanNet() demoWAN {
	if d.opts.IPv6 {
		return demoWAN6
	}
	return demoWAN4
}

// defaultRoute is 0.0.0.0/0 or ::/0, the family of a.
func defaultRoute(a netip.Addr) netip.Prefix {
	if a.Is4() {
		return netip.MustParsePrefix("0.0.0.0/0")
	}
	return netip.MustParsePrefix("::/0")
}

// gatewaySpecs returns the two gateways' configurations, with fresh
// random keys shared by both ends of each SA.
func (d *demo) gatewaySpecs() []*gwSpec {
	w := d.wanNet()
	key := func(n int) []byte {
		if n == 0 {
			return nil
		}
		b := make([]byte, n)
		rand.Read(b)
		return b
	}
	ab := demoSAKeys{Key: key(d.tr.KeyLen()), AuthKey: key(d.tr.AuthKeyLen())}
	ba := demoSAKeys{Key: key(d.tr.KeyLen()), AuthKey: key(d.tr.AuthKeyLen())}
	a := &gwSpec{ns: d.gwA, Label: "gwA", Transform: d.tr,
		Cipher: "wan0", CipherNextHop: macWanA, Plain: "lan0", PlainNextHop: macHostA, PlainAddr: demoGwALan.Addr(),
		Protected: demoNetB, Local: w.GwA.Addr(), Remote: w.GwB.Addr(),
		Out: demoSA{Name: "a-to-b", SPI: demoAToBSPI, demoSAKeys: ab},
		In:  demoSA{Name: "b-to-a", SPI: demoBToASPI, demoSAKeys: ba}}
	b := &gwSpec{ns: d.gwB, Label: "gwB", Transform: d.tr,
		Cipher: "wan0", CipherNextHop: macWanB, Plain: "lan0", PlainNextHop: macHostB, PlainAddr: demoGwBLan.Addr(),
		Protected: demoNetA, Local: w.GwB.Addr(), Remote: w.GwA.Addr(),
		Out: demoSA{Name: "b-to-a", SPI: demoBToASPI, demoSAKeys: ba},
		In:  demoSA{Name: "a-to-b", SPI: demoAToBSPI, demoSAKeys: ab}}
	if d.opts.IKE {
		a.IKE, a.PSKFile, a.LocalNet, a.Initiator, a.PeerName = true, d.pskFile, demoNetA, true, "gwB"
		b.IKE, b.PSKFile, b.LocalNet, b.PeerName = true, d.pskFile, demoNetB, "gwA"
	}
	return []*gwSpec{a, b}
}

// transfer pushes the data from hostA to hostB with a progress line.
func (d *demo) transfer(ctx context.Context) error {
	// A transfer that makes no progress for demoStall is given up.
	tctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	var lastSent atomic.Int64
	lastSent.Store(-1)
	watchDone := make(chan struct{})
	defer close(watchDone)
	go func() {
		tick := time.NewTicker(demoStall / 10)
		defer tick.Stop()
		seen, since := int64(-1), time.Now()
		for {
			select {
			case <-watchDone:
				return
			case now := <-tick.C:
				if n := lastSent.Load(); n != seen {
					seen, since = n, now
				} else if now.Sub(since) >= demoStall {
					cancel(errStalled)
					return
				}
			}
		}
	}()
	var mu sync.Mutex
	start := time.Now()
	last := time.Time{}
	started := false
	progress := func(sent int64) {
		lastSent.Store(sent)
		mu.Lock()
		defer mu.Unlock()
		if !started {
			started = true
			if d.opts.onTransfer != nil {
				d.opts.onTransfer()
			}
		}
		now := time.Now()
		if now.Sub(last) < d.opts.progressEvery && sent < d.opts.Size {
			return
		}
		last = now
		el := now.Sub(start).Seconds()
		r := 0.0
		if el > 0 {
			r = float64(sent) * 8 / el
		}
		fmt.Fprintf(d.status, "\r  transfer %5.1f/%.1f MiB  %s   ", float64(sent)/(1<<20), float64(d.opts.Size)/(1<<20), rate(r))
	}
	var seed [8]byte
	rand.Read(seed[:])
	res, err := topo.Transfer(tctx, d.hostB, netip.AddrPortFrom(demoHostB.Addr(), demoPort), d.hostA,
		d.opts.Size, binary.LittleEndian.Uint64(seed[:]), progress)
	mu.Lock()
	if started {
		fmt.Fprint(d.status, "\n")
	}
	mu.Unlock()
	d.res.Transfer = res
	switch {
	case ctx.Err() != nil:
		err = fmt.Errorf("stopped after %s: %w", mib(res.Sent), context.Cause(ctx))
	case context.Cause(tctx) == errStalled:
		err = fmt.Errorf("%w (%v)", errStalled, err)
	}
	if err != nil && !errors.Is(err, topo.ErrCorrupt) {
		return d.step(err, "transfer %s %s → %s", mib(d.opts.Size), demoHostA.Addr(), demoHostB.Addr())
	}
	mss := ""
	if res.ClientMSS > 0 {
		mss = fmt.Sprintf(", TCP MSS %d (gateways clamp to %d)", res.ClientMSS, demoMSSClamp)
	}
	d.check(res.Intact() && res.Received == d.opts.Size, "transfer %s → %s: %s sent, %s received, SHA-256 %s, %s%s",
		demoHostA.Addr(), demoHostB.Addr(), mib(res.Sent), mib(res.Received), sumVerdict(res), rate(res.Gbps()*1e9), mss)
	return nil
}

func sumVerdict(r topo.TransferResult) string {
	if r.SentSum == r.ReceivedSum {
		return "equal (" + hex.EncodeToString(r.ReceivedSum[:4]) + "…)"
	}
	return "DIFFERENT"
}

// compareCounters waits until the gateways' SA counters stop moving,
// then checks that each direction's packets were decrypted as often as
// they were encrypted.
func (d *demo) compareCounters(ctx context.Context) {
	snapshot := d.reports
	key := func(rs []*show.Report) string {
		var b strings.Builder
		for _, r := range rs {
			for _, s := range r.SAs {
				fmt.Fprintf(&b, "%d/%d/%d ", s.EncapsPkts, s.DecapsPkts, s.Drops.Total())
			}
		}
		return b.String()
	}
	// Quiet: the counters unchanged over 300ms, for at most 5s.
	rs := snapshot()
	prev := key(rs)
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) && ctx.Err() == nil {
		time.Sleep(300 * time.Millisecond)
		rs = snapshot()
		k := key(rs)
		if k == prev {
			break
		}
		prev = k
	}
	d.res.Reports = rs
	d.res.Flows = nil
	aToB, bToA := d.pathDrops()
	drops := [2]uint64{aToB, bToA} // by sending gateway
	for _, f := range []struct {
		name     string
		from, to int
	}{{"a-to-b", 0, 1}, {"b-to-a", 1, 0}} {
		fl := demoFlow{SA: f.name, From: []string{"gwA", "gwB"}[f.from], To: []string{"gwA", "gwB"}[f.to]}
		inName := f.name
		if s, ok := findSA(rs[f.from], f.name, sa.Out); ok {
			fl.Encaps, fl.EncapsB, fl.SenderDrops = s.EncapsPkts, s.EncapsBytes, s.Drops.Total()
		} else if s, ok := onlySA(rs[f.from], sa.Out); ok && d.opts.IKE {
			// Negotiated SAs are named peer-out-SPI and peer-in-SPI.
			fl.SA = fmt.Sprintf("%s (SPI 0x%08x)", f.name, s.SPI)
			fl.Encaps, fl.EncapsB, fl.SenderDrops = s.EncapsPkts, s.EncapsBytes, s.Drops.Total()
			inName = fmt.Sprintf("%s-in-%08x", []string{"gwA", "gwB"}[f.from], s.SPI)
		}
		if s, ok := findSA(rs[f.to], inName, sa.In); ok {
			fl.Decaps, fl.DecapsB, fl.ReceiverDrops = s.DecapsPkts, s.DecapsBytes, s.Drops.Total()
		}
		fl.PathDrops = drops[f.from]
		d.res.Flows = append(d.res.Flows, fl)
		d.check(fl.Agree(), "counters %s: %s encapsulated %d packets, %s decapsulated %d (drops %d at %s, %d at %s, %d counted by the links between)",
			fl.SA, fl.From, fl.Encaps, fl.To, fl.Decaps, fl.SenderDrops, fl.From, fl.ReceiverDrops, fl.To, fl.PathDrops)
	}
}

// pathDrops returns the drops counted by the interfaces between the
// gateways, gwA → gwB and back: gwA's wan0, the router's toA and toB,
// gwB's wan0. Unreadable counters count as none.
func (d *demo) pathDrops() (aToB, bToA uint64) {
	var links []*topo.Link
	for _, h := range []struct {
		ns  *topo.NS
		dev string
	}{{d.gwA, "wan0"}, {d.wan, "toA"}, {d.wan, "toB"}, {d.gwB, "wan0"}} {
		l, err := h.ns.Link(h.dev)
		if err != nil {
			return 0, 0
		}
		links = append(links, l)
	}
	aToB, bToA, err := exampleenv.PathDrops(links...)
	if err != nil {
		return 0, 0
	}
	return aToB, bToA
}

// reports returns the gateways' SA reports.
func (d *demo) reports() []*show.Report {
	rs := make([]*show.Report, len(d.gws))
	for i, g := range d.gws {
		rs[i] = g.Report(fmt.Sprintf("gateway %s (%s): show crypto ipsec sa", []string{"gwA", "gwB"}[i], d.gwNS(i).Name))
	}
	return rs
}

func (d *demo) gwNS(i int) *topo.NS {
	if i == 0 {
		return d.gwA
	}
	return d.gwB
}

// onlySA returns the report's one SA of direction dir.
func onlySA(r *show.Report, dir sa.Direction) (sa.Stats, bool) {
	var out []sa.Stats
	for _, s := range r.SAs {
		if s.Direction == dir {
			out = append(out, s)
		}
	}
	if len(out) != 1 {
		return sa.Stats{}, false
	}
	return out[0], true
}

func findSA(r *show.Report, name string, dir sa.Direction) (sa.Stats, bool) {
	for _, s := range r.SAs {
		if s.Name == name && s.Direction == dir {
			return s, true
		}
	}
	return sa.Stats{}, false
}

// cleanup stops the gateways and deletes the namespaces (and with them
// every veth end).
func (d *demo) cleanup() error {
	var errs []error
	for i := len(d.gws) - 1; i >= 0; i-- {
		if err := d.gws[i].Close(); err != nil {
			errs = append(errs, err)
		}
	}
	d.gws = nil
	if d.pskDir != "" {
		if err := os.RemoveAll(d.pskDir); err != nil {
			errs = append(errs, err)
		}
	}
	nss := d.tp.Namespaces()
	if err := d.tp.Close(); err != nil {
		errs = append(errs, err)
	}
	var left []string
	for _, ns := range nss {
		if ns.Exists() {
			left = append(left, ns.Name)
		}
	}
	if len(left) > 0 {
		errs = append(errs, fmt.Errorf("namespaces left behind: %s", strings.Join(left, ", ")))
	}
	err := errors.Join(errs...)
	d.step(err, "removed the gateways and %d namespaces", len(nss))
	return err
}

// rttSummary formats the min/avg/max of rtts.
func rttSummary(rtts []time.Duration) string {
	if len(rtts) == 0 {
		return ""
	}
	lo, hi, sum := rtts[0], rtts[0], time.Duration(0)
	for _, r := range rtts {
		lo, hi, sum = min(lo, r), max(hi, r), sum+r
	}
	ms := func(x time.Duration) string { return strconv.FormatFloat(float64(x)/1e6, 'f', 3, 64) }
	return fmt.Sprintf(", rtt min/avg/max %s/%s/%s ms", ms(lo), ms(sum/time.Duration(len(rtts))), ms(hi))
}

func mib(n int64) string { return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20)) }

// rate formats bits per second.
func rate(bps float64) string {
	switch {
	case bps >= 1e9:
		return fmt.Sprintf("%.2f Gbit/s", bps/1e9)
	case bps >= 1e6:
		return fmt.Sprintf("%.0f Mbit/s", bps/1e6)
	}
	return fmt.Sprintf("%.0f kbit/s", bps/1e3)
}

// demoSAKeys are an SA's keys.
type demoSAKeys struct {
	Key, AuthKey []byte
}

// demoSA is one SA of a gateway.
type demoSA struct {
	Name string
	SPI  uint32
	demoSAKeys
}

// gwSpec describes one gateway of the demo; yaml renders it in the
// daemon's configuration format.
type gwSpec struct {
	ns                          *topo.NS
	Label                       string
	Transform                   esp.Transform
	Cipher, Plain               string // interface names
	CipherNextHop, PlainNextHop net.HardwareAddr
	PlainAddr                   netip.Addr
	Protected                   netip.Prefix
	Local, Remote               netip.Addr
	Out, In                     demoSA
	// IKE, when set, replaces the static SAs by an IKE peer with this
	// PSK file; LocalNet is the gateway's own protected network and
	// Initiator says whether it starts the negotiation.
	IKE       bool
	PSKFile   string
	LocalNet  netip.Prefix
	Initiator bool
	PeerName  string
}

// yaml returns the gateway's configuration file. It contains the keys:
// never print it.
func (s *gwSpec) yaml() []byte {
	var b strings.Builder
	fmt.Fprintf(&b, "gateway:\n  queues: 1\n  mss_clamp: %d\n  decrement_ttl: true\n  icmp_errors: true\n  log_drops: 1s\n", demoMSSClamp)
	fmt.Fprintf(&b, "interfaces:\n  cipher: {name: %s, next_hop: %q}\n  plain: {name: %s, next_hop: %q, address: %s}\n",
		s.Cipher, s.CipherNextHop, s.Plain, s.PlainNextHop, s.PlainAddr)
	fmt.Fprintf(&b, "protected: [%s]\n", s.Protected)
	if s.IKE {
		start := "none"
		if s.Initiator {
			start = "start"
		}
		fmt.Fprintf(&b, "tunnels:\n  - {name: to-peer}\npeers:\n  - name: %s\n    local: %s\n    remote: %s\n    psk_file: %s\n", s.PeerName, s.Local, s.Remote, s.PSKFile)
		fmt.Fprintf(&b, "    local_ts: [%s]\n    remote_ts: [%s]\n    esp_proposals: [%s]\n    start_action: %s\n    retransmit_timeout: 500ms\n", s.LocalNet, s.Protected, s.Transform, start)
		return []byte(b.String())
	}
	fmt.Fprintf(&b, "tunnels:\n  - {name: to-peer, out: [%s], in: [%s]}\n", s.Out.Name, s.In.Name)
	b.WriteString("sas:\n")
	for _, x := range []struct {
		sa  demoSA
		dir string
	}{{s.Out, "out"}, {s.In, "in"}} {
		fmt.Fprintf(&b, "  - name: %s\n    direction: %s\n    spi: %#x\n    local: %s\n    remote: %s\n    transform: %s\n    key: 0x%x\n",
			x.sa.Name, x.dir, x.sa.SPI, s.Local, s.Remote, s.Transform, x.sa.Key)
		if len(x.sa.AuthKey) > 0 {
			fmt.Fprintf(&b, "    auth_key: 0x%x\n", x.sa.AuthKey)
		}
		if x.dir == "out" {
			b.WriteString("    path_mtu: 1500\n")
		}
	}
	return []byte(b.String())
}

// demoGateway is a running gateway.
type demoGateway interface {
	// Report returns the SA counters for show.Text.
	Report(title string) *show.Report
	// Close stops the gateway and wipes its keys.
	Close() error
}

// gatewayRun is a gateway.Gateway with the configuration it runs.
type gatewayRun struct {
	*gateway.Gateway
	cfg *config.Config
}

// startGateway starts the gateway described by spec in namespace ns,
// through the daemon's configuration format and package gateway, as
// `espxdp run` would. Its log goes to logw (warnings and errors only).
func startGateway(ns *topo.NS, spec *gwSpec, logw io.Writer) (demoGateway, error) {
	data := spec.yaml()
	defer clear(data)
	cfg, err := config.Parse(spec.Label+".yaml", data)
	if err != nil {
		return nil, err
	}
	log := slog.New(slog.NewTextHandler(logw, &slog.HandlerOptions{Level: slog.LevelWarn})).With("gateway", spec.Label)
	g, err := gateway.New(cfg, gateway.Options{NetNS: ns.Path(), Logger: log})
	if err != nil {
		cfg.Wipe()
		return nil, err
	}
	if err := g.Start(); err != nil {
		g.Close()
		cfg.Wipe()
		return nil, err
	}
	return &gatewayRun{Gateway: g, cfg: cfg}, nil
}

// Close stops the gateway and wipes the keys of its configuration.
func (g *gatewayRun) Close() error {
	err := g.Gateway.Close()
	g.cfg.Wipe()
	return err
}

// disableTXChecksum turns transmit checksum offload off on dev in ns
// (see topo.Link.DisableTXChecksum: a veth hands TCP over with the
// checksum unfinished, which an XDP gateway would seal as it is).
func disableTXChecksum(ns *topo.NS, dev string) error {
	l, err := ns.Link(dev)
	if err != nil {
		return err
	}
	return l.DisableTXChecksum()
}

// lockedWriter serializes writes: the progress line and the gateways'
// logs share standard error.
type lockedWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

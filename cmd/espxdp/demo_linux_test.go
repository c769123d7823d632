//go:build linux

package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/espxdp/espxdp/esp"
	"github.com/espxdp/espxdp/internal/config"
	"github.com/espxdp/espxdp/internal/testenv"
	"github.com/espxdp/espxdp/internal/topo"
	"github.com/espxdp/espxdp/sa"
)

// checkDemoGone fails t if a namespace of res still exists or a veth
// end the demo created is still in this namespace (its temporary names
// start with "tvb" and this process's pid), and removes any leftovers.
func checkDemoGone(t *testing.T, res *demoResult) {
	t.Helper()
	if res == nil || len(res.Namespaces) == 0 {
		t.Fatal("demo reported no namespaces")
	}
	for _, ns := range res.Namespaces {
		if ns.Exists() {
			t.Errorf("namespace %s (%s) still exists", ns.Name, ns.Label)
			exec.Command("ip", "netns", "delete", ns.Name).Run()
		}
	}
	out, err := exec.Command("ip", "netns", "list").CombinedOutput()
	if err != nil {
		t.Fatalf("ip netns list: %v: %s", err, out)
	}
	for _, ns := range res.Namespaces {
		if strings.Contains(string(out), ns.Name+" ") || strings.Contains(string(out), ns.Name+"\n") {
			t.Errorf("ip netns list still shows %s", ns.Name)
		}
	}
	links, err := exec.Command("ip", "-o", "link", "show", "type", "veth").CombinedOutput()
	if err != nil {
		t.Fatalf("ip link show: %v: %s", err, links)
	}
	tmp := "tvb" + strconv.FormatInt(int64(os.Getpid()), 36) + "x"
	if strings.Contains(string(links), tmp) {
		t.Errorf("veth ends of this process left in the root namespace:\n%s", links)
	}
}

// cleanupDemo removes whatever a failed test left behind.
func cleanupDemo(t *testing.T, res **demoResult) {
	t.Cleanup(func() {
		if *res == nil {
			return
		}
		for _, ns := range (*res).Namespaces {
			if ns.Exists() {
				exec.Command("ip", "netns", "delete", ns.Name).Run()
			}
		}
	})
}

func TestDemo(t *testing.T) { testDemo(t, false) }

// TestDemoIPv6: espxdp demo -ipv6, the wan and so ESP over IPv6.
func TestDemoIPv6(t *testing.T) { testDemo(t, true) }

func testDemo(t *testing.T, ipv6 bool) {
	testenv.RequirePrivileged(t)
	const size = 4 << 20
	var out, errb bytes.Buffer
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	var res *demoResult
	cleanupDemo(t, &res)
	res, err := runDemo(ctx, demoOptions{Size: size, Transform: "aes128gcm16", Duration: 2 * time.Minute, IPv6: ipv6}, &out, &errb)
	t.Logf("stdout:\n%s\nstderr:\n%s", out.String(), errb.String())
	if err != nil {
		t.Fatalf("runDemo: %v", err)
	}
	checkDemoGone(t, res)
	wan := demoWAN4
	if ipv6 {
		wan = demoWAN6
	}
	found := 0
	for i, r := range res.Reports {
		for _, name := range []string{"a-to-b", "b-to-a"} {
			for _, dir := range []sa.Direction{sa.In, sa.Out} {
				s, ok := findSA(r, name, dir)
				if !ok {
					continue
				}
				found++
				if want := []netip.Addr{wan.GwA.Addr(), wan.GwB.Addr()}; s.Local != want[i] || s.Remote != want[1-i] {
					t.Errorf("gateway %d SA %s: local %v remote %v, want %v and %v", i, name, s.Local, s.Remote, want[i], want[1-i])
				}
			}
		}
	}
	if found != 4 {
		t.Errorf("found %d SAs in the reports, want 4", found)
	}

	if res.Ping.Sent != demoPingCount || res.Ping.Received != res.Ping.Sent {
		t.Errorf("ping: %d sent, %d received, want %d", res.Ping.Sent, res.Ping.Received, demoPingCount)
	}
	tr := res.Transfer
	if !tr.Intact() || tr.Sent != size || tr.Received != size {
		t.Errorf("transfer: sent %d, received %d, intact %v, want %d", tr.Sent, tr.Received, tr.Intact(), size)
	}
	// The hosts' MTU is 1500: only the gateways' clamp keeps the
	// segments small enough for ESP to fit the wan.
	if tr.ClientMSS <= 0 || tr.ClientMSS > demoMSSClamp || tr.ServerMSS > demoMSSClamp {
		t.Errorf("TCP MSS %d (client) %d (server), want at most the clamp %d", tr.ClientMSS, tr.ServerMSS, demoMSSClamp)
	}
	if len(res.Flows) != 2 {
		t.Fatalf("%d flows, want 2", len(res.Flows))
	}
	ab, ba := res.Flows[0], res.Flows[1]
	if ab.SA != "a-to-b" || ba.SA != "b-to-a" {
		t.Fatalf("flows %q %q", ab.SA, ba.SA)
	}
	// Every data segment crossed the tunnel at least once: no inner
	// packet is larger than the hosts' 1500-byte MTU.
	if min := uint64(size / 1500); ab.Encaps < min {
		t.Errorf("a-to-b: %d packets encapsulated, want at least %d for %d bytes", ab.Encaps, min, size)
	}
	if ab.EncapsB < size || ab.DecapsB > ab.EncapsB || (ab.PathDrops == 0 && ab.DecapsB != ab.EncapsB) {
		t.Errorf("a-to-b: %d bytes encapsulated, %d decapsulated, want equal (unless the links dropped packets: %d) and ≥ %d", ab.EncapsB, ab.DecapsB, ab.PathDrops, size)
	}
	for _, f := range res.Flows {
		// Every packet encrypted was decrypted, or counted as dropped by
		// an interface between the gateways.
		if !f.Agree() || f.Encaps == 0 {
			t.Errorf("%s: %s encapsulated %d, %s decapsulated %d, %d dropped by the links between", f.SA, f.From, f.Encaps, f.To, f.Decaps, f.PathDrops)
		}
		if f.SenderDrops != 0 || f.ReceiverDrops != 0 {
			t.Errorf("%s: drops %d at %s, %d at %s", f.SA, f.SenderDrops, f.From, f.ReceiverDrops, f.To)
		}
	}
	// The ACKs and the echo replies came back through b-to-a.
	if ba.Encaps < uint64(res.Ping.Received) {
		t.Errorf("b-to-a: %d packets, fewer than the %d echo replies", ba.Encaps, res.Ping.Received)
	}

	// The tables of both gateways, with the counters the flows saw.
	o := out.String()
	if len(res.Reports) != 2 {
		t.Fatalf("%d reports, want 2", len(res.Reports))
	}
	for i, want := range []struct {
		title, outSPI string
		encaps        uint64
	}{{"gateway gwA", "current outbound spi: 0x1001(4097)", ab.Encaps}, {"gateway gwB", "current outbound spi: 0x2001(8193)", ba.Encaps}} {
		if !strings.HasPrefix(res.Reports[i].Title, want.title) {
			t.Errorf("report %d title %q, want prefix %q", i, res.Reports[i].Title, want.title)
		}
		at := strings.Index(o, "\n"+res.Reports[i].Title+"\n")
		if at < 0 {
			t.Errorf("output lacks the title %q", res.Reports[i].Title)
			continue
		}
		table := o[at+1:]
		if i == 0 {
			// gwA's table ends where gwB's begins.
			end := strings.Index(table, "\n"+res.Reports[1].Title+"\n")
			if end < 0 {
				t.Fatalf("gwB's table does not follow gwA's")
			}
			table = table[:end]
		}
		for _, s := range []string{want.outSPI, "inbound esp sas:", "outbound esp sas:", "transform: esp-aes128gcm16",
			fmt.Sprintf("#pkts encaps: %d,", want.encaps)} {
			if !strings.Contains(table, s) {
				t.Errorf("%s table lacks %q:\n%s", want.title, s, table)
			}
		}
	}
	for _, s := range []string{"✓ ping 10.1.0.2 → 10.2.0.2: 5/5", "✓ counters a-to-b", "✓ counters b-to-a",
		"throughput: 4.0 MiB", "✓ removed the gateways and 5 namespaces", "\nOK: "} {
		if !strings.Contains(o, s) {
			t.Errorf("output lacks %q", s)
		}
	}
	if strings.Contains(o, "✗") || strings.Contains(o, "FAIL") {
		t.Errorf("output reports a failure")
	}
	if !strings.Contains(errb.String(), "\r  transfer   4.0/4.0 MiB") {
		t.Errorf("no final progress line on stderr: %q", errb.String())
	}
}

func TestDemoCancelMidTransfer(t *testing.T) {
	testenv.RequirePrivileged(t)
	var out, errb bytes.Buffer
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var res *demoResult
	cleanupDemo(t, &res)
	start := time.Now()
	started := false
	// A transfer far too long to finish: it is cancelled when it starts.
	res, err := runDemo(ctx, demoOptions{Size: 64 << 30, Transform: "aes256gcm16", Duration: 2 * time.Minute,
		onTransfer: func() { started = true; cancel() }}, &out, &errb)
	elapsed := time.Since(start)
	t.Logf("stdout:\n%s\nstderr:\n%s", out.String(), errb.String())
	if !started {
		t.Fatalf("transfer never started: %v", err)
	}
	if err == nil || !errors.Is(err, context.Canceled) {
		t.Fatalf("runDemo after cancel: %v, want an error wrapping context.Canceled", err)
	}
	if elapsed > time.Minute {
		t.Errorf("cancelled demo took %v", elapsed)
	}
	if res.Transfer.Received >= 64<<30 {
		t.Errorf("transfer finished despite the cancel")
	}
	checkDemoGone(t, res)
	o := out.String()
	for _, s := range []string{"✗ transfer", "✓ removed the gateways and 5 namespaces", "\nFAIL: demo stopped"} {
		if !strings.Contains(o, s) {
			t.Errorf("output lacks %q", s)
		}
	}
}

func TestDemoRefusesWithoutPrivileges(t *testing.T) {
	status := func(eff, amb string) func() (string, error) {
		return func() (string, error) {
			return "Name:\tespxdp\nCapInh:\t0000000000000000\nCapPrm:\t" + eff + "\nCapEff:\t" + eff + "\nCapAmb:\t" + amb + "\n", nil
		}
	}
	none := "0000000000000000"
	all := "000001ffffffffff"
	netOnly := strconv.FormatUint(1<<capNetAdmin|1<<capNetRaw, 16)
	for _, c := range []struct {
		name   string
		euid   int
		status func() (string, error)
		ok     bool
	}{
		{"root", 0, status(none, none), true},
		{"user", 1000, status(none, none), false},
		{"user, unreadable status", 1000, func() (string, error) { return "", errors.New("no /proc") }, false},
		{"user with effective caps only", 1000, status(all, none), false},
		{"user without sys_admin", 1000, status(netOnly, netOnly), false},
		{"user with ambient caps", 1000, status(all, all), true},
	} {
		err := checkPrivileges(c.euid, c.status)
		if (err == nil) != c.ok {
			t.Errorf("%s: checkPrivileges = %v, want ok %v", c.name, err, c.ok)
		}
		if err != nil && !strings.Contains(err.Error(), "sudo") {
			t.Errorf("%s: message %q does not say to use sudo", c.name, err)
		}
	}

	// Through the CLI: exit status 1, the message, and nothing created.
	orig := demoPrivileged
	demoPrivileged = func() error { return checkPrivileges(1000, status(none, none)) }
	defer func() { demoPrivileged = orig }()
	before, _ := exec.Command("ip", "netns", "list").CombinedOutput()
	code, stdout, stderr := runCLI(t, "demo", "-size", "1MiB")
	if code != exitFailure {
		t.Errorf("exit status %d, want %d", code, exitFailure)
	}
	if !strings.Contains(stderr, "needs root") || !strings.Contains(stderr, "sudo") {
		t.Errorf("stderr %q does not explain", stderr)
	}
	if stdout != "" {
		t.Errorf("stdout %q, want nothing", stdout)
	}
	after, _ := exec.Command("ip", "netns", "list").CombinedOutput()
	for _, l := range strings.Split(string(after), "\n") {
		if strings.HasPrefix(l, "demo") && !strings.Contains(string(before), l) {
			t.Errorf("namespace %q created without privileges", l)
		}
	}
}

func TestDemoFlags(t *testing.T) {
	for _, args := range [][]string{
		{"demo", "-size", "lots"},
		{"demo", "-size", "0"},
		{"demo", "-transform", "rot13"},
		{"demo", "--ike", "-transform", "aes256gcm16-ecp384"},
		{"demo", "-duration", "-1s"},
		{"demo", "extra"},
	} {
		orig := demoPrivileged
		demoPrivileged = func() error { t.Fatalf("%v: reached the privilege check", args); return nil }
		code, _, stderr := runCLI(t, args...)
		demoPrivileged = orig
		if code != exitUsage {
			t.Errorf("%v: exit %d, want %d (stderr %q)", args, code, exitUsage, stderr)
		}
		if slices.Contains(args, "aes256gcm16-ecp384") && !strings.Contains(stderr, "without a DH group") {
			t.Errorf("%v: stderr %q does not say the DH group is the problem", args, stderr)
		}
	}
	for in, want := range map[string]int64{"64MiB": 64 << 20, "1.5KiB": 1536, "1000000": 1e6, "2GB": 2e9, "4 MiB": 4 << 20, "10B": 10} {
		if got, err := parseSize(in); err != nil || got != want {
			t.Errorf("parseSize(%q) = %d, %v, want %d", in, got, err, want)
		}
	}
}

// TestDemoConfig checks that the configuration the demo generates is
// what it means, through the daemon's parser.
func TestDemoConfig(t *testing.T) {
	tr, err := esp.ParseTransform("aes128-sha256")
	if err != nil {
		t.Fatal(err)
	}
	d := &demo{tr: tr, gwA: &topo.NS{Label: "gwA"}, gwB: &topo.NS{Label: "gwB"}}
	specs := d.gatewaySpecs()
	a, b := specs[0], specs[1]
	for _, s := range specs {
		cfg, err := config.Parse(s.Label+".yaml", s.yaml())
		if err != nil {
			t.Fatalf("%s: %v\n", s.Label, err)
		}
		g := cfg.Gateway
		if g == nil || g.Plain == nil || g.Cipher.Name != "wan0" || g.Plain.Name != "lan0" {
			t.Fatalf("%s: interfaces %+v", s.Label, g)
		}
		if g.Cipher.NextHop.String() != s.CipherNextHop.String() || g.Plain.NextHop.String() != s.PlainNextHop.String() {
			t.Errorf("%s: next hops %v %v", s.Label, g.Cipher.NextHop, g.Plain.NextHop)
		}
		if len(g.Protected) != 1 || g.Protected[0] != s.Protected || g.MSSClamp != demoMSSClamp {
			t.Errorf("%s: protected %v, mss clamp %d", s.Label, g.Protected, g.MSSClamp)
		}
		if len(cfg.SAs) != 2 {
			t.Fatalf("%s: %d SAs", s.Label, len(cfg.SAs))
		}
		for _, c := range cfg.SAs {
			if c.Local != s.Local || c.Remote != s.Remote || len(c.Key) != tr.KeyLen() || len(c.AuthKey) != tr.AuthKeyLen() || tr.AuthKeyLen() == 0 {
				t.Errorf("%s: SA %s: %v → %v, key %d bytes, auth key %d bytes", s.Label, c.Name, c.Local, c.Remote, len(c.Key), len(c.AuthKey))
			}
		}
	}
	// Both ends of each SA share SPI and keys; the two directions do not.
	if !bytes.Equal(a.Out.Key, b.In.Key) || !bytes.Equal(a.In.AuthKey, b.Out.AuthKey) || a.Out.SPI != b.In.SPI {
		t.Error("the ends of an SA disagree")
	}
	if bytes.Equal(a.Out.Key, a.In.Key) {
		t.Error("both directions have the same key")
	}
	// Fresh keys each run.
	if again := d.gatewaySpecs(); bytes.Equal(again[0].Out.Key, a.Out.Key) {
		t.Error("keys repeat across runs")
	}
}

// TestDemoDetectsBrokenTunnel gives gwB a wrong key for a-to-b: the demo
// must fail (no ping reply, authentication drops in gwB's table) and
// still clean up.
func TestDemoDetectsBrokenTunnel(t *testing.T) {
	testenv.RequirePrivileged(t)
	var out, errb bytes.Buffer
	var res *demoResult
	cleanupDemo(t, &res)
	res, err := runDemo(context.Background(), demoOptions{Size: 1 << 20, Transform: "aes128gcm16", Duration: time.Minute,
		editSpecs: func(specs []*gwSpec) {
			k := append([]byte(nil), specs[1].In.Key...)
			k[0] ^= 1
			specs[1].In.Key = k
		}}, &out, &errb)
	t.Logf("stdout:\n%s\nstderr:\n%s", out.String(), errb.String())
	if !errors.Is(err, errDemoFailed) {
		t.Fatalf("runDemo with a wrong key: %v, want errDemoFailed", err)
	}
	checkDemoGone(t, res)
	if res.Ping.Sent == 0 || res.Ping.Received != 0 {
		t.Errorf("ping: %d/%d replies through a broken tunnel", res.Ping.Received, res.Ping.Sent)
	}
	if len(res.Reports) != 2 {
		t.Fatalf("%d reports, want 2", len(res.Reports))
	}
	s, ok := findSA(res.Reports[1], "a-to-b", sa.In)
	if !ok || s.DecapsPkts != 0 || s.Drops[sa.DropAuth] != uint64(res.Ping.Sent) {
		t.Errorf("gwB a-to-b: found %v, %d decapsulated, drops %v, want %d auth drops", ok, s.DecapsPkts, s.Drops, res.Ping.Sent)
	}
	o := out.String()
	for _, w := range []string{"✗ ping 10.1.0.2 → 10.2.0.2: 0/5 replies", "transfer skipped", "drops: auth 5", "✓ removed the gateways", "\nFAIL: "} {
		if !strings.Contains(o, w) {
			t.Errorf("output lacks %q", w)
		}
	}
}

func TestDemoFlowAgree(t *testing.T) {
	for _, tc := range []struct {
		f    demoFlow
		want bool
	}{
		{demoFlow{Encaps: 100, Decaps: 100}, true},
		{demoFlow{Encaps: 100, Decaps: 97, PathDrops: 3}, true},
		{demoFlow{Encaps: 100, Decaps: 97, PathDrops: 10}, true}, // drops of other traffic too
		{demoFlow{Encaps: 100, Decaps: 97, PathDrops: 2}, false}, // one packet unaccounted for
		{demoFlow{Encaps: 100, Decaps: 101, PathDrops: 5}, false},
		{demoFlow{}, false},
	} {
		if got := tc.f.Agree(); got != tc.want {
			t.Errorf("%+v: Agree %v, want %v", tc.f, got, tc.want)
		}
	}
}

// TestDemoConfigIPv6: with -ipv6 the gateways' SAs run between their
// IPv6 wan addresses.
func TestDemoConfigIPv6(t *testing.T) {
	d := &demo{tr: esp.MustParseTransform("aes128gcm16"), opts: demoOptions{IPv6: true},
		gwA: &topo.NS{Label: "gwA"}, gwB: &topo.NS{Label: "gwB"}}
	for i, s := range d.gatewaySpecs() {
		cfg, err := config.Parse(s.Label+".yaml", s.yaml())
		if err != nil {
			t.Fatalf("%s: %v", s.Label, err)
		}
		want := []netip.Addr{demoWAN6.GwA.Addr(), demoWAN6.GwB.Addr()}
		for _, c := range cfg.SAs {
			if c.Local != want[i] || c.Remote != want[1-i] {
				t.Errorf("%s: SA %s: %v → %v, want %v → %v", s.Label, c.Name, c.Local, c.Remote, want[i], want[1-i])
			}
		}
	}
}

// TestDemoIKE: espxdp demo --ike, the gateways negotiate their SAs with
// IKEv2: the IKE step is shown, traffic flows, the counters of the
// negotiated SAs agree and the PSK file is gone afterwards.
func TestDemoIKE(t *testing.T) {
	testenv.RequirePrivileged(t)
	const size = 2 << 20
	var out, errb bytes.Buffer
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	var res *demoResult
	cleanupDemo(t, &res)
	res, err := runDemo(ctx, demoOptions{Size: size, Transform: "aes256gcm16", Duration: time.Minute, IKE: true}, &out, &errb)
	t.Logf("stdout:\n%s\nstderr:\n%s", out.String(), errb.String())
	if err != nil {
		t.Fatalf("runDemo --ike: %v", err)
	}
	checkDemoGone(t, res)
	if !strings.Contains(out.String(), "✓ IKEv2: IKE SA ") || !strings.Contains(out.String(), "10.1.0.0/24 === 10.2.0.0/24") {
		t.Errorf("no IKE step in the output")
	}
	if res.Ping.Received != demoPingCount || !res.Transfer.Intact() || res.Transfer.Received != size {
		t.Errorf("traffic: ping %+v, transfer %+v", res.Ping, res.Transfer)
	}
	if len(res.Flows) != 2 || !res.Flows[0].Agree() || !res.Flows[1].Agree() || res.Flows[0].Encaps == 0 {
		t.Errorf("flows: %+v", res.Flows)
	}
	for _, r := range res.Reports {
		for _, s := range r.SAs {
			if s.Transform != "aes256gcm16" || !strings.HasPrefix(s.Name, "gw") {
				t.Errorf("negotiated SA %s: transform %v", s.Name, s.Transform)
			}
		}
	}
	if strings.Contains(out.String(), "key: 0x") || strings.Contains(errb.String(), "psk") && strings.Contains(errb.String(), "0x") {
		t.Errorf("key material in the output")
	}
}

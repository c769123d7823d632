package sa

import (
	"encoding/binary"
	"net/netip"
	"testing"
	"time"
)

func pfx(s string) netip.Prefix { return netip.MustParsePrefix(s) }

func TestSPDMatch(t *testing.T) {
	spd := NewSPD(SPDOptions{})
	pols := []*Policy{
		{Name: "dns-bypass", Selector: Selector{Dst: pfx("10.2.0.0/16"), Proto: 17, DstPorts: PortRange{53, 53}}, Action: Bypass},
		{Name: "block-telnet", Selector: Selector{Proto: 6, DstPorts: PortRange{23, 23}}, Action: Discard},
		{Name: "high-ports", Selector: Selector{Src: pfx("10.1.0.0/16"), Dst: pfx("10.2.0.0/16"), Proto: 17, SrcPorts: PortRange{1024, 65535}}, Action: Protect},
		{Name: "net", Selector: Selector{Src: pfx("10.1.0.0/16"), Dst: pfx("10.2.0.0/16")}, Action: Protect},
		{Name: "v6", Selector: Selector{Src: pfx("fd00:1::/48"), Dst: pfx("fd00:2::/48"), Proto: 17}, Action: Protect},
		{Name: "icmp", Selector: Selector{Proto: 1}, Action: Bypass},
	}
	if err := spd.Set(pols); err != nil {
		t.Fatal(err)
	}
	tcp := func(src, dst netip.Addr, sport, dport uint16) []byte {
		b := udpPacket(src, dst, sport, dport, 20, 0)
		if src.Is4() {
			b[9] = 6
		} else {
			b[6] = 6
		}
		return b
	}
	icmp := ipv4(netip.MustParseAddr("10.9.9.9"), hostB, 1, make([]byte, 8))
	frag := udpPacket(hostA, hostB, 2000, 53, 20, 0)
	binary.BigEndian.PutUint16(frag[6:], 100) // non-initial fragment: no ports
	v6frag := func() []byte {
		b := udpPacket(host6, hst6B, 2000, 9, 20, 0)
		fh := []byte{17, 0, 0, 8 << 3, 0, 0, 0, 1} // offset 8, next header UDP
		b[6] = 44
		out := append(append(append([]byte(nil), b[:40]...), fh...), b[40:]...)
		binary.BigEndian.PutUint16(out[4:], uint16(len(out)-40))
		return out
	}()
	cases := []struct {
		name string
		pkt  []byte
		want string
	}{
		{"dns", udpPacket(hostA, hostB, 3333, 53, 20, 0), "dns-bypass"},
		{"dns from anywhere", udpPacket(netip.MustParseAddr("10.9.9.9"), hostB, 3333, 53, 20, 0), "dns-bypass"},
		{"telnet", tcp(hostA, hostB, 5555, 23), "block-telnet"},
		{"udp high src port", udpPacket(hostA, hostB, 5000, 9, 20, 0), "high-ports"},
		{"udp low src port", udpPacket(hostA, hostB, 500, 9, 20, 0), "net"},
		{"tcp", tcp(hostA, hostB, 5000, 80), "net"},
		{"fragment has no ports", frag, "net"},
		{"outside", udpPacket(netip.MustParseAddr("10.3.0.1"), hostB, 5000, 9, 20, 0), ""},
		{"v6 udp", udpPacket(host6, hst6B, 1, 2, 20, 0), "v6"},
		{"v6 tcp", tcp(host6, hst6B, 1, 2), ""},
		{"v6 fragment", v6frag, "v6"},
		{"icmp", icmp, "icmp"},
	}
	for _, c := range cases {
		pol, err := spd.Match(c.pkt)
		if err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		got := ""
		if pol != nil {
			got = pol.Name
		}
		if got != c.want {
			t.Errorf("%s: matched %q, want %q", c.name, got, c.want)
		}
	}
	if p := spd.MatchSelector(hostA, hostB, 17, 4000, 9); p == nil || p.Name != "high-ports" {
		t.Errorf("MatchSelector: %v", p)
	}
	if _, err := spd.Match([]byte{0x45, 0}); err == nil {
		t.Error("truncated packet matched")
	}
	// Reordering changes the winner: first match wins.
	if !spd.Remove("dns-bypass") || spd.Remove("nope") {
		t.Fatal("Remove")
	}
	if err := spd.Insert(0, &Policy{Name: "all-discard", Action: Discard}); err != nil {
		t.Fatal(err)
	}
	if p, _ := spd.Match(udpPacket(hostA, hostB, 3333, 53, 20, 0)); p == nil || p.Name != "all-discard" {
		t.Errorf("after Insert(0): %v", p)
	}
	if n := len(spd.Policies()); n != len(pols) {
		t.Errorf("%d policies", n)
	}
	for _, bad := range []*Policy{
		{Name: "noaction"},
		{Name: "ports", Action: Bypass, Selector: Selector{Proto: 1, DstPorts: PortRange{1, 2}}},
		{Name: "family", Action: Bypass, Selector: Selector{Src: pfx("10.0.0.0/8"), Dst: pfx("fd00::/8")}},
		{Name: "inbound SA", Action: Protect, SA: func() *SA { _, in := mustPair(t, "aes128gcm16", 0x101, nil); return in }()},
		nil,
	} {
		if err := spd.Append(bad); err == nil {
			t.Errorf("bad policy %+v accepted", bad)
		}
	}
}

// TestSPDProcessor runs packets through a processor with an SPD:
// protect, bypass, discard, no match, and acquire with rate limiting.
func TestSPDProcessor(t *testing.T) {
	var ev eventLog
	clock := newFakeClock()
	spd := NewSPD(SPDOptions{Events: ev.fn, AcquireInterval: 10 * time.Second})
	out, _ := mustPair(t, "aes128gcm16", 0x600, nil)
	sad := NewSAD(SADOptions{})
	sad.Add(out)
	tun := NewTunnel("siteB")
	pending := &Policy{Name: "to-siteC", Selector: Selector{Dst: pfx("10.3.0.0/16")}, Action: Protect, Tunnel: tun}
	spd.Set([]*Policy{
		{Name: "bypass-ike", Selector: Selector{Proto: 17, DstPorts: PortRange{500, 500}}, Action: Bypass},
		{Name: "to-siteB", Selector: Selector{Src: pfx("10.1.0.0/16"), Dst: pfx("10.2.0.0/16")}, Action: Protect, SA: out},
		pending,
		{Name: "no-sa-at-all", Selector: Selector{Dst: pfx("10.4.0.0/16")}, Action: Protect},
		{Name: "deny", Selector: Selector{Dst: pfx("10.5.0.0/16")}, Action: Discard},
	})
	p, err := NewProcessor(ProcessorOptions{SAD: sad, SPD: spd, Clock: clock.Now})
	if err != nil {
		t.Fatal(err)
	}
	w := p.Worker(0)
	try := func(dst netip.Addr, dport uint16) Packet {
		b := []Packet{packetFor(udpPacket(hostA, dst, 4000, dport, 20, 0))}
		w.Outbound(b)
		return b[0]
	}
	if q := try(hostB, 80); q.Verdict != VerdictOK || q.SA != out || q.Policy.Name != "to-siteB" {
		t.Fatalf("protect: %v %v %v", q.Verdict, q.Reason, q.SA)
	}
	if q := try(hostB, 500); q.Verdict != VerdictBypass || q.Len != 48 {
		t.Fatalf("bypass: %v len %d", q.Verdict, q.Len)
	}
	if q := try(netip.MustParseAddr("10.5.1.1"), 80); q.Reason != DropDiscard {
		t.Fatalf("discard: %v", q.Reason)
	}
	if q := try(netip.MustParseAddr("10.9.1.1"), 80); q.Reason != DropNoPolicy {
		t.Fatalf("no policy: %v", q.Reason)
	}
	// Acquire: many packets, one event per policy per interval.
	siteC := netip.MustParseAddr("10.3.0.9")
	for i := 0; i < 5; i++ {
		if q := try(siteC, 80); q.Reason != DropAcquire || q.Policy != pending {
			t.Fatalf("acquire: %v", q.Reason)
		}
	}
	if n := ev.count(EventAcquire); n != 1 {
		t.Fatalf("%d acquire events for 5 packets", n)
	}
	e := ev.ev[0]
	if e.Policy != pending || e.Packet.Dst != netip.PrefixFrom(siteC, 32) || e.Packet.DstPorts.Lo != 80 || e.Packet.Proto != 17 {
		t.Fatalf("acquire event %+v", e)
	}
	try(netip.MustParseAddr("10.4.0.1"), 80) // another policy: its own budget
	if n := ev.count(EventAcquire); n != 2 {
		t.Fatalf("second policy: %d events", n)
	}
	clock.Add(5 * time.Second)
	try(siteC, 80)
	if n := ev.count(EventAcquire); n != 2 {
		t.Fatal("rate limit ignored")
	}
	clock.Add(6 * time.Second)
	try(siteC, 80)
	if n := ev.count(EventAcquire); n != 3 {
		t.Fatalf("after the interval: %d events", n)
	}
	// The IKE daemon installs the SA: traffic flows.
	outC, _ := mustPair(t, "aes128gcm16", 0x601, nil)
	sad.Add(outC)
	tun.SetOutbound(outC)
	if q := try(siteC, 80); q.Verdict != VerdictOK || q.SA != outC {
		t.Fatalf("after acquire: %v %v", q.Verdict, q.Reason)
	}
	// An expired SA on a protect policy acquires again.
	outC.Expire(true)
	clock.Add(11 * time.Second)
	if q := try(siteC, 80); q.Reason != DropExpired {
		t.Fatalf("expired: %v", q.Reason)
	}
	if n := ev.count(EventAcquire); n != 4 {
		t.Fatalf("expired SA: %d acquire events", n)
	}
	st := p.Stats()
	if st.Bypass != 1 || st.Drops[DropDiscard] != 1 || st.Drops[DropNoPolicy] != 1 || st.Drops[DropAcquire] != 8 || st.OutOK != 2 {
		t.Fatalf("processor stats %+v", st)
	}
}

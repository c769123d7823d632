//go:build linux

package gateway

import (
	"encoding/json"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/espxdp/espxdp/internal/testenv"
	"github.com/espxdp/espxdp/sa"
)

// withSAFields adds fields to the SA whose key is key in a gateway YAML.
func withSAFields(y, key, fields string) string {
	return strings.Replace(y, "key: "+key, "key: "+key+", "+fields, 1)
}

// TestReloadKeepsSequence: reloads and sa-update that change only
// lifetimes or the path MTU change the SAs in place. On the wire, the
// receiving gateway's replay window is the witness: a sequence number
// sent twice under the key would be dropped there as a replay, and none
// is; the sender's counter continues; packets accepted before the
// change, sent again, are dropped as replays after it (inbound windows
// survive in-place updates and same-key replacements).
func TestReloadKeepsSequence(t *testing.T) {
	testenv.RequirePrivileged(t)
	a, b := buildTopology(t)
	p := gwParams{keyAB: randKey(t), keyBA: randKey(t)}
	ya, yb := gatewayYAML(a, b, "a", p), gatewayYAML(b, a, "b", p)
	ga := startGateway(t, a, ya)
	gb := startGateway(t, b, yb)

	if got := ping(t, a, b.hostAddr, 5); got != 5 {
		t.Fatalf("ping: %d of 5\n%s\n%s", got, a.log, b.log)
	}
	outA := statsOf(t, a.socket, "a-to-b")
	baseReplay := statsOf(t, b.socket, "a-to-b").Drops[sa.DropReplay]
	inj := newInjector(t, a.gw, p.keyAB, 0x1001, false)

	// Reload both sides with new lifetimes and path MTU only.
	fields := "path_mtu: 1450, lifetime: {soft_seconds: 3600, hard_seconds: 7200}"
	ya2 := withSAFields(withSAFields(ya, p.keyAB, fields), p.keyBA, fields)
	yb2 := withSAFields(withSAFields(yb, p.keyAB, fields), p.keyBA, fields)
	for _, r := range []struct {
		gw *Gateway
		y  string
	}{{ga, ya2}, {gb, yb2}} {
		rr, err := reload(t, r.gw, r.y)
		if err != nil || len(rr.Updated) != 2 || len(rr.Replaced) != 0 {
			t.Fatalf("reload with new lifetimes: %+v, %v", rr, err)
		}
	}
	if s := statsOf(t, a.socket, "a-to-b"); s.PathMTU != 1450 || s.Seq != outA.Seq || s.EncapsPkts != outA.EncapsPkts {
		t.Errorf("a-to-b after in-place reload: path MTU %d, seq %d (was %d), encaps %d (was %d)", s.PathMTU, s.Seq, outA.Seq, s.EncapsPkts, outA.EncapsPkts)
	}
	if got := ping(t, a, b.hostAddr, 5); got != 5 {
		t.Fatalf("ping after reload: %d of 5", got)
	}
	if s := statsOf(t, a.socket, "a-to-b"); s.Seq <= outA.Seq {
		t.Errorf("a-to-b seq %d after reload, was %d: restarted", s.Seq, outA.Seq)
	}
	// sa-update over the control socket, lifetime only: in place too.
	upd := fmt.Sprintf(`{"name": "a-to-b", "direction": "out", "spi": "0x1001", "local": "192.0.2.1", "remote": "192.0.2.2", "transform": "aes128gcm16", "key": %q, "path_mtu": 1450, "lifetime": {"soft_seconds": 1800, "hard_seconds": 7200}}`, p.keyAB)
	if _, err := Call(a.socket, Request{Cmd: "sa-update", SA: upd}, time.Second); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(a.log.String(), "sa updated in place") {
		t.Errorf("sa-update of the lifetime was not in place:\n%s", a.log)
	}
	if got := ping(t, a, b.hostAddr, 5); got != 5 {
		t.Fatalf("ping after sa-update: %d of 5", got)
	}
	// A same-key replacement of gwB's inbound SA (its selectors change:
	// not an in-place attribute) carries the window over.
	yb3 := strings.Replace(yb2, "in: [a-to-b]}", "in: [a-to-b], selectors: any}", 1)
	if rr, err := reload(t, gb, yb3); err != nil || !slices.Equal(rr.Replaced, []string{"a-to-b"}) {
		t.Fatalf("reload with selectors: %+v, %v", rr, err)
	}
	if got := ping(t, a, b.hostAddr, 5); got != 5 {
		t.Fatalf("ping after same-key replace: %d of 5", got)
	}
	inB := statsOf(t, b.socket, "a-to-b")
	if n := inB.Drops[sa.DropReplay]; n != baseReplay {
		t.Errorf("gwB counted %d replays after the reloads (baseline %d): a sequence number was sent twice", n, baseReplay)
	}
	// Sequence numbers gwA used (and gwB accepted) before the reloads,
	// sent again: all replays.
	for seq := uint64(1); seq <= 5; seq++ {
		inj.send(udp4(netip.MustParseAddr("10.1.0.2"), b.hostAddr, 7, "replay"), seq)
	}
	time.Sleep(200 * time.Millisecond)
	if n := statsOf(t, b.socket, "a-to-b").Drops[sa.DropReplay] - baseReplay; n != 5 {
		t.Errorf("replays of packets accepted before the reloads: %d dropped, want 5", n)
	}
}

// TestKeepalivesLeaveIKEPort: with NAT-T keepalives flowing both ways, a
// UDP socket bound to 4500 in the gateway's namespace (an IKE daemon's)
// can be opened and receives IKE (non-ESP marker) datagrams; the
// gateways still send and count keepalives.
func TestKeepalivesLeaveIKEPort(t *testing.T) {
	testenv.RequirePrivileged(t)
	a, b := buildTopology(t)
	p := gwParams{tun: true, udp: true, keepalive: "50ms", keyAB: randKey(t), keyBA: randKey(t)}
	startGateway(t, a, gatewayYAML(a, b, "a", p))
	startGateway(t, b, gatewayYAML(b, a, "b", p))
	var ike *net.UDPConn
	if err := b.gw.Do(func() (err error) {
		ike, err = net.ListenUDP("udp4", &net.UDPAddr{Port: 4500})
		return err
	}); err != nil {
		t.Fatalf("an IKE daemon cannot bind UDP 4500 beside the gateway: %v", err)
	}
	defer ike.Close()
	msg := append([]byte{0, 0, 0, 0}, "IKE_SA_INIT"...)
	if err := a.gw.Do(func() error {
		c, err := net.DialUDP("udp4", &net.UDPAddr{IP: net.IPv4(192, 0, 2, 1), Port: 4500}, &net.UDPAddr{IP: net.IPv4(192, 0, 2, 2), Port: 4500})
		if err != nil {
			return err
		}
		defer c.Close()
		_, err = c.Write(msg)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 64)
	gotIKE, keepalives := false, 0
	ike.SetReadDeadline(time.Now().Add(3 * time.Second))
	for !gotIKE || keepalives < 2 {
		n, from, err := ike.ReadFromUDP(buf)
		if err != nil {
			t.Fatalf("IKE socket: %v (IKE %v, keepalives %d)", err, gotIKE, keepalives)
		}
		switch {
		case string(buf[:n]) == string(msg) && from.Port == 4500:
			gotIKE = true
		case n == 1 && buf[0] == 0xFF:
			keepalives++ // the peer's keepalives reach the IKE socket too
		}
	}
	deadline := time.Now().Add(3 * time.Second)
	for {
		sa, _ := Call(a.socket, Request{Cmd: "show-stats"}, time.Second)
		sb, _ := Call(b.socket, Request{Cmd: "show-stats"}, time.Second)
		if sa.Stats != nil && sb.Stats != nil && sa.Stats.KeepalivesSent >= 2 && sb.Stats.KeepalivesReceived >= 2 && sa.Stats.KeepaliveErrors == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("keepalives: A %+v, B %+v", sa.Stats, sb.Stats)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if got := ping(t, a, b.hostAddr, 3); got != 3 {
		t.Errorf("ESP in UDP with the IKE socket open: %d of 3 pings", got)
		for _, s := range []*site{a, b} {
			st, _ := Call(s.socket, Request{Cmd: "show-stats"}, time.Second)
			sas, _ := Call(s.socket, Request{Cmd: "show-sa"}, time.Second)
			js, _ := json.Marshal(st.Stats)
			jsa, _ := json.Marshal(sas.SAs)
			t.Logf("stats %s\nSAs %s\nlog:\n%s", js, jsa, s.log)
		}
	}
}

// TestInterfaceDeleted: deleting the plaintext veth under a running
// gateway is logged and shown in show-stats; the gateway keeps serving
// its control socket and stops cleanly.
func TestInterfaceDeleted(t *testing.T) {
	testenv.RequirePrivileged(t)
	a, b := buildTopology(t)
	p := gwParams{keyAB: randKey(t), keyBA: randKey(t)}
	ga := startGateway(t, a, gatewayYAML(a, b, "a", p))
	startGateway(t, b, gatewayYAML(b, a, "b", p))
	if got := ping(t, a, b.hostAddr, 2); got != 2 {
		t.Fatalf("ping: %d of 2", got)
	}
	st, err := Call(a.socket, Request{Cmd: "show-stats"}, time.Second)
	if err != nil || len(st.Stats.Links) != 2 || st.Stats.Links[1].Name != "lan0" || st.Stats.Links[1].State != "up" {
		t.Fatalf("links before: %+v, %v", st.Stats, err)
	}
	if out, err := a.gw.IP("link", "del", "lan0"); err != nil {
		t.Fatalf("ip link del: %v %s", err, out)
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		st, err = Call(a.socket, Request{Cmd: "show-stats"}, time.Second)
		if err == nil && st.Stats.Links[1].State == "deleted" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("lan0 not reported deleted: %+v, %v\n%s", st.Stats, err, a.log)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if st.Stats.Links[0].State != "up" {
		t.Errorf("wan0 reported %s", st.Stats.Links[0].State)
	}
	if !strings.Contains(a.log.String(), "interface deleted") || !strings.Contains(a.log.String(), "interface=lan0") {
		t.Errorf("no log line for the deleted interface:\n%s", a.log)
	}
	done := make(chan error, 1)
	go func() { done <- ga.Close() }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("Close hangs after the interface was deleted")
	}
}

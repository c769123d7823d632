//go:build linux

package gateway

import (
	"context"
	"errors"
	"net/netip"
	"testing"
	"time"

	"github.com/espxdp/espxdp/internal/testenv"
	"github.com/espxdp/espxdp/internal/topo"
)

// TestGatewayUDPCipher runs route-based gateways (TUN devices) whose
// ciphertext side is the UDP cipher port (interfaces.cipher.mode udp):
// ESP in UDP on 4500 through kernel UDP sockets with GSO and GRO, no
// XDP program on the wan. Invariants: pings and a checksummed TCP
// transfer cross both ways; the SAs are UDP-encapsulated; the engines'
// cipher sides are the UDP ports (no AF_XDP socket there), which sent
// and received, dropped nothing, and sent super-datagrams; a reload
// that changes the mode is refused (ErrRestart).
func TestGatewayUDPCipher(t *testing.T) {
	testenv.RequirePrivileged(t)
	a, b := buildTopology(t)
	p := gwParams{tun: true, udp: true, udpPort: true, keyAB: randKey(t), keyBA: randKey(t)}
	ga := startGateway(t, a, gatewayYAML(a, b, "a", p))
	gb := startGateway(t, b, gatewayYAML(b, a, "b", p))
	if got := ping(t, a, b.hostAddr, 5); got != 5 {
		t.Fatalf("ping through the UDP port: %d of 5\nlogA:\n%s\nlogB:\n%s", got, a.log, b.log)
	}
	for i, dir := range [][2]*site{{b, a}, {a, b}} {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		res, err := topo.Transfer(ctx, dir[0].host, netip.AddrPortFrom(dir[0].hostAddr, uint16(5010+i)), dir[1].host, 2<<20, uint64(i), nil)
		cancel()
		if err != nil || !res.Intact() {
			t.Fatalf("transfer %d: %+v, %v", i, res, err)
		}
	}
	if s := statsOf(t, a.socket, "a-to-b"); !s.UDPEncap || s.RemotePort != 4500 || s.EncapsPkts == 0 {
		t.Errorf("a-to-b: udp %v port %d encaps %d", s.UDPEncap, s.RemotePort, s.EncapsPkts)
	}
	var super uint64
	for _, gw := range []*Gateway{ga, gb} {
		st := gw.eng.Stats()
		cp := st.CipherPort
		if cp == nil || cp.UDP == nil || cp.TX == 0 || cp.RX == 0 || cp.Drops != 0 || len(st.CipherSockets) != 0 {
			t.Fatalf("cipher side: %+v, AF_XDP sockets %d", cp, len(st.CipherSockets))
		}
		super += cp.UDP.TXSuper
	}
	if super == 0 {
		t.Error("no super-datagram sent by either gateway during the transfers")
	}
	// The cipher side's mode is not changed in place.
	xp := p
	xp.udpPort = false
	if _, err := reload(t, ga, gatewayYAML(a, b, "a", xp)); !errors.Is(err, ErrRestart) {
		t.Errorf("reload from mode udp to xdp: %v, want ErrRestart", err)
	}
}

// TestIKEGatewayPairUDPCipher negotiates an IKE SA and a child between
// two gateways whose ciphertext sides are UDP cipher ports: IKE starts
// on 500, moves to 4500 (UDP encapsulation is forced), where the port's
// sockets carry it (the gateway opens no socket of its own on 4500 and
// the port hands it the non-ESP datagrams). Invariants: the children
// pair up and are UDP-encapsulated; traffic crosses both ways.
func TestIKEGatewayPairUDPCipher(t *testing.T) {
	testenv.RequirePrivileged(t)
	pr := startIKEPair(t, ikeParams{psk: "correct horse battery staple 43", udpPort: true})
	a, b, ga, gb := pr.a, pr.b, pr.ga, pr.gb
	if got := ping(t, a, b.hostAddr, 5); got != 5 {
		t.Fatalf("ping through the IKE tunnel over UDP ports: %d of 5\nlogA:\n%s\nlogB:\n%s", got, a.log, b.log)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if res, err := topo.Transfer(ctx, b.host, netip.AddrPortFrom(b.hostAddr, 5111), a.host, 1<<20, 7, nil); err != nil || !res.Intact() {
		t.Fatalf("transfer: %+v, %v", res, err)
	}
	for _, gw := range []*Gateway{ga, gb} {
		gw.ike.mu.Lock()
		for addr, s := range gw.ike.socks {
			if s.natt != nil {
				t.Errorf("%v: the gateway holds a socket of its own on 4500 beside the UDP port", addr)
			}
		}
		gw.ike.mu.Unlock()
		if cp := gw.eng.Stats().CipherPort; cp == nil || cp.UDP == nil || cp.UDP.NonESP == 0 || cp.Drops != 0 {
			t.Errorf("UDP port: %+v (want IKE handed over, no drops)", cp)
		}
	}
	resp, err := Call(a.socket, Request{Cmd: "show-sa"}, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range resp.SAs {
		if !s.UDPEncap || s.LocalPort != 4500 {
			t.Errorf("SA %s: udp %v local port %d, want ESP in UDP from 4500", s.Name, s.UDPEncap, s.LocalPort)
		}
	}
	// Closing A tells B: its IKE DELETE goes out of the UDP port, which
	// must still run then (no DPD here: only the DELETE ends B's SAs).
	if err := ga.Close(); err != nil {
		t.Fatalf("closing A: %v", err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		st := gb.IKEInfo()
		if len(st) == 1 && len(st[0].IKESAs) == 0 && len(gb.SAStats()) == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("B still holds SAs after A closed (no DELETE through the UDP port?): %+v\nlogA:\n%s", st, a.log)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

package xdp_test

import (
	"log"
	"net"
	"net/netip"

	"github.com/espxdp/espxdp/esp"
	"github.com/espxdp/espxdp/sa"
	"github.com/espxdp/espxdp/xdp"
)

// ExampleEngine runs a bump-in-the-wire ESP gateway: ESP from the peer
// arrives on eth0 and leaves decrypted on eth1; traffic on eth1 to the
// protected prefix leaves eth0 encrypted. The caller keeps the SAD and
// the tunnel, so an IKE daemon can rekey while the engine runs.
func ExampleEngine() {
	tr := esp.MustParseTransform("aes128gcm16")
	key := make([]byte, tr.KeyLen()) // from IKE in real life
	local, remote := netip.MustParseAddr("192.0.2.1"), netip.MustParseAddr("198.51.100.2")
	out, err := sa.New(sa.Config{SPI: 0x2001, Direction: sa.Out, Mode: esp.Tunnel,
		Local: local, Remote: remote, Transform: tr, Key: key})
	if err != nil {
		log.Fatal(err)
	}
	in, err := sa.New(sa.Config{SPI: 0x1001, Direction: sa.In, Mode: esp.Tunnel,
		Local: local, Remote: remote, Transform: tr, Key: key})
	if err != nil {
		log.Fatal(err)
	}
	sad := sa.NewSAD(sa.SADOptions{})
	sad.Add(out)
	sad.Add(in)
	tun := sa.NewTunnel("peer")
	tun.SetOutbound(out)
	proc, err := sa.NewProcessor(sa.ProcessorOptions{SAD: sad, Tunnel: tun, Workers: 2})
	if err != nil {
		log.Fatal(err)
	}
	router, _ := net.ParseMAC("02:00:00:00:00:01")
	lan, _ := net.ParseMAC("02:00:00:00:00:02")
	e, err := xdp.NewEngine(xdp.EngineConfig{
		Processor:         proc,
		Cipher:            xdp.Port{Name: "eth0", NextHop: router},
		Plain:             &xdp.Port{Name: "eth1", NextHop: lan},
		ProtectedPrefixes: []netip.Prefix{netip.MustParsePrefix("10.9.0.0/16")},
		Queues:            2,
		CPUs:              []int{0, 1},
	})
	if err != nil {
		log.Fatal(err)
	}
	if err := e.Start(); err != nil {
		log.Fatal(err)
	}
	defer e.Stop()
	st := e.Stats()
	log.Printf("decrypted %d, encrypted %d; SA %x decaps %d",
		st.Workers[0].Decrypted, st.Workers[0].Encrypted, in.SPI(), in.Stats().DecapsPkts)
}

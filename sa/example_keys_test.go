package sa_test

import (
	"fmt"
	"net/netip"

	"github.com/espxdp/espxdp/esp"
	"github.com/espxdp/espxdp/sa"
)

// An IKE daemon negotiating a child SA: it reserves the inbound SPI to
// send to the peer, then installs both directions as one child and
// later deletes them together (which also unbinds them from the tunnel).
func ExampleSAD_AllocSPI() {
	events := make(chan sa.Event, 8)
	sad := sa.NewSAD(sa.SADOptions{Events: sa.EventChannel(events, nil)})
	tun := sa.NewTunnel("peer")

	spiIn, err := sad.AllocSPI(0xc0000000, 0xcfffffff, 0) // our SPI, sent in the CREATE_CHILD_SA answer
	if err != nil {
		panic(err)
	}
	tr := esp.MustParseTransform("aes128gcm16")
	key := make([]byte, tr.KeyLen()) // from the IKE key derivation
	local, remote := netip.MustParseAddr("192.0.2.1"), netip.MustParseAddr("198.51.100.2")
	mk := func(spi uint32, dir sa.Direction) *sa.SA {
		s, err := sa.New(sa.Config{SPI: spi, Direction: dir, Mode: esp.Tunnel, Local: local, Remote: remote,
			Transform: tr, Key: key, Child: 42})
		if err != nil {
			panic(err)
		}
		return s
	}
	in, out := mk(spiIn, sa.In), mk(0x1234, sa.Out) // 0x1234: the peer's choice
	if err := sad.AddChild(in, out); err != nil {   // consumes the reservation
		panic(err)
	}
	tun.AddInbound(in)
	tun.SetOutbound(out)
	fmt.Println("reserved after add:", sad.Reserved(spiIn), "child SAs:", len(sad.Child(42)))

	n, _ := sad.DeleteChild(42)
	fmt.Println("deleted:", n, "left in tunnel:", len(tun.Outbound())+len(tun.Inbound()))
	fmt.Println((<-events).Kind, (<-events).Kind)
	// Output:
	// reserved after add: false child SAs: 2
	// deleted: 2 left in tunnel: 0
	// deleted deleted
}

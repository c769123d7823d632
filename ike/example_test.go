package ike_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"time"

	"github.com/espxdp/espxdp/ike"
	"github.com/espxdp/espxdp/sa"
)

// Two endpoints on loopback: the initiator negotiates a child SA with
// the responder, and each side installs its pair of SAs.
func Example() {
	psk := []byte("example-pre-shared-key-0123456789")
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	start := func(id string, local, remote string, done chan<- *ike.ChildSA) (*ike.Endpoint, *sa.SAD, netip.AddrPort) {
		conn, err := net.ListenPacket("udp4", "127.0.0.1:0")
		if err != nil {
			panic(err)
		}
		sad := sa.NewSAD(sa.SADOptions{})
		ep, err := ike.NewEndpoint(ike.Config{
			PSK:      psk,
			LocalID:  ike.FQDN(id),
			LocalTS:  []ike.TrafficSelector{ike.SelectorFromPrefix(netip.MustParsePrefix(local))},
			RemoteTS: []ike.TrafficSelector{ike.SelectorFromPrefix(netip.MustParsePrefix(remote))},
			SAD:      sad,
			Logger:   quiet,
			OnChild: func(c *ike.ChildSA) {
				in, err := sa.New(c.In)
				if err != nil {
					panic(err)
				}
				out, err := sa.New(c.Out)
				if err != nil {
					panic(err)
				}
				if err := sad.AddChild(in, out); err != nil {
					panic(err)
				}
				done <- c
			},
		}, conn, nil)
		if err != nil {
			panic(err)
		}
		go ep.Serve()
		return ep, sad, conn.LocalAddr().(*net.UDPAddr).AddrPort()
	}
	ri, ii := make(chan *ike.ChildSA, 1), make(chan *ike.ChildSA, 1)
	resp, _, respAddr := start("gw-b.example", "10.2.0.0/16", "10.1.0.0/16", ri)
	defer resp.Close()
	init, _, _ := start("gw-a.example", "10.1.0.0/16", "10.2.0.0/16", ii)
	defer init.Close()

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	sa, err := init.Initiate(ctx, respAddr)
	if err != nil {
		fmt.Println(err)
		return
	}
	c, r := <-ii, <-ri
	fmt.Println(c.Transform, c.Out.SPI == r.In.SPI, c.In.Selectors[0].Src)
	fmt.Println(sa.Delete(ctx))
	// Output:
	// aes128gcm16 true 10.2.0.0/16
	// <nil>
}

//go:build linux

package xdp_test

import (
	"log"
	"net/netip"

	"github.com/espxdp/espxdp/esp"
	"github.com/espxdp/espxdp/sa"
	"github.com/espxdp/espxdp/xdp"
)

// ExampleUDPPort runs a route-based gateway without any XDP program: the
// plaintext side is a TUN device with offloads, one queue per worker,
// through a TUNPort (each worker reads and splits its queue into UMEM
// frames and writes decrypted packets coalesced with GRO), the
// ciphertext side ESP in UDP on port 4500 through a UDPPort, with UDP
// GSO on transmit and UDP GRO on receive. IKE datagrams arriving on
// port 4500 (behind the non-ESP marker) go to the callback; an IKE
// daemon answers through UDPPort.WriteTo.
func ExampleUDPPort() {
	tr := esp.MustParseTransform("aes128gcm16")
	key := make([]byte, tr.KeyLen()) // from IKE in real life
	local, remote := netip.MustParseAddr("192.0.2.1"), netip.MustParseAddr("198.51.100.2")
	mk := func(spi uint32, dir sa.Direction) *sa.SA {
		s, err := sa.New(sa.Config{SPI: spi, Direction: dir, Mode: esp.Tunnel, Local: local, Remote: remote,
			UDPEncap: true, Transform: tr, Key: key}) // ports 4500 on both sides
		if err != nil {
			log.Fatal(err)
		}
		return s
	}
	out, in := mk(0x2001, sa.Out), mk(0x1001, sa.In)
	sad := sa.NewSAD(sa.SADOptions{})
	sad.Add(out)
	sad.Add(in)
	tun := sa.NewTunnel("peer")
	tun.SetOutbound(out)
	// NATTPort 0 is 4500: the UDPPort's port.
	proc, err := sa.NewProcessor(sa.ProcessorOptions{SAD: sad, Tunnel: tun, Workers: 2})
	if err != nil {
		log.Fatal(err)
	}
	queues, err := xdp.OpenTUNQueues("esp0", 2) // route the remote networks into it
	if err != nil {
		log.Fatal(err)
	}
	defer func() {
		for _, q := range queues {
			q.Close() // after e.Stop (deferred later, runs first)
		}
	}()
	plain, err := xdp.NewTUNPort(queues)
	if err != nil {
		log.Fatal(err)
	}
	ike := make(chan []byte, 64)
	port := xdp.NewUDPPort(xdp.UDPPortConfig{
		Local: netip.AddrPortFrom(local, 0), // 0: port 4500
		NonESP: func(b []byte, from netip.AddrPort) {
			select {
			case ike <- append([]byte(nil), b...): // copy: b is the port's
			default: // never block a worker
			}
		},
	})
	e, err := xdp.NewEngine(xdp.EngineConfig{
		Processor:  proc,
		CipherPort: port,
		PlainPort:  plain,
		Workers:    2,
	})
	if err != nil {
		log.Fatal(err)
	}
	if err := e.Start(); err != nil {
		log.Fatal(err)
	}
	defer e.Stop()
	st := e.Stats().CipherPort
	log.Printf("ESP in UDP: %d sent in %d super-datagrams, %d received", st.TX, st.UDP.TXSuper, st.RX)
}

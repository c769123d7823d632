package xdp_test

import (
	"log"
	"net"
	"net/netip"
	"sync/atomic"

	"github.com/espxdp/espxdp/esp"
	"github.com/espxdp/espxdp/sa"
	"github.com/espxdp/espxdp/xdp"
)

// chanPort is a plaintext port that exchanges packets with Go code over
// channels: what is sent on In is encrypted, what is decrypted arrives
// on Out. It has no descriptor for the worker's poll(2), so it wakes the
// worker itself (PortEnv.Wake).
type chanPort struct {
	env     xdp.PortEnv
	in      []chan []byte // per worker: only that worker receives from it
	Out     chan []byte
	dropped atomic.Uint64
	rx, tx  atomic.Uint64
}

func newChanPort() *chanPort { return &chanPort{Out: make(chan []byte, 1024)} }

// Bind keeps the engine's environment and makes one queue per worker.
func (c *chanPort) Bind(env xdp.PortEnv) error {
	c.env = env
	c.in = make([]chan []byte, env.Workers)
	for i := range c.in {
		c.in[i] = make(chan []byte, 1024)
	}
	return nil
}

// Send queues an IP packet for encryption by worker w.
func (c *chanPort) Send(w int, pkt []byte) {
	c.in[w] <- pkt
	c.env.Wake(w)
}

// Receive copies queued packets into UMEM frames: this port is not
// zero-copy, the AF_XDP ports are.
func (c *chanPort) Receive(w int, pkts []sa.Packet) int {
	n := min(len(pkts), len(c.in[w]))
	if n == 0 {
		return 0
	}
	n = c.env.Alloc(pkts[:n])
	k := 0
	for i := range n {
		b := <-c.in[w]
		if len(b) > c.env.MaxPacket() {
			c.dropped.Add(1)
			c.env.Free(pkts[i : i+1])
			continue
		}
		p := pkts[i]
		p.Len = copy(p.Buf[p.Off:], b)
		pkts[k] = p
		k++
	}
	c.rx.Add(uint64(k))
	return k
}

// Transmit copies decrypted packets out of their frames and gives the
// frames back.
func (c *chanPort) Transmit(w int, pkts []sa.Packet) {
	for i := range pkts {
		select {
		case c.Out <- append([]byte(nil), pkts[i].Data()...):
			c.tx.Add(1)
		default:
			c.dropped.Add(1)
		}
	}
	c.env.Free(pkts)
}

func (c *chanPort) Maintain(w int, idle bool) {}
func (c *chanPort) InFlight(w int) int        { return 0 }
func (c *chanPort) PollFDs(w int) []int       { return nil }
func (c *chanPort) Unbind() error             { return nil }
func (c *chanPort) Stats() xdp.PortStats {
	return xdp.PortStats{RX: c.rx.Load(), TX: c.tx.Load(), Drops: c.dropped.Load()}
}

// ExampleEnginePort plugs a port of the embedder's own into an Engine as
// its plaintext side: the ciphertext side stays on AF_XDP (eth0), the
// plaintext comes from and goes to Go code through channels. A port of
// a UDP socket or a wireguard-go conn.Bind has the same shape: copy into
// frames from PortEnv.Alloc in Receive, copy out and PortEnv.Free in
// Transmit, a descriptor from PollFDs (or PortEnv.Wake) so that a
// sleeping worker wakes up.
func ExampleEnginePort() {
	tr := esp.MustParseTransform("aes128gcm16")
	key := make([]byte, tr.KeyLen()) // from IKE in real life
	local, remote := netip.MustParseAddr("192.0.2.1"), netip.MustParseAddr("198.51.100.2")
	out, err := sa.New(sa.Config{SPI: 0x2001, Direction: sa.Out, Mode: esp.Tunnel,
		Local: local, Remote: remote, Transform: tr, Key: key})
	if err != nil {
		log.Fatal(err)
	}
	sad := sa.NewSAD(sa.SADOptions{})
	sad.Add(out)
	tun := sa.NewTunnel("peer")
	tun.SetOutbound(out)
	proc, err := sa.NewProcessor(sa.ProcessorOptions{SAD: sad, Tunnel: tun})
	if err != nil {
		log.Fatal(err)
	}
	router, _ := net.ParseMAC("02:00:00:00:00:01")
	port := newChanPort()
	e, err := xdp.NewEngine(xdp.EngineConfig{
		Processor: proc,
		Cipher:    xdp.Port{Name: "eth0", NextHop: router},
		PlainPort: port,
	})
	if err != nil {
		log.Fatal(err)
	}
	if err := e.Start(); err != nil {
		log.Fatal(err)
	}
	defer e.Stop()
	var ipPacket []byte     // an IP packet the tunnel's outbound SA covers
	port.Send(0, ipPacket)  // leaves eth0 as ESP to 198.51.100.2
	decrypted := <-port.Out // an IP packet the peer sent through the tunnel
	log.Printf("%d bytes decrypted; port %+v", len(decrypted), e.Stats().PlainPort)
}

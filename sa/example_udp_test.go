package sa_test

import (
	"bytes"
	"fmt"
	"net"
	"net/netip"
	"time"

	"github.com/espxdp/espxdp/esp"
	"github.com/espxdp/espxdp/sa"
)

// udpPeer is one end of ESP over a UDP socket: the kernel adds the IP
// and UDP headers, the SAs see the bare ESP packet (Packet.ESPOnly).
type udpPeer struct {
	conn *net.UDPConn
	sad  *sa.SAD
	tun  *sa.Tunnel
	proc *sa.Processor
}

func newUDPPeer(name string) *udpPeer {
	conn, err := net.ListenUDP("udp4", net.UDPAddrFromAddrPort(netip.MustParseAddrPort("127.0.0.1:0")))
	if err != nil {
		panic(err)
	}
	p := &udpPeer{conn: conn, sad: sa.NewSAD(sa.SADOptions{}), tun: sa.NewTunnel(name)}
	p.proc, _ = sa.NewProcessor(sa.ProcessorOptions{SAD: p.sad, Tunnel: p.tun})
	return p
}

// send encrypts an inner IP packet with the tunnel's current outbound
// SA and writes the ESP packet to the other peer's socket; it returns a
// copy of the ESP packet.
func (p *udpPeer) send(to *udpPeer, inner []byte) []byte {
	b := []sa.Packet{withRoom(inner)}
	b[0].ESPOnly = true
	p.proc.Worker(0).Outbound(b)
	if b[0].Verdict != sa.VerdictOK {
		panic(b[0].Reason)
	}
	p.write(to, b[0].Data())
	return append([]byte(nil), b[0].Data()...)
}

func (p *udpPeer) write(to *udpPeer, pkt []byte) {
	if _, err := p.conn.WriteToUDPAddrPort(pkt, to.conn.LocalAddr().(*net.UDPAddr).AddrPort()); err != nil {
		panic(err)
	}
}

// recv reads one datagram and decrypts it; it returns the SA that took
// it and the inner packet's UDP payload.
func (p *udpPeer) recv() (string, string) {
	buf := make([]byte, 2048)
	p.conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	n, _, err := p.conn.ReadFromUDPAddrPort(buf)
	if err != nil {
		panic(err)
	}
	b := []sa.Packet{{Buf: buf, Len: n, ESPOnly: true}}
	p.proc.Worker(0).Inbound(b)
	if b[0].Verdict != sa.VerdictOK {
		return "(none)", fmt.Sprint(b[0].Verdict, " ", b[0].Reason)
	}
	return b[0].SA.Config().Name, string(b[0].Data()[28:])
}

// espOnlySA makes one tunnel-mode SA for ESP over a UDP socket: no
// endpoints (the socket has them), ESPOnly.
func espOnlySA(name string, spi uint32, dir sa.Direction, keyByte byte) *sa.SA {
	tr := esp.MustParseTransform("aes256gcm16")
	s, err := sa.New(sa.Config{Name: name, SPI: spi, Direction: dir, Mode: esp.Tunnel, ESPOnly: true,
		Transform: tr, Key: bytes.Repeat([]byte{keyByte}, tr.KeyLen())}) // keys from IKE in real life
	if err != nil {
		panic(err)
	}
	return s
}

// Example_espOverUDP carries ESP over two UDP sockets on loopback
// (Packet.ESPOnly, Config.ESPOnly), both ways, then rekeys
// make-before-break: the new inbound SAs are installed first, then the
// tunnels switch to the new outbound SAs, and the old SAs are deleted
// only once packets sent under them before the switch have arrived.
func Example_espOverUDP() {
	a, b := newUDPPeer("to-b"), newUDPPeer("to-a")
	defer a.conn.Close()
	defer b.conn.Close()
	install := func(gen int, spiAB, spiBA uint32, k byte) (outA, inB, outB, inA *sa.SA) {
		outA, inB = espOnlySA(fmt.Sprintf("a-to-b.%d", gen), spiAB, sa.Out, k), espOnlySA(fmt.Sprintf("a-to-b.%d", gen), spiAB, sa.In, k)
		outB, inA = espOnlySA(fmt.Sprintf("b-to-a.%d", gen), spiBA, sa.Out, k+1), espOnlySA(fmt.Sprintf("b-to-a.%d", gen), spiBA, sa.In, k+1)
		// Inbound first: a peer must be able to receive under the new
		// SA before anyone sends under it.
		b.sad.Add(inB)
		b.tun.AddInbound(inB)
		a.sad.Add(inA)
		a.tun.AddInbound(inA)
		a.sad.Add(outA)
		b.sad.Add(outB)
		return
	}
	outA1, inB1, outB1, inA1 := install(1, 0x1000, 0x2000, 1)
	a.tun.SetOutbound(outA1)
	b.tun.SetOutbound(outB1)

	a.send(b, innerPacket("10.1.0.5", "10.2.0.7", "ping"))
	fmt.Println(b.recv())
	b.send(a, innerPacket("10.2.0.7", "10.1.0.5", "pong"))
	fmt.Println(a.recv())

	// Rekey. A packet still in flight under the old SA when the sender
	// switches...
	late := a.send(b, innerPacket("10.1.0.5", "10.2.0.7", "late"))
	outA2, _, outB2, _ := install(2, 0x1001, 0x2001, 3)
	a.tun.SetOutbound(outA2)
	b.tun.SetOutbound(outB2)
	a.send(b, innerPacket("10.1.0.5", "10.2.0.7", "new key"))
	b.send(a, innerPacket("10.2.0.7", "10.1.0.5", "new key too"))
	// ... is still accepted: the old inbound SA is there until now.
	fmt.Println(b.recv())
	fmt.Println(b.recv())
	fmt.Println(a.recv())

	// Break: delete the old SAs (out of the SAD and the tunnel, keys
	// wiped). A replay of an old packet now finds no SA.
	a.sad.DeleteSA(outA1)
	b.sad.DeleteSA(inB1)
	b.sad.DeleteSA(outB1)
	a.sad.DeleteSA(inA1)
	a.write(b, late)
	fmt.Println(b.recv())
	a.send(b, innerPacket("10.1.0.5", "10.2.0.7", "still up"))
	fmt.Println(b.recv())
	fmt.Println("SAs left:", a.sad.Len(), b.sad.Len())
	// Output:
	// a-to-b.1 ping
	// b-to-a.1 pong
	// a-to-b.1 late
	// a-to-b.2 new key
	// b-to-a.2 new key too
	// (none) drop no-sa
	// a-to-b.2 still up
	// SAs left: 2 2
}

package sa_test

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"time"

	"github.com/espxdp/espxdp/esp"
	"github.com/espxdp/espxdp/sa"
)

// innerPacket returns a minimal IPv4/UDP packet from src to dst.
func innerPacket(src, dst string, payload string) []byte {
	p := make([]byte, 28+len(payload))
	p[0], p[8], p[9] = 0x45, 64, 17
	binary.BigEndian.PutUint16(p[2:], uint16(len(p)))
	s, d := netip.MustParseAddr(src).As4(), netip.MustParseAddr(dst).As4()
	copy(p[12:], s[:])
	copy(p[16:], d[:])
	binary.BigEndian.PutUint16(p[20:], 4000)
	binary.BigEndian.PutUint16(p[22:], 53)
	binary.BigEndian.PutUint16(p[24:], uint16(8+len(payload)))
	copy(p[28:], payload)
	return p
}

// withRoom copies pkt into a buffer with the head- and tailroom
// Outbound needs.
func withRoom(pkt []byte) sa.Packet {
	buf := make([]byte, esp.MaxHeadroom+len(pkt)+esp.MaxTailroom)
	copy(buf[esp.MaxHeadroom:], pkt)
	return sa.Packet{Buf: buf, Off: esp.MaxHeadroom, Len: len(pkt)}
}

func Example() {
	// Gateway A encrypts towards gateway B with AES-GCM (key‖salt).
	tr := esp.MustParseTransform("aes128gcm16")
	key := bytes.Repeat([]byte{7}, tr.KeyLen()) // from IKE in real life
	cfg := sa.Config{Name: "a-to-b", SPI: 0x100, Direction: sa.Out, Mode: esp.Tunnel,
		Local: netip.MustParseAddr("192.0.2.1"), Remote: netip.MustParseAddr("198.51.100.2"),
		Transform: tr, Key: key, PathMTU: 1500}
	out, err := sa.New(cfg)
	if err != nil {
		panic(err)
	}
	cfg.Direction, cfg.Local, cfg.Remote = sa.In, cfg.Remote, cfg.Local
	in, _ := sa.New(cfg)

	sadA, sadB := sa.NewSAD(sa.SADOptions{}), sa.NewSAD(sa.SADOptions{})
	sadA.Add(out)
	sadB.Add(in)
	tun := sa.NewTunnel("to-b")
	tun.SetOutbound(out)
	a, _ := sa.NewProcessor(sa.ProcessorOptions{SAD: sadA, Tunnel: tun})
	b, _ := sa.NewProcessor(sa.ProcessorOptions{SAD: sadB})

	inner := innerPacket("10.1.0.5", "10.2.0.7", "hello")
	batch := []sa.Packet{withRoom(inner)}
	a.Worker(0).Outbound(batch)
	fmt.Println("outbound:", batch[0].Verdict, len(inner), "->", batch[0].Len, "bytes")
	replayed := append([]byte(nil), batch[0].Data()...)

	b.Worker(0).Inbound(batch)
	fmt.Println("inbound:", batch[0].Verdict, bytes.Equal(batch[0].Data(), inner))

	batch[0].Reset(replayed, 0, len(replayed)) // an attacker replays it
	b.Worker(0).Inbound(batch)
	fmt.Println("replayed:", batch[0].Verdict, batch[0].Reason)

	st := in.Stats()
	fmt.Println("decaps:", st.DecapsPkts, "replay drops:", st.Drops[sa.DropReplay])
	fmt.Println("plaintext MTU:", out.Stats().PlaintextMTU)
	// Output:
	// outbound: ok 33 -> 88 bytes
	// inbound: ok true
	// replayed: drop replay
	// decaps: 1 replay drops: 1
	// plaintext MTU: 1446
}

func ExampleNew_errors() {
	_, err := sa.New(sa.Config{SPI: 0x101, Direction: sa.In, Mode: esp.Transport,
		Transform: esp.MustParseTransform("aes256gcm16"), Key: make([]byte, 32)})
	var ce *sa.ConfigError
	fmt.Println(errors.As(err, &ce), ce.Field, errors.Is(err, esp.ErrKeySize))
	// Output: true Key true
}

func ExampleConfig_String() {
	tr := esp.MustParseTransform("aes128-sha256")
	cfg := sa.Config{Name: "x", SPI: 0x1234, Direction: sa.In, Mode: esp.Transport, Transform: tr,
		Key: make([]byte, tr.KeyLen()), AuthKey: make([]byte, tr.AuthKeyLen())}
	fmt.Printf("%+.60v\n", cfg)
	fmt.Println(bytes.Contains([]byte(cfg.String()), []byte("redacted 32 bytes")))
	// Output:
	// {Name:x SPI:0x00001234 Direction:in Mode:transport Local:inv
	// true
}

func ExampleSPD() {
	var events []sa.Event
	spd := sa.NewSPD(sa.SPDOptions{Events: func(e sa.Event) { events = append(events, e) }})
	spd.Set([]*sa.Policy{
		{Name: "dns", Selector: sa.Selector{Proto: 17, DstPorts: sa.PortRange{Lo: 53, Hi: 53}}, Action: sa.Bypass},
		{Name: "site-b", Selector: sa.Selector{
			Src: netip.MustParsePrefix("10.1.0.0/16"), Dst: netip.MustParsePrefix("10.2.0.0/16")},
			Action: sa.Protect, Tunnel: sa.NewTunnel("site-b")}, // no SA negotiated yet
	})
	p, _ := sa.NewProcessor(sa.ProcessorOptions{SAD: sa.NewSAD(sa.SADOptions{}), SPD: spd})
	pkt := innerPacket("10.1.0.5", "10.2.0.7", "x")
	binary.BigEndian.PutUint16(pkt[22:], 80) // not DNS
	batch := []sa.Packet{withRoom(pkt), withRoom(pkt), withRoom(innerPacket("10.1.0.5", "8.8.8.8", "q"))}
	p.Worker(0).Outbound(batch)
	for _, q := range batch {
		fmt.Println(q.Policy.Name, q.Verdict, q.Reason)
	}
	fmt.Println(len(events), events[0].Kind, events[0].Packet.Dst)
	// Output:
	// site-b drop acquire
	// site-b drop acquire
	// dns bypass none
	// 1 acquire 10.2.0.7/32
}

func ExampleTunnel_rekey() {
	tr := esp.MustParseTransform("aes256gcm16")
	mk := func(spi uint32, dir sa.Direction) *sa.SA {
		key := make([]byte, tr.KeyLen()) // a fresh key per SA (IKE derives one)
		key[0] = byte(spi)
		s, err := sa.New(sa.Config{SPI: spi, Direction: dir, Mode: esp.Tunnel,
			Local: netip.MustParseAddr("192.0.2.1"), Remote: netip.MustParseAddr("198.51.100.2"),
			Transform: tr, Key: key,
			SoftLifetime: sa.Lifetime{Packets: 2}, HardLifetime: sa.Lifetime{Packets: 3}})
		if err != nil {
			panic(err)
		}
		return s
	}
	rekey := make(chan sa.Event, 8)
	sad := sa.NewSAD(sa.SADOptions{Events: sa.EventChannel(rekey, nil)})
	tun := sa.NewTunnel("peer")
	old := mk(0x1010, sa.Out)
	sad.Add(old)
	tun.SetOutbound(old)
	p, _ := sa.NewProcessor(sa.ProcessorOptions{SAD: sad})
	send := func() *sa.SA {
		b := []sa.Packet{withRoom(innerPacket("10.1.0.1", "10.2.0.1", "data"))}
		b[0].Tunnel = tun
		p.Worker(0).Outbound(b)
		return b[0].SA
	}
	send()
	send()
	e := <-rekey // soft lifetime: time to rekey
	fmt.Println(e.Kind, e.Limit, e.SA == old)
	next := mk(0x1011, sa.Out)
	sad.Add(next)
	tun.SetOutbound(next) // traffic moves atomically
	fmt.Printf("now on 0x%x\n", send().SPI())
	sad.Delete(sa.Out, old.SPI()) // keys wiped
	fmt.Println(old.State(), sad.Len())
	// Output:
	// soft-expire packets true
	// now on 0x1011
	// deleted 1
}

func ExampleSAD_Sweep() {
	clock := time.Unix(1_700_000_000, 0)
	tr := esp.MustParseTransform("aes128gcm16")
	s, _ := sa.New(sa.Config{SPI: 0x105, Direction: sa.In, Mode: esp.Transport, Transform: tr,
		Key: make([]byte, tr.KeyLen()), Created: clock,
		SoftLifetime: sa.Lifetime{Time: 50 * time.Minute}, HardLifetime: sa.Lifetime{Time: time.Hour}})
	sad := sa.NewSAD(sa.SADOptions{Events: func(e sa.Event) { fmt.Println("event:", e.Kind, e.Limit) }})
	sad.Add(s)
	sad.Sweep(clock.Add(30 * time.Minute))
	fmt.Println(s.StatsAt(clock.Add(30*time.Minute)).HardRemaining.Seconds, "s left")
	sad.Sweep(clock.Add(55 * time.Minute))
	sad.Sweep(clock.Add(61 * time.Minute))
	fmt.Println(s.State())
	// Output:
	// 1800 s left
	// event: soft-expire time
	// event: hard-expire time
	// expired
}

func ExampleSA_Update() {
	tr := esp.MustParseTransform("aes128gcm16")
	s, _ := sa.New(sa.Config{SPI: 0x1234, Direction: sa.Out, Mode: esp.Tunnel, UDPEncap: true,
		Local: netip.MustParseAddr("192.0.2.1"), Remote: netip.MustParseAddr("198.51.100.2"),
		Transform: tr, Key: make([]byte, tr.KeyLen()), PathMTU: 1500})
	sad := sa.NewSAD(sa.SADOptions{})
	sad.Add(s)
	tun := sa.NewTunnel("peer")
	tun.SetOutbound(s)
	p, _ := sa.NewProcessor(sa.ProcessorOptions{SAD: sad, Tunnel: tun})
	send := func() {
		b := []sa.Packet{withRoom(innerPacket("10.1.0.1", "10.2.0.1", "data"))}
		p.Worker(0).Outbound(b)
	}
	send()
	send()

	// The peer's NAT rebound it to a new address and port, and a reload
	// changed the lifetime: the same SA carries on, with its sequence
	// number, replay window and counters.
	remote, port := netip.MustParseAddr("203.0.113.9"), uint16(41000)
	err := s.Update(sa.Changes{Remote: &remote, RemotePort: &port,
		HardLifetime: &sa.Lifetime{Time: 8 * time.Hour}})
	fmt.Println(err)
	send()
	st := s.Stats()
	fmt.Println(st.Remote, st.RemotePort, st.Seq, st.HardRemaining.Seconds)

	// Invalid changes are refused as a whole.
	mtu := 60
	err = s.Update(sa.Changes{PathMTU: &mtu, TTL: new(uint8)})
	fmt.Println(err, s.PathMTU())
	// Output:
	// <nil>
	// 203.0.113.9 41000 3 28800
	// sa: invalid config: PathMTU: 60 (want 0 or 68..65535) 1500
}

// Example_restart persists an SA's sequence state and re-creates it
// after a restart without reusing a sequence number or accepting a
// replay.
func Example_restart() {
	tr := esp.MustParseTransform("aes128gcm16")
	key := bytes.Repeat([]byte{3}, tr.KeyLen())
	cfg := sa.Config{SPI: 0x2000, Direction: sa.Out, Mode: esp.Tunnel,
		Local: netip.MustParseAddr("192.0.2.1"), Remote: netip.MustParseAddr("198.51.100.2"),
		Transform: tr, Key: key,
		SeqLimit: 1000} // reservation: written to disk (and fsynced) before New
	out, _ := sa.New(cfg)
	icfg := cfg
	icfg.Direction, icfg.Local, icfg.Remote, icfg.SeqLimit = sa.In, cfg.Remote, cfg.Local, 0
	in, _ := sa.New(icfg)
	sadA, sadB := sa.NewSAD(sa.SADOptions{}), sa.NewSAD(sa.SADOptions{})
	sadA.Add(out)
	sadB.Add(in)
	a, _ := sa.NewProcessor(sa.ProcessorOptions{SAD: sadA})
	b, _ := sa.NewProcessor(sa.ProcessorOptions{SAD: sadB})
	seal := func(s *sa.SA) []byte {
		t := sa.NewTunnel("t")
		t.SetOutbound(s)
		batch := []sa.Packet{withRoom(innerPacket("10.1.0.1", "10.2.0.1", "x"))}
		batch[0].Tunnel = t
		a.Worker(0).Outbound(batch)
		return append([]byte(nil), batch[0].Data()...)
	}
	open := func(pkt []byte) sa.Verdict {
		batch := []sa.Packet{{Buf: append([]byte(nil), pkt...), Len: len(pkt)}}
		b.Worker(0).Inbound(batch)
		return batch[0].Verdict
	}
	first := seal(out)
	fmt.Println(open(first), out.Seq())

	// Shutdown: delete the SAs (their runs finish), then persist.
	sadA.Delete(sa.Out, 0x2000)
	sadB.Delete(sa.In, 0x2000)
	persistedSeq := out.SeqLimit() // a crash could not have used more
	persistedWindow := in.ReplayState()

	// Restart: the same key continues where it was.
	cfg.InitialSeq, cfg.SeqLimit = persistedSeq, persistedSeq+1000
	icfg.Replay = &persistedWindow
	out, _ = sa.New(cfg)
	in, _ = sa.New(icfg)
	sadA.Add(out)
	sadB.Add(in)
	fmt.Println(open(first), open(seal(out)), out.Seq())
	// Output:
	// ok 1
	// drop ok 1001
}

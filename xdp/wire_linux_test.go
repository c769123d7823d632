//go:build linux

package xdp

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/espxdp/espxdp/bpf"
	"github.com/espxdp/espxdp/esp"
	"github.com/espxdp/espxdp/internal/netns"
	"github.com/espxdp/espxdp/sa"
)

// sendFrames sends complete Ethernet frames out of link l through an
// AF_PACKET socket: the bytes on the wire are exactly the frames (tags
// included).
func sendFrames(l *netns.Link, frames ...[]byte) error {
	return l.NS.Do(func() error {
		fd, err := unix.Socket(unix.AF_PACKET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, 0)
		if err != nil {
			return err
		}
		defer unix.Close(fd)
		for _, f := range frames {
			if err := unix.Sendto(fd, f, 0, &unix.SockaddrLinklayer{Ifindex: l.Index, Halen: 6}); err != nil {
				return err
			}
		}
		return nil
	})
}

// tagged inserts an 802.1Q tag with VLAN ID vid after the MACs of frame.
func tagged(frame []byte, vid uint16) []byte {
	out := append([]byte(nil), frame[:12]...)
	out = binary.BigEndian.AppendUint16(out, 0x8100)
	out = binary.BigEndian.AppendUint16(out, vid)
	return append(out, frame[12:]...)
}

// vlanCapture is an AF_PACKET socket with PACKET_AUXDATA: the kernel
// takes 802.1Q tags out of received frames before packet sockets see
// them, and reports them in the auxiliary data. (This kernel has no
// 802.1Q sub-interfaces, CONFIG_VLAN_8021Q; the tags are checked here
// instead.)
type vlanCapture struct{ fd int }

func newVLANCapture(t *testing.T, l *netns.Link) *vlanCapture {
	t.Helper()
	var c vlanCapture
	err := l.NS.Do(func() (err error) {
		if c.fd, err = unix.Socket(unix.AF_PACKET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, int(htons(unix.ETH_P_ALL))); err != nil {
			return err
		}
		tv := unix.NsecToTimeval(int64(20 * time.Millisecond))
		if err := unix.SetsockoptTimeval(c.fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv); err != nil {
			return err
		}
		if err := unix.SetsockoptInt(c.fd, unix.SOL_PACKET, unix.PACKET_AUXDATA, 1); err != nil {
			return err
		}
		return unix.Bind(c.fd, &unix.SockaddrLinklayer{Protocol: htons(unix.ETH_P_ALL), Ifindex: l.Index})
	})
	if err != nil {
		t.Fatalf("capture on %s: %v", l.Name, err)
	}
	t.Cleanup(func() { unix.Close(c.fd) })
	return &c
}

// taggedFrame is a received frame and its 802.1Q tag (vlan -1: none).
type taggedFrame struct {
	frame []byte
	vlan  int
}

// collect returns incoming frames matching match until want came or
// timeout passed.
func (c *vlanCapture) collect(want int, timeout time.Duration, match func([]byte) bool) []taggedFrame {
	var got []taggedFrame
	buf, oob := make([]byte, 9100), make([]byte, 256)
	for deadline := time.Now().Add(timeout); len(got) < want && time.Now().Before(deadline); {
		n, oobn, _, from, err := unix.Recvmsg(c.fd, buf, oob, 0)
		if err != nil {
			continue
		}
		if ll, ok := from.(*unix.SockaddrLinklayer); ok && ll.Pkttype == unix.PACKET_OUTGOING {
			continue
		}
		if !match(buf[:n]) {
			continue
		}
		f := taggedFrame{frame: append([]byte(nil), buf[:n]...), vlan: -1}
		msgs, _ := unix.ParseSocketControlMessage(oob[:oobn])
		for _, m := range msgs {
			if m.Header.Level != unix.SOL_PACKET || m.Header.Type != unix.PACKET_AUXDATA || len(m.Data) < int(unsafe.Sizeof(unix.TpacketAuxdata{})) {
				continue
			}
			aux := (*unix.TpacketAuxdata)(unsafe.Pointer(&m.Data[0]))
			if aux.Status&unix.TP_STATUS_VLAN_VALID != 0 {
				f.vlan = int(aux.Vlan_tci & 0x0fff)
			}
		}
		got = append(got, f)
	}
	return got
}

// TestEngineVLAN: the engine's ciphertext side is VLAN 100 (Port.VLAN).
// ESP sent to it tagged 100 is decrypted; the ESP it sends carries the
// tag; untagged ESP and ESP of VLAN 200 are dropped and counted as
// VLANDrops, never decrypted.
func TestEngineVLAN(t *testing.T) {
	requireNet(t)
	n := newEngNet(t)
	const vid = 100
	s := newEngSAs(t, n)
	cfg := n.config(s)
	cfg.Cipher.VLAN = vid
	e := startEngine(t, n, cfg)
	capP, capC := newCapture(t, n.p.B), newVLANCapture(t, n.c.B)
	frame := func(pkt []byte, vlan uint16) []byte {
		f := ether(n.c.A.MAC, n.c.B.MAC, 0x0800, pkt)
		if vlan == 0xffff {
			return f
		}
		return tagged(f, vlan)
	}

	// Inbound: tagged ESP.
	const count = 10
	var inner [][]byte
	for i := range count {
		inner = append(inner, innerUDP(n.remote, n.pP, uint16(i), 100+i))
	}
	espPkts := encryptScapy(t, scapySA(spiIn, n, false), inner, 1)
	var frames [][]byte
	for _, p := range espPkts {
		frames = append(frames, frame(p, vid))
	}
	if err := sendFrames(n.c.B, frames...); err != nil {
		t.Fatal(err)
	}
	if got := capP.collect(count, 3*time.Second, fromTo(17, n.remote, n.pP)); len(got) != count {
		t.Fatalf("decrypted %d of %d tagged ESP packets; stats %+v", len(got), count, e.Stats().Workers[0])
	}

	// Outbound: the engine tags.
	var out [][]byte
	for i := range count {
		out = append(out, innerUDP(n.pP, n.remote, uint16(i), 200+i))
	}
	if err := sendIPv4(n.nsP, unix.IPPROTO_RAW, out...); err != nil {
		t.Fatal(err)
	}
	got := capC.collect(count, 3*time.Second, fromTo(50, n.eC, n.pC))
	if len(got) != count {
		t.Fatalf("the peer received %d of %d ESP packets; stats %+v", len(got), count, e.Stats().Workers[0])
	}
	for i, f := range got {
		if f.vlan != vid {
			t.Errorf("ESP frame %d: VLAN %d, want %d", i, f.vlan, vid)
		}
	}

	// Frames of no VLAN or of another: dropped, counted.
	more := encryptScapy(t, scapySA(spiIn, n, false), inner[:3], 100)
	if err := sendFrames(n.c.B, frame(more[0], 0xffff), frame(more[1], 200), frame(more[2], 0)); err != nil {
		t.Fatal(err)
	}
	netns.WaitFor(2*time.Second, func() bool { return e.Stats().Workers[0].VLANDrops >= 3 })
	w := e.Stats().Workers[0]
	// Encrypted includes the ICMP port unreachables nsP's kernel sends
	// back for the decrypted UDP packets.
	if w.VLANDrops != 3 || w.Decrypted != count || w.Encrypted < count {
		t.Errorf("VLAN drops %d, decrypted %d, encrypted %d; want 3, %d, ≥ %d", w.VLANDrops, w.Decrypted, w.Encrypted, count, count)
	}
	if st := s.in.Stats(); st.DecapsPkts != count {
		t.Errorf("SA decapsulated %d, want %d: a frame of the wrong VLAN was decrypted", st.DecapsPkts, count)
	}
	checkFrames(t, e)
}

func TestVLANOK(t *testing.T) {
	frame := func(tags ...uint16) []byte {
		b := make([]byte, 12, 64)
		for _, tci := range tags {
			b = binary.BigEndian.AppendUint16(b, 0x8100)
			b = binary.BigEndian.AppendUint16(b, tci)
		}
		b = binary.BigEndian.AppendUint16(b, 0x0800)
		return append(b, make([]byte, 20)...)
	}
	qinq := frame(100, 5)
	binary.BigEndian.PutUint16(qinq[12:], 0x88a8)
	sTag := frame(100)
	binary.BigEndian.PutUint16(sTag[12:], 0x88a8)
	for _, c := range []struct {
		name  string
		frame []byte
		vlan  uint16
		want  bool
	}{
		{"untagged on untagged port", frame(), 0, true},
		{"priority tag on untagged port", frame(0x6000), 0, true},
		{"tagged on untagged port", frame(100), 0, false},
		{"untagged on vlan port", frame(), 100, false},
		{"right tag", frame(100), 100, true},
		{"right tag with priority", frame(0xa000 | 100), 100, true},
		{"wrong tag", frame(200), 100, false},
		{"double tag", frame(100, 100), 100, false},
		{"802.1ad tag", sTag, 100, false},
		{"qinq", qinq, 100, false},
	} {
		h := l2Len(c.frame)
		if h == 0 {
			t.Fatalf("%s: l2Len 0", c.name)
		}
		if got := vlanOK(c.frame, h, c.vlan); got != c.want {
			t.Errorf("%s: vlanOK %v, want %v", c.name, got, c.want)
		}
	}
}

// TestEngineMTUTooLarge: an interface whose MTU needs frames longer than
// a UMEM frame holds (a jumbo MTU without multi-buffer) makes Start fail
// with ErrMTU, naming the interface, its MTU and the limit, and leaves
// nothing attached; at the limit the engine starts.
func TestEngineMTUTooLarge(t *testing.T) {
	requireNet(t)
	n := newEngNet(t)
	s := newEngSAs(t, n)
	cfg := n.config(s)
	limit := MaxFrameLen(cfg.UMEM) - 14
	for _, c := range []struct {
		name string
		link *netns.Link
		mtu  int
		want int // the limit in the message
	}{
		{"cipher jumbo", n.c.A, 9000, limit},
		{"plain above the limit", n.p.A, limit - esp.MaxTailroom + 1, limit - esp.MaxTailroom},
	} {
		t.Run(c.name, func(t *testing.T) {
			c.link.NS.IP(t, "link", "set", "dev", c.link.Name, "mtu", strconv.Itoa(c.mtu))
			defer c.link.NS.IP(t, "link", "set", "dev", c.link.Name, "mtu", "1500")
			e, err := NewEngine(cfg)
			if err != nil {
				t.Fatal(err)
			}
			err = n.nsE.Do(e.Start)
			if !errors.Is(err, ErrMTU) {
				e.Stop()
				t.Fatalf("Start with MTU %d on %s: %v, want ErrMTU", c.mtu, c.link.Name, err)
			}
			for _, s := range []string{c.link.Name, fmt.Sprintf("MTU %d", c.mtu), fmt.Sprintf("at most %d bytes", c.want)} {
				if !strings.Contains(err.Error(), s) {
					t.Errorf("error %q does not say %q", err, s)
				}
			}
			if c.link.XDPAttached(t) {
				t.Errorf("XDP program left on %s", c.link.Name)
			}
		})
	}
	// At the limits it starts.
	n.c.A.NS.IP(t, "link", "set", "dev", n.c.A.Name, "mtu", strconv.Itoa(limit))
	n.p.A.NS.IP(t, "link", "set", "dev", n.p.A.Name, "mtu", strconv.Itoa(limit-esp.MaxTailroom))
	startEngine(t, n, cfg)
}

func TestEngineMultiBufferConfig(t *testing.T) {
	sad := sa.NewSAD(sa.SADOptions{})
	mk := func(c sa.Concurrency) *sa.Processor {
		p, err := sa.NewProcessor(sa.ProcessorOptions{SAD: sad, Concurrency: c, Workers: 1})
		if err != nil {
			t.Fatal(err)
		}
		return p
	}
	base := EngineConfig{Processor: mk(sa.Shared), Cipher: Port{Name: "x", NextHop: make([]byte, 6)},
		Deliver: func([][]byte) {}, MultiBuffer: true}
	if c, err := base.normalize(); err != nil || c.Attach != bpf.AttachGeneric {
		t.Errorf("MultiBuffer: attach %v, %v; want generic", c.Attach, err)
	}
	for name, mod := range map[string]func(*EngineConfig){
		"sharded":     func(c *EngineConfig) { c.Processor = mk(sa.Sharded) },
		"native":      func(c *EngineConfig) { c.Attach = bpf.AttachNative },
		"zerocopy":    func(c *EngineConfig) { c.Mode = ModeZeroCopy },
		"small batch": func(c *EngineConfig) { c.BatchSize = 8 },
	} {
		c := base
		mod(&c)
		if _, err := c.normalize(); !errors.Is(err, ErrInvalidConfig) {
			t.Errorf("%s: %v, want ErrInvalidConfig", name, err)
		}
	}
}

// TestSocketChains: a socket bound with MultiBuffer transmits whole
// descriptor chains only: a chain whose last descriptor still says
// XDP_PKT_CONTD is not consumed; a complete chain leaves as one frame of
// the sum of its parts. Without MultiBuffer, a descriptor with options is
// invalid.
func TestSocketChains(t *testing.T) {
	requireNet(t)
	n := newTestNet(t, 1)
	n.xns.IP(t, "link", "set", "dev", n.v.A.Name, "mtu", "9000")
	n.peer.IP(t, "link", "set", "dev", n.v.B.Name, "mtu", "9000")
	u := newTestUMEM(t, UMEMConfig{NumFrames: 256, FillSize: 64, CompletionSize: 64})
	s := openSocket(t, n.xns, u, SocketConfig{Ifindex: n.v.A.Index, RXSize: -1, TXSize: 64, MultiBuffer: true})
	capB := newCapture(t, n.v.B)
	frame := ether(n.v.B.MAC, n.v.A.MAC, 0x0800, ipv4(n.x4, n.p4, 17, 9, make([]byte, 6000-34)))
	var ds [3]Desc
	if u.Alloc(ds[:2]) != 2 {
		t.Fatal("alloc")
	}
	room := 3000
	for i := range 2 {
		buf, off := u.Frame(ds[i])
		ds[i].Len = uint32(copy(buf[off:off+room], frame[i*room:]))
		ds[i].Options = unix.XDP_PKT_CONTD
	}
	if got := s.Transmit(ds[:2]); got != 0 {
		t.Fatalf("Transmit of a cut chain consumed %d descriptors, want 0", got)
	}
	ds[1].Options = 0
	if got := s.Transmit(ds[:2]); got != 2 {
		t.Fatalf("Transmit of a whole chain consumed %d, want 2", got)
	}
	got := capB.collect(1, 2*time.Second, func(f []byte) bool { return len(f) > 34 && f[23] == 17 })
	if len(got) != 1 || len(got[0]) != len(frame) || !bytes.Equal(got[0], frame) {
		t.Fatalf("peer received %d frames (first %d bytes), want the %d-byte frame", len(got), lenOf(got), len(frame))
	}
	netns.WaitFor(time.Second, func() bool { s.Complete(); return s.TXOutstanding() == 0 })
}

func lenOf(fs [][]byte) int {
	if len(fs) == 0 {
		return 0
	}
	return len(fs[0])
}

package ike

import (
	"bytes"
	"encoding/binary"
	"errors"
	"math/rand/v2"
	"net"
	"net/netip"
	"reflect"
	"testing"
	"time"
)

func sampleInit() *Message {
	p, _ := ParseIKEProposal("aes128gcm16-aes256-sha256-prfsha256-x25519-modp2048")
	p.Num = 1
	e, _ := ESPProposal([]string{"aes128gcm16", "aes256-sha512"}, "both")
	e.Num, e.SPI = 1, []byte{1, 2, 3, 4}
	return &Message{
		Header: Header{SPIi: 0x1122334455667788, Exchange: IKESAInit, Flags: FlagInitiator},
		Payloads: []Payload{
			&SA{Proposals: []Proposal{p, e}},
			&KE{Group: Curve25519, Data: bytes.Repeat([]byte{9}, 32)},
			&Nonce{Data: bytes.Repeat([]byte{7}, 32)},
			&ID{IDType: IDFQDN, Data: []byte("a.test")},
			&ID{Responder: true, IDType: IDIPv4, Data: []byte{10, 0, 0, 1}},
			&Auth{Method: AuthPSK, Data: bytes.Repeat([]byte{5}, 32)},
			&TS{Selectors: []TrafficSelector{SelectorFromPrefix(netip.MustParsePrefix("10.0.0.0/8")),
				{Proto: 17, StartPort: 53, EndPort: 53, Start: netip.MustParseAddr("2001:db8::"), End: netip.MustParseAddr("2001:db8::ffff")}}},
			&TS{Responder: true, Selectors: ts("192.168.0.0/16")},
			&Notify{Proto: ProtoESP, SPI: []byte{1, 2, 3, 4}, NotifyType: RekeySA},
			&Notify{NotifyType: NATDetectionSourceIP, Data: bytes.Repeat([]byte{3}, 20)},
			&Delete{Proto: ProtoESP, SPISize: 4, SPIs: [][]byte{{0, 0, 1, 0}, {0, 0, 2, 0}}},
			&Raw{T: PayloadVendor, Data: []byte("vendor")},
		},
	}
}

func TestMessageRoundTrip(t *testing.T) {
	m := sampleInit()
	b := m.Marshal()
	got, err := Parse(b)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got.Payloads, m.Payloads) {
		t.Fatalf("payloads differ:\n%#v\n%#v", got.Payloads, m.Payloads)
	}
	if got.Header != m.Header {
		t.Fatalf("header %+v, want %+v", got.Header, m.Header)
	}
	if !bytes.Equal(got.Marshal(), b) {
		t.Fatal("re-marshal differs")
	}
}

func TestParseMalformed(t *testing.T) {
	good := sampleInit().Marshal()
	set := func(off int, v ...byte) []byte {
		b := append([]byte(nil), good...)
		copy(b[off:], v)
		return b
	}
	hdr := func(next PayloadType, body ...byte) []byte {
		h := Header{Next: next, Length: uint32(HeaderLen + len(body))}
		b := make([]byte, HeaderLen)
		h.put(b)
		return append(b, body...)
	}
	for _, tc := range []struct {
		name string
		b    []byte
		want error
	}{
		{"empty", nil, ErrTruncated},
		{"short header", good[:27], ErrTruncated},
		{"version 1", set(17, 0x10), ErrVersion},
		{"length too long", set(24, 0, 0, 0xff, 0xff), ErrBadLength},
		{"truncated datagram", good[:len(good)-1], ErrBadLength},
		{"payload length 3", hdr(PayloadNonce, 0, 0, 0, 3), ErrBadLength},
		{"payload past end", hdr(PayloadNonce, 0, 0, 0, 40, 1, 2), ErrBadLength},
		{"chain ends early", hdr(PayloadNonce), ErrTruncated},
		{"short nonce", hdr(PayloadNonce, 0, 0, 0, 8, 1, 2, 3, 4), ErrBadLength},
		{"critical unknown", hdr(99, 0, 0x80, 0, 4), ErrCritical},
		{"trailing bytes", hdr(PayloadNone, 1, 2, 3, 4), ErrBadLength},
		{"SK not last", hdr(PayloadSK, byte(PayloadNonce), 0, 0, 4, 0, 0, 0, 20, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16), ErrMalformed},
		{"delete SPI count", hdr(PayloadDelete, 0, 0, 0, 10, 3, 4, 0, 2, 1, 2), ErrBadLength},
		{"TS zero selectors", hdr(PayloadTSi, 0, 0, 0, 8, 0, 0, 0, 0), ErrMalformed},
		{"TS bad type", hdr(PayloadTSi, 0, 0, 0, 24, 1, 0, 0, 0, 9, 0, 0, 16, 0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2), ErrUnsupported},
		{"TS bad length", hdr(PayloadTSi, 0, 0, 0, 24, 1, 0, 0, 0, 7, 0, 0, 15, 0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2), ErrBadLength},
		{"notify SPI size", hdr(PayloadNotify, 0, 0, 0, 8, 3, 8, 0, 1), ErrBadLength},
		{"proposal length", hdr(PayloadSA, 0, 0, 0, 12, 0, 0, 0, 99, 1, 1, 0, 0), ErrBadLength},
		{"transform last flag", hdr(PayloadSA, 0, 0, 0, 20, 0, 0, 0, 16, 1, 1, 0, 1, 3, 0, 0, 8, 1, 0, 0, 12), ErrMalformed},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse(tc.b)
			if !errors.Is(err, tc.want) {
				t.Fatalf("err = %v, want %v", err, tc.want)
			}
		})
	}
}

// Property: Parse of random mutations of valid messages never panics,
// and whatever it accepts marshals back to a message that parses to
// the same payloads.
func TestParseMutationsProperty(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	good := sampleInit().Marshal()
	for i := 0; i < 20000; i++ {
		b := append([]byte(nil), good...)
		for n := r.IntN(4) + 1; n > 0; n-- {
			b[r.IntN(len(b))] = byte(r.Uint32())
		}
		if r.IntN(4) == 0 {
			b = b[:r.IntN(len(b))]
		}
		checkParse(t, b)
	}
}

func checkParse(t *testing.T, b []byte) {
	m, err := Parse(b)
	if err != nil {
		return
	}
	if _, ok := m.Get(PayloadSK).(*Encrypted); ok {
		return
	}
	again, err := Parse(m.Marshal())
	if err != nil {
		t.Fatalf("re-marshalled message does not parse: %v", err)
	}
	if !reflect.DeepEqual(again.Payloads, m.Payloads) {
		t.Fatalf("round trip changed payloads")
	}
}

func TestNarrowing(t *testing.T) {
	proposed := []TrafficSelector{SelectorFromPrefix(netip.MustParsePrefix("10.0.0.0/8"))}
	conf := []TrafficSelector{{Proto: 6, StartPort: 80, EndPort: 443, Start: netip.MustParseAddr("10.1.2.3"), End: netip.MustParseAddr("10.1.2.200")},
		SelectorFromPrefix(netip.MustParsePrefix("192.168.0.0/16"))}
	got := narrow(proposed, conf)
	if len(got) != 1 || got[0] != conf[0] {
		t.Fatalf("narrowed to %+v", got)
	}
	if !within(got, proposed) || within(proposed, got) {
		t.Fatal("within")
	}
	sels := saSelectors(got, ts("10.2.0.0/16"))
	// 10.1.2.3-10.1.2.200 = .3/32 .4/30 .8/29 .16/28 .32/27 .64/26 .128/26 .192/29 .200/32
	if len(sels) != 9 || sels[0].Proto != 6 || sels[0].SrcPorts.Lo != 80 || !sels[0].DstPorts.IsZero() {
		t.Fatalf("sa selectors %+v", sels)
	}
}

// Property: rangePrefixes covers exactly [lo, hi]: consecutive, no
// gap, no overlap.
func TestRangePrefixesProperty(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	for i := 0; i < 2000; i++ {
		a, b := r.Uint32(), r.Uint32()
		if a > b {
			a, b = b, a
		}
		lo := netip.AddrFrom4([4]byte(binary.BigEndian.AppendUint32(nil, a)))
		hi := netip.AddrFrom4([4]byte(binary.BigEndian.AppendUint32(nil, b)))
		ps := rangePrefixes(lo, hi, 256)
		if len(ps) == 0 || len(ps) > 62 || ps[0].Addr() != lo || lastAddr(ps[len(ps)-1]) != hi {
			t.Fatalf("%v-%v: %v", lo, hi, ps)
		}
		for k := 1; k < len(ps); k++ {
			if lastAddr(ps[k-1]).Next() != ps[k].Addr() || ps[k].Masked() != ps[k] {
				t.Fatalf("%v-%v: gap or overlap at %d: %v", lo, hi, k, ps)
			}
		}
	}
}

// Property: the responder's choice is always something the initiator
// offered and the responder accepts.
func TestChooseProperty(t *testing.T) {
	names := []string{"aes128gcm16-prfsha256-x25519", "aes256-sha256-modp2048", "aes128-sha512-ecp384-ecp256",
		"aes256gcm16-prfsha384-prfsha512-ecp256-x25519", "aes192-sha384-sha256-modp2048-x25519"}
	r := rand.New(rand.NewPCG(5, 6))
	pick := func() []Proposal {
		var out []Proposal
		for n := r.IntN(3) + 1; n > 0; n-- {
			p, err := ParseIKEProposal(names[r.IntN(len(names))])
			if err != nil {
				t.Fatal(err)
			}
			out = append(out, p)
		}
		return out
	}
	for i := 0; i < 500; i++ {
		ours, theirs := pick(), pick()
		c, ok := choose(ours, theirs)
		if !ok {
			continue
		}
		if !acceptable(theirs, c) || !acceptable(ours, c) {
			t.Fatalf("chose %+v from %+v / %+v", c, theirs, ours)
		}
		if _, err := suiteFor(c); err != nil {
			t.Fatalf("chose an unusable suite %+v: %v", c, err)
		}
	}
}

func TestParseIKEProposalErrors(t *testing.T) {
	for _, s := range []string{"", "aes128-x25519", "aes128gcm16-sha256-prfsha256-x25519", "aes128-sha256", "des-sha256-x25519", "aes128-sha256-modp1024"} {
		if _, err := ParseIKEProposal(s); err == nil {
			t.Errorf("%q accepted", s)
		}
	}
	if _, err := ESPProposal([]string{"chacha20poly1305"}, "no"); !errors.Is(err, ErrUnsupported) {
		t.Errorf("chacha20poly1305: %v", err)
	}
}

// fakeConn is a PacketConn that swallows writes.
type fakeConn struct{ sent int }

func (f *fakeConn) ReadFrom([]byte) (int, net.Addr, error) { return 0, nil, net.ErrClosed }
func (f *fakeConn) WriteTo(b []byte, _ net.Addr) (int, error) {
	f.sent++
	return len(b), nil
}
func (f *fakeConn) Close() error { return nil }
func (f *fakeConn) LocalAddr() net.Addr {
	return &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 500}
}
func (f *fakeConn) SetDeadline(time.Time) error      { return nil }
func (f *fakeConn) SetReadDeadline(time.Time) error  { return nil }
func (f *fakeConn) SetWriteDeadline(time.Time) error { return nil }

// TestSelectorCapsProperty checks over random proposals the bounds
// narrow keeps (MaxTS, MaxTSPrefixes): the narrowed selectors are
// inside the proposed and the configured ones, within the bounds, and
// their sa.Selectors number at most MaxTSPrefixes².
func TestSelectorCapsProperty(t *testing.T) {
	r := rand.New(rand.NewPCG(5, 6))
	randTS := func() TrafficSelector {
		a, b := r.Uint32N(1<<20), r.Uint32N(1<<20)
		if a > b {
			a, b = b, a
		}
		lo := netip.AddrFrom4([4]byte(binary.BigEndian.AppendUint32(nil, 10<<24|a)))
		hi := netip.AddrFrom4([4]byte(binary.BigEndian.AppendUint32(nil, 10<<24|b)))
		return TrafficSelector{StartPort: 0, EndPort: 65535, Start: lo, End: hi}
	}
	for i := 0; i < 300; i++ {
		var prop, conf [2][]TrafficSelector
		var got [2][]TrafficSelector
		for side := range 2 {
			for range 1 + r.IntN(40) {
				prop[side] = append(prop[side], randTS())
			}
			for range 1 + r.IntN(3) {
				conf[side] = append(conf[side], randTS())
			}
			got[side] = narrow(prop[side], conf[side])
			if len(got[side]) == 0 {
				continue
			}
			if !withinBounds(got[side]) || !within(got[side], prop[side]) || !within(got[side], conf[side]) {
				t.Fatalf("iter %d: narrowed %v out of bounds or not inside %v / %v", i, got[side], prop[side], conf[side])
			}
		}
		if n := len(saSelectors(got[0], got[1])); n > MaxTSPrefixes*MaxTSPrefixes {
			t.Fatalf("iter %d: %d sa.Selectors", i, n)
		}
	}
	// The initiator refuses a response beyond the bounds.
	var many []TrafficSelector
	for i := range MaxTS + 1 {
		a := netip.AddrFrom4([4]byte{10, 0, byte(i), 0})
		many = append(many, TrafficSelector{EndPort: 65535, Start: a, End: a})
	}
	if within(many, []TrafficSelector{SelectorFromPrefix(netip.MustParsePrefix("10.0.0.0/8"))}) {
		t.Fatal("initiator accepts more than MaxTS selectors")
	}
	if _, err := NewEndpoint(Config{PSK: testPSK, LocalID: FQDN("x"), LocalTS: many, RemoteTS: ts("10.1.0.0/16")}, &fakeConn{}, nil); !errors.Is(err, ErrConfig) {
		t.Fatalf("NewEndpoint with %d LocalTS: %v, want ErrConfig", len(many), err)
	}
}

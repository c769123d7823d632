package inet

import (
	"bytes"
	"encoding/binary"
	"net/netip"
	"testing"
)

// tcpSumOK tells whether pkt holds a TCP segment (by the package's own
// parser) whose checksum verifies, computed from scratch.
func tcpSumOK(pkt []byte) (ok, isTCP bool) {
	info, good := parseIP(pkt)
	if !good || !info.known || info.proto != protoTCP || info.l4 > info.n {
		return false, false
	}
	return l4ChecksumOK(pkt[:info.n], info.l4, info.n, protoTCP), true
}

func FuzzClampMSS(f *testing.F) {
	f.Add(tcp4(f, true, false, nil, mss1460...), uint16(1360))
	f.Add(tcp4(f, true, true, nil, nop, mssOpt(8960), sackOK), uint16(1400))
	f.Add(tcp6(f, [][]byte{extHdr(protoHopByHop), extHdr(protoRouting)}, mss1460...), uint16(1220))
	f.Add(tcp6(f, [][]byte{fragHdr(0, true)}, mss1460...), uint16(1000))
	f.Add(udp4(f, 80, true), uint16(500))
	f.Fuzz(func(t *testing.T, pkt []byte, mss uint16) {
		orig := append([]byte(nil), pkt...)
		hdrOK := Version(pkt) == 4 && ipv4HeaderOK(pkt)
		sumOK, _ := tcpSumOK(pkt)
		clamped := ClampMSS(pkt, int(mss))
		if !clamped {
			if !bytes.Equal(pkt, orig) {
				t.Fatal("packet changed without clamping")
			}
			return
		}
		if v, ok := MSS(pkt); !ok || v != int(mss) {
			t.Fatalf("MSS after clamping %d, %v; want %d", v, ok, mss)
		}
		if v, _ := MSS(orig); v <= int(mss) {
			t.Fatalf("clamped an MSS of %d to %d", v, mss)
		}
		if hdrOK && !ipv4HeaderOK(pkt) {
			t.Fatal("IPv4 header checksum broken")
		}
		if now, _ := tcpSumOK(pkt); sumOK && !now {
			t.Fatal("TCP checksum broken")
		}
		diff := 0
		for i := range pkt {
			if pkt[i] != orig[i] {
				diff++
			}
		}
		if diff > 4 {
			t.Fatalf("%d bytes changed", diff)
		}
	})
}

func FuzzDecTTL(f *testing.F) {
	f.Add(udp4(f, 100, true))
	f.Add(udp6(f, 100))
	f.Add(tcp4(f, true, false, nil, mss1460...)[:20])
	f.Fuzz(func(t *testing.T, pkt []byte) {
		orig := append([]byte(nil), pkt...)
		v := Version(pkt)
		hdrOK := v == 4 && ipv4HeaderOK(pkt)
		if !DecTTL(pkt) {
			if !bytes.Equal(pkt, orig) {
				t.Fatal("packet changed")
			}
			if v == 4 && orig[8] > 1 || v == 6 && orig[7] > 1 {
				t.Fatal("refused a packet with TTL > 1")
			}
			return
		}
		switch v {
		case 4:
			if pkt[8] != orig[8]-1 || (hdrOK && !ipv4HeaderOK(pkt)) {
				t.Fatalf("TTL %d → %d, checksum ok %v", orig[8], pkt[8], ipv4HeaderOK(pkt))
			}
			if !bytes.Equal(pkt[:8], orig[:8]) || pkt[9] != orig[9] || !bytes.Equal(pkt[12:], orig[12:]) {
				t.Fatal("other bytes changed")
			}
		case 6:
			if pkt[7] != orig[7]-1 || !bytes.Equal(pkt[:7], orig[:7]) || !bytes.Equal(pkt[8:], orig[8:]) {
				t.Fatal("hop limit not decremented alone")
			}
		default:
			t.Fatal("DecTTL ok on a packet that is not IP")
		}
	})
}

func FuzzICMPError(f *testing.F) {
	f.Add(udp4(f, 1500, true), uint16(1400), uint8(0))
	f.Add(udp4(f, 200, false), uint16(1400), uint8(1))
	f.Add(udp6(f, 1500), uint16(1300), uint8(2))
	f.Add(icmp6Msg(f, 128, extHdr(0), fragHdr(0, true)), uint16(1280), uint8(3))
	f.Add(icmp4Msg(f, 3), uint16(576), uint8(0))
	f.Fuzz(func(t *testing.T, pkt []byte, mtu uint16, mode uint8) {
		room := 48
		if mode&4 != 0 {
			room = int(mode >> 3) // sometimes too little
		}
		buf, off := inBuf(pkt, room)
		orig := append([]byte(nil), buf...)
		src := rtr4
		if Version(pkt) == 6 {
			src = rtr6
		}
		var o, n int
		var err error
		if mode&1 == 0 {
			o, n, err = PacketTooBig(buf, off, len(pkt), src, int(mtu))
		} else {
			o, n, err = TimeExceeded(buf, off, len(pkt), src)
		}
		if err != nil {
			if !bytes.Equal(buf, orig) {
				t.Fatal("buffer changed on error")
			}
			return
		}
		out := buf[o : o+n]
		if o < 0 || o+n > len(buf) || !bytes.Equal(buf[:o], orig[:o]) {
			t.Fatalf("result [%d,%d) out of place", o, o+n)
		}
		switch Version(out) {
		case 4:
			if n > MaxICMP4 || o != off-Headroom4 || !ipv4HeaderOK(out) || !l4ChecksumOK(out, 20, n, 1) {
				t.Fatalf("bad ICMPv4 error of %d bytes at %d", n, o)
			}
			if !bytes.Equal(out[12:16], rtr4.AsSlice()) || !bytes.Equal(out[16:20], pkt[12:16]) {
				t.Fatal("addresses")
			}
		case 6:
			if n > MaxICMP6 || o != off-Headroom6 || !l4ChecksumOK(out, 40, n, 58) {
				t.Fatalf("bad ICMPv6 error of %d bytes at %d", n, o)
			}
			if netip.AddrFrom16([16]byte(out[8:24])) != rtr6 || !bytes.Equal(out[24:40], pkt[8:24]) {
				t.Fatal("addresses")
			}
			if mode&1 == 0 && binary.BigEndian.Uint32(out[44:]) < MinMTU6 {
				t.Fatal("MTU below 1280")
			}
		default:
			t.Fatal("result is not IP")
		}
	})
}

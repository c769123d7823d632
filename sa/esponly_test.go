package sa

import (
	"bytes"
	"encoding/binary"
	"testing"

	"github.com/espxdp/espxdp/esp"
)

// TestESPOnly covers the UDP-socket embedding: outbound yields the bare
// ESP packet, inbound takes one, and control traffic on the same socket
// is told apart.
func TestESPOnly(t *testing.T) {
	for _, tr := range []string{"aes128gcm16", "aes256-sha256", "chacha20poly1305"} {
		t.Run(tr, func(t *testing.T) {
			r := newRig(t, tr, func(c *Config) { c.UDPEncap = true })
			for _, inner := range [][]byte{udpPacket(hostA, hostB, 1, 2, 100, 7), udpPacket(host6, hst6B, 1, 2, 300, 8)} {
				p := packetFor(inner)
				p.ESPOnly = true
				b := []Packet{p}
				r.wSend.Outbound(b)
				if b[0].Verdict != VerdictOK {
					t.Fatalf("Outbound: %v %v", b[0].Verdict, b[0].Reason)
				}
				wire := b[0].Data()
				// An independent look at the bytes: SPI first, no IP header.
				if spi := binary.BigEndian.Uint32(wire); spi != r.out.SPI() {
					t.Fatalf("starts with %#x, want the SPI %#x", spi, r.out.SPI())
				}
				if want := len(inner) + r.out.cipher.Overhead(len(inner)); len(wire) != want {
					t.Fatalf("ESP packet of %d bytes, want %d", len(wire), want)
				}
				q := Packet{Buf: append([]byte(nil), wire...), Len: len(wire), ESPOnly: true}
				b[0] = q
				r.wRecv.Inbound(b)
				if b[0].Verdict != VerdictOK || !bytes.Equal(b[0].Data(), inner) {
					t.Fatalf("Inbound: %v %v, equal=%v", b[0].Verdict, b[0].Reason, bytes.Equal(b[0].Data(), inner))
				}
			}
			if st := r.in.Stats(); st.DecapsPkts != 2 {
				t.Fatalf("decaps %d, want 2", st.DecapsPkts)
			}
		})
	}
}

func TestESPOnlyControlAndErrors(t *testing.T) {
	r := newRig(t, "aes128gcm16", nil)
	in := func(data []byte) Packet {
		b := []Packet{{Buf: data, Len: len(data), ESPOnly: true}}
		r.wRecv.Inbound(b)
		return b[0]
	}
	if p := in([]byte{0xff}); p.Verdict != VerdictControl {
		t.Fatalf("keepalive: %v", p.Verdict)
	}
	if p := in([]byte{0, 0, 0, 0, 0x2e, 0x20, 0x22, 0x08}); p.Verdict != VerdictControl {
		t.Fatalf("IKE with non-ESP marker: %v", p.Verdict)
	}
	if p := in([]byte{0, 0, 0x10}); p.Verdict != VerdictDrop {
		t.Fatalf("3 bytes: %v", p.Verdict)
	}
	forged := append([]byte{0, 0, 0x10, 0x01, 0, 0, 0, 1}, bytes.Repeat([]byte{9}, 40)...) // the rig's SPI
	if p := in(forged); p.Verdict != VerdictDrop || p.Reason != DropAuth {
		t.Fatalf("forged ESP: %v %v", p.Verdict, p.Reason)
	}
	// Not an IP packet: refused before anything is encrypted.
	junk := packetFor([]byte{0x50, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20})
	junk.ESPOnly, junk.Tunnel = true, r.tun
	b := []Packet{junk}
	r.wSend.Outbound(b)
	if b[0].Verdict != VerdictDrop || b[0].Reason != DropMalformed {
		t.Fatalf("non-IP inner: %v %v", b[0].Verdict, b[0].Reason)
	}

	// Transport mode needs the IP header around ESP.
	tr := newRig(t, "aes128gcm16", func(c *Config) { c.Mode = esp.Transport })
	p := packetFor(udpPacket(hostA, hostB, 1, 2, 10, 1))
	p.ESPOnly = true
	b[0] = p
	tr.wSend.Outbound(b)
	if b[0].Verdict != VerdictDrop || b[0].Reason != DropMalformed {
		t.Fatalf("transport ESPOnly outbound: %v %v", b[0].Verdict, b[0].Reason)
	}
}

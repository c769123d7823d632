package scapypeer

import (
	"context"
	"encoding/binary"
	"errors"
	"testing"
)

func TestMissingInterpreter(t *testing.T) {
	t.Setenv("SCAPY_PYTHON", "/nonexistent/python3")
	if _, err := Exec(context.Background(), nil); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("Exec with a missing interpreter: err=%v, want ErrUnavailable", err)
	}
}

// TestBatch runs one batch through scapy: an encryption whose output must
// be an ESP packet with the requested SPI and sequence number, and a case
// with an unknown algorithm whose error must be reported without spoiling
// the rest of the batch.
func TestBatch(t *testing.T) {
	// IPv4 / UDP 1 → 2, 4 payload bytes, checksums left zero (scapy does
	// not check them).
	pkt := []byte{
		0x45, 0, 0, 32, 0, 1, 0, 0, 64, 17, 0, 0, 10, 0, 0, 1, 10, 0, 0, 2,
		0, 1, 0, 2, 0, 12, 0, 0, 'a', 'b', 'c', 'd',
	}
	key := make([]byte, 20) // AES-128 key ‖ salt
	cases := []Case{
		{Op: Encrypt, SA: SA{SPI: 0x1234, CryptAlgo: "AES-GCM", CryptKey: key}, Seq: 77, Packet: pkt},
		{Op: Encrypt, SA: SA{SPI: 0x1234, CryptAlgo: "NO-SUCH-ALGO", CryptKey: key}, Seq: 78, Packet: pkt},
		{Op: Encrypt, SA: SA{SPI: 0x1234, CryptAlgo: "AES-GCM", CryptKey: key, NATT: true, Tunnel: true,
			TunnelSrc: "2001:db8::1", TunnelDst: "2001:db8::2"}, Seq: 79, Packet: pkt},
	}
	resp := Run(t, cases)
	if resp.ScapyVersion == "" {
		t.Error("no scapy version reported")
	}
	r := resp.Results[0]
	if r.ErrorType != "" {
		t.Fatalf("encrypt: %s: %s", r.ErrorType, r.Error)
	}
	// IPv4 header, SPI, seq, 8-byte IV, 12 bytes of UDP + 2 trailer
	// (already 4-aligned), 16-byte ICV.
	if want := 20 + 8 + 8 + 12 + 2 + 2 + 16; len(r.Packet) != want {
		t.Errorf("transport ESP packet is %d bytes, want %d", len(r.Packet), want)
	}
	if len(r.Packet) < 28 || r.Packet[9] != 50 ||
		binary.BigEndian.Uint32(r.Packet[20:]) != 0x1234 || binary.BigEndian.Uint32(r.Packet[24:]) != 77 {
		t.Errorf("not ESP with SPI 0x1234, seq 77: %x", r.Packet)
	}
	if r := resp.Results[1]; r.ErrorType != "TypeError" || len(r.Packet) != 0 {
		t.Errorf("unknown algorithm: error_type=%q packet=%x, want TypeError and no packet", r.ErrorType, r.Packet)
	}
	r = resp.Results[2]
	if r.ErrorType != "" {
		t.Fatalf("tunnel encrypt: %s: %s", r.ErrorType, r.Error)
	}
	// IPv6 / UDP 4500 / ESP: next header 17, ports 4500, SPI after the UDP header.
	if len(r.Packet) < 56 || r.Packet[0]>>4 != 6 || r.Packet[6] != 17 ||
		binary.BigEndian.Uint16(r.Packet[40:]) != 4500 || binary.BigEndian.Uint16(r.Packet[42:]) != 4500 ||
		binary.BigEndian.Uint32(r.Packet[48:]) != 0x1234 {
		t.Errorf("not IPv6/UDP-4500/ESP with SPI 0x1234: %x", r.Packet)
	}
}

package esp_test

import (
	"bytes"
	"errors"
	"fmt"
	"net/netip"

	"github.com/espxdp/espxdp/esp"
)

// exampleKey returns n bytes of key material. Real keys come from IKE.
func exampleKey(n int) []byte {
	k := make([]byte, n)
	for i := range k {
		k[i] = byte(i + 1)
	}
	return k
}

func ExampleParseTransform() {
	for _, name := range []string{"aes256gcm16", "aes128-sha256", "chacha20poly1305", "3des-sha1"} {
		t, err := esp.ParseTransform(name)
		if err != nil {
			fmt.Println(err)
			continue
		}
		// GCM and ChaCha20-Poly1305 keys carry a 4-byte salt (RFC 4106,
		// RFC 7634): 32+4 = 36 bytes for AES-256-GCM.
		fmt.Printf("%s: key %d, auth key %d, IV %d, ICV %d, weak %v\n",
			t.Name(), t.KeyLen(), t.AuthKeyLen(), t.IVLen(), t.ICVLen(), t.Weak())
	}
	_, err := esp.ParseTransform("aes128-md5")
	fmt.Println("aes128-md5 unsupported:", errors.Is(err, esp.ErrUnsupported))
	// Output:
	// aes256gcm16: key 36, auth key 0, IV 8, ICV 16, weak false
	// aes128-sha256: key 16, auth key 32, IV 16, ICV 16, weak false
	// chacha20poly1305: key 36, auth key 0, IV 8, ICV 16, weak false
	// 3des-sha1: key 24, auth key 20, IV 8, ICV 12, weak true
	// aes128-md5 unsupported: true
}

func ExampleCipher_Seal() {
	t := esp.MustParseTransform("aes128gcm16")
	c, err := esp.New(esp.Config{Transform: t, Key: exampleKey(t.KeyLen())})
	if err != nil {
		panic(err)
	}
	s := esp.NewScratch() // one per worker goroutine

	payload := []byte("hello, ESP")
	// Leave headroom for the ESP header and IV, tailroom for the trailer.
	buf := make([]byte, esp.MaxHeadroom+len(payload), esp.MaxHeadroom+len(payload)+esp.MaxTailroom)
	copy(buf[esp.MaxHeadroom:], payload)

	pkt, err := c.Seal(s, buf, esp.MaxHeadroom, len(payload), 0x1000, 1, 6)
	if err != nil {
		panic(err)
	}
	// 8 (SPI, seq) + 8 (IV) + 10 + 0 padding + 2 (pad length, next header)
	// + 16 (ICV) = 44.
	fmt.Println("ESP packet:", len(pkt), "bytes, overhead", c.Overhead(len(payload)))

	got, nh, err := c.Open(s, pkt, 1)
	if err != nil {
		panic(err)
	}
	fmt.Printf("opened: %q, next header %d, in place: %v\n", got, nh, &got[0] == &buf[esp.MaxHeadroom])
	// Output:
	// ESP packet: 44 bytes, overhead 34
	// opened: "hello, ESP", next header 6, in place: true
}

func ExampleCipher_EncapTunnel() {
	t := esp.MustParseTransform("aes256gcm16")
	c, err := esp.New(esp.Config{Transform: t, Key: exampleKey(t.KeyLen())})
	if err != nil {
		panic(err)
	}
	s := esp.NewScratch()

	// A 32-byte IPv4/UDP packet 10.0.0.1:5000 -> 10.0.0.2:5001, "ping"
	// (header checksum 0x66ca, UDP checksum 0: none).
	inner := []byte{
		0x45, 0, 0, 32, 0, 1, 0, 0, 64, 17, 0x66, 0xca, 10, 0, 0, 1, 10, 0, 0, 2,
		0x13, 0x88, 0x13, 0x89, 0, 12, 0, 0, 'p', 'i', 'n', 'g',
	}
	buf := make([]byte, esp.MaxHeadroom+len(inner), esp.MaxHeadroom+len(inner)+esp.MaxTailroom)
	copy(buf[esp.MaxHeadroom:], inner)
	o := &esp.Outer{
		Src: netip.MustParseAddr("192.0.2.1"),
		Dst: netip.MustParseAddr("198.51.100.2"),
		UDP: true, // ESP in UDP port 4500 (RFC 3948)
	}
	pkt, err := c.EncapTunnel(s, buf, esp.MaxHeadroom, len(inner), 0x2000, 1, o)
	if err != nil {
		panic(err)
	}
	// 20 (IPv4) + 8 (UDP) + 8 (ESP) + 8 (IV) + 32 + 2 padding + 2 + 16 (ICV).
	fmt.Println("outer packet:", len(pkt), "bytes")

	// The receiving side.
	var p esp.Parsed
	if err := esp.ParseOuter(pkt, 0, &p); err != nil {
		panic(err)
	}
	fmt.Println("from", p.Src, "NAT-T", p.UDP, "ESP at", p.ESPOffset)
	payload, nh, err := c.Open(s, pkt[p.ESPOffset:p.Len], 1)
	if err != nil {
		panic(err)
	}
	got, err := esp.DecapTunnel(payload, nh)
	if err != nil {
		panic(err)
	}
	fmt.Println("inner:", len(got), "bytes, next header", nh, "equal:", bytes.Equal(got, inner))
	// Output:
	// outer packet: 96 bytes
	// from 192.0.2.1 NAT-T true ESP at 28
	// inner: 32 bytes, next header 4 equal: true
}

func ExampleCipher_PlaintextMTU() {
	gcm, err := esp.New(esp.Config{Transform: esp.MustParseTransform("aes256gcm16"), Key: exampleKey(36)})
	if err != nil {
		panic(err)
	}
	cbc, err := esp.New(esp.Config{Transform: esp.MustParseTransform("aes256-sha256"), Key: exampleKey(32), AuthKey: exampleKey(32)})
	if err != nil {
		panic(err)
	}
	// AES-GCM-16, tunnel, IPv4: 1500 - 20 (IPv4) - 8 (SPI, seq) - 8 (IV)
	// - 16 (ICV) = 1448 for payload, padding and the 2 trailer bytes;
	// 1448 is 4-byte aligned, so the inner packet gets 1448 - 2 = 1446.
	fmt.Println("gcm tunnel v4:", gcm.PlaintextMTU(1500, esp.Tunnel, false, false))
	// With NAT-T another 8 bytes of UDP: 1440 - 2 = 1438.
	fmt.Println("gcm tunnel v4 NAT-T:", gcm.PlaintextMTU(1500, esp.Tunnel, false, true))
	// Outer IPv6: 1500 - 40 - 8 - 8 - 16 = 1428, aligned, 1428 - 2 = 1426.
	fmt.Println("gcm tunnel v6:", gcm.PlaintextMTU(1500, esp.Tunnel, true, false))
	// Transport keeps the packet's own 20-byte header: 1446 + 20 = 1466.
	fmt.Println("gcm transport v4:", gcm.PlaintextMTU(1500, esp.Transport, false, false))
	// AES-CBC with HMAC-SHA-256-128: 1500 - 20 - 8 - 16 (IV) - 16 (ICV)
	// = 1440 = 90 blocks of 16, so 1440 - 2 = 1438.
	fmt.Println("cbc tunnel v4:", cbc.PlaintextMTU(1500, esp.Tunnel, false, false))
	// With NAT-T: 1432 rounds down to 89 blocks = 1424, 1424 - 2 = 1422.
	fmt.Println("cbc tunnel v4 NAT-T:", cbc.PlaintextMTU(1500, esp.Tunnel, false, true))
	// Output:
	// gcm tunnel v4: 1446
	// gcm tunnel v4 NAT-T: 1438
	// gcm tunnel v6: 1426
	// gcm transport v4: 1466
	// cbc tunnel v4: 1438
	// cbc tunnel v4 NAT-T: 1422
}

// Interoperability of package esp with an independent ESP implementation:
// scapy 2.5's IPsec layer (scapy.layers.ipsec.SecurityAssociation, on top
// of python3-cryptography / OpenSSL), driven through internal/scapypeer.
//
// For every transform both sides implement, in tunnel mode (IPv4 and IPv6
// inner and outer, in all four combinations) and transport mode (IPv4,
// IPv6), with and without NAT-T (RFC 3948) and with and without ESN, the
// test checks both directions with random keys and random packets (ICMP
// echo, UDP, TCP; IPv4 options and IPv6 hop-by-hop / destination options
// headers in transport mode without NAT-T):
//
//   - scapy2go: scapy encrypts, esp parses, opens and decapsulates, and the
//     result must equal the original packet byte for byte; a copy with one
//     ciphertext byte flipped must fail with esp.ErrAuth. In transport mode
//     with NAT-T a NAT is simulated (outer source address rewritten) and the
//     decapsulated TCP/UDP checksum must be valid for the new address.
//   - go2scapy: esp encapsulates, scapy decrypts, and the result must equal
//     the original; scapy must also reject one tampered esp packet per
//     transform and ESN setting with IPSecIntegrityError.
//
// Interop-proven in both directions: aes{128,192,256}gcm16 and
// chacha20poly1305 with and without ESN, and {aes128,aes192,aes256,
// aes128ctr,aes192ctr,aes256ctr,3des,null}-{sha1,sha256,sha384,sha512}
// without ESN only (bug 2 below). aes{128,192,256}gcm{8,12}: scapy→esp
// only, with and without ESN (bug 1).
//
// Transforms of ours that scapy 2.5 lacks, so NOT interop-proven here:
//
//   - aes128gmac, aes192gmac, aes256gmac (RFC 4543): scapy 2.5 has AES-GMAC
//     neither as an encryption nor as an integrity algorithm.
//
// scapy 2.5 bugs found, and what the test does about each (every skip is
// reported with t.Skip naming the bug; nothing is skipped silently):
//
//  1. AES-GCM with an 8- or 12-byte ICV (RFC 4106 §6 allows 8, 12 and
//     16): scapy's encrypt ignores crypt_icv_size and always appends
//     the full 16-byte tag, and its decrypt passes the truncated ICV to an
//     API that wants 16 bytes, so it cannot verify a correct ICV-8/12
//     packet. scapy2go: the test cuts scapy's 16-byte tag to its first 8
//     or 12 bytes (a shorter GCM tag is the leftmost bytes of the full
//     one, NIST SP 800-38D §7.1) and fixes the length fields; ciphertext
//     and tag bytes are still scapy's, so our ICV-8/12 verification and
//     decryption are interop-proven. go2scapy: skipped.
//  2. ESN with separate integrity algorithms (HMAC-*): scapy's AuthAlgo
//     sign/verify ignore esn for ESP, so the high 32 sequence bits are left
//     out of the ICV, against RFC 4303 §2.2.1 and §3.3.2.2. The test
//     confirms the diagnosis on every combination (scapy's packet opens
//     only with a non-ESN esp.Cipher with the same keys; scapy accepts our
//     packet sealed without ESN but not with) and then skips the
//     <transform>/esn=true subtree; a combination that does not match the
//     diagnosis runs and fails normally.
//  3. NAT-T over IPv4: scapy's encrypt writes the UDP Length as 8 (it
//     serialises the IP/UDP header before the ESP payload is attached),
//     against RFC 768. The test asserts that esp.ParseOuter rejects such a
//     packet with ErrMalformed, then sets the correct length and goes on.
//  4. NAT-T in IPv6 transport mode: scapy's decrypt stores the next header
//     in the UDP layer instead of the IPv6 header and leaves the UDP header
//     in the packet (RFC 3948 §3.2 says to remove it). go2scapy skipped.
//  5. NAT-T with IPv6 extension headers in front of ESP: scapy's encrypt
//     inserts the UDP header after them but leaves Next Header = 50 in the
//     last one. Not exercised: extension headers are used without NAT-T
//     only.
//
// Subtests are named <transform>/esn=<bool>/<scapy2go|go2scapy>/<mode>/
// <family>/natt=<bool>, family being 4in4, 6in4, 4in6, 6in6 (inner in
// outer) in tunnel mode and v4, v6 in transport mode. The seed of the
// random keys and packets is logged; ESP_INTEROP_SEED=<seed> repeats a run.
//
// Also known and harmless: scapy's IPv6 NAT-T header has a zero UDP
// checksum (RFC 6935/6936); esp does not verify it. Our own IPv6 NAT-T
// checksum is checked by scapy's checksum code in go2scapy.
package esp_test

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"

	"github.com/espxdp/espxdp/esp"
	"github.com/espxdp/espxdp/internal/scapypeer"
)

// scapyAlgs is a transform in scapy's vocabulary.
type scapyAlgs struct {
	crypt string // "" is NULL
	icv   int    // crypt_icv_size for AES-GCM
	auth  string // "" for AEAD
}

// scapyAlgsFor maps an esp transform name to scapy's algorithm names, or
// explains why scapy cannot do it.
func scapyAlgsFor(name string) (scapyAlgs, string) {
	switch {
	case name == "chacha20poly1305":
		return scapyAlgs{crypt: "CHACHA20-POLY1305"}, ""
	case strings.HasSuffix(name, "gmac"):
		return scapyAlgs{}, "scapy 2.5 has no AES-GMAC (RFC 4543)"
	case strings.HasPrefix(name, "aes") && strings.Contains(name, "gcm"):
		_, icv, _ := strings.Cut(name, "gcm")
		n, err := strconv.Atoi(icv)
		if err != nil {
			return scapyAlgs{}, "unparsable GCM transform name"
		}
		return scapyAlgs{crypt: "AES-GCM", icv: n}, ""
	}
	enc, integ, ok := strings.Cut(name, "-")
	crypt, ok1 := map[string]string{
		"aes128": "AES-CBC", "aes192": "AES-CBC", "aes256": "AES-CBC",
		"aes128ctr": "AES-CTR", "aes192ctr": "AES-CTR", "aes256ctr": "AES-CTR",
		"3des": "3DES", "null": "",
	}[enc]
	auth, ok2 := map[string]string{
		"sha1": "HMAC-SHA1-96", "sha256": "SHA2-256-128",
		"sha384": "SHA2-384-192", "sha512": "SHA2-512-256",
	}[integ]
	if !ok || !ok1 || !ok2 {
		return scapyAlgs{}, "no scapy equivalent known to this test"
	}
	return scapyAlgs{crypt: crypt, auth: auth}, ""
}

type ioFamily struct {
	name         string
	mode         esp.Mode
	inner, outer int // IP versions; equal in transport mode
}

var ioFamilies = []ioFamily{
	{"4in4", esp.Tunnel, 4, 4},
	{"6in4", esp.Tunnel, 6, 4},
	{"4in6", esp.Tunnel, 4, 6},
	{"6in6", esp.Tunnel, 6, 6},
	{"v4", esp.Transport, 4, 4},
	{"v6", esp.Transport, 6, 6},
}

// Outer (tunnel) addresses, and the address a simulated NAT rewrites the
// source to.
var (
	ioOuterSrc4, ioOuterDst4 = "192.0.2.1", "198.51.100.2"
	ioOuterSrc6, ioOuterDst6 = "2001:db8::1", "2001:db8::2"
	ioNATSrc4, ioNATSrc6     = net.ParseIP("203.0.113.77").To4(), net.ParseIP("2001:db8:ffff::77")
)

// ioPacket is a generated cleartext IP packet.
type ioPacket struct {
	b       []byte
	l4Off   int  // offset of the ICMP/UDP/TCP header
	l4Proto byte // 1, 58, 17 or 6
}

// ioBuildPacket makes a random IPv4 or IPv6 packet with valid checksums
// (computed by gopacket, independently of package esp): kind 0 is an ICMP
// echo request, 1 UDP, 2 TCP. ext adds an IPv4 option (Router Alert) or an
// IPv6 extension header: 1 hop-by-hop, 2 destination options.
func ioBuildPacket(tb testing.TB, rng *rand.Rand, v, kind, ext int) ioPacket {
	tb.Helper()
	n := rng.IntN(256)
	if rng.IntN(16) == 0 {
		n = 1000 + rng.IntN(400)
	}
	data := make([]byte, n)
	for i := range data {
		data[i] = byte(rng.Uint32())
	}
	var ls []gopacket.SerializableLayer
	var nl gopacket.NetworkLayer
	var proto byte
	switch kind {
	case 0:
		proto = 1
		if v == 6 {
			proto = 58
		}
	case 1:
		proto = 17
	default:
		proto = 6
	}
	hl := 20
	if v == 4 {
		ip := &layers.IPv4{
			Version: 4, TOS: uint8(rng.Uint32()), Id: uint16(rng.Uint32()), TTL: uint8(1 + rng.IntN(255)),
			Protocol: layers.IPProtocol(proto),
			SrcIP:    net.IPv4(10, byte(rng.Uint32()), byte(rng.Uint32()), byte(1+rng.IntN(254))).To4(),
			DstIP:    net.IPv4(10, byte(rng.Uint32()), byte(rng.Uint32()), byte(1+rng.IntN(254))).To4(),
		}
		if rng.IntN(2) == 0 {
			ip.Flags = layers.IPv4DontFragment
		}
		if ext != 0 {
			ip.Options = []layers.IPv4Option{{OptionType: 148, OptionLength: 4, OptionData: []byte{0, 0}}}
			hl = 24
		}
		ls, nl = append(ls, ip), ip
	} else {
		src, dst := make(net.IP, 16), make(net.IP, 16)
		src[0], dst[0] = 0xfd, 0xfd
		for i := 8; i < 16; i++ {
			src[i], dst[i] = byte(rng.Uint32()), byte(rng.Uint32())
		}
		ip := &layers.IPv6{
			Version: 6, TrafficClass: uint8(rng.Uint32()), FlowLabel: rng.Uint32() & 0xfffff,
			HopLimit: uint8(1 + rng.IntN(255)), NextHeader: layers.IPProtocol(proto), SrcIP: src, DstIP: dst,
		}
		hl = 40
		ls, nl = append(ls, ip), ip
	}
	sp, dp := uint16(1024+rng.IntN(60000)), uint16(1+rng.IntN(1023))
	switch proto {
	case 1:
		ls = append(ls, &layers.ICMPv4{TypeCode: layers.CreateICMPv4TypeCode(8, 0), Id: uint16(rng.Uint32()), Seq: uint16(rng.Uint32())})
	case 58:
		ic := &layers.ICMPv6{TypeCode: layers.CreateICMPv6TypeCode(128, 0)}
		if err := ic.SetNetworkLayerForChecksum(nl); err != nil {
			tb.Fatal(err)
		}
		ls = append(ls, ic, &layers.ICMPv6Echo{Identifier: uint16(rng.Uint32()), SeqNumber: uint16(rng.Uint32())})
	case 17:
		u := &layers.UDP{SrcPort: layers.UDPPort(sp), DstPort: layers.UDPPort(dp)}
		if err := u.SetNetworkLayerForChecksum(nl); err != nil {
			tb.Fatal(err)
		}
		ls = append(ls, u)
	case 6:
		tc := &layers.TCP{SrcPort: layers.TCPPort(sp), DstPort: layers.TCPPort(dp), Seq: rng.Uint32(), Ack: rng.Uint32(),
			ACK: true, PSH: n > 0, Window: uint16(rng.Uint32())}
		if err := tc.SetNetworkLayerForChecksum(nl); err != nil {
			tb.Fatal(err)
		}
		ls = append(ls, tc)
	}
	ls = append(ls, gopacket.Payload(data))
	buf := gopacket.NewSerializeBuffer()
	if err := gopacket.SerializeLayers(buf, gopacket.SerializeOptions{FixLengths: true, ComputeChecksums: true}, ls...); err != nil {
		tb.Fatal(err)
	}
	b := append([]byte(nil), buf.Bytes()...)
	if v == 6 && ext != 0 {
		// Splice an 8-byte extension header (one PadN option) in front of
		// the upper layer. The upper-layer checksum does not change: its
		// pseudo-header has the addresses and the upper-layer length only.
		eh := []byte{proto, 0, 1, 4, 0, 0, 0, 0}
		b = append(b[:40], append(eh, b[40:]...)...)
		b[6] = 0
		if ext == 2 {
			b[6] = 60
		}
		binary.BigEndian.PutUint16(b[4:], uint16(len(b)-40))
		hl = 48
	}
	return ioPacket{b: b, l4Off: hl, l4Proto: proto}
}

// ioChecksum is the RFC 1071 Internet checksum of the concatenation of bs.
// It is written here, separately from package esp, to judge esp's results.
func ioChecksum(bs ...[]byte) uint16 {
	var sum uint32
	var odd bool
	var carry byte
	for _, b := range bs {
		for _, c := range b {
			if odd {
				sum += uint32(carry)<<8 | uint32(c)
			} else {
				carry = c
			}
			odd = !odd
		}
	}
	if odd {
		sum += uint32(carry) << 8
	}
	for sum > 0xffff {
		sum = sum>>16 + sum&0xffff
	}
	return ^uint16(sum)
}

// ioL4ChecksumOK reports whether the TCP or UDP segment at pkt[off:] has a
// valid checksum for the addresses in pkt's IP header.
func ioL4ChecksumOK(pkt []byte, off int, proto byte) bool {
	seg := pkt[off:]
	var pseudo []byte
	if pkt[0]>>4 == 4 {
		pseudo = append(pseudo, pkt[12:20]...)
		pseudo = append(pseudo, 0, proto, byte(len(seg)>>8), byte(len(seg)))
	} else {
		pseudo = append(pseudo, pkt[8:40]...)
		pseudo = append(pseudo, byte(len(seg)>>24), byte(len(seg)>>16), byte(len(seg)>>8), byte(len(seg)), 0, 0, 0, proto)
	}
	return ioChecksum(pseudo, seg) == 0
}

// ioL4ChecksumAt is the offset of the checksum field in a TCP or UDP header.
func ioL4ChecksumAt(proto byte) int {
	if proto == 6 {
		return 16
	}
	return 6
}

func ioSetIPv4Checksum(h []byte) {
	h[10], h[11] = 0, 0
	binary.BigEndian.PutUint16(h[10:], ioChecksum(h))
}

// ioSetLengths rewrites the IP (and UDP, if udpOff > 0) length fields of pkt
// after its size changed.
func ioSetLengths(pkt []byte, udpOff int) {
	if pkt[0]>>4 == 4 {
		binary.BigEndian.PutUint16(pkt[2:], uint16(len(pkt)))
		ioSetIPv4Checksum(pkt[:int(pkt[0]&0x0f)*4])
	} else {
		binary.BigEndian.PutUint16(pkt[4:], uint16(len(pkt)-40))
	}
	if udpOff > 0 {
		binary.BigEndian.PutUint16(pkt[udpOff+4:], uint16(len(pkt)-udpOff))
	}
}

// interopCase is one transform × mode × family × NAT-T × ESN combination.
type interopCase struct {
	name      string
	tr        esp.Transform
	algs      scapyAlgs
	fam       ioFamily
	natt, esn bool
	spi       uint32
	key, auth []byte
	c         *esp.Cipher // with the case's ESN setting
	noESN     *esp.Cipher // same keys without ESN (ESN bug diagnosis)

	s2gPlain ioPacket
	s2gSeq   uint64
	s2gIdx   int

	g2sPlain  ioPacket
	g2sSeq    uint64
	g2sIdx    int // -1: not sent
	probeIdx  int // ESN + HMAC: the same packet sealed without ESN, or -1
	tamperIdx int // a tampered esp packet, or -1
	g2sSkip   string
	flip      uint32 // picks the ciphertext byte to flip in scapy's packet
}

func (ic *interopCase) sa(tunnelAddrs bool) scapypeer.SA {
	sa := scapypeer.SA{
		SPI: ic.spi, CryptAlgo: ic.algs.crypt, CryptICVSize: ic.algs.icv, AuthAlgo: ic.algs.auth,
		CryptKey: ic.key, AuthKey: ic.auth, NATT: ic.natt, Tunnel: ic.fam.mode == esp.Tunnel,
	}
	if ic.esn {
		sa.ESN, sa.ESNHigh = true, uint32(ic.s2gSeq>>32)
	}
	if tunnelAddrs && sa.Tunnel {
		sa.TunnelSrc, sa.TunnelDst = ioOuterSrc4, ioOuterDst4
		if ic.fam.outer == 6 {
			sa.TunnelSrc, sa.TunnelDst = ioOuterSrc6, ioOuterDst6
		}
	}
	return sa
}

func (ic *interopCase) outer() *esp.Outer {
	o := &esp.Outer{UDP: ic.natt}
	if ic.fam.mode == esp.Tunnel {
		o.Src, o.Dst = netip.MustParseAddr(ioOuterSrc4), netip.MustParseAddr(ioOuterDst4)
		if ic.fam.outer == 6 {
			o.Src, o.Dst = netip.MustParseAddr(ioOuterSrc6), netip.MustParseAddr(ioOuterDst6)
		}
	}
	return o
}

// encap runs esp's encapsulation of p with cipher c.
func (ic *interopCase) encap(tb testing.TB, c *esp.Cipher, p []byte, seq uint64) []byte {
	tb.Helper()
	buf := make([]byte, esp.MaxHeadroom+len(p)+esp.MaxTailroom)
	copy(buf[esp.MaxHeadroom:], p)
	var out []byte
	var err error
	if ic.fam.mode == esp.Tunnel {
		out, err = c.EncapTunnel(esp.NewScratch(), buf, esp.MaxHeadroom, len(p), ic.spi, seq, ic.outer())
	} else {
		out, err = c.EncapTransport(esp.NewScratch(), buf, esp.MaxHeadroom, len(p), ic.spi, seq, ic.outer())
	}
	if err != nil {
		tb.Fatalf("%s: esp encap: %v", ic.name, err)
	}
	return append([]byte(nil), out...)
}

func ioRandSeq(rng *rand.Rand, esn bool) uint64 {
	if esn {
		return uint64(1+rng.Uint32N(0xfffffffe))<<32 | uint64(rng.Uint32())
	}
	return uint64(1 + rng.Uint32N(0xfffffffe))
}

func ioRandBytes(rng *rand.Rand, n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(rng.Uint32())
	}
	return b
}

// ioCounts tallies the verified cases and the scapy bugs worked around.
type ioCounts struct {
	gcmTruncated, udpLenFixed, esnHMACSkips int
	s2gOK, g2sOK, tamperOK                  int
}

func TestInteropScapy(t *testing.T) {
	seed := uint64(time.Now().UnixNano())
	if s := os.Getenv("ESP_INTEROP_SEED"); s != "" {
		var err error
		if seed, err = strconv.ParseUint(s, 10, 64); err != nil {
			t.Fatalf("ESP_INTEROP_SEED: %v", err)
		}
	}
	t.Logf("seed %d (rerun with ESP_INTEROP_SEED=%d)", seed, seed)
	rng := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))

	// groups[i][esn] lists transform i's cases with that ESN setting, in
	// ioFamilies × NAT-T order.
	names := esp.TransformNames()
	groups := make([][2][]*interopCase, len(names))
	unsupported := map[string]string{}
	var batch []scapypeer.Case
	for i, name := range names {
		algs, why := scapyAlgsFor(name)
		if why != "" {
			unsupported[name] = why
			continue
		}
		tr := esp.MustParseTransform(name)
		for _, fam := range ioFamilies {
			for _, natt := range []bool{false, true} {
				for e, esn := range []bool{false, true} {
					ic := &interopCase{
						name: fmt.Sprintf("%s/esn=%v/%s/%s/natt=%v", name, esn, fam.mode, fam.name, natt),
						tr:   tr, algs: algs, fam: fam, natt: natt, esn: esn,
						spi: 0x100 + rng.Uint32N(0xfffffe00),
						key: ioRandBytes(rng, tr.KeyLen()), auth: ioRandBytes(rng, tr.AuthKeyLen()),
						g2sIdx: -1, probeIdx: -1, tamperIdx: -1, flip: rng.Uint32(),
					}
					var err error
					if ic.c, err = esp.New(esp.Config{Transform: tr, Key: ic.key, AuthKey: ic.auth, ESN: esn}); err != nil {
						t.Fatal(err)
					}
					if ic.noESN, err = esp.New(esp.Config{Transform: tr, Key: ic.key, AuthKey: ic.auth}); err != nil {
						t.Fatal(err)
					}
					// One sequence number for both directions keeps the SA's
					// ESN high bits the same; scapy takes them per SA.
					ic.s2gSeq = ioRandSeq(rng, esn)
					ic.g2sSeq = ic.s2gSeq&^0xffffffff | uint64(1+rng.Uint32N(0xfffffffe))
					ext := func() int {
						// IPv4 options / IPv6 extension headers in transport
						// mode only, and never with NAT-T (scapy bug 5).
						if fam.mode != esp.Transport || natt {
							return 0
						}
						return rng.IntN(3)
					}
					ic.s2gPlain = ioBuildPacket(t, rng, fam.inner, rng.IntN(3), ext())
					ic.g2sPlain = ioBuildPacket(t, rng, fam.inner, rng.IntN(3), ext())

					ic.s2gIdx = len(batch)
					batch = append(batch, scapypeer.Case{Op: scapypeer.Encrypt, SA: ic.sa(true), Seq: uint32(ic.s2gSeq), Packet: ic.s2gPlain.b})

					switch {
					case algs.crypt == "AES-GCM" && algs.icv != 16:
						ic.g2sSkip = fmt.Sprintf("scapy 2.5 bug: AES-GCM decrypt cannot verify a %d-byte ICV (RFC 4106 §6 allows 8, 12, 16); see bug 1 at the top of this file", algs.icv)
					case fam.mode == esp.Transport && fam.outer == 6 && natt:
						ic.g2sSkip = "scapy 2.5 bug: IPv6 transport-mode NAT-T decrypt keeps the UDP header and sets its next header on the UDP layer (RFC 3948 §3.2); see bug 4 at the top of this file"
					}
					if ic.g2sSkip == "" {
						wire := ic.encap(t, ic.c, ic.g2sPlain.b, ic.g2sSeq)
						ic.g2sIdx = len(batch)
						batch = append(batch, scapypeer.Case{Op: scapypeer.Decrypt, SA: ic.sa(false), Packet: wire})
						if esn && !tr.AEAD() {
							probe := ic.encap(t, ic.noESN, ic.g2sPlain.b, ic.g2sSeq)
							ic.probeIdx = len(batch)
							batch = append(batch, scapypeer.Case{Op: scapypeer.Decrypt, SA: ic.sa(false), Packet: probe})
						}
						if fam.name == "4in4" && !natt {
							// Flip one ciphertext byte (header, IV and ICV
							// excluded) of the packet scapy accepted.
							bad := append([]byte(nil), wire...)
							start := 20 + esp.HeaderLen + tr.IVLen()
							bad[start+rng.IntN(len(bad)-start-tr.ICVLen())] ^= byte(1 + rng.IntN(255))
							ic.tamperIdx = len(batch)
							batch = append(batch, scapypeer.Case{Op: scapypeer.Decrypt, SA: ic.sa(false), Packet: bad})
						}
					}
					groups[i][e] = append(groups[i][e], ic)
				}
			}
		}
	}

	start := time.Now()
	resp := scapypeer.Run(t, batch)
	rs := resp.Results
	t.Logf("scapy %s: %d operations in one process, %v", resp.ScapyVersion, len(batch), time.Since(start).Round(time.Millisecond))

	var q ioCounts
	for i, name := range names {
		t.Run(name, func(t *testing.T) {
			if why, ok := unsupported[name]; ok {
				t.Skip("not interop-tested: " + why)
			}
			for e, esn := range []bool{false, true} {
				group := groups[i][e]
				t.Run(fmt.Sprintf("esn=%v", esn), func(t *testing.T) {
					if ioESNBugEverywhere(group, rs) {
						q.esnHMACSkips += len(group)
						t.Skipf("scapy 2.5 bug: HMAC ICVs without the ESN high-order bits (RFC 4303 §2.2.1, §3.3.2.2), confirmed for all %d combinations in both directions: scapy's packets verify only without ESN, and scapy accepts ours only when sealed without ESN. See bug 2 at the top of this file", len(group))
					}
					t.Run("scapy2go", func(t *testing.T) {
						ioRunFamilies(t, group, func(t *testing.T, ic *interopCase) { scapyToGo(t, ic, rs[ic.s2gIdx], &q) })
					})
					t.Run("go2scapy", func(t *testing.T) {
						if group[0].algs.crypt == "AES-GCM" && group[0].algs.icv != 16 {
							t.Skip(group[0].g2sSkip)
						}
						ioRunFamilies(t, group, func(t *testing.T, ic *interopCase) { goToScapy(t, ic, rs, &q) })
					})
				})
			}
		})
	}
	t.Logf("verified: %d scapy→esp, %d esp→scapy, %d tampered esp packets rejected by scapy; scapy bugs worked around: %d GCM tags truncated, %d IPv4 NAT-T UDP lengths fixed, %d ESN+HMAC combinations skipped",
		q.s2gOK, q.g2sOK, q.tamperOK, q.gcmTruncated, q.udpLenFixed, q.esnHMACSkips)
	if !t.Failed() && (q.s2gOK == 0 || q.g2sOK == 0 || q.tamperOK == 0) {
		t.Fatal("a direction was not verified at all")
	}
}

// ioRunFamilies runs f on each case of group in a subtest tree
// mode/family/natt=….
func ioRunFamilies(t *testing.T, group []*interopCase, f func(*testing.T, *interopCase)) {
	for _, mode := range []esp.Mode{esp.Tunnel, esp.Transport} {
		t.Run(mode.String(), func(t *testing.T) {
			for fi, fam := range ioFamilies {
				if fam.mode != mode {
					continue
				}
				t.Run(fam.name, func(t *testing.T) {
					for ni := range 2 {
						ic := group[fi*2+ni]
						t.Run(fmt.Sprintf("natt=%v", ic.natt), func(t *testing.T) { f(t, ic) })
					}
				})
			}
		})
	}
}

// ioESNBugEverywhere reports whether every case of group shows scapy bug 2
// in both directions (see ioESNBugS2G and ioESNBugG2S).
func ioESNBugEverywhere(group []*interopCase, rs []scapypeer.Result) bool {
	for _, ic := range group {
		if !ioESNBugS2G(ic, rs[ic.s2gIdx]) || ic.g2sIdx >= 0 && !ioESNBugG2S(ic, rs) {
			return false
		}
	}
	return len(group) > 0
}

// ioESNBugS2G reports whether scapy's ESN packet shows bug 2: it fails to
// verify with the ESN high bits and verifies, decrypting to the original,
// without them.
func ioESNBugS2G(ic *interopCase, r scapypeer.Result) bool {
	if !ic.esn || ic.tr.AEAD() || r.ErrorType != "" || len(r.Packet) == 0 {
		return false
	}
	wire := append([]byte(nil), r.Packet...)
	if wire[0]>>4 == 4 && ic.natt && len(wire) >= 28 {
		ioSetLengths(wire, int(wire[0]&0x0f)*4) // bug 3
	}
	var p esp.Parsed
	if esp.ParseOuter(wire, 0, &p) != nil {
		return false
	}
	espPkt := wire[p.ESPOffset:p.Len]
	s := esp.NewScratch()
	if _, _, err := ic.c.Open(s, append([]byte(nil), espPkt...), ic.s2gSeq); !errors.Is(err, esp.ErrAuth) {
		return false
	}
	pl, _, err := ic.noESN.Open(s, append([]byte(nil), espPkt...), ic.s2gSeq)
	return err == nil && len(pl) > 0 && bytes.HasSuffix(ic.s2gPlain.b, pl)
}

// ioESNBugG2S reports whether scapy shows bug 2 on our ESN packet: it
// rejects it, and accepts the same packet sealed without ESN.
func ioESNBugG2S(ic *interopCase, rs []scapypeer.Result) bool {
	if ic.probeIdx < 0 {
		return false
	}
	r, pr := rs[ic.g2sIdx], rs[ic.probeIdx]
	return r.ErrorType == "IPSecIntegrityError" && pr.ErrorType == "" && bytes.Equal(pr.Packet, ic.g2sPlain.b)
}

// scapyToGo checks a packet scapy encrypted: esp must open and decapsulate
// it to the original, and reject it with one ciphertext byte flipped.
func scapyToGo(t *testing.T, ic *interopCase, r scapypeer.Result, q *ioCounts) {
	if ioESNBugS2G(ic, r) {
		t.Skip("scapy 2.5 bug: HMAC ICV computed without the ESN high-order bits (RFC 4303 §2.2.1, §3.3.2.2); confirmed: the packet verifies without ESN. See bug 2 at the top of this file")
	}
	if r.ErrorType != "" {
		t.Fatalf("scapy encrypt failed: %s: %s", r.ErrorType, r.Error)
	}
	wire := append([]byte(nil), r.Packet...)
	var p esp.Parsed

	// Bug 3: IPv4 NAT-T UDP Length 8.
	if ic.natt && wire[0]>>4 == 4 {
		udpOff := int(wire[0]&0x0f) * 4
		if len(wire) > udpOff+8 && binary.BigEndian.Uint16(wire[udpOff+4:]) == 8 {
			if err := esp.ParseOuter(wire, 0, &p); !errors.Is(err, esp.ErrMalformed) {
				t.Fatalf("ParseOuter accepted a UDP Length of 8 for a %d-byte datagram: err=%v", len(wire)-udpOff, err)
			}
			ioSetLengths(wire, udpOff)
			q.udpLenFixed++
		}
	}
	if err := esp.ParseOuter(wire, 0, &p); err != nil {
		t.Fatalf("ParseOuter: %v\n%x", err, wire)
	}
	if p.UDP != ic.natt || p.Len != len(wire) {
		t.Fatalf("ParseOuter: UDP=%v Len=%d, want UDP=%v Len=%d", p.UDP, p.Len, ic.natt, len(wire))
	}

	// Bug 1: a 16-byte GCM tag where the SA says 8 or 12.
	if ic.algs.crypt == "AES-GCM" && ic.algs.icv < 16 {
		n := len(ic.s2gPlain.b)
		if ic.fam.mode == esp.Transport {
			n -= p.HeaderLen
		}
		rfcLen := esp.HeaderLen + ic.tr.IVLen() + (n+2+3)&^3 + ic.tr.ICVLen()
		switch got := p.Len - p.ESPOffset; got {
		case rfcLen:
		case rfcLen + 16 - ic.tr.ICVLen():
			wire = wire[:len(wire)-(16-ic.tr.ICVLen())]
			udpOff := 0
			if p.UDP {
				udpOff = p.ESPOffset - esp.UDPHeaderLen
			}
			ioSetLengths(wire, udpOff)
			q.gcmTruncated++
			if err := esp.ParseOuter(wire, 0, &p); err != nil {
				t.Fatalf("ParseOuter after truncating the GCM tag: %v", err)
			}
		default:
			t.Fatalf("ESP part is %d bytes; RFC 4106 says %d (scapy's full-tag bug would give %d)", got, rfcLen, rfcLen+16-ic.tr.ICVLen())
		}
	}

	// In transport mode with NAT-T, a NAT rewrites the source address.
	want := append([]byte(nil), ic.s2gPlain.b...)
	natted := ic.fam.mode == esp.Transport && ic.natt
	if natted {
		if wire[0]>>4 == 4 {
			copy(wire[12:16], ioNATSrc4)
			ioSetIPv4Checksum(wire[:p.HeaderLen])
			copy(want[12:16], ioNATSrc4)
			ioSetIPv4Checksum(want[:ic.s2gPlain.l4Off])
		} else {
			copy(wire[8:24], ioNATSrc6)
			copy(want[8:24], ioNATSrc6)
		}
	}

	espPkt := wire[p.ESPOffset:p.Len]
	spi, _, err := esp.ParseHeader(espPkt)
	if err != nil || spi != ic.spi {
		t.Fatalf("ParseHeader: spi=%#x err=%v, want spi %#x", spi, err, ic.spi)
	}
	s := esp.NewScratch()

	// Negative: one flipped ciphertext byte.
	bad := append([]byte(nil), espPkt...)
	bodyStart := esp.HeaderLen + ic.tr.IVLen()
	pos := bodyStart + int(ic.flip%uint32(len(bad)-bodyStart-ic.tr.ICVLen()))
	bad[pos] ^= 0x80
	if _, _, err := ic.c.Open(s, bad, ic.s2gSeq); !errors.Is(err, esp.ErrAuth) {
		t.Errorf("tampered scapy packet (byte %d of %d flipped): Open err=%v, want ErrAuth", pos, len(bad), err)
	}
	// With ESN the high bits (never zero here) must matter: the packet
	// must not open without them.
	if ic.esn {
		if _, _, err := ic.noESN.Open(s, append([]byte(nil), espPkt...), ic.s2gSeq); !errors.Is(err, esp.ErrAuth) {
			t.Errorf("scapy's ESN packet opened by a non-ESN Cipher: err=%v, want ErrAuth", err)
		}
	}

	payload, nh, err := ic.c.Open(s, espPkt, ic.s2gSeq)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	if ic.fam.mode == esp.Tunnel {
		wantNH := byte(esp.NextHeaderIPv4)
		if ic.fam.inner == 6 {
			wantNH = esp.NextHeaderIPv6
		}
		if nh != wantNH {
			t.Errorf("next header %d, want %d", nh, wantNH)
		}
		inner, err := esp.DecapTunnel(payload, nh)
		if err != nil {
			t.Fatalf("DecapTunnel: %v", err)
		}
		if !bytes.Equal(inner, want) {
			t.Fatalf("inner packet differs from the original:\n got %x\nwant %x", inner, want)
		}
		q.s2gOK++
		return
	}
	out, err := esp.DecapTransport(wire, &p, payload, nh)
	if err != nil {
		t.Fatalf("DecapTransport: %v", err)
	}
	if natted && (ic.s2gPlain.l4Proto == 6 || ic.s2gPlain.l4Proto == 17) {
		off, proto := ic.s2gPlain.l4Off, ic.s2gPlain.l4Proto
		if len(out) != len(want) {
			t.Fatalf("decapsulated %d bytes, want %d", len(out), len(want))
		}
		if !ioL4ChecksumOK(out, off, proto) {
			t.Errorf("after NAT-T decapsulation the %s checksum is invalid for source %v:\n%x", map[byte]string{6: "TCP", 17: "UDP"}[proto], net.IP(out[12:16]), out)
		}
		if !ioL4ChecksumOK(ic.s2gPlain.b, off, proto) {
			t.Fatalf("test bug: the original packet's checksum does not verify")
		}
		at := off + ioL4ChecksumAt(proto)
		out = append([]byte(nil), out...)
		out[at], out[at+1], want[at], want[at+1] = 0, 0, 0, 0
	}
	if !bytes.Equal(out, want) {
		t.Fatalf("decapsulated packet differs from the original:\n got %x\nwant %x", out, want)
	}
	q.s2gOK++
}

// goToScapy checks scapy's decryption of esp's packet, and of the tampered
// one if there is one.
func goToScapy(t *testing.T, ic *interopCase, rs []scapypeer.Result, q *ioCounts) {
	if ic.g2sSkip != "" {
		t.Skip(ic.g2sSkip)
	}
	if ioESNBugG2S(ic, rs) {
		t.Skip("scapy 2.5 bug: HMAC ICV verified without the ESN high-order bits (RFC 4303 §2.2.1, §3.3.2.2); confirmed: scapy accepts the same packet sealed without ESN. See bug 2 at the top of this file")
	}
	r := rs[ic.g2sIdx]
	if r.ErrorType != "" {
		t.Fatalf("scapy could not decrypt esp's packet: %s: %s", r.ErrorType, r.Error)
	}
	// scapy returns the inner packet in tunnel mode and the rebuilt packet
	// in transport mode.
	if !bytes.Equal(r.Packet, ic.g2sPlain.b) {
		t.Fatalf("scapy's decryption differs from the original:\n got %x\nwant %x", r.Packet, ic.g2sPlain.b)
	}
	if ic.natt {
		want := "zero" // RFC 3948 §2.1: zero UDP checksum over IPv4
		if ic.fam.outer == 6 {
			want = "ok"
		}
		if r.OuterUDPChecksum != want {
			t.Errorf("outer UDP checksum of esp's packet: scapy says %q, want %q", r.OuterUDPChecksum, want)
		}
	}
	q.g2sOK++
	if ic.tamperIdx >= 0 {
		tr := rs[ic.tamperIdx]
		if tr.ErrorType != "IPSecIntegrityError" {
			t.Errorf("scapy accepted a tampered esp packet: error_type=%q error=%q", tr.ErrorType, tr.Error)
		} else {
			q.tamperOK++
		}
	}
}

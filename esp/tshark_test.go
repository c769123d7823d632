package esp_test

// Interoperability of package esp with Wireshark's ESP dissector (tshark,
// checked with Wireshark 4.0.17 on Debian 12): esp encapsulates inner
// IPv4/UDP and IPv6/UDP packets, all of them go into one raw-IP pcap, and
// one tshark run with an esp_sa UAT entry per SA must show, for every
// packet, the decrypted inner addresses, the exact UDP payload and a good
// ICV (esp.icv_good). A tampered copy of each SA's packet (the byte before
// the ICV flipped) must not show the payload and must never have esp.icv_good set
// (tshark marks it icv_bad, or gives no verdict when the flipped byte
// garbles the decrypted trailer before it reaches the ICV).
//
// Checked by tshark 4.0 (all with ICV verification):
//   - AES-GCM ICV 8/12/16 with 128/192/256-bit keys ("AES-GCM with N octet
//     ICV [RFC4106]", authentication algorithm "NULL"): decryption and ICV
//     (tshark checks the GCM tag and reports it in esp.icv_good/icv_bad).
//   - AES-CBC 128/192/256, AES-CTR 128/256 and 3DES-CBC with HMAC-SHA1-96,
//     HMAC-SHA-256-128, -384-192 and -512-256: decryption and ICV.
//   - NULL encryption with HMAC-SHA-256-128: payload and ICV.
//   - tunnel mode over IPv4 (IPv4 inner; one SA with IPv6 inner), one
//     IPv6-in-IPv6 tunnel SA, one IPv4 transport-mode SA and one NAT-T
//     (UDP 4500, IPv4) SA.
//
// Not checkable with tshark 4.0, whose ESP dissector lacks them:
// ChaCha20-Poly1305 (RFC 7634) and AES-GMAC (RFC 4543). ESN is not
// configurable in its esp_sa UAT, so only non-ESN SAs are checked.

import (
	"bytes"
	"context"
	"encoding/hex"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
	"github.com/gopacket/gopacket/pcapgo"

	"github.com/espxdp/espxdp/esp"
	"github.com/espxdp/espxdp/internal/testenv"
)

type tsharkCase struct {
	name      string // esp transform name, subtest name
	mode      string // "tunnel", "transport", "natt", "6in4", "6in6"
	enc, auth string // tshark algorithm strings
}

func (c tsharkCase) innerV6() bool { return c.mode == "6in4" || c.mode == "6in6" }

func tsharkCases() []tsharkCase {
	gcm := func(n string, icv int) tsharkCase {
		return tsharkCase{name: n, mode: "tunnel", enc: fmt.Sprintf("AES-GCM with %d octet ICV [RFC4106]", icv), auth: "NULL"}
	}
	hm := map[string]string{
		"sha1":   "HMAC-SHA-1-96 [RFC2404]",
		"sha256": "HMAC-SHA-256-128 [RFC4868]",
		"sha384": "HMAC-SHA-384-192 [RFC4868]",
		"sha512": "HMAC-SHA-512-256 [RFC4868]",
	}
	en := map[string]string{
		"aes128":    "AES-CBC [RFC3602]",
		"aes192":    "AES-CBC [RFC3602]",
		"aes256":    "AES-CBC [RFC3602]",
		"aes128ctr": "AES-CTR [RFC3686]",
		"aes256ctr": "AES-CTR [RFC3686]",
		"3des":      "TripleDES-CBC [RFC2451]",
		"null":      "NULL",
	}
	cs := []tsharkCase{
		gcm("aes128gcm16", 16), gcm("aes192gcm16", 16), gcm("aes256gcm16", 16),
		gcm("aes128gcm12", 12), gcm("aes256gcm8", 8),
	}
	for _, p := range [][2]string{
		{"aes128", "sha1"}, {"aes192", "sha256"}, {"aes256", "sha256"},
		{"aes256", "sha384"}, {"aes128", "sha512"},
		{"aes128ctr", "sha1"}, {"aes256ctr", "sha256"},
		{"3des", "sha1"}, {"null", "sha256"},
	} {
		cs = append(cs, tsharkCase{name: p[0] + "-" + p[1], mode: "tunnel", enc: en[p[0]], auth: hm[p[1]]})
	}
	cs = append(cs,
		tsharkCase{name: "aes128gcm16", mode: "transport", enc: "AES-GCM with 16 octet ICV [RFC4106]", auth: "NULL"},
		tsharkCase{name: "aes256-sha256", mode: "natt", enc: en["aes256"], auth: hm["sha256"]},
		tsharkCase{name: "aes256gcm16", mode: "6in4", enc: "AES-GCM with 16 octet ICV [RFC4106]", auth: "NULL"},
		tsharkCase{name: "aes128ctr-sha256", mode: "6in6", enc: en["aes128ctr"], auth: hm["sha256"]},
	)
	return cs
}

// tsharkInner builds an IPv4/UDP or IPv6/UDP packet carrying payload.
func tsharkInner(t *testing.T, src, dst string, payload []byte) []byte {
	t.Helper()
	s, d := netip.MustParseAddr(src), netip.MustParseAddr(dst)
	var ip gopacket.SerializableLayer
	var nl gopacket.NetworkLayer
	if s.Is4() {
		v4 := &layers.IPv4{Version: 4, TTL: 64, Protocol: layers.IPProtocolUDP, SrcIP: s.AsSlice(), DstIP: d.AsSlice()}
		ip, nl = v4, v4
	} else {
		v6 := &layers.IPv6{Version: 6, HopLimit: 64, NextHeader: layers.IPProtocolUDP, SrcIP: s.AsSlice(), DstIP: d.AsSlice()}
		ip, nl = v6, v6
	}
	udp := &layers.UDP{SrcPort: 40000, DstPort: 40001}
	if err := udp.SetNetworkLayerForChecksum(nl); err != nil {
		t.Fatal(err)
	}
	buf := gopacket.NewSerializeBuffer()
	opts := gopacket.SerializeOptions{FixLengths: true, ComputeChecksums: true}
	if err := gopacket.SerializeLayers(buf, opts, ip, udp, gopacket.Payload(payload)); err != nil {
		t.Fatal(err)
	}
	return append([]byte(nil), buf.Bytes()...)
}

func tsharkKey(n int, seed byte) []byte {
	k := make([]byte, n)
	for i := range k {
		k[i] = seed + byte(i)*7
	}
	return k
}

func tsharkHex(b []byte) string {
	if len(b) == 0 {
		return "" // tshark wants an empty key for NULL
	}
	return "0x" + hex.EncodeToString(b)
}

type tsharkPkt struct {
	c        tsharkCase
	frame    int
	tampered bool
	src, dst string // inner addresses
	payload  []byte
}

func TestTsharkInterop(t *testing.T) {
	tshark := testenv.RequireCommand(t, "tshark")
	dir := t.TempDir()
	pcapPath := filepath.Join(dir, "esp.pcap")
	f, err := os.Create(pcapPath)
	if err != nil {
		t.Fatal(err)
	}
	w := pcapgo.NewWriter(f)
	if err := w.WriteFileHeader(65536, layers.LinkTypeRaw); err != nil {
		t.Fatal(err)
	}
	const outerSrc, outerDst = "192.0.2.1", "198.51.100.2"
	const outerSrc6, outerDst6 = "2001:db8:ff::1", "2001:db8:ff::2"
	s := esp.NewScratch()
	var pkts []tsharkPkt
	var uat []string
	frame := 0
	ts := time.Unix(1700000000, 0)
	write := func(b []byte) {
		frame++
		ci := gopacket.CaptureInfo{Timestamp: ts.Add(time.Duration(frame) * time.Millisecond), CaptureLength: len(b), Length: len(b)}
		if err := w.WritePacket(ci, b); err != nil {
			t.Fatal(err)
		}
	}
	for i, c := range tsharkCases() {
		tr, err := esp.ParseTransform(c.name)
		if err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		key := tsharkKey(tr.KeyLen(), byte(0x11*i+1))
		akey := tsharkKey(tr.AuthKeyLen(), byte(0x5a+i))
		ci, err := esp.New(esp.Config{Transform: tr, Key: key, AuthKey: akey})
		if err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		spi := uint32(0x1000 + i)
		innerSrc, innerDst := fmt.Sprintf("10.1.%d.1", i), fmt.Sprintf("10.2.%d.2", i)
		if c.innerV6() {
			innerSrc, innerDst = fmt.Sprintf("2001:db8:1::%x", i), fmt.Sprintf("2001:db8:2::%x", i)
		}
		proto, uatSrc, uatDst := "IPv4", outerSrc, outerDst
		switch c.mode {
		case "transport":
			uatSrc, uatDst = innerSrc, innerDst
		case "6in6":
			proto, uatSrc, uatDst = "IPv6", outerSrc6, outerDst6
		}
		uat = append(uat, fmt.Sprintf(`uat:esp_sa:"%s","%s","%s","0x%08x","%s","%s","%s","%s"`,
			proto, uatSrc, uatDst, spi, c.enc, tsharkHex(key), c.auth, tsharkHex(akey)))
		for k, tamper := range []bool{false, false, true} {
			seq := uint64(k + 1)
			payload := []byte(fmt.Sprintf("espxdp-tshark %s %s seq %d ~~~", c.name, c.mode, seq))
			inner := tsharkInner(t, innerSrc, innerDst, payload)
			b := make([]byte, esp.MaxHeadroom+len(inner)+esp.MaxTailroom)
			copy(b[esp.MaxHeadroom:], inner)
			var out []byte
			switch c.mode {
			case "transport":
				out, err = ci.EncapTransport(s, b, esp.MaxHeadroom, len(inner), spi, seq, nil)
			default:
				o := &esp.Outer{Src: netip.MustParseAddr(outerSrc), Dst: netip.MustParseAddr(outerDst), UDP: c.mode == "natt"}
				if c.mode == "6in6" {
					o.Src, o.Dst = netip.MustParseAddr(outerSrc6), netip.MustParseAddr(outerDst6)
				}
				out, err = ci.EncapTunnel(s, b, esp.MaxHeadroom, len(inner), spi, seq, o)
			}
			if err != nil {
				t.Fatalf("%s/%s: encap: %v", c.name, c.mode, err)
			}
			out = append([]byte(nil), out...)
			if tamper {
				// Flip the last byte before the ICV: ciphertext (or, for
				// NULL, the trailer), covered by every ICV.
				out[len(out)-tr.ICVLen()-1] ^= 0x01
			}
			write(out)
			pkts = append(pkts, tsharkPkt{c: c, frame: frame, tampered: tamper, src: innerSrc, dst: innerDst, payload: payload})
		}
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}

	args := []string{"-n", "-r", pcapPath,
		"-o", "esp.enable_encryption_decode:TRUE",
		"-o", "esp.enable_authentication_check:TRUE",
		"-o", "esp.do_esp_sequence_analysis:FALSE",
		"-o", "udp.check_checksum:FALSE",
	}
	for _, u := range uat {
		args = append(args, "-o", u)
	}
	args = append(args, "-T", "fields", "-E", "separator=|",
		"-e", "frame.number", "-e", "ip.src", "-e", "ip.dst", "-e", "esp.spi",
		"-e", "udp.payload", "-e", "esp.icv_good", "-e", "esp.icv_bad",
		"-e", "ipv6.src", "-e", "ipv6.dst")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, tshark, args...)
	home := t.TempDir()
	cmd.Env = append(os.Environ(), "HOME="+home, "XDG_CONFIG_HOME="+home)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	outb, err := cmd.Output()
	if err != nil {
		t.Fatalf("tshark: %v\n%s", err, stderr.String())
	}
	rows := map[int][]string{}
	for _, line := range strings.Split(strings.TrimSpace(string(outb)), "\n") {
		fs := strings.Split(line, "|")
		if len(fs) != 9 {
			t.Fatalf("tshark line %q: want 9 fields", line)
		}
		var n int
		if _, err := fmt.Sscan(fs[0], &n); err != nil {
			t.Fatalf("tshark line %q: %v", line, err)
		}
		rows[n] = fs
	}
	defer func() {
		if t.Failed() {
			t.Logf("tshark output:\n%s\nstderr:\n%s", outb, stderr.String())
		}
	}()
	if len(rows) != len(pkts) {
		t.Errorf("tshark showed %d frames, wrote %d\nstderr: %s", len(rows), len(pkts), stderr.String())
	}
	for _, p := range pkts {
		name := fmt.Sprintf("%s/%s/frame%d", p.c.name, p.c.mode, p.frame)
		if p.tampered {
			name += "/tampered"
		}
		t.Run(name, func(t *testing.T) {
			r, ok := rows[p.frame]
			if !ok {
				t.Fatalf("frame %d missing from tshark output", p.frame)
			}
			srcs, dsts := strings.Split(r[1], ","), strings.Split(r[2], ",")
			if p.c.innerV6() {
				srcs, dsts = strings.Split(r[7], ","), strings.Split(r[8], ",")
			}
			pl := strings.Split(r[4], ",")
			got := pl[len(pl)-1] // with NAT-T the outer UDP payload comes first
			want := hex.EncodeToString(p.payload)
			if p.tampered {
				if strings.Contains(got, want) {
					t.Errorf("tampered packet decoded with the original payload: %q", got)
				}
				// tshark must never call it good. It usually reports the ICV
				// bad; when the flipped byte garbles the decrypted trailer
				// (CBC's last block, some NAT-T frames) its dissector can
				// stop before the ICV and give no verdict at all, which is
				// also a rejection: the payload check above still holds.
				if r[5] == "1" {
					t.Errorf("tampered packet: icv_good=%q icv_bad=%q, want ICV bad or no verdict", r[5], r[6])
				}
				return
			}
			if got != want {
				t.Errorf("udp.payload = %q, want %q (row %q)", got, want, r)
			}
			if srcs[len(srcs)-1] != p.src || dsts[len(dsts)-1] != p.dst {
				t.Errorf("inner addresses %v -> %v, want %s -> %s", srcs, dsts, p.src, p.dst)
			}
			// Outer and inner header of the inner family, or one of each.
			wantHdrs := 2
			switch p.c.mode {
			case "transport", "6in4":
				wantHdrs = 1
			}
			if len(srcs) != wantHdrs {
				t.Errorf("want %d headers of the inner family, got sources %q", wantHdrs, srcs)
			}
			if p.c.mode == "6in4" && r[1] != outerSrc {
				t.Errorf("outer IPv4 source %q, want %s", r[1], outerSrc)
			}
			if r[5] != "1" || r[6] == "1" {
				t.Errorf("icv_good=%q icv_bad=%q, want ICV good", r[5], r[6])
			}
		})
	}
}

package bpf

import (
	"net/netip"
	"testing"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
)

// TestBuilderAgreesWithGopacket decodes frames of the hand-rolled builder
// with gopacket, an independent parser, so that the classification tests
// do not rest on a builder that is wrong in the same way as the program.
func TestBuilderAgreesWithGopacket(t *testing.T) {
	tests := []struct {
		name   string
		p      pkt
		layers []gopacket.LayerType
		check  func(t *testing.T, pk gopacket.Packet)
	}{
		{
			name:   "esp4 QinQ IHL 7",
			p:      pkt{tpids: []uint16{tpid8021AD, tpid8021Q}, ihl: 7, proto: protoESP, l4: esp(0x1234, 16)},
			layers: []gopacket.LayerType{layers.LayerTypeEthernet, layers.LayerTypeDot1Q, layers.LayerTypeDot1Q, layers.LayerTypeIPv4, layers.LayerTypeIPSecESP},
			check: func(t *testing.T, pk gopacket.Packet) {
				ip := pk.Layer(layers.LayerTypeIPv4).(*layers.IPv4)
				if ip.IHL != 7 || len(ip.Options) == 0 || ip.Length != 28+24 || netip.AddrFrom4([4]byte(ip.DstIP.To4())) != local4 {
					t.Errorf("IPv4 header: IHL %d, %d options, length %d, dst %v", ip.IHL, len(ip.Options), ip.Length, ip.DstIP)
				}
				if esp := pk.Layer(layers.LayerTypeIPSecESP).(*layers.IPSecESP); esp.SPI != 0x1234 || esp.Seq != 1 {
					t.Errorf("ESP SPI %#x seq %d", esp.SPI, esp.Seq)
				}
			},
		},
		{
			name:   "natt6 keepalive padded",
			p:      pkt{v6: true, proto: protoUDP, l4: udp(4500, []byte{0xff}), pad: 10},
			layers: []gopacket.LayerType{layers.LayerTypeEthernet, layers.LayerTypeIPv6, layers.LayerTypeUDP, gopacket.LayerTypePayload},
			check: func(t *testing.T, pk gopacket.Packet) {
				u := pk.Layer(layers.LayerTypeUDP).(*layers.UDP)
				if u.DstPort != 4500 || u.Length != 9 || len(u.Payload) != 1 || u.Payload[0] != 0xff {
					t.Errorf("UDP: port %d length %d payload %x", u.DstPort, u.Length, u.Payload)
				}
				if ip := pk.Layer(layers.LayerTypeIPv6).(*layers.IPv6); ip.Length != 9 {
					t.Errorf("IPv6 payload length %d", ip.Length)
				}
			},
		},
		{
			name: "esp6 hop-by-hop, dest options, fragment",
			p: pkt{v6: true, ext: []ext6{{typ: ext6HopByHop}, {typ: ext6DestOpts, size: 16}, {typ: ext6Fragment, fragOffset: 3, more: true}},
				proto: protoESP, l4: esp(5, 8)},
			layers: []gopacket.LayerType{layers.LayerTypeEthernet, layers.LayerTypeIPv6, layers.LayerTypeIPv6HopByHop, layers.LayerTypeIPv6Destination, layers.LayerTypeIPv6Fragment},
			check: func(t *testing.T, pk gopacket.Packet) {
				f := pk.Layer(layers.LayerTypeIPv6Fragment).(*layers.IPv6Fragment)
				if f.FragmentOffset != 3 || !f.MoreFragments || f.NextHeader != layers.IPProtocolESP {
					t.Errorf("fragment header: offset %d, M %v, next %v", f.FragmentOffset, f.MoreFragments, f.NextHeader)
				}
			},
		},
		{
			name:   "ipv4 fragment",
			p:      pkt{frag4: 0x2000 | 5, proto: protoUDP, l4: udp(4500, esp(1, 8))},
			layers: []gopacket.LayerType{layers.LayerTypeEthernet, layers.LayerTypeIPv4, gopacket.LayerTypeFragment},
			check: func(t *testing.T, pk gopacket.Packet) {
				ip := pk.Layer(layers.LayerTypeIPv4).(*layers.IPv4)
				if ip.Flags != layers.IPv4MoreFragments || ip.FragOffset != 5 {
					t.Errorf("flags %v offset %d", ip.Flags, ip.FragOffset)
				}
			},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			pk := gopacket.NewPacket(tc.p.bytes(), layers.LayerTypeEthernet, gopacket.Default)
			if el := pk.ErrorLayer(); el != nil {
				t.Fatalf("gopacket: %v", el.Error())
			}
			var got []gopacket.LayerType
			for _, l := range pk.Layers() {
				got = append(got, l.LayerType())
			}
			if len(got) < len(tc.layers) {
				t.Fatalf("layers %v, want prefix %v", got, tc.layers)
			}
			for i, lt := range tc.layers {
				if got[i] != lt {
					t.Fatalf("layers %v, want prefix %v", got, tc.layers)
				}
			}
			if ip, ok := pk.Layer(layers.LayerTypeIPv4).(*layers.IPv4); ok {
				// Re-serialising with checksums must reproduce ours.
				want := ip.Checksum
				buf := gopacket.NewSerializeBuffer()
				if err := ip.SerializeTo(buf, gopacket.SerializeOptions{ComputeChecksums: true}); err != nil {
					t.Fatal(err)
				}
				if ip.Checksum != want {
					t.Errorf("IPv4 checksum %#x, gopacket computes %#x", want, ip.Checksum)
				}
			}
			tc.check(t, pk)
		})
	}
}

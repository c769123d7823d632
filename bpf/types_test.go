package bpf

import (
	"errors"
	"net/netip"
	"reflect"
	"testing"
)

func TestOptionsNormalize(t *testing.T) {
	pfx := []netip.Prefix{netip.MustParsePrefix("198.51.100.0/24")}
	many := func(n int) []netip.Addr {
		out := make([]netip.Addr, n)
		a := netip.MustParseAddr("10.0.0.0")
		for i := range out {
			a = a.Next()
			out[i] = a
		}
		return out
	}
	manyPfx := func(n int) []netip.Prefix {
		out := make([]netip.Prefix, n)
		for i, a := range many(n) {
			out[i] = netip.PrefixFrom(a, 32)
		}
		return out
	}
	tests := []struct {
		name string
		in   Options
		ok   bool
	}{
		{"zero", Options{}, true},
		{"port", Options{NATTPort: 14500}, true},
		{"port 500", Options{NATTPort: 500}, false},
		{"sockets 64 with hash", Options{SocketsPerQueue: 64, SPIHash: true}, true},
		{"sockets 65", Options{SocketsPerQueue: 65, SPIHash: true}, false},
		{"sockets -1", Options{SocketsPerQueue: -1}, false},
		{"sockets 2 without hash", Options{SocketsPerQueue: 2}, false},
		{"hash with one socket", Options{SPIHash: true}, true},
		{"queues max", Options{Queues: MaxQueues}, true},
		{"queues too many", Options{Queues: MaxQueues + 1}, false},
		{"queues negative", Options{Queues: -3}, false},
		{"invalid local addr", Options{LocalAddrs: []netip.Addr{{}}}, false},
		{"local addrs max", Options{LocalAddrs: many(MaxLocalAddrs)}, true},
		{"local addrs too many", Options{LocalAddrs: many(MaxLocalAddrs + 1)}, false},
		{"plaintext without prefixes", Options{Plaintext: true}, false},
		{"prefixes without plaintext", Options{ProtectedPrefixes: pfx}, false},
		{"plaintext", Options{Plaintext: true, ProtectedPrefixes: pfx}, true},
		{"invalid prefix", Options{Plaintext: true, ProtectedPrefixes: []netip.Prefix{{}}}, false},
		{"prefixes max", Options{Plaintext: true, ProtectedPrefixes: manyPfx(MaxProtectedPrefixes)}, true},
		{"prefixes too many", Options{Plaintext: true, ProtectedPrefixes: manyPfx(MaxProtectedPrefixes + 1)}, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := tc.in.normalize()
			if tc.ok && err != nil {
				t.Errorf("unexpected error %v", err)
			}
			if !tc.ok && !errors.Is(err, ErrInvalidOptions) {
				t.Errorf("error %v, want ErrInvalidOptions", err)
			}
		})
	}
}

func TestOptionsDefaultsAndCanonicalForm(t *testing.T) {
	got, err := Options{
		LocalAddrs: []netip.Addr{
			netip.MustParseAddr("::ffff:192.0.2.1"),
			netip.MustParseAddr("fe80::1%eth0"),
		},
		Plaintext: true,
		ProtectedPrefixes: []netip.Prefix{
			netip.MustParsePrefix("198.51.100.77/24"),
			netip.MustParsePrefix("::ffff:203.0.113.0/120"),
			netip.MustParsePrefix("2001:db8:1::1/48"),
		},
	}.normalize()
	if err != nil {
		t.Fatal(err)
	}
	want := Options{
		NATTPort:        DefaultNATTPort,
		SocketsPerQueue: 1,
		Queues:          DefaultQueues,
		LocalAddrs: []netip.Addr{
			netip.MustParseAddr("192.0.2.1"),
			netip.MustParseAddr("fe80::1"),
		},
		Plaintext: true,
		ProtectedPrefixes: []netip.Prefix{
			netip.MustParsePrefix("198.51.100.0/24"),
			netip.MustParsePrefix("203.0.113.0/24"),
			netip.MustParsePrefix("2001:db8:1::/48"),
		},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("normalize:\n got %+v\nwant %+v", got, want)
	}
}

func TestStatsArithmetic(t *testing.T) {
	a := Stats{ESPRedirected: 5, NATTRedirected: 4, PlaintextRedirected: 3, FragmentRedirected: 2, Malformed: 7, RedirectNoSocket: 1}
	if got := a.Total(); got != 22 {
		t.Errorf("Total %d, want 22", got)
	}
	if got := a.Redirected(); got != 14 {
		t.Errorf("Redirected %d, want 14", got)
	}
	b := Stats{ESPRedirected: 2, Malformed: 7}
	if got, want := a.Sub(b), (Stats{ESPRedirected: 3, NATTRedirected: 4, PlaintextRedirected: 3, FragmentRedirected: 2, RedirectNoSocket: 1}); got != want {
		t.Errorf("Sub: %+v, want %+v", got, want)
	}
	if a.Sub(b) == a {
		t.Error("Sub changed nothing")
	}
}

func TestSPIHashSlot(t *testing.T) {
	if SPIHashSlot(12345, 1) != 0 || SPIHashSlot(12345, 0) != 0 {
		t.Error("one socket per queue must always be slot 0")
	}
	// hash32 is a bijection on uint32 with hash32(0) = 0; check a few
	// properties instead of magic numbers.
	if hash32(0) != 0 || hash32(1) == 1 || hash32(1) == hash32(2) {
		t.Error("hash32 looks wrong")
	}
	for _, n := range []int{2, 3, 4, 7, 64} {
		counts := make([]int, n)
		const spis = 64 * 1024
		for spi := uint32(256); spi < 256+spis; spi++ { // sequential SPIs, a common allocation
			s := SPIHashSlot(spi, n)
			if s < 0 || s >= n {
				t.Fatalf("SPIHashSlot(%d, %d) = %d", spi, n, s)
			}
			counts[s]++
		}
		for slot, c := range counts {
			if exp := spis / n; c < exp*9/10 || c > exp*11/10 {
				t.Errorf("n=%d: slot %d got %d of %d sequential SPIs", n, slot, c, spis)
			}
		}
	}
	if PlaintextHashSlot(netip.MustParseAddr("198.51.100.7"), 4) != SPIHashSlot(0xc6336407, 4) {
		t.Error("PlaintextHashSlot(v4) does not hash the address as a big-endian word")
	}
	v6 := netip.MustParseAddr("2001:db8:100::7") // words 20010db8 01000000 00000000 00000007
	if PlaintextHashSlot(v6, 64) != SPIHashSlot(0x20010db8^0x01000000^0x00000007, 64) {
		t.Error("PlaintextHashSlot(v6) does not hash the XOR of the address words")
	}
}

func TestStringers(t *testing.T) {
	for v, s := range map[Verdict]string{
		VerdictAborted: "XDP_ABORTED", VerdictDrop: "XDP_DROP", VerdictPass: "XDP_PASS",
		VerdictTX: "XDP_TX", VerdictRedirect: "XDP_REDIRECT", 9: "Verdict(9)",
	} {
		if v.String() != s {
			t.Errorf("%d.String() = %q, want %q", uint32(v), v.String(), s)
		}
	}
	for m, s := range map[AttachMode]string{AttachAuto: "auto", AttachNative: "native", AttachGeneric: "generic", 7: "AttachMode(7)"} {
		if m.String() != s {
			t.Errorf("%d.String() = %q, want %q", int(m), m.String(), s)
		}
	}
}

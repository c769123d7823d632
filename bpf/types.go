package bpf

import (
	"errors"
	"fmt"
	"net/netip"
	"time"
)

// DefaultNATTPort is the UDP port of ESP-in-UDP encapsulation (RFC 3948).
const DefaultNATTPort = 4500

// IKEPort is the UDP port of IKE without NAT traversal (RFC 7296). Traffic
// to it always goes to the kernel and is counted as IKEPassed.
const IKEPort = 500

// Limits enforced by Options validation.
const (
	// MaxSocketsPerQueue is the largest accepted Options.SocketsPerQueue.
	MaxSocketsPerQueue = 64
	// DefaultQueues is the number of RX queues the XSKMAP has room for
	// when Options.Queues is zero.
	DefaultQueues = 64
	// DefaultSpreadChunk is Options.SpreadChunk when zero.
	DefaultSpreadChunk = 32
	// MaxSpreadChunk is the largest accepted Options.SpreadChunk.
	MaxSpreadChunk = 1 << 15
	// MaxQueues is the largest accepted Options.Queues.
	MaxQueues = 1024
	// MaxLocalAddrs is the capacity of the local address map.
	MaxLocalAddrs = 1024
	// MaxProtectedPrefixes is the capacity of each (IPv4, IPv6) prefix trie.
	MaxProtectedPrefixes = 1024
	// MaxUnprotectedRules is the most Unprotected.Rules (MAX_UNPROT_RULES).
	MaxUnprotectedRules = 64
	// MaxTunnelIndex is the largest tunnel counter index of the
	// clear-text discard (MAX_UNPROT_TUNNELS-1); larger ones count as 0.
	MaxTunnelIndex = 255
)

// Sentinel errors. Errors returned by this package wrap one of these where
// it applies, together with the underlying error; test with errors.Is.
var (
	// ErrPermission means the kernel refused for lack of privileges:
	// loading XDP programs and creating their maps needs root, or
	// CAP_BPF + CAP_NET_ADMIN (CAP_SYS_ADMIN on kernels before 5.8).
	ErrPermission = errors.New("operation not permitted (need root or CAP_BPF and CAP_NET_ADMIN)")
	// ErrNotSupported means the kernel or the driver lacks a feature this
	// package needs (BPF links for XDP, XSKMAP, native XDP on a driver,
	// ...), or the platform is not Linux on a little-endian CPU.
	ErrNotSupported = errors.New("not supported by this kernel, driver or platform")
	// ErrInvalidOptions means Options (or an argument) failed validation.
	ErrInvalidOptions = errors.New("invalid options")
	// ErrBusy means the interface already has an XDP program attached.
	ErrBusy = errors.New("interface already has an XDP program")
)

// Verdict is an XDP action as returned by the program. The values are
// the kernel's enum xdp_action.
type Verdict uint32

// XDP actions. The steering program only ever returns VerdictPass or
// VerdictRedirect; the others are listed so tests can say what must not
// happen.
const (
	VerdictAborted  Verdict = 0 // XDP_ABORTED
	VerdictDrop     Verdict = 1 // XDP_DROP
	VerdictPass     Verdict = 2 // XDP_PASS
	VerdictTX       Verdict = 3 // XDP_TX
	VerdictRedirect Verdict = 4 // XDP_REDIRECT
)

func (v Verdict) String() string {
	switch v {
	case VerdictAborted:
		return "XDP_ABORTED"
	case VerdictDrop:
		return "XDP_DROP"
	case VerdictPass:
		return "XDP_PASS"
	case VerdictTX:
		return "XDP_TX"
	case VerdictRedirect:
		return "XDP_REDIRECT"
	}
	return fmt.Sprintf("Verdict(%d)", uint32(v))
}

// AttachMode selects the XDP hook an Attachment uses.
type AttachMode int

const (
	// AttachAuto tries native (driver) mode first and falls back to
	// generic mode if the driver refuses. Attachment.Mode reports which
	// one was used.
	AttachAuto AttachMode = iota
	// AttachNative requires native (driver) mode.
	AttachNative
	// AttachGeneric uses generic (SKB) mode, which every device supports
	// at a performance cost and with copy-mode AF_XDP only.
	AttachGeneric
)

func (m AttachMode) String() string {
	switch m {
	case AttachAuto:
		return "auto"
	case AttachNative:
		return "native"
	case AttachGeneric:
		return "generic"
	}
	return fmt.Sprintf("AttachMode(%d)", int(m))
}

// Options configures the steering program. The zero value is valid: raw
// ESP and ESP-in-UDP on port 4500 to any destination go to the single
// socket of the receiving queue, fragments go to the kernel.
type Options struct {
	// NATTPort is the UDP destination port of ESP-in-UDP. Zero means
	// DefaultNATTPort (4500).
	NATTPort uint16

	// LocalAddrs, when non-empty, enables the local-address filter: ESP,
	// NAT-T and IKE packets are only taken when their destination is one
	// of these addresses; others are counted as NotLocal and passed (or,
	// in Plaintext mode, treated as plaintext). IPv4 and IPv6 may be
	// mixed; zones are dropped and IPv4-mapped IPv6 addresses
	// (::ffff:a.b.c.d) are taken as IPv4. At most MaxLocalAddrs.
	LocalAddrs []netip.Addr

	// SteerFragments sends outer IP fragments that may belong to ESP
	// (IP protocol 50 or UDP, to a local address) or to a protected
	// prefix to AF_XDP, always to the first socket of the receiving
	// queue, for reassembly in userspace. When false (the default) all
	// outer fragments go to the kernel and are counted as
	// FragmentPassed.
	SteerFragments bool

	// SocketsPerQueue is the number of AF_XDP sockets per RX queue, in
	// XSKMAP slots queue*SocketsPerQueue ... queue*SocketsPerQueue +
	// SocketsPerQueue-1. Zero means 1. Values above 1 require SPIHash
	// or Spread. At most MaxSocketsPerQueue.
	SocketsPerQueue int

	// SPIHash spreads packets of a queue over its SocketsPerQueue
	// sockets: ESP by SPIHashSlot(spi), plaintext by a hash of the
	// destination address. Fragments always use slot 0.
	SPIHash bool

	// Spread deals the packets a queue would hash (ESP, NAT-T and, in
	// Plaintext mode, plaintext) over its SocketsPerQueue sockets in
	// turn, SpreadChunk consecutive packets to each, whatever their SPI
	// or address: one SA's stream on one RX queue (as RSS delivers it)
	// reaches every socket. The dealer's position is a per-CPU counter,
	// so the program still writes nothing another CPU reads. Fragments
	// always use slot 0. Not with SPIHash.
	Spread bool
	// SpreadChunk is how many consecutive packets Spread gives one socket
	// before the next: a power of two, 1..MaxSpreadChunk (0:
	// DefaultSpreadChunk). Runs of one SA's packets stay together, so a
	// worker's batch still holds runs (see package sa).
	SpreadChunk int

	// Plaintext enables gateway mode: packets that are not taken as
	// ESP/NAT-T/IKE and whose destination lies in ProtectedPrefixes go
	// to AF_XDP (to be encrypted); the rest pass.
	Plaintext bool

	// ProtectedPrefixes are the destinations of Plaintext mode (longest
	// prefix match, separate IPv4 and IPv6 tries, at most
	// MaxProtectedPrefixes of each; IPv4-mapped IPv6 prefixes of length
	// 96 or more are taken as IPv4). Only valid with Plaintext, which
	// requires at least one.
	ProtectedPrefixes []netip.Prefix

	// Queues is the number of RX queues the XSKMAP has slots for; the
	// map has Queues*SocketsPerQueue entries. Zero means DefaultQueues.
	// Packets from a higher queue find no socket and are passed. At most
	// MaxQueues.
	Queues int

	// Unprotected, when it has prefixes, makes the program discard clear
	// text that the SPD protects (RFC 4301 §5.2): on the ciphertext
	// side, a packet that is not ESP, NAT-T, IKE or a keepalive to a
	// local address and whose source lies in a remote protected prefix
	// is dropped (UnprotectedDropped, and per tunnel in
	// Program.UnprotectedDrops) unless a bypass rule exempts it
	// (BypassPassed). Not valid with Plaintext.
	Unprotected Unprotected
}

// Unprotected describes the clear text a ciphertext-side program
// discards. Its Classify method is the reference the program is tested
// against, and what the pcap tools use.
type Unprotected struct {
	// Prefixes are the remote protected networks (the peers' side of
	// what is protected: the gateway's protected prefixes, its TUN
	// routes, the destinations of protect policies), matched against a
	// packet's source by longest prefix (at most MaxProtectedPrefixes per
	// family; IPv4-mapped prefixes are taken as IPv4).
	Prefixes []RemotePrefix
	// Rules are tried in order when the source matched a prefix; the
	// first rule that matches decides (bypass: pass, else drop), and a
	// packet that matches no rule is dropped. At most
	// MaxUnprotectedRules.
	Rules []InboundRule
}

// RemotePrefix is a remote protected network and the index of the
// tunnel its discards are counted under (0: none, at most
// MaxTunnelIndex).
type RemotePrefix struct {
	Prefix netip.Prefix
	Tunnel int
	// RulesOnly marks a prefix that comes from SPD rules alone (the
	// destination of a protect or discard policy): a packet from it that
	// matches no rule is not protected and passes. A packet from any
	// other prefix (protected networks, TUN routes: everything from
	// there goes through a tunnel) that matches no rule is dropped.
	RulesOnly bool
}

// PortRange is an inclusive port range; the zero value matches any port
// and packets without ports, any other only packets with ports (TCP,
// UDP, UDP-Lite, DCCP, SCTP; not non-first fragments) in the range.
type PortRange struct{ Lo, Hi uint16 }

func (r PortRange) match(port uint16, ports bool) bool {
	return r == PortRange{} || ports && r.Lo <= port && port <= r.Hi
}

// InboundRule is an SPD entry as it applies to packets arriving from the
// peer's side: Src is the remote side (an outbound policy's destination),
// Dst our side. Zero prefixes match any address of either family.
type InboundRule struct {
	Src, Dst           netip.Prefix
	Proto              uint8 // 0: any
	SrcPorts, DstPorts PortRange
	// Bypass exempts matching packets; otherwise they are dropped
	// (a protect or discard entry).
	Bypass bool
	// Tunnel is the counter index of drops by this rule (0: the index of
	// the matching RemotePrefix).
	Tunnel int
}

// UnprotectedPacket describes the last clear-text packet the program
// dropped (Program.LastUnprotected).
type UnprotectedPacket struct {
	Src, Dst netip.Addr
	Proto    uint8
	Tunnel   int
	// Seen is the kernel's monotonic clock (CLOCK_MONOTONIC) at the drop.
	Seen time.Duration
}

// Packet is what Unprotected.Classify looks at.
type Packet struct {
	Src, Dst     netip.Addr
	Proto        uint8
	Ports        bool // the packet carries ports (and is not a non-first fragment)
	SPort, DPort uint16
	// Opaque marks a packet whose header chain the program could not
	// parse (more IPv6 extension headers than it reads, a malformed chain
	// or IP length): Proto and ports are unknown and ignored. It fails
	// closed: it is discarded if ANY protocol and ports would discard it,
	// i.e. a bypass rule exempts it only if the rule has no protocol and
	// no port ranges, and a discard rule drops it if its addresses match.
	Opaque bool
}

// UnprotectedVerdict is the outcome of Unprotected.Classify.
type UnprotectedVerdict int

// Verdicts of the clear-text check.
const (
	// NotProtected: the source is in no remote protected prefix.
	NotProtected UnprotectedVerdict = iota
	// Discard: clear text that the SPD protects; the program drops it.
	Discard
	// Exempt: a bypass rule lets it pass.
	Exempt
)

func (v UnprotectedVerdict) String() string {
	switch v {
	case NotProtected:
		return "not-protected"
	case Discard:
		return "discard"
	case Exempt:
		return "bypass"
	}
	return fmt.Sprintf("UnprotectedVerdict(%d)", int(v))
}

// Empty reports whether u discards nothing.
func (u Unprotected) Empty() bool { return len(u.Prefixes) == 0 }

// Classify decides a clear-text packet the way the program does, and
// returns the tunnel index a drop is counted under. It allocates nothing.
func (u Unprotected) Classify(p Packet) (UnprotectedVerdict, int) {
	src, dst := p.Src.Unmap(), p.Dst.Unmap()
	best, tunnel, rulesOnly := -1, 0, false
	for _, rp := range u.Prefixes {
		pfx := canonPrefix(rp.Prefix)
		if pfx.Contains(src) && pfx.Bits() >= best { // the last of equal prefixes, as in the trie
			best, tunnel, rulesOnly = pfx.Bits(), rp.Tunnel, rp.RulesOnly
		}
	}
	if best < 0 {
		return NotProtected, 0
	}
	matched := false
	for _, r := range u.Rules {
		if !r.matches(src, dst, p) {
			continue
		}
		if r.Bypass {
			if p.Opaque && !r.anyProtoPorts() {
				continue // may not match: not a certain exemption
			}
			return Exempt, 0
		}
		if r.Tunnel != 0 {
			tunnel = r.Tunnel
		}
		matched = true
		break
	}
	if !matched && rulesOnly {
		return NotProtected, 0
	}
	if tunnel < 0 || tunnel > MaxTunnelIndex {
		tunnel = 0
	}
	return Discard, tunnel
}

func (r *InboundRule) matches(src, dst netip.Addr, p Packet) bool {
	if s := canonPrefix(r.Src); s.IsValid() && !s.Contains(src) {
		return false
	}
	if d := canonPrefix(r.Dst); d.IsValid() && !d.Contains(dst) {
		return false
	}
	if p.Opaque {
		return true // may match; see Packet.Opaque
	}
	if r.Proto != 0 && r.Proto != p.Proto {
		return false
	}
	return r.SrcPorts.match(p.SPort, p.Ports) && r.DstPorts.match(p.DPort, p.Ports)
}

// anyProtoPorts reports whether r matches whatever a packet's protocol
// and ports are (the program's rule_certain).
func (r *InboundRule) anyProtoPorts() bool {
	return r.Proto == 0 && r.SrcPorts == PortRange{} && r.DstPorts == PortRange{}
}

// canonPrefix takes IPv4-mapped prefixes as IPv4 and masks the host bits.
func canonPrefix(p netip.Prefix) netip.Prefix {
	if !p.IsValid() {
		return p
	}
	if p.Addr().Is4In6() && p.Bits() >= 96 {
		p = netip.PrefixFrom(p.Addr().Unmap(), p.Bits()-96)
	}
	return p.Masked()
}

func (u Unprotected) normalize() (Unprotected, error) {
	if len(u.Prefixes) == 0 {
		if len(u.Rules) > 0 {
			return u, errors.New("Unprotected.Rules without Prefixes")
		}
		return Unprotected{}, nil
	}
	if len(u.Rules) > MaxUnprotectedRules {
		return u, fmt.Errorf("%d Unprotected.Rules, at most %d", len(u.Rules), MaxUnprotectedRules)
	}
	out := Unprotected{}
	var n4, n6 int
	for _, rp := range u.Prefixes {
		if !rp.Prefix.IsValid() {
			return u, fmt.Errorf("invalid unprotected prefix %v", rp.Prefix)
		}
		if rp.Tunnel < 0 || rp.Tunnel > MaxTunnelIndex {
			return u, fmt.Errorf("tunnel index %d of %v out of range 0..%d", rp.Tunnel, rp.Prefix, MaxTunnelIndex)
		}
		rp.Prefix = canonPrefix(rp.Prefix)
		if rp.Prefix.Addr().Is4() {
			n4++
		} else {
			n6++
		}
		out.Prefixes = append(out.Prefixes, rp)
	}
	if n4 > MaxProtectedPrefixes || n6 > MaxProtectedPrefixes {
		return u, fmt.Errorf("too many unprotected prefixes (at most %d per family)", MaxProtectedPrefixes)
	}
	for i, r := range u.Rules {
		r.Src, r.Dst = canonPrefix(r.Src), canonPrefix(r.Dst)
		if r.Src.IsValid() && r.Dst.IsValid() && r.Src.Addr().Is4() != r.Dst.Addr().Is4() {
			return u, fmt.Errorf("unprotected rule %d: source %v and destination %v of different families", i, r.Src, r.Dst)
		}
		for _, pr := range []PortRange{r.SrcPorts, r.DstPorts} {
			if pr != (PortRange{}) && pr.Lo > pr.Hi {
				return u, fmt.Errorf("unprotected rule %d: empty port range %d-%d", i, pr.Lo, pr.Hi)
			}
		}
		if r.Tunnel < 0 || r.Tunnel > MaxTunnelIndex {
			return u, fmt.Errorf("unprotected rule %d: tunnel index %d out of range 0..%d", i, r.Tunnel, MaxTunnelIndex)
		}
		out.Rules = append(out.Rules, r)
	}
	return out, nil
}

// normalize validates o and returns it with defaults filled in.
func (o Options) normalize() (Options, error) {
	bad := func(format string, args ...any) (Options, error) {
		return Options{}, fmt.Errorf("bpf: %w: %s", ErrInvalidOptions, fmt.Sprintf(format, args...))
	}
	if o.NATTPort == 0 {
		o.NATTPort = DefaultNATTPort
	}
	if o.NATTPort == IKEPort {
		return bad("NATTPort must not be the IKE port %d", IKEPort)
	}
	if o.SocketsPerQueue == 0 {
		o.SocketsPerQueue = 1
	}
	if o.SocketsPerQueue < 1 || o.SocketsPerQueue > MaxSocketsPerQueue {
		return bad("SocketsPerQueue %d out of range 1..%d", o.SocketsPerQueue, MaxSocketsPerQueue)
	}
	if o.SocketsPerQueue > 1 && !o.SPIHash && !o.Spread {
		return bad("SocketsPerQueue %d > 1 needs SPIHash or Spread", o.SocketsPerQueue)
	}
	if o.Spread && o.SPIHash {
		return bad("Spread and SPIHash exclude each other")
	}
	if o.SpreadChunk != 0 && !o.Spread {
		return bad("SpreadChunk needs Spread")
	}
	if o.Spread && o.SpreadChunk == 0 {
		o.SpreadChunk = DefaultSpreadChunk
	}
	if o.Spread && (o.SpreadChunk < 1 || o.SpreadChunk > MaxSpreadChunk || o.SpreadChunk&(o.SpreadChunk-1) != 0) {
		return bad("SpreadChunk %d is not a power of two in 1..%d", o.SpreadChunk, MaxSpreadChunk)
	}
	if o.Queues == 0 {
		o.Queues = DefaultQueues
	}
	if o.Queues < 1 || o.Queues > MaxQueues {
		return bad("Queues %d out of range 1..%d", o.Queues, MaxQueues)
	}
	if len(o.LocalAddrs) > MaxLocalAddrs {
		return bad("%d LocalAddrs, at most %d", len(o.LocalAddrs), MaxLocalAddrs)
	}
	addrs := make([]netip.Addr, 0, len(o.LocalAddrs))
	for _, a := range o.LocalAddrs {
		if !a.IsValid() {
			return bad("invalid local address")
		}
		addrs = append(addrs, a.Unmap().WithZone(""))
	}
	o.LocalAddrs = addrs

	if o.Plaintext && len(o.ProtectedPrefixes) == 0 {
		return bad("Plaintext needs at least one ProtectedPrefix")
	}
	if !o.Plaintext && len(o.ProtectedPrefixes) > 0 {
		return bad("ProtectedPrefixes need Plaintext")
	}
	prefixes := make([]netip.Prefix, 0, len(o.ProtectedPrefixes))
	var n4, n6 int
	for _, p := range o.ProtectedPrefixes {
		if !p.IsValid() {
			return bad("invalid protected prefix %v", p)
		}
		p = canonPrefix(p)
		if p.Addr().Is4() {
			n4++
		} else {
			n6++
		}
		prefixes = append(prefixes, p)
	}
	if n4 > MaxProtectedPrefixes || n6 > MaxProtectedPrefixes {
		return bad("too many ProtectedPrefixes (at most %d per family)", MaxProtectedPrefixes)
	}
	o.ProtectedPrefixes = prefixes
	u, err := o.Unprotected.normalize()
	if err != nil {
		return bad("%v", err)
	}
	if o.Plaintext && !u.Empty() {
		return bad("Unprotected is for the ciphertext side, not Plaintext")
	}
	o.Unprotected = u
	return o, nil
}

// Stats are the program's counters summed over all CPUs. Every packet
// the program sees increments exactly one of them.
type Stats struct {
	ESPRedirected       uint64 // raw ESP (IP protocol 50) redirected to AF_XDP
	NATTRedirected      uint64 // ESP-in-UDP redirected to AF_XDP
	PlaintextRedirected uint64 // plaintext to a protected prefix redirected
	PassedNonIP         uint64 // not IPv4/IPv6 (ARP, ...), passed
	PassedOther         uint64 // IP but not for us, passed
	IKEPassed           uint64 // UDP 500 or non-ESP marker on the NAT-T port, passed
	KeepalivePassed     uint64 // NAT-keepalive (one 0xFF byte), passed
	FragmentPassed      uint64 // outer IP fragment, passed
	FragmentRedirected  uint64 // outer IP fragment redirected (SteerFragments)
	Malformed           uint64 // truncated or inconsistent headers, passed
	NotLocal            uint64 // ESP/NAT-T/IKE to a non-local address, passed
	RedirectNoSocket    uint64 // would redirect, but the XSKMAP slot was empty; passed
	UnprotectedDropped  uint64 // clear text from a remote protected prefix, dropped
	BypassPassed        uint64 // ... exempted by a bypass rule, passed
	// FailClosedDropped counts frames a gateway program (Plaintext or
	// Unprotected) could not parse and dropped: more VLAN tags than it
	// reads, so neither addresses nor protection are known.
	FailClosedDropped uint64
}

// counters returns pointers to the fields in the order of the program's
// enum stat_reason.
func (s *Stats) counters() []*uint64 {
	return []*uint64{
		&s.ESPRedirected,
		&s.NATTRedirected,
		&s.PlaintextRedirected,
		&s.PassedNonIP,
		&s.PassedOther,
		&s.IKEPassed,
		&s.KeepalivePassed,
		&s.FragmentPassed,
		&s.FragmentRedirected,
		&s.Malformed,
		&s.NotLocal,
		&s.RedirectNoSocket,
		&s.UnprotectedDropped,
		&s.BypassPassed,
		&s.FailClosedDropped,
	}
}

// Total is the number of packets the program has seen.
func (s Stats) Total() uint64 {
	var t uint64
	for _, c := range s.counters() {
		t += *c
	}
	return t
}

// Redirected is the number of packets handed to AF_XDP sockets.
func (s Stats) Redirected() uint64 {
	return s.ESPRedirected + s.NATTRedirected + s.PlaintextRedirected + s.FragmentRedirected
}

// Sub returns s - old, field by field: the counts since old was taken.
func (s Stats) Sub(old Stats) Stats {
	out := s
	oc := old.counters()
	for i, c := range out.counters() {
		*c -= *oc[i]
	}
	return out
}

// hash32 is the program's hash32 (the "lowbias32" integer finaliser).
func hash32(x uint32) uint32 {
	x ^= x >> 16
	x *= 0x7feb352d
	x ^= x >> 15
	x *= 0x846ca68b
	x ^= x >> 16
	return x
}

// SPIHashSlot returns the socket slot, within its queue, that the program
// picks for an ESP packet with the given SPI (host byte order) when SPIHash
// is on with n sockets per queue: the XSKMAP index is
// queue*n + SPIHashSlot(spi, n). It returns 0 for n <= 1.
func SPIHashSlot(spi uint32, n int) int {
	if n <= 1 {
		return 0
	}
	return int(hash32(spi) % uint32(n))
}

// destHashKey is the 32-bit key the program hashes for plaintext packets:
// the IPv4 destination, or the XOR of the four words of the IPv6 one.
func destHashKey(a netip.Addr) uint32 {
	b := a.As16()
	if a.Is4() {
		return be32(b[12:])
	}
	return be32(b[0:]) ^ be32(b[4:]) ^ be32(b[8:]) ^ be32(b[12:])
}

func be32(b []byte) uint32 {
	return uint32(b[0])<<24 | uint32(b[1])<<16 | uint32(b[2])<<8 | uint32(b[3])
}

// PlaintextHashSlot is SPIHashSlot for plaintext packets (Plaintext mode):
// the program hashes destHashKey(dst) instead of an SPI.
func PlaintextHashSlot(dst netip.Addr, n int) int {
	return SPIHashSlot(destHashKey(dst), n)
}

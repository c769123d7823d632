package xdp

import (
	"fmt"
	"net"
	"net/netip"
	"time"

	"github.com/espxdp/espxdp/bpf"
	"github.com/espxdp/espxdp/esp/reasm"
	"github.com/espxdp/espxdp/sa"
)

// Port is one side of an Engine: a network interface, in the network
// namespace of the thread that calls Engine.Start.
type Port struct {
	// Name or Ifindex selects the interface (Ifindex wins when set).
	Name    string
	Ifindex int
	// NextHop is the destination MAC of every frame the engine sends on
	// this side: the engine is a bump in the wire and does no ARP.
	NextHop net.HardwareAddr
	// MAC is the source MAC of those frames (nil: the interface's own).
	MAC net.HardwareAddr
	// VLAN, if not 0, is the 802.1Q VLAN ID (1..4094) of this side:
	// every frame the engine sends here carries the tag (priority 0),
	// and a frame received here is taken only with exactly that one tag.
	// With 0 the side is untagged: frames are sent without a tag, and
	// only untagged (or priority-tagged, VLAN ID 0) frames are taken.
	// Frames with another tag, or none, are dropped and counted as
	// VLANDrops (the XDP program steers ESP and protected plaintext
	// whatever the tag). The NIC must leave the tags in the frame: turn
	// receive VLAN offload off (ethtool -K DEV rxvlan off) where the
	// driver strips them before XDP.
	VLAN int
}

// isZero reports whether p selects no interface and sets nothing.
func (p *Port) isZero() bool {
	return p.Name == "" && p.Ifindex == 0 && p.NextHop == nil && p.MAC == nil && p.VLAN == 0
}

// MaxJumboMTU is the largest interface MTU an Engine with MultiBuffer
// takes.
const MaxJumboMTU = 9216

// MaxFragments is the most fragments FragmentInner makes of one packet.
const MaxFragments = 16

// MaxVLAN is the largest 802.1Q VLAN ID (4095 is reserved).
const MaxVLAN = 4094

// DeliverFunc receives a batch of decrypted inner IP packets when the
// engine has no plaintext interface. The slices point into UMEM frames
// and are valid only during the call.
type DeliverFunc func(pkts [][]byte)

// ControlFunc receives a packet the SA processor classified as control
// traffic (IKE behind the non-ESP marker, NAT-keepalive), starting at
// its IP header. The slice is valid only during the call.
type ControlFunc func(pkt []byte)

// EngineConfig configures an Engine.
type EngineConfig struct {
	// Processor runs ESP; it is built by the caller, who keeps control
	// of its SAD, SPD and tunnels and may change SAs while the engine
	// runs. It needs at least Workers workers: engine worker i drives
	// Processor.Worker(i).
	Processor *sa.Processor
	// Cipher is the ciphertext side: ESP and ESP-in-UDP arrive there
	// (steered by the bpf program) and encrypted packets leave there.
	// Required unless CipherPort is set; it must be the zero Port then.
	Cipher Port
	// CipherPort, if set, is the ciphertext side instead of Cipher: a
	// port of the caller's (a UDP socket carrying ESP-in-UDP, a
	// wireguard-go conn.Bind, an in-memory queue) and no XDP program
	// at all on that side. Its Receive delivers whole ESP packets with
	// their outer IP header (IP/ESP or IP/UDP/ESP, as the AF_XDP side
	// delivers them past the Ethernet header), so the SAs check their
	// outer addresses and ports as usual; its Transmit gets the
	// encrypted packets with their outer IP header, which a socket port
	// turns into its destination address. LocalAddrs, NATTPort (for the
	// program), Unprotected, Steering and the interface tuning have no
	// effect on it: the port decides which worker receives what (see
	// the package documentation, "Ports").
	CipherPort EnginePort
	// Plain is the plaintext side (AF_XDP, bpf Plaintext mode with
	// ProtectedPrefixes): packets to the protected prefixes arriving
	// there are encrypted, decrypted packets leave there. Nil means no
	// plaintext interface: decrypted packets go to Deliver.
	Plain *Port
	// ProtectedPrefixes are the destinations taken on Plain for
	// encryption (required with Plain).
	ProtectedPrefixes []netip.Prefix
	// LocalAddrs, if set, restricts the ESP taken on Cipher to these
	// destinations (bpf.Options.LocalAddrs).
	LocalAddrs []netip.Addr
	// NATTPort is the ESP-in-UDP port (0: 4500).
	NATTPort uint16
	// Unprotected makes the Cipher side's XDP program discard clear
	// text from the remote protected networks (bpf.Options.Unprotected,
	// RFC 4301 §5.2).
	Unprotected bpf.Unprotected
	// Deliver receives decrypted packets when Plain and PlainPort are
	// nil (one of the three is required; Deliver is ignored with Plain).
	Deliver DeliverFunc
	// PlainPort, if set, is the plaintext side instead of Plain or
	// Deliver: a port of the caller's (an in-memory queue, a socket, a
	// TUN served its own way) that the workers receive plaintext from
	// and send decrypted packets to (see EnginePort). Engine.Send works
	// beside it.
	PlainPort EnginePort
	// Control, if set, receives control packets; otherwise they are
	// dropped (and counted). The bpf program already passes IKE to the
	// kernel, so this is rare.
	Control ControlFunc
	// Queues is the number of interface queues served (0: 1).
	Queues int
	// Workers is the number of engine workers (0: Queues). With
	// SteerQueue it must equal Queues (worker i serves queue i); with
	// SteerSPI and SteerSpread every worker has a socket on every queue
	// of both interfaces (the queue's sockets share its fill and
	// completion rings, XDP_SHARED_UMEM), the XDP programs choose the
	// worker, and worker i transmits on queue i % Queues.
	Workers int
	// Steering chooses how the XDP programs pick the worker of a packet
	// (SteerAuto: by the processor's concurrency mode; see Steering).
	Steering Steering
	// SpreadChunk is, with SteerSpread, how many consecutive packets of
	// a queue go to one worker before the next (a power of two; 0:
	// bpf.DefaultSpreadChunk).
	SpreadChunk int
	// UMEM configures the engine's UMEM, shared by all its sockets so
	// frames move between interfaces and workers without copying. The
	// zero value gives the defaults, but NumFrames 0 means EngineFrames:
	// enough that no socket starves for frames the others hold.
	UMEM UMEMConfig
	// Mode is the AF_XDP bind mode; Attach the XDP attach mode.
	Mode   Mode
	Attach bpf.AttachMode
	// BatchSize is the most packets per RX batch (0: DefaultBatch).
	BatchSize int
	// CPUs, if set, pins worker i to CPUs[i%len(CPUs)]. Unpinned,
	// workers are still locked to an OS thread each.
	CPUs []int
	// IdleSpins is the most empty polls before a worker sleeps in
	// poll(2) (0: 64; negative: busy poll). A worker spins fewer, down
	// to 4, while its sleeps last longer than spinning IdleSpins polls
	// would have (traffic in bursts with long gaps, such as one TCP
	// flow, where every poll of the spin is CPU spent for nothing), and
	// goes back up as sleeps get short (steady traffic); in the Shared
	// mode only (in the others a hand-off may wait for a sleeper's
	// 1 ms timeout, so workers keep spinning IdleSpins).
	IdleSpins int

	// Gateway duties on the plaintext (inner) packets; see the package
	// documentation of internal/inet for the packet functions.

	// ClampMSS, if positive, is the TCP MSS that SYN and SYN-ACK
	// segments crossing the tunnel are clamped to, in both directions
	// (into it before encryption, out of it after decryption), like
	// "ip tcp adjust-mss". It is the IPv4 value; IPv6 segments are
	// clamped to ClampMSS-20. 0 turns clamping off; otherwise it must be
	// 64..65535. Segments that an SPD bypass policy sends in clear keep
	// their MSS (the engine restores it after the SA processor decided).
	ClampMSS int
	// DecrementTTL makes the engine act as a router for the inner
	// packets: it decrements their IPv4 TTL / IPv6 hop limit on both
	// paths (bypassed packets included). On the encrypt path a packet
	// that would expire (TTL or hop limit 1 or 0) is dropped before
	// encryption and, with ICMPErrors, answered with ICMP time exceeded;
	// on the decrypt path it is dropped. Both count as TTLExpired.
	DecrementTTL bool
	// ICMPErrors makes the engine answer packets it cannot forward on
	// the encrypt path with ICMP errors sent back the way they came: on
	// the plaintext port (to Plain.NextHop) or, without one, to Deliver
	// (with a TUN, the kernel then learns the path MTU). An outbound
	// packet the SA processor drops with sa.DropMTU becomes ICMP
	// "fragmentation needed" (IPv4 with DF set; an IPv4 packet without
	// DF stays a counted drop: the engine does not fragment) or ICMPv6
	// "packet too big", reporting the SA's plaintext MTU; with
	// DecrementTTL, an expiring packet becomes "time exceeded". Errors
	// are never sent about ICMP errors, non-first fragments or
	// non-unicast packets (RFC 1812 §4.3.2.7, RFC 4443 §2.4), and are
	// rate limited per worker (ICMPRate, ICMPBurst).
	ICMPErrors bool
	// ICMPSource4 and ICMPSource6 are the source addresses of the ICMP
	// errors: the gateway's plaintext-side addresses. An error about a
	// packet of a family without a source address is not sent (counted
	// as ICMPNotSent). With a TUN, use an address the kernel does not
	// own: it drops packets from its own addresses as martians.
	ICMPSource4, ICMPSource6 netip.Addr
	// FragmentInner fragments IPv4 packets without DF that exceed the
	// SA's plaintext MTU before encryption (RFC 4459 §5.1, IOS "crypto
	// ipsec fragmentation before-encryption"): each fragment is written
	// into a fresh UMEM frame (the first stays in place) and encrypted on
	// its own, so the peer's gateway decrypts whole fragments and the
	// inner destination reassembles. Packets with DF, IPv6 packets and
	// IPv4 packets with options still get the ICMP error (ICMPErrors) or
	// are dropped. The SA's DropMTU counter still counts each such packet
	// once (the SA processor refused it whole); Fragmented counts them
	// here.
	FragmentInner bool

	// MultiBuffer enables jumbo frames: interface MTUs up to
	// MaxJumboMTU, through AF_XDP multi-buffer (sockets bound with
	// XDP_USE_SG; Linux 6.6+): the kernel hands a frame longer than a UMEM
	// frame over as a chain of frames, which the worker gathers into a
	// per-worker buffer (one copy) and sends as a chain of frames
	// (another); shorter frames take the zero-copy path as before. The
	// steering program reads packets in its first buffer only, so the
	// programs are attached in generic (skb) mode, where the kernel hands
	// them the whole frame: Attach must be AttachAuto or AttachGeneric,
	// and Mode copy or auto. It needs the Shared concurrency mode (a
	// gathered packet never leaves its worker) and a BatchSize of at
	// least 18 (a whole chain per receive).
	MultiBuffer bool

	// ICMPRate and ICMPBurst are the token bucket that limits each
	// worker's ICMP errors: ICMPRate per second, bursts of ICMPBurst
	// (0: 100 and 20).
	ICMPRate, ICMPBurst int

	// Reassembly, if set, turns on outer reassembly before ESP
	// processing (RFC 4303 §3.4.1): the ciphertext-side XDP program
	// steers outer fragments of ESP and UDP to the queue's socket
	// (bpf.Options.SteerFragments) and each worker reassembles them with
	// its own reasm.Reassembler, bounded by this configuration (zero
	// fields: reasm's defaults). A reassembled packet is copied into the
	// frame of the fragment that completed it and processed there, so one
	// longer than a frame's room (FrameSize − DataOffset) is dropped
	// (ReasmNoFrame): its inner packet would not fit a frame on the
	// plaintext side either. Fragments of one packet must arrive on one
	// queue (NICs hash fragments by addresses only). Reassembled packets
	// that are not ESP are not handed back to the kernel: IKE behind the
	// non-ESP marker goes to Control (dropped without it), UDP to other
	// ports is dropped by the SA processor (DropNotESP); an IKE daemon
	// behind this engine should use IKEv2 fragmentation (RFC 7383) so
	// that IKE is never IP-fragmented. Nil: fragments pass to the kernel,
	// which cannot decrypt them (see package bpf).
	Reassembly *reasm.Config

	// Socket tuning (engine_tuning.go): what decides whether a burst
	// that arrives while a worker is descheduled is kept or dropped by
	// the kernel (KernelStats RxRingFull, RxFillRingEmptyDescs).

	// RXSize and TXSize are the RX and TX ring sizes of every engine
	// socket (0: EngineRXSize, EngineTXSize). Powers of two up to
	// MaxRingSize. The fill and completion rings are UMEM.FillSize and
	// UMEM.CompletionSize (0 in an EngineConfig: EngineFillSize —
	// DefaultRingSize when UMEM.NumFrames is set below EngineFillSize —
	// and EngineTXSize).
	RXSize, TXSize int
	// BusyPoll turns preferred busy polling on for every engine socket
	// (zero value: off); see BusyPoll.
	BusyPoll BusyPoll
}

func (c EngineConfig) normalize() (EngineConfig, error) {
	bad := func(format string, args ...any) (EngineConfig, error) {
		return EngineConfig{}, fmt.Errorf("%w: %s", ErrInvalidConfig, fmt.Sprintf(format, args...))
	}
	if c.Processor == nil {
		return bad("engine needs a Processor")
	}
	if c.Queues == 0 {
		c.Queues = 1
	}
	if c.Queues < 0 || c.Queues > bpf.MaxQueues {
		return bad("Queues %d", c.Queues)
	}
	if c.Workers == 0 {
		c.Workers = c.Queues
	}
	if c.Workers < 0 || c.Processor.Workers() < c.Workers {
		return bad("Processor has %d workers for %d engine workers", c.Processor.Workers(), c.Workers)
	}
	if c.BatchSize == 0 {
		c.BatchSize = DefaultBatch
	}
	if c.BatchSize < 1 || c.BatchSize > MaxBatch {
		return bad("BatchSize %d out of range 1..%d", c.BatchSize, MaxBatch)
	}
	if c.MultiBuffer && c.Processor.Concurrency() != sa.Shared {
		return bad("MultiBuffer needs the Shared concurrency mode")
	}
	if c.MultiBuffer && c.BatchSize < 18 {
		return bad("MultiBuffer needs a BatchSize of at least 18, not %d", c.BatchSize)
	}
	if c.MultiBuffer && (c.Attach == bpf.AttachNative || c.Mode == ModeZeroCopy) {
		return bad("MultiBuffer needs generic XDP attach and copy mode (the steering program reads the first buffer only)")
	}
	if c.MultiBuffer {
		c.Attach = bpf.AttachGeneric
	}
	st, err := resolveSteering(&c)
	if err != nil {
		return EngineConfig{}, err
	}
	c.Steering = st
	if c.SpreadChunk != 0 && (c.Steering != SteerSpread || c.SpreadChunk < 0 || c.SpreadChunk > bpf.MaxSpreadChunk ||
		c.SpreadChunk&(c.SpreadChunk-1) != 0) {
		return bad("SpreadChunk %d (steering %v)", c.SpreadChunk, c.Steering)
	}
	if c.IdleSpins == 0 {
		c.IdleSpins = 64
	}
	if c.ClampMSS != 0 && (c.ClampMSS < 64 || c.ClampMSS > 65535) {
		return bad("ClampMSS %d out of range 64..65535", c.ClampMSS)
	}
	if c.ICMPSource4.IsValid() && !c.ICMPSource4.Is4() {
		return bad("ICMPSource4 %v is not an IPv4 address", c.ICMPSource4)
	}
	if c.ICMPSource6.IsValid() && (!c.ICMPSource6.Is6() || c.ICMPSource6.Is4In6()) {
		return bad("ICMPSource6 %v is not an IPv6 address", c.ICMPSource6)
	}
	if c.ICMPRate == 0 {
		c.ICMPRate = 100
	}
	if c.ICMPBurst == 0 {
		c.ICMPBurst = 20
	}
	if c.ICMPRate < 0 || c.ICMPBurst < 0 {
		return bad("ICMPRate %d, ICMPBurst %d", c.ICMPRate, c.ICMPBurst)
	}
	for _, cpu := range c.CPUs {
		if cpu < 0 {
			return bad("CPU %d", cpu)
		}
	}
	var ports []*Port
	switch {
	case c.CipherPort != nil && !c.Cipher.isZero():
		return bad("engine takes a Cipher interface or a CipherPort, not both")
	case c.CipherPort == nil && c.Cipher.isZero():
		return bad("engine needs a Cipher interface or a CipherPort")
	case c.CipherPort == nil:
		ports = append(ports, &c.Cipher)
	}
	switch {
	case c.Plain != nil && c.PlainPort != nil:
		return bad("engine takes a Plain interface or a PlainPort, not both")
	case c.PlainPort != nil && c.Deliver != nil:
		return bad("engine takes a PlainPort or a Deliver function, not both")
	case c.Plain != nil:
		if len(c.ProtectedPrefixes) == 0 {
			return bad("a Plain port needs ProtectedPrefixes")
		}
		ports = append(ports, c.Plain)
	case c.PlainPort == nil && c.Deliver == nil:
		return bad("engine needs a Plain port, a PlainPort or a Deliver function")
	}
	for _, p := range ports {
		if p.Name == "" && p.Ifindex <= 0 {
			return bad("port needs an interface name or index")
		}
		if len(p.NextHop) != 6 {
			return bad("port %s: NextHop %v is not a 6-byte MAC", p.Name, p.NextHop)
		}
		if p.MAC != nil && len(p.MAC) != 6 {
			return bad("port %s: MAC %v is not a 6-byte MAC", p.Name, p.MAC)
		}
		if p.VLAN < 0 || p.VLAN > MaxVLAN {
			return bad("port %s: VLAN %d out of range 0..%d", p.Name, p.VLAN, MaxVLAN)
		}
	}
	if err := c.normalizeTuning(); err != nil {
		return EngineConfig{}, err
	}
	if c.UMEM.NumFrames == 0 {
		// A port of the caller's holds at most a batch per worker: the
		// AF_XDP side's rings are the bigger of the two, so an engine
		// with no interface at all sizes its UMEM as one with one.
		c.UMEM.NumFrames = engineFrames(max(1, len(ports)), c.Queues, c.socketsPerQueue(), c.Workers, c.UMEM.FillSize, c.RXSize, c.TXSize)
	}
	u, err := c.UMEM.normalize()
	if err != nil {
		return EngineConfig{}, err
	}
	c.UMEM = u
	return c, nil
}

// EngineFrames is the default UMEM size of an Engine with ports
// interfaces (1 or 2) of queues queues, the given fill ring size (0:
// EngineFillSize) and the default RX and TX rings (EngineRXSize,
// EngineTXSize): enough frames for every socket's fill ring, RX ring and
// TX ring to be full at once, so that no socket runs out of frames to
// receive into because others hold them (a frame received on one side is
// transmitted on the other). With the defaults and two interfaces that is
// 20480 frames, 80 MiB per queue pair. An engine with other RX or TX
// sizes counts with those.
func EngineFrames(ports, queues, fillSize int) int {
	return engineFrames(ports, queues, 1, queues, fillSize, EngineRXSize, EngineTXSize)
}

// engineFrames is EngineFrames for perQueue sockets on each queue (one
// per worker with SteerSPI and SteerSpread) and workers transmitting
// workers: a fill ring of fillSize per queue, an RX ring of rxSize per
// socket, a TX ring of txSize per worker, on each port.
func engineFrames(ports, queues, perQueue, workers, fillSize, rxSize, txSize int) int {
	if fillSize <= 0 {
		fillSize = EngineFillSize
	}
	n := ports * (queues*fillSize + queues*perQueue*rxSize + workers*txSize)
	return min(max(n, DefaultNumFrames), MaxNumFrames)
}

// MaxFrameLen is the longest Ethernet frame (header and tags included)
// an engine with UMEM configuration cfg receives: what a UMEM frame holds
// after the kernel's and the configured headroom (zero values: the
// defaults). Engine.Start fails with ErrMTU when an interface's MTU
// needs longer frames.
func MaxFrameLen(cfg UMEMConfig) int {
	if c, err := cfg.normalize(); err == nil {
		cfg = c
	}
	return cfg.FrameSize - cfg.Headroom - KernelHeadroom
}

// EngineWorkerStats are the counters of one engine worker.
type EngineWorkerStats struct {
	// Worker is the engine worker (and sa.Processor worker); Queue the
	// queue it transmits on.
	Worker, Queue int
	// CipherRX: frames received on the ciphertext side; Decrypted:
	// inner packets sent on the plaintext side or delivered.
	CipherRX, Decrypted uint64
	// PlainRX: frames received on the plaintext side; Encrypted: ESP
	// packets sent on the ciphertext side.
	PlainRX, Encrypted uint64
	// Bypassed: packets sent unchanged after an SPD bypass.
	Bypassed uint64
	// Control: control packets passed to the Control callback (or
	// dropped without one: ControlDropped).
	Control, ControlDropped uint64
	// SADrops: packets the SA processor dropped (by reason in
	// Processor.Stats and the SAs' Stats). MTUDrops is the DropMTU part
	// of it; with ICMPErrors each may have become an ICMP
	// "fragmentation needed" / "packet too big" (ICMPSent).
	SADrops, MTUDrops uint64
	// MSSClamped: TCP SYN and SYN-ACK segments whose MSS option was
	// lowered to ClampMSS (both directions).
	MSSClamped uint64
	// TTLExpired: packets dropped because DecrementTTL found their TTL
	// or hop limit expiring (both directions).
	TTLExpired uint64
	// ICMPSent: ICMP errors sent back (ICMPErrors). ICMPRateLimited:
	// errors the per-worker token bucket suppressed. ICMPNotSent:
	// errors not allowed (about an ICMP error, a non-first fragment, a
	// non-unicast packet, an IPv4 packet without DF) or impossible (no
	// ICMPSource of the family, a malformed packet, no headroom).
	ICMPSent, ICMPRateLimited, ICMPNotSent uint64
	// NotIP: frames dropped because they carry no IPv4/IPv6 packet.
	NotIP uint64
	// VLANDrops: frames dropped because their 802.1Q tag (or its
	// absence) is not their port's VLAN (Port.VLAN).
	VLANDrops uint64
	// NoRoom: results that left no room for the Ethernet header.
	NoRoom uint64
	// TXFull: packets dropped because a TX ring stayed full.
	TXFull uint64
	// Fragmented: IPv4 packets fragmented before encryption
	// (FragmentInner), into Fragments fragments. FragmentFailed: packets
	// that needed it but could not be (IPv4 options, more than
	// MaxFragments fragments, no free frame), dropped.
	Fragmented, Fragments, FragmentFailed uint64
	// JumboRX: frames received as a chain (MultiBuffer) and gathered;
	// JumboTX: packets sent as a chain. JumboDrops: chains dropped (too
	// long, more jumbo packets in a batch than buffers, no free frames).
	JumboRX, JumboTX, JumboDrops uint64
	// HandedOff: packets given to another worker (Sharded, PerCPU).
	HandedOff uint64
	// Sleeps: times the worker blocked in poll(2).
	Sleeps uint64
	// Batches: non-empty batches the worker took from its ports and its
	// Send queue (packets per batch: (CipherRX + PlainRX + Sent) /
	// Batches, hand-offs aside).
	Batches uint64
	// SendWakes: eventfd writes Engine.Send made to wake the worker
	// (Send wakes it only while it sleeps or is about to).
	SendWakes uint64
	// CPU is the CPU time the worker's thread used since the worker
	// started (Linux: the thread's sum_exec_runtime), for packets per
	// CPU-second: what scaling over cores costs when the machine has
	// fewer free CPUs than workers.
	CPU time.Duration
	// Sent: packets queued by Engine.Send; SendFull: packets Send could
	// not queue (no free frame, queue full, bad length).
	Sent, SendFull uint64
	// Reassembly: the worker's outer reassembly counters (with
	// EngineConfig.Reassembly); ReasmNoFrame: reassembled packets
	// dropped because they do not fit a frame.
	Reassembly   reasm.Stats
	ReasmNoFrame uint64
}

// EngineStats is a snapshot of an Engine's counters. Per-SA counters
// are in the SAD (sa.SA.Stats).
type EngineStats struct {
	Workers   []EngineWorkerStats
	Processor sa.ProcessorStats
	// CipherProgram and PlainProgram are the XDP programs' counters.
	CipherProgram, PlainProgram bpf.Stats
	// CipherSockets and PlainSockets are the sockets' counters, by
	// queue.
	CipherSockets, PlainSockets []Stats
	// CipherPort is EngineConfig.CipherPort's counters (EnginePort.Stats;
	// nil without it).
	CipherPort *PortStats `json:",omitempty"`
	// PlainPort is EngineConfig.PlainPort's counters (EnginePort.Stats;
	// nil without one).
	PlainPort *PortStats `json:",omitempty"`
	Frames    FrameCounts
	// UnprotectedDrops are the Cipher program's clear-text discards by
	// tunnel index (bpf.Program.UnprotectedDrops; only non-zero ones),
	// LastUnprotected the latest of them (nil: none).
	UnprotectedDrops map[int]uint64         `json:",omitempty"`
	LastUnprotected  *bpf.UnprotectedPacket `json:",omitempty"`
}

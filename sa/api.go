package sa

import (
	"errors"
	"net/netip"
	"sync/atomic"
	"time"

	"github.com/espxdp/espxdp/esp"
)

// Direction says whether an SA protects traffic we send (Out) or
// traffic we receive (In). SAs are unidirectional (RFC 4301 §4.1).
type Direction uint8

const (
	// In is an inbound SA: looked up by SPI, decrypts, checks anti-replay.
	In Direction = iota + 1
	// Out is an outbound SA: encrypts, assigns sequence numbers.
	Out
)

// Replay window sizes (Config.ReplayWindow).
const (
	// DefaultReplayWindow is the window used when Config.ReplayWindow is 0.
	DefaultReplayWindow = 1024
	// MaxReplayWindow is the largest window accepted; larger values are
	// rejected by New, never truncated.
	MaxReplayWindow = 65536
	// ReplayDisabled turns anti-replay off (RFC 4303 §3.4.3 allows the
	// receiver to do so). Duplicates are then accepted; the highest
	// sequence number is still tracked so that ESN inference works.
	ReplayDisabled = -1
)

// Unlimited is the value of a Remaining field whose lifetime has no limit.
const Unlimited = -1

// Lifetime limits an SA by bytes, packets and time since its creation
// (RFC 4301 §4.4.2.1). A zero field means no limit on that dimension.
// Bytes count the protected payload: the inner (plaintext) packet as it
// enters Outbound or leaves Inbound.
type Lifetime struct {
	// Bytes limits the plaintext bytes protected.
	Bytes uint64 `json:"bytes,omitempty" yaml:"bytes,omitempty"`
	// Packets limits the packets protected.
	Packets uint64 `json:"packets,omitempty" yaml:"packets,omitempty"`
	// Time limits the time since Config.Created.
	Time time.Duration `json:"time,omitempty" yaml:"time,omitempty"`
}

// IsZero reports whether l sets no limit at all.
func (l Lifetime) IsZero() bool { return l == Lifetime{} }

// PortRange is an inclusive range of TCP/UDP/SCTP ports. The zero value
// matches any port (and packets without ports).
type PortRange struct {
	// Lo is the first port of the range.
	Lo uint16 `json:"lo" yaml:"lo"`
	// Hi is the last port of the range (≥ Lo).
	Hi uint16 `json:"hi" yaml:"hi"`
}

// Selector is a traffic selector (RFC 4301 §4.4.1.1) as it appears in the
// packets the SA or policy carries: for an outbound policy Src is our
// side; for an inbound SA's Selectors, Src is the peer's side (the inner
// source address of packets we receive). Zero prefixes, Proto 0 and zero
// port ranges match anything.
type Selector struct {
	// Src is the prefix of the packets' source address.
	Src netip.Prefix `json:"src,omitzero" yaml:"src,omitempty"`
	// Dst is the prefix of the packets' destination address.
	Dst netip.Prefix `json:"dst,omitzero" yaml:"dst,omitempty"`
	// Proto is the IP protocol (next header); 0 matches any.
	Proto uint8 `json:"proto,omitempty" yaml:"proto,omitempty"`
	// SrcPorts is the range of source ports (TCP, UDP, SCTP).
	SrcPorts PortRange `json:"src_ports,omitzero" yaml:"src_ports,omitempty"`
	// DstPorts is the range of destination ports (TCP, UDP, SCTP).
	DstPorts PortRange `json:"dst_ports,omitzero" yaml:"dst_ports,omitempty"`
}

// Config describes one SA. Keys are copied by New; the caller may wipe
// its slices afterwards. Config's String, Format, GoString, LogValue and
// MarshalJSON redact Key and AuthKey.
type Config struct {
	// Name is a free-form label shown by Stats and events.
	Name string
	// SPI is the Security Parameter Index; 0 is reserved and rejected.
	SPI uint32
	// Direction is In or Out.
	Direction Direction
	// Mode is esp.Tunnel or esp.Transport.
	Mode esp.Mode
	// Local and Remote are the SA endpoints, ours and the peer's: the
	// outer source and destination of outbound tunnel-mode packets, and
	// the outer destination and source an inbound SA accepts (others
	// drop with DropOuter; see FloatRemote). Required in tunnel mode
	// (same family); optional in transport mode, where only what is set
	// is checked.
	Local, Remote netip.Addr
	// UDPEncap enables ESP-in-UDP (RFC 3948, NAT-T); the ports default
	// to 4500. An inbound SA accepts only the encapsulation it is
	// configured with (else DropEncap), and with UDPEncap only packets
	// from RemotePort (unless FloatRemote).
	UDPEncap bool
	// LocalPort and RemotePort are the UDP ports of ESP-in-UDP (0:
	// 4500); RemotePort can change with SA.Update after a NAT rebinding.
	LocalPort, RemotePort uint16
	// Transform is the ESP transform (esp.ParseTransform).
	Transform esp.Transform
	// Key is the encryption key, salt or nonce included where the RFC
	// has one (esp.Config.Key).
	Key []byte
	// AuthKey is the integrity key of non-AEAD transforms
	// (esp.Config.AuthKey).
	AuthKey []byte
	// ESN enables 64-bit extended sequence numbers.
	ESN bool
	// ReplayWindow is the anti-replay window in packets (inbound SAs):
	// 0 means DefaultReplayWindow, ReplayDisabled turns the check off,
	// 1..MaxReplayWindow sets the size.
	ReplayWindow int
	// SoftLifetime raises an EventSoftExpire (time to rekey);
	// HardLifetime stops the SA (EventHardExpire, drops counted as
	// DropExpired). Each must be ≥ the soft limit it pairs with.
	SoftLifetime, HardLifetime Lifetime
	// PathMTU is the MTU towards Remote; 0 means unknown (no MTU check).
	// Outbound packets larger than the resulting plaintext MTU are dropped
	// with DropMTU and the MTU reported in Packet.MTU.
	PathMTU int
	// TTL of the outer header in tunnel mode (0: 64).
	TTL uint8
	// DF sets Don't Fragment on an outer IPv4 header in tunnel mode.
	DF bool
	// TFCPadTo: see esp.Config.TFCPadTo.
	TFCPadTo int
	// Selectors, when not empty, restrict the inner packets this SA
	// carries: an inbound packet whose decapsulated inner packet matches
	// none of them is dropped with DropPolicy (RFC 4301 §5.2); an
	// outbound packet likewise.
	Selectors []Selector
	// With PinWorker set, Worker (modulo the number of workers) owns the
	// SA in the Sharded and PerCPU concurrency modes, e.g. the worker of
	// the NIC queue that receives it. Without, the owner is a hash of the
	// SPI (Processor.OwnerOf).
	Worker int
	// PinWorker makes Worker choose the owner; see Worker.
	PinWorker bool
	// Created is the SA's creation time, from which time lifetimes run;
	// zero means time.Now(). Tests use it with a fake clock.
	Created time.Time

	// InitialSeq (outbound) is the last sequence number already used
	// under this key: the first packet is sent with InitialSeq+1. Set it
	// when re-creating an SA after a restart (to the persisted
	// SeqLimit) so that no sequence number is sent twice.
	InitialSeq uint64
	// Replay (inbound) is the anti-replay state to start from, as
	// exported by SA.ReplayState of the SA this one takes over from; nil
	// starts empty. New copies it.
	Replay *ReplayState
	// SeqLimit (outbound) is the highest sequence number the SA may use;
	// 0 means no limit. See SA.SetSeqLimit. Inbound SAs ignore it.
	SeqLimit uint64
	// ESPOnly marks an SA used only with Packet.ESPOnly, over a UDP
	// socket that adds the IP and UDP headers: Local and Remote become
	// optional in tunnel mode (when set they give the address family for
	// the MTU; the default is IPv4) and the plaintext MTU accounts for
	// the 8-byte UDP header as with UDPEncap. Outbound packets without
	// Packet.ESPOnly are dropped with DropMalformed (there is no outer
	// header to build).
	ESPOnly bool
	// Child groups the SAs of one IKE child SA (both directions, and
	// per-CPU siblings) for SAD.AddChild, SAD.DeleteChild and SAD.Child;
	// 0 means none.
	Child ChildID
	// FloatRemote is for NAT-T peers whose public address or port may
	// change (RFC 7296 §2.23, RFC 3948): an inbound SA accepts packets
	// from any outer source, and when an authenticated packet that
	// advances the replay window comes from another address or port than
	// the last known one (initially Remote and RemotePort) it raises
	// EventEndpointChanged once per new endpoint. The control plane then
	// moves the outbound SA. Without it, an inbound SA drops packets
	// whose outer source is not Remote (or, with UDPEncap, whose source
	// port is not RemotePort) with DropOuter.
	FloatRemote bool
}

// State is the life-cycle state of an SA.
type State uint8

const (
	// StateActive: usable.
	StateActive State = iota
	// StateSoftExpired: a soft lifetime was reached; still usable.
	StateSoftExpired
	// StateExpired: a hard lifetime or sequence overflow; packets drop.
	StateExpired
	// StateDeleted: removed from its SAD (or closed); keys are wiped.
	StateDeleted
)

// DropReason says why a packet was dropped. The zero value DropNone means
// it was not.
type DropReason uint8

const (
	// DropNone: not dropped.
	DropNone DropReason = iota
	// DropNoSA: inbound, unknown SPI; outbound, the SA was deleted.
	DropNoSA
	// DropReplay: anti-replay, a duplicate or too old.
	DropReplay
	// DropAuth: the ICV did not verify.
	DropAuth
	// DropPadding: bad padding or pad length.
	DropPadding
	// DropMalformed: inconsistent header fields, a bad inner packet, or
	// a packet of the wrong kind for the SA (Packet.ESPOnly).
	DropMalformed
	// DropTruncated: shorter than its headers.
	DropTruncated
	// DropExpired: the SA hard-expired (lifetime).
	DropExpired
	// DropSeqOverflow: the sequence number would wrap (no ESN).
	DropSeqOverflow
	// DropMTU: an outbound packet larger than the plaintext MTU.
	DropMTU
	// DropPolicy: the inner packet is outside the SA's selectors.
	DropPolicy
	// DropNoPolicy: outbound, no SPD entry and no tunnel.
	DropNoPolicy
	// DropDiscard: an SPD discard policy matched.
	DropDiscard
	// DropAcquire: an SPD protect policy or a route-based tunnel has no
	// usable SA yet (acquire raised).
	DropAcquire
	// DropFragment: an outer IP fragment (not reassembled).
	DropFragment
	// DropNotESP: neither ESP nor NAT-T (other protocol or port).
	DropNotESP
	// DropDummy: an authenticated dummy packet (next header 59).
	DropDummy
	// DropNoRoom: the buffer lacks headroom or tailroom.
	DropNoRoom
	// DropTooBig: the result would exceed 65535 bytes.
	DropTooBig
	// DropQueueFull: Sharded mode, the owner's hand-off queue is full.
	DropQueueFull
	// DropInternal: anything else (e.g. a wiped cipher race).
	DropInternal
	// DropSeqLimit: outbound, the next sequence number is past
	// SA.SeqLimit (the reservation was not raised in time).
	DropSeqLimit
	// DropEncap: inbound, ESP-in-UDP for an SA without UDPEncap, or bare
	// ESP for one with it.
	DropEncap
	// DropOuter: inbound, the outer addresses or source port are not the
	// SA's Local, Remote and RemotePort.
	DropOuter
	// NumDropReasons is the number of reasons, for arrays.
	NumDropReasons
)

// DropCounts holds one counter per DropReason. It marshals to JSON as an
// object keyed by the reasons' names, leaving out zeros.
type DropCounts [NumDropReasons]uint64

// EventKind is the type of a control-plane event.
type EventKind uint8

const (
	// EventSoftExpire: a soft lifetime was reached; rekey now.
	EventSoftExpire EventKind = iota + 1
	// EventHardExpire: a hard lifetime was reached; the SA stopped.
	EventHardExpire
	// EventSeqOverflow: an outbound SA without ESN used sequence number
	// 2^32-1; it stopped (RFC 4303 §3.3.3).
	EventSeqOverflow
	// EventAcquire: an outbound packet matched a protect policy that has
	// no usable SA; an IKE daemon should negotiate one (rate-limited per
	// policy, see SPDOptions.AcquireInterval). For a route-based Tunnel
	// without a usable outbound SA, Tunnel and TunnelName are set instead
	// of Policy (rate-limited per tunnel, see
	// ProcessorOptions.AcquireInterval).
	EventAcquire
	// EventSeqLimit: an outbound SA's sequence counter passed the
	// low-water mark of its SeqLimit; persist the next reservation and
	// call SA.SetSeqLimit. Raised once per limit set.
	EventSeqLimit
	// EventDeleted: the SA was deleted from its SAD (SAD.Delete,
	// DeleteSA, DeleteChild); its keys are wiped. Delivered
	// synchronously from the deleting goroutine, outside the SAD's and
	// the tunnel's locks.
	EventDeleted
	// EventEndpointChanged: an authenticated packet of an inbound SA with
	// Config.FloatRemote came from a new outer source; Endpoint holds it
	// (port 0 without UDPEncap).
	EventEndpointChanged
)

// Limit names the lifetime dimension that triggered an expire event.
type Limit uint8

const (
	// LimitNone: no lifetime (Expire, forced by the control plane).
	LimitNone Limit = iota
	// LimitBytes: the byte lifetime.
	LimitBytes
	// LimitPackets: the packet lifetime.
	LimitPackets
	// LimitTime: the time lifetime.
	LimitTime
	// LimitSequence: the sequence number space (overflow) or the
	// sequence reservation (EventSeqLimit).
	LimitSequence
)

// Event is sent to an EventFunc. For SA events SA, SPI, Name and
// Direction are set; for EventAcquire Policy and Packet describe the
// packet that triggered it.
type Event struct {
	// Kind is the type of event.
	Kind EventKind `json:"kind"`
	// Time is when it happened (the processor's or SAD's clock).
	Time time.Time `json:"time"`
	// SA is the SA of an SA event.
	SA *SA `json:"-"`
	// SPI is the SA's SPI.
	SPI uint32 `json:"spi,omitempty"`
	// Name is the SA's Config.Name.
	Name string `json:"name,omitempty"`
	// Direction is the SA's direction.
	Direction Direction `json:"direction,omitempty"`
	// Limit is the lifetime dimension that expired the SA.
	Limit Limit `json:"limit,omitempty"`
	// Policy is the SPD entry of an EventAcquire.
	Policy *Policy `json:"-"`
	// Packet, for EventAcquire, holds the packet's addresses, protocol
	// and ports (addresses as /32 or /128 prefixes).
	Packet Selector `json:"packet,omitzero"`
	// Tunnel and TunnelName: the tunnel of an acquire event raised for a
	// route-based tunnel (or a policy's tunnel).
	Tunnel     *Tunnel `json:"-"`
	TunnelName string  `json:"tunnel,omitempty"`
	// Endpoint: EventEndpointChanged's new outer source address and port.
	Endpoint netip.AddrPort `json:"endpoint,omitzero"`
	// Child is the SA's Config.Child (0: none).
	Child ChildID `json:"child,omitempty"`
}

// EventFunc receives events. It is called synchronously from a worker
// (or from SAD.Sweep) and must not block; see EventChannel.
type EventFunc func(Event)

// Remaining is how much of a lifetime is left; Unlimited (-1) marks a
// dimension without limit.
type Remaining struct {
	// Bytes left before the limit.
	Bytes int64 `json:"bytes"`
	// Packets left before the limit.
	Packets int64 `json:"packets"`
	// Seconds left before the limit, rounded up.
	Seconds int64 `json:"seconds"`
}

// Stats is a snapshot of an SA's counters, like a router's
// "show crypto ipsec sa". Encaps, Encrypt and Digest are equal for ESP
// (one step does all three) but are reported separately for familiarity;
// Verify ≥ Decrypt ≥ Decaps (a packet can verify and then fail padding,
// the replay update or the inner-packet checks).
type Stats struct {
	// Name is Config.Name.
	Name string `json:"name"`
	// SPI is the SA's SPI.
	SPI uint32 `json:"spi"`
	// Child is Config.Child (0: none).
	Child ChildID `json:"child,omitempty"`
	// Direction is In or Out.
	Direction Direction `json:"direction"`
	// Mode is "tunnel" or "transport".
	Mode string `json:"mode"`
	// Transform is the transform's name (esp.Transform.Name).
	Transform string `json:"transform"`
	// Local is the local endpoint (Config.Local).
	Local netip.Addr `json:"local,omitzero"`
	// Remote is the peer endpoint, as last set by New or SA.Update.
	Remote netip.Addr `json:"remote,omitzero"`
	// UDPEncap reports ESP-in-UDP (NAT-T).
	UDPEncap bool `json:"udp_encap"`
	// LocalPort is the local UDP port of NAT-T (0 without UDPEncap).
	LocalPort uint16 `json:"local_port,omitempty"`
	// RemotePort is the peer's UDP port of NAT-T (0 without UDPEncap).
	RemotePort uint16 `json:"remote_port,omitempty"`
	// ESN reports 64-bit extended sequence numbers.
	ESN bool `json:"esn"`
	// State is the life-cycle state.
	State State `json:"state"`
	// ReplayWindow is the anti-replay window size, as grown by a
	// Processor with several workers (ProcessorOptions.ReplayWindowMax);
	// 0: disabled or outbound.
	ReplayWindow int `json:"replay_window"`
	// Seq is, outbound, the last sequence number used; inbound, the
	// highest authenticated sequence number received.
	Seq uint64 `json:"seq"`

	// EncapsPkts counts packets encapsulated (outbound, sent OK).
	EncapsPkts uint64 `json:"encaps_pkts"`
	// EncryptPkts equals EncapsPkts (ESP encrypts in the same step).
	EncryptPkts uint64 `json:"encrypt_pkts"`
	// DigestPkts equals EncapsPkts (ESP computes the ICV in the same
	// step).
	DigestPkts uint64 `json:"digest_pkts"`
	// EncapsBytes counts the plaintext bytes of EncapsPkts.
	EncapsBytes uint64 `json:"encaps_bytes"`
	// DecapsPkts counts packets decapsulated and delivered (inbound).
	DecapsPkts uint64 `json:"decaps_pkts"`
	// DecryptPkts counts packets decrypted (ICV verified).
	DecryptPkts uint64 `json:"decrypt_pkts"`
	// VerifyPkts counts packets whose ICV verified.
	VerifyPkts uint64 `json:"verify_pkts"`
	// DecapsBytes counts the plaintext bytes of DecapsPkts.
	DecapsBytes uint64 `json:"decaps_bytes"`

	// Drops counts the SA's dropped packets by reason.
	Drops DropCounts `json:"drops"`

	// Age is the time since Config.Created.
	Age time.Duration `json:"age_ns"`
	// SoftRemaining is what is left of the soft lifetime.
	SoftRemaining Remaining `json:"soft_remaining"`
	// HardRemaining is what is left of the hard lifetime.
	HardRemaining Remaining `json:"hard_remaining"`
	// PathMTU is the path MTU (0: unknown).
	PathMTU int `json:"path_mtu"`
	// PlaintextMTU is the largest packet that fits PathMTU after
	// encapsulation (0: no check).
	PlaintextMTU int `json:"plaintext_mtu"`
	// SeqLimit is the outbound sequence reservation (0: none).
	SeqLimit uint64 `json:"seq_limit,omitempty"`
	// LastUsed is when the SA last processed a packet, to about a
	// second; zero if never.
	LastUsed time.Time `json:"last_used,omitzero"`
}

// Errors.
var (
	// ErrInvalidConfig is wrapped by every *ConfigError.
	ErrInvalidConfig = errors.New("sa: invalid config")
	// ErrExists: an SA with that SPI and direction is already in the SAD.
	ErrExists = errors.New("sa: SPI already in use")
	// ErrNotFound: no SA with that SPI and direction in the SAD.
	ErrNotFound = errors.New("sa: SA not found")
	// ErrClosed: the SA was deleted or closed and cannot be reused.
	ErrClosed = errors.New("sa: SA closed")
)

// ConfigError reports an invalid Config field. It matches
// ErrInvalidConfig with errors.Is and unwraps to the underlying esp
// error (e.g. esp.ErrKeySize) when there is one.
type ConfigError struct {
	// Field names the Config field, e.g. "ReplayWindow", "Key".
	Field string
	// Reason says what is wrong with it.
	Reason string
	// Err is the underlying error; may be nil.
	Err error
}

// Concurrency selects how a Processor's workers share SAs. See the
// package documentation for the trade-offs.
type Concurrency uint8

const (
	// Shared: any worker processes any SA. Each SA's replay window is
	// guarded by a mutex; sequence numbers and counters are atomic.
	Shared Concurrency = iota
	// Sharded: every SA is owned by exactly one worker (OwnerOf). A
	// worker that receives a packet for an SA it does not own hands it to
	// the owner's queue (Verdict HandedOff); the owner picks it up with
	// Worker.Drain. Replay windows need no lock.
	Sharded
	// PerCPU: RFC 9611 style. A Tunnel holds one outbound SA per worker
	// and each worker encrypts with its own; inbound SAs are owned as in
	// Sharded (by Config.Worker when pinned, else by hash of the SPI).
	PerCPU
	// Ordered: the worker that receives a batch does each SA's serial
	// work (replay check and update, sequence numbers) in arrival order;
	// the AEAD work of each run of packets is spread over all workers
	// (idle workers take a share in Worker.Drain), and the batch comes
	// back in the order it went in. See the package documentation.
	Ordered
)

// Verdict is the outcome for one packet of a batch.
type Verdict uint8

const (
	// VerdictNone: not processed (the zero value).
	VerdictNone Verdict = iota
	// VerdictOK: Buf[Off:Off+Len] now holds the result: the decrypted
	// inner packet (Inbound) or the complete outer ESP packet (Outbound).
	VerdictOK
	// VerdictDrop: dropped; Reason says why (and MTU for DropMTU).
	VerdictDrop
	// VerdictControl: not for the data plane: IKE behind the non-ESP
	// marker, or a NAT-keepalive. Pass it, unchanged, to the IKE daemon.
	VerdictControl
	// VerdictBypass: an SPD bypass policy matched; send it unchanged.
	VerdictBypass
	// VerdictHandedOff: Sharded/PerCPU mode queued the packet to its
	// owner worker, which now owns the buffer; the caller must not reuse
	// or free it (it comes back out of the owner's Worker.Drain).
	VerdictHandedOff
)

// Packet is one entry of a batch. The caller sets Buf, Off and Len (and
// optionally Tunnel and Meta); Inbound and Outbound set the rest and
// move Off/Len to the result. Buf is the whole buffer: the headroom
// Buf[:Off] and the tailroom Buf[Off+Len:] are used for in-place
// encapsulation (esp.MaxHeadroom and esp.MaxTailroom are always enough
// without TFC padding).
type Packet struct {
	// Buf is the whole buffer, head- and tailroom included.
	Buf []byte
	// Off and Len locate the packet (on return: the result) in Buf.
	Off, Len int
	// Tunnel, when set on an outbound packet, is the route-based binding
	// to use instead of the SPD. Inbound sets it to the tunnel of the SA
	// that matched (if the SA was added to one).
	Tunnel *Tunnel
	// Meta is carried through unchanged (e.g. an AF_XDP frame address).
	Meta uint64
	// ESPOnly is for embedders that carry ESP over a UDP socket (NAT-T
	// style, RFC 3948) and let the kernel handle IP and UDP. Inbound, the
	// data is a UDP payload as read from the socket: an ESP packet from
	// the SPI on, or IKE behind the non-ESP marker or a NAT-keepalive
	// (both VerdictControl). Outbound, the result is the ESP packet alone
	// (SPI to ICV), to write to the socket. Tunnel-mode SAs only: a
	// transport-mode SA needs the outer IP header, and drops such packets
	// with DropMalformed. Packet.Reset keeps it. Build such SAs with
	// Config.ESPOnly: no endpoints needed, UDP header counted in the MTU.
	ESPOnly bool

	// Verdict is the outcome.
	Verdict Verdict
	// Reason says why the packet was dropped (VerdictDrop).
	Reason DropReason
	// Dir is the direction the packet was processed in.
	Dir Direction
	// SA is the SA that processed it (nil if none matched).
	SA *SA
	// Policy is the SPD entry that matched an outbound packet, if any.
	Policy *Policy
	// MTU is the plaintext MTU when Reason is DropMTU (for ICMP
	// "fragmentation needed" / "packet too big").
	MTU int
}

// ProcessorOptions configures a Processor.
type ProcessorOptions struct {
	// Workers is the number of workers (goroutines the caller runs);
	// default 1.
	Workers int
	// Concurrency is the SA sharing mode.
	Concurrency Concurrency
	// SAD is required: inbound lookup by SPI.
	SAD *SAD
	// SPD, if set, selects the outbound SA for packets without a Tunnel.
	SPD *SPD
	// Tunnel, if set, is the default outbound binding for packets with
	// neither Packet.Tunnel nor a matching SPD entry.
	Tunnel *Tunnel
	// NATTPort is the UDP port of ESP-in-UDP; 0 means 4500.
	NATTPort uint16
	// QueueLen is the capacity of each hand-off queue between two workers
	// (Sharded and PerCPU); default 1024, rounded up to a power of two.
	QueueLen int
	// Clock returns the time; read once per batch (a coarse clock for
	// time lifetimes). Default time.Now.
	Clock func() time.Time
	// Events receives the EventAcquire of route-based tunnels without a
	// usable outbound SA; nil means the SAD's SADOptions.Events.
	Events EventFunc
	// AcquireInterval is the minimum time between two such events of one
	// tunnel; 0 means 1s.
	AcquireInterval time.Duration
	// ReplayWindowMax bounds the growth of replay windows with several
	// workers. Workers that share one SA's stream (Shared and Ordered
	// modes, or Sharded and PerCPU hand-offs) reorder it by up to what
	// they hold in flight, which can exceed the default window. So an
	// inbound SA whose Config.ReplayWindow is 0 (the default) has its
	// window doubled, up to this bound, when an authenticated packet
	// arrives more than a quarter of the window behind the right edge
	// (until it holds four times that delay); the
	// window never forgets what it recorded nor accepts a number it
	// rejected before (replay.Window.Grow). 0 means MaxReplayWindow,
	// ReplayDisabled turns growth off; with one worker windows never
	// grow. Explicitly sized windows never grow.
	ReplayWindowMax int
}

// ProcessorStats sums the per-worker counters of a Processor: packets in
// and out, and drops that no SA can own (unknown SPI, malformed outer
// headers, no policy, ...). SA-owned drops are in the SA's Stats.
type ProcessorStats struct {
	// InPkts counts packets given to Inbound.
	InPkts uint64 `json:"in_pkts"`
	// InOK counts inbound packets with VerdictOK.
	InOK uint64 `json:"in_ok"`
	// OutPkts counts packets given to Outbound.
	OutPkts uint64 `json:"out_pkts"`
	// OutOK counts outbound packets with VerdictOK.
	OutOK uint64 `json:"out_ok"`
	// Control counts VerdictControl packets (IKE, NAT-keepalives).
	Control uint64 `json:"control"`
	// Bypass counts VerdictBypass packets.
	Bypass uint64 `json:"bypass"`
	// HandedOff counts packets handed to their owner worker.
	HandedOff uint64 `json:"handed_off"`
	// Drops counts the drops no SA owns, by reason.
	Drops DropCounts `json:"drops"`
}

// Action is what an SPD policy does with a matching outbound packet.
type Action uint8

const (
	// Protect: encrypt with the policy's SA (or Tunnel).
	Protect Action = iota + 1
	// Bypass: send in clear (Verdict Bypass).
	Bypass
	// Discard: drop (DropDiscard).
	Discard
)

// Policy is one SPD entry (RFC 4301 §4.4.1). For Protect, set SA or
// Tunnel (Tunnel wins; it allows rekeying and per-CPU SAs); with
// neither, or with only expired SAs, matching packets raise
// EventAcquire and are dropped with DropAcquire.
type Policy struct {
	// Name is a free-form label.
	Name string
	// Selector is the traffic the policy applies to (Src: our side).
	Selector Selector
	// Action is what happens to matching packets.
	Action Action
	// SA is the outbound SA of a Protect policy without Tunnel.
	SA *SA
	// Tunnel is the binding of a Protect policy; it wins over SA.
	Tunnel *Tunnel

	lastAcquire atomic.Int64 // unix nanos of the last acquire event
}

// SPDOptions configures an SPD.
type SPDOptions struct {
	// Events receives EventAcquire.
	Events EventFunc
	// AcquireInterval is the minimum time between two acquire events of
	// one policy; 0 means 1s.
	AcquireInterval time.Duration
}

// SADOptions configures a SAD.
type SADOptions struct {
	// Events receives the lifetime events of the SAs in the SAD.
	Events EventFunc
	// Clock is used by Sweep when called with a zero time; default
	// time.Now.
	Clock func() time.Time
}

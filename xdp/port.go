package xdp

import (
	"github.com/espxdp/espxdp/sa"
)

// EnginePort is the packet I/O of one side of an Engine: where a worker
// receives the packets it processes and where it sends the results. The
// worker loop knows nothing else about a side, so a new kind of port (an
// embedder's UDP socket, an in-memory queue, a wireguard-go conn.Bind)
// needs no change to it. The engine's own sides are EnginePorts too: the
// AF_XDP sockets of EngineConfig.Cipher and EngineConfig.Plain, and
// EngineConfig.Deliver (a transmit-only port); EngineConfig.PlainPort
// plugs in a port of the caller's as the plaintext side (see
// ExampleEnginePort), EngineConfig.CipherPort one as the ciphertext side
// (whole ESP packets with their outer IP header; see the package
// documentation for a UDP socket port and its steering).
//
// Packets travel between ports in the frames of the engine's UMEM, as
// sa.Packets (Buf the whole frame, Buf[Off:Off+Len] the IP packet, Meta
// the frame's address): two AF_XDP ports hand frames over without a
// copy, and other ports copy into frames (PortEnv.Alloc) on receive and
// out of them on transmit. Whoever holds a frame gives it back exactly
// once: Receive hands its frames to the worker; Transmit hands the
// worker's frames to the port, which transmits them on an AF_XDP socket
// of the UMEM or returns them with PortEnv.Free.
//
// Worker w calls the methods with worker w from its own goroutine only
// (one OS thread), so a port keeps per-worker state without locks; no
// method may block, and none should allocate: they run per batch.
type EnginePort interface {
	// Bind is called by every Engine.Start, before any worker runs;
	// env is valid until Unbind. A port may be bound to one running
	// engine at a time.
	Bind(env PortEnv) error
	// Receive puts up to len(pkts) received IP packets, each in a UMEM
	// frame the worker then owns, into pkts and returns how many; 0
	// when it has none (it must not wait for any). It writes whole
	// sa.Packet values: Buf the frame, Buf[Off:Off+Len] the packet,
	// Meta the frame's address, the other fields zero. Each packet needs
	// PortEnv.Headroom bytes before it and PortEnv.Tailroom after it in
	// its frame: PortEnv.Alloc's frames have both.
	Receive(worker int, pkts []sa.Packet) int
	// Transmit takes the frames of pkts (IP packets, with at least
	// LinkHeadroom bytes free before Off) and sends the packets; the
	// frames are the port's from then on. It must not keep the slices
	// after returning frames with PortEnv.Free.
	Transmit(worker int, pkts []sa.Packet)
	// Maintain is the port's upkeep, called by worker before each
	// round of receives (idle false) and after a round that found no
	// packets (idle true: the time to push out transmissions batched
	// so far). It runs on every round, busy or idle: keep it cheap.
	Maintain(worker int, idle bool)
	// InFlight returns how many packets worker transmitted that the
	// port has not finished sending: while any are, the worker sleeps
	// briefly, and Stop waits (bounded) for none. It is called only
	// before the worker sleeps and while it stops. Ports that finish in
	// Transmit return 0.
	InFlight(worker int) int
	// PollFDs returns descriptors that poll(2) reports readable when
	// worker has packets to Receive; it is called once per worker at
	// Start. A port without any returns nil and calls PortEnv.Wake
	// instead. A worker calls Receive up to len(PollFDs) times (at
	// least once) per round.
	PollFDs(worker int) []int
	// Unbind is called by Engine.Stop after every worker stopped (and
	// by a failed Start after Bind).
	Unbind() error
	// Stats returns the port's counters (safe while workers run).
	Stats() PortStats
}

// PortStats are an EnginePort's counters.
type PortStats struct {
	// RX are packets received and handed to workers; TX packets
	// transmitted (or handed to a callback).
	RX, TX uint64
	// Drops are packets the port dropped itself (no free frame, too
	// long, a full queue, a write error).
	Drops uint64
	// UDP is a UDPPort's own counters (nil for other ports).
	UDP *UDPPortStats `json:",omitempty"`
}

// UDPPortStats are a UDPPort's own counters, in PortStats.UDP.
type UDPPortStats struct {
	// GSO and GRO tell whether the port uses UDP segmentation offload
	// on transmit (false after a fallback) and UDP GRO on receive.
	GSO, GRO bool
	// RXDatagrams are datagrams recvmmsg returned, RXSuper those of
	// them that were coalesced (a gso_size control message) and
	// RXSegments the packets split out of those.
	RXDatagrams, RXSuper, RXSegments uint64
	// TXDatagrams are datagrams sendmmsg sent, TXSuper those of them
	// that were super-datagrams (UDP_SEGMENT) and TXSegments the
	// packets they carried.
	TXDatagrams, TXSuper, TXSegments uint64
	// GSOFallbacks counts the kernel's refusals of GSO (after the first
	// the port sends without it).
	GSOFallbacks uint64
	// NonESP are non-ESP datagrams (IKE, keepalives) handed to
	// UDPPortConfig.NonESP.
	NonESP uint64
	// Drops by reason, received: DropNonESP and DropKeepalive (no
	// NonESP callback), DropEmpty (a datagram without payload),
	// DropTooLong (a packet longer than a frame takes), DropTruncated
	// (a datagram longer than a receive buffer), DropFamily (a source
	// of another address family); transmitted: DropNotUDP (not an
	// IPv4/UDP or IPv6/UDP packet of the port's family, or an outer
	// fragment), DropFull (the socket buffer was full), DropSendError
	// (the kernel refused the datagram).
	DropNonESP, DropKeepalive, DropEmpty, DropTooLong, DropTruncated, DropFamily uint64
	DropNotUDP, DropFull, DropSendError                                          uint64
}

// LinkHeadroom is how many bytes every packet a port transmits has free
// before it in its frame: room for an Ethernet header with an 802.1Q tag.
const LinkHeadroom = 18

// PortEnv is what an EnginePort gets from its engine at Bind.
type PortEnv struct {
	// UMEM is the engine's UMEM: every packet's frame belongs to it.
	UMEM *UMEM
	// Workers is the number of engine workers (worker indexes 0 to
	// Workers-1); BatchSize the most packets a worker asks for at once.
	Workers, BatchSize int
	// Headroom and Tailroom are what a received packet needs before and
	// after it in its frame, for ESP and outer headers and the ESP
	// trailer.
	Headroom, Tailroom int
	// Wake wakes worker from its sleep in poll(2); a port without
	// PollFDs calls it when it has packets for a worker that may be
	// asleep. Safe from any goroutine; it does not allocate.
	Wake func(worker int)
}

// MaxPacket is the longest IP packet that Alloc's frames take.
func (env *PortEnv) MaxPacket() int {
	if env.UMEM == nil {
		return 0
	}
	return env.UMEM.FrameSize() - env.UMEM.DataOffset() - env.Tailroom
}

// Alloc gives each of pkts a free UMEM frame, with room before and after
// for the engine (Off at the frame's data offset, Len 0, Meta the frame),
// and returns how many it could (the rest found no free frame). A port
// copies a received packet to Buf[Off:] and sets Len.
func (env *PortEnv) Alloc(pkts []sa.Packet) int {
	var ds [MaxBatch]Desc
	total := 0
	for total < len(pkts) {
		chunk := ds[:min(len(pkts)-total, MaxBatch)]
		k := env.UMEM.Alloc(chunk)
		for i, d := range chunk[:k] {
			buf, off := env.UMEM.Frame(d)
			pkts[total+i] = sa.Packet{Buf: buf, Off: off, Meta: d.Addr &^ uint64(env.UMEM.FrameSize()-1)}
		}
		total += k
		if k < len(chunk) {
			break
		}
	}
	return total
}

// Free returns the frames of pkts to the UMEM (a transmitting port's
// frames once it copied the packets out, a receiving port's unused
// ones). Packets not in a UMEM frame (a worker's jumbo buffers) are
// skipped.
func (env *PortEnv) Free(pkts []sa.Packet) {
	var ds [MaxBatch]Desc
	n := 0
	for i := range pkts {
		if isJumbo(pkts[i].Meta) {
			continue
		}
		ds[n] = Desc{Addr: pkts[i].Meta}
		n++
		if n == len(ds) {
			env.UMEM.Free(ds[:n])
			n = 0
		}
	}
	if n > 0 {
		env.UMEM.Free(ds[:n])
	}
}

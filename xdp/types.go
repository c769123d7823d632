package xdp

import (
	"errors"
	"fmt"
	"io"
	"unsafe"

	"github.com/espxdp/espxdp/esp"
)

// Sentinel errors. Errors returned by this package wrap one of these where
// it applies, together with the underlying system error; test with
// errors.Is.
var (
	// ErrInvalidConfig means a configuration value or an argument failed
	// validation, or the kernel rejected it (unknown interface or queue,
	// mismatching mode of a shared UMEM, ...).
	ErrInvalidConfig = errors.New("xdp: invalid configuration")
	// ErrNotSupported means the kernel, the driver or the platform lacks
	// a feature: AF_XDP itself, zero-copy on this driver, ring flags
	// (kernels before 5.4), or any AF_XDP at all outside Linux.
	ErrNotSupported = errors.New("xdp: not supported by this kernel, driver or platform")
	// ErrPermission means the kernel refused for lack of privileges
	// (AF_XDP sockets need CAP_NET_RAW; attaching programs CAP_NET_ADMIN
	// and CAP_BPF).
	ErrPermission = errors.New("xdp: operation not permitted")
	// ErrBusy means the interface queue already has an AF_XDP buffer pool
	// of another UMEM bound to it.
	ErrBusy = errors.New("xdp: interface queue busy")
	// ErrClosed means the UMEM, socket or forwarder was closed.
	ErrClosed = errors.New("xdp: closed")
	// ErrMTU means an Engine port's interface has an MTU whose full-size
	// frames do not fit the UMEM's frames (AF_XDP without multi-buffer
	// receives a frame into one UMEM frame, and the kernel drops larger
	// ones, counted only in its socket statistics). Lower the interface
	// MTU, or the UMEM headroom.
	ErrMTU = errors.New("xdp: interface MTU too large for the UMEM frames")
	// ErrFrameAccounting means CheckFrames found a frame owned twice, a
	// frame in a ring that the allocator believes is elsewhere, or counts
	// that do not add up: a frame was leaked or freed twice.
	ErrFrameAccounting = errors.New("xdp: frame accounting mismatch")
)

// Limits and defaults.
const (
	// KernelHeadroom is XDP_PACKET_HEADROOM, the headroom the kernel keeps
	// in front of every received packet on top of UMEMConfig.Headroom.
	KernelHeadroom = 256
	// DefaultFrameSize is the default UMEM frame (chunk) size.
	DefaultFrameSize = 4096
	// DefaultNumFrames is the default number of frames of a UMEM.
	DefaultNumFrames = 4096
	// DefaultHeadroom is the default UMEM headroom reserved in front of
	// received packets (in addition to KernelHeadroom).
	DefaultHeadroom = 256
	// MinHeadroom is the smallest accepted UMEMConfig.Headroom: room for
	// the largest outer headers ESP encapsulation prepends in place.
	MinHeadroom = esp.MaxHeadroom
	// DefaultRingSize is the default size of every ring.
	DefaultRingSize = 2048
	// MaxRingSize is the largest accepted ring size.
	MaxRingSize = 1 << 16
	// MaxNumFrames is the largest accepted UMEMConfig.NumFrames.
	MaxNumFrames = 1 << 20
	// MinFrameLen is the shortest descriptor Transmit accepts (an
	// Ethernet header).
	MinFrameLen = 14
	// MinDataRoom is the least room a frame must leave for packet data
	// after the headroom: a full 1500-byte-MTU Ethernet frame.
	MinDataRoom = 1514
	// MaxBatch is the largest Forwarder batch.
	MaxBatch = 64
	// DefaultBatch is the default Forwarder batch size.
	DefaultBatch = 64
)

// Desc is an AF_XDP ring descriptor (struct xdp_desc): the packet starts
// at byte Addr of the UMEM and is Len bytes long. In the aligned UMEM
// mode this package uses, Addr lies inside the frame starting at
// Addr &^ (FrameSize-1), and Addr%FrameSize is the packet's offset in it.
type Desc struct {
	Addr    uint64
	Len     uint32
	Options uint32
}

// The kernel ABI is 16 bytes: u64 addr, u32 len, u32 options.
var _ [16]byte = [unsafe.Sizeof(Desc{})]byte{}

// Mode selects how an AF_XDP socket moves packets.
type Mode int

const (
	// ModeAuto lets the kernel use zero-copy where the driver supports
	// it and fall back to copy mode otherwise. Socket.Mode reports which
	// one it picked.
	ModeAuto Mode = iota
	// ModeCopy forces copy mode (XDP_COPY), which every driver supports.
	ModeCopy
	// ModeZeroCopy requires zero-copy (XDP_ZEROCOPY); binding fails with
	// ErrNotSupported where the driver cannot do it (veth, for one).
	ModeZeroCopy
)

func (m Mode) String() string {
	switch m {
	case ModeAuto:
		return "auto"
	case ModeCopy:
		return "copy"
	case ModeZeroCopy:
		return "zero-copy"
	}
	return fmt.Sprintf("Mode(%d)", int(m))
}

// UMEMConfig configures a UMEM. The zero value gives the defaults.
type UMEMConfig struct {
	// FrameSize is the size of each frame: 2048 or 4096 (0: 4096).
	FrameSize int
	// NumFrames is the number of frames (0: DefaultNumFrames). It must
	// be at least FillSize.
	NumFrames int
	// Headroom is reserved in every frame in front of received packets,
	// in addition to the kernel's KernelHeadroom, so that encryption can
	// prepend outer headers in place (0: DefaultHeadroom; at least
	// MinHeadroom). FrameSize-Headroom-KernelHeadroom must be at least
	// MinDataRoom.
	Headroom int
	// FillSize and CompletionSize are the sizes of the fill and
	// completion rings, one pair per interface queue the UMEM is bound
	// to (0: DefaultRingSize). Powers of two.
	FillSize, CompletionSize int
}

func isPow2(n int) bool { return n > 0 && n&(n-1) == 0 }

// normalize validates c and fills in defaults.
func (c UMEMConfig) normalize() (UMEMConfig, error) {
	bad := func(format string, args ...any) (UMEMConfig, error) {
		return UMEMConfig{}, fmt.Errorf("%w: %s", ErrInvalidConfig, fmt.Sprintf(format, args...))
	}
	if c.FrameSize == 0 {
		c.FrameSize = DefaultFrameSize
	}
	if c.FrameSize != 2048 && c.FrameSize != 4096 {
		return bad("FrameSize %d, want 2048 or 4096", c.FrameSize)
	}
	if c.NumFrames == 0 {
		c.NumFrames = DefaultNumFrames
	}
	if c.Headroom == 0 {
		c.Headroom = DefaultHeadroom
	}
	if c.Headroom < MinHeadroom {
		return bad("Headroom %d below MinHeadroom %d", c.Headroom, MinHeadroom)
	}
	if room := c.FrameSize - c.Headroom - KernelHeadroom; room < MinDataRoom {
		return bad("FrameSize %d with Headroom %d leaves %d bytes for data, want at least %d",
			c.FrameSize, c.Headroom, room, MinDataRoom)
	}
	if c.FillSize == 0 {
		c.FillSize = DefaultRingSize
	}
	if c.CompletionSize == 0 {
		c.CompletionSize = DefaultRingSize
	}
	for _, r := range []struct {
		name string
		n    int
	}{{"FillSize", c.FillSize}, {"CompletionSize", c.CompletionSize}} {
		if !isPow2(r.n) || r.n > MaxRingSize {
			return bad("%s %d is not a power of two up to %d", r.name, r.n, MaxRingSize)
		}
	}
	if c.NumFrames < 1 || c.NumFrames > MaxNumFrames {
		return bad("NumFrames %d out of range 1..%d", c.NumFrames, MaxNumFrames)
	}
	if c.NumFrames < c.FillSize {
		return bad("NumFrames %d smaller than FillSize %d", c.NumFrames, c.FillSize)
	}
	return c, nil
}

// SocketConfig configures one AF_XDP socket.
type SocketConfig struct {
	// Ifindex is the interface, in the network namespace of the calling
	// thread.
	Ifindex int
	// Queue is the interface queue to bind to.
	Queue int
	// Mode is copy, zero-copy or auto. Sockets sharing a UMEM all use the
	// mode of the first one bound: a later socket may ask for ModeAuto or
	// that same mode.
	Mode Mode
	// RXSize and TXSize are the ring sizes: 0 means DefaultRingSize, a
	// negative value means no ring (a TX-only or RX-only socket).
	// Powers of two.
	RXSize, TXSize int
	// NoNeedWakeup turns XDP_USE_NEED_WAKEUP off. With it on (the
	// default), Transmit and Refill make a system call only when the
	// kernel asks for one. Like the mode, the first socket of a UMEM
	// decides for all.
	NoNeedWakeup bool
	// MultiBuffer binds with XDP_USE_SG (Linux 6.6+ for copy mode): a
	// packet longer than a frame arrives, and may be sent, as a chain of
	// descriptors, each but the last with Options XDP_PKT_CONTD. Receive
	// and Transmit then take and put whole chains only. Like the mode,
	// the first socket of a UMEM decides for all.
	MultiBuffer bool
	// BusyPoll turns preferred busy polling on for this socket (zero
	// value: off).
	BusyPoll BusyPoll
}

func (c SocketConfig) normalize() (SocketConfig, error) {
	bad := func(format string, args ...any) (SocketConfig, error) {
		return SocketConfig{}, fmt.Errorf("%w: %s", ErrInvalidConfig, fmt.Sprintf(format, args...))
	}
	if c.Ifindex <= 0 {
		return bad("interface index %d", c.Ifindex)
	}
	if c.Queue < 0 {
		return bad("queue %d", c.Queue)
	}
	if c.Mode < ModeAuto || c.Mode > ModeZeroCopy {
		return bad("mode %v", c.Mode)
	}
	if c.RXSize == 0 {
		c.RXSize = DefaultRingSize
	}
	if c.TXSize == 0 {
		c.TXSize = DefaultRingSize
	}
	if c.RXSize < 0 && c.TXSize < 0 {
		return bad("a socket needs an RX or a TX ring")
	}
	if err := c.BusyPoll.validate(); err != nil {
		return SocketConfig{}, err
	}
	for _, r := range []struct {
		name string
		n    int
	}{{"RXSize", c.RXSize}, {"TXSize", c.TXSize}} {
		if r.n > 0 && (!isPow2(r.n) || r.n > MaxRingSize) {
			return bad("%s %d is not a power of two up to %d", r.name, r.n, MaxRingSize)
		}
	}
	return c, nil
}

// KernelStats are the kernel's counters of one socket (struct
// xdp_statistics, getsockopt XDP_STATISTICS).
type KernelStats struct {
	// RxDropped: packets dropped for reasons other than invalid
	// descriptors, e.g. no frame in the fill ring or a packet larger
	// than a frame.
	RxDropped uint64
	// RxInvalidDescs: invalid descriptors seen on the fill ring.
	RxInvalidDescs uint64
	// TxInvalidDescs: invalid descriptors seen on the TX ring.
	TxInvalidDescs uint64
	// RxRingFull: packets dropped because the RX ring was full.
	RxRingFull uint64
	// RxFillRingEmptyDescs: times the kernel found the fill ring empty.
	RxFillRingEmptyDescs uint64
	// TxRingEmptyDescs: times the kernel found the TX ring empty.
	TxRingEmptyDescs uint64
}

// Stats are the counters of one socket: this package's, kept per batch
// without system calls, and the kernel's.
type Stats struct {
	RXPackets, RXBytes uint64 // taken from the RX ring by Receive
	TXPackets, TXBytes uint64 // put on the TX ring by Transmit
	// TXCompleted counts frames reaped from the completion ring by
	// Complete on this socket. Sockets on the same queue share one
	// completion ring, so one of them may reap the others' frames.
	TXCompleted uint64
	// TXInvalid counts descriptors Transmit refused: outside the UMEM,
	// too short or crossing the frame end, or not owned by the caller.
	TXInvalid uint64
	// Filled counts frames put on the fill ring by Refill.
	Filled uint64
	// FillRingEmpty counts Refill calls that found the fill ring empty:
	// the kernel had no frame to receive into and may have dropped.
	FillRingEmpty uint64
	// FreeListEmpty counts Refill calls that could not put as many frames
	// on the fill ring as it had room for because no frame was free.
	FreeListEmpty uint64
	// Wakeups counts system calls made to wake the kernel (sendto for
	// TX, recvfrom for RX), as the need-wakeup flags asked.
	Wakeups uint64
	// WakeupErrors counts wakeup system calls that failed with something
	// other than EAGAIN/EBUSY/ENOBUFS/EINTR.
	WakeupErrors uint64
	// RXBadDesc counts RX descriptors for frames the allocator had not
	// put on this socket's fill ring. Always zero unless something is
	// badly wrong.
	RXBadDesc uint64
	Kernel    KernelStats
}

// FrameCounts says where the frames of a UMEM are. Free, App, Fill, RX,
// TX and Completion are exact at any time; InKernel is what is left: the
// frames the kernel has taken from a fill or TX ring and not yet put on
// an RX or completion ring (packets in flight, and in copy mode frames
// the kernel keeps after dropping a packet on a full RX ring until it
// receives the next one).
type FrameCounts struct {
	Total      int // NumFrames
	Free       int // on the free list
	App        int // held by the application (received or allocated)
	Fill       int // on fill rings, for the kernel to receive into
	RX         int // on RX rings, for Receive
	TX         int // on TX rings, for the kernel to send
	Completion int // on completion rings, for Complete
	InKernel   int // taken by the kernel and not yet given back
}

// Sum is the total of all places; it always equals Total.
func (c FrameCounts) Sum() int {
	return c.Free + c.App + c.Fill + c.RX + c.TX + c.Completion + c.InKernel
}

// Packet is one packet of a Forwarder batch, as the batch function sees
// it. Buf is the whole UMEM frame and the packet is Buf[Off:Off+Len]: the
// headroom Buf[:Off] and the tailroom Buf[Off+Len:] may be written, so a
// processor can prepend outer headers and append trailers in place and
// then move Off and Len. The fields mirror sa.Packet's Buf, Off, Len and
// Meta (Addr), so an engine can hand a batch to the SA processor without
// copying packet data.
type Packet struct {
	// Buf is the frame. Do not replace it or keep it beyond the call: the
	// frame is reused as soon as the packet has been sent.
	Buf []byte
	// Off and Len locate the packet in Buf. The batch function may
	// change them; the forwarder transmits Buf[Off:Off+Len].
	Off, Len int
	// Addr is the frame's address in its UMEM (read-only).
	Addr uint64
	// Drop, when set by the batch function, drops the packet: its frame
	// goes back to the free list.
	Drop bool
}

// BatchFunc processes a batch of received packets in place before the
// Forwarder transmits them. It runs on the forwarder's goroutine and
// must not keep pkts or any Buf after it returns.
type BatchFunc func(pkts []Packet)

// ForwarderConfig configures a Forwarder.
type ForwarderConfig struct {
	// In is the socket to receive from; Out the one to transmit on. They
	// may share a UMEM (frames are handed over without copying) or not
	// (each packet is copied into a frame of Out's UMEM). In needs an RX
	// ring and Out a TX ring. The Forwarder owns them from Start on, and
	// their UMEMs: Stop closes them all.
	In, Out *Socket
	// Batch, if set, is called with every received batch.
	Batch BatchFunc
	// BatchSize is the most packets taken per batch: 1..MaxBatch
	// (0: DefaultBatch).
	BatchSize int
	// PinCPU pins the forwarder's OS thread to CPU (sched_setaffinity).
	// Unpinned, the goroutine is still locked to one OS thread.
	PinCPU bool
	CPU    int
	// IdleSpins is the number of consecutive empty polls of the RX ring
	// before the forwarder sleeps in poll(2) until a packet arrives
	// (0: 64). Negative: never sleep (busy polling).
	IdleSpins int
	// Detach are closed first by Stop, before draining, in order:
	// typically the XDP program's attachment(s), so no more packets are
	// steered to In while the rest drains.
	Detach []io.Closer
}

func (c ForwarderConfig) normalize() (ForwarderConfig, error) {
	bad := func(format string, args ...any) (ForwarderConfig, error) {
		return ForwarderConfig{}, fmt.Errorf("%w: %s", ErrInvalidConfig, fmt.Sprintf(format, args...))
	}
	if c.In == nil || c.Out == nil {
		return bad("forwarder needs In and Out sockets")
	}
	if c.BatchSize == 0 {
		c.BatchSize = DefaultBatch
	}
	if c.BatchSize < 1 || c.BatchSize > MaxBatch {
		return bad("BatchSize %d out of range 1..%d", c.BatchSize, MaxBatch)
	}
	if c.PinCPU && c.CPU < 0 {
		return bad("CPU %d", c.CPU)
	}
	if c.IdleSpins == 0 {
		c.IdleSpins = 64
	}
	return c, nil
}

// ForwarderStats are a Forwarder's counters.
type ForwarderStats struct {
	RXPackets uint64 // received from In
	TXPackets uint64 // put on Out's TX ring
	Batches   uint64 // non-empty batches processed
	Copied    uint64 // packets copied into a frame of Out's UMEM
	HookDrops uint64 // dropped by the batch function
	// BadPackets were dropped because the batch function left Off/Len
	// outside the frame or shorter than MinFrameLen.
	BadPackets uint64
	// NoFrame were dropped because Out's UMEM had no free frame.
	NoFrame uint64
	// TXFull were dropped because Out's TX ring stayed full.
	TXFull uint64
	// Sleeps counts the times the forwarder blocked in poll(2).
	Sleeps uint64
}

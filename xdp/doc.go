// Package xdp is espxdp's AF_XDP fast path: UMEMs, AF_XDP sockets and
// their rings, driven in batches; a minimal Forwarder that moves packets
// from one socket to another (the "AF_XDP forwarding without crypto"
// baseline); and the Engine, which runs the sa batch processor between
// a ciphertext and a plaintext interface.
//
// It is Linux only. On other systems the types exist so that code using
// them compiles, and every constructor returns ErrNotSupported.
//
// # Why not github.com/asavie/xdp
//
// The package is written directly on golang.org/x/sys/unix. asavie/xdp
// v0.3.3 was evaluated first, but its abstractions are in the way
// rather than short of a few features:
//
//   - its UMEM belongs to one Socket (NewSocket maps it), so several
//     sockets cannot share a UMEM (XDP_SHARED_UMEM), neither on one queue
//     nor across queues and devices, and fill/completion rings cannot be
//     per queue;
//   - the UMEM headroom is fixed at 0, and bind flags are package globals
//     (no per-socket copy/zero-copy choice, no report of the mode used);
//   - it ignores the ring flags, so XDP_USE_NEED_WAKEUP cannot work, and
//     Transmit makes a sendto on every call and panics on unexpected
//     errors;
//   - ring indices are read and written with plain loads and stores (its
//     fences are commented out), free frames are found by scanning a
//     []bool, and Close never unmaps the rings, whose mappings keep the
//     socket file, and so the bound queue, alive until the process exits.
//
// Fixing that would mean replacing almost all of it; the kernel ABI it
// wraps is small (a few setsockopts, four mmap'd rings), so this package
// implements it itself.
//
// # Rings
//
// A UMEM is NumFrames frames of FrameSize bytes (2048 or 4096, aligned
// mode) in one anonymous mapping that the kernel pins. The first socket
// registers it (XDP_UMEM_REG, with the configured headroom). There are
// four kinds of single-producer/single-consumer rings:
//
//	fill        app → kernel  frame addresses to receive into
//	RX          kernel → app  descriptors of received packets
//	TX          app → kernel  descriptors of packets to send
//	completion  kernel → app  addresses of frames sent
//
// RX and TX rings belong to a socket. Fill and completion rings belong to
// the kernel's buffer pool of a UMEM on one interface queue: the first
// socket of a UMEM on a queue brings the pair, and further sockets of
// that UMEM on the same queue share it (XDP_SHARED_UMEM without rings of
// their own; the kernel refuses a second pair). A socket of the UMEM on
// another queue or another interface brings a pair of its own
// (XDP_SHARED_UMEM across queues and devices). Socket.OwnsFillRing tells
// which case applies. All sockets of a UMEM use the mode (copy or
// zero-copy) and need-wakeup setting of its first socket.
//
// Ring indices are shared with the kernel through the mapping: our index
// is published with an atomic store after the entries it covers, the
// kernel's read with an atomic load before reading entries. No system
// call and no allocation per packet: Receive, Transmit, Refill and
// Complete each move a whole batch under one mutex acquisition, and make
// a system call only when the kernel asks for one (XDP_USE_NEED_WAKEUP,
// on by default). In copy mode the kernel always asks on TX and sends at
// most 32 packets per sendto, so Transmit of a 64-packet batch makes two
// or three.
//
// # Frames and their owners
//
// A frame is always in exactly one place, and the UMEM tracks which:
//
//	free list → Refill → fill ring → kernel → RX ring → Receive → application
//	free list → Alloc → application
//	application → Transmit → TX ring → kernel → completion ring → Complete → free list
//	application → Free → free list
//
// The rules for the application:
//
//   - Receive and Alloc hand frames over; the application then gives each
//     frame back exactly once, with Transmit (on any socket of the same
//     UMEM: that is the zero-copy hand-over between interfaces) or with
//     UMEM.Free. After that it must not touch the frame.
//   - Frames never move between UMEMs; to send a packet of one UMEM on a
//     socket of another, copy it into a frame of the other (the Forwarder
//     does).
//   - Call Refill regularly on receiving sockets and Complete on
//     transmitting ones; nothing happens in the background.
//   - Transmit checks every descriptor. One that points outside the UMEM,
//     crosses the end of its frame, is shorter than MinFrameLen, or is for
//     a frame the application does not hold is not put on the ring (the
//     kernel would count it invalid and never return the frame) but
//     counted, and its frame, if the application held it, freed. Free
//     likewise ignores and counts frames the application does not hold,
//     so a double free cannot corrupt the allocator.
//
// The allocator is bounded: the free list is a fixed array of NumFrames
// addresses, nothing grows. UMEM.Counts says where the frames are (free,
// application, fill, RX, TX, completion, and in the kernel), and
// UMEM.CheckFrames audits that every frame is in exactly one place and
// that the counts add up to NumFrames: the tests run it after every test.
// "In the kernel" is normally zero when traffic stops; in copy mode the
// kernel keeps a frame after dropping a packet on a full RX ring and uses
// it for the next one, so it may stay above zero by at most the number of
// such drops (Stats.Kernel.RxRingFull). When the last socket of a queue
// closes, every frame the kernel held for that queue returns to the free
// list.
//
// # Headroom and in-place encapsulation
//
// The kernel writes a received packet at offset Headroom+KernelHeadroom
// (UMEM.DataOffset) of its frame. UMEM.Frame returns the whole frame and
// that offset, so a processor can write outer headers into the headroom
// before the packet and trailers into the tailroom after it, then point
// the descriptor at the new start and length (UMEM.SetPacket) and
// transmit it. The headroom is at least esp.MaxHeadroom (default 256,
// plus the kernel's 256). With 2048-byte frames a full 1514-byte Ethernet
// frame leaves only 22 bytes of tailroom, less than esp.MaxTailroom: use
// 4096-byte frames (the default) to encrypt full-size packets in place.
// Packets longer than FrameSize-DataOffset are dropped by the kernel
// (Stats.Kernel.RxDropped); multi-buffer packets (XDP_USE_SG) and the
// unaligned chunk mode are not supported.
//
// # Concurrency
//
// A UMEM's allocator, frame states and fill/completion rings are guarded
// by its mutex, so frames may be handed between goroutines (e.g. to the
// worker that owns an SA) and sockets of one UMEM may be driven from
// different goroutines. A socket's RX ring must be read by one goroutine
// at a time, and its TX ring written by one goroutine at a time. For
// per-core scaling give each worker its own UMEM and queue.
//
// # Forwarder
//
// The Forwarder polls In's RX ring on a goroutine locked to an OS thread
// (optionally pinned to a CPU), in batches of up to MaxBatch, calls the
// BatchFunc on each batch, and transmits on Out: with one UMEM the frames
// are handed over, with two each packet is copied. The BatchFunc sees
// []Packet, each with the whole frame, the packet's offset and length
// (the fields of sa.Packet), and may rewrite the packet in place, move
// it within the frame, or drop it. (The Engine does not use the
// Forwarder: a worker drives two interfaces in both directions, so it
// has a loop of its own on the same primitives.) When idle it sleeps in poll(2)
// and Stop wakes it through an eventfd. Stop detaches (closing
// ForwarderConfig.Detach), forwards what is left on the RX ring, waits a
// bounded time for transmissions to complete, and closes the sockets and
// their UMEMs.
//
// # Engine
//
// An Engine is a bump-in-the-wire ESP gateway. Its configuration names
// the ciphertext interface (Cipher), the plaintext interface (Plain) or,
// instead, a DeliverFunc for embedders, the next-hop MACs of both sides
// (no ARP: the engine writes static Ethernet headers), and the caller's
// sa.Processor, whose SAD, SPD and tunnels the caller keeps and may
// change while the engine runs. Start (called from a thread in the
// interfaces' network namespace) builds one UMEM shared by all sockets,
// loads the bpf steering program for the ciphertext side (ESP and
// ESP-in-UDP to AF_XDP; IKE, keepalives, ARP, ICMP and everything else
// to the kernel) and one in Plaintext mode for the plaintext side
// (packets to ProtectedPrefixes to AF_XDP), opens the sockets (see
// Steering), registers them, attaches both programs and starts
// EngineConfig.Workers workers, each on a goroutine locked to an OS
// thread and optionally pinned to a CPU (EngineConfig.CPUs). Worker i
// drives sa.Processor.Worker(i), receives on its sockets and transmits
// on queue i % Queues of both interfaces.
//
// A worker's loop, in batches of up to BatchSize (the ports are
// described under Ports; here the two AF_XDP ones):
//
//	ciphertext RX → [gather a chain, MultiBuffer] → check the port's
//	    VLAN (else VLANDrops) → strip Ethernet
//	    [Reassembly: outer fragment → the worker's reasm.Reassembler;
//	     its frame freed, or, for the fragment completing a packet, the
//	     reassembled packet copied into it] → Worker.Inbound
//	    OK      → [DecrementTTL, ClampMSS] → new Ethernet header in front
//	              → plaintext TX (or Deliver)
//	    Control → ControlFunc, if set, else dropped (counted)
//	    Drop    → frame freed; counted by reason in the Processor's or
//	              the SA's stats
//	plaintext RX → strip Ethernet → [DecrementTTL, ClampMSS] → Worker.Outbound
//	    OK, Bypass → Ethernet header in front of the outer IP header
//	                 (the headroom has room for both) → ciphertext TX
//	    Drop       → frame freed; DropMTU is counted (MTUDrops) and,
//	                 with ICMPErrors, the same frame becomes ICMP
//	                 "fragmentation needed" / "packet too big" sent back
//	                 on the plaintext side (or to Deliver); an IPv4
//	                 packet without DF is, with FragmentInner, fragmented
//	                 instead and each fragment encrypted
//	Engine.Send queue → Worker.Outbound → ciphertext TX
//	Worker.Drain (Sharded and PerCPU modes) → as above, by Packet.Dir
//
// The frame of a packet goes from RX to TX of the other interface
// without copying (one UMEM); every frame that is not transmitted is
// freed in the same step, so none is leaked (the tests audit the UMEM
// after each run). Nothing a packet contains can stall a worker: every
// packet gets a verdict and a bounded amount of work, and TX retries are
// bounded (TXFull). When idle a worker polls its sources a few more
// times (at most EngineConfig.IdleSpins, fewer while its sleeps turn
// out long: bursty traffic such as one TCP flow) and then sleeps in
// poll(2) on its ports' descriptors (the AF_XDP sockets) and two
// eventfds (stop, and the wakeup of Send and of ports without a
// descriptor); Send writes the eventfd only while the worker sleeps.
// The non-blocking wakeups of the kernel (AF_XDP sendto and recvfrom,
// eventfd writes) are raw system calls, which keep the worker's P.
//
// Engine.Send copies IP packets from Go into UMEM frames and queues them
// (bounded) for a worker to encrypt: the source side for embedders.
// Stop detaches both programs first, lets every worker process what is
// left on its RX rings and wait (bounded) for its transmissions, then
// closes sockets, UMEM, programs and eventfds; an Engine can be started
// again afterwards. Stats reports per-worker counters, the processor's
// counters, both programs' counters, every socket's counters and where
// the UMEM's frames are; per-SA counters are in the SAD (sa.SA.Stats).
// Packets handed to another worker's queue (Sharded, PerCPU) when Stop
// runs are processed by that worker's drain if it has not exited yet;
// otherwise their frames return with the UMEM when it is closed.
//
// Every frame sent on a port carries the port's 802.1Q tag (Port.VLAN).
// Start refuses (ErrMTU) an interface whose MTU needs frames longer than
// a UMEM frame holds (MaxFrameLen), unless MultiBuffer: then frames up
// to MaxJumboMTU arrive as descriptor chains (XDP_USE_SG), are gathered
// into a per-worker buffer and leave as new chains; both programs are
// attached in generic mode, where the kernel gives the steering program
// the whole frame.
//
// # Ports
//
// The worker loop above knows a side only as an EnginePort: Receive
// fills the worker's packet slots (sa.Packets in UMEM frames), Transmit
// takes them, Maintain does the upkeep between batches (for AF_XDP:
// completions, refills, kicks), InFlight reports packets not yet sent
// (before a sleep and at Stop), PollFDs or
// PortEnv.Wake wake a sleeping worker, Bind and Unbind bracket a run.
// Worker w calls a port with w from its own thread only, so a port keeps
// per-worker state without locks. The ciphertext side is the AF_XDP
// port of EngineConfig.Cipher or a port of the caller's,
// EngineConfig.CipherPort (exactly one of them); the plaintext side is the AF_XDP
// port of EngineConfig.Plain, a transmit-only port around
// EngineConfig.Deliver, or a port of the caller's, EngineConfig.PlainPort.
// A worker receives from three sources, each a port: the ciphertext
// port (to decrypt), the plaintext port and its Send queue (to encrypt;
// Engine.Send fills it).
//
// To plug in a port (see ExampleEnginePort): keep the PortEnv that Bind
// gets; in Receive take frames with PortEnv.Alloc, copy each packet to
// Buf[Off:] (at most PortEnv.MaxPacket bytes) and set Len; in Transmit
// copy each packet out of Buf[Off:Off+Len] and give the frames back with
// PortEnv.Free; return a descriptor from PollFDs that poll(2) reports
// readable when packets wait, or call PortEnv.Wake(worker) when they
// arrive. Nothing in it may block (the worker is a busy thread that
// serves every port) and nothing should allocate per packet. The AF_XDP
// ports need no copy: their frames are the UMEM's, so a frame received on
// one leaves on the other as it is, past a new Ethernet header.
//
// A ciphertext port (EngineConfig.CipherPort) receives and transmits
// whole ESP packets with their outer IP header (IP/ESP or IP/UDP/ESP),
// what the AF_XDP side has past the Ethernet header, so the SAs check
// outer addresses and NAT-T ports as usual and need no ESPOnly setting.
// A UDP socket port writes an outer IPv4 and UDP header in front of each
// datagram it receives (source the sender, destination its bound
// address; the sa.Processor's NATTPort must be the bound port) and, on
// transmit, sends the payload after the outer headers to their
// destination address and port. With such a port no XDP program runs on
// the ciphertext side and nothing steers: worker w gets what the port's
// Receive(w) returns. A UDP port that opens one socket per worker, all
// bound to one address with SO_REUSEPORT, each worker polling its own,
// gets the kernel's reuseport hash as its steering: every packet from
// one peer address and port reaches one worker in order, peers spread
// over the workers, and the sa concurrency modes (hand-off to an SA's
// owner, Ordered's shared AEAD work) do the rest. Steering, LocalAddrs,
// Unprotected and the socket tuning apply only to AF_XDP sides; an
// engine with a CipherPort and a PlainPort or Deliver needs no
// privileges (see UDPPort below and TestUDPCipherPortTraffic).
//
// # UDP cipher port: ESP in UDP with GSO and GRO
//
// UDPPort is that port as a product (ExampleUDPPort): ESP in UDP
// (RFC 3948; port 4500 unless UDPPortConfig.Local names another) over
// IPv4 or IPv6, one non-blocking socket per worker with SO_REUSEPORT,
// polled by the worker loop. It exists for the kernel's per-packet cost
// on the wan: AF_XDP in copy mode (every veth) makes one socket buffer
// per ESP packet and runs the receiving side's work on the sender's
// thread, while UDP segmentation offload moves up to 64 packets as one.
//
//   - Transmit: the payloads stay in their frames (one iovec each);
//     consecutive packets to one destination whose lengths are equal,
//     the last no longer, go out as one super-datagram with a
//     UDP_SEGMENT control message (Linux 4.18), at most UDPMaxSegments
//     and 64 KiB; one sendmmsg per batch. When the kernel refuses a
//     super-datagram (EIO: no checksum offload on the route; EINVAL: a
//     segment over the path MTU) the port counts a GSOFallback and sends
//     the rest of that batch one datagram per packet; an EIO, or 8
//     EINVALs in a row, turns GSO off for every worker.
//   - Receive: UDP_GRO (Linux 5.0) lets the kernel hand over coalesced
//     datagrams (and GSO datagrams from a local sender unsplit);
//     recvmmsg reads into the worker's own 64 KiB buffers
//     (UDPPortConfig.RecvBuffers), Receive splits each by its gso_size
//     into packets, copies each into a frame behind the outer IP and
//     UDP header the SAs check, and keeps what does not fit for the
//     next call. Nothing is allocated per packet.
//   - Not ESP: NAT keepalives (one byte 0xff) and IKE behind the non-ESP
//     marker (four zero bytes) go to UDPPortConfig.NonESP, so an IKE
//     daemon can share port 4500 (answering through UDPPort.WriteTo),
//     or are counted drops. Datagrams too long for a frame, longer than
//     a buffer (truncated), empty or of another family are counted
//     drops too; PortStats.UDP has every counter (datagrams and
//     super-datagrams each way, segments, fallbacks, drops by reason).
//
// Over veth, a super-datagram crosses to the peer namespace as one
// socket buffer and reaches a UDP_GRO socket there as it is. The bench
// wg suite's espxdp-tun-udp row measures it against espxdp-tun (AF_XDP
// on the wan) and wireguard-go (the same UDP GSO/GRO path).
//
// Router duties (outer reassembly, TTL, MSS clamping, ICMP errors,
// fragmentation before encryption) are the worker's, around the SA
// processor and never in a port (router_linux.go); Ethernet framing,
// VLAN tags and jumbo chains are the AF_XDP port's (port_xsk_linux.go,
// jumbo_linux.go); a TUN with offloads is a port of its own (TUNPort,
// port_tun_linux.go: the worker reads, splits, coalesces and writes its
// queue), a bare TUN feeds the Send queue through ServeTUN and is
// written through Deliver (see TUN).
//
// # Steering: several workers per queue
//
// The kernel puts a packet that an XDP program redirects into an XSKMAP
// only into a socket bound to the device and queue the packet arrived on
// (xsk_rcv checks both), and a NIC's RSS hashes one ESP flow (same
// addresses) to ONE queue. So "one SA over several cores" needs several
// sockets on that one queue, a cpumap hop to another CPU, or a hand-off
// between workers after RX. The engine uses the first: with SteerSPI or
// SteerSpread (EngineConfig.Steering; SteerAuto picks by the processor's
// mode), every worker has a socket on every queue of both interfaces, all
// of one UMEM; the sockets of a queue share its fill and completion rings
// (XDP_SHARED_UMEM on the same device and queue, which the kernel allows
// in copy and zero-copy mode; the UMEM's mutex already serialises those
// rings, and every worker refills the rings of the queues it receives
// on). Worker w's socket on queue q is XSKMAP slot q×Workers+w, and the
// XDP program picks the slot:
//
//	mode      cipher side (ESP, NAT-T)           plaintext side
//	Shared    Spread: chunks of 32 packets        Spread
//	          dealt to the workers in turn
//	Sharded   SPIHash: the SA's owner             destination hash (the worker
//	          (bpf.SPIHashSlot(spi, Workers) ==   hands the packet to the
//	          sa.Processor.OwnerOf(spi))          outbound SA's owner)
//	PerCPU    SPIHash: the SA's owner             destination hash (that
//	                                              worker's own outbound SA)
//	Ordered   SPIHash: one sequencer per SA,      destination hash: one
//	          its AEAD done by all workers        sequencer per inner
//	          (a sequencer wakes sleeping         destination
//	          helpers before a batch whose
//	          jobs its gate lets it publish)
//
// One worker on one queue (or MultiBuffer) keeps SteerQueue: one socket
// per queue, worker i on queue i. What a worker receives on any queue it
// processes itself and transmits on its own queue's socket, so its
// packets leave in the order it finished them. Invariants, tested in
// namespaces with one queue and two workers in every mode
// (TestEngineOneSAModes; with SA add, update and delete under traffic
// and -race in TestEngineSAChurnMultiWorker): every packet of one SPI is
// received by its owner (Sharded, PerCPU), so none is handed off;
// Ordered leaves no inner packet and no ESP sequence number out of
// order; no mode drops a packet of an in-order stream as a replay or
// sends a sequence number twice. Spreading reorders one SA's stream by
// up to what a worker's RX ring holds (2048 packets), more than the
// default replay window, so Start sets the processor's window floor
// (sa.Processor.SetReplayWindowFloor) to twice that: default-sized
// windows grow to 8192 packets at their first packet with two workers
// (an earlier run without the floor lost 416 of an 8192-packet stream to
// anti-replay, Shared, 2 workers).
//
// Why not the others. A cpumap redirect moves the frame to another CPU,
// where a second XDP program may redirect it into a socket only of the
// same device and queue again: it adds a CPU hop, not a queue, and still
// needs several sockets per queue to reach several workers. A software
// hand-off after RX (the sa package's Sharded queues) works with one
// socket per queue, but moves every handed packet between cores once
// more and reorders it against the owner's own input. Measured by the
// one-SA rows (go run ./bench -suite e2e-one-sa; bench/RESULTS.md; 2
// workers, one queue, 1420-byte packets, Sharded decrypt), five runs:
// SPI steering in XDP handed off nothing and reordered nothing; the
// hand-off moved 89,000-385,000 packets between the workers per 2-second
// row, reordered 31-48 % of an in-order stream at the receiving host, and
// delivered less in four of the five runs (last run: 0.19 against 0.38
// Mpps). The box is a 2-CPU VM shared with the traffic generator, the
// sink and other jobs, so rates moved by up to 2× between runs; the
// hand-off and reordering counts did not.
//
// # TUN
//
// A TUN device can be the Engine's plaintext side instead of an
// interface, which makes a route-based tunnel: OpenTUN creates it
// (IFF_TUN|IFF_NO_PI, in the calling thread's namespace) on a
// non-blocking descriptor served by the runtime poller, so Close and
// read deadlines unblock a pending Read. Set EngineConfig.Deliver to
// TUN.Deliver, which writes decrypted packets to the device, and run
// ServeTUN, which reads what the kernel routes into the device in
// batches of up to BatchSize (one blocking wait, then non-blocking reads
// until the batch is full or the device is empty) and hands them to
// Engine.Send; it stops when its stop channel closes, the TUN closes or
// Send fails. Its buffers (BatchSize × TUNBufSize) are allocated once,
// and ReadBatch and WriteBatch do not allocate. A device from OpenTUN
// has no offloads: every packet costs one read(2) or write(2).
//
// OpenTUNOffload opens the device with offloads instead (on
// golang.zx2c4.com/wireguard/tun: IFF_VNET_HDR, TUNSETOFFLOAD with
// checksum, TSO4/6 and USO4/6 where the kernel has it), so the hosts
// routing through it keep their own offloads and the kernel hands
// ServeTUN TCP and UDP super-packets of up to 64 KiB: one read(2) each,
// split here into MTU-sized packets with their checksums finished (up
// to 128 per read, buffers max(BatchSize, 128) × TUNBufSize). Deliver
// copies the decrypted packets behind room for the virtio-net header
// and coalesces the segments of each TCP or UDP flow (GRO) into one
// write(2) per super-packet; its staging buffers (MaxBatch × 64 KiB)
// are allocated once and a mutex serialises workers' Deliver calls.
// TUNStats counts the super-packets split and coalesced. Either way
// Send copies each packet into a frame, and Deliver runs on the engine
// worker, so a device write that would block (it rarely does) stalls
// that worker. OpenTUNQueues opens a multi-queue device
// (IFF_MULTI_QUEUE) with offloads, one *TUN per queue: run a ServeTUN
// per queue into the engine worker of the same index, and deliver with
// DeliverTUNs, which writes a batch to the queue of its first packet's
// flow (the kernel then steers that flow's packets to the same queue) or
// the next free one. A write never turns a packet with a wrong checksum
// into one the kernel trusts: GRO merges only segments whose checksums
// it verified, and every other packet goes with a zero virtio-net
// header. Keep the TUN's MTU at or below the tunnel's plaintext
// MTU (and under TUNBufSize).
//
// TUNPort is the faster way to run an offload device (the gateway's and
// the bench's route-based mode): an EnginePort for EngineConfig.PlainPort
// over the device's queues, worker w owning queue w mod the number of
// queues. The worker polls the queue (through an epoll instance) with
// its other ports and reads it itself without blocking (one read(2) per
// packet or super-packet, into a 64 KiB buffer of its own);
// xdp/internal/vnet splits a super-packet
// segment by segment straight into UMEM frames (checksums finished, IPv4
// IDs, TCP sequence numbers and flags per segment as the kernel's own
// segmentation sets them), so the packets are encrypted on the core that
// wrote them, without the reader goroutine, the Send queue's copy and
// its wake-ups. Transmit groups consecutive TCP segments of a flow whose
// checksums it verified into super-packets (as Linux GRO would merge
// them: same headers and options, contiguous sequence numbers, equal
// sizes but for the last) and writes each with one writev(2) whose
// iovecs point at the segments in their frames: the virtio-net header,
// the first packet whole, then the others' payloads; anything else is
// written alone with a zero header. Nothing is copied in user space and
// nothing allocated. The TUN's counters (TUNStats) count what the port
// read, split, coalesced and wrote; PortStats its packets and drops.
// When the UMEM has too few free frames for a super-packet, the segments
// that found one go on and the rest are dropped and counted; a segment
// longer than a frame drops the rest of its super-packet (OversizeDrops).
// A super-packet may have up to the kernel's GSO_MAX_SEGS segments (a
// peer's small MSS) and IPv6 hop-by-hop and destination options headers.
// The worker polls its queue through an epoll instance of its own: if
// the device is deleted under a running engine (its descriptor then
// polls as an error forever), the first failed read takes the queue out
// of it, so the worker does not spin; the engine keeps running without
// that queue until it is stopped.
//
// # Kernel versions
//
// AF_XDP appeared in Linux 4.18. This package needs ring flags and
// XDP_USE_NEED_WAKEUP (5.4; earlier kernels get ErrNotSupported) and
// XDP_OPTIONS to report the mode (5.3). Sharing a UMEM across queues or
// devices needs 5.10; the extended XDP_STATISTICS counters (RxRingFull,
// RxFillRingEmptyDescs, TxRingEmptyDescs) 5.9, and are zero before. With
// ModeAuto the kernel itself tries zero-copy and falls back to copy
// mode; veth has no zero-copy, so on veth ModeZeroCopy fails with
// ErrNotSupported. The kernel frees an interface queue asynchronously
// after its last socket closes (an RCU grace period and a workqueue,
// about 16 ms here), so NewSocket retries a bind that fails with EBUSY
// for up to half a second. The UMEM's pages are pinned and charged to
// RLIMIT_MEMLOCK unless the process has CAP_IPC_LOCK. Developed and
// tested on Linux 6.18 with veth in copy mode, native XDP.
package xdp

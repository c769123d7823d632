// Package sa holds IPsec Security Associations, their databases and a
// batch processor that runs ESP (package esp) over batches of packets
// from any I/O: AF_XDP (package xdp), UDP sockets, TUN devices, pcaps,
// tests.
//
// # Pieces
//
//   - SA: one unidirectional Security Association (RFC 4301 §4.1),
//     built by New from a Config: the esp.Cipher, SPI, mode, endpoints,
//     NAT-T encapsulation, ESN, anti-replay window, the atomic outbound
//     sequence counter, soft and hard lifetimes, per-worker counters and
//     the path MTU.
//   - SAD: SAs by direction and SPI, with lock-free lookups.
//   - SPD: ordered outbound policies (selectors → protect, bypass,
//     discard), first match wins, with rate-limited acquire events, for
//     policy-based setups.
//   - Tunnel: the route-based alternative to the SPD, binding the
//     current outbound SA (or one per worker) and the inbound SAs of a
//     tunnel interface or VPN peer.
//   - Processor and Worker: Inbound and Outbound over []Packet, one
//     verdict (and drop reason) per packet, no allocation per packet.
//
// # Data path
//
// Inbound: esp.ParseOuter → SPI lookup → anti-replay pre-check (with ESN
// the high 32 bits are inferred as in RFC 4303 Appendix A) → ICV check
// and decryption in place → anti-replay update (only now, so forged
// packets cannot move the window) → esp.DecapTunnel or DecapTransport →
// the inner packet must match the SA's selectors, if it has any
// (RFC 4301 §5.2) → counters. IKE behind the non-ESP marker and NAT
// keepalives come back as VerdictControl, for the IKE daemon.
//
// Outbound: Packet.Tunnel, else the SPD, else ProcessorOptions.Tunnel
// picks the SA → lifetime and selector checks → plaintext-MTU check
// (DropMTU with Packet.MTU set, so the caller can send ICMP
// "fragmentation needed" / "packet too big") → next sequence number →
// esp.EncapTunnel or EncapTransport in place → counters.
//
// Every packet ends with a Verdict; a drop carries a DropReason and is
// counted, on the SA when one matched (SA.Stats) or else on the
// processor (Processor.Stats). Nothing panics on bad input.
//
// # Anti-replay and sequence numbers
//
// The window (package replay) is a ring of 64-bit words in the style of
// RFC 6479: moving the right edge clears only the words it passes, so
// the cost per packet does not depend on the window size, which is 1024
// by default and configurable up to MaxReplayWindow (65536; larger sizes
// are rejected, never truncated). ReplayDisabled turns the check off.
//
// Outbound sequence numbers come from an atomic counter and are never
// reused, not even for packets that are then dropped. Without ESN the
// SA stops when the counter would pass 2^32-1 (RFC 4303 §3.3.3): the
// packet is dropped with DropSeqOverflow, the SA becomes StateExpired
// and EventSeqOverflow is raised. With ESN the counter is 64 bits.
//
// # SA lifecycle
//
// The invariant every control operation keeps: under one key, no
// sequence number is ever sent twice, and no packet accepted once is
// accepted again - whatever sequence of add, replace, update, delete,
// re-add, processor stop and start and process restart happens.
// AES-GCM, GMAC, ChaCha20-Poly1305 and AES-CTR use the sequence number
// as IV, so a repeated number under a key is a repeated nonce. How each
// operation keeps it (TestLifecycleProperty checks it on every packet of
// random operation sequences):
//
//   - Changing an SA's mutable attributes does not make a new SA:
//     SA.Update changes lifetimes, the path MTU, the peer address and
//     NAT-T port (after a NAT rebinding), TTL and DF in place, and the
//     sequence number, replay window, counters and lifetime usage stay.
//     The attributes are an immutable struct behind an atomic pointer
//     that workers load once per run of packets. TFC padding
//     (Config.TFCPadTo) is part of the esp.Cipher and cannot change in
//     place.
//   - SAD.Replace with an SA of the same transform and key material (a
//     reload that rebuilt the config) carries the outbound sequence
//     number (the new SA continues after the higher of the old counter
//     and its own InitialSeq), the inbound replay window and the byte and
//     packet usage over; workers keep off the new SA until that is done. SAs are compared through
//     keyed fingerprints (HMAC-SHA256 under a random per-process key);
//     no plain hash of a key is kept. A different key starts fresh.
//   - Delete and re-add, or a process restart, is the caller's part:
//     Config.InitialSeq (outbound: the last number used) and
//     Config.Replay (inbound: SA.ReplayState, exact once the SA is
//     closed) carry the state into the new SA. Closing an SA wipes its
//     keys but keeps its counter and window for that.
//   - A crash cannot export anything, so outbound SAs take sequence
//     reservations: Config.SeqLimit / SA.SetSeqLimit is the highest
//     number the SA may use. A daemon persists (writes and fsyncs) a limit
//     before setting it and restarts with InitialSeq = the persisted
//     limit. EventSeqLimit at half the room between the previous and
//     the current limit asks for the next reservation; packets past the
//     limit are dropped with DropSeqLimit, never sent, and the counter
//     does not move past it. Without a limit (the default) the only cost
//     is one predictable branch per packet.
//   - Expiry is final: soft expiry always precedes hard expiry (a run of
//     packets, a clock step or an Update that crosses both limits raises
//     EventSoftExpire, then EventHardExpire); an Update with later limits
//     does not revive an expired SA nor un-soft-expire one.
//
// SPIs 1-255 are reserved by IANA (RFC 4303 §2.1) and 0 for local use:
// New refuses them. SA.LastUsed tells when an SA last carried a packet,
// to about a second (written at most once a second per SA, not per
// batch).
//
// FIPS 140-3: with GODEBUG=fips140=only, crypto/cipher refuses AES-GCM
// and GMAC with caller-chosen nonces (it wants its own nonce generation,
// which ESP's sequence-number IVs cannot use) and ChaCha20-Poly1305
// entirely, so New rejects those transforms (a ConfigError on
// Transform); AES-CBC and AES-CTR with HMAC-SHA2 work.
//
// # Lifetimes, events and rekeying
//
// Soft and hard lifetimes count bytes (of plaintext), packets and time
// since the SA's creation. Time is read once per batch from
// ProcessorOptions.Clock (a coarse clock, not time.Now per packet);
// idle SAs need SAD.Sweep, say once a second. Reaching a soft limit
// raises EventSoftExpire once (rekey now); a hard limit raises
// EventHardExpire once and the SA drops further packets with
// DropExpired. Packet and byte limits are exact with one worker; with
// several workers sharing an SA (Shared mode) they may overshoot by up
// to one batch per worker, because workers add their counts once per
// run of packets.
//
// Events go to an EventFunc (SADOptions.Events, SPDOptions.Events,
// SA.SetEvents). Events raised by a worker are delivered at the end of
// its batch, after it released its SAs, so a handler may delete or close
// the SA (which waits only for other workers' batches); it must not
// block otherwise (see EventChannel). SAD.Sweep, SA.Expire and
// SA.Update call the handler in the caller's goroutine.
//
// Make-before-break: install the new inbound SA, then the new outbound
// SA, then Tunnel.SetOutbound(new) - one atomic store, so every later
// packet uses the new SA; a worker that picked the old SA just before
// it was deleted picks again. Delete the old outbound SA when you like
// and the old inbound SA once packets sealed under it can no longer
// arrive. TestRekeyNoLoss sends continuously through repeated rekeys
// and loses nothing.
//
// # SAD design
//
// Lookup by SPI runs for every inbound packet on every worker, so it
// takes no lock and does not allocate: each direction is an
// open-addressing hash table (linear probing, load ≤ 1/2) whose slots
// hold the SPI and an atomic pointer to the SA, behind an atomic table
// pointer. Add, Replace and Delete take a writer mutex and change one
// slot with ordered atomic stores; only growth rebuilds the table. A
// lookup is one or two probes whatever the size, and an update is O(1)
// amortised even with a million SAs - unlike a copy-on-write map, whose
// every update would copy the whole map. (Measured latency still rises
// from 1k to 1M SAs as the table leaves the CPU caches: see
// BenchmarkSADLookup.) SAs are keyed by SPI alone; keying by (SPI,
// destination) for multicast SAs is not implemented.
//
// Deleting an SA (SAD.Delete, SAD.Replace, SA.Close) marks it deleted,
// waits until no worker is inside a batch using it (workers count
// themselves in per run of packets), then wipes its keys with
// esp.Cipher.Wipe. It may be done from an EventFunc. SA keys are never printed: String, Format, GoString,
// LogValue and MarshalJSON of SA and Config redact them.
//
// # Concurrency modes
//
// ProcessorOptions.Concurrency selects how workers share SAs; studying
// these trade-offs is one use of this package, so they are explicit:
//
//   - Shared: any worker handles any SA, so traffic of one SA spreads
//     over all cores. The replay window is behind a per-SA mutex
//     (locked for the pre-check and again for the update, which
//     re-checks: two workers racing with copies of one packet cannot both
//     win); sequence numbers, lifetime totals and state are atomics that
//     all workers write, so one busy SA's cache lines bounce between
//     cores. Simplest to feed (no steering) but scales worst per SA:
//     BenchmarkReplaySA shows ~7 ns unlocked vs ~30 ns locked for the
//     window alone, and BenchmarkModes the whole path. Reordering
//     between workers can also push packets out of a small window: the
//     bench harness's shard suite measured 25-50 % replay drops for two
//     Shared workers on one SA with windows of 64 or 1024 when the
//     workers do not run side by side, and none with 65536. Steer one
//     SA's packets to one worker, or use a large window.
//   - Sharded: each SA belongs to one worker, Processor.OwnerOf(spi)
//     (hash of the SPI, or Config.Worker when PinWorker is set). A worker
//     given a packet of an SA it does not own hands it, through a bounded
//     lock-free queue per pair of workers, to the owner (VerdictHandedOff;
//     DropQueueFull when full), which processes it in Worker.Drain. Better:
//     steer packets to the owner in the first place (an XDP program or
//     RSS by SPI), and nothing is handed off: a handed-off packet can
//     land far from the owner's own input, and a worker that falls
//     behind pushes it out of a small window (replay drops). Windows
//     need no lock and an
//     SA's hot lines stay in one core's cache, but one SA is limited to
//     one core.
//   - PerCPU (RFC 9611): a tunnel carries several SAs for the same
//     traffic, one per worker (Tunnel.SetOutbound(sa0, sa1, ...)); each
//     worker encrypts with its own, so outbound needs no hand-off and
//     nothing is shared; inbound SAs are owned as in Sharded (pin them
//     with Config.Worker to the worker the NIC steers them to). It scales
//     one tunnel over all cores at the cost of more SAs to negotiate.
//
// Counters are per worker in every mode: each SA has one cache-line
// padded block per worker (allocated on first use), written only by
// that worker and only once per run of consecutive packets of the SA;
// Stats sums them. In the Sharded and PerCPU modes no cache line is
// written by two workers on the fast path.
//
// A Processor has no goroutines of its own: run one goroutine per
// Worker and call its Inbound, Outbound and Drain. An SA must be driven
// by one Processor (its mode decides whether windows are locked).
package sa

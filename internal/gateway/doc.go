// Package gateway is the core of `espxdp run`: it turns a configuration
// (internal/config) into a running IPsec gateway — SAD, SPD, tunnels,
// an sa.Processor and an xdp.Engine between a ciphertext interface and a
// plaintext interface or TUN device — and keeps it running: SIGHUP-style
// reloads that leave unchanged SAs (and their replay windows, sequence
// numbers and counters) alone, a unix control socket speaking JSON
// (show sa, show stats, sa add|del|update, child-del, alloc-spi,
// release-spi, reload, events), NAT-T keepalives to UDP-encapsulating
// peers (RFC 3948 §2.3), outbound SAs that follow a float_remote peer
// (followEndpoint), SA lifetime events in the log and a drop log bounded
// in lines per interval.
//
// Clear text between the protected networks never crosses the gateway
// (RFC 4301 §5.2): Unprotected derives from the configuration what the
// cipher-side XDP program discards, and a fail-closed nftables table
// (FailClosedRuleset, InstallFailClosed, RemoveFailClosed) keeps the rule,
// in both directions, while the daemon is not running; it is left in
// place when the gateway stops (see docs/ARCHITECTURE.md).
//
// The engine's layout and socket tuning come from the gateway section
// (workers, steering, spread_chunk, rings, busy_poll; tuning.go): they
// are fixed at Start, so a reload that changes them is refused with
// ErrRestart; show stats and the metrics report the steering that runs,
// per-worker counters and the kernel's AF_XDP drops.
//
// IKEv2 peers (the configuration's peers:, ike.go) run one ike.Endpoint
// each on UDP 500 and 4500 sockets the gateway reads itself (open while
// a peer uses the local address: a reload that removes the last one
// closes them); their child
// SAs are installed as one, bound to the peer's tunnel, and rekeyed
// make-before-break on their soft-expiry events (show-ike,
// ike-initiate, ike-terminate on the control socket).
//
// Everything it does goes through the public APIs of sa and xdp: the
// control socket's sa add, del and update are the calls a Go IKE daemon
// would make on an sa.SAD.
package gateway

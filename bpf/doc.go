// Package bpf holds espxdp's XDP program, which steers IPsec ESP and
// NAT-T traffic into AF_XDP sockets and leaves everything else to the
// kernel, and the Go code that loads, configures and attaches it.
//
// The program (steer.c, with the ABI in steer.h) is compiled by bpf2go
// into steer_bpfel.o and embedded via steer_bpfel.go; both are committed,
// so building this package needs no C toolchain. After editing the C
// code run "go generate ./bpf/"; CI runs bpf/regen-check.sh to make sure
// the committed object matches the source. Only a little-endian object
// is built; on big-endian Linux Load returns ErrNotSupported.
//
// # Classification
//
// The program parses Ethernet with up to two VLAN tags (802.1Q 0x8100 or
// 802.1ad 0x88A8, in any combination), IPv4 with header length 5 to 15
// words, and IPv6 with up to six extension headers (hop-by-hop options,
// routing, destination options, fragment). Then, in this order:
//
//   - A third VLAN tag: in gateway mode (Plaintext or Unprotected)
//     dropped (FailClosedDropped, see "Fail closed"), else passed
//     (PassedNonIP).
//   - Not IPv4/IPv6 (ARP, LLDP, ...): passed (PassedNonIP).
//   - Truncated or inconsistent headers: passed (Malformed), unless the
//     fail-closed check below applies. This covers
//     frames shorter than a header, IPv4 IHL < 5 or a total length
//     shorter than the header or longer than the frame, IPv6 payload
//     length beyond the frame, extension headers running past the
//     packet, UDP length < 8 or beyond the IP packet, and ESP shorter
//     than SPI + sequence number. The program never returns
//     XDP_ABORTED, and XDP_DROP only for the clear-text discard and
//     fail closed.
//   - More than six IPv6 extension headers (or any other header the
//     program does not walk, e.g. AH, before the upper layer): passed
//     (PassedOther), unless the fail-closed check below applies.
//   - Outer fragments: see below.
//   - IP protocol 50 (ESP) to a local address: AF_XDP (ESPRedirected).
//   - UDP to Options.NATTPort (4500) to a local address, by payload
//     (RFC 3948), whose length comes from the UDP header so that Ethernet
//     padding is never mistaken for payload: exactly one byte 0xFF is a
//     NAT-keepalive, passed (KeepalivePassed); four zero bytes first are
//     the non-ESP marker of IKE, passed (IKEPassed); a non-zero SPI with
//     at least 8 bytes of payload is ESP, to AF_XDP (NATTRedirected);
//     anything else is Malformed.
//   - UDP to port 500 (IKE) to a local address: passed (IKEPassed).
//   - In Plaintext mode, anything else whose destination is in a
//     protected prefix (longest-prefix match, one trie per family): AF_XDP
//     for encryption (PlaintextRedirected). This includes ESP, NAT-T and
//     IKE packets that failed the local-address filter: transit traffic
//     to a protected network is plaintext to this gateway.
//   - With Options.Unprotected (ciphertext side), what is left is clear
//     text: if its source lies in a remote protected prefix it is
//     dropped (UnprotectedDropped), unless the first matching inbound
//     rule is a bypass (BypassPassed). See "Clear text from protected
//     networks".
//   - ESP, NAT-T or IKE that failed the local-address filter: passed
//     (NotLocal).
//   - Everything else (TCP, ICMP, other UDP, ...): passed (PassedOther).
//
// "To a local address" is always true unless Options.LocalAddrs is
// non-empty, which turns the local-address filter on.
//
// # Fragments
//
// Outer IP fragments (IPv4 with MF set or a non-zero offset; IPv6 with a
// fragment header that is not an atomic fragment) are passed to the
// kernel by default and counted as FragmentPassed. The kernel reassembles
// them, but then hands ESP to its own xfrm stack, which has no state for
// the SAs that user space holds, and NAT-T to whatever UDP socket is
// bound to the port (at most a plain socket that sees a datagram, not
// ESP): the packets are lost. Fragmented ESP is only decrypted when it is
// steered to user space and reassembled there (package esp/reasm, RFC
// 4303 §3.4.1), as below.
//
// With Options.SteerFragments, fragments to a local address that are ESP,
// a first UDP fragment to the NAT-T or IKE port, or a non-first UDP
// fragment (which has no port to tell), or that go to a protected prefix
// in Plaintext mode, are sent to AF_XDP (FragmentRedirected) for
// reassembly in user space; others are still passed (after the
// clear-text check). User space then also receives fragmented UDP that
// turns out not to be NAT-T (e.g. fragmented IKE on port 4500) and must
// hand it to the kernel itself, or drop it when its source is protected.
// All fragments go to the first socket of their RX queue (slot 0),
// because only the first fragment carries the SPI and reassembly needs
// them together. Note that in Plaintext mode without SteerFragments,
// fragmented plaintext to protected prefixes reaches the kernel
// unencrypted; configure the kernel not to forward it.
//
// # Clear text from protected networks
//
// RFC 4301 §5.2: an unprotected packet arriving from the ciphertext side
// that matches a PROTECT (or DISCARD) entry of the SPD is discarded,
// never forwarded (Linux xfrm's forward policy check, IOS's
// %CRYPTO-4-RECVD_PKT_NOT_IPSEC). With Options.Unprotected the program
// does that before the kernel sees the packet: a packet that is not ESP,
// NAT-T, IKE or a keepalive to a local address (those return first and
// cost nothing more) is looked up by its SOURCE in two LPM tries (IPv4,
// IPv6) of the remote protected prefixes. A miss passes as before. On a
// hit, the inbound rules (the SPD entries read inbound: source and
// destination swapped, at most MaxUnprotectedRules, in a bounded loop)
// decide, first match wins: a bypass rule passes the packet
// (BypassPassed), a protect or discard rule drops it
// (UnprotectedDropped), and no match drops it too unless the prefix is
// RulesOnly (it came from a policy's selector alone, which then decides
// by itself). Each drop is also counted per tunnel index in a
// per-CPU array (Program.UnprotectedDrops) and recorded as the CPU's
// last drop (Program.LastUnprotected), for a rate-limited log line.
// Unprotected.Classify is the same decision in Go: the tests check the
// program against it over random rules and packets, and the pcap tools
// use it. Fragments: a fragment from a protected source is dropped too
// (non-first fragments carry no ports, so only rules without port ranges
// can exempt them), except ESP and first UDP fragments to the NAT-T or
// IKE port of a local address, which may be the tunnel's own, and
// non-first UDP fragments to a local address steered for reassembly
// (SteerFragments; without it they are dropped). IKE, NAT-T markers and keepalives pass
// before the check; without LocalAddrs that includes UDP 500/4500 to any
// destination, which a forwarding host must filter itself (espxdp's
// gateway does, in its nftables table). ARP and other non-IP frames, and
// traffic from sources outside the protected prefixes (ICMP to the
// gateway from the Internet, the peer's IKE), are not affected.
//
// # Fail closed
//
// What the program cannot fully parse must not become a way around the
// discard (RFC 4301 §5.2). When the IP addresses were read but the rest
// was not (more than six IPv6 extension headers, an extension header or
// IP length running past the packet, IPv4 IHL < 5), the packet is
// opaque: its protocol and ports are unknown. To a protected prefix
// (Plaintext) it goes to AF_XDP (PlaintextRedirected), never to the
// kernel, which would route it in clear; the engine encrypts or drops
// it. From a remote protected prefix (Unprotected) it is dropped
// (UnprotectedDropped) if any protocol and ports would drop it: a bypass
// rule exempts it only if it has no protocol and no port ranges, a
// discard rule drops it if its addresses match (Packet.Opaque in
// Classify). Otherwise it is passed as before (PassedOther, Malformed).
// Without readable addresses (IP header truncated, wrong version) it is
// passed as Malformed: the kernel's IP input drops those itself. A frame
// with more than two VLAN tags has no reachable addresses; a gateway
// program (Plaintext or Unprotected) drops it (FailClosedDropped), since
// a kernel that strips tags would route the inner packet.
//
// # Steering
//
// A packet for AF_XDP goes to XSKMAP index
// queue*SocketsPerQueue + slot, where queue is the RX queue it arrived on
// and slot is 0, or with Options.SPIHash SPIHashSlot(spi, n) for ESP and
// PlaintextHashSlot(dst, n) for plaintext, or with Options.Spread
// (c / SpreadChunk) mod n, where c counts the packets this CPU spread
// (a per-CPU counter: runs of SpreadChunk consecutive packets go to one
// socket, then the next, whatever their SPI, so one SA on one RX queue
// reaches every socket of the queue). Fragments always take slot 0.
// Program.SocketIndex computes the index and Program.RegisterSocket
// fills it. If the slot is empty the packet is passed and counted as
// RedirectNoSocket instead of its redirect counter. SPIHashSlot is the
// owner function of the sa package's Sharded and PerCPU modes
// (sa.Processor.OwnerOf), so the xdp engine steers each SA to its owner.
//
// # Configuration
//
// The configuration (NAT-T port, feature flags, sockets per queue) is a
// "volatile const" struct in the object's read-only data, written by Load
// before the program is loaded and frozen by the kernel afterwards. The
// verifier therefore treats it as constants and prunes disabled
// features, and nothing can change it under a running program; to
// reconfigure, Load a new Program and attach it instead. Local addresses
// and protected prefixes live in maps (a hash map with one key type for
// both families, and two LPM tries), filled by Load.
//
// # Statistics
//
// A per-CPU array holds one counter per reason; Program.Stats sums it
// over CPUs into a Stats. Every packet increments exactly one counter.
//
// # Testing
//
// The tests run crafted frames through the program with BPF_PROG_TEST_RUN
// and assert both the verdict and the counters. A test run of
// bpf_redirect_map returns XDP_REDIRECT only if the XSKMAP slot holds a
// socket, so the tests put an unbound AF_XDP socket in the slot they
// expect (an XSKMAP accepts unbound sockets) and check that the program
// redirects when the socket is in that slot and falls back to XDP_PASS
// with RedirectNoSocket when it is in any other. A further test attaches
// the program to a veth pair in throw-away network namespaces in generic
// and native mode and sends real traffic through it. They need root and
// skip without it, except in CI (CI=true), where they fail instead.
package bpf

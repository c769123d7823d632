// Package vnet splits the TCP and UDP super-packets a TUN device opened
// with IFF_VNET_HDR and TSO/USO offloads hands its reader into the IP
// packets they stand for (Splitter), and coalesces the TCP segments of a
// batch to be written to such a device into super-packets (Coalescer),
// the way Linux GSO and GRO do. It is pure Go: no syscalls, no state
// beyond the two types, no allocation after a value exists.
//
// # The virtio-net header
//
// With IFF_VNET_HDR every read from and write to the device starts with
// a struct virtio_net_hdr (HdrLen = 10 bytes, Hdr), in host byte order
// (no TUNSETVNETBE/LE): flags (FlagNeedsCsum: the L4 checksum is
// partial, FlagDataValid), the GSO type (GSONone, GSOTCPv4, GSOTCPv6,
// GSOUDPL4, optionally |GSOECN for TCP), hdr_len, gso_size (the payload
// bytes per segment), csum_start (where the L4 header starts) and
// csum_offset (where its checksum field is, from csum_start). A packet
// with FlagNeedsCsum carries, in its checksum field, the ones'
// complement sum of the pseudo-header only (CHECKSUM_PARTIAL); whoever
// finishes it sums from csum_start to the end and stores the
// complement.
//
// # Invariants
//
// Splitter (see its doc for each rule):
//   - it never reads outside the packet it was Reset with and never
//     writes outside the dst of Next; the packet itself is never written;
//   - it never panics: every input it cannot split is refused by Reset
//     with ErrMalformed (the packet contradicts itself or the header) or
//     ErrUnsupported (valid, but not handled: UFO, IPv6 extension
//     headers other than hop-by-hop and destination options and a
//     routing header with no segments left, more than MaxSegments
//     segments, the kernel's GSO_MAX_SEGS);
//   - every TCP or UDP segment it produces carries a correct IP header
//     checksum (IPv4), correct length fields and a correct L4 checksum
//     computed over the segment itself, whatever the input's checksum
//     fields held.
//
// Coalescer (see its doc for each rule):
//   - a packet whose TCP or IPv4 header checksum does not verify is never
//     part of a super-packet: it is written alone, unchanged, with an
//     all-zero header, so the kernel drops it; nothing is repaired;
//   - each flow's packets leave in the order they were added;
//   - splitting a write it produced (as the kernel does, and as
//     Splitter does) gives back the packets of that write byte for byte:
//     groups take only what the split rebuilds exactly (consecutive IPv4
//     IDs, identical headers except seq, lengths, checksums and the
//     PSH/CWR rules).
package vnet

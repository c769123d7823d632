// Package reasm reassembles outer IP fragments (IPv4 and IPv6) before ESP
// processing, as RFC 4303 §3.4.1 requires: ESP and ESP-in-UDP (NAT-T,
// RFC 3948, where only the first fragment carries the UDP port) are
// authenticated over the whole packet, so a receiver must put the outer
// packet back together first. It is pure: no I/O, no clock (the caller
// passes the time), no dependency beyond the standard library.
//
// A Reassembler is meant to be owned by one data-plane worker: it is NOT
// safe for concurrent use. Add takes one IP packet; a non-fragment comes
// back as NotFragment and is the caller's to process as it is; a fragment
// is Buffered, completes a packet (Complete, with the reassembled packet)
// or is dropped with a reason (a Result for which Dropped is true).
//
// # Bounds
//
// Everything is allocated by New: Config.MaxSets slots of SlotSize bytes
// (one reassembly set each, data written at its final offset, so nothing
// is moved on completion) and a fixed table of Config.MaxFragments spans
// per set. Add and Expire allocate nothing. Sets are found by a linear
// scan of a compact key array (MaxSets is small, 64 by default).
//
//   - MaxSets concurrent sets. A fragment of a new set when all slots are
//     used first drops the timed-out sets, then evicts the oldest set
//     (Stats.Evicted).
//   - MaxMemory bytes of buffered fragment data over all sets. A fragment
//     that would exceed it evicts the oldest other sets; if it still does
//     not fit, it and its set are dropped (NoMemory).
//   - MaxFragments per set; one more drops the set (TooMany).
//   - Timeout per set, from its first fragment (RFC 791 and RFC 8200 start
//     the timer then and do not restart it). The default is 3 s, much
//     shorter than the kernel's 30 s or RFC 8200's 60 s: a data plane
//     reassembles fragments sent back to back by one sender, and a short
//     timeout limits how long a flood of incomplete sets holds memory.
//     Expired sets are dropped when seen by Add or by Expire.
//   - Reassembled size: 65535 bytes for IPv4 (the total length field),
//     65535 + 40 for IPv6 (the payload length field; jumbograms, RFC 2675,
//     are never fragmented). A fragment ending beyond that drops the set
//     (TooBig).
//
// # Hostile fragments
//
//   - Overlaps drop the whole set and the fragment (Overlap), for IPv6 as
//     RFC 5722 requires and for IPv4 as well: overlapping fragments have
//     no legitimate use and are the classic way to make a firewall and a
//     host see different packets (RFC 1858, RFC 3128).
//   - An exact duplicate (same offset, same length, same bytes) is ignored
//     and counted (Duplicate), as RFC 5722 permits: retransmissions by a
//     link layer or a duplicating path are not attacks. A fragment with
//     the same offset and length but other bytes is an overlap.
//   - Tiny first fragments are refused (TinyFirst), and their set dropped:
//     the first fragment must hold the whole upper-layer header chain
//     (RFC 7112 for IPv6; the same rule for IPv4, RFC 1858/3128), and of
//     the upper-layer protocol at least its header: 8 bytes of ESP (SPI and
//     sequence number), 16 of UDP (the UDP header and the 8 bytes that
//     tell ESP from IKE's non-ESP marker), 20 of TCP, 8 of anything else.
//   - A fragment that is not the last must have a length that is a
//     multiple of 8 (RFC 791, RFC 8200); empty fragments are refused too
//     (Malformed, the fragment only).
//   - A fragment header nested in the fragmentable part (next header 44
//     in a fragment header, or behind the extension headers of a first
//     fragment) is Malformed: RFC 8200 does not define nesting, and a
//     completed packet never carries a fragment header.
//   - A last fragment that disagrees with the set's length, or a fragment
//     ending beyond a known end, drops the set (Inconsistent).
//
// The reassembled packet takes the first fragment's IP header: IPv4
// total length set, MF and fragment offset cleared (DF and the reserved
// bit kept), header checksum recomputed; IPv6 payload length set, the
// fragment header removed and the next header of the header before it
// set to the fragment header's (RFC 8200 §4.5). It is ready for
// esp.ParseOuter.
//
// IPv6 atomic fragments (offset 0, M clear: RFC 6946) are not
// reassembled: Add removes the fragment header in place and returns the
// packet as Complete, counted as Atomic; one whose header chain runs past
// its end is refused as TinyFirst. An IPv4 packet with offset 0 and
// MF clear is not a fragment.
//
// Sets are keyed by (source, destination, identification, protocol) for
// IPv4 and (source, destination, identification) for IPv6.
//
// # Accounting
//
// Every fragment given to Add ends in exactly one place, so that
//
//	Fragments == InPackets + Duplicates + Refused + Discarded + Pending
//
// holds after every call (Stats.Balanced checks it): InPackets counts the
// fragments of reassembled packets, Refused the fragments dropped on
// arrival (by reason), Discarded the buffered fragments of sets dropped
// later (overlap, timeout, eviction, ...), Pending those still buffered.
package reasm

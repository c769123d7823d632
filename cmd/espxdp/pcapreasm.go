package main

import (
	"github.com/gopacket/gopacket"

	"github.com/espxdp/espxdp/esp/reasm"
	"github.com/espxdp/espxdp/internal/show"
)

// pcapReasmTimeout is how long pcap decrypt waits, in capture time, for
// the rest of a fragmented packet: the kernel's default (ipfrag_time),
// longer than a data plane's, since a capture is read after the fact.
const pcapReasmTimeout = 30e9

// newPcapReassembler returns the reassembler of pcap decrypt: outer
// fragments are put back together before ESP processing (RFC 4303
// §3.4.1).
func newPcapReassembler() *reasm.Reassembler {
	return reasm.New(reasm.Config{Timeout: pcapReasmTimeout})
}

// reassemble passes the IP packet ip, captured as ci, through the
// reassembler. It returns the packet to process (ip itself, or a
// reassembled packet valid until the next call) and false when there is
// none yet (a fragment kept, a duplicate or a dropped fragment; the
// reassembler counts them).
func (b *batch) reassemble(ip []byte, ci gopacket.CaptureInfo) ([]byte, bool) {
	out, res := b.ra.Add(ip, ci.Timestamp.UnixNano())
	switch res {
	case reasm.NotFragment:
		return ip, true
	case reasm.Complete:
		return out, true
	}
	return nil, false
}

// reasmCounters lists the reassembly counters of pcap decrypt.
func reasmCounters(r *reasm.Reassembler) []show.Counter {
	s := r.Stats()
	return []show.Counter{
		{Name: "outer fragments", Value: s.Fragments},
		{Name: "reassembled packets", Value: s.Reassembled},
		{Name: "fragments: duplicates (ignored)", Value: s.Duplicates},
		{Name: "fragments: atomic (RFC 6946)", Value: s.Atomic},
		{Name: "fragment drops: malformed", Value: s.Malformed},
		{Name: "fragment drops: tiny first fragment", Value: s.TinyFirst},
		{Name: "fragment drops: overlap (set dropped)", Value: s.Overlap},
		{Name: "fragment drops: too big (set dropped)", Value: s.TooBig},
		{Name: "fragment drops: too many fragments (set dropped)", Value: s.TooMany},
		{Name: "fragment drops: no memory (set dropped)", Value: s.NoMemory},
		{Name: "fragment drops: inconsistent (set dropped)", Value: s.Inconsistent},
		{Name: "fragment sets timed out", Value: s.Timeouts},
		{Name: "fragment sets evicted", Value: s.Evicted},
		{Name: "fragments discarded with their sets", Value: s.Discarded},
		{Name: "fragments incomplete at end of capture", Value: s.Pending},
	}
}

// Package show formats SA counters for people and programs: a text
// layout modelled on a router's "show crypto ipsec sa", and JSON. The
// CLI's pcap commands and "show sa" use it; so will the daemon's control
// socket. It never sees key material: its input is sa.Stats.
package show

import (
	"encoding/json"
	"fmt"
	"io"
	"net/netip"
	"sort"
	"strings"

	"github.com/espxdp/espxdp/sa"
)

// Report is what a show command prints.
type Report struct {
	// Title names the source, e.g. "interface: eth0" or "pcap: in.pcap".
	Title string `json:"title,omitempty"`
	// SAs are the SA snapshots, in configuration order.
	SAs []sa.Stats `json:"sas"`
	// Unowned are drops no SA can own (unknown SPI, not ESP, malformed
	// outer headers...); nil when not applicable.
	Unowned *sa.DropCounts `json:"unowned_drops,omitempty"`
	// Extra holds further named counters of the source (e.g. packets
	// read and written by a pcap command), printed after the SAs.
	Extra []Counter `json:"counters,omitempty"`
}

// Counter is one named counter.
type Counter struct {
	Name  string `json:"name"`
	Value uint64 `json:"value"`
}

// JSON writes r as indented JSON.
func JSON(w io.Writer, r *Report) error {
	if r.SAs == nil {
		r.SAs = []sa.Stats{}
	}
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(r)
}

// peer groups the SAs between one pair of endpoints, as a router shows
// them under one "current_peer".
type peer struct {
	local, remote         netip.Addr
	localPort, remotePort uint16
	udp                   bool
	in, out               []*sa.Stats
}

func groupPeers(stats []sa.Stats) []*peer {
	type key struct {
		l, r   netip.Addr
		lp, rp uint16
		udp    bool
	}
	var peers []*peer
	idx := map[key]*peer{}
	for i := range stats {
		s := &stats[i]
		k := key{s.Local, s.Remote, s.LocalPort, s.RemotePort, s.UDPEncap}
		p := idx[k]
		if p == nil {
			p = &peer{local: s.Local, remote: s.Remote, localPort: s.LocalPort, remotePort: s.RemotePort, udp: s.UDPEncap}
			idx[k] = p
			peers = append(peers, p)
		}
		if s.Direction == sa.In {
			p.in = append(p.in, s)
		} else {
			p.out = append(p.out, s)
		}
	}
	return peers
}

// Text writes r in the "show crypto ipsec sa" layout.
func Text(w io.Writer, r *Report) error {
	tw := &errWriter{w: w}
	if r.Title != "" {
		tw.printf("%s\n", r.Title)
	}
	if len(r.SAs) == 0 {
		tw.printf("\n   no SAs\n")
	}
	for _, p := range groupPeers(r.SAs) {
		writePeer(tw, p)
	}
	if r.Unowned != nil {
		tw.printf("\n   drops without an SA: %s\n", dropList(*r.Unowned, "none"))
	}
	if len(r.Extra) > 0 {
		tw.printf("\n")
		for _, c := range r.Extra {
			tw.printf("   %s: %d\n", c.Name, c.Value)
		}
	}
	return tw.err
}

func addrPort(a netip.Addr, port uint16, udp bool) string {
	s := "any"
	if a.IsValid() {
		s = a.String()
	}
	if udp {
		return fmt.Sprintf("%s/%d", s, port)
	}
	return s
}

func writePeer(w *errWriter, p *peer) {
	var encaps, encrypt, digest, encBytes, decaps, decrypt, verify, decBytes, sendErr, recvErr uint64
	for _, s := range p.out {
		encaps += s.EncapsPkts
		encrypt += s.EncryptPkts
		digest += s.DigestPkts
		encBytes += s.EncapsBytes
		sendErr += s.Drops.Total()
	}
	for _, s := range p.in {
		decaps += s.DecapsPkts
		decrypt += s.DecryptPkts
		verify += s.VerifyPkts
		decBytes += s.DecapsBytes
		recvErr += s.Drops.Total()
	}
	identPort := ""
	if p.udp {
		identPort = "/port"
	}
	w.printf("\n")
	w.printf("   local  ident (addr%s): (%s)\n", identPort, addrPort(p.local, p.localPort, p.udp))
	w.printf("   remote ident (addr%s): (%s)\n", identPort, addrPort(p.remote, p.remotePort, p.udp))
	if p.udp {
		w.printf("   current_peer %s port %d\n", addrPort(p.remote, 0, false), p.remotePort)
	} else {
		w.printf("   current_peer %s\n", addrPort(p.remote, 0, false))
	}
	w.printf("    #pkts encaps: %d, #pkts encrypt: %d, #pkts digest: %d\n", encaps, encrypt, digest)
	w.printf("    #pkts decaps: %d, #pkts decrypt: %d, #pkts verify: %d\n", decaps, decrypt, verify)
	w.printf("    #bytes encaps: %d, #bytes decaps: %d\n", encBytes, decBytes)
	w.printf("    #send errors %d, #recv errors %d\n", sendErr, recvErr)
	w.printf("\n")
	w.printf("     local crypto endpt.: %s, remote crypto endpt.: %s\n", addrPort(p.local, 0, false), addrPort(p.remote, 0, false))
	if len(p.out) > 0 {
		o := p.out[0]
		w.printf("     plaintext mtu %d, path mtu %s\n", o.PlaintextMTU, mtu(o.PathMTU))
		w.printf("     current outbound spi: %s\n", spi(o.SPI))
	} else if len(p.in) > 0 {
		i := p.in[0]
		w.printf("     plaintext mtu %d, path mtu %s\n", i.PlaintextMTU, mtu(i.PathMTU))
	}
	w.printf("\n     inbound esp sas:\n")
	for _, s := range p.in {
		writeSA(w, s)
	}
	w.printf("\n     outbound esp sas:\n")
	for _, s := range p.out {
		writeSA(w, s)
	}
}

func mtu(n int) string {
	if n <= 0 {
		return "unknown"
	}
	return fmt.Sprint(n)
}

func spi(x uint32) string { return fmt.Sprintf("0x%X(%d)", x, x) }

func writeSA(w *errWriter, s *sa.Stats) {
	w.printf("      spi: %s\n", spi(s.SPI))
	if s.Name != "" {
		w.printf("        name: %s\n", s.Name)
	}
	if s.Child != 0 {
		w.printf("        child: %d\n", s.Child)
	}
	w.printf("        transform: esp-%s ,\n", s.Transform)
	settings := []string{titleCase(s.Mode)}
	if s.UDPEncap {
		settings = append(settings, "UDP-Encaps")
	}
	if s.ESN {
		settings = append(settings, "ESN")
	}
	w.printf("        in use settings ={%s, }\n", strings.Join(settings, ", "))
	if s.Direction == sa.In {
		w.printf("        #pkts decaps: %d, #pkts decrypt: %d, #pkts verify: %d, #bytes: %d\n", s.DecapsPkts, s.DecryptPkts, s.VerifyPkts, s.DecapsBytes)
	} else {
		w.printf("        #pkts encaps: %d, #pkts encrypt: %d, #pkts digest: %d, #bytes: %d\n", s.EncapsPkts, s.EncryptPkts, s.DigestPkts, s.EncapsBytes)
	}
	w.printf("        drops: %s\n", dropList(s.Drops, "0"))
	h, sf := s.HardRemaining, s.SoftRemaining
	w.printf("        sa timing: remaining key lifetime (bytes/sec): (%s/%s)\n", remaining(h.Bytes), remaining(h.Seconds))
	if h.Packets != sa.Unlimited {
		w.printf("        remaining key lifetime (packets): %s\n", remaining(h.Packets))
	}
	if sf.Bytes != sa.Unlimited || sf.Packets != sa.Unlimited || sf.Seconds != sa.Unlimited {
		w.printf("        rekey due in (bytes/packets/sec): (%s/%s/%s)\n", remaining(sf.Bytes), remaining(sf.Packets), remaining(sf.Seconds))
	}
	if s.Direction == sa.In {
		if s.ReplayWindow > 0 {
			w.printf("        replay detection support: Y, replay window size: %d\n", s.ReplayWindow)
		} else {
			w.printf("        replay detection support: N\n")
		}
		w.printf("        highest seq received: %d\n", s.Seq)
	} else {
		w.printf("        last seq sent: %d\n", s.Seq)
	}
	w.printf("        Status: %s\n", strings.ToUpper(s.State.String()))
}

func titleCase(s string) string {
	if s == "" {
		return "?"
	}
	return strings.ToUpper(s[:1]) + s[1:]
}

func remaining(x int64) string {
	if x == sa.Unlimited || x < 0 {
		return "unlimited"
	}
	return fmt.Sprint(x)
}

// dropList formats the non-zero drop counters, most frequent first, as
// "replay 1, auth 1"; none when all are zero.
func dropList(d sa.DropCounts, none string) string {
	type kv struct {
		r sa.DropReason
		n uint64
	}
	var l []kv
	for r, n := range d {
		if n > 0 {
			l = append(l, kv{sa.DropReason(r), n})
		}
	}
	if len(l) == 0 {
		return none
	}
	sort.SliceStable(l, func(i, j int) bool { return l[i].n > l[j].n })
	parts := make([]string, len(l))
	for i, e := range l {
		parts[i] = fmt.Sprintf("%s %d", e.r, e.n)
	}
	return strings.Join(parts, ", ")
}

// errWriter keeps the first write error.
type errWriter struct {
	w   io.Writer
	err error
}

func (e *errWriter) printf(format string, args ...any) {
	if e.err == nil {
		_, e.err = fmt.Fprintf(e.w, format, args...)
	}
}

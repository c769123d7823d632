package config

import (
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"os"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/espxdp/espxdp/ike"
	"github.com/espxdp/espxdp/sa"
)

// Peer is one IKEv2 peer of the gateway (the peers: section): the
// gateway negotiates child SAs with it (package ike) and installs them
// in Tunnel, as it installs the static SAs of the sas: list.
//
//	peers:
//	  - name: siteB
//	    local: 192.0.2.1            # our address (IKE sockets bind to it)
//	    remote: 198.51.100.2        # or %any: respond only, to any address
//	    local_id: gw-a.example.net  # default: the local address
//	    remote_id: gw-b.example.net # default: any identity that proves the PSK
//	    psk_file: /etc/espxdp/siteB.psk  # mode 0600 (or psk_env: ESPXDP_PSK_SITEB)
//	    ike_proposals: [aes128gcm16-prfsha256-x25519]
//	    esp_proposals: [aes128gcm16]
//	    esn: no                     # no | yes | both
//	    local_ts: [10.1.0.0/24]
//	    remote_ts: [10.2.0.0/24]     # disjoint from every other peer's
//	    ike_rekey_time: 4h          # IKE SA rekey (when the ike package can)
//	    rekey_time: 1h              # child SA soft lifetime (rekey)
//	    rekey_bytes: 0              # child SA soft lifetime in bytes (0: none)
//	    rekey_packets: 0
//	    dpd_delay: 30s              # liveness check interval, 0: off
//	    dpd_action: restart         # clear | restart | none
//	    start_action: start         # start (initiate, and again when down) | none (respond only)
//	    encap: false                # force UDP encapsulation (NAT-T) of ESP
//	    tunnel: to-B                # the tunnel the child SAs bind to (default: the first); one peer per tunnel, without static out SAs
//	    retransmit_timeout: 1s      # first IKE retransmission, doubled each time
//	    retransmit_tries: 4
//
// The child SAs' hard lifetime is the soft one plus HardMargin (10%),
// as strongSwan's life_time defaults to 110% of rekey_time; the soft
// time lifetime is lowered by a random part of up to RandTime (10%) per
// child so that both peers do not start a rekey at the same moment.
type Peer struct {
	Name   string
	Local  netip.Addr
	Remote netip.Addr // invalid for %any
	// LocalID and RemoteID are the identities as written (an address
	// is an ID_IPV4_ADDR/ID_IPV6_ADDR, anything else an ID_FQDN, or an
	// ID_RFC822_ADDR with an @); RemoteID "" accepts any identity.
	LocalID, RemoteID string
	// PSK is the pre-shared key: the file's or variable's contents
	// (trailing newline removed), or the bytes of 0x-hex.
	PSK Secret
	// PSKSource names where the PSK came from, for messages ("file
	// /x", "env X"), never the PSK.
	PSKSource    string
	IKEProposals []string
	ESPProposals []string
	ESN          string // "no", "yes" or "both"
	LocalTS      []netip.Prefix
	RemoteTS     []netip.Prefix
	IKERekeyTime time.Duration
	RekeyTime    time.Duration
	RekeyBytes   uint64
	RekeyPackets uint64
	DPDDelay     time.Duration
	DPDAction    string // "clear", "restart" or "none"
	StartAction  string // "start" or "none"
	Encap        bool
	Tunnel       string
	// RetransmitTimeout is the first IKE retransmission timeout,
	// doubled on each of RetransmitTries retransmissions (like
	// strongSwan's charon.retransmit_timeout and _tries).
	RetransmitTimeout time.Duration
	RetransmitTries   int
	Pos               Pos
}

// Defaults and bounds of the peers: section.
const (
	DefaultRekeyTime    = time.Hour
	DefaultIKERekeyTime = 4 * time.Hour
	DefaultDPDDelay     = 30 * time.Second
	// DefaultRetransmitTimeout and DefaultRetransmitTries: an exchange
	// gives up after about 31 s (1+2+4+8+16).
	DefaultRetransmitTimeout = time.Second
	DefaultRetransmitTries   = 4
	// HardMargin is the part of the soft lifetime added to make the
	// hard one (hard = soft + soft/HardMargin).
	HardMargin = 10
	// MinPSKLen is the shortest PSK accepted (bytes).
	MinPSKLen = 16
)

// Responder reports whether the peer only answers (remote %any).
func (p *Peer) Responder() bool { return !p.Remote.IsValid() }

// Identity converts an identity as written to an ike.Identity; "" gives
// the address a (ID_IPV4_ADDR or ID_IPV6_ADDR).
func Identity(s string, a netip.Addr) ike.Identity {
	if s == "" {
		return ike.AddrID(a)
	}
	if ip, err := netip.ParseAddr(s); err == nil {
		return ike.AddrID(ip.Unmap())
	}
	if strings.Contains(s, "@") {
		return ike.Identity{Type: ike.IDEmail, Data: []byte(s)}
	}
	return ike.FQDN(s)
}

// SoftHard returns a child SA's soft and hard lifetimes from the
// peer's rekey settings: the soft time lowered by jitter (0 ≤ jitter <
// 1, a fraction of RekeyTime/HardMargin).
func (p *Peer) SoftHard(jitter float64) Lifetime {
	var l Lifetime
	if p.RekeyTime > 0 {
		cut := time.Duration(jitter * float64(p.RekeyTime/HardMargin))
		l.SoftTime = (p.RekeyTime - cut).Truncate(time.Second)
		if l.SoftTime < time.Second {
			l.SoftTime = time.Second
		}
		l.HardTime = p.RekeyTime + max(p.RekeyTime/HardMargin, time.Second)
	}
	if p.RekeyBytes > 0 {
		l.SoftBytes, l.HardBytes = p.RekeyBytes, p.RekeyBytes+max(p.RekeyBytes/HardMargin, 1)
	}
	if p.RekeyPackets > 0 {
		l.SoftPackets, l.HardPackets = p.RekeyPackets, p.RekeyPackets+max(p.RekeyPackets/HardMargin, 1)
	}
	return l
}

var peerFields = map[string]bool{
	"name": true, "local": true, "remote": true, "local_id": true, "remote_id": true,
	"psk_file": true, "psk_env": true, "ike_proposals": true, "esp_proposals": true, "esn": true,
	"local_ts": true, "remote_ts": true, "ike_rekey_time": true, "rekey_time": true,
	"rekey_bytes": true, "rekey_packets": true, "dpd_delay": true, "dpd_action": true,
	"start_action": true, "encap": true, "tunnel": true,
	"retransmit_timeout": true, "retransmit_tries": true,
}

// peers parses the peers: list.
func (p *parser) peers(n *yaml.Node, g *Gateway, cfg *Config) {
	p.list(n, "peers", func(m *yaml.Node, path string) {
		if pr := p.peer(m, path); pr != nil {
			cfg.Peers = append(cfg.Peers, pr)
		}
	})
	names := map[string]*Peer{}
	remotes := map[netip.Addr]*Peer{}
	tunnelPeer := map[string]*Peer{}
	anys := map[netip.Addr]*Peer{}
	for _, pr := range cfg.Peers {
		if o := names[pr.Name]; o != nil && pr.Name != "" {
			p.errorf(pr.Pos.Line, pr.Pos.Field+".name", "%q already used by %s", pr.Name, o.Pos.Field)
		}
		names[pr.Name] = pr
		if pr.Remote.IsValid() {
			if o := remotes[pr.Remote]; o != nil {
				p.errorf(pr.Pos.Line, pr.Pos.Field+".remote", "%v already the remote of %s (%s): IKE messages are dispatched by the peer's address", pr.Remote, o.Name, o.Pos.Field)
			}
			remotes[pr.Remote] = pr
		} else if pr.Local.IsValid() {
			// Invariant: at most one %any peer per local address, the
			// one gateway.peerFor dispatches unknown sources to
			// (TestRedTeamTwoAnyPeersOneAddress).
			if o := anys[pr.Local]; o != nil {
				p.errorf(pr.Pos.Line, pr.Pos.Field+".remote", "%%any already used on %v by %s (%s): IKE messages from unknown addresses go to one peer", pr.Local, o.Name, o.Pos.Field)
			}
			anys[pr.Local] = pr
		}
		if g == nil {
			continue
		}
		switch {
		case pr.Tunnel == "" && len(g.Tunnels) == 0:
			p.errorf(pr.Pos.Line, pr.Pos.Field+".tunnel", "no tunnel to bind the child SAs to: add one to tunnels: (out and in may stay empty)")
		case pr.Tunnel == "":
			pr.Tunnel = g.Tunnels[0].Name
		default:
			found := false
			for _, t := range g.Tunnels {
				found = found || t.Name == pr.Tunnel
			}
			if !found {
				p.errorf(pr.Pos.Line, pr.Pos.Field+".tunnel", "no tunnel named %q", pr.Tunnel)
			}
		}
		// Invariant (peer isolation, RFC 4301 §4.4.3): a tunnel's
		// outbound SAs all belong to one peer. Several outbound SAs of a
		// tunnel are per-CPU spreading (sa.Tunnel.SetOutbound), not a
		// choice by destination, so a second peer's (or a static) SA in
		// the same tunnel would get packets meant for the other one
		// (TestRedTeamTwoPeersOneTunnel).
		if pr.Tunnel != "" {
			if o := tunnelPeer[pr.Tunnel]; o != nil {
				p.errorf(pr.Pos.Line, pr.Pos.Field+".tunnel", "tunnel %q already carries peer %s (%s): a tunnel sends on one peer's SA only; give each peer its own tunnel", pr.Tunnel, o.Name, o.Pos.Field)
			} else {
				tunnelPeer[pr.Tunnel] = pr
			}
			for _, t := range g.Tunnels {
				if t.Name == pr.Tunnel && len(t.Out) > 0 {
					p.errorf(pr.Pos.Line, pr.Pos.Field+".tunnel", "tunnel %q has static outbound SAs %v: a peer needs a tunnel of its own (out: empty)", pr.Tunnel, t.Out)
				}
			}
		}
		if len(g.Cipher.Local) > 0 && pr.Local.IsValid() {
			ok := false
			for _, a := range g.Cipher.Local {
				ok = ok || a == pr.Local
			}
			if !ok {
				p.errorf(pr.Pos.Line, pr.Pos.Field+".local", "%v is not among interfaces.cipher.local %v (the data plane takes only ESP to those)", pr.Local, g.Cipher.Local)
			}
		}
	}
	// Invariant (PAD, RFC 4301 §4.4.3): the remote_ts of two peers are
	// disjoint, so that no peer can negotiate a child whose inbound SA
	// delivers another peer's sources or whose selectors cover another
	// peer's networks (TestRedTeamPeersOverlappingRemoteTS).
	for i, a := range cfg.Peers {
		for _, b := range cfg.Peers[:i] {
			for _, x := range a.RemoteTS {
				for _, y := range b.RemoteTS {
					if x.Overlaps(y) {
						p.errorf(a.Pos.Line, a.Pos.Field+".remote_ts", "%v overlaps %v of peer %s (%s): a peer may only negotiate its own networks", x, y, b.Name, b.Pos.Field)
					}
				}
			}
		}
	}
	// Same invariant against the static side: a peer's remote_ts do
	// not overlap the destination of a protect policy that sends into
	// another tunnel (TestRedTeamPeerRemoteTSCoversStaticPolicy).
	if g != nil {
		for _, pr := range cfg.Peers {
			for _, pol := range g.Policies {
				if pol.Action != sa.Protect {
					continue
				}
				pt := pol.Tunnel
				if pt == "" && pol.SA != "" {
					pt = g.TunnelOf(pol.SA)
				}
				if pt == "" && len(g.Tunnels) > 0 {
					pt = g.Tunnels[0].Name
				}
				if pt == pr.Tunnel || !pol.Selector.Dst.IsValid() {
					continue
				}
				for _, x := range pr.RemoteTS {
					if x.Overlaps(pol.Selector.Dst) {
						p.errorf(pr.Pos.Line, pr.Pos.Field+".remote_ts", "%v overlaps %v, which policy %s sends into tunnel %s: a peer may only negotiate its own networks", x, pol.Selector.Dst, pol.Name, pt)
					}
				}
			}
		}
	}
	// Same invariant for derived selectors: a tunnel's inbound SAs
	// derive no source inside another tunnel's peer's remote_ts
	// (InboundSelectors; TestDerivedSelectorsLeaveOutPeers).
	if g != nil {
		g.peerTS = map[string][]netip.Prefix{}
		for _, pr := range cfg.Peers {
			g.peerTS[pr.Tunnel] = append(g.peerTS[pr.Tunnel], pr.RemoteTS...)
		}
	}
	// Same invariant against static SAs with selectors of their own
	// (selectors:, remote_ts:): none may speak for a peer's networks
	// (TestPeerRemoteTSCoversStaticSA); the control socket's sa-add and
	// sa-update check the same with PeerTSOverlap.
	for _, c := range cfg.SAs {
		if c.Selectors == nil {
			continue
		}
		if o := PeerTSOverlap(cfg.Peers, g.TunnelOf(c.Name), c.Direction, c.Selectors); o != nil {
			p.errorf(max(c.lines["selectors"], c.lines["remote_ts"], c.lines["local_ts"], c.Pos.Line), c.Pos.Field+".selectors", "%v", o)
		}
	}
	if g == nil && len(cfg.Peers) > 0 {
		p.errorf(n.Line, "peers", "peers need a gateway (interfaces:, tunnels:)")
	}
}

// TSOverlap is a static SA's selector that overlaps the remote_ts of
// an IKE peer (PeerTSOverlap).
type TSOverlap struct {
	// Peer is the peer whose remote_ts is overlapped.
	Peer *Peer
	// Remote is the SA's remote-side prefix (inbound: the source;
	// outbound: the destination; invalid: any address); TS the peer's
	// remote_ts it overlaps.
	Remote, TS netip.Prefix
}

func (o *TSOverlap) Error() string {
	r := "any address"
	if o.Remote.IsValid() {
		r = o.Remote.String()
	}
	return fmt.Sprintf("selector %s overlaps remote_ts %v of IKE peer %s (%s): only that peer may speak for its networks (RFC 4301 §4.4.3)",
		r, o.TS, o.Peer.Name, o.Peer.Pos)
}

// PeerTSOverlap returns where the selectors sels of a static SA of
// direction dir bound to tunnel ("" for none) overlap the remote_ts of
// one of peers (the first found), or nil. The remote side of a
// selector is its source for an inbound SA (what the SA may deliver)
// and its destination for an outbound one; an invalid prefix is any
// address. A peer bound to tunnel itself is skipped (the gateway keeps
// static SAs out of peers' tunnels apart).
//
// Invariant (PAD, RFC 4301 §4.4.3; TestPeerRemoteTSCoversStaticSA and
// the gateway's TestControlSAAddOverPeerTS): no static SA of another
// tunnel has a selector overlapping a peer's remote_ts, so no static
// peer can deliver packets with an IKE peer's sources nor be chosen for
// its networks.
func PeerTSOverlap(peers []*Peer, tunnel string, dir Direction, sels []sa.Selector) *TSOverlap {
	for _, pr := range peers {
		if tunnel != "" && pr.Tunnel == tunnel {
			continue
		}
		for _, s := range sels {
			r := s.Dst
			if dir == In {
				r = s.Src
			}
			for _, x := range pr.RemoteTS {
				if !r.IsValid() || r.Overlaps(x) {
					return &TSOverlap{Peer: pr, Remote: r, TS: x}
				}
			}
		}
	}
	return nil
}

func (p *parser) peer(n *yaml.Node, path string) *Peer {
	if n.Kind != yaml.MappingNode {
		p.errorf(n.Line, path, "want a mapping of peer fields")
		return nil
	}
	pr := &Peer{Pos: Pos{File: p.file, Line: n.Line, Field: path}, ESN: "no", RekeyTime: DefaultRekeyTime,
		IKERekeyTime: DefaultIKERekeyTime, DPDDelay: DefaultDPDDelay, DPDAction: "restart", StartAction: "start",
		RetransmitTimeout: DefaultRetransmitTimeout, RetransmitTries: DefaultRetransmitTries}
	vals := map[string]*yaml.Node{}
	p.fields(n, path, func(key string, _, v *yaml.Node) bool {
		if !peerFields[key] {
			return false
		}
		vals[key] = v
		f := join(path, key)
		switch key {
		case "name":
			pr.Name = p.name(v, f)
		case "local":
			pr.Local = p.addr(v, f)
		case "remote":
			if t, ok := p.scalar(v, f); ok && (t == "%any" || t == "any") {
				break
			}
			pr.Remote = p.addr(v, f)
		case "local_id":
			pr.LocalID = p.identity(v, f)
		case "remote_id":
			pr.RemoteID = p.identity(v, f)
		case "psk_file":
			if t, ok := p.scalar(v, f); ok {
				pr.PSK, pr.PSKSource = p.pskFile(v, f, t), "file "+t
			}
		case "psk_env":
			if t, ok := p.scalar(v, f); ok {
				pr.PSKSource = "env " + t
				s, set := os.LookupEnv(t)
				if !set {
					p.errorf(v.Line, f, "environment variable %s is not set", t)
				} else {
					pr.PSK = p.pskValue(v, f, []byte(s))
				}
			}
		case "ike_proposals":
			pr.IKEProposals = p.names(v, f)
			for _, s := range pr.IKEProposals {
				if _, err := ike.ParseIKEProposal(s); err != nil {
					p.errorf(v.Line, f, "%v", err)
				}
			}
		case "esp_proposals":
			pr.ESPProposals = p.names(v, f)
		case "esn":
			pr.ESN = p.oneOf(v, f, "no", "yes", "both")
		case "local_ts":
			pr.LocalTS = p.prefixList(v, f)
		case "remote_ts":
			pr.RemoteTS = p.prefixList(v, f)
		case "ike_rekey_time":
			pr.IKERekeyTime = p.seconds(v, f)
		case "rekey_time":
			pr.RekeyTime = p.seconds(v, f)
		case "rekey_bytes":
			pr.RekeyBytes, _ = p.uint(v, f, 64)
		case "rekey_packets":
			pr.RekeyPackets, _ = p.uint(v, f, 64)
		case "dpd_delay":
			pr.DPDDelay = p.seconds(v, f)
		case "dpd_action":
			pr.DPDAction = p.oneOf(v, f, "restart", "clear", "none")
		case "start_action":
			pr.StartAction = p.oneOf(v, f, "start", "none")
		case "encap":
			pr.Encap, _ = p.bool(v, f)
		case "tunnel":
			pr.Tunnel = p.name(v, f)
		case "retransmit_timeout":
			pr.RetransmitTimeout = p.interval(v, f)
			switch {
			case pr.RetransmitTimeout <= 0:
				p.errorf(v.Line, f, "want a positive duration such as 1s")
				pr.RetransmitTimeout = DefaultRetransmitTimeout
			case pr.RetransmitTimeout > ike.MaxRetransmit:
				p.errorf(v.Line, f, "at most %v (it doubles with every retransmission), got %v", ike.MaxRetransmit, pr.RetransmitTimeout)
				pr.RetransmitTimeout = DefaultRetransmitTimeout
			}
		case "retransmit_tries":
			if x, ok := p.uint(v, f, 8); ok {
				if x < 1 || x > 10 {
					p.errorf(v.Line, f, "want 1..10, got %d", x)
				}
				pr.RetransmitTries = int(min(max(x, 1), 10))
			}
		}
		return true
	})
	req := func(key, why string) {
		if vals[key] == nil {
			p.errorf(n.Line, join(path, key), "missing (%s)", why)
		}
	}
	req("name", "names the peer in logs and show ike")
	req("local", "our address: the IKE sockets bind to it")
	req("remote", "the peer's address, or %any to answer any")
	req("local_ts", "our protected networks")
	req("remote_ts", "the peer's protected networks")
	switch {
	case vals["psk_file"] != nil && vals["psk_env"] != nil:
		p.errorf(vals["psk_env"].Line, join(path, "psk_env"), "psk_file and psk_env are alternatives; set one")
	case vals["psk_file"] == nil && vals["psk_env"] == nil:
		p.errorf(n.Line, join(path, "psk_file"), "missing (or psk_env): the pre-shared key")
	}
	if pr.Local.IsValid() && pr.Remote.IsValid() && pr.Local.Is4() != pr.Remote.Is4() {
		p.errorf(vals["remote"].Line, join(path, "remote"), "%v and local %v are of different address families", pr.Remote, pr.Local)
	}
	if pr.Responder() && pr.StartAction == "start" && vals["remote"] != nil {
		if vals["start_action"] != nil {
			p.errorf(vals["start_action"].Line, join(path, "start_action"), "start needs a remote address, not %%any")
		}
		pr.StartAction = "none"
	}
	if len(pr.LocalTS) > ike.MaxTS || len(pr.RemoteTS) > ike.MaxTS {
		p.errorf(n.Line, path, "at most %d local_ts and remote_ts each", ike.MaxTS)
	}
	if _, err := ike.ESPProposal(orDefault(pr.ESPProposals, "aes128gcm16"), pr.ESN); err != nil {
		line := n.Line
		if v := vals["esp_proposals"]; v != nil {
			line = v.Line
		}
		p.errorf(line, join(path, "esp_proposals"), "%v", err)
	}
	if pr.RekeyTime > 0 && pr.RekeyTime < 2*time.Second {
		p.errorf(vals["rekey_time"].Line, join(path, "rekey_time"), "at least 2s, got %v", pr.RekeyTime)
	}
	if pr.RekeyTime == 0 && pr.RekeyBytes == 0 && pr.RekeyPackets == 0 {
		p.errorf(n.Line, join(path, "rekey_time"), "rekey_time, rekey_bytes and rekey_packets are all 0: a child SA would never be rekeyed (RFC 4106 needs fresh keys)")
	}
	return pr
}

func orDefault(l []string, d string) []string {
	if len(l) == 0 {
		return []string{d}
	}
	return l
}

// identity parses local_id or remote_id.
func (p *parser) identity(v *yaml.Node, f string) string {
	t, ok := p.scalar(v, f)
	if ok && (len(t) > 255 || strings.ContainsAny(t, " \t")) {
		p.errorf(v.Line, f, "want an address, a host name or user@domain, got %s", quoteShort(t))
	}
	return t
}

// maxPSKFile is the largest PSK file read (a PSK is at most a few
// hundred bytes; the rest is refused, not read).
const maxPSKFile = 4096

// pskFile reads a PSK file. Like ssh with private keys, it refuses a
// file that others than its owner may read or write, or that belongs
// to another user than root or the gateway's.
//
// Invariant (TestRedTeamPSKFileSwapAndOwner): the PSK is read from the
// very file whose mode and owner were checked: the checks are made with
// Stat on the open descriptor, so a symlink or file swapped on the path
// after the check is not read. A FIFO or device is refused without
// blocking (opened non-blocking, then not a regular file).
func (p *parser) pskFile(v *yaml.Node, f, path string) Secret {
	if !strings.HasPrefix(path, "/") {
		p.errorf(v.Line, f, "want an absolute path, got %s", quoteShort(path))
		return nil
	}
	fd, err := openNoBlock(path)
	if err != nil {
		p.errorf(v.Line, f, "%v", err)
		return nil
	}
	defer fd.Close()
	fi, err := fd.Stat()
	if err != nil {
		p.errorf(v.Line, f, "%v", err)
		return nil
	}
	if !fi.Mode().IsRegular() {
		p.errorf(v.Line, f, "%s is not a regular file (%v)", path, fi.Mode().Type())
		return nil
	}
	if m := fi.Mode().Perm(); m&0o077 != 0 {
		p.errorf(v.Line, f, "%s is mode %04o: a PSK file must not be accessible to group or others (chmod 600 %s)", path, m, path)
		return nil
	}
	if uid, ok := fileOwner(fi); ok && uid != 0 && uid != os.Geteuid() {
		p.errorf(v.Line, f, "%s belongs to uid %d: a PSK file must belong to root or the gateway's user (uid %d), or its owner chooses the PSK", path, uid, os.Geteuid())
		return nil
	}
	if fi.Size() > maxPSKFile {
		p.errorf(v.Line, f, "%s has %d bytes: a PSK file has at most %d", path, fi.Size(), maxPSKFile)
		return nil
	}
	if pskChecked != nil {
		pskChecked(path)
	}
	b := make([]byte, maxPSKFile+1)
	n, err := io.ReadFull(fd, b)
	if err != nil && !errors.Is(err, io.ErrUnexpectedEOF) && !errors.Is(err, io.EOF) {
		clear(b)
		p.errorf(v.Line, f, "%v", err)
		return nil
	}
	if n > maxPSKFile {
		clear(b)
		p.errorf(v.Line, f, "%s has more than %d bytes: a PSK file has at most %d", path, maxPSKFile, maxPSKFile)
		return nil
	}
	s := p.pskValue(v, f, b[:n])
	clear(b)
	return s
}

// pskChecked, set by tests only, runs after a PSK file's permissions
// were checked and before it is read.
var pskChecked func(path string)

// pskValue turns the PSK text into the key: 0x-hex is decoded, other
// text taken as is without its trailing newline. It never quotes it.
func (p *parser) pskValue(v *yaml.Node, f string, b []byte) Secret {
	t := strings.TrimRight(string(b), "\r\n")
	var s Secret
	if h, ok := strings.CutPrefix(t, "0x"); ok {
		d, err := decodeHex(h)
		if err != nil {
			p.errorf(v.Line, f, "the PSK starts with 0x but is not hex")
			return nil
		}
		s = d
	} else {
		s = Secret(t)
	}
	if len(s) < MinPSKLen {
		p.errorf(v.Line, f, "the PSK has %d bytes, want at least %d", len(s), MinPSKLen)
		s.Wipe()
		return nil
	}
	return s
}

// String describes the peer for logs, without the PSK.
func (p *Peer) String() string {
	r := "%any"
	if p.Remote.IsValid() {
		r = p.Remote.String()
	}
	return fmt.Sprintf("peer %s (%v ⇄ %s)", p.Name, p.Local, r)
}

// Fingerprint identifies the peer's configuration, PSK included (as a
// hash), for reloads: peers with the same one need no change.
func (p *Peer) Fingerprint() [32]byte {
	c := *p
	c.Pos, c.PSK = Pos{}, nil
	h := sha256.New()
	fmt.Fprintf(h, "%+v|%d|", c, len(p.PSK))
	h.Write(p.PSK)
	var s [32]byte
	copy(s[:], h.Sum(nil))
	return s
}

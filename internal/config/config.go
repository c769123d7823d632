// Package config loads espxdp's YAML configuration: the statically keyed
// Security Associations a gateway uses.
//
// The file is decoded through yaml.Node rather than into structs so that
// every error names both the field and its line, for example
//
//	gw.yaml:12: sas[1].key: want 36 bytes of hex for aes256gcm16 (key‖salt), got 32
//
// Unknown and duplicate fields are errors. Key material is held in Secret
// values, which never print their contents, and no error message quotes a
// key.
//
// A configuration looks like this:
//
//	sas:
//	  - name: to-siteB
//	    direction: out          # in | out
//	    spi: 0x1000             # decimal or 0x hex, not 0
//	    mode: tunnel            # tunnel (default) | transport
//	    local: 192.0.2.1
//	    remote: 198.51.100.2
//	    encap: udp              # none (default) | udp (RFC 3948 NAT-T)
//	    local_port: 4500        # udp only, default 4500
//	    remote_port: 4500       # udp only, default 4500
//	    transform: aes256gcm16  # see esp.ParseTransform
//	    key: 0x...              # hex, salt/nonce included as in RFC 4106 / xfrm
//	    auth_key: 0x...         # HMAC key of non-AEAD transforms
//	    esn: true               # default false
//	    replay_window: 1024     # inbound only; 0 = off, default 1024
//	    lifetime: {soft_bytes: 1000000000, hard_bytes: 1200000000, soft_seconds: 1h, hard_seconds: 70m}
//	    path_mtu: 1500          # default 1500
//	    remote_ts: [10.2.0.0/24] # traffic selectors (or selectors: [...] / any); see selectors.go
//	    child: 7                # groups the SAs of one IKE child SA (sa del --child 7); optional, 1 to 2^32-1
//	    float_remote: true      # inbound, encap udp only; see below
//
// Beside (or instead of) sas, a gateway configuration may have peers:
// IKEv2 peers whose child SAs the gateway negotiates (see Peer).
//
// float_remote: an inbound NAT-T SA accepts its peer from any address and
// port, and when an authenticated, new packet arrives from another one
// the gateway moves the outbound SAs of its tunnel (or child) there, in
// place; RFC 7296 §2.23 leaves such moves to the IKE daemon for IKE
// peers, so for static NAT-T peers float_remote is the operator's
// explicit choice to trust authenticated ESP for it.
package config

import (
	"bytes"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/espxdp/espxdp/esp"
	"github.com/espxdp/espxdp/ike"
	"github.com/espxdp/espxdp/sa"
	"go.yaml.in/yaml/v3"
)

// ErrInvalid is wrapped by every error Parse and Load report about the
// contents of a configuration (syntax, unknown fields, bad values).
var ErrInvalid = errors.New("config: invalid configuration")

// Defaults applied to fields a configuration leaves out.
const (
	DefaultReplayWindow = 1024
	DefaultPathMTU      = 1500
	DefaultNATTPort     = esp.NATTPort
	// MaxReplayWindow bounds replay_window (packets).
	MaxReplayWindow = sa.MaxReplayWindow
	// maxErrors caps how many problems one Parse reports.
	maxErrors = 20
)

// Direction says whether an SA protects traffic we send or receive.
type Direction uint8

// Directions.
const (
	In Direction = iota + 1
	Out
)

func (d Direction) String() string {
	switch d {
	case In:
		return "in"
	case Out:
		return "out"
	}
	return fmt.Sprintf("Direction(%d)", uint8(d))
}

// Encap is the encapsulation of ESP packets on the wire.
type Encap uint8

// Encapsulations.
const (
	EncapNone Encap = iota // ESP directly over IP (protocol 50)
	EncapUDP               // ESP in UDP, RFC 3948
)

func (e Encap) String() string {
	switch e {
	case EncapNone:
		return "none"
	case EncapUDP:
		return "udp"
	}
	return fmt.Sprintf("Encap(%d)", uint8(e))
}

// Secret is key material. Its String, GoString and Format methods never
// reveal the bytes, so a Secret is safe to pass to a logger or fmt verb by
// accident; use the []byte conversion to get at the key.
type Secret []byte

func (s Secret) String() string { return fmt.Sprintf("[secret, %d bytes]", len(s)) }

// GoString implements fmt.GoStringer.
func (s Secret) GoString() string { return s.String() }

// Format implements fmt.Formatter for every verb (%x included).
func (s Secret) Format(f fmt.State, _ rune) { io.WriteString(f, s.String()) }

// MarshalText keeps keys out of JSON and YAML encodings.
func (s Secret) MarshalText() ([]byte, error) { return []byte(s.String()), nil }

// Wipe zeroes the key material.
func (s Secret) Wipe() { clear(s) }

// Lifetime holds the soft and hard limits of an SA (RFC 4301 §4.4.2.1).
// Zero means no limit.
type Lifetime struct {
	SoftBytes, HardBytes     uint64
	SoftPackets, HardPackets uint64
	SoftTime, HardTime       time.Duration
}

// Pos is where something was defined.
type Pos struct {
	File  string
	Line  int
	Field string // e.g. "sas[1]"
}

func (p Pos) String() string { return fmt.Sprintf("%s:%d: %s", p.File, p.Line, p.Field) }

// Errorf returns an *Error located at p (for problems found after Parse,
// such as a library refusing the SA).
func (p Pos) Errorf(format string, args ...any) error {
	return &Error{File: p.File, Line: p.Line, Field: p.Field, Msg: fmt.Sprintf(format, args...)}
}

// SA is one configured Security Association, validated and with defaults
// applied.
type SA struct {
	Name       string
	Direction  Direction
	SPI        uint32
	Mode       esp.Mode
	Local      netip.Addr
	Remote     netip.Addr
	Encap      Encap
	LocalPort  uint16 // NAT-T only
	RemotePort uint16 // NAT-T only
	Transform  esp.Transform
	Key        Secret
	AuthKey    Secret
	ESN        bool
	// ReplayWindow is the anti-replay window in packets (inbound SAs);
	// 0 disables anti-replay.
	ReplayWindow int
	Lifetime     Lifetime
	PathMTU      int
	// Selectors are the SA's own traffic selectors (selectors:, or
	// remote_ts/local_ts), as the packets it carries appear; nil means
	// none were configured (see Gateway.SelectorsOf for the default).
	Selectors []sa.Selector
	// Child groups the SAs of one IKE child SA (child:, 0: none; below
	// ike.ChildIDBase, the ids the ike package gives its children); see
	// sa.Config.Child.
	Child sa.ChildID
	// FloatRemote (float_remote:, inbound NAT-T SAs only) lets the peer's
	// address and port float; see sa.Config.FloatRemote.
	FloatRemote bool
	Pos         Pos

	lines map[string]int // line of each field, for checks across SAs
}

// IPv6 reports whether the SA's endpoints are IPv6.
func (s *SA) IPv6() bool { return s.Local.Is6() && !s.Local.Is4In6() }

// Config is a parsed configuration file.
type Config struct {
	File string
	SAs  []*SA
	// Gateway holds the sections `espxdp run` uses (interfaces,
	// tunnels, policies, options); nil when the file has only sas.
	Gateway *Gateway
	// Peers are the IKEv2 peers (peers:, see Peer); they need a
	// Gateway.
	Peers []*Peer
}

// Lookup returns the SA with the given name.
func (c *Config) Lookup(name string) (*SA, bool) {
	for _, s := range c.SAs {
		if s.Name == name {
			return s, true
		}
	}
	return nil, false
}

// Wipe zeroes all key material in c.
func (c *Config) Wipe() {
	for _, s := range c.SAs {
		s.Key.Wipe()
		s.AuthKey.Wipe()
	}
	for _, p := range c.Peers {
		p.PSK.Wipe()
	}
}

// Error is one problem in a configuration file.
type Error struct {
	File  string
	Line  int    // 1-based; 0 when unknown
	Field string // path such as "sas[1].key"; empty for file-level problems
	Msg   string
}

func (e *Error) Error() string {
	var b strings.Builder
	b.WriteString(e.File)
	if e.Line > 0 {
		fmt.Fprintf(&b, ":%d", e.Line)
	}
	b.WriteString(": ")
	if e.Field != "" {
		b.WriteString(e.Field)
		b.WriteString(": ")
	}
	b.WriteString(e.Msg)
	return b.String()
}

// Unwrap makes errors.Is(err, ErrInvalid) true.
func (e *Error) Unwrap() error { return ErrInvalid }

// ErrorList is what Parse returns when it found more than one problem;
// they are in file order.
type ErrorList []*Error

func (l ErrorList) Error() string {
	s := make([]string, len(l))
	for i, e := range l {
		s[i] = e.Error()
	}
	return strings.Join(s, "\n")
}

// Unwrap returns the individual errors.
func (l ErrorList) Unwrap() []error {
	out := make([]error, len(l))
	for i, e := range l {
		out[i] = e
	}
	return out
}

// Load reads and parses the configuration file at path.
func Load(path string) (*Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	return Parse(filepath.Base(path), data)
}

// Parse parses a configuration; file names it in error messages.
func Parse(file string, data []byte) (*Config, error) {
	p := &parser{file: file}
	cfg := p.parse(data)
	sort.SliceStable(p.errs, func(i, j int) bool { return p.errs[i].Line < p.errs[j].Line })
	switch len(p.errs) {
	case 0:
		return cfg, nil
	case 1:
		cfg.Wipe()
		return nil, p.errs[0]
	}
	cfg.Wipe()
	return nil, p.errs
}

type parser struct {
	file string
	errs ErrorList
}

func (p *parser) errorf(line int, field, format string, args ...any) {
	if len(p.errs) >= maxErrors {
		return
	}
	p.errs = append(p.errs, &Error{File: p.file, Line: line, Field: field, Msg: fmt.Sprintf(format, args...)})
}

var yamlLine = regexp.MustCompile(`^yaml: line (\d+): (.*)$`)

func (p *parser) parse(data []byte) *Config {
	cfg := &Config{File: p.file}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var doc yaml.Node
	if err := dec.Decode(&doc); err != nil {
		if errors.Is(err, io.EOF) {
			p.errorf(0, "", "empty configuration")
			return cfg
		}
		// yaml.v3 syntax errors read "yaml: line N: msg"; re-shape them
		// so that every error has the same "file:line: msg" form.
		if m := yamlLine.FindStringSubmatch(err.Error()); m != nil {
			n, _ := strconv.Atoi(m[1])
			p.errorf(n, "", "YAML syntax: %s", m[2])
		} else {
			p.errorf(0, "", "%s", strings.TrimPrefix(err.Error(), "yaml: "))
		}
		return cfg
	}
	var extra yaml.Node
	if err := dec.Decode(&extra); err == nil {
		p.errorf(extra.Line, "", "more than one YAML document")
	}
	root := deref(&doc)
	if root.Kind == yaml.DocumentNode && len(root.Content) == 1 {
		root = deref(root.Content[0])
	}
	if root.Kind != yaml.MappingNode {
		p.errorf(root.Line, "", "want a mapping with a sas: list at the top level")
		return cfg
	}
	top := map[string]*yaml.Node{}
	p.fields(root, "", func(key string, k, v *yaml.Node) bool {
		if !topFields[key] {
			return false
		}
		top[key] = v
		return true
	})
	sas := top["sas"]
	gw := top["gateway"] != nil || top["interfaces"] != nil
	switch {
	case sas == nil && !gw:
		p.errorf(root.Line, "sas", "missing (want a list of SAs)")
	case sas == nil:
	case sas.Kind != yaml.SequenceNode:
		p.errorf(sas.Line, "sas", "want a list of SAs")
		sas = nil
	case len(sas.Content) == 0 && !gw:
		p.errorf(sas.Line, "sas", "no SAs")
	}
	if sas != nil {
		for i, n := range sas.Content {
			if s := p.sa(deref(n), fmt.Sprintf("sas[%d]", i)); s != nil {
				cfg.SAs = append(cfg.SAs, s)
			}
		}
	}
	p.crossCheck(cfg.SAs)
	cfg.Gateway = p.gateway(top, cfg)
	if n := top["peers"]; n != nil {
		p.peers(n, cfg.Gateway, cfg)
	}
	p.checkUDPCipher(cfg)
	return cfg
}

// checkUDPCipher checks the SAs of a gateway whose cipher side is a UDP
// port (interfaces.cipher.mode: udp): the port carries only ESP in UDP
// on port 4500 of its address, so every SA must be UDP-encapsulated
// with local port 4500 and that local address (anything else could
// never be sent or received).
func (p *parser) checkUDPCipher(cfg *Config) {
	g := cfg.Gateway
	if g == nil || !g.Cipher.UDP || len(g.Cipher.Local) != 1 {
		return
	}
	local := g.Cipher.Local[0]
	for _, s := range cfg.SAs {
		switch {
		case s.Encap != EncapUDP:
			p.errorf(s.Pos.Line, s.Pos.Field+".encap", "interfaces.cipher.mode udp carries ESP in UDP only: want encap: udp")
		case s.LocalPort != 0 && s.LocalPort != 4500:
			p.errorf(s.Pos.Line, s.Pos.Field+".local_port", "interfaces.cipher.mode udp listens on port 4500, not %d", s.LocalPort)
		case s.Local.IsValid() && s.Local != local:
			p.errorf(s.Pos.Line, s.Pos.Field+".local", "%v is not interfaces.cipher.local %v (the UDP port's address)", s.Local, local)
		}
	}
}

// deref follows YAML aliases.
func deref(n *yaml.Node) *yaml.Node {
	for i := 0; n.Kind == yaml.AliasNode && n.Alias != nil && i < 16; i++ {
		n = n.Alias
	}
	return n
}

// fields walks the mapping m, calling f for each key; f reports whether it
// knows the key. Unknown and duplicate keys are errors.
func (p *parser) fields(m *yaml.Node, path string, f func(key string, k, v *yaml.Node) bool) {
	seen := map[string]int{}
	for i := 0; i+1 < len(m.Content); i += 2 {
		k, v := deref(m.Content[i]), deref(m.Content[i+1])
		name := join(path, k.Value)
		if k.Kind != yaml.ScalarNode {
			p.errorf(k.Line, path, "field names must be plain words")
			continue
		}
		if first, dup := seen[k.Value]; dup {
			p.errorf(k.Line, name, "duplicate field (first set on line %d)", first)
			continue
		}
		seen[k.Value] = k.Line
		if !f(k.Value, k, v) {
			p.errorf(k.Line, name, "unknown field")
		}
	}
}

func join(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}

var nameRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$`)

// saFields is every field an SA may have.
var saFields = map[string]bool{
	"name": true, "direction": true, "spi": true, "mode": true, "local": true, "remote": true,
	"encap": true, "local_port": true, "remote_port": true, "transform": true, "key": true,
	"auth_key": true, "esn": true, "replay_window": true, "lifetime": true, "path_mtu": true,
	"selectors": true, "remote_ts": true, "local_ts": true, "child": true, "float_remote": true,
}

// sa parses and validates one SA mapping.
func (p *parser) sa(n *yaml.Node, path string) *SA {
	if n.Kind != yaml.MappingNode {
		p.errorf(n.Line, path, "want a mapping of SA fields")
		return nil
	}
	s := &SA{Pos: Pos{File: p.file, Line: n.Line, Field: path}, lines: map[string]int{}}
	vals := map[string]*yaml.Node{}
	p.fields(n, path, func(key string, k, v *yaml.Node) bool {
		if !saFields[key] {
			return false
		}
		vals[key] = v
		s.lines[key] = k.Line
		return true
	})
	f := func(key string) string { return join(path, key) }
	required := func(key string) *yaml.Node {
		v := vals[key]
		if v == nil {
			p.errorf(n.Line, f(key), "missing")
		}
		return v
	}
	errsBefore := len(p.errs)

	if v := required("name"); v != nil {
		if t, ok := p.scalar(v, f("name")); ok {
			if !nameRE.MatchString(t) {
				p.errorf(v.Line, f("name"), "want 1-64 letters, digits, '.', '_' or '-', starting with a letter or digit")
			}
			s.Name = t
		}
	}
	if v := required("direction"); v != nil {
		if t, ok := p.scalar(v, f("direction")); ok {
			switch strings.ToLower(t) {
			case "in", "inbound":
				s.Direction = In
			case "out", "outbound":
				s.Direction = Out
			default:
				p.errorf(v.Line, f("direction"), "want in or out, got %s", quoteShort(t))
			}
		}
	}
	if v := required("spi"); v != nil {
		if x, ok := p.uint(v, f("spi"), 32); ok {
			if x == 0 {
				p.errorf(v.Line, f("spi"), "SPI 0 is reserved (RFC 4303 §2.1)")
			}
			s.SPI = uint32(x)
		}
	}
	s.Mode = esp.Tunnel
	if v := vals["mode"]; v != nil {
		if t, ok := p.scalar(v, f("mode")); ok {
			switch strings.ToLower(t) {
			case "tunnel":
			case "transport":
				s.Mode = esp.Transport
			default:
				p.errorf(v.Line, f("mode"), "want tunnel or transport, got %s", quoteShort(t))
			}
		}
	}
	if v := required("local"); v != nil {
		s.Local = p.addr(v, f("local"))
	}
	if v := required("remote"); v != nil {
		s.Remote = p.addr(v, f("remote"))
	}
	if v := vals["remote"]; v != nil && s.Local.IsValid() && s.Remote.IsValid() && s.Local.Is4() != s.Remote.Is4() {
		p.errorf(v.Line, f("remote"), "address family differs from local (%v vs %v)", s.Remote, s.Local)
	}
	if v := vals["encap"]; v != nil {
		if t, ok := p.scalar(v, f("encap")); ok {
			switch strings.ToLower(t) {
			case "none", "esp":
			case "udp", "nat-t", "natt":
				s.Encap = EncapUDP
			default:
				p.errorf(v.Line, f("encap"), "want none or udp, got %s", quoteShort(t))
			}
		}
	}
	for _, port := range []struct {
		key string
		dst *uint16
	}{{"local_port", &s.LocalPort}, {"remote_port", &s.RemotePort}} {
		v := vals[port.key]
		if v == nil {
			if s.Encap == EncapUDP {
				*port.dst = DefaultNATTPort
			}
			continue
		}
		x, ok := p.uint(v, f(port.key), 16)
		if !ok {
			continue
		}
		switch {
		case s.Encap != EncapUDP:
			p.errorf(v.Line, f(port.key), "only valid with encap: udp")
		case x == 0:
			p.errorf(v.Line, f(port.key), "port 0 is not valid")
		default:
			*port.dst = uint16(x)
		}
	}
	if v := required("transform"); v != nil {
		if t, ok := p.scalar(v, f("transform")); ok {
			tr, err := esp.ParseTransform(t)
			if err != nil {
				p.errorf(v.Line, f("transform"), "unknown transform %s (want one of %s)", quoteShort(t), strings.Join(esp.TransformNames(), ", "))
			}
			s.Transform = tr
		}
	}
	s.Key = p.key(vals["key"], n, f("key"), s.Transform, false)
	s.AuthKey = p.key(vals["auth_key"], n, f("auth_key"), s.Transform, true)
	if v := vals["esn"]; v != nil {
		s.ESN, _ = p.bool(v, f("esn"))
	}
	if v := vals["replay_window"]; v != nil {
		if x, ok := p.uint(v, f("replay_window"), 32); ok {
			switch {
			case s.Direction == Out:
				p.errorf(v.Line, f("replay_window"), "only valid for direction: in (the receiver checks replay)")
			case x > MaxReplayWindow:
				p.errorf(v.Line, f("replay_window"), "at most %d packets, got %d", MaxReplayWindow, x)
			default:
				s.ReplayWindow = int(x)
			}
		}
	} else if s.Direction == In {
		s.ReplayWindow = DefaultReplayWindow
	}
	if v := vals["lifetime"]; v != nil {
		s.Lifetime = p.lifetime(v, f("lifetime"))
	}
	s.PathMTU = DefaultPathMTU
	if v := vals["path_mtu"]; v != nil {
		if x, ok := p.uint(v, f("path_mtu"), 32); ok {
			lo := 68 // RFC 791
			if s.IPv6() {
				lo = 1280 // RFC 8200 §5
			}
			if x < uint64(lo) || x > 65535 {
				p.errorf(v.Line, f("path_mtu"), "want %d to 65535, got %d", lo, x)
			} else {
				s.PathMTU = int(x)
			}
		}
	}
	s.Selectors = p.selectorSpec(vals, path, s.Direction == In)
	if v := vals["child"]; v != nil {
		if x, ok := p.uint(v, f("child"), 64); ok {
			// Invariant (TestChildIDBelowIKERange): a static child id
			// is below ike.ChildIDBase, so it never names the group of
			// a child SA that the gateway's peers negotiated.
			switch {
			case x == 0:
				p.errorf(v.Line, f("child"), "child 0 means no group; leave it out or use 1 or more")
			case sa.ChildID(x) >= ike.ChildIDBase:
				p.errorf(v.Line, f("child"), "child %d: ids from %d up are those of IKE-negotiated child SAs; use 1 to %d", x, ike.ChildIDBase, ike.ChildIDBase-1)
			}
			s.Child = sa.ChildID(x)
		}
	}
	if v := vals["float_remote"]; v != nil {
		if b, ok := p.bool(v, f("float_remote")); ok {
			switch {
			case b && s.Direction == Out:
				p.errorf(v.Line, f("float_remote"), "only valid for direction: in (the inbound SA learns the peer's endpoint; the outbound SAs of its tunnel or child follow)")
			case b && s.Encap != EncapUDP:
				p.errorf(v.Line, f("float_remote"), "only valid with encap: udp (a NAT-T peer behind a NAT whose mapping may change)")
			default:
				s.FloatRemote = b
			}
		}
	}
	if len(p.errs) == errsBefore {
		p.checkCipher(s, vals, n)
	}
	return s
}

// checkCipher makes sure the esp package accepts the SA's keys and that a
// packet fits the path MTU once encapsulated.
func (p *parser) checkCipher(s *SA, vals map[string]*yaml.Node, n *yaml.Node) {
	c, err := esp.New(esp.Config{Transform: s.Transform, Key: s.Key, AuthKey: s.AuthKey, ESN: s.ESN})
	if err != nil {
		p.errorf(n.Line, s.Pos.Field, "rejected by the ESP layer: %v", err)
		return
	}
	defer c.Wipe()
	if c.PlaintextMTU(s.PathMTU, s.Mode, s.IPv6(), s.Encap == EncapUDP) < 68 {
		line := n.Line
		if v := vals["path_mtu"]; v != nil {
			line = v.Line
		}
		p.errorf(line, join(s.Pos.Field, "path_mtu"), "%d leaves no room for a packet after ESP overhead", s.PathMTU)
	}
}

// crossCheck validates what involves more than one SA.
func (p *parser) crossCheck(sas []*SA) {
	names := map[string]*SA{}
	inSPI := map[uint32]*SA{}
	type outKey struct {
		spi    uint32
		remote netip.Addr
	}
	outSPI := map[outKey]*SA{}
	// Invariant: no two outbound SAs share a key (sa.WriteKeyIdentity:
	// the same key material under the same keystream primitive, whatever
	// the ICV length): each would send sequence number 1, 2, ... under
	// it, and with a counter IV repeat (key, nonce) pairs. Compared by
	// HMACs under a key random per call, never by copies of the keys.
	var fpKey [32]byte
	if _, err := rand.Read(fpKey[:]); err != nil {
		panic("config: no randomness: " + err.Error())
	}
	outKeys := map[[32]byte]*SA{}
	for _, s := range sas {
		if s.Direction == Out && !s.Transform.IsZero() && len(s.Key)+len(s.AuthKey) > 0 {
			m := hmac.New(sha256.New, fpKey[:])
			sa.WriteKeyIdentity(m, s.Transform, s.Key, s.AuthKey)
			var fp [32]byte
			m.Sum(fp[:0])
			if o := outKeys[fp]; o != nil {
				line := s.lines["key"]
				if line == 0 {
					line = s.lines["auth_key"]
				}
				p.errorf(line, join(s.Pos.Field, "key"), "the key of outbound SA %s (line %d) again: two outbound SAs must not share a key (both would send the same sequence numbers under it: nonce reuse)", o.Name, o.lines["key"])
			} else {
				outKeys[fp] = s
			}
		}
		if s.Name != "" {
			if o := names[s.Name]; o != nil {
				p.errorf(s.lines["name"], join(s.Pos.Field, "name"), "%q already used by %s on line %d", s.Name, o.Pos.Field, o.lines["name"])
			} else {
				names[s.Name] = s
			}
		}
		if s.SPI == 0 {
			continue
		}
		switch s.Direction {
		case In:
			if o := inSPI[s.SPI]; o != nil {
				p.errorf(s.lines["spi"], join(s.Pos.Field, "spi"), "inbound SPI 0x%x already used by %s (%s) on line %d", s.SPI, o.Pos.Field, o.Name, o.lines["spi"])
			} else {
				inSPI[s.SPI] = s
			}
		case Out:
			k := outKey{s.SPI, s.Remote}
			if o := outSPI[k]; o != nil {
				p.errorf(s.lines["spi"], join(s.Pos.Field, "spi"), "outbound SPI 0x%x to %v already used by %s (%s) on line %d", s.SPI, s.Remote, o.Pos.Field, o.Name, o.lines["spi"])
			} else {
				outSPI[k] = s
			}
		}
	}
}

// scalar returns the text of a scalar node.
func (p *parser) scalar(v *yaml.Node, field string) (string, bool) {
	if v.Kind != yaml.ScalarNode {
		p.errorf(v.Line, field, "want a single value, not a %s", kindName(v.Kind))
		return "", false
	}
	t := strings.TrimSpace(v.Value)
	if t == "" || v.Tag == "!!null" {
		p.errorf(v.Line, field, "empty value")
		return "", false
	}
	return t, true
}

func kindName(k yaml.Kind) string {
	switch k {
	case yaml.MappingNode:
		return "mapping"
	case yaml.SequenceNode:
		return "list"
	}
	return "YAML node"
}

// uint parses a decimal or 0x-hexadecimal unsigned integer of at most bits
// bits. Underscores are not accepted, nor octal.
func (p *parser) uint(v *yaml.Node, field string, bits int) (uint64, bool) {
	t, ok := p.scalar(v, field)
	if !ok {
		return 0, false
	}
	base, digits := 10, t
	if h, ok := strings.CutPrefix(strings.ToLower(t), "0x"); ok {
		base, digits = 16, h
	}
	x, err := strconv.ParseUint(digits, base, bits)
	if err != nil {
		if errors.Is(err, strconv.ErrRange) {
			p.errorf(v.Line, field, "%s does not fit in %d bits", quoteShort(t), bits)
		} else {
			p.errorf(v.Line, field, "want a non-negative decimal or 0x-hex integer, got %s", quoteShort(t))
		}
		return 0, false
	}
	return x, true
}

func (p *parser) bool(v *yaml.Node, field string) (bool, bool) {
	t, ok := p.scalar(v, field)
	if !ok {
		return false, false
	}
	switch strings.ToLower(t) {
	case "true", "yes", "on":
		return true, true
	case "false", "no", "off":
		return false, true
	}
	p.errorf(v.Line, field, "want true or false, got %s", quoteShort(t))
	return false, false
}

func (p *parser) addr(v *yaml.Node, field string) netip.Addr {
	t, ok := p.scalar(v, field)
	if !ok {
		return netip.Addr{}
	}
	a, err := netip.ParseAddr(t)
	if err != nil || a.Zone() != "" {
		p.errorf(v.Line, field, "want an IPv4 or IPv6 address, got %s", quoteShort(t))
		return netip.Addr{}
	}
	a = a.Unmap()
	if a.IsUnspecified() || a.IsMulticast() {
		p.errorf(v.Line, field, "%v is not a unicast address", a)
		return netip.Addr{}
	}
	return a
}

// key parses hex key material ("0x" prefix and ':' separators optional)
// and checks its length against the transform. It never quotes the value.
func (p *parser) key(v, saNode *yaml.Node, field string, t esp.Transform, auth bool) Secret {
	want := t.KeyLen()
	if auth {
		want = t.AuthKeyLen()
	}
	if v == nil {
		if !t.IsZero() && want > 0 {
			what := "encryption key"
			if auth {
				what = "authentication key"
			}
			p.errorf(saNode.Line, field, "missing (%s needs a %d-byte %s)", t.Name(), want, what)
		}
		return nil
	}
	if v.Kind != yaml.ScalarNode {
		p.errorf(v.Line, field, "want hex key material, not a %s", kindName(v.Kind))
		return nil
	}
	k, err := decodeHex(v.Value)
	if err != nil {
		p.errorf(v.Line, field, "%v", err)
		return nil
	}
	if t.IsZero() {
		return k // transform already reported
	}
	switch {
	case auth && t.AEAD():
		p.errorf(v.Line, field, "not used by the combined-mode transform %s", t.Name())
		k.Wipe()
		return nil
	case !auth && want == 0 && len(k) > 0:
		p.errorf(v.Line, field, "%s uses no encryption key", t.Name())
		k.Wipe()
		return nil
	case len(k) != want:
		p.errorf(v.Line, field, "want %d bytes of hex for %s%s, got %d", want, t.Name(), keyLayout(t, auth), len(k))
		k.Wipe()
		return nil
	}
	return k
}

// keyLayout explains what the key bytes consist of.
func keyLayout(t esp.Transform, auth bool) string {
	if auth || t.KeyLen() == 0 {
		return ""
	}
	n := t.Name()
	switch {
	case strings.Contains(n, "ctr"):
		return " (key‖nonce)"
	case t.AEAD():
		return " (key‖salt)"
	}
	return ""
}

// decodeHex decodes hex with an optional 0x prefix and optional ':' (or
// space) separators between bytes. Error messages give positions, never
// the key's characters.
func decodeHex(s string) (Secret, error) {
	s = strings.TrimSpace(s)
	if h, ok := strings.CutPrefix(s, "0x"); ok {
		s = h
	} else if h, ok := strings.CutPrefix(s, "0X"); ok {
		s = h
	}
	out := make(Secret, 0, len(s)/2)
	var hi byte
	half := false
	for i := 0; i < len(s); i++ {
		c := s[i]
		var x byte
		switch {
		case c >= '0' && c <= '9':
			x = c - '0'
		case c >= 'a' && c <= 'f':
			x = c - 'a' + 10
		case c >= 'A' && c <= 'F':
			x = c - 'A' + 10
		case c == ':' || c == ' ' || c == '_':
			if half {
				clear(out)
				return nil, fmt.Errorf("separator at character %d splits a byte", i+1)
			}
			continue
		default:
			clear(out)
			return nil, fmt.Errorf("not hex: character %d is not 0-9, a-f or ':'", i+1)
		}
		if half {
			out = append(out, hi<<4|x)
		} else {
			hi = x
		}
		half = !half
	}
	if half {
		clear(out)
		return nil, fmt.Errorf("odd number of hex digits")
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("empty key")
	}
	return out, nil
}

var lifetimeFields = map[string]bool{
	"soft_bytes": true, "hard_bytes": true, "soft_packets": true, "hard_packets": true,
	"soft_seconds": true, "hard_seconds": true,
}

func (p *parser) lifetime(v *yaml.Node, path string) Lifetime {
	var l Lifetime
	if v.Kind != yaml.MappingNode {
		p.errorf(v.Line, path, "want a mapping of soft_/hard_ bytes, packets, seconds")
		return l
	}
	vals := map[string]*yaml.Node{}
	p.fields(v, path, func(key string, _, val *yaml.Node) bool {
		if !lifetimeFields[key] {
			return false
		}
		vals[key] = val
		return true
	})
	num := func(key string, dst *uint64) {
		if n := vals[key]; n != nil {
			*dst, _ = p.uint(n, join(path, key), 64)
		}
	}
	num("soft_bytes", &l.SoftBytes)
	num("hard_bytes", &l.HardBytes)
	num("soft_packets", &l.SoftPackets)
	num("hard_packets", &l.HardPackets)
	l.SoftTime = p.seconds(vals["soft_seconds"], join(path, "soft_seconds"))
	l.HardTime = p.seconds(vals["hard_seconds"], join(path, "hard_seconds"))
	check := func(soft, hard string, s, h uint64) {
		if s > 0 && h > 0 && s > h {
			p.errorf(vals[soft].Line, join(path, soft), "larger than %s (%d > %d)", hard, s, h)
		}
	}
	check("soft_bytes", "hard_bytes", l.SoftBytes, l.HardBytes)
	check("soft_packets", "hard_packets", l.SoftPackets, l.HardPackets)
	if l.SoftTime > 0 && l.HardTime > 0 && l.SoftTime > l.HardTime {
		p.errorf(vals["soft_seconds"].Line, join(path, "soft_seconds"), "larger than hard_seconds (%v > %v)", l.SoftTime, l.HardTime)
	}
	return l
}

// seconds parses a number of seconds or a Go duration such as "1h30m".
func (p *parser) seconds(v *yaml.Node, field string) time.Duration {
	if v == nil {
		return 0
	}
	t, ok := p.scalar(v, field)
	if !ok {
		return 0
	}
	if x, err := strconv.ParseUint(t, 10, 32); err == nil {
		return time.Duration(x) * time.Second
	}
	d, err := time.ParseDuration(t)
	if err != nil || d < 0 {
		p.errorf(v.Line, field, "want seconds or a duration such as 1h or 90m, got %s", quoteShort(t))
		return 0
	}
	if d%time.Second != 0 {
		p.errorf(v.Line, field, "%v is not a whole number of seconds", d)
		return 0
	}
	return d
}

// SAConfig converts s to the sa package's Config. The keys are shared, not
// copied (sa.New copies them).
func (s *SA) SAConfig() sa.Config {
	c := sa.Config{
		Name:      s.Name,
		SPI:       s.SPI,
		Mode:      s.Mode,
		Local:     s.Local,
		Remote:    s.Remote,
		UDPEncap:  s.Encap == EncapUDP,
		Transform: s.Transform,
		Key:       s.Key,
		AuthKey:   s.AuthKey,
		ESN:       s.ESN,
		SoftLifetime: sa.Lifetime{
			Bytes: s.Lifetime.SoftBytes, Packets: s.Lifetime.SoftPackets, Time: s.Lifetime.SoftTime,
		},
		HardLifetime: sa.Lifetime{
			Bytes: s.Lifetime.HardBytes, Packets: s.Lifetime.HardPackets, Time: s.Lifetime.HardTime,
		},
		PathMTU:     s.PathMTU,
		Selectors:   slices.Clone(s.Selectors),
		Child:       s.Child,
		FloatRemote: s.FloatRemote,
	}
	if c.UDPEncap {
		c.LocalPort, c.RemotePort = s.LocalPort, s.RemotePort
	}
	switch s.Direction {
	case In:
		c.Direction = sa.In
		c.ReplayWindow = s.ReplayWindow
		if s.ReplayWindow == 0 {
			c.ReplayWindow = sa.ReplayDisabled
		}
	case Out:
		c.Direction = sa.Out
	}
	return c
}

// quoteShort quotes a value for an error message, cut short so that key
// material typed into the wrong field is not echoed whole.
func quoteShort(t string) string {
	const limit = 24
	if len(t) > limit {
		return strconv.Quote(t[:8]) + "…"
	}
	return strconv.Quote(t)
}

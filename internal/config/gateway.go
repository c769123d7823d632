package config

import (
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/espxdp/espxdp/sa"
)

// Gateway is the part of a configuration that `espxdp run` needs beyond
// the SAs: interfaces, tunnels, policies and gateway options. It is nil
// in a configuration that has only sas (enough for the pcap commands).
//
//	gateway:
//	  control: /run/espxdp/gw.sock   # control socket (default: none)
//	  queues: 1                      # interface queues served
//	  workers: 2                     # engine workers (default: queues)
//	  concurrency: shared            # shared | sharded | percpu | ordered
//	  steering: auto                 # auto | queue | spi | spread (auto: by concurrency)
//	  spread_chunk: 32               # spread: packets per worker turn (power of two)
//	  rings: {rx: 4096, tx: 2048, fill: 4096} # AF_XDP ring sizes (default: the engine's)
//	  busy_poll: {usecs: 50, budget: 64, prefer: true} # default: off (spins cores; see BusyPoll)
//	  xdp_mode: auto                 # auto | copy | zerocopy (AF_XDP bind)
//	  attach: auto                   # auto | native | generic (XDP hook)
//	  cpus: [0, 1]                   # pin worker i to cpus[i % len]
//	  mss_clamp: 1360                # TCP MSS clamp, 0 = off
//	  decrement_ttl: true            # act as a router on inner packets
//	  icmp_errors: true              # frag-needed / packet-too-big / time exceeded
//	  keepalive: 20s                 # NAT-T keepalives to udp-encap peers, 0 = off
//	  log_drops: 1s                  # interval of the drop log, 0 = off
//	  state_dir: /var/lib/espxdp     # persisted sequence numbers (see internal/gateway)
//	  fail_closed: true              # nftables table that outlives the daemon (default true)
//	  pmtu_age: 10m                  # a path MTU learned from ICMP expires, 0 = never
//	  fragmentation: before-encryption # or off: IPv4 without DF over the SA's MTU
//	  jumbo: false                   # MTUs up to 9216 (AF_XDP multi-buffer, generic attach)
//	  reassembly: true               # outer fragments of ESP reassembled before decryption
//	interfaces:
//	  cipher: {name: wan0, next_hop: "02:00:00:00:0a:fe", local: [192.0.2.1], vlan: 100}
//	  # or ESP in UDP (4500) through kernel UDP sockets with GSO/GRO, no XDP:
//	  # cipher: {name: wan0, local: 192.0.2.1, mode: udp}
//	  plain:  {name: lan0, next_hop: "02:00:00:00:01:02", address: 10.1.0.1}
//	  # or, route-based with a tunnel interface instead of plain:
//	  tun:    {name: vti0, address: 169.254.0.1/30, mtu: 1400, routes: [10.2.0.0/24]}
//	protected: [10.2.0.0/24]         # plain only: destinations taken for encryption
//	tunnels:
//	  - {name: to-B, out: [a-to-b], in: [b-to-a]}
//	policies:                        # crypto-map style, first match wins
//	  - {name: web, src: 10.1.0.0/24, dst: 10.2.0.0/24, proto: tcp, dst_ports: 80-443, action: protect, tunnel: to-B}
//	  - {name: rest, dst: 10.2.0.0/24, action: bypass}
type Gateway struct {
	Control     string
	Queues      int
	Concurrency sa.Concurrency
	// Workers is the number of engine workers (0: Queues; see
	// EngineWorkers). With steering spi or spread every worker has a
	// socket on every queue.
	Workers int
	// Steering is "auto" (EffectiveSteering decides by Concurrency),
	// "queue", "spi" or "spread" (xdp.Steering).
	Steering string
	// SpreadChunk is, with spread steering, how many consecutive packets
	// of a queue go to one worker (0: the engine's default).
	SpreadChunk int
	// Rings are the AF_XDP ring sizes (zero: the engine's defaults).
	Rings Rings
	// BusyPoll is preferred busy polling of the sockets (zero: off, the
	// default; BusyPoll says why).
	BusyPoll     BusyPoll
	XDPMode      string // "auto", "copy" or "zerocopy"
	Attach       string // "auto", "native" or "generic"
	CPUs         []int
	MSSClamp     int
	DecrementTTL bool
	ICMPErrors   bool
	Keepalive    time.Duration
	LogDrops     time.Duration
	// StateDir holds the persisted outbound sequence reservations and
	// inbound replay windows; empty: none (a restart with static keys
	// would reuse sequence numbers, so AEAD SAs are warned about).
	StateDir string
	// FailClosed (default true) installs, at start, an nftables table
	// of the gateway's own that drops clear text between the protected
	// networks on the cipher interface; it stays after the daemon
	// stops or dies. false removes that table at start.
	FailClosed bool
	// Metrics is the host:port the Prometheus /metrics endpoint listens
	// on ("" = off); MetricsMaxSAs caps the SAs with series of their own
	// (0 = metrics.DefaultMaxSAs).
	Metrics       string
	MetricsMaxSAs int
	// PMTUAge is how long a path MTU learned from ICMP holds before the
	// SA's configured path_mtu is tried again (RFC 1191 §6.3, RFC 8201
	// §4); 0: never raised again.
	PMTUAge time.Duration
	// Fragmentation is what happens to IPv4 packets without DF larger
	// than the SA's plaintext MTU: "before-encryption" (default: they are
	// fragmented, then each fragment encrypted, RFC 4459 §5.1) or "off"
	// (dropped and counted). DF packets and IPv6 always get the ICMP
	// error (icmp_errors).
	Fragmentation string
	// Jumbo enables AF_XDP multi-buffer (xdp.EngineConfig.MultiBuffer):
	// interface MTUs up to xdp.MaxJumboMTU, with generic XDP attach.
	Jumbo bool
	// Reassembly (default true) reassembles outer IP fragments of ESP
	// and ESP-in-UDP in the workers before decryption (RFC 4303 §3.4.1;
	// esp/reasm): without it fragmented ESP is lost. Reassembled IKE is
	// not handed back to the kernel, so an IKE daemon that relies on IP
	// fragmentation of its messages (rather than RFC 7383 IKE
	// fragmentation) needs reassembly: false.
	Reassembly bool

	Cipher    Iface
	Plain     *Iface
	TUN       *TUNIface
	Protected []netip.Prefix
	Tunnels   []*Tunnel
	Policies  []*Policy
	Pos       Pos

	// peerTS are the remote_ts of the peers: section by the peer's
	// tunnel (set by Parse, peers.go): InboundSelectors leaves them out
	// of what other tunnels derive.
	peerTS map[string][]netip.Prefix
}

// Iface is an Ethernet interface the gateway runs AF_XDP on.
type Iface struct {
	Name string
	// NextHop is the destination MAC of frames sent on the interface.
	NextHop net.HardwareAddr
	// Local (cipher side) restricts the ESP taken to these destinations.
	Local []netip.Addr
	// Address (plain side) is the source of ICMP errors.
	Address netip.Addr
	// VLAN (vlan: 1..4094, 0 or absent: untagged) is the 802.1Q VLAN of
	// the side: written on every frame sent, required on every frame
	// taken (xdp.Port.VLAN).
	VLAN int
	// UDP (cipher side, mode: udp; default mode: xdp) carries the
	// ciphertext as ESP in UDP on port 4500 of the one local address
	// through kernel UDP sockets with GSO and GRO (xdp.UDPPort) instead
	// of AF_XDP on the interface: no XDP program, no next_hop; every SA
	// must be UDP-encapsulated (encap: udp), every peer forces UDP
	// encapsulation, and IKE on port 4500 shares the port's sockets.
	// Name stays the wan interface (fail-closed table, link monitor).
	UDP bool
	Pos Pos
}

// TUNIface is the tunnel interface of a route-based gateway.
type TUNIface struct {
	Name    string
	Address netip.Prefix
	MTU     int
	Routes  []netip.Prefix
	Pos     Pos
}

// Tunnel binds outbound and inbound SAs by name (sa.Tunnel).
type Tunnel struct {
	Name    string
	Out, In []string
	// Selectors restrict what the tunnel's inbound SAs deliver
	// (selectors:, remote_ts/local_ts; source = the peer's side); nil:
	// derived (Gateway.InboundSelectors).
	Selectors []sa.Selector
	Pos       Pos
}

// Policy is one SPD entry (sa.Policy).
type Policy struct {
	Name     string
	Selector sa.Selector
	Action   sa.Action
	Tunnel   string
	SA       string
	Pos      Pos
}

// Defaults of the gateway section.
const (
	DefaultKeepalive = 20 * time.Second
	DefaultLogDrops  = time.Second
	// DefaultPMTUAge is the default of gateway.pmtu_age (RFC 1191's ten
	// minutes).
	DefaultPMTUAge = 10 * time.Minute
)

var topFields = map[string]bool{
	"sas": true, "gateway": true, "interfaces": true, "protected": true, "tunnels": true, "policies": true,
	"peers": true,
}

// gateway parses the gateway sections found at the top level; vals maps
// the top-level keys to their nodes.
func (p *parser) gateway(vals map[string]*yaml.Node, cfg *Config) *Gateway {
	if vals["gateway"] == nil && vals["interfaces"] == nil && vals["protected"] == nil &&
		vals["tunnels"] == nil && vals["policies"] == nil {
		return nil
	}
	g := &Gateway{Queues: 1, Concurrency: sa.Shared, Steering: SteerAuto, XDPMode: "auto", Attach: "auto", Keepalive: DefaultKeepalive,
		LogDrops: DefaultLogDrops, FailClosed: true, PMTUAge: DefaultPMTUAge, Fragmentation: "before-encryption",
		Reassembly: true}
	if n := vals["gateway"]; n != nil {
		g.Pos = Pos{File: p.file, Line: n.Line, Field: "gateway"}
		p.gatewayOptions(n, g)
	}
	n := vals["interfaces"]
	if n == nil {
		line := 0
		if vals["gateway"] != nil {
			line = vals["gateway"].Line
		}
		p.errorf(line, "interfaces", "missing (a gateway needs a cipher interface and a plain or tun one)")
	} else {
		p.interfaces(n, g)
	}
	if n := vals["protected"]; n != nil {
		g.Protected = p.prefixList(n, "protected")
	}
	if g.Plain != nil && len(g.Protected) == 0 {
		p.errorf(lineOf(vals["interfaces"]), "protected", "missing: a plain interface needs the destinations to encrypt")
	}
	if g.Plain != nil && g.ICMPErrors && !g.Plain.Address.IsValid() {
		p.errorf(g.Plain.Pos.Line, "interfaces.plain.address", "missing: the source of ICMP errors (gateway.icmp_errors)")
	}
	if g.TUN != nil && vals["protected"] != nil {
		p.errorf(vals["protected"].Line, "protected", "not used with a tun interface (its routes decide what is encrypted)")
	}
	if n := vals["tunnels"]; n != nil {
		p.list(n, "tunnels", func(m *yaml.Node, path string) {
			if t := p.tunnel(m, path); t != nil {
				g.Tunnels = append(g.Tunnels, t)
			}
		})
	}
	if n := vals["policies"]; n != nil {
		p.list(n, "policies", func(m *yaml.Node, path string) {
			if pol := p.policy(m, path); pol != nil {
				g.Policies = append(g.Policies, pol)
			}
		})
	}
	p.gatewayRefs(g, cfg)
	return g
}

func lineOf(n *yaml.Node) int {
	if n == nil {
		return 0
	}
	return n.Line
}

func (p *parser) list(n *yaml.Node, path string, each func(m *yaml.Node, path string)) {
	if n.Kind != yaml.SequenceNode {
		p.errorf(n.Line, path, "want a list")
		return
	}
	for i, m := range n.Content {
		each(deref(m), fmt.Sprintf("%s[%d]", path, i))
	}
}

var gatewayOptionFields = map[string]bool{
	"control": true, "queues": true, "concurrency": true, "xdp_mode": true, "attach": true, "cpus": true,
	"mss_clamp": true, "decrement_ttl": true, "icmp_errors": true, "keepalive": true, "log_drops": true,
	"state_dir":   true,
	"fail_closed": true,
	"metrics":     true, "metrics_max_sas": true,
	"pmtu_age": true, "fragmentation": true, "jumbo": true, "reassembly": true,
}

func (p *parser) gatewayOptions(n *yaml.Node, g *Gateway) {
	if n.Kind != yaml.MappingNode {
		p.errorf(n.Line, "gateway", "want a mapping of gateway options")
		return
	}
	p.fields(n, "gateway", func(key string, _, v *yaml.Node) bool {
		if tuningFields[key] {
			p.tuningOption(key, v, g)
			return true
		}
		if !gatewayOptionFields[key] {
			return false
		}
		f := "gateway." + key
		switch key {
		case "control":
			if t, ok := p.scalar(v, f); ok {
				g.Control = t
			}
		case "queues":
			if x, ok := p.uint(v, f, 16); ok {
				if x < 1 || x > 64 {
					p.errorf(v.Line, f, "want 1..64, got %d", x)
				}
				g.Queues = int(x)
			}
		case "concurrency":
			if t, ok := p.scalar(v, f); ok {
				switch strings.ToLower(t) {
				case "shared":
					g.Concurrency = sa.Shared
				case "sharded":
					g.Concurrency = sa.Sharded
				case "percpu", "per-cpu":
					g.Concurrency = sa.PerCPU
				case "ordered":
					g.Concurrency = sa.Ordered
				default:
					p.errorf(v.Line, f, "want shared, sharded, percpu or ordered, got %s", quoteShort(t))
				}
			}
		case "xdp_mode":
			g.XDPMode = p.oneOf(v, f, "auto", "copy", "zerocopy")
		case "attach":
			g.Attach = p.oneOf(v, f, "auto", "native", "generic")
		case "cpus":
			p.list(v, f, func(m *yaml.Node, path string) {
				if x, ok := p.uint(m, path, 16); ok {
					g.CPUs = append(g.CPUs, int(x))
				}
			})
		case "mss_clamp":
			if x, ok := p.uint(v, f, 16); ok {
				if x != 0 && (x < 536 || x > 65495) {
					p.errorf(v.Line, f, "want 0 (off) or 536..65495, got %d", x)
				}
				g.MSSClamp = int(x)
			}
		case "decrement_ttl":
			g.DecrementTTL, _ = p.bool(v, f)
		case "icmp_errors":
			g.ICMPErrors, _ = p.bool(v, f)
		case "keepalive":
			g.Keepalive = p.interval(v, f)
		case "log_drops":
			g.LogDrops = p.interval(v, f)
		case "state_dir":
			if t, ok := p.scalar(v, f); ok {
				if !strings.HasPrefix(t, "/") {
					p.errorf(v.Line, f, "want an absolute path, got %s", quoteShort(t))
				}
				g.StateDir = t
			}
		case "fail_closed":
			if b, ok := p.bool(v, f); ok {
				g.FailClosed = b
			}
		case "metrics":
			if t, ok := p.scalar(v, f); ok {
				host, port, err := net.SplitHostPort(t)
				if n, perr := strconv.ParseUint(port, 10, 16); err != nil || perr != nil || (n == 0 && port != "0") {
					p.errorf(v.Line, f, "want host:port such as 127.0.0.1:9477, got %s", quoteShort(t))
				} else if host == "" {
					p.errorf(v.Line, f, "name the address to listen on (127.0.0.1:%s for this host only, [::]:%s for all), got %s", port, port, quoteShort(t))
				}
				g.Metrics = t
			}
		case "metrics_max_sas":
			if x, ok := p.uint(v, f, 32); ok {
				if x > 1_000_000 {
					p.errorf(v.Line, f, "want 0 (default 1000) .. 1000000, got %d", x)
				}
				g.MetricsMaxSAs = int(x)
			}
		case "pmtu_age":
			g.PMTUAge = p.interval(v, f)
		case "fragmentation":
			g.Fragmentation = p.oneOf(v, f, "before-encryption", "off")
		case "jumbo":
			g.Jumbo, _ = p.bool(v, f)
		case "reassembly":
			if b, ok := p.bool(v, f); ok {
				g.Reassembly = b
			}
		}
		return true
	})
	p.checkTuning(n, g)
}

// interval parses seconds or a Go duration of at least 10ms (0 = off).
func (p *parser) interval(v *yaml.Node, field string) time.Duration {
	t, ok := p.scalar(v, field)
	if !ok {
		return 0
	}
	if x, err := strconv.ParseUint(t, 10, 32); err == nil {
		return time.Duration(x) * time.Second
	}
	d, err := time.ParseDuration(t)
	if err != nil || d < 0 || (d > 0 && d < 10*time.Millisecond) {
		p.errorf(v.Line, field, "want 0 (off), seconds or a duration of at least 10ms such as 20s, got %s", quoteShort(t))
		return 0
	}
	return d
}

func (p *parser) oneOf(v *yaml.Node, field string, choices ...string) string {
	t, ok := p.scalar(v, field)
	if !ok {
		return choices[0]
	}
	t = strings.ToLower(t)
	for _, c := range choices {
		if t == c {
			return t
		}
	}
	p.errorf(v.Line, field, "want %s, got %s", strings.Join(choices, ", "), quoteShort(t))
	return choices[0]
}

func (p *parser) interfaces(n *yaml.Node, g *Gateway) {
	if n.Kind != yaml.MappingNode {
		p.errorf(n.Line, "interfaces", "want a mapping with cipher and plain or tun")
		return
	}
	var cipher *yaml.Node
	p.fields(n, "interfaces", func(key string, _, v *yaml.Node) bool {
		switch key {
		case "cipher":
			cipher = v
			g.Cipher = p.iface(v, "interfaces.cipher", true)
		case "plain":
			pl := p.iface(v, "interfaces.plain", false)
			g.Plain = &pl
		case "tun":
			g.TUN = p.tun(v, "interfaces.tun")
		default:
			return false
		}
		return true
	})
	if cipher == nil {
		p.errorf(n.Line, "interfaces.cipher", "missing")
	}
	if g.Plain == nil && g.TUN == nil {
		p.errorf(n.Line, "interfaces", "want a plain or a tun interface")
	}
	if g.Plain != nil && g.TUN != nil {
		p.errorf(n.Line, "interfaces", "plain and tun are alternatives; set one")
	}
	if g.Plain != nil && g.Plain.Name != "" && g.Plain.Name == g.Cipher.Name {
		p.errorf(g.Plain.Pos.Line, "interfaces.plain.name", "same interface as cipher")
	}
}

func (p *parser) iface(n *yaml.Node, path string, cipher bool) Iface {
	ifc := Iface{Pos: Pos{File: p.file, Line: n.Line, Field: path}}
	if n.Kind != yaml.MappingNode {
		p.errorf(n.Line, path, "want a mapping with name and next_hop")
		return ifc
	}
	seen := map[string]bool{}
	p.fields(n, path, func(key string, _, v *yaml.Node) bool {
		f := join(path, key)
		switch key {
		case "name":
			ifc.Name = p.ifname(v, f)
		case "next_hop":
			if t, ok := p.scalar(v, f); ok {
				mac, err := net.ParseMAC(t)
				if err != nil || len(mac) != 6 {
					p.errorf(v.Line, f, "want a 6-byte MAC address such as 02:00:00:00:00:01, got %s", quoteShort(t))
				}
				ifc.NextHop = mac
			}
		case "local":
			if !cipher {
				return false
			}
			if v.Kind == yaml.SequenceNode {
				p.list(v, f, func(m *yaml.Node, path string) { ifc.Local = append(ifc.Local, p.addr(m, path)) })
			} else {
				ifc.Local = append(ifc.Local, p.addr(v, f))
			}
		case "address":
			if cipher {
				return false
			}
			ifc.Address = p.addr(v, f)
		case "mode":
			if !cipher {
				return false
			}
			ifc.UDP = p.oneOf(v, f, "xdp", "udp") == "udp"
		case "vlan":
			if x, ok := p.uint(v, f, 16); ok {
				if x > 4094 {
					p.errorf(v.Line, f, "want a VLAN ID 1..4094 (0: untagged), got %d", x)
				}
				ifc.VLAN = int(x)
			}
		default:
			return false
		}
		seen[key] = true
		return true
	})
	need := []string{"name", "next_hop"}
	if ifc.UDP {
		need = need[:1]
		if len(ifc.Local) != 1 {
			p.errorf(n.Line, join(path, "local"), "mode udp needs exactly one local address (the UDP port's), got %d", len(ifc.Local))
		}
		if ifc.VLAN != 0 {
			p.errorf(n.Line, join(path, "vlan"), "mode udp sends through the kernel's UDP sockets: no VLAN of its own")
		}
	}
	for _, k := range need {
		if !seen[k] {
			p.errorf(n.Line, join(path, k), "missing")
		}
	}
	return ifc
}

func (p *parser) tun(n *yaml.Node, path string) *TUNIface {
	t := &TUNIface{Pos: Pos{File: p.file, Line: n.Line, Field: path}}
	if n.Kind != yaml.MappingNode {
		p.errorf(n.Line, path, "want a mapping with name, address, mtu and routes")
		return t
	}
	p.fields(n, path, func(key string, _, v *yaml.Node) bool {
		f := join(path, key)
		switch key {
		case "name":
			t.Name = p.ifname(v, f)
		case "address":
			t.Address = p.prefix(v, f, false)
		case "mtu":
			if x, ok := p.uint(v, f, 16); ok {
				if x < 576 {
					p.errorf(v.Line, f, "want at least 576, got %d", x)
				}
				t.MTU = int(x)
			}
		case "routes":
			t.Routes = p.prefixList(v, f)
		default:
			return false
		}
		return true
	})
	if t.Name == "" {
		p.errorf(n.Line, join(path, "name"), "missing")
	}
	return t
}

// ifname parses an interface name.
func (p *parser) ifname(v *yaml.Node, field string) string {
	t, ok := p.scalar(v, field)
	if ok && (len(t) > 15 || strings.ContainsAny(t, "/ \t")) {
		p.errorf(v.Line, field, "not an interface name: %s", quoteShort(t))
	}
	return t
}

// name parses the name of a tunnel or policy.
func (p *parser) name(v *yaml.Node, field string) string {
	t, ok := p.scalar(v, field)
	if ok && !nameRE.MatchString(t) {
		p.errorf(v.Line, field, "want 1-64 letters, digits, '.', '_' or '-'")
	}
	return t
}

// prefix parses "10.0.0.0/8"; with masked, host bits must be zero.
func (p *parser) prefix(v *yaml.Node, field string, masked bool) netip.Prefix {
	t, ok := p.scalar(v, field)
	if !ok {
		return netip.Prefix{}
	}
	pf, err := netip.ParsePrefix(t)
	if err != nil {
		p.errorf(v.Line, field, "want a prefix such as 10.1.0.0/16, got %s", quoteShort(t))
		return netip.Prefix{}
	}
	if masked && pf.Masked() != pf {
		p.errorf(v.Line, field, "%v has host bits set (did you mean %v?)", pf, pf.Masked())
	}
	return pf
}

func (p *parser) prefixList(n *yaml.Node, path string) []netip.Prefix {
	var out []netip.Prefix
	p.list(n, path, func(m *yaml.Node, f string) {
		if pf := p.prefix(m, f, true); pf.IsValid() {
			out = append(out, pf)
		}
	})
	return out
}

func (p *parser) names(n *yaml.Node, path string) []string {
	var out []string
	if n.Kind == yaml.ScalarNode {
		if t, ok := p.scalar(n, path); ok {
			out = append(out, t)
		}
		return out
	}
	p.list(n, path, func(m *yaml.Node, f string) {
		if t, ok := p.scalar(m, f); ok {
			out = append(out, t)
		}
	})
	return out
}

func (p *parser) tunnel(n *yaml.Node, path string) *Tunnel {
	t := &Tunnel{Pos: Pos{File: p.file, Line: n.Line, Field: path}}
	if n.Kind != yaml.MappingNode {
		p.errorf(n.Line, path, "want a mapping with name, out and in")
		return nil
	}
	sel := map[string]*yaml.Node{}
	p.fields(n, path, func(key string, _, v *yaml.Node) bool {
		f := join(path, key)
		switch key {
		case "name":
			t.Name = p.name(v, f)
		case "out":
			t.Out = p.names(v, f)
		case "in":
			t.In = p.names(v, f)
		default:
			if !selectorFields[key] {
				return false
			}
			sel[key] = v
		}
		return true
	})
	t.Selectors = p.selectorSpec(sel, path, true)
	if t.Name == "" {
		p.errorf(n.Line, join(path, "name"), "missing")
	}
	return t
}

var policyFields = map[string]bool{
	"name": true, "src": true, "dst": true, "proto": true, "src_ports": true, "dst_ports": true,
	"action": true, "tunnel": true, "sa": true,
}

func (p *parser) policy(n *yaml.Node, path string) *Policy {
	pol := &Policy{Pos: Pos{File: p.file, Line: n.Line, Field: path}}
	if n.Kind != yaml.MappingNode {
		p.errorf(n.Line, path, "want a mapping of policy fields")
		return nil
	}
	vals := map[string]*yaml.Node{}
	p.fields(n, path, func(key string, _, v *yaml.Node) bool {
		if !policyFields[key] {
			return false
		}
		vals[key] = v
		f := join(path, key)
		switch key {
		case "name":
			pol.Name = p.name(v, f)
		case "src":
			pol.Selector.Src = p.prefix(v, f, true)
		case "dst":
			pol.Selector.Dst = p.prefix(v, f, true)
		case "proto":
			pol.Selector.Proto = p.proto(v, f)
		case "src_ports":
			pol.Selector.SrcPorts = p.ports(v, f)
		case "dst_ports":
			pol.Selector.DstPorts = p.ports(v, f)
		case "action":
			switch p.oneOf(v, f, "protect", "bypass", "discard") {
			case "protect":
				pol.Action = sa.Protect
			case "bypass":
				pol.Action = sa.Bypass
			case "discard":
				pol.Action = sa.Discard
			}
		case "tunnel":
			pol.Tunnel, _ = p.scalar(v, f)
		case "sa":
			pol.SA, _ = p.scalar(v, f)
		}
		return true
	})
	if pol.Name == "" {
		p.errorf(n.Line, join(path, "name"), "missing")
	}
	if vals["action"] == nil {
		p.errorf(n.Line, join(path, "action"), "missing")
	}
	if pol.Action != sa.Protect && (pol.Tunnel != "" || pol.SA != "") {
		p.errorf(n.Line, path, "tunnel and sa are for action protect only")
	}
	if pol.Tunnel != "" && pol.SA != "" {
		p.errorf(n.Line, path, "set tunnel or sa, not both")
	}
	s := pol.Selector
	if s.Src.IsValid() && s.Dst.IsValid() && s.Src.Addr().Is4() != s.Dst.Addr().Is4() {
		p.errorf(n.Line, path, "src and dst of different address families")
	}
	if (!s.SrcPorts.IsZero() || !s.DstPorts.IsZero()) && s.Proto != 6 && s.Proto != 17 && s.Proto != 132 {
		p.errorf(n.Line, path, "ports need proto tcp, udp or sctp")
	}
	return pol
}

var protoNames = map[string]uint8{"icmp": 1, "tcp": 6, "udp": 17, "gre": 47, "esp": 50, "ipv6-icmp": 58, "icmpv6": 58, "sctp": 132}

func (p *parser) proto(v *yaml.Node, field string) uint8 {
	t, ok := p.scalar(v, field)
	if !ok {
		return 0
	}
	if x, ok := protoNames[strings.ToLower(t)]; ok {
		return x
	}
	x, err := strconv.ParseUint(t, 10, 8)
	if err != nil || x == 0 {
		p.errorf(v.Line, field, "want tcp, udp, icmp, gre, sctp or a protocol number 1..255, got %s", quoteShort(t))
		return 0
	}
	return uint8(x)
}

// ports parses "80", "1000-2000" or a mapping {lo, hi}.
func (p *parser) ports(v *yaml.Node, field string) sa.PortRange {
	t, ok := p.scalar(v, field)
	if !ok {
		return sa.PortRange{}
	}
	lo, hi, isRange := strings.Cut(t, "-")
	a, err1 := strconv.ParseUint(strings.TrimSpace(lo), 10, 16)
	b := a
	var err2 error
	if isRange {
		b, err2 = strconv.ParseUint(strings.TrimSpace(hi), 10, 16)
	}
	if err1 != nil || err2 != nil || a > b {
		p.errorf(v.Line, field, "want a port or a range lo-hi, got %s", quoteShort(t))
		return sa.PortRange{}
	}
	return sa.PortRange{Lo: uint16(a), Hi: uint16(b)}
}

// gatewayRefs checks the names tunnels and policies refer to.
func (p *parser) gatewayRefs(g *Gateway, cfg *Config) {
	tunnels := map[string]*Tunnel{}
	used := map[string]string{} // SA name -> tunnel
	for _, t := range g.Tunnels {
		if o := tunnels[t.Name]; o != nil && t.Name != "" {
			p.errorf(t.Pos.Line, t.Pos.Field+".name", "%q already used by %s", t.Name, o.Pos.Field)
			continue
		}
		tunnels[t.Name] = t
		check := func(names []string, want Direction, field string) {
			for _, n := range names {
				s, ok := cfg.Lookup(n)
				switch {
				case !ok:
					p.errorf(t.Pos.Line, t.Pos.Field+"."+field, "no SA named %q", n)
				case s.Direction != want:
					p.errorf(t.Pos.Line, t.Pos.Field+"."+field, "SA %q is %s, want %s", n, s.Direction, want)
				case used[n] != "":
					p.errorf(t.Pos.Line, t.Pos.Field+"."+field, "SA %q already in tunnel %q", n, used[n])
				default:
					used[n] = t.Name
				}
			}
		}
		check(t.Out, Out, "out")
		check(t.In, In, "in")
	}
	names := map[string]bool{}
	for _, pol := range g.Policies {
		if names[pol.Name] && pol.Name != "" {
			p.errorf(pol.Pos.Line, pol.Pos.Field+".name", "%q already used", pol.Name)
		}
		names[pol.Name] = true
		if pol.Tunnel != "" && tunnels[pol.Tunnel] == nil {
			p.errorf(pol.Pos.Line, pol.Pos.Field+".tunnel", "no tunnel named %q", pol.Tunnel)
		}
		if pol.SA != "" {
			if s, ok := cfg.Lookup(pol.SA); !ok {
				p.errorf(pol.Pos.Line, pol.Pos.Field+".sa", "no SA named %q", pol.SA)
			} else if s.Direction != Out {
				p.errorf(pol.Pos.Line, pol.Pos.Field+".sa", "SA %q is inbound; a policy needs an outbound SA", pol.SA)
			}
		}
	}
	if g.TUN != nil && len(g.Policies) == 0 && len(g.Tunnels) > 1 {
		p.errorf(g.TUN.Pos.Line, "tunnels", "a tun gateway without policies sends everything through one tunnel; %d are configured", len(g.Tunnels))
	}
}

// ParseSA parses one SA given as a YAML or JSON mapping with the fields
// of an entry of the sas list (for the control socket's sa add and
// update); file names it in errors.
func ParseSA(file string, data []byte) (*SA, error) {
	var n yaml.Node
	if err := yaml.Unmarshal(data, &n); err != nil {
		return nil, &Error{File: file, Msg: "not a YAML or JSON mapping: " + strings.TrimPrefix(err.Error(), "yaml: ")}
	}
	root := &n
	if root.Kind == yaml.DocumentNode && len(root.Content) == 1 {
		root = root.Content[0]
	}
	if root.Kind != yaml.MappingNode {
		return nil, &Error{File: file, Msg: "want a mapping of SA fields"}
	}
	p := &parser{file: file}
	s := p.sa(root, "sa")
	p.crossCheck([]*SA{s})
	if len(p.errs) == 1 {
		if s != nil {
			s.Key.Wipe()
			s.AuthKey.Wipe()
		}
		return nil, p.errs[0]
	}
	if len(p.errs) > 1 {
		if s != nil {
			s.Key.Wipe()
			s.AuthKey.Wipe()
		}
		return nil, p.errs
	}
	return s, nil
}

// ParseSAs parses one SA mapping (as ParseSA) or a YAML or JSON list of
// them, checked together as the sas list is (names and SPIs unique); for
// the control socket's sa-add of several SAs at once. On an error no SA
// is returned and the keys of all of them are wiped.
func ParseSAs(file string, data []byte) ([]*SA, error) {
	var n yaml.Node
	if err := yaml.Unmarshal(data, &n); err != nil {
		return nil, &Error{File: file, Msg: "not a YAML or JSON mapping or list: " + strings.TrimPrefix(err.Error(), "yaml: ")}
	}
	root := &n
	if root.Kind == yaml.DocumentNode && len(root.Content) == 1 {
		root = root.Content[0]
	}
	root = deref(root)
	p := &parser{file: file}
	var out []*SA
	switch root.Kind {
	case yaml.MappingNode:
		if s := p.sa(root, "sa"); s != nil {
			out = append(out, s)
		}
	case yaml.SequenceNode:
		if len(root.Content) == 0 {
			return nil, &Error{File: file, Msg: "empty list of SAs"}
		}
		for i, e := range root.Content {
			if s := p.sa(deref(e), fmt.Sprintf("sa[%d]", i)); s != nil {
				out = append(out, s)
			}
		}
	default:
		return nil, &Error{File: file, Msg: "want a mapping of SA fields or a list of them"}
	}
	p.crossCheck(out)
	if len(p.errs) > 0 {
		for _, s := range out {
			s.Key.Wipe()
			s.AuthKey.Wipe()
		}
		if len(p.errs) == 1 {
			return nil, p.errs[0]
		}
		return nil, p.errs
	}
	return out, nil
}

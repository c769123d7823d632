package swan

import (
	"errors"
	"fmt"
	"net/netip"
	"regexp"
	"strings"
	"time"
)

// Names used when a Conn leaves them empty.
const (
	// DefaultConn is the connection (IKE SA) name.
	DefaultConn = "gw"
	// DefaultChild is the child SA name.
	DefaultChild = "net"
	// DefaultProposals is the IKE proposal: AES-128-GCM-16, PRF
	// HMAC-SHA2-256, Curve25519.
	DefaultProposals = "aes128gcm16-prfsha256-x25519"
	// DefaultESPProposals is the ESP proposal: AES-128-GCM-16, no PFS
	// group for the first child.
	DefaultESPProposals = "aes128gcm16"
)

// Errors of the configuration writer.
var (
	// ErrConfig is wrapped by errors about a Conn that cannot be
	// written as swanctl.conf.
	ErrConfig = errors.New("swan: invalid connection")
)

// Conn is one pre-shared-key IKEv2 connection with one child SA, as
// swanctl.conf describes it (see swanctl.conf(5) for each setting). The
// zero value of an optional field leaves strongSwan's default.
type Conn struct {
	// Name of the connection (the IKE SA); DefaultConn when empty.
	Name string
	// Child is the name of its child SA; DefaultChild when empty.
	Child string
	// LocalAddrs and RemoteAddrs are the outer addresses (comma
	// separated; "%any" allowed for RemoteAddrs of a responder).
	LocalAddrs, RemoteAddrs string
	// RemotePort is the peer's IKE port (0: 500).
	RemotePort int
	// LocalID and RemoteID are the IKE identities (FQDN, e-mail,
	// address; strongSwan's syntax). Both are required: the PSK is
	// looked up by them.
	LocalID, RemoteID string
	// PSK is the pre-shared key, written as a quoted string (no '"' or
	// newline in it; use a "0x..." hex string for binary keys).
	PSK string
	// Proposals is the IKE proposal list (DefaultProposals when empty).
	Proposals string
	// ESPProposals is the ESP proposal list (DefaultESPProposals when
	// empty).
	ESPProposals string
	// LocalTS and RemoteTS are the child's traffic selectors (strongSwan
	// "dynamic", the outer address, when empty).
	LocalTS, RemoteTS []netip.Prefix
	// RekeyTime and LifeTime of the IKE SA (rekey_time, over_time is
	// LifeTime-RekeyTime when both are set).
	RekeyTime, LifeTime time.Duration
	// ChildRekeyTime and ChildLifeTime of the child SA (rekey_time,
	// life_time).
	ChildRekeyTime, ChildLifeTime time.Duration
	// DPDDelay is the liveness check interval (dpd_delay; 0: none).
	DPDDelay time.Duration
	// DPDAction is clear, trap or restart (dpd_action of the child).
	DPDAction string
	// StartAction is none, trap or start ("none" when empty: the test
	// initiates).
	StartAction string
	// CloseAction is none, trap or start (close_action of the child).
	CloseAction string
	// Encap forces UDP encapsulation even without a NAT (encap = yes).
	// kernel-libipsec's peers get UDP encapsulation anyway.
	Encap bool
	// NoMobike turns MOBIKE off (mobike = no).
	NoMobike bool
}

// safe matches what may go unquoted into swanctl.conf.
var safe = regexp.MustCompile(`^[A-Za-z0-9_.:,%@/=+\-]*$`)

func (c Conn) withDefaults() Conn {
	if c.Name == "" {
		c.Name = DefaultConn
	}
	if c.Child == "" {
		c.Child = DefaultChild
	}
	if c.Proposals == "" {
		c.Proposals = DefaultProposals
	}
	if c.ESPProposals == "" {
		c.ESPProposals = DefaultESPProposals
	}
	if c.StartAction == "" {
		c.StartAction = "none"
	}
	return c
}

func (c Conn) check() error {
	for _, f := range []struct{ name, v string }{
		{"Name", c.Name}, {"Child", c.Child}, {"LocalAddrs", c.LocalAddrs}, {"RemoteAddrs", c.RemoteAddrs},
		{"LocalID", c.LocalID}, {"RemoteID", c.RemoteID}, {"Proposals", c.Proposals},
		{"ESPProposals", c.ESPProposals}, {"DPDAction", c.DPDAction}, {"StartAction", c.StartAction},
		{"CloseAction", c.CloseAction},
	} {
		if !safe.MatchString(f.v) {
			return fmt.Errorf("%w: %s %q has characters swanctl.conf would need quoted", ErrConfig, f.name, f.v)
		}
	}
	if c.LocalID == "" || c.RemoteID == "" {
		return fmt.Errorf("%w: %s: LocalID and RemoteID are required", ErrConfig, c.Name)
	}
	if c.PSK == "" || strings.ContainsAny(c.PSK, "\"\n\\") {
		return fmt.Errorf("%w: %s: PSK empty or with '\"', '\\' or a newline", ErrConfig, c.Name)
	}
	if c.RemotePort < 0 || c.RemotePort > 65535 {
		return fmt.Errorf("%w: %s: RemotePort %d", ErrConfig, c.Name, c.RemotePort)
	}
	for _, d := range []time.Duration{c.RekeyTime, c.LifeTime, c.ChildRekeyTime, c.ChildLifeTime, c.DPDDelay} {
		if d < 0 || d%time.Second != 0 {
			return fmt.Errorf("%w: %s: duration %v is not a whole number of seconds", ErrConfig, c.Name, d)
		}
	}
	return nil
}

// SwanctlConf returns swanctl.conf text with the connections and their
// secrets; conns must have distinct names.
func SwanctlConf(conns ...Conn) (string, error) {
	var b, sec strings.Builder
	seen := map[string]bool{}
	b.WriteString("connections {\n")
	for i, c := range conns {
		c = c.withDefaults()
		if err := c.check(); err != nil {
			return "", err
		}
		if seen[c.Name] {
			return "", fmt.Errorf("%w: two connections named %q", ErrConfig, c.Name)
		}
		seen[c.Name] = true
		fmt.Fprintf(&b, "  %s {\n    version = 2\n", c.Name)
		kv(&b, 4, "local_addrs", c.LocalAddrs)
		kv(&b, 4, "remote_addrs", c.RemoteAddrs)
		if c.RemotePort != 0 {
			kv(&b, 4, "remote_port", fmt.Sprint(c.RemotePort))
		}
		kv(&b, 4, "proposals", c.Proposals)
		secs(&b, 4, "rekey_time", c.RekeyTime)
		if c.LifeTime > 0 && c.RekeyTime > 0 && c.LifeTime > c.RekeyTime {
			secs(&b, 4, "over_time", c.LifeTime-c.RekeyTime)
		}
		secs(&b, 4, "dpd_delay", c.DPDDelay)
		if c.Encap {
			kv(&b, 4, "encap", "yes")
		}
		if c.NoMobike {
			kv(&b, 4, "mobike", "no")
		}
		fmt.Fprintf(&b, "    local {\n      auth = psk\n      id = %s\n    }\n", c.LocalID)
		fmt.Fprintf(&b, "    remote {\n      auth = psk\n      id = %s\n    }\n", c.RemoteID)
		fmt.Fprintf(&b, "    children {\n      %s {\n", c.Child)
		kv(&b, 8, "local_ts", prefixes(c.LocalTS))
		kv(&b, 8, "remote_ts", prefixes(c.RemoteTS))
		kv(&b, 8, "esp_proposals", c.ESPProposals)
		secs(&b, 8, "rekey_time", c.ChildRekeyTime)
		secs(&b, 8, "life_time", c.ChildLifeTime)
		kv(&b, 8, "dpd_action", c.DPDAction)
		kv(&b, 8, "start_action", c.StartAction)
		kv(&b, 8, "close_action", c.CloseAction)
		b.WriteString("      }\n    }\n  }\n")
		fmt.Fprintf(&sec, "  ike-%d {\n    id-1 = %s\n    id-2 = %s\n    secret = \"%s\"\n  }\n", i, c.LocalID, c.RemoteID, c.PSK)
	}
	b.WriteString("}\nsecrets {\n")
	b.WriteString(sec.String())
	b.WriteString("}\n")
	return b.String(), nil
}

func kv(b *strings.Builder, indent int, k, v string) {
	if v != "" {
		fmt.Fprintf(b, "%*s%s = %s\n", indent, "", k, v)
	}
}

func secs(b *strings.Builder, indent int, k string, d time.Duration) {
	if d > 0 {
		kv(b, indent, k, fmt.Sprintf("%ds", int64(d/time.Second)))
	}
}

func prefixes(ps []netip.Prefix) string {
	s := make([]string, len(ps))
	for i, p := range ps {
		s[i] = p.String()
	}
	return strings.Join(s, ",")
}

// Options tunes a Charon. The zero value gives the defaults.
type Options struct {
	// Dir is charon's directory (configuration, vici socket, log, a
	// private /run). Empty: a new temporary directory, removed by Stop.
	Dir string
	// Port and NATTPort are charon's IKE ports (0: 500 and 4500).
	Port, NATTPort int
	// RetransmitTries and RetransmitTimeout for IKE requests (0: 3 tries,
	// 1 s; short, so that a test with a dead peer ends soon).
	RetransmitTries   int
	RetransmitTimeout time.Duration
	// NoRoutes keeps charon from installing routes to the remote
	// traffic selectors through its TUN device (install_routes = no).
	NoRoutes bool
	// Charon is the charon binary (CharonPath when empty).
	Charon string
	// Swanctl is the swanctl binary ("swanctl" from PATH when empty).
	Swanctl string
	// Extra is appended inside strongswan.conf's charon section
	// (e.g. "threads = 8\n").
	Extra string
}

// Plugins is the plugin list charon loads: enough for PSK IKEv2 with
// AES-GCM/CBC, SHA-1/2, Curve25519, user-space ESP (kernel-libipsec) and
// the vici control socket.
const Plugins = "random nonce openssl aes sha1 sha2 hmac gcm curve25519 kdf pem pkcs1 x509 pubkey kernel-libipsec kernel-netlink socket-default vici"

// StrongswanConf returns the strongswan.conf text for a charon with the
// vici socket at viciPath and its log at logPath.
func StrongswanConf(o Options, viciPath, logPath string) string {
	port, natt := o.Port, o.NATTPort
	if port == 0 {
		port = 500
	}
	if natt == 0 {
		natt = 4500
	}
	tries := o.RetransmitTries
	if tries == 0 {
		tries = 3
	}
	rto := o.RetransmitTimeout
	if rto == 0 {
		rto = time.Second
	}
	routes := "yes"
	if o.NoRoutes {
		routes = "no"
	}
	return fmt.Sprintf(`charon {
  load = %s
  port = %d
  port_nat_t = %d
  install_routes = %s
  retransmit_tries = %d
  retransmit_timeout = %.3f
  plugins {
    vici {
      socket = unix://%s
    }
  }
  filelog {
    charonlog {
      path = %s
      time_format = %%T
      default = 1
      ike = 2
      cfg = 2
      flush_line = yes
    }
  }
%s}
`, Plugins, port, natt, routes, tries, rto.Seconds(), viciPath, logPath, o.Extra)
}

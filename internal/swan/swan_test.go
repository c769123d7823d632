package swan

import (
	"errors"
	"net/netip"
	"reflect"
	"strings"
	"testing"
	"time"
)

// sample is swanctl --list-sas --raw of strongSwan 5.9.8 with one IKE
// SA and its child after three pings.
const sample = `list-sa event {gw {uniqueid=1 version=2 state=ESTABLISHED local-host=192.168.78.1 local-port=4500 local-id=a.test remote-host=192.168.78.2 remote-port=4500 remote-id=b.test initiator=yes initiator-spi=1ef7636168b69dbd responder-spi=13c47933aa6952bb nat-remote=yes nat-any=yes encr-alg=AES_GCM_16 encr-keysize=128 prf-alg=PRF_HMAC_SHA2_256 dh-group=CURVE_25519 established=0 rekey-time=13004 child-sas {net-1 {name=net uniqueid=1 reqid=1 state=INSTALLED mode=TUNNEL protocol=ESP encap=yes spi-in=4043ef76 spi-out=c3c59621 encr-alg=AES_GCM_16 encr-keysize=128 bytes-in=252 packets-in=3 use-in=0 bytes-out=252 packets-out=3 use-out=0 rekey-time=3305 life-time=3960 install-time=0 local-ts=[10.78.1.1/32] remote-ts=[10.78.2.1/32]}}}}
list-sas reply {}
`

func TestParseSAs(t *testing.T) {
	sas, err := ParseSAs(sample)
	if err != nil {
		t.Fatal(err)
	}
	want := []IKESA{{
		Name: "gw", UniqueID: 1, Version: 2, State: "ESTABLISHED",
		LocalHost: "192.168.78.1", LocalPort: 4500, LocalID: "a.test",
		RemoteHost: "192.168.78.2", RemotePort: 4500, RemoteID: "b.test",
		Initiator: true, InitiatorSPI: 0x1ef7636168b69dbd, ResponderSPI: 0x13c47933aa6952bb,
		EncrAlg: "AES_GCM_16", PRFAlg: "PRF_HMAC_SHA2_256", DHGroup: "CURVE_25519",
		Children: []ChildSA{{
			Name: "net", UniqueID: 1, ReqID: 1, State: "INSTALLED", Mode: "TUNNEL", Protocol: "ESP", Encap: true,
			SPIIn: 0x4043ef76, SPIOut: 0xc3c59621, EncrAlg: "AES_GCM_16", EncrKeySize: 128,
			BytesIn: 252, PacketsIn: 3, BytesOut: 252, PacketsOut: 3,
			LocalTS: []string{"10.78.1.1/32"}, RemoteTS: []string{"10.78.2.1/32"},
		}},
	}}
	if !reflect.DeepEqual(sas, want) {
		t.Fatalf("ParseSAs:\n got %+v\nwant %+v", sas, want)
	}
}

func TestParseSAsTwoAndRekeying(t *testing.T) {
	in := `list-sa event {a {uniqueid=3 version=2 state=ESTABLISHED child-sas {net-4 {name=net uniqueid=4 state=REKEYED spi-in=00000101 local-ts=[10.0.0.0/24 10.0.1.0/24[tcp/80]] remote-ts=[]} net-5 {name=net uniqueid=5 state=INSTALLED spi-in=00000102}}}}
list-sa event {b {uniqueid=4 version=2 state=CONNECTING tasks-queued=[IKE_VENDOR IKE_INIT]}}
list-sas reply {}`
	sas, err := ParseSAs(in)
	if err != nil {
		t.Fatal(err)
	}
	if len(sas) != 2 || sas[0].Name != "a" || sas[1].Name != "b" || sas[1].State != "CONNECTING" || len(sas[1].Children) != 0 {
		t.Fatalf("got %+v", sas)
	}
	c := sas[0].Children
	if len(c) != 2 || c[0].State != "REKEYED" || c[0].SPIIn != 0x101 || c[1].SPIIn != 0x102 || c[1].State != "INSTALLED" {
		t.Fatalf("children %+v", c)
	}
	// A traffic selector with a port in brackets is not a list.
	if want := []string{"10.0.0.0/24", "10.0.1.0/24[tcp/80]"}; !reflect.DeepEqual(c[0].LocalTS, want) || len(c[0].RemoteTS) != 0 {
		t.Errorf("local-ts %q, remote-ts %q", c[0].LocalTS, c[0].RemoteTS)
	}
	if sas, err := ParseSAs("list-sas reply {}\n"); err != nil || len(sas) != 0 {
		t.Fatalf("no SAs: %v %v", sas, err)
	}
}

func TestParseSAsMalformed(t *testing.T) {
	for _, in := range []string{
		"list-sa event {gw {state=ESTABLISHED}",                                          // unbalanced
		"list-sa event {gw {state=ESTABLISHED}}}",                                        // one '}' too many
		"list-sa event gw",                                                               // no section
		"something else {}",                                                              // unknown message
		"list-sa event {gw {uniqueid=x state=ESTABLISHED}}",                              // not a number
		"list-sa event {gw {version=2}}",                                                 // no state
		"list-sa event {gw {state=UP child-sas {c {x=1}}}}",                              // child without a name
		"list-sa event {gw {state=UP local-ts=[a {]}}",                                   // brace in a list
		"list-sa event {gw {state=UP bare}}",                                             // neither
		"list-sa event {gw {state=UP [}}",                                                // list without a name
		"list-sa event {gw {state=UP child-sas {c {name=n state=INSTALLED spi-in=zz}}}}", // bad SPI
		"list-sa event {gw {state=UP initiator-spi=123456789abcdef01}}",                  // SPI too long
	} {
		if sas, err := ParseSAs(in); !errors.Is(err, ErrParse) {
			t.Errorf("ParseSAs(%q) = %+v, %v; want ErrParse", in, sas, err)
		}
	}
}

func FuzzParseSAs(f *testing.F) {
	f.Add(sample)
	f.Add("list-sa event {a {state=X child-sas {c {name=n state=Y local-ts=[1 2]}}}}")
	f.Fuzz(func(t *testing.T, s string) {
		sas, err := ParseSAs(s)
		if err != nil && !errors.Is(err, ErrParse) {
			t.Fatalf("error %v does not wrap ErrParse", err)
		}
		if err != nil && sas != nil {
			t.Fatal("SAs with an error")
		}
	})
}

func TestSwanctlConf(t *testing.T) {
	c := Conn{
		LocalAddrs: "192.0.2.1", RemoteAddrs: "192.0.2.2", RemotePort: 4501,
		LocalID: "a.test", RemoteID: "b.test", PSK: "0123456789abcdef0123",
		LocalTS:   []netip.Prefix{netip.MustParsePrefix("10.1.0.0/24")},
		RemoteTS:  []netip.Prefix{netip.MustParsePrefix("10.2.0.0/24"), netip.MustParsePrefix("10.3.0.0/24")},
		RekeyTime: time.Hour, LifeTime: 90 * time.Minute, ChildRekeyTime: 10 * time.Minute, ChildLifeTime: 12 * time.Minute,
		DPDDelay: 5 * time.Second, DPDAction: "restart", StartAction: "start", Encap: true, NoMobike: true,
	}
	text, err := SwanctlConf(c, Conn{Name: "second", Child: "c2", LocalAddrs: "%any", RemoteAddrs: "%any", LocalID: "x", RemoteID: "y", PSK: "p"})
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"  gw {\n    version = 2\n    local_addrs = 192.0.2.1\n    remote_addrs = 192.0.2.2\n    remote_port = 4501\n",
		"    proposals = " + DefaultProposals + "\n",
		"    rekey_time = 3600s\n    over_time = 1800s\n    dpd_delay = 5s\n    encap = yes\n    mobike = no\n",
		"    local {\n      auth = psk\n      id = a.test\n    }\n",
		"    remote {\n      auth = psk\n      id = b.test\n    }\n",
		"      net {\n        local_ts = 10.1.0.0/24\n        remote_ts = 10.2.0.0/24,10.3.0.0/24\n        esp_proposals = aes128gcm16\n",
		"        rekey_time = 600s\n        life_time = 720s\n        dpd_action = restart\n        start_action = start\n",
		"  second {\n", "      c2 {\n", "        start_action = none\n",
		"secrets {\n  ike-0 {\n    id-1 = a.test\n    id-2 = b.test\n    secret = \"0123456789abcdef0123\"\n  }\n  ike-1 {",
	} {
		if !strings.Contains(text, want) {
			t.Errorf("swanctl.conf lacks %q:\n%s", want, text)
		}
	}
	if strings.Count(text, "{") != strings.Count(text, "}") {
		t.Errorf("unbalanced braces:\n%s", text)
	}
	// The second connection has no traffic selectors: strongSwan's
	// default (dynamic) applies.
	if strings.Count(text, "local_ts") != 1 {
		t.Errorf("local_ts written for a connection without selectors:\n%s", text)
	}
}

func TestSwanctlConfRefuses(t *testing.T) {
	ok := Conn{LocalAddrs: "192.0.2.1", RemoteAddrs: "192.0.2.2", LocalID: "a", RemoteID: "b", PSK: "k"}
	if _, err := SwanctlConf(ok); err != nil {
		t.Fatalf("valid Conn refused: %v", err)
	}
	for name, mod := range map[string]func(*Conn){
		"injection in an id":    func(c *Conn) { c.LocalID = "a }\n secrets { x" },
		"quote in the psk":      func(c *Conn) { c.PSK = `k"` },
		"newline in the psk":    func(c *Conn) { c.PSK = "k\n" },
		"empty psk":             func(c *Conn) { c.PSK = "" },
		"no remote id":          func(c *Conn) { c.RemoteID = "" },
		"space in proposals":    func(c *Conn) { c.Proposals = "aes128 sha256" },
		"fractional seconds":    func(c *Conn) { c.ChildRekeyTime = 1500 * time.Millisecond },
		"negative duration":     func(c *Conn) { c.DPDDelay = -time.Second },
		"port out of range":     func(c *Conn) { c.RemotePort = 70000 },
		"brace in a child name": func(c *Conn) { c.Child = "net{" },
	} {
		c := ok
		mod(&c)
		if _, err := SwanctlConf(c); !errors.Is(err, ErrConfig) {
			t.Errorf("%s: err %v, want ErrConfig", name, err)
		}
	}
	if _, err := SwanctlConf(ok, ok); !errors.Is(err, ErrConfig) {
		t.Errorf("two connections named alike: %v", err)
	}
}

func TestStrongswanConf(t *testing.T) {
	s := StrongswanConf(Options{Port: 1500, NATTPort: 14500, NoRoutes: true, RetransmitTries: 2, RetransmitTimeout: 500 * time.Millisecond, Extra: "  threads = 4\n"}, "/d/v.sock", "/d/log")
	for _, want := range []string{"load = " + Plugins + "\n", "port = 1500\n", "port_nat_t = 14500\n", "install_routes = no\n",
		"retransmit_tries = 2\n", "retransmit_timeout = 0.500\n", "socket = unix:///d/v.sock\n", "path = /d/log\n", "  threads = 4\n}\n"} {
		if !strings.Contains(s, want) {
			t.Errorf("strongswan.conf lacks %q:\n%s", want, s)
		}
	}
	d := StrongswanConf(Options{}, "/v", "/l")
	for _, want := range []string{"port = 500\n", "port_nat_t = 4500\n", "install_routes = yes\n", "retransmit_tries = 3\n", "retransmit_timeout = 1.000\n"} {
		if !strings.Contains(d, want) {
			t.Errorf("default strongswan.conf lacks %q:\n%s", want, d)
		}
	}
}

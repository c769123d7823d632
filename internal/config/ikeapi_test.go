package config

import (
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/espxdp/espxdp/ike"
	"github.com/espxdp/espxdp/sa"
)

func ikeSA(name, dir, spi, extra string) string {
	return "{name: " + name + ", direction: " + dir + ", spi: " + spi + ", local: 192.0.2.1, remote: 198.51.100.2, encap: udp, transform: aes128gcm16, key: 0x000102030405060708090a0b0c0d0e0f10111213" + extra + "}"
}

// TestChildAndFloatRemote: child: and float_remote: reach sa.Config;
// bad values are located errors.
func TestChildAndFloatRemote(t *testing.T) {
	cfg, err := Parse("c.yaml", []byte("sas:\n  - "+ikeSA("o", "out", "0x1001", ", child: 42")+"\n  - "+ikeSA("i", "in", "0x2001", ", child: 42, float_remote: true")+"\n"))
	if err != nil {
		t.Fatal(err)
	}
	o, i := cfg.SAs[0].SAConfig(), cfg.SAs[1].SAConfig()
	if o.Child != sa.ChildID(42) || i.Child != 42 || o.FloatRemote || !i.FloatRemote {
		t.Fatalf("out child %d float %v, in child %d float %v", o.Child, o.FloatRemote, i.Child, i.FloatRemote)
	}
	for _, tc := range []struct{ sa, want string }{
		{ikeSA("i", "in", "0x2001", ", child: 0"), "sas[0].child: child 0 means no group"},
		{ikeSA("i", "in", "0x2001", ", child: -1"), "sas[0].child"},
		{ikeSA("i", "in", "0x2001", ", child: many"), "sas[0].child"},
		{ikeSA("o", "out", "0x2001", ", float_remote: true"), "sas[0].float_remote: only valid for direction: in"},
		{strings.Replace(ikeSA("i", "in", "0x2001", ", float_remote: true"), "encap: udp, ", "", 1), "sas[0].float_remote: only valid with encap: udp"},
		{ikeSA("i", "in", "0x2001", ", float_remote: maybe"), "sas[0].float_remote"},
	} {
		_, err := Parse("c.yaml", []byte("sas:\n  - "+tc.sa+"\n"))
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: error %v, want %q", tc.sa, err, tc.want)
		}
	}
	// float_remote: false is allowed anywhere.
	if _, err := Parse("c.yaml", []byte("sas:\n  - "+ikeSA("o", "out", "0x2001", ", float_remote: false")+"\n")); err != nil {
		t.Fatal(err)
	}
}

// TestParseSAs: one mapping or a list; the list is checked as a whole
// (an error in any SA, or two SAs that clash, fails it all) and its keys
// are wiped on an error.
func TestParseSAs(t *testing.T) {
	one, err := ParseSAs("ctl", []byte(ikeSA("o", "out", "0x1001", "")))
	if err != nil || len(one) != 1 || one[0].Name != "o" {
		t.Fatalf("mapping: %v %v", one, err)
	}
	two, err := ParseSAs("ctl", []byte("["+ikeSA("o", "out", "0x1001", ", child: 3")+", "+ikeSA("i", "in", "0x2001", ", child: 3")+"]"))
	if err != nil || len(two) != 2 || two[1].Child != 3 || two[1].Direction != In {
		t.Fatalf("list: %v %v", two, err)
	}
	// JSON works as for ParseSA.
	if _, err := ParseSAs("ctl", []byte(`[{"name": "o", "direction": "out", "spi": 4097, "local": "192.0.2.1", "remote": "198.51.100.2", "transform": "aes128gcm16", "key": "0x000102030405060708090a0b0c0d0e0f10111213"}]`)); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct{ data, want string }{
		{"[" + ikeSA("o", "out", "0x1001", "") + ", {name: i, direction: in}]", "sa[1]"},
		{"[" + ikeSA("o", "out", "0x1001", "") + ", " + ikeSA("o", "in", "0x2001", "") + "]", "already used"},
		{"[" + ikeSA("i", "in", "0x2001", "") + ", " + ikeSA("j", "in", "0x2001", "") + "]", "inbound SPI 0x2001 already used"},
		{"[]", "empty list"},
		{"42", "want a mapping of SA fields or a list"},
		{"[1, 2]", "want a mapping of SA fields"},
		{"{", "not a YAML or JSON"},
	} {
		got, err := ParseSAs("ctl", []byte(tc.data))
		if err == nil || got != nil || !strings.Contains(err.Error(), tc.want) || !errors.Is(err, ErrInvalid) {
			t.Errorf("%s: %v, %v; want an error with %q", tc.data, got, err, tc.want)
		}
	}
}

// TestChildIDBelowIKERange: a static child id is below ike.ChildIDBase,
// in a file and over the control socket (ParseSAs): the ids from there
// up are the ike package's, and the SAD groups SAs by id alone, so a
// static SA with one would join (and be deleted with) a negotiated
// child's group.
func TestChildIDBelowIKERange(t *testing.T) {
	top := uint64(ike.ChildIDBase - 1)
	cfg, err := Parse("c.yaml", []byte("sas:\n  - "+ikeSA("i", "in", "0x2001", fmt.Sprintf(", child: %d", top))+"\n"))
	if err != nil {
		t.Fatalf("child %d (the largest static id) refused: %v", top, err)
	}
	if got := cfg.SAs[0].Child; got != sa.ChildID(top) {
		t.Fatalf("child %d, want %d", got, top)
	}
	for _, id := range []uint64{uint64(ike.ChildIDBase), uint64(ike.ChildIDBase) + 1, 1<<64 - 1} {
		extra := fmt.Sprintf(", child: %d", id)
		if _, err := Parse("c.yaml", []byte("sas:\n  - "+ikeSA("i", "in", "0x2001", extra)+"\n")); err == nil || !strings.Contains(err.Error(), "sas[0].child") {
			t.Errorf("file: child %d: error %v, want one at sas[0].child", id, err)
		}
		if _, err := ParseSAs("ctl", []byte(ikeSA("i", "in", "0x2001", extra))); err == nil || !strings.Contains(err.Error(), "IKE") {
			t.Errorf("control socket: child %d: error %v, want the IKE range named", id, err)
		}
	}
}

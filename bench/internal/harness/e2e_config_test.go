package harness

import (
	"errors"
	"math"
	"os"
	"testing"
)

func TestValidateNet(t *testing.T) {
	good := Config{Suites: []string{"e2e", "wg", "peers"}, Sizes: []int{64}, Transforms: []string{"aes128gcm16"}, DurationNs: 1,
		Workers: []int{1, 2}, SAs: []int{1}, E2ESizes: []int{64, 1420, 0}, E2EDurationNs: 1, WGBytes: 1 << 20}
	if err := good.Validate(); err != nil {
		t.Fatal(err)
	}
	for _, n := range []int{E2EDefaultJumbo, 1421, E2EMaxJumbo} {
		c := good
		c.E2EJumbo = n
		if err := c.Validate(); err != nil {
			t.Errorf("jumbo size %d: %v", n, err)
		}
	}
	for name, mod := range map[string]func(*Config){
		"unknown suite":  func(c *Config) { c.Suites = []string{"e2e", "xdp"} },
		"no e2e size":    func(c *Config) { c.E2ESizes = nil },
		"e2e size small": func(c *Config) { c.E2ESizes = []int{27} },
		"e2e size big":   func(c *Config) { c.E2ESizes = []int{1421} },
		"e2e duration":   func(c *Config) { c.E2EDurationNs = 0 },
		"wg bytes":       func(c *Config) { c.WGBytes = 1000 },
		"peers bytes":    func(c *Config) { c.Suites, c.WGBytes = []string{"peers"}, 1000 },
		"workers":        func(c *Config) { c.Workers = []int{65} },
		"jumbo small":    func(c *Config) { c.E2EJumbo = 1420 },
		"jumbo big":      func(c *Config) { c.E2EJumbo = E2EMaxJumbo + 1 },
		"jumbo negative": func(c *Config) { c.E2EJumbo = -1 },
	} {
		c := good
		mod(&c)
		if err := c.Validate(); err == nil {
			t.Errorf("%s: no error", name)
		}
	}
	// The unprivileged suites need none of it.
	plain := Config{Suites: []string{"crypto"}, Sizes: []int{64}, Transforms: []string{"aes128gcm16"}, DurationNs: 1, Workers: []int{1}, SAs: []int{1}}
	if err := plain.Validate(); err != nil {
		t.Error(err)
	}
	err := checkPrivileged(good)
	if root := os.Geteuid() == 0; root != (err == nil) || (err != nil && !errors.Is(err, ErrNeedRoot)) {
		t.Errorf("checkPrivileged as uid %d: %v", os.Geteuid(), err)
	}
	if err := checkPrivileged(plain); err != nil {
		t.Error(err)
	}
}

func TestIMIX(t *testing.T) {
	var n64, n576, n1420 int
	for _, n := range imixPattern {
		switch n {
		case 64:
			n64++
		case 576:
			n576++
		case 1420:
			n1420++
		default:
			t.Errorf("size %d in the IMIX", n)
		}
	}
	if n64 != 7 || n576 != 4 || n1420 != 1 {
		t.Errorf("IMIX %d:%d:%d, want 7:4:1", n64, n576, n1420)
	}
	if m := IMIXMean(); math.Abs(m-(7*64+4*576+1420)/12.0) > 1e-9 {
		t.Errorf("IMIXMean %v", m)
	}
}

package gateway

import (
	"strings"
	"testing"

	"github.com/espxdp/espxdp/internal/config"
)

// TestMetricsOptionsNeedRestart: the metrics listener is set up at
// Start, so a reload that changes its options is refused.
func TestMetricsOptionsNeedRestart(t *testing.T) {
	base := config.Gateway{Queues: 1, Metrics: "127.0.0.1:9477"}
	for _, change := range []func(g *config.Gateway){
		func(g *config.Gateway) { g.Metrics = "" },
		func(g *config.Gateway) { g.Metrics = "127.0.0.1:9478" },
		func(g *config.Gateway) { g.MetricsMaxSAs = 10 },
	} {
		b := base
		change(&b)
		if why := restartNeeded(&base, &b); !strings.Contains(why, "gateway options") {
			t.Errorf("%+v → %+v: restartNeeded = %q", base, b, why)
		}
	}
	same := base
	if why := restartNeeded(&base, &same); why != "" {
		t.Errorf("no change: %q", why)
	}
}

// TestMetricsSnapshotNotStarted: a gateway that was not started exports
// its SAs and no engine.
func TestMetricsSnapshotNotStarted(t *testing.T) {
	cfg, err := config.Parse("gw.yaml", []byte(`gateway: {metrics: "127.0.0.1:0"}
interfaces:
  cipher: {name: wan0, next_hop: "02:00:00:00:00:01"}
  plain: {name: lan0, next_hop: "02:00:00:00:00:02"}
protected: [10.2.0.0/24]
sas:
  - {name: o, direction: out, spi: 0x1000, local: 192.0.2.1, remote: 192.0.2.2, transform: aes128gcm16, key: 0x000102030405060708090a0b0c0d0e0f10111213}
`))
	if err != nil {
		t.Fatal(err)
	}
	gw, err := New(cfg, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer gw.Close()
	s := gw.MetricsSnapshot()
	if len(s.SAs) != 1 || s.SAs[0].Name != "o" || s.Engine != nil || gw.MetricsAddr() != "" {
		t.Errorf("snapshot %+v, addr %q", s, gw.MetricsAddr())
	}
}

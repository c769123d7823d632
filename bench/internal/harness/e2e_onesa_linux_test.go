//go:build linux

package harness

import (
	"testing"
	"time"

	"github.com/espxdp/espxdp/internal/testenv"
	"github.com/espxdp/espxdp/sa"
	"github.com/espxdp/espxdp/xdp"
)

// TestOneSARows runs one-SA rows briefly and checks what the suite
// reports as invariants: the stream keeps every sequence number unique
// (encrypt) and loses nothing to replay (decrypt); Ordered reorders no
// inner flow; Shared uses both workers, Sharded one, with no hand-off;
// the hand-off row hands packets off.
func TestOneSARows(t *testing.T) {
	testenv.RequirePrivileged(t)
	testenv.RequireCommand(t, "ip")
	cfg := Config{Seed: 3, E2EDurationNs: int64(100 * time.Millisecond), Workers: []int{1}}
	r := &e2eRun{cfg: cfg, d: 100 * time.Millisecond, base: map[string]float64{}, ceil: map[string]float64{}}
	o := &oneSARun{r: r}
	t.Cleanup(func() { o.close(); r.close() })
	if err := r.setup(); err != nil {
		t.Fatal(err)
	}
	metric := func(res Result, name string) float64 {
		t.Helper()
		v, ok := res.Get(name)
		if !ok {
			t.Fatalf("%s %s %s: no %s in %+v", res.Mode, res.Op, res.Traffic, name, res.Metrics)
		}
		return v
	}
	for _, c := range []struct {
		op    string
		mode  sa.Concurrency
		steer xdp.Steering
	}{
		{"decrypt", sa.Ordered, xdp.SteerAuto},
		{"encrypt", sa.Ordered, xdp.SteerAuto},
		{"decrypt", sa.Shared, xdp.SteerAuto},
		{"decrypt", sa.Sharded, xdp.SteerAuto},
		{"decrypt", sa.Sharded, xdp.SteerSpread},
		{"encrypt", sa.PerCPU, xdp.SteerAuto},
	} {
		rs, err := o.row(c.op, c.mode, 2, c.steer)
		if err != nil {
			t.Fatalf("%s %v: %v", c.op, c.mode, err)
		}
		if len(rs) != 2 || rs[0].Traffic != OneSAUDP || rs[1].Traffic != OneSAStream || rs[0].Kind != KindOneSA {
			t.Fatalf("%s %v: rows %+v", c.op, c.mode, rs)
		}
		udp, st := rs[0], rs[1]
		t.Logf("%s %v %s: %.3f Mpps, stream reordered %.1f%%, loss %.1f%%", c.op, c.mode, udp.Ingress,
			metric(udp, "Mpps"), metric(st, "reordered%"), metric(st, "loss%"))
		if c.op == "decrypt" && metric(st, "replay-drops") != 0 {
			t.Errorf("%s %v: %v replay drops", c.op, c.mode, metric(st, "replay-drops"))
		}
		if c.op == "encrypt" && metric(st, "seq-sent-twice") != 0 {
			t.Errorf("%s %v: sequence numbers sent twice", c.op, c.mode)
		}
		if c.mode == sa.Ordered && metric(st, "reordered") != 0 {
			t.Errorf("Ordered %s: %v packets reordered", c.op, metric(st, "reordered"))
		}
		if metric(st, "delivered") == 0 {
			t.Errorf("%s %v: stream delivered nothing", c.op, c.mode)
		}
		switch {
		case c.mode == sa.Shared && c.op == "decrypt":
			if metric(udp, "busy-workers") != 2 || udp.Ingress != "spread" {
				t.Errorf("Shared: %v busy workers, steering %s", metric(udp, "busy-workers"), udp.Ingress)
			}
		case c.mode == sa.Sharded && c.steer == xdp.SteerAuto:
			if metric(udp, "busy-workers") != 1 || metric(udp, "handed-off") != 0 || udp.Ingress != "spi" {
				t.Errorf("Sharded steered: %v busy workers, %v handed off, steering %s",
					metric(udp, "busy-workers"), metric(udp, "handed-off"), udp.Ingress)
			}
		case c.mode == sa.Sharded:
			if metric(udp, "handed-off") == 0 {
				t.Errorf("Sharded spread: nothing handed off")
			}
		}
	}
}

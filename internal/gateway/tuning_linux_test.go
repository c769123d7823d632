//go:build linux

package gateway

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/espxdp/espxdp/bpf"
	"github.com/espxdp/espxdp/internal/config"
	"github.com/espxdp/espxdp/internal/testenv"
	"github.com/espxdp/espxdp/internal/topo"
	"github.com/espxdp/espxdp/xdp"
)

// TestTuningLimitsAgree: the limits internal/config repeats are the
// data plane's.
func TestTuningLimitsAgree(t *testing.T) {
	for _, c := range []struct {
		name      string
		cfg, want int
	}{
		{"MaxWorkers", config.MaxWorkers, bpf.MaxSocketsPerQueue},
		{"MaxSpreadChunk", config.MaxSpreadChunk, bpf.MaxSpreadChunk},
		{"MaxRingSize", config.MaxRingSize, xdp.MaxRingSize},
		{"MaxBusyPollUsecs", config.MaxBusyPollUsecs, xdp.MaxBusyPollUsecs},
		{"MaxBusyPollBudget", config.MaxBusyPollBudget, xdp.MaxBusyPollBudget},
	} {
		if c.cfg != c.want {
			t.Errorf("config.%s = %d, the data plane's %d", c.name, c.cfg, c.want)
		}
	}
	for _, s := range []xdp.Steering{xdp.SteerAuto, xdp.SteerQueue, xdp.SteerSPI, xdp.SteerSpread} {
		if steering(s.String()) != s {
			t.Errorf("gateway.steering %q maps to %v", s.String(), steering(s.String()))
		}
	}
}

// TestTuningEngineAccepts checks over random tuning options the
// invariant the configuration keeps: what config.Parse accepts, the
// engine accepts (xdp.NewEngine only checks, it starts nothing), with
// the workers, steering, ring sizes and busy polling asked for, and the
// steering the engine resolves is config.Gateway.EffectiveSteering.
func TestTuningEngineAccepts(t *testing.T) {
	r := rand.New(rand.NewPCG(2, 14))
	pick := func(xs ...string) string { return xs[r.IntN(len(xs))] }
	checked := 0
	for range 300 {
		var b strings.Builder
		b.WriteString("gateway:\n")
		fmt.Fprintf(&b, "  queues: %s\n", pick("1", "2", "4"))
		if r.IntN(3) > 0 {
			fmt.Fprintf(&b, "  workers: %s\n", pick("1", "2", "3", "4", "8"))
		}
		fmt.Fprintf(&b, "  concurrency: %s\n", pick("shared", "sharded", "percpu", "ordered"))
		if r.IntN(2) == 0 {
			fmt.Fprintf(&b, "  steering: %s\n", pick("auto", "queue", "spi", "spread"))
		}
		if r.IntN(3) == 0 {
			fmt.Fprintf(&b, "  spread_chunk: %s\n", pick("1", "8", "32", "32768"))
		}
		if r.IntN(5) == 0 {
			b.WriteString("  jumbo: true\n")
		}
		if r.IntN(2) == 0 {
			fmt.Fprintf(&b, "  rings: {rx: %s, tx: %s, fill: %s}\n", pick("64", "2048", "8192"), pick("64", "1024", "4096"), pick("64", "4096", "8192"))
		}
		if r.IntN(2) == 0 {
			fmt.Fprintf(&b, "  busy_poll: {usecs: %s, budget: %s, prefer: %s}\n", pick("1", "50", "1000"), pick("1", "64"), pick("true", "false"))
		}
		y := b.String() + offlineYAML
		cfg, err := config.Parse("gw.yaml", []byte(y))
		if err != nil {
			continue
		}
		gw := newYAMLGateway(t, y)
		eng, err := xdp.NewEngine(gw.engineConfig())
		gw.Close()
		if err != nil {
			t.Fatalf("%sthe configuration accepts what the engine refuses: %v", b.String(), err)
		}
		g := cfg.Gateway
		if got, want := eng.Steering().String(), g.EffectiveSteering(); got != want {
			t.Fatalf("%sengine steering %s, configuration says %s", b.String(), got, want)
		}
		ec := gw.engineConfig()
		if ec.Workers != g.EngineWorkers() || gw.proc.Workers() != g.EngineWorkers() || ec.RXSize != g.Rings.RX ||
			ec.TXSize != g.Rings.TX || ec.UMEM.FillSize != g.Rings.Fill || ec.BusyPoll.Usecs != g.BusyPoll.Usecs ||
			ec.BusyPoll.Budget != g.BusyPoll.Budget || ec.BusyPoll.Prefer != g.BusyPoll.Prefer || ec.SpreadChunk != g.SpreadChunk {
			t.Fatalf("%sengine config %+v", b.String(), ec)
		}
		checked++
	}
	if checked < 50 {
		t.Errorf("only %d configurations accepted", checked)
	}
}

// TestTuningReloadNeedsRestart: a reload that changes how the engine is
// tuned is refused with ErrRestart naming the options; one that spells
// the same tuning differently (workers equal to queues, steering auto
// resolving to the same) is not.
func TestTuningReloadNeedsRestart(t *testing.T) {
	base := "gateway:\n  queues: 1\n" + offlineYAML
	gw := yamlGateway(t, base)
	for _, opts := range []string{
		"  workers: 2\n",
		"  workers: 2\n  steering: spi\n",
		"  rings: {rx: 8192}\n",
		"  rings: {fill: 8192}\n",
		"  busy_poll: {usecs: 50}\n",
	} {
		cfg, err := config.Parse("gw.yaml", []byte("gateway:\n  queues: 1\n"+opts+offlineYAML))
		if err != nil {
			t.Fatal(err)
		}
		_, err = gw.Reload(cfg)
		if !errors.Is(err, ErrRestart) || !strings.Contains(err.Error(), "workers, steering, spread_chunk, rings or busy_poll changed") {
			t.Errorf("reload with %q: %v, want ErrRestart naming the tuning options", opts, err)
		}
	}
	for _, opts := range []string{"  workers: 1\n", "  steering: queue\n", "  steering: auto\n  workers: 1\n"} {
		cfg, err := config.Parse("gw.yaml", []byte("gateway:\n  queues: 1\n"+opts+offlineYAML))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := gw.Reload(cfg); err != nil {
			t.Errorf("reload with %q (the same tuning): %v", opts, err)
		}
	}
}

// TestGatewayWorkers: gateway pairs with two engine workers on one
// queue (workers: 2) carry a ping and a checksummed TCP transfer over
// one SA per direction in every concurrency mode, with the steering
// auto picks for it (shared: spread, the SA dealt over both workers;
// sharded, percpu, ordered: spi, the SA's packets to its owner or
// sequencer), on AF_XDP plaintext interfaces and on a multi-queue TUN,
// one pair with larger rings and busy polling;
// show-stats reports the layout, per-worker counters and the kernel's
// totals.
func TestGatewayWorkers(t *testing.T) {
	testenv.RequirePrivileged(t)
	for i, c := range []struct {
		concurrency, steering string
		tun                   bool
		opts                  string // more gateway options
	}{
		{"shared", "spread", false, ""},
		// Ring sizes and busy polling reach the sockets (the engine
		// starts with them).
		{"sharded", "spi", false, "  rings: {rx: 8192, tx: 1024, fill: 8192}\n  busy_poll: {usecs: 20, budget: 64, prefer: true}\n"},
		{"percpu", "spi", false, ""},
		{"ordered", "spi", false, ""},
		{"shared", "spread", true, ""},
	} {
		name := c.concurrency
		if c.tun {
			name += "-tun"
		}
		t.Run(name, func(t *testing.T) {
			a, b := buildTopology(t)
			extra := fmt.Sprintf("  workers: 2\n  concurrency: %s\n  mss_clamp: 1300\n  metrics: 127.0.0.1:0\n", c.concurrency)
			extra += c.opts
			if c.steering == "spread" {
				extra += "  spread_chunk: 4\n" // both workers get a share of a short transfer
			}
			p := gwParams{tun: c.tun, keyAB: randKey(t), keyBA: randKey(t), extra: extra}
			startGateway(t, a, gatewayYAML(a, b, "a", p))
			gb := startGateway(t, b, gatewayYAML(b, a, "b", p))
			if got := ping(t, a, b.hostAddr, 5); got != 5 {
				t.Fatalf("ping through the tunnel: %d of 5 answered\nlogA:\n%s\nlogB:\n%s", got, a.log, b.log)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			res, err := topo.Transfer(ctx, b.host, netip.AddrPortFrom(b.hostAddr, uint16(5101+i)), a.host, 1<<20, 1, nil)
			if err != nil || !res.Intact() {
				t.Fatalf("transfer: %+v, %v\nlogA:\n%s\nlogB:\n%s", res, err, a.log, b.log)
			}
			for _, s := range []*site{a, b} {
				resp, err := Call(s.socket, Request{Cmd: "show-stats"}, 2*time.Second)
				if err != nil || resp.Stats == nil {
					t.Fatalf("show-stats: %+v, %v", resp, err)
				}
				st := resp.Stats
				if st.Steering != c.steering || st.Workers != 2 || st.Queues != 1 || len(st.Engine.Workers) != 2 {
					t.Errorf("show-stats: steering %q, %d workers (%d with counters), %d queues; want %s, 2, 1",
						st.Steering, st.Workers, len(st.Engine.Workers), st.Queues, c.steering)
				}
				// One queue, a socket per worker on it.
				if len(st.Engine.CipherSockets) != 2 {
					t.Errorf("%d cipher sockets, want 2 (one per worker on the queue)", len(st.Engine.CipherSockets))
				}
				if st.Kernel != st.Engine.KernelTotals() {
					t.Errorf("kernel totals %+v, want %+v", st.Kernel, st.Engine.KernelTotals())
				}
				if st.CipherRX == 0 || st.Encrypted == 0 || st.Decrypted == 0 {
					t.Errorf("no traffic counted: %+v", st)
				}
			}
			// The metrics: the steering, one series per worker, one
			// socket series per side and queue (both workers' sockets
			// on queue 0 summed).
			_, mfs := scrape(t, gb)
			if v := metricValue(t, mfs, "espxdp_engine_info", "steering", c.steering); v != 1 {
				t.Errorf("engine_info{steering=%s} = %v", c.steering, v)
			}
			if v := metricValue(t, mfs, "espxdp_engine_workers"); v != 2 {
				t.Errorf("engine_workers = %v", v)
			}
			if n := len(mfs["espxdp_worker_cipher_rx_total"].GetMetric()); n != 2 {
				t.Errorf("%d worker_cipher_rx series, want 2", n)
			}
			sides := 2 // cipher and plain, queue 0
			if c.tun {
				sides = 1 // no plain AF_XDP side
			}
			if n := len(mfs["espxdp_xsk_rx_packets_total"].GetMetric()); n != sides {
				t.Errorf("%d xsk_rx_packets series, want %d", n, sides)
			}
			metricValue(t, mfs, "espxdp_kernel_xsk_drops_total", "reason", "rx_ring_full")
			if c.steering == "spread" {
				// gwB takes the transfer's ESP: dealt over both workers.
				for _, w := range gb.Stats().Engine.Workers {
					if w.CipherRX == 0 {
						t.Errorf("spread steering left worker %d without ESP: %+v", w.Worker, gb.Stats().Engine.Workers)
					}
				}
			}
		})
	}
}

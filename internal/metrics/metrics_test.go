package metrics

import (
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/espxdp/espxdp/sa"
	"github.com/espxdp/espxdp/xdp"
)

// gather collects c and returns the metric families by name.
func gather(t *testing.T, c prometheus.Collector) map[string]*dto.MetricFamily {
	t.Helper()
	reg := prometheus.NewPedanticRegistry()
	if err := reg.Register(c); err != nil {
		t.Fatal(err)
	}
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]*dto.MetricFamily{}
	for _, mf := range mfs {
		out[mf.GetName()] = mf
	}
	return out
}

// value returns the value of the series of family name with the given
// labels (pairs), and whether it exists.
func value(mfs map[string]*dto.MetricFamily, name string, labels ...string) (float64, bool) {
	mf := mfs[name]
	if mf == nil {
		return 0, false
	}
next:
	for _, m := range mf.GetMetric() {
		have := map[string]string{}
		for _, l := range m.GetLabel() {
			have[l.GetName()] = l.GetValue()
		}
		for i := 0; i+1 < len(labels); i += 2 {
			if have[labels[i]] != labels[i+1] {
				continue next
			}
		}
		if c := m.GetCounter(); c != nil {
			return c.GetValue(), true
		}
		return m.GetGauge().GetValue(), true
	}
	return 0, false
}

func fakeSnapshot(nSAs int) Snapshot {
	s := Snapshot{Uptime: 3 * time.Second, KeepalivesSent: 7, EventsLost: 2,
		Events: map[sa.EventKind]uint64{sa.EventSoftExpire: 4}}
	for i := range nSAs {
		st := sa.Stats{Name: "sa" + string(rune('a'+i)), SPI: uint32(0x100 + i), Direction: sa.In + sa.Direction(i%2),
			EncapsPkts: uint64(10 * (i + 1)), EncapsBytes: uint64(1000 * (i + 1)), DecapsPkts: uint64(10 * (i + 1)), DecapsBytes: uint64(1000 * (i + 1)),
			Seq: uint64(i + 40), State: sa.StateSoftExpired,
			HardRemaining: sa.Remaining{Bytes: -1, Packets: -1, Seconds: 99}, SoftRemaining: sa.Remaining{Bytes: 500, Packets: -1, Seconds: -1}}
		st.Drops[sa.DropReplay] = uint64(i)
		s.SAs = append(s.SAs, st)
	}
	s.Processor.InPkts, s.Processor.OutPkts = 11, 22
	s.Processor.Drops[sa.DropNoSA] = 5
	s.Engine = &xdp.EngineStats{
		Workers:       []xdp.EngineWorkerStats{{Worker: 0, Queue: 0, CipherRX: 100, TXFull: 3}, {Worker: 1, Queue: 1, PlainRX: 50, Sleeps: 9}},
		CipherSockets: []xdp.Stats{{RXPackets: 100, Wakeups: 6}, {}},
		PlainSockets:  []xdp.Stats{{TXPackets: 90}, {}},
		Frames:        xdp.FrameCounts{Total: 10, Free: 6, Fill: 4},
	}
	s.Engine.CipherProgram.ESPRedirected = 100
	return s
}

func TestCollectorValues(t *testing.T) {
	snap := fakeSnapshot(3)
	mfs := gather(t, NewCollector(func() Snapshot { return snap }, Options{}))
	for _, tc := range []struct {
		name   string
		labels []string
		want   float64
	}{
		{"espxdp_sas", nil, 3},
		{"espxdp_sa_aggregated", nil, 0},
		{"espxdp_sa_packets_total", []string{"name", "saa", "spi", "0x100", "direction", "in"}, 10},
		{"espxdp_sa_bytes_total", []string{"name", "sab", "direction", "out"}, 2000},
		{"espxdp_sa_drops_total", []string{"name", "sac", "reason", "replay"}, 2},
		{"espxdp_sa_sequence", []string{"name", "sab"}, 41},
		{"espxdp_sa_state", []string{"name", "saa"}, 1},
		{"espxdp_sa_lifetime_remaining", []string{"name", "saa", "limit", "hard", "unit", "seconds"}, 99},
		{"espxdp_sa_lifetime_remaining", []string{"name", "saa", "limit", "soft", "unit", "bytes"}, 500},
		{"espxdp_processor_packets_total", []string{"direction", "out"}, 22},
		{"espxdp_processor_drops_total", []string{"reason", "no-sa"}, 5},
		{"espxdp_processor_drops_total", []string{"reason", "auth"}, 0},
		{"espxdp_worker_cipher_rx_total", []string{"queue", "0"}, 100},
		{"espxdp_worker_tx_full_total", []string{"queue", "0"}, 3},
		{"espxdp_worker_sleeps_total", []string{"queue", "1"}, 9},
		{"espxdp_xsk_wakeups_total", []string{"side", "cipher", "queue", "0"}, 6},
		{"espxdp_xsk_tx_packets_total", []string{"side", "plain", "queue", "0"}, 90},
		{"espxdp_xdp_program_packets_total", []string{"side", "cipher", "verdict", "esp_redirected"}, 100},
		{"espxdp_umem_frames", []string{"place", "free"}, 6},
		{"espxdp_engine_running", nil, 1},
		{"espxdp_uptime_seconds", nil, 3},
		{"espxdp_natt_keepalives_sent_total", nil, 7},
		{"espxdp_events_total", []string{"kind", "soft-expire"}, 4},
		{"espxdp_events_total", []string{"kind", "hard-expire"}, 0},
		{"espxdp_events_lost_total", nil, 2},
	} {
		got, ok := value(mfs, tc.name, tc.labels...)
		if !ok || got != tc.want {
			t.Errorf("%s%v = %v (found %v), want %v", tc.name, tc.labels, got, ok, tc.want)
		}
	}
	// Zero drop reasons of an SA make no series; unlimited lifetimes
	// neither.
	if _, ok := value(mfs, "espxdp_sa_drops_total", "name", "saa"); ok {
		t.Error("series for a zero per-SA drop count")
	}
	if _, ok := value(mfs, "espxdp_sa_lifetime_remaining", "name", "saa", "limit", "hard", "unit", "bytes"); ok {
		t.Error("series for an unlimited lifetime")
	}
	// Not running: no engine series.
	snap.Engine = nil
	mfs = gather(t, NewCollector(func() Snapshot { return snap }, Options{}))
	if v, _ := value(mfs, "espxdp_engine_running"); v != 0 || mfs["espxdp_worker_cipher_rx_total"] != nil {
		t.Errorf("stopped engine: running=%v, worker series %v", v, mfs["espxdp_worker_cipher_rx_total"] != nil)
	}
}

// TestCollectorCardinalityCap: for any cap and number of SAs, at most cap
// SAs get series of their own, the rest are summed into the OtherSA
// series, and no packet, byte or drop is lost in the sums.
func TestCollectorCardinalityCap(t *testing.T) {
	for _, n := range []int{0, 1, 5, 12} {
		for _, maxSAs := range []int{-1, 1, 3, 5, 20} {
			snap := fakeSnapshot(n)
			mfs := gather(t, NewCollector(func() Snapshot { return snap }, Options{MaxSAs: maxSAs}))
			limit := max(maxSAs, 0)
			own := map[string]bool{}
			var pkts, drops float64
			for _, m := range mfs["espxdp_sa_packets_total"].GetMetric() {
				for _, l := range m.GetLabel() {
					if l.GetName() == "name" && l.GetValue() != OtherSA {
						own[l.GetValue()] = true
					}
				}
				pkts += m.GetCounter().GetValue()
			}
			for _, m := range mfs["espxdp_sa_drops_total"].GetMetric() {
				drops += m.GetCounter().GetValue()
			}
			var wantPkts, wantDrops float64
			for _, s := range snap.SAs {
				if s.Direction == sa.In {
					wantPkts += float64(s.DecapsPkts)
				} else {
					wantPkts += float64(s.EncapsPkts)
				}
				wantDrops += float64(s.Drops.Total())
			}
			if len(own) != min(n, limit) {
				t.Errorf("n=%d cap=%d: %d SAs with own series", n, maxSAs, len(own))
			}
			if pkts != wantPkts || drops != wantDrops {
				t.Errorf("n=%d cap=%d: packets %v drops %v, want %v %v", n, maxSAs, pkts, drops, wantPkts, wantDrops)
			}
			if agg, _ := value(mfs, "espxdp_sa_aggregated"); int(agg) != n-min(n, limit) {
				t.Errorf("n=%d cap=%d: aggregated %v", n, maxSAs, agg)
			}
			for _, m := range mfs["espxdp_sa_sequence"].GetMetric() {
				for _, l := range m.GetLabel() {
					if l.GetValue() == OtherSA {
						t.Errorf("a gauge summed over SAs: %v", m)
					}
				}
			}
		}
	}
}

func TestCollectorLabelsHaveNoSecrets(t *testing.T) {
	// The label values come from names, SPIs, directions, reasons and
	// fixed sets only; check every label of a full scrape.
	snap := fakeSnapshot(4)
	mfs := gather(t, NewCollector(func() Snapshot { return snap }, Options{}))
	allowed := map[string]bool{"name": true, "spi": true, "direction": true, "reason": true, "limit": true, "unit": true,
		"queue": true, "worker": true, "steering": true, "side": true, "verdict": true, "place": true, "kind": true}
	for name, mf := range mfs {
		if !strings.HasPrefix(name, Namespace+"_") {
			t.Errorf("metric %s outside the namespace", name)
		}
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if !allowed[l.GetName()] {
					t.Errorf("%s: unexpected label %s", name, l.GetName())
				}
			}
		}
	}
}

// TestCollectorXDPProgramCounters: every counter of the XDP program
// (bpf.Stats) is exported, each under its own verdict label: a counter
// added to the program and forgotten here fails.
func TestCollectorXDPProgramCounters(t *testing.T) {
	s := fakeSnapshot(1)
	v := reflect.ValueOf(&s.Engine.CipherProgram).Elem()
	want := map[float64]string{}
	for i := range v.NumField() {
		if v.Field(i).Kind() != reflect.Uint64 {
			continue
		}
		v.Field(i).SetUint(uint64(1000 + i))
		want[float64(1000+i)] = v.Type().Field(i).Name
	}
	mf := gather(t, NewCollector(func() Snapshot { return s }, Options{}))[Namespace+"_xdp_program_packets_total"]
	if mf == nil {
		t.Fatal("no xdp_program_packets_total family")
	}
	verdicts := map[string]bool{}
	for _, m := range mf.GetMetric() {
		side, verdict := "", ""
		for _, l := range m.GetLabel() {
			switch l.GetName() {
			case "side":
				side = l.GetValue()
			case "verdict":
				verdict = l.GetValue()
			}
		}
		if side != "cipher" {
			continue
		}
		if verdicts[verdict] {
			t.Errorf("verdict %q exported twice", verdict)
		}
		verdicts[verdict] = true
		delete(want, m.GetCounter().GetValue())
	}
	for _, name := range want {
		t.Errorf("bpf.Stats.%s is not exported", name)
	}
}

// TestCollectorTUNAndEvents: a TUN's offload counters are exported when
// the snapshot has a TUN, and every event kind (the newer ones too) has
// its series.
func TestCollectorTUNAndEvents(t *testing.T) {
	s := fakeSnapshot(1)
	s.TUN = &xdp.TUNStats{Offload: true, SplitSuperPackets: 3, SplitSegments: 40, CoalescedSuperPackets: 5, CoalescedSegments: 60, ReadDrops: 1, WriteErrors: 2}
	s.Events = map[sa.EventKind]uint64{sa.EventSeqLimit: 7, sa.EventDeleted: 8, sa.EventEndpointChanged: 9}
	mfs := gather(t, NewCollector(func() Snapshot { return s }, Options{}))
	for what, want := range map[string]float64{"split_super_packets": 3, "split_segments": 40, "coalesced_super_packets": 5,
		"coalesced_segments": 60, "read_drops": 1, "write_errors": 2} {
		if v, ok := value(mfs, Namespace+"_tun_packets_total", "what", what); !ok || v != want {
			t.Errorf("tun %s = %v (%v), want %v", what, v, ok, want)
		}
	}
	for k, want := range s.Events {
		if v, ok := value(mfs, Namespace+"_events_total", "kind", k.String()); !ok || v != float64(want) {
			t.Errorf("events %s = %v (%v), want %v", k, v, ok, want)
		}
	}
	s.TUN = nil
	if _, ok := gather(t, NewCollector(func() Snapshot { return s }, Options{}))[Namespace+"_tun_packets_total"]; ok {
		t.Error("tun series without a TUN")
	}
}

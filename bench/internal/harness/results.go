// Package harness measures the esp and sa packages through their public
// APIs and records the measurements as Results, for package report to
// render. Timing is done with its own loops (not testing.Benchmark): every
// measurement runs for a wall-clock budget, in short windows whose
// per-packet medians are what gets reported, and a baseline measured in
// the same run is interleaved window by window with the code under test.
package harness

import (
	"encoding/json"
	"fmt"
	"io"
	"math"
	"slices"
)

// Metric is one measured number with its unit.
type Metric struct {
	Name  string  `json:"name"`
	Value float64 `json:"value"`
	Unit  string  `json:"unit"`
}

// Result is one measurement: what was measured (Kind and the parameters
// that apply to it) and its metrics.
type Result struct {
	Suite     string   `json:"suite"`               // "crypto" or "sa"
	Kind      string   `json:"kind"`                // see the Kind* constants
	Transform string   `json:"transform,omitempty"` // ESP transform name
	Op        string   `json:"op,omitempty"`        // "seal", "open", "check+update", ...
	Size      int      `json:"size,omitempty"`      // payload bytes
	SAs       int      `json:"sas,omitempty"`       // number of SAs
	Workers   int      `json:"workers,omitempty"`   // worker goroutines
	Mode      string   `json:"mode,omitempty"`      // concurrency mode
	Dist      string   `json:"dist,omitempty"`      // skew: "elephant" or "uniform"
	Traffic   string   `json:"traffic,omitempty"`   // e2e, wg: "imix", "tcp", "udp"
	Impl      string   `json:"impl,omitempty"`      // wg: "espxdp", "wireguard-go", "kernel"
	Streams   int      `json:"streams,omitempty"`   // wg: parallel TCP connections
	Ingress   string   `json:"ingress,omitempty"`   // shard: "spray" or "steer"
	Window    int      `json:"window,omitempty"`    // shard: replay window (0: default)
	Displace  int      `json:"displace,omitempty"`  // shard-reorder: bound on the displacement
	Pattern   string   `json:"pattern,omitempty"`   // shard-reorder: how packets are reordered
	Metrics   []Metric `json:"metrics"`
}

// Kinds of results.
const (
	KindCrypto  = "crypto"     // Seal/Open of one transform vs its raw baseline
	KindLookup  = "sad-lookup" // SAD.Lookup at a number of SAs
	KindReplay  = "replay"     // replay.Window Check+Update
	KindVsESP   = "vs-esp"     // sa.Processor round trip vs esp alone
	KindModes   = "modes"      // concurrency modes at a number of workers
	KindSkew    = "skew"       // one elephant SA vs uniform over N SAs
	UnitNs      = "ns"
	UnitMBps    = "MB/s"
	UnitRatio   = "x"
	UnitAllocs  = "allocs/op"
	UnitMpps    = "Mpps"
	UnitPackets = "packets"
	UnitPercent = "%"
)

// Get returns the value of the metric called name.
func (r *Result) Get(name string) (float64, bool) {
	for _, m := range r.Metrics {
		if m.Name == name {
			return m.Value, true
		}
	}
	return 0, false
}

func (r *Result) add(name string, v float64, unit string) {
	if math.IsNaN(v) || math.IsInf(v, 0) {
		return
	}
	r.Metrics = append(r.Metrics, Metric{Name: name, Value: v, Unit: unit})
}

// addSpread records the median of xs as name and their smallest and
// largest as name-min and name-max (xs not empty).
func (r *Result) addSpread(name string, xs []float64, unit string) {
	r.add(name, median(xs), unit)
	r.add(name+"-min", slices.Min(xs), unit)
	r.add(name+"-max", slices.Max(xs), unit)
}

// Config is the harness configuration, recorded with the results.
type Config struct {
	Suites     []string `json:"suites"`
	Sizes      []int    `json:"sizes"`
	Transforms []string `json:"transforms"`
	DurationNs int64    `json:"duration_ns"` // per measurement
	Workers    []int    `json:"workers"`
	SAs        []int    `json:"sas"`
	Quick      bool     `json:"quick"`
	Seed       uint64   `json:"seed"`
	// E2ESizes are the inner packet sizes of the e2e suite (0: IMIX);
	// E2EDurationNs the sending time of each e2e measurement; WGBytes
	// the bytes of each TCP transfer of the wg suite.
	E2ESizes      []int `json:"e2e_sizes,omitempty"`
	E2EDurationNs int64 `json:"e2e_duration_ns,omitempty"`
	WGBytes       int64 `json:"wg_bytes,omitempty"`
	// E2EJumbo is the inner packet size of the e2e suite's jumbo rows
	// (veths at MTU E2EJumboMTU, the engine with MultiBuffer; 0: no
	// jumbo rows).
	E2EJumbo int `json:"e2e_jumbo,omitempty"`
	// E2ETrialNs is the length of one trial of the e2e suite's NDR/PDR
	// search (0: DefaultE2ETrial, QuickE2ETrial when Quick).
	E2ETrialNs int64 `json:"e2e_trial_ns,omitempty"`
	// ShardWorkers and ShardSizes are the worker counts and inner packet
	// sizes of the shard suite (empty: DefaultShardWorkers,
	// DefaultShardSizes).
	ShardWorkers []int `json:"shard_workers,omitempty"`
	ShardSizes   []int `json:"shard_sizes,omitempty"`
	// Steps, if not empty, keeps only the steps of the e2e, wg, peers,
	// shard and one-SA suites whose label contains one of these strings
	// (for profiling or re-measuring a few rows).
	Steps []string `json:"steps,omitempty"`
	// WGStreams are the TCP connection counts of the wg suite's TCP rows
	// (empty: 1 and 4); WGNoUDP leaves out its UDP rows.
	WGStreams []int `json:"wg_streams,omitempty"`
	WGNoUDP   bool  `json:"wg_no_udp,omitempty"`
}

// Report is the content of results.json.
type Report struct {
	Command string   `json:"command,omitempty"` // the command line that measured
	Machine Machine  `json:"machine"`
	Config  Config   `json:"config"`
	Results []Result `json:"results"`
}

// Filter returns the results of the given kind.
func (r *Report) Filter(kind string) []Result {
	var out []Result
	for _, x := range r.Results {
		if x.Kind == kind {
			out = append(out, x)
		}
	}
	return out
}

// WriteJSON writes r as indented JSON.
func (r *Report) WriteJSON(w io.Writer) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(r)
}

// ReadJSON reads what WriteJSON wrote.
func ReadJSON(rd io.Reader) (*Report, error) {
	var r Report
	dec := json.NewDecoder(rd)
	dec.DisallowUnknownFields()
	if err := dec.Decode(&r); err != nil {
		return nil, fmt.Errorf("harness: results: %w", err)
	}
	return &r, nil
}

package harness

import (
	"fmt"
	"io"
	"slices"
	"strings"
	"time"

	"github.com/espxdp/espxdp/esp"
	"github.com/espxdp/espxdp/sa"
)

// Suites known to Run.
var Suites = []string{"crypto", "sa"}

// Validate checks cfg.
func (cfg *Config) Validate() error {
	if len(cfg.Suites) == 0 {
		return fmt.Errorf("harness: no suite")
	}
	for _, s := range cfg.Suites {
		if !slices.Contains(Suites, s) && !slices.Contains(PrivilegedSuites, s) && !slices.Contains(OptInSuites, s) {
			return fmt.Errorf("harness: unknown suite %q (have %v)", s, slices.Concat(Suites, PrivilegedSuites, OptInSuites))
		}
	}
	for _, t := range cfg.Transforms {
		if _, err := esp.ParseTransform(t); err != nil {
			return fmt.Errorf("harness: transform %q: %w", t, err)
		}
	}
	for _, n := range cfg.Sizes {
		if n < 1 || n > 65000 {
			return fmt.Errorf("harness: size %d out of range 1..65000", n)
		}
	}
	for _, w := range cfg.Workers {
		if w < 1 || w > 1024 {
			return fmt.Errorf("harness: worker count %d out of range 1..1024", w)
		}
	}
	for _, n := range cfg.SAs {
		if n < 1 || n > 10_000_000 {
			return fmt.Errorf("harness: SA count %d out of range 1..10000000", n)
		}
	}
	if cfg.DurationNs <= 0 {
		return fmt.Errorf("harness: duration must be positive")
	}
	if err := cfg.validateNet(); err != nil {
		return err
	}
	return nil
}

// vsESPTransforms are the transforms of the processor-vs-esp comparison.
var vsESPTransforms = []string{"aes128gcm16", "aes256-sha256", "chacha20poly1305"}

// skewFlows is the number of SAs of the uniform skew case.
const skewFlows = 16

// Run runs the configured suites and writes a progress line per
// measurement to progress.
func Run(cfg Config, progress io.Writer) (*Report, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	rep := &Report{Machine: DescribeMachine(), Config: cfg}
	d := time.Duration(cfg.DurationNs)
	type step struct {
		label string
		run   func() ([]Result, error)
	}
	var steps []step
	one := func(r Result, err error) ([]Result, error) { return []Result{r}, err }
	if slices.Contains(cfg.Suites, "crypto") {
		for _, t := range cfg.Transforms {
			for _, n := range cfg.Sizes {
				steps = append(steps, step{fmt.Sprintf("crypto %s %d B", t, n), func() ([]Result, error) { return Crypto(t, n, d, cfg.Seed) }})
			}
		}
	}
	if slices.Contains(cfg.Suites, "sa") {
		for _, n := range cfg.SAs {
			steps = append(steps, step{fmt.Sprintf("sa lookup %d SAs", n), func() ([]Result, error) { return one(Lookup(n, d, cfg.Seed)) }})
		}
		steps = append(steps, step{"sa replay", func() ([]Result, error) { return Replay(d) }})
		for _, t := range vsESPTransforms {
			steps = append(steps, step{"sa processor vs esp " + t, func() ([]Result, error) { return one(VsESP(t, 1420, d, cfg.Seed)) }})
		}
		for _, m := range []sa.Concurrency{sa.Shared, sa.Sharded, sa.PerCPU} {
			for _, w := range cfg.Workers {
				steps = append(steps, step{fmt.Sprintf("sa mode %s %d workers", m, w), func() ([]Result, error) { return one(Modes(m, w, 1420, d, cfg.Seed)) }})
			}
		}
		nw := slices.Max(cfg.Workers)
		for _, m := range []sa.Concurrency{sa.Shared, sa.Sharded} {
			for _, dist := range []string{"elephant", "uniform"} {
				steps = append(steps, step{fmt.Sprintf("sa skew %s %s %d workers", m, dist, nw), func() ([]Result, error) { return one(Skew(m, dist, nw, skewFlows, 1420, d, cfg.Seed)) }})
			}
		}
	}
	if err := checkPrivileged(cfg); err != nil {
		return nil, err
	}
	for _, suite := range []struct {
		name  string
		steps func(Config) ([]suiteStep, func())
	}{{"e2e", E2ESteps}, {"wg", WGSteps}, {"peers", PeersSteps}, {"shard", ShardSteps}, {SuiteOneSA, OneSASteps}} {
		if slices.Contains(cfg.Suites, suite.name) {
			ss, done := suite.steps(cfg)
			defer done()
			for _, s := range ss {
				if keepStep(cfg.Steps, s.label) {
					steps = append(steps, step(s))
				}
			}
		}
	}
	start := time.Now()
	for i, s := range steps {
		if progress != nil {
			fmt.Fprintf(progress, "\r\033[K[%d/%d %5.1fs] %s", i+1, len(steps), time.Since(start).Seconds(), s.label)
		}
		rs, err := s.run()
		if err != nil {
			if progress != nil {
				fmt.Fprintln(progress)
			}
			return nil, fmt.Errorf("%s: %w", s.label, err)
		}
		rep.Results = append(rep.Results, rs...)
	}
	if progress != nil {
		fmt.Fprintf(progress, "\r\033[K[%d/%d %5.1fs] done\n", len(steps), len(steps), time.Since(start).Seconds())
	}
	return rep, nil
}

// keepStep reports whether the step labelled label runs: filter is
// empty, or one of its strings is in the label.
func keepStep(filter []string, label string) bool {
	if len(filter) == 0 {
		return true
	}
	for _, f := range filter {
		if strings.Contains(label, f) {
			return true
		}
	}
	return false
}

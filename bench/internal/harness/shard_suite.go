package harness

import (
	"fmt"
	"os"
	"runtime"
	"strconv"
	"strings"
	"time"
)

// OptInSuites are suites that need no privileges but are too long for
// the default set: run them with -suite.
var OptInSuites = []string{"shard"}

// Replay study parameters of the shard suite.
var (
	ReorderWindows  = []int{64, 1024, 65536}
	ReorderDisplace = []int{0, 64, 1024, 4096, 70000}
	ReorderChunks   = []int{1, 32} // SharedReorder
)

// DefaultShardWorkers is 1, 2, 4, ... up to GOMAXPROCS, and GOMAXPROCS.
func DefaultShardWorkers() []int {
	n := runtime.GOMAXPROCS(0)
	var ws []int
	for w := 1; w < n; w *= 2 {
		ws = append(ws, w)
	}
	return append(ws, n)
}

// DefaultShardSizes are the inner packet sizes of the shard suite when
// -sizes is not given.
var DefaultShardSizes = []int{1420, 64}

// loadAvg returns the 1-minute load average, or -1.
func loadAvg() float64 {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return -1
	}
	f := strings.Fields(string(b))
	if len(f) == 0 {
		return -1
	}
	v, err := strconv.ParseFloat(f[0], 64)
	if err != nil {
		return -1
	}
	return v
}

// ShardSteps lists the steps of the shard suite: the matrix
// (ShardSpecs), the replay study (Reorder, SharedReorder) and the
// scaling model fitted to the matrix (ShardModel). The returned func
// releases the SAs.
func ShardSteps(cfg Config) ([]suiteStep, func()) {
	d := time.Duration(cfg.DurationNs)
	workers := cfg.ShardWorkers
	if len(workers) == 0 {
		workers = DefaultShardWorkers()
	}
	sizes := cfg.ShardSizes
	if len(sizes) == 0 {
		sizes = DefaultShardSizes
	}
	runner := &ShardRunner{Seed: cfg.Seed}
	var matrix []Result
	var steps []suiteStep
	for _, spec := range ShardSpecs(ShardOptions{Workers: workers, SAs: cfg.SAs, Sizes: sizes}) {
		steps = append(steps, suiteStep{spec.Label(), func() ([]Result, error) {
			la := loadAvg()
			r, err := runner.Run(spec, d)
			if err != nil {
				return nil, err
			}
			if la >= 0 {
				r.add("loadavg", la, "load")
			}
			matrix = append(matrix, r)
			return []Result{r}, nil
		}})
	}
	steps = append(steps, suiteStep{"shard model", func() ([]Result, error) {
		runner.Close()
		return ShardModel(matrix)
	}})
	if top := workers[len(workers)-1]; top > 1 {
		for _, spec := range PairedSpecs(top, sizes[0]) {
			steps = append(steps, suiteStep{"paired " + spec.Label(), func() ([]Result, error) {
				la := loadAvg()
				r, err := ShardPaired(spec, ShardPairs, d, cfg.Seed)
				if err != nil {
					return nil, err
				}
				if la >= 0 {
					r.add("loadavg", la, "load")
				}
				return []Result{r}, nil
			}})
		}
	}
	for _, w := range ReorderWindows {
		steps = append(steps, suiteStep{fmt.Sprintf("shard reorder window %d", w), func() ([]Result, error) {
			var rs []Result
			for _, pat := range []string{PatternReverse, PatternJitter} {
				for _, disp := range ReorderDisplace {
					r, err := Reorder(w, disp, pat, cfg.Seed)
					if err != nil {
						return nil, err
					}
					rs = append(rs, r)
				}
			}
			return rs, nil
		}})
	}
	nw := max(2, workers[len(workers)-1])
	for _, w := range ReorderWindows {
		for _, ch := range ReorderChunks {
			steps = append(steps, suiteStep{fmt.Sprintf("shard reorder %d workers window %d chunk %d", nw, w, ch), func() ([]Result, error) {
				r, err := SharedReorder(nw, w, ch, max(batchLen, min(16384, 32000/nw)), d, cfg.Seed)
				return []Result{r}, err
			}})
		}
	}
	return steps, runner.Close
}

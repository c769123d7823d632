// Command benchfmt turns the output of the esp benchmarks (go test -bench)
// into the Markdown tables of the README: throughput per transform and
// payload size for Seal and Open next to their raw baselines, and the
// interleaved ratios of BenchmarkGCMRatio.
//
//	go test ./esp/ -run '^$' -bench . -benchtime=200ms | go run ./internal/benchfmt -cmd '...'
//
// When a benchmark ran several times (-count), every figure is the median
// of the runs; the ratio table also shows the range.
package main

import (
	"bufio"
	"flag"
	"fmt"
	"io"
	"math"
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"
)

func main() {
	cmd := flag.String("cmd", "", "the command that produced the input, quoted in the output")
	flag.Parse()
	r, err := parse(os.Stdin)
	if err != nil {
		fmt.Fprintln(os.Stderr, "benchfmt:", err)
		os.Exit(1)
	}
	if err := render(os.Stdout, r, *cmd); err != nil {
		fmt.Fprintln(os.Stderr, "benchfmt:", err)
		os.Exit(1)
	}
}

// result is everything parsed from one benchmark run's output.
type result struct {
	cpu   string
	order []string                        // benchmark names in order of first appearance
	runs  map[string]map[string][]float64 // name → unit → one value per run
}

var procSuffix = regexp.MustCompile(`-\d+$`)

// parse reads go test -bench output. Lines that are not benchmark results
// or the cpu header are ignored; a malformed result line is an error.
func parse(in io.Reader) (*result, error) {
	r := &result{runs: map[string]map[string][]float64{}}
	sc := bufio.NewScanner(in)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for line := 1; sc.Scan(); line++ {
		text := sc.Text()
		if cpu, ok := strings.CutPrefix(text, "cpu: "); ok {
			r.cpu = strings.TrimSpace(cpu)
			continue
		}
		if !strings.HasPrefix(text, "Benchmark") {
			continue
		}
		f := strings.Fields(text)
		if len(f) < 2 {
			continue // a benchmark name printed alone before a failure message
		}
		if _, err := strconv.Atoi(f[1]); err != nil {
			continue // not a result line
		}
		if len(f)%2 != 0 {
			return nil, fmt.Errorf("line %d: odd number of value/unit fields: %q", line, text)
		}
		name := procSuffix.ReplaceAllString(f[0], "")
		m := r.runs[name]
		if m == nil {
			m = map[string][]float64{}
			r.runs[name] = m
			r.order = append(r.order, name)
		}
		for i := 2; i < len(f); i += 2 {
			v, err := strconv.ParseFloat(f[i], 64)
			if err != nil {
				return nil, fmt.Errorf("line %d: value %q: %v", line, f[i], err)
			}
			m[f[i+1]] = append(m[f[i+1]], v)
		}
	}
	return r, sc.Err()
}

func median(v []float64) float64 {
	if len(v) == 0 {
		return math.NaN()
	}
	s := slices.Clone(v)
	slices.Sort(s)
	m := len(s) / 2
	if len(s)%2 == 0 {
		return (s[m-1] + s[m]) / 2
	}
	return s[m]
}

// value is the median of unit over the runs of name, and whether there
// was any.
func (r *result) value(name, unit string) (float64, bool) {
	v := r.runs[name][unit]
	if len(v) == 0 {
		return 0, false
	}
	return median(v), true
}

// split cuts "BenchmarkSeal/aes128gcm16/1420" into its parts.
func split(name string) []string { return strings.Split(name, "/") }

func render(w io.Writer, r *result, cmd string) error {
	bw := bufio.NewWriter(w)
	if r.cpu != "" {
		fmt.Fprintf(bw, "CPU: `%s`\n\n", r.cpu)
	}
	if cmd != "" {
		fmt.Fprintf(bw, "Command: `%s`\n\n", cmd)
	}
	renderThroughput(bw, r)
	renderRatios(bw, r)
	return bw.Flush()
}

// renderThroughput writes one row per transform (and baseline) with
// "Seal / Open" MB/s per payload size and the largest allocs/op seen.
// med-MB/s, the esp benchmarks' median over timing windows, is preferred
// to the wall-clock MB/s, which on a shared machine measures the sharing.
func renderThroughput(w io.Writer, r *result) {
	var rows []string
	var sizes []int
	seen := map[string]bool{}
	for _, name := range r.order {
		p := split(name)
		if len(p) != 3 || (p[0] != "BenchmarkSeal" && p[0] != "BenchmarkOpen") {
			continue
		}
		if !seen[p[1]] {
			seen[p[1]] = true
			rows = append(rows, p[1])
		}
		if n, err := strconv.Atoi(p[2]); err == nil && !slices.Contains(sizes, n) {
			sizes = append(sizes, n)
		}
	}
	if len(rows) == 0 {
		return
	}
	slices.Sort(sizes)
	fmt.Fprintln(w, "Throughput in MB/s of payload, Seal / Open: med-MB/s (the median over short timing windows) where the benchmark reports it, else the wall-clock MB/s; median over runs.")
	fmt.Fprintln(w)
	fmt.Fprint(w, "| transform |")
	for _, n := range sizes {
		fmt.Fprintf(w, " %d B |", n)
	}
	fmt.Fprintln(w, " allocs/op |")
	fmt.Fprint(w, "|---|")
	for range sizes {
		fmt.Fprint(w, "---:|")
	}
	fmt.Fprintln(w, "---:|")
	for _, row := range rows {
		fmt.Fprintf(w, "| %s |", row)
		allocs, haveAllocs := 0.0, false
		for _, n := range sizes {
			var cell [2]string
			for i, op := range []string{"BenchmarkSeal", "BenchmarkOpen"} {
				name := fmt.Sprintf("%s/%s/%d", op, row, n)
				cell[i] = "–"
				if v, ok := r.value(name, "med-MB/s"); ok {
					cell[i] = strconv.FormatFloat(v, 'f', 0, 64)
				} else if v, ok := r.value(name, "MB/s"); ok {
					cell[i] = strconv.FormatFloat(v, 'f', 0, 64)
				}
				if a, ok := r.value(name, "allocs/op"); ok {
					allocs, haveAllocs = max(allocs, a), true
				}
			}
			fmt.Fprintf(w, " %s / %s |", cell[0], cell[1])
		}
		if haveAllocs {
			fmt.Fprintf(w, " %s |\n", strconv.FormatFloat(allocs, 'f', -1, 64))
		} else {
			fmt.Fprintln(w, " – |")
		}
	}
	fmt.Fprintln(w)
}

// renderRatios writes the interleaved ratio benchmarks: every result with
// an x-raw metric, named <Benchmark>/<config>/<op>/<size>.
func renderRatios(w io.Writer, r *result) {
	var names []string
	for _, name := range r.order {
		if _, ok := r.runs[name]["x-raw"]; ok && len(split(name)) == 4 {
			names = append(names, name)
		}
	}
	if len(names) == 0 {
		return
	}
	fmt.Fprintln(w, "Interleaved comparison with the raw AEAD (medians over window pairs within a run, then median over runs; range over runs in brackets):")
	fmt.Fprintln(w)
	fmt.Fprintln(w, "| transform | op | payload | ours ns/pkt | raw ns/pkt | ns over raw | ours/raw throughput | runs | target |")
	fmt.Fprintln(w, "|---|---|---:|---:|---:|---:|---:|---:|---|")
	for _, name := range names {
		p := split(name)
		m := r.runs[name]
		xr := m["x-raw"]
		over := m["ns-over-raw"]
		fmt.Fprintf(w, "| %s | %s | %s | %s | %s | %s %s | %s %s | %d | %s |\n",
			p[1], p[2], p[3],
			num(median(m["ours-ns/pkt"]), 1), num(median(m["raw-ns/pkt"]), 1),
			num(median(over), 1), span(over, 1),
			num(median(xr), 3), span(xr, 3),
			len(xr), target(p[1], p[3], median(xr), median(over)))
	}
	fmt.Fprintln(w)
}

func num(v float64, prec int) string {
	if math.IsNaN(v) {
		return "–"
	}
	return strconv.FormatFloat(v, 'f', prec, 64)
}

func span(v []float64, prec int) string {
	if len(v) < 2 {
		return ""
	}
	return fmt.Sprintf("[%s, %s]", num(slices.Min(v), prec), num(slices.Max(v), prec))
}

// target states the goal for AES-128-GCM with a 16-byte ICV
// (without ESN) and whether the median meets it: throughput at least 0.9×
// raw at 1420 bytes, at most 25 ns per packet over raw at 64 bytes.
func target(config, size string, ratio, over float64) string {
	if config != "aes128gcm16" {
		return ""
	}
	switch size {
	case "1420":
		return verdict("≥ 0.9× raw", ratio >= 0.9)
	case "64":
		return verdict("≤ 25 ns over raw", over <= 25)
	}
	return ""
}

func verdict(goal string, ok bool) string {
	if ok {
		return goal + ": met"
	}
	return goal + ": **missed**"
}

// Package report renders harness results as Markdown with SVG plots.
package report

import (
	"bytes"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/espxdp/espxdp/bench/internal/harness"
)

// Targets of the issue.
const (
	TargetRatio1420   = 0.9 // aes128gcm16 ours/raw throughput at 1420 B
	TargetOver64Ns    = 25  // aes128gcm16 ns over raw at 64 B
	TargetVsESP       = 0.9 // processor/esp-alone throughput at 1420 B
	targetTransform   = "aes128gcm16"
	ReportFile        = "REPORT.md"
	ResultsFile       = "results.json"
	plotSADLookup     = "sad-lookup.svg"
	plotModes         = "modes.svg"
	plotCryptoPattern = "crypto-%s.svg"
)

// Write renders rep into dir: REPORT.md and the SVG plots it links to.
// cmd is the command line quoted in the report.
func Write(dir string, rep *harness.Report, cmd, note string) error {
	plots, err := Plots(rep)
	if err != nil {
		return err
	}
	for name, svg := range plots {
		if err := os.WriteFile(filepath.Join(dir, name), svg, 0o644); err != nil {
			return err
		}
	}
	var md bytes.Buffer
	if err := Markdown(&md, rep, cmd, note, plots); err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(dir, ReportFile), md.Bytes(), 0o644)
}

// Markdown writes the report, with note (if any) as a paragraph under
// the title; plots names the SVG files available (only
// those are linked).
func Markdown(w io.Writer, rep *harness.Report, cmd, note string, plots map[string][]byte) error {
	var b strings.Builder
	b.WriteString("# espxdp benchmark report\n\n")
	if cmd != "" {
		fmt.Fprintf(&b, "Produced by `%s`.\n\n", cmd)
	}
	if note != "" {
		b.WriteString(strings.TrimSpace(note) + "\n\n")
	}
	machine(&b, rep)
	targets(&b, rep)
	crypto(&b, rep, plots)
	saSection(&b, rep, plots)
	shardSection(&b, rep, plots)
	e2eSection(&b, rep, plots)
	oneSASection(&b, rep, plots)
	wgSection(&b, rep, plots)
	peersSection(&b, rep)
	_, err := io.WriteString(w, b.String())
	return err
}

func machine(b *strings.Builder, rep *harness.Report) {
	m := rep.Machine
	c := rep.Config
	b.WriteString("## Machine\n\n| | |\n|---|---|\n")
	row := func(k, v string) { fmt.Fprintf(b, "| %s | %s |\n", k, v) }
	row("CPU", m.CPU)
	row("CPU flags (crypto)", strings.Join(m.Flags, " "))
	row("cores", fmt.Sprint(m.Cores))
	row("kernel", m.Kernel)
	row("Go", m.GoVersion+" "+m.GOARCH)
	row("GOMAXPROCS", fmt.Sprint(m.GOMAXPROCS))
	row("date", m.Date)
	row("commit", m.Commit)
	row("duration per measurement", fmt.Sprintf("%.0f ms", float64(c.DurationNs)/1e6))
	row("seed", fmt.Sprint(c.Seed))
	if c.Quick {
		row("mode", "quick (CI-sized, numbers are rough)")
	}
	b.WriteString("\n")
}

func find(rs []harness.Result, f func(r *harness.Result) bool) *harness.Result {
	for i := range rs {
		if f(&rs[i]) {
			return &rs[i]
		}
	}
	return nil
}

func val(r *harness.Result, name string) (float64, bool) {
	if r == nil {
		return 0, false
	}
	return r.Get(name)
}

// num formats v with about three significant digits.
func num(v float64) string {
	switch a := math.Abs(v); {
	case a == 0:
		return "0"
	case a >= 100:
		return fmt.Sprintf("%.0f", v)
	case a >= 10:
		return fmt.Sprintf("%.1f", v)
	case a >= 1:
		return fmt.Sprintf("%.2f", v)
	default:
		return fmt.Sprintf("%.3f", v)
	}
}

func cell(r *harness.Result, name string) string {
	if v, ok := val(r, name); ok {
		return num(v)
	}
	return "–"
}

func intCell(r *harness.Result, name string) string {
	if v, ok := val(r, name); ok {
		return fmt.Sprintf("%.0f", v)
	}
	return "–"
}

func mark(ok bool) string {
	if ok {
		return "met"
	}
	return "**NOT met**"
}

// Target is one checked target of the issue.
type Target struct {
	What     string
	Measured string
	Met      bool
}

// Targets evaluates the targets that rep has the data for.
func Targets(rep *harness.Report) []Target {
	var ts []Target
	cr := rep.Filter(harness.KindCrypto)
	for _, op := range []string{"seal", "open"} {
		r := find(cr, func(r *harness.Result) bool { return r.Transform == targetTransform && r.Op == op && r.Size == 1420 })
		if v, ok := val(r, "x-raw"); ok {
			ts = append(ts, Target{fmt.Sprintf("%s %s at 1420 B ≥ %.1f× raw", targetTransform, op, TargetRatio1420), num(v) + "×", v >= TargetRatio1420})
		}
		r = find(cr, func(r *harness.Result) bool { return r.Transform == targetTransform && r.Op == op && r.Size == 64 })
		if v, ok := val(r, "ns-over-raw"); ok {
			ts = append(ts, Target{fmt.Sprintf("%s %s at 64 B ≤ %d ns over raw", targetTransform, op, TargetOver64Ns), num(v) + " ns", v <= TargetOver64Ns})
		}
	}
	if len(cr) > 0 {
		worst, where := 0.0, ""
		for i := range cr {
			if v, ok := cr[i].Get("allocs/op"); ok && v > worst {
				worst, where = v, fmt.Sprintf(" (%s %s %d B)", cr[i].Transform, cr[i].Op, cr[i].Size)
			}
		}
		ts = append(ts, Target{"0 allocs/op in Seal and Open, every transform and size", num(worst) + where, worst == 0})
	}
	for _, r := range rep.Filter(harness.KindVsESP) {
		if v, ok := r.Get("x-esp"); ok {
			ts = append(ts, Target{fmt.Sprintf("processor ≥ %.1f× esp alone, %s %d B", TargetVsESP, r.Transform, r.Size), num(v) + "×", v >= TargetVsESP})
		}
	}
	ts = append(ts, netTargets(rep)...)
	ts = append(ts, shardTargets(rep)...)
	return ts
}

func targets(b *strings.Builder, rep *harness.Report) {
	ts := Targets(rep)
	if len(ts) == 0 {
		return
	}
	b.WriteString("## Targets\n\n| target | measured | |\n|---|---|---|\n")
	for _, t := range ts {
		fmt.Fprintf(b, "| %s | %s | %s |\n", t.What, t.Measured, mark(t.Met))
	}
	b.WriteString("\n")
}

// transformsOf lists the transforms of rs in order of appearance.
func transformsOf(rs []harness.Result) []string {
	var ts []string
	for _, r := range rs {
		if !slices.Contains(ts, r.Transform) {
			ts = append(ts, r.Transform)
		}
	}
	return ts
}

func crypto(b *strings.Builder, rep *harness.Report, plots map[string][]byte) {
	cr := rep.Filter(harness.KindCrypto)
	if len(cr) == 0 {
		return
	}
	b.WriteString(`## Crypto: Seal and Open per transform

Payload sizes are the bytes given to Seal (MB/s = payload bytes / time).
"raw" is the standard library (or x/crypto) AEAD, or AES-CBC plus HMAC,
called directly on the same bytes in the same layout, timed in windows
interleaved with ours; ns/pkt are medians over windows, "ours/raw" the
median over window pairs of raw time / our time (our throughput as a
fraction of raw), "ns over raw" the median difference. AES-CTR, 3DES and
NULL have no baseline. aesNNNgcm8 is compared with full-tag GCM.

`)
	for _, op := range []string{"seal", "open"} {
		fmt.Fprintf(b, "### %s\n\n", strings.ToUpper(op[:1])+op[1:])
		b.WriteString("| transform | bytes | MB/s | ns/pkt | raw MB/s | raw ns/pkt | ours/raw | ns over raw | allocs/op |\n")
		b.WriteString("|---|---:|---:|---:|---:|---:|---:|---:|---:|\n")
		for _, r := range cr {
			if r.Op != op {
				continue
			}
			fmt.Fprintf(b, "| %s | %d | %s | %s | %s | %s | %s | %s | %s |\n", r.Transform, r.Size,
				cell(&r, "MB/s"), cell(&r, "ns/pkt"), cell(&r, "raw-MB/s"), cell(&r, "raw-ns/pkt"),
				cell(&r, "x-raw"), cell(&r, "ns-over-raw"), cell(&r, "allocs/op"))
		}
		b.WriteString("\n")
	}
	b.WriteString("### Plots: throughput vs payload size (solid: ours, dashed: raw)\n\n")
	for _, t := range transformsOf(cr) {
		name := fmt.Sprintf(plotCryptoPattern, t)
		if _, ok := plots[name]; ok {
			fmt.Fprintf(b, "![%s](%s)\n", t, name)
		}
	}
	b.WriteString("\n")
}

func saSection(b *strings.Builder, rep *harness.Report, plots map[string][]byte) {
	if lk := rep.Filter(harness.KindLookup); len(lk) > 0 {
		b.WriteString("## SA: SAD lookup\n\nSAD.Lookup of an inbound SPI in a scattered order over all SAs (so large tables pay their cache misses).\n\n")
		b.WriteString("| SAs | ns/lookup | allocs/op |\n|---:|---:|---:|\n")
		for _, r := range lk {
			fmt.Fprintf(b, "| %d | %s | %s |\n", r.SAs, cell(&r, "ns/op"), cell(&r, "allocs/op"))
		}
		if _, ok := plots[plotSADLookup]; ok {
			fmt.Fprintf(b, "\n![SAD lookup](%s)\n", plotSADLookup)
		}
		b.WriteString("\n")
	}
	if rp := rep.Filter(harness.KindReplay); len(rp) > 0 {
		b.WriteString("## SA: anti-replay window\n\nreplay.Window Check then Update, in order, 1024-packet window with ESN; \"locked\" under a mutex as the Shared mode takes it (uncontended).\n\n")
		b.WriteString("| op | ns/op | allocs/op |\n|---|---:|---:|\n")
		for _, r := range rp {
			fmt.Fprintf(b, "| %s | %s | %s |\n", r.Op, cell(&r, "ns/op"), cell(&r, "allocs/op"))
		}
		b.WriteString("\n")
	}
	if ve := rep.Filter(harness.KindVsESP); len(ve) > 0 {
		b.WriteString("## SA: processor vs esp alone\n\nRound trip per packet (Outbound at A, Inbound at B, batches of 32, tunnel mode, IPv4) vs esp alone doing EncapTunnel, ParseOuter, Open, DecapTunnel; interleaved batch by batch. \"ratio\" is esp time / processor time (processor throughput as a fraction of esp's).\n\n")
		b.WriteString("| transform | inner bytes | processor ns/pkt | esp ns/pkt | ratio | ns over esp | allocs/pkt |\n|---|---:|---:|---:|---:|---:|---:|\n")
		for _, r := range ve {
			fmt.Fprintf(b, "| %s | %d | %s | %s | %s | %s | %s |\n", r.Transform, r.Size, cell(&r, "ns/pkt"), cell(&r, "esp-ns/pkt"), cell(&r, "x-esp"), cell(&r, "ns-over-esp"), cell(&r, "allocs/op"))
		}
		b.WriteString("\n")
	}
	if md := rep.Filter(harness.KindModes); len(md) > 0 {
		b.WriteString("## SA: concurrency modes\n\nOne goroutine per worker, each running round trips (aes128gcm16, 1420-byte inner packets, batches of 32) for the duration. ns/pkt is wall time / all packets of all workers; speed-up is Mpps relative to 1 worker of the same mode. Drops are replay-window drops from reordering between workers (Shared).\n\n")
		b.WriteString("| mode | workers | ns/pkt | Mpps | speed-up | drops | drop % |\n|---|---:|---:|---:|---:|---:|---:|\n")
		for _, r := range md {
			up := "–"
			base := find(md, func(x *harness.Result) bool { return x.Mode == r.Mode && x.Workers == 1 })
			if b1, ok := val(base, "Mpps"); ok && b1 > 0 {
				if v, ok := r.Get("Mpps"); ok {
					up = num(v/b1) + "×"
				}
			}
			fmt.Fprintf(b, "| %s | %d | %s | %s | %s | %s | %s |\n", r.Mode, r.Workers, cell(&r, "ns/pkt"), cell(&r, "Mpps"), up, intCell(&r, "drops"), cell(&r, "drop%"))
		}
		if _, ok := plots[plotModes]; ok {
			fmt.Fprintf(b, "\n![concurrency modes](%s)\n", plotModes)
		}
		b.WriteString("\n")
	}
	if sk := rep.Filter(harness.KindSkew); len(sk) > 0 {
		b.WriteString("## SA: skew, one elephant SA vs uniform over N SAs\n\nThe same total load (batches of 32, 1420 B, aes128gcm16) on all workers, either all on one SA pair or spread evenly over N. Sharded: each SA's packets go to the worker owning it (hash of the SPI), as SPI steering would, so an elephant keeps one core busy; Shared: packets are split evenly between workers whatever the SA. Time is until the last worker finishes.\n\n")
		b.WriteString("| mode | load | SAs | workers | busy workers | ns/pkt | Mpps | drops |\n|---|---|---:|---:|---:|---:|---:|---:|\n")
		for _, r := range sk {
			fmt.Fprintf(b, "| %s | %s | %d | %d | %s | %s | %s | %s |\n", r.Mode, r.Dist, r.SAs, r.Workers, intCell(&r, "busy-workers"), cell(&r, "ns/pkt"), cell(&r, "Mpps"), intCell(&r, "drops"))
		}
		b.WriteString("\n")
	}
}

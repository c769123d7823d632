package report

import (
	"bytes"
	"fmt"
	"image/color"
	"strings"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"
	"gonum.org/v1/plot/vg/vgsvg"

	"github.com/espxdp/espxdp/bench/internal/harness"
)

// Plots and targets of the wg suite's TCP rows.
const (
	plotWG        = "wg.svg"
	TargetWGCPU   = 0.6 // espxdp gateway CPU per GB vs wireguard-go's best
	TargetWGUDPx  = 2.0 // espxdp UDP packets delivered under overload vs wireguard-go's best
	wgPlotStreams = 4   // the multi-stream bars of the plot
)

// wgLabel names a wg row's implementation: impl, transform, offload
// variant.
func wgLabel(r *harness.Result) string {
	s := r.Impl
	if r.Transform != "" {
		s += " " + r.Transform
	}
	if r.Op == "offload" {
		s += " (offload)"
	}
	return s
}

// wgStreams is the number of TCP connections of a wg TCP row (1 when
// not recorded: runs before the streams column).
func wgStreams(r *harness.Result) int { return max(r.Streams, 1) }

// wgTargets evaluates the wg suite's targets for espxdp's rows (AF_XDP
// and TUN): one-stream TCP goodput and gateway CPU per GB against
// wireguard-go's best, UDP packets delivered under overload.
func wgTargets(rep *harness.Report) []Target {
	var ts []Target
	paired := rep.Filter(harness.KindWGPaired)
	for _, r := range rep.Filter(harness.KindWG) {
		if r.Impl != "espxdp" && r.Impl != "espxdp-tun" && r.Impl != "espxdp-tun-udp" {
			continue
		}
		switch {
		case r.Traffic == "tcp" && wgStreams(&r) == 1:
			p := pairedWG(paired, &r)
			if v, ok := r.Get("x-wireguard"); ok {
				m, met := num(v)+"×", v >= TargetVsWG
				if p != nil {
					// The alternated rounds decide (see their table).
					pv, _ := p.Get("paired-x-wireguard")
					m, met = pairedMeasured(p, "paired-x-wireguard", v), pv >= TargetVsWG
				}
				ts = append(ts, Target{fmt.Sprintf("TCP goodput ≥ %.1f× wireguard-go, %s %s", TargetVsWG, r.Impl, r.Transform), m, met})
			}
			if v, ok := r.Get("x-wireguard-cpu"); ok {
				m, met := num(v)+"×", v <= TargetWGCPU
				if p != nil {
					pv, _ := p.Get("paired-x-wireguard-cpu")
					m, met = pairedMeasured(p, "paired-x-wireguard-cpu", v), pv <= TargetWGCPU
				}
				ts = append(ts, Target{fmt.Sprintf("gateway CPU per GB ≤ %.1f× wireguard-go, one TCP stream, %s %s", TargetWGCPU, r.Impl, r.Transform), m, met})
			}
		case r.Traffic == "udp":
			if v, ok := r.Get("x-wireguard"); ok {
				ts = append(ts, Target{fmt.Sprintf("UDP packets delivered under overload ≥ %.0f× wireguard-go, %s %s, %d B", TargetWGUDPx, r.Impl, r.Transform, r.Size), num(v) + "×", v >= TargetWGUDPx})
			}
		}
	}
	return ts
}

// wgCPUTable writes the TCP rows' CPU cost per GB of goodput.
func wgCPUTable(b *strings.Builder, rs []harness.Result) {
	b.WriteString(`### CPU per GB of goodput

Both gateways together, per 10⁹ bytes received by hostB, over all runs
of a row. "gateways" is the CPU time (user + system, every thread) of
the harness process, which holds both gateways' data planes — and only
them while a transfer runs: the TCP endpoints are child processes (this
program again, in the hosts' namespaces). It is the scheduler's run time
of the gateways' threads, so it includes the kernel work done on them
(system calls on TUNs, UDP and AF_XDP sockets) and, on a kernel without
CONFIG_IRQ_TIME_ACCOUNTING, softirq work that ran on their threads.
"softirq" is the machine's softirq time over the same runs (/proc/stat,
all CPUs): it cannot be attributed per interface, so it holds the hosts'
veth work as well as the gateways', and any other load on the machine.
"hosts" is the endpoint processes' CPU time. The ratios are against
wireguard-go's better offload setting (by goodput) at the same number
of streams; the target uses "gateways".

| implementation | streams | Gbps | gateways CPU s/GB | softirq s/GB | hosts CPU s/GB | gateways vs wireguard-go | gateways + softirq vs wireguard-go |
|---|---:|---:|---:|---:|---:|---:|---:|
`)
	for _, r := range rs {
		if r.Traffic != "tcp" {
			continue
		}
		if _, ok := r.Get("gw-cpu-s/GB"); !ok {
			continue
		}
		fmt.Fprintf(b, "| %s | %d | %s | %s | %s | %s | %s | %s |\n", wgLabel(&r), wgStreams(&r), cell(&r, "Gbps"),
			cell(&r, "gw-cpu-s/GB"), cell(&r, "softirq-s/GB"), cell(&r, "hosts-cpu-s/GB"), cell(&r, "x-wireguard-cpu"), cell(&r, "x-wireguard-cpu+softirq"))
	}
	b.WriteString("\n")
	wgWorkTable(b, rs)
}

// wgWorkTable writes the espxdp TCP rows' work counts per GB of goodput
// (system calls and wake-ups of the engines and TUNs), when a row has
// them.
func wgWorkTable(b *strings.Builder, rs []harness.Result) {
	head := false
	for _, r := range rs {
		if _, ok := r.Get("sleeps/GB"); !ok || r.Traffic != "tcp" {
			continue
		}
		if !head {
			b.WriteString(`The espxdp rows' work per GB of goodput, both gateways: workers'
sleeps in poll(2), AF_XDP wakeups (sendto, recvfrom), Engine.Send's
eventfd writes, TUN read(2) and write(2) (after GSO and GRO),
packets per worker batch, and for a UDP cipher port (espxdp-tun-udp)
the datagrams it sent per GB, in brackets the GSO super-datagrams among
them.

| implementation | streams | sleeps/GB | AF_XDP wakeups/GB | Send wakes/GB | TUN reads/GB | TUN writes/GB | packets/batch | UDP datagrams/GB |
|---|---:|---:|---:|---:|---:|---:|---:|---:|
`)
			head = true
		}
		udp := "–"
		if _, ok := r.Get("udp-tx-datagrams/GB"); ok {
			udp = intCell(&r, "udp-tx-datagrams/GB") + " (" + intCell(&r, "udp-tx-super/GB") + ")"
		}
		fmt.Fprintf(b, "| %s | %d | %s | %s | %s | %s | %s | %s | %s |\n", wgLabel(&r), wgStreams(&r), intCell(&r, "sleeps/GB"),
			intCell(&r, "xsk-wakeups/GB"), intCell(&r, "send-wakes/GB"), intCell(&r, "tun-reads/GB"), intCell(&r, "tun-writes/GB"), cell(&r, "pkts/batch"), udp)
	}
	if head {
		b.WriteString("\n")
	}
}

// wgPlots draws the wg suite's TCP rows: goodput (one stream and
// wgPlotStreams) and gateway CPU per GB (one stream), one bar group per
// implementation.
func wgPlots(rep *harness.Report, out map[string][]byte) error {
	var names []string
	idx := map[string]int{}
	for _, r := range rep.Filter(harness.KindWG) {
		if r.Traffic != "tcp" {
			continue
		}
		l := wgLabel(&r)
		if _, ok := idx[l]; !ok {
			idx[l] = len(names)
			names = append(names, l)
		}
	}
	if len(names) == 0 {
		return nil
	}
	one, many, cpu := make(plotter.Values, len(names)), make(plotter.Values, len(names)), make(plotter.Values, len(names))
	for _, r := range rep.Filter(harness.KindWG) {
		if r.Traffic != "tcp" {
			continue
		}
		i := idx[wgLabel(&r)]
		g, _ := r.Get("Gbps")
		switch wgStreams(&r) {
		case 1:
			one[i] = g
			cpu[i], _ = r.Get("gw-cpu-s/GB")
		case wgPlotStreams:
			many[i] = g
		}
	}
	svg, err := barPlots(names, []barPanel{
		{"TCP goodput, hostA → hostB", "Gbit/s", []barSeries{
			{"1 stream", one, 0},
			{fmt.Sprintf("%d streams", wgPlotStreams), many, 2},
		}},
		{"Gateways' CPU per GB of goodput (both gateways, 1 stream)", "CPU seconds per GB", []barSeries{
			{"gateways' CPU", cpu, 1},
		}},
	})
	if err != nil {
		return err
	}
	out[plotWG] = svg
	return nil
}

type barSeries struct {
	label string
	vs    plotter.Values
	color int
}

// barPanel is one plot of barPlots: a title, a Y label and its bars.
type barPanel struct {
	title, ylabel string
	series        []barSeries
}

// barPlots draws panels one above the other into one SVG, each with
// grouped bars (one group per name, one bar per series) and the names
// under the groups.
func barPlots(names []string, panels []barPanel) ([]byte, error) {
	var ps [][]*plot.Plot
	for _, pn := range panels {
		p := plot.New()
		p.Title.Text = pn.title
		p.Y.Label.Text = pn.ylabel
		p.Y.Min = 0
		p.Legend.Top = true
		p.Add(plotter.NewGrid())
		w := vg.Points(12)
		for i, s := range pn.series {
			bc, err := plotter.NewBarChart(s.vs, w)
			if err != nil {
				return nil, fmt.Errorf("report: plot %q: %w", pn.title, err)
			}
			bc.Color = palette[s.color%len(palette)]
			bc.LineStyle.Color = color.Transparent
			bc.Offset = w * vg.Length(float64(i)-float64(len(pn.series)-1)/2)
			p.Add(bc)
			p.Legend.Add(s.label, bc)
		}
		p.NominalX(names...)
		p.X.Tick.Label.Rotation = 0.4
		p.X.Tick.Label.XAlign = draw.XRight
		p.X.Tick.Label.YAlign = draw.YCenter
		ps = append(ps, []*plot.Plot{p})
	}
	c := newPlotCanvas(8*vg.Inch, vg.Length(len(ps))*4.5*vg.Inch)
	tiles := draw.Tiles{Rows: len(ps), Cols: 1, PadY: vg.Points(12), PadTop: vg.Points(4), PadBottom: vg.Points(4)}
	cs := plot.Align(ps, tiles, draw.New(c))
	for i := range ps {
		ps[i][0].Draw(cs[i][0])
	}
	var buf bytes.Buffer
	if _, err := c.WriteTo(&buf); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// newPlotCanvas makes the canvas of barPlots (SVG).
var newPlotCanvas = func(w, h vg.Length) vg.CanvasWriterTo { return vgsvg.New(w, h) }

// pairedWG returns the alternated measurement of r's implementation and
// transform (one stream), or nil.
func pairedWG(paired []harness.Result, r *harness.Result) *harness.Result {
	for i := range paired {
		if paired[i].Impl == r.Impl && paired[i].Transform == r.Transform {
			return &paired[i]
		}
	}
	return nil
}

// pairedMeasured describes an alternated ratio (metric, its -min and
// -max) beside the row's own.
func pairedMeasured(p *harness.Result, metric string, row float64) string {
	v, _ := p.Get(metric)
	lo, _ := p.Get(metric + "-min")
	hi, _ := p.Get(metric + "-max")
	return fmt.Sprintf("%s× (alternated with wireguard-go, median of %s rounds, %s-%s; the row above %s×)",
		num(v), intCell(p, "rounds"), num(lo), num(hi), num(row))
}

// wgPairedTable writes the alternated measurements.
func wgPairedTable(b *strings.Builder, paired []harness.Result) {
	if len(paired) == 0 {
		return
	}
	b.WriteString(`### One TCP stream, alternated with wireguard-go

The rows above measure one implementation's runs back to back and the
next implementation minutes later; this VM drifts between a fast and a
slow speed on that scale (the kernel's own forwarding moved by 40 %
between two runs). Here each round starts wireguard-go (its better
setting above) and then each row below in turn, one transfer each, so
the transfers compared are seconds apart; each row's goodput and
gateways' CPU per GB are divided by wireguard-go's of the same round,
and the table gives the median of those ratios (and their range). The
targets of these rows use it.

| implementation | transform | rounds | goodput vs wireguard-go (median) | range | gateways CPU per GB vs wireguard-go (median) | range | Gbps (median) | wireguard-go Gbps (median) |
|---|---|---:|---:|---|---:|---|---:|---:|
`)
	for i := range paired {
		p := &paired[i]
		lo, _ := p.Get("paired-x-wireguard-min")
		hi, _ := p.Get("paired-x-wireguard-max")
		clo, _ := p.Get("paired-x-wireguard-cpu-min")
		chi, _ := p.Get("paired-x-wireguard-cpu-max")
		fmt.Fprintf(b, "| %s | %s | %s | %s× | %s-%s | %s× | %s-%s | %s | %s |\n", p.Impl, p.Transform, intCell(p, "rounds"),
			cell(p, "paired-x-wireguard"), num(lo), num(hi), cell(p, "paired-x-wireguard-cpu"), num(clo), num(chi), cell(p, "Gbps"), cell(p, "wireguard-Gbps"))
	}
	b.WriteString("\n")
}

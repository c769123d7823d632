package report

import (
	"bytes"
	"fmt"
	"image/color"
	"slices"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"

	"github.com/espxdp/espxdp/bench/internal/harness"
)

var palette = []color.Color{
	color.RGBA{R: 0x1f, G: 0x77, B: 0xb4, A: 0xff},
	color.RGBA{R: 0xd6, G: 0x27, B: 0x28, A: 0xff},
	color.RGBA{R: 0x2c, G: 0xa0, B: 0x2c, A: 0xff},
	color.RGBA{R: 0x94, G: 0x67, B: 0xbd, A: 0xff},
	color.RGBA{R: 0xff, G: 0x7f, B: 0x0e, A: 0xff},
	color.RGBA{R: 0x8c, G: 0x56, B: 0x4b, A: 0xff},
}

// series is one line of a plot.
type series struct {
	label  string
	pts    plotter.XYs
	color  int
	dashed bool
}

// render draws series into an SVG; nil when there is no point to draw.
// The legend goes top left (lines rising to the right) or top right.
func render(title, xl, yl string, logX, legendLeft bool, ss []series) ([]byte, error) {
	p := plot.New()
	p.Title.Text = title
	p.X.Label.Text = xl
	p.Y.Label.Text = yl
	p.Legend.Top = true
	p.Legend.Left = legendLeft
	p.Add(plotter.NewGrid())
	if logX {
		p.X.Scale = plot.LogScale{}
		p.X.Tick.Marker = plot.LogTicks{Prec: -1}
	}
	npts := 0
	for _, s := range ss {
		npts += len(s.pts)
		if len(s.pts) == 0 {
			continue
		}
		l, pts, err := plotter.NewLinePoints(s.pts)
		if err != nil {
			return nil, fmt.Errorf("report: plot %q: %w", title, err)
		}
		c := palette[s.color%len(palette)]
		l.Color, pts.Color = c, c
		l.Width = vg.Points(1.5)
		pts.Shape = draw.CircleGlyph{}
		if s.dashed {
			l.Dashes = []vg.Length{vg.Points(5), vg.Points(3)}
			pts.Shape = draw.BoxGlyph{}
		}
		p.Add(l, pts)
		p.Legend.Add(s.label, l, pts)
	}
	if npts == 0 {
		return nil, nil // nothing to draw
	}
	if logX {
		// A log axis needs 0 < Min < Max; a single x value gives Min == Max.
		if p.X.Min == p.X.Max {
			p.X.Min, p.X.Max = p.X.Min/2, p.X.Max*2
		}
	} else if p.X.Min == p.X.Max {
		p.X.Min, p.X.Max = p.X.Min-1, p.X.Max+1
	}
	if p.Y.Min == p.Y.Max {
		p.Y.Min, p.Y.Max = 0, 2*p.Y.Max
	}
	wt, err := p.WriterTo(6*vg.Inch, 4*vg.Inch, "svg")
	if err != nil {
		return nil, err
	}
	var buf bytes.Buffer
	if _, err := wt.WriteTo(&buf); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// xy collects (x, metric) points from rs, sorted by x, skipping results
// without the metric or with x ≤ 0 (log axes).
func xy(rs []harness.Result, x func(*harness.Result) int, metric string) plotter.XYs {
	var pts plotter.XYs
	for i := range rs {
		v, ok := rs[i].Get(metric)
		if xv := x(&rs[i]); ok && xv > 0 && v > 0 {
			pts = append(pts, plotter.XY{X: float64(xv), Y: v})
		}
	}
	slices.SortFunc(pts, func(a, b plotter.XY) int {
		switch {
		case a.X < b.X:
			return -1
		case a.X > b.X:
			return 1
		}
		return 0
	})
	return pts
}

// Plots renders every plot rep has data for, by file name.
func Plots(rep *harness.Report) (map[string][]byte, error) {
	out := map[string][]byte{}
	cr := rep.Filter(harness.KindCrypto)
	size := func(r *harness.Result) int { return r.Size }
	for _, t := range transformsOf(cr) {
		var ss []series
		for i, op := range []string{"seal", "open"} {
			var rs []harness.Result
			for _, r := range cr {
				if r.Transform == t && r.Op == op {
					rs = append(rs, r)
				}
			}
			ss = append(ss,
				series{label: op, pts: xy(rs, size, "MB/s"), color: i},
				series{label: "raw " + op, pts: xy(rs, size, "raw-MB/s"), color: i, dashed: true})
		}
		svg, err := render(t+": throughput vs payload size", "payload bytes", "MB/s", true, true, ss)
		if err != nil {
			return nil, err
		}
		if svg != nil {
			out[fmt.Sprintf(plotCryptoPattern, t)] = svg
		}
	}
	if lk := rep.Filter(harness.KindLookup); len(lk) > 0 {
		svg, err := render("SAD lookup", "SAs (log)", "ns per lookup", true, true,
			[]series{{label: "SAD.Lookup", pts: xy(lk, func(r *harness.Result) int { return r.SAs }, "ns/op")}})
		if err != nil {
			return nil, err
		}
		if svg != nil {
			out[plotSADLookup] = svg
		}
	}
	if md := rep.Filter(harness.KindModes); len(md) > 0 {
		var ss []series
		var modes []string
		for _, r := range md {
			if !slices.Contains(modes, r.Mode) {
				modes = append(modes, r.Mode)
			}
		}
		for i, m := range modes {
			var rs []harness.Result
			for _, r := range md {
				if r.Mode == m {
					rs = append(rs, r)
				}
			}
			ss = append(ss, series{label: m, pts: xy(rs, func(r *harness.Result) int { return r.Workers }, "ns/pkt"), color: i})
		}
		svg, err := render("Concurrency modes (round trip, 1420 B)", "workers", "ns per packet (wall / all packets)", false, false, ss)
		if err != nil {
			return nil, err
		}
		if svg != nil {
			out[plotModes] = svg
		}
	}
	if err := e2ePlots(rep, out); err != nil {
		return nil, err
	}
	if err := shardPlots(rep, out); err != nil {
		return nil, err
	}
	if err := oneSAPlots(rep, out); err != nil {
		return nil, err
	}
	if err := wgPlots(rep, out); err != nil {
		return nil, err
	}
	return out, nil
}

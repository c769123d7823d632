//go:build linux

package harness

import (
	"fmt"
)

// WGPairRounds is how many rounds the alternated measurement runs.
const WGPairRounds = 5

// wgPairedImpls are the espxdp rows measured in alternation with
// wireguard-go: the UDP cipher port's, both transforms.
var wgPairedImpls = []struct{ impl, tr string }{
	{"espxdp-tun-udp", "aes128gcm16"},
	{"espxdp-tun-udp", "chacha20poly1305"},
}

// paired measures one TCP stream through wireguard-go (its better
// setting in the rows before, offloads on if none ran) and through each
// of wgPairedImpls, in rounds: every round starts each implementation in
// turn and makes one transfer of r.bytes through it. Each round gives
// each espxdp row its goodput and its gateways' CPU per GB over
// wireguard-go's of the same round, transfers seconds apart. The rows
// above measure an implementation's runs back to back and the next
// implementation minutes later, and this VM drifts between a fast and a
// slow speed on that scale (kernel forwarding alone measured 5.4 and 7.5
// Gbit/s in two runs); in alternation both see the same machine, so the
// median of the per-round ratios is the figure the drift cannot bias.
func (r *wgRun) paired() ([]Result, error) {
	if err := r.setup(); err != nil {
		return nil, err
	}
	v, g := r.bestWG(1)
	if g == 0 {
		v = wgOffload
	}
	// A run of its own: one transfer per measurement, and its keys and
	// ratios kept apart from the rows'.
	one := &wgRun{cfg: r.cfg, net: r.net, gbps: map[string]float64{}, pps: map[string]float64{}, cpuGB: map[string]float64{},
		sirqGB: map[string]float64{}, streams: []int{1}, runs: 1, bytes: r.bytes}
	type sample struct{ gbps, cpu float64 }
	measure := func(impl, tr string, start func() (func(), error)) (sample, error) {
		stop, err := start()
		if err != nil {
			return sample{}, err
		}
		defer stop()
		res, err := one.tcp(impl, tr, v, 1)
		if err != nil {
			return sample{}, err
		}
		gb, _ := res.Get("Gbps")
		c, _ := res.Get("gw-cpu-s/GB")
		return sample{gb, c}, nil
	}
	xg := make([][]float64, len(wgPairedImpls))
	xc := make([][]float64, len(wgPairedImpls))
	var wgG, wgC []float64
	espG := make([][]float64, len(wgPairedImpls))
	rounds := WGPairRounds
	if r.cfg.Quick {
		rounds = 2
	}
	for range rounds {
		w, err := measure("wireguard-go", "", func() (func(), error) { return r.net.startWireGuard(v == wgOffload) })
		if err != nil {
			return nil, err
		}
		if w.gbps <= 0 || w.cpu <= 0 {
			return nil, fmt.Errorf("harness: paired: wireguard-go measured %+v", w)
		}
		wgG, wgC = append(wgG, w.gbps), append(wgC, w.cpu)
		for i, p := range wgPairedImpls {
			e, err := measure(p.impl, p.tr, func() (func(), error) {
				return r.net.startESPMode(p.tr, r.cfg.Seed, true, v == wgOffload, true)
			})
			if err != nil {
				return nil, err
			}
			xg[i] = append(xg[i], e.gbps/w.gbps)
			xc[i] = append(xc[i], e.cpu/w.cpu)
			espG[i] = append(espG[i], e.gbps)
		}
	}
	var out []Result
	for i, p := range wgPairedImpls {
		res := Result{Suite: "wg", Kind: KindWGPaired, Impl: p.impl, Transform: p.tr, Traffic: "tcp", Size: wgInnerMT, Op: v, Streams: 1}
		res.add("rounds", float64(len(xg[i])), "rounds")
		res.addSpread("paired-x-wireguard", xg[i], UnitRatio)
		res.addSpread("paired-x-wireguard-cpu", xc[i], UnitRatio)
		res.add("Gbps", median(espG[i]), UnitGbps)
		res.add("wireguard-Gbps", median(wgG), UnitGbps)
		res.add("wireguard-cpu-s/GB", median(wgC), UnitCPUPerGB)
		out = append(out, res)
	}
	return out, nil
}

package gateway

import (
	"errors"
	"fmt"
	"net"
	"net/http"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/espxdp/espxdp/internal/metrics"
	"github.com/espxdp/espxdp/sa"
)

// eventCounters count the control-plane events handled, by kind.
type eventCounters [8]atomic.Uint64

// countEvent counts one event handled.
func (gw *Gateway) countEvent(k sa.EventKind) {
	if int(k) < len(gw.eventCounts) {
		gw.eventCounts[k].Add(1)
	}
}

// MetricsSnapshot returns the counters the Prometheus collector exports:
// read at scrape time, no key material.
func (gw *Gateway) MetricsSnapshot() metrics.Snapshot {
	st := gw.Stats()
	snap := metrics.Snapshot{
		SAs: gw.SAStats(), Processor: st.Processor, Uptime: st.Uptime,
		KeepalivesSent: st.KeepalivesSent, KeepalivesReceived: st.KeepalivesReceived, KeepaliveErrors: st.KeepaliveErrors,
		EventsLost: st.EventsLost, Events: map[sa.EventKind]uint64{},
	}
	if gw.Running() {
		snap.Engine = &st.Engine
	}
	snap.TUN = st.TUN
	snap.Steering, snap.Queues = st.Steering, st.Queues
	for k := range gw.eventCounts {
		if n := gw.eventCounts[k].Load(); n > 0 {
			snap.Events[sa.EventKind(k)] = n
		}
	}
	return snap
}

// metricsServer serves /metrics.
type metricsServer struct {
	ln  net.Listener
	srv *http.Server
}

// MetricsHandler returns an http.Handler serving the gateway's metrics
// (and the Go runtime's and the process's) in the Prometheus formats.
func (gw *Gateway) MetricsHandler() http.Handler {
	gw.mu.Lock()
	maxSAs := gw.g.MetricsMaxSAs
	gw.mu.Unlock()
	return gw.metricsHandler(maxSAs)
}

func (gw *Gateway) metricsHandler(maxSAs int) http.Handler {
	reg := prometheus.NewRegistry()
	reg.MustRegister(metrics.NewCollector(gw.MetricsSnapshot, metrics.Options{MaxSAs: maxSAs}), ikeCollector{gw},
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return promhttp.HandlerFor(reg, promhttp.HandlerOpts{ErrorHandling: promhttp.ContinueOnError, MaxRequestsInFlight: 4, Timeout: 10 * time.Second})
}

// startMetrics listens on gateway.metrics (if set), in the process's own
// network namespace like the control socket: the management plane stays
// out of the data plane's namespace. gw.mu is held.
func (gw *Gateway) startMetrics() error {
	addr := gw.g.Metrics
	if addr == "" {
		return nil
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("gateway: metrics: %w", err)
	}
	mux := http.NewServeMux()
	mux.Handle("/metrics", gw.metricsHandler(gw.g.MetricsMaxSAs))
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/" {
			http.NotFound(w, r)
			return
		}
		fmt.Fprintln(w, "espxdp: metrics at /metrics")
	})
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second, ReadTimeout: 10 * time.Second,
		WriteTimeout: 30 * time.Second, IdleTimeout: time.Minute, MaxHeaderBytes: 16 << 10}
	gw.metrics = &metricsServer{ln: ln, srv: srv}
	gw.wg.Add(1)
	go func() {
		defer gw.wg.Done()
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			gw.log.Error("metrics server stopped", "addr", ln.Addr().String(), "err", err)
		}
	}()
	gw.log.Info("metrics", "addr", ln.Addr().String(), "path", "/metrics")
	return nil
}

// stopMetrics closes the metrics listener and its connections without
// waiting for handlers (they may wait for gw.mu, which is held).
func (gw *Gateway) stopMetrics() error {
	if gw.metrics == nil {
		return nil
	}
	err := gw.metrics.srv.Close()
	gw.metrics = nil
	return err
}

// MetricsAddr returns the address the metrics endpoint listens on ("" if
// none): useful with port 0.
func (gw *Gateway) MetricsAddr() string {
	gw.mu.Lock()
	defer gw.mu.Unlock()
	if gw.metrics == nil {
		return ""
	}
	return gw.metrics.ln.Addr().String()
}

// ikeCollector exports the IKE peers: IKE SAs up per peer and the
// authentication failures, malformed messages and rekeys.
type ikeCollector struct{ gw *Gateway }

var (
	descIKEUp = prometheus.NewDesc("espxdp_ike_sa_up", "1 when the peer has an established IKE SA.",
		[]string{"peer"}, nil)
	descIKESAs = prometheus.NewDesc("espxdp_ike_sas", "IKE SAs of the peer (established or being deleted).",
		[]string{"peer"}, nil)
	descIKEChildren = prometheus.NewDesc("espxdp_ike_child_sas", "Child SAs installed for the peer (retiring ones included).",
		[]string{"peer"}, nil)
	descIKEAuthFailed = prometheus.NewDesc("espxdp_ike_auth_failures_total", "Failed IKE authentications with the peer (wrong PSK or identity), either side.",
		[]string{"peer"}, nil)
	descIKEMalformed = prometheus.NewDesc("espxdp_ike_malformed_total", "IKE messages from the peer refused by the parser or the integrity check.",
		[]string{"peer"}, nil)
	descIKERekeys = prometheus.NewDesc("espxdp_ike_child_rekeys_total", "Child SA rekeys this gateway initiated.", nil, nil)
	descIKEDead   = prometheus.NewDesc("espxdp_ike_dead_peers_total", "Peers found dead by liveness checks (DPD).", nil, nil)
	descIKEStray  = prometheus.NewDesc("espxdp_ike_stray_total", "Datagrams on the IKE sockets dropped: from no configured peer (what=unknown_peer) or ESP in UDP that reached the kernel (what=esp).",
		[]string{"what"}, nil)
)

// Describe implements prometheus.Collector.
func (c ikeCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descIKEUp, descIKESAs, descIKEChildren, descIKEAuthFailed, descIKEMalformed, descIKERekeys, descIKEDead, descIKEStray} {
		ch <- d
	}
}

// Collect implements prometheus.Collector.
func (c ikeCollector) Collect(ch chan<- prometheus.Metric) {
	for _, p := range c.gw.IKEInfo() {
		up, children := 0.0, 0
		if p.Up {
			up = 1
		}
		for _, s := range p.IKESAs {
			children += len(s.Children)
		}
		ch <- prometheus.MustNewConstMetric(descIKEUp, prometheus.GaugeValue, up, p.Peer)
		ch <- prometheus.MustNewConstMetric(descIKESAs, prometheus.GaugeValue, float64(len(p.IKESAs)), p.Peer)
		ch <- prometheus.MustNewConstMetric(descIKEChildren, prometheus.GaugeValue, float64(children), p.Peer)
		ch <- prometheus.MustNewConstMetric(descIKEAuthFailed, prometheus.CounterValue, float64(p.Stats.AuthFailed), p.Peer)
		ch <- prometheus.MustNewConstMetric(descIKEMalformed, prometheus.CounterValue, float64(p.Stats.Malformed), p.Peer)
	}
	ch <- prometheus.MustNewConstMetric(descIKERekeys, prometheus.CounterValue, float64(c.gw.ikeRekeys.Load()))
	ch <- prometheus.MustNewConstMetric(descIKEDead, prometheus.CounterValue, float64(c.gw.ikeDPDDead.Load()))
	ch <- prometheus.MustNewConstMetric(descIKEStray, prometheus.CounterValue, float64(c.gw.ikeUnknown.Load()), "unknown_peer")
	ch <- prometheus.MustNewConstMetric(descIKEStray, prometheus.CounterValue, float64(c.gw.ikeESP.Load()), "esp")
}

//go:build linux

package gateway

import (
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	dto "github.com/prometheus/client_model/go"

	"github.com/espxdp/espxdp/internal/testenv"
)

// scrape fetches and parses the gateway's /metrics.
func scrape(t *testing.T, gw *Gateway) (string, map[string]*dto.MetricFamily) {
	t.Helper()
	addr := gw.MetricsAddr()
	if addr == "" {
		t.Fatal("no metrics address")
	}
	c := &http.Client{Timeout: 5 * time.Second}
	resp, err := c.Get("http://" + addr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("scrape: %v %s", err, resp.Status)
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	mfs, err := p.TextToMetricFamilies(strings.NewReader(string(body)))
	if err != nil {
		t.Fatalf("scrape does not parse: %v\n%s", err, body)
	}
	return string(body), mfs
}

// metricValue returns the value of the series of name whose labels
// include the pairs given.
func metricValue(t *testing.T, mfs map[string]*dto.MetricFamily, name string, labels ...string) float64 {
	t.Helper()
	mf := mfs[name]
	if mf == nil {
		t.Fatalf("no metric %s", name)
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
			return c.GetValue()
		}
		if g := m.GetGauge(); g != nil {
			return g.GetValue()
		}
		return m.GetUntyped().GetValue()
	}
	t.Fatalf("no series %s%v", name, labels)
	return 0
}

// TestGatewayMetrics scrapes two running gateways after traffic stops
// and checks the metrics against the gateways' own show-sa and
// show-stats answers; no key byte appears in the scrape.
func TestGatewayMetrics(t *testing.T) {
	testenv.RequirePrivileged(t)
	a, b := buildTopology(t)
	p := gwParams{keyAB: randKey(t), keyBA: randKey(t), extra: "  metrics: 127.0.0.1:0\n"}
	ga := startGateway(t, a, gatewayYAML(a, b, "a", p))
	gb := startGateway(t, b, gatewayYAML(b, a, "b", p))
	if got := ping(t, a, b.hostAddr, 5); got != 5 {
		t.Fatalf("%d of 5 pings answered\n%s\n%s", got, a.log.String(), b.log.String())
	}
	for _, s := range []struct {
		gw   *Gateway
		site *site
		out  string
		in   string
	}{{ga, a, "a-to-b", "b-to-a"}, {gb, b, "b-to-a", "a-to-b"}} {
		body, mfs := scrape(t, s.gw)
		for _, k := range []string{p.keyAB, p.keyBA} {
			hexKey := strings.TrimPrefix(k, "0x")
			// Any 8 consecutive bytes of a key, in hex, either case.
			for i := 0; i+16 <= len(hexKey); i += 8 {
				if frag := hexKey[i : i+16]; strings.Contains(strings.ToLower(body), frag) {
					t.Fatalf("scrape contains key bytes %s", frag)
				}
			}
		}
		out := statsOf(t, s.site.socket, s.out)
		in := statsOf(t, s.site.socket, s.in)
		if out.EncapsPkts < 5 || in.DecapsPkts < 5 {
			t.Errorf("too few packets counted: %+v %+v", out, in)
		}
		checks := []struct {
			name   string
			labels []string
			want   uint64
		}{
			{"espxdp_sa_packets_total", []string{"name", s.out, "direction", "out", "spi", fmt.Sprintf("0x%x", out.SPI)}, out.EncapsPkts},
			{"espxdp_sa_bytes_total", []string{"name", s.out, "direction", "out"}, out.EncapsBytes},
			{"espxdp_sa_packets_total", []string{"name", s.in, "direction", "in"}, in.DecapsPkts},
			{"espxdp_sa_bytes_total", []string{"name", s.in, "direction", "in"}, in.DecapsBytes},
			{"espxdp_sa_sequence", []string{"name", s.out}, out.Seq},
			{"espxdp_sa_sequence", []string{"name", s.in}, in.Seq},
			{"espxdp_sas", nil, 2},
		}
		resp, err := Call(s.site.socket, Request{Cmd: "show-stats"}, 2*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		st := resp.Stats
		checks = append(checks, []struct {
			name   string
			labels []string
			want   uint64
		}{
			{"espxdp_processor_packets_total", []string{"direction", "in"}, st.Processor.InPkts},
			{"espxdp_processor_packets_total", []string{"direction", "out"}, st.Processor.OutPkts},
			{"espxdp_worker_encrypted_total", []string{"queue", "0"}, st.Encrypted},
			{"espxdp_worker_decrypted_total", []string{"queue", "0"}, st.Decrypted},
			{"espxdp_worker_cipher_rx_total", []string{"queue", "0"}, st.CipherRX},
			{"espxdp_worker_plain_rx_total", []string{"queue", "0"}, st.PlainRX},
			{"espxdp_xsk_rx_packets_total", []string{"side", "cipher", "queue", "0"}, st.Engine.CipherSockets[0].RXPackets},
			{"espxdp_engine_running", nil, 1},
		}...)
		for _, c := range checks {
			if got := metricValue(t, mfs, c.name, c.labels...); got != float64(c.want) {
				t.Errorf("%s%v = %v, show-sa/show-stats say %d", c.name, c.labels, got, c.want)
			}
		}
		if metricValue(t, mfs, "espxdp_xdp_program_packets_total", "side", "cipher", "verdict", "esp_redirected") < 5 {
			t.Errorf("XDP program counted fewer ESP redirects than pings")
		}
		if mfs["go_goroutines"] == nil || mfs["process_open_fds"] == nil {
			t.Errorf("runtime and process metrics missing")
		}
	}
	// Closing the gateway closes the endpoint.
	addr := ga.MetricsAddr()
	ga.Close()
	if _, err := (&http.Client{Timeout: time.Second}).Get("http://" + addr + "/metrics"); err == nil {
		t.Error("metrics endpoint still answers after Close")
	}
}

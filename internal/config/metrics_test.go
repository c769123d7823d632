package config

import (
	"strings"
	"testing"
)

func TestGatewayMetricsOptions(t *testing.T) {
	with := func(opts string) string {
		return strings.Replace(gwYAML, "gateway:\n", "gateway:\n"+opts, 1)
	}
	cfg, err := Parse("gw.yaml", []byte(gwYAML))
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Gateway.Metrics != "" || cfg.Gateway.MetricsMaxSAs != 0 {
		t.Errorf("metrics on by default: %q %d", cfg.Gateway.Metrics, cfg.Gateway.MetricsMaxSAs)
	}
	cfg, err = Parse("gw.yaml", []byte(with("  metrics: 127.0.0.1:9477\n  metrics_max_sas: 50\n")))
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Gateway.Metrics != "127.0.0.1:9477" || cfg.Gateway.MetricsMaxSAs != 50 {
		t.Errorf("got %q %d", cfg.Gateway.Metrics, cfg.Gateway.MetricsMaxSAs)
	}
	if _, err := Parse("gw.yaml", []byte(with("  metrics: \"[::1]:0\"\n"))); err != nil {
		t.Errorf("[::1]:0: %v", err)
	}
	for opt, want := range map[string]string{
		"  metrics: 9477\n":            "gw.yaml:2: gateway.metrics: want host:port",
		"  metrics: localhost:http\n":  "gateway.metrics: want host:port",
		"  metrics: 127.0.0.1:70000\n": "gateway.metrics: want host:port",
		"  metrics: \":9477\"\n":       "gateway.metrics: name the address to listen on",
		"  metrics_max_sas: 2000000\n": "gateway.metrics_max_sas: want 0 (default 1000) .. 1000000",
		"  metrics_max_sas: -1\n":      "gateway.metrics_max_sas",
		"  metrics: {a: 1}\n":          "gateway.metrics",
	} {
		_, err := Parse("gw.yaml", []byte(with(opt)))
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%q: error %v, want %q", opt, err, want)
		}
	}
}

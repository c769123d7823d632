package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/espxdp/espxdp/internal/config"
	"github.com/espxdp/espxdp/internal/show"
	"github.com/espxdp/espxdp/sa"
)

// loaded is a configuration with its SAs built.
type loaded struct {
	cfg *config.Config
	sas []*sa.SA // same order as cfg.SAs, nil for those not built
}

// loadConfig reads the config file and builds the SAs that want(c)
// selects (all when want is nil). Errors carry the file and line of the
// SA at fault.
func loadConfig(path string, want func(*config.SA) bool) (*loaded, error) {
	cfg, err := config.Load(path)
	if err != nil {
		return nil, err
	}
	l := &loaded{cfg: cfg, sas: make([]*sa.SA, len(cfg.SAs))}
	for i, c := range cfg.SAs {
		if want != nil && !want(c) {
			continue
		}
		sc := c.SAConfig()
		// The selectors a gateway would give it (pcap decrypt checks
		// them like espxdp run does).
		sc.Selectors = cfg.Gateway.SelectorsOf(c, cfg.Gateway.TunnelOf(c.Name))
		s, err := sa.New(sc)
		if err != nil {
			l.close()
			return nil, c.Pos.Errorf("%v", err)
		}
		l.sas[i] = s
	}
	return l, nil
}

// close closes the SAs (wiping their keys) and wipes the config's keys.
func (l *loaded) close() {
	for _, s := range l.sas {
		if s != nil {
			s.Close()
		}
	}
	l.cfg.Wipe()
}

// stats returns the Stats of the SAs that were built, in config order.
func (l *loaded) stats() []sa.Stats {
	var out []sa.Stats
	for _, s := range l.sas {
		if s != nil {
			out = append(out, s.Stats())
		}
	}
	return out
}

func cmdShowSA(args []string, stdout, stderr io.Writer) error {
	fs := newFlags("show sa", stderr)
	cfgPath := fs.String("config", "", "YAML configuration `file` (the SAs as configured, offline)")
	cf := addCallFlags(fs)
	asJSON := fs.Bool("json", false, "print JSON (with --watch: one object per interval)")
	watchOn := fs.Bool("watch", false, "refresh every --interval with per-SA and per-worker rates, busiest SAs first (Ctrl-C stops)")
	interval := fs.Duration("interval", time.Second, "--watch: time between refreshes")
	count := fs.Int("count", 0, "--watch: stop after this many refreshes (0: never)")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if *watchOn {
		if *cfgPath != "" {
			return usagef("show sa: --watch shows a running gateway (--socket), not a --config file")
		}
		if *interval <= 0 || *count < 0 {
			return usagef("show sa: --interval must be positive and --count not negative")
		}
		ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
		defer stop()
		o := watchOptions{interval: *interval, count: *count, json: *asJSON,
			title: "espxdp gateway " + *cf.socket, clear: isTerminal(stdout)}
		return watch(ctx, stdout, o, func() (snapshot, error) { return fetchSnapshot(*cf.socket, *cf.timeout) })
	}
	if *cfgPath == "" {
		return cmdShowSALive(*cf.socket, *cf.timeout, *asJSON, stdout)
	}
	l, err := loadConfig(*cfgPath, nil)
	if err != nil {
		return err
	}
	defer l.close()
	r := &show.Report{Title: fmt.Sprintf("config: %s", l.cfg.File), SAs: l.stats()}
	if *asJSON {
		return show.JSON(stdout, r)
	}
	return show.Text(stdout, r)
}

package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"os"
	"os/signal"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/espxdp/espxdp/internal/config"
	"github.com/espxdp/espxdp/internal/gateway"
	"github.com/espxdp/espxdp/internal/show"
	"github.com/espxdp/espxdp/sa"
)

// defaultSocket is the control socket the client commands use when
// neither --socket nor the configuration names one.
const defaultSocket = "/run/espxdp/espxdp.sock"

// cmdRun is `espxdp run --config F [--netns NAME]`: the gateway daemon.
// SIGHUP reloads the file; SIGINT and SIGTERM stop it.
func cmdRun(args []string, stdout, stderr io.Writer) error {
	fs := newFlags("run", stderr)
	cfgPath := fs.String("config", "", "YAML configuration `file` with gateway sections")
	netns := fs.String("netns", "", "run in this named network namespace (ip netns)")
	socket := fs.String("socket", "", "control socket `path` (overrides gateway.control)")
	logJSON := fs.Bool("log-json", false, "log as JSON")
	if err := parseFlags(fs, args, "config"); err != nil {
		return err
	}
	var h slog.Handler = slog.NewTextHandler(stderr, nil)
	if *logJSON {
		h = slog.NewJSONHandler(stderr, nil)
	}
	log := slog.New(h)
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	return runDaemon(ctx, *cfgPath, *netns, *socket, log, hup, stdout)
}

// runDaemon runs a gateway from the file at path until ctx ends,
// reloading on every value from hup.
func runDaemon(ctx context.Context, path, netns, socket string, log *slog.Logger, hup <-chan os.Signal, stdout io.Writer) error {
	load := func() (*config.Config, error) {
		cfg, err := config.Load(path)
		if err != nil {
			return nil, err
		}
		if cfg.Gateway == nil {
			return nil, fmt.Errorf("%s: no interfaces section: not a gateway configuration", path)
		}
		if socket != "" {
			cfg.Gateway.Control = socket
		} else if cfg.Gateway.Control == "" {
			cfg.Gateway.Control = defaultSocket
		}
		return cfg, nil
	}
	cfg, err := load()
	if err != nil {
		return err
	}
	opts := gateway.Options{Logger: log}
	if netns != "" {
		if strings.ContainsAny(netns, "/") {
			opts.NetNS = netns
		} else {
			opts.NetNS = "/run/netns/" + netns
		}
	}
	gw, err := gateway.New(cfg, opts)
	if err != nil {
		cfg.Wipe()
		return err
	}
	reload := func() (gateway.ReloadResult, error) {
		ncfg, err := load()
		if err != nil {
			return gateway.ReloadResult{}, err
		}
		res, err := gw.Reload(ncfg)
		if err != nil {
			ncfg.Wipe()
		}
		return res, err
	}
	gw.SetReloader(reload)
	if err := gw.Start(); err != nil {
		gw.Close()
		return err
	}
	fmt.Fprintf(stdout, "espxdp: gateway running (control socket %s); SIGHUP reloads %s, SIGTERM stops\n", cfg.Gateway.Control, path)
	for {
		select {
		case <-ctx.Done():
			log.Info("stopping")
			return gw.Close()
		case <-hup:
			if res, err := reload(); err != nil {
				log.Error("reload failed; still running the previous configuration", "err", err)
			} else {
				log.Info("reload done", "added", res.Added, "removed", res.Removed, "replaced", res.Replaced, "unchanged", res.Unchanged)
			}
		}
	}
}

// callFlags are the flags of the client commands.
type callFlags struct {
	socket  *string
	timeout *time.Duration
}

func addCallFlags(fs interface {
	String(string, string, string) *string
	Duration(string, time.Duration, string) *time.Duration
}) callFlags {
	return callFlags{
		socket:  fs.String("socket", defaultSocket, "control socket `path` of the running gateway"),
		timeout: fs.Duration("timeout", 5*time.Second, "how long to wait for the gateway"),
	}
}

func (c callFlags) call(req gateway.Request) (gateway.Response, error) {
	return gateway.Call(*c.socket, req, *c.timeout)
}

// cmdShowSALive is `show sa --socket S`: the running gateway's SAs.
func cmdShowSALive(socket string, timeout time.Duration, asJSON bool, stdout io.Writer) error {
	resp, err := gateway.Call(socket, gateway.Request{Cmd: "show-sa"}, timeout)
	if err != nil {
		return err
	}
	sres, err := gateway.Call(socket, gateway.Request{Cmd: "show-stats"}, timeout)
	if err != nil {
		return err
	}
	r := &show.Report{Title: "gateway: " + socket, SAs: resp.SAs}
	if sres.Stats != nil {
		r.Unowned = &sres.Stats.Processor.Drops
	}
	if asJSON {
		return show.JSON(stdout, r)
	}
	return show.Text(stdout, r)
}

// cmdShowStats is `show stats --socket S`.
func cmdShowStats(args []string, stdout, stderr io.Writer) error {
	fs := newFlags("show stats", stderr)
	cf := addCallFlags(fs)
	asJSON := fs.Bool("json", false, "print JSON")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	resp, err := cf.call(gateway.Request{Cmd: "show-stats"})
	if err != nil {
		return err
	}
	st := resp.Stats
	if st == nil {
		return errors.New("show stats: empty response")
	}
	if *asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(st)
	}
	rows := []struct {
		name string
		v    uint64
	}{
		{"uptime (s)", uint64(st.Uptime / time.Second)},
		{"ciphertext rx", st.CipherRX}, {"plaintext rx", st.PlainRX},
		{"encrypted", st.Encrypted}, {"decrypted", st.Decrypted}, {"bypassed", st.Bypassed},
		{"sa drops", st.SADrops}, {"mtu drops", st.MTUDrops}, {"tx ring full", st.TXFull},
		{"mss clamped", st.MSSClamped}, {"ttl expired", st.TTLExpired},
		{"icmp errors sent", st.ICMPSent}, {"icmp rate-limited", st.ICMPRateLimited}, {"icmp not sent", st.ICMPNotSent},
		{"nat-t keepalives sent", st.KeepalivesSent}, {"nat-t keepalives received", st.KeepalivesReceived},
		{"pmtu learned", st.Wire.PMTUAccepted}, {"pmtu expired", st.Wire.PMTUExpired}, {"vlan drops", st.Wire.VLANDrops},
		{"xsk rx dropped", st.Wire.XSKRXDropped}, {"xsk rx ring full", st.Wire.XSKRXRingFull},
		{"fragmented (before encr.)", st.Wire.Fragmented}, {"fragment failed", st.Wire.FragmentFailed},
		{"jumbo rx", st.Wire.JumboRX}, {"jumbo tx", st.Wire.JumboTX}, {"jumbo drops", st.Wire.JumboDrops},
		{"processor in", st.Processor.InPkts}, {"processor out", st.Processor.OutPkts},
	}
	for _, r := range rows {
		fmt.Fprintf(stdout, "%-28s %d\n", r.name+":", r.v)
	}
	for _, reason := range slices.Sorted(maps.Keys(st.Wire.PMTURejected)) {
		if n := st.Wire.PMTURejected[reason]; n > 0 {
			fmt.Fprintf(stdout, "%-28s %d\n", "pmtu rejected "+reason+":", n)
		}
	}
	for reason, n := range st.Processor.Drops {
		if n > 0 {
			fmt.Fprintf(stdout, "%-28s %d\n", "drop "+sa.DropReason(reason).String()+":", n)
		}
	}
	return nil
}

// cmdSA is `espxdp sa add|update|del`.
func cmdSA(args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		return usagef("sa: missing subcommand (add, update or del)")
	}
	sub := args[0]
	fs := newFlags("sa "+sub, stderr)
	cf := addCallFlags(fs)
	switch sub {
	case "add", "update":
		file := fs.String("file", "", "`file` with one SA mapping (YAML or JSON, fields as in the sas list; - for stdin)")
		tunnel := fs.String("tunnel", "", "bind the SA to this configured tunnel")
		if err := parseFlags(fs, args[1:], "file"); err != nil {
			return err
		}
		var data []byte
		var err error
		if *file == "-" {
			data, err = io.ReadAll(io.LimitReader(os.Stdin, 64<<10))
		} else {
			data, err = os.ReadFile(*file)
		}
		if err != nil {
			return err
		}
		// Check it here for a located error message; the gateway checks
		// again.
		c, err := config.ParseSA(*file, data)
		if err != nil {
			return err
		}
		c.Key.Wipe()
		c.AuthKey.Wipe()
		_, err = cf.call(gateway.Request{Cmd: "sa-" + sub, SA: string(data), Tunnel: *tunnel})
		clear(data)
		if err != nil {
			return err
		}
		fmt.Fprintf(stdout, "sa %s: %s SPI 0x%x (%s) done\n", sub, c.Direction, c.SPI, c.Name)
		return nil
	case "del", "delete":
		dir := fs.String("direction", "", "in or out")
		spi := fs.String("spi", "", "SPI (decimal or 0x hex)")
		if err := parseFlags(fs, args[1:], "direction", "spi"); err != nil {
			return err
		}
		base, digits := 10, strings.ToLower(*spi)
		if h, ok := strings.CutPrefix(digits, "0x"); ok {
			base, digits = 16, h
		}
		x, err := strconv.ParseUint(digits, base, 32)
		if err != nil {
			return usagef("sa del: bad --spi %q", *spi)
		}
		if _, err := cf.call(gateway.Request{Cmd: "sa-del", Direction: *dir, SPI: uint32(x)}); err != nil {
			return err
		}
		fmt.Fprintf(stdout, "sa del: %s SPI 0x%x done\n", *dir, x)
		return nil
	case "reload":
		if err := parseFlags(fs, args[1:]); err != nil {
			return err
		}
		resp, err := cf.call(gateway.Request{Cmd: "reload"})
		if err != nil {
			return err
		}
		r := resp.Reload
		fmt.Fprintf(stdout, "reload: added %v, removed %v, replaced %v, unchanged %d\n", r.Added, r.Removed, r.Replaced, r.Unchanged)
		return nil
	}
	return usagef("sa: unknown subcommand %q (want add, update, del or reload)", sub)
}

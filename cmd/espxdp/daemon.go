package main

import (
	"bytes"
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
	logFormat := fs.String("log-format", "text", "log `format`: text (key=value) or json (one object per line)")
	logLevel := fs.String("log-level", "info", "least `level` logged: debug, info, warn or error")
	logJSON := fs.Bool("log-json", false, "same as --log-format json")
	if err := parseFlags(fs, args, "config"); err != nil {
		return err
	}
	if *logJSON {
		*logFormat = "json"
	}
	log, err := newLogger(stderr, *logFormat, *logLevel)
	if err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	return runDaemon(ctx, *cfgPath, *netns, *socket, log, hup, stdout)
}

// newLogger returns the daemon's logger: format text or json, at least
// level (debug, info, warn, error).
func newLogger(w io.Writer, format, level string) (*slog.Logger, error) {
	var lv slog.Level
	if err := lv.UnmarshalText([]byte(level)); err != nil {
		return nil, usagef("run: --log-level %q: want debug, info, warn or error", level)
	}
	o := &slog.HandlerOptions{Level: lv}
	switch format {
	case "text":
		return slog.New(slog.NewTextHandler(w, o)), nil
	case "json":
		return slog.New(slog.NewJSONHandler(w, o)), nil
	}
	return nil, usagef("run: --log-format %q: want text or json", format)
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
	if m := missingCapabilities(netns != ""); len(m) > 0 {
		log.Warn("capabilities missing; starting anyway", "missing", strings.Join(m, "; "), "see", "docs/OPERATIONS.md")
	}
	if err := gw.Start(); err != nil {
		gw.Close()
		return fmt.Errorf("%w%s", err, capabilityHint(netns != ""))
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
				log.Info("reload done", "added", res.Added, "removed", res.Removed, "replaced", res.Replaced, "updated", res.Updated, "unchanged", res.Unchanged)
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
	return callGateway(*c.socket, req, *c.timeout)
}

// callGateway is gateway.Call with errors that say what to do next.
func callGateway(socket string, req gateway.Request, timeout time.Duration) (gateway.Response, error) {
	resp, err := gateway.Call(socket, req, timeout)
	if err == nil {
		return resp, nil
	}
	switch {
	case errors.Is(err, syscall.ENOENT) || errors.Is(err, syscall.ECONNREFUSED):
		err = fmt.Errorf("%w\n  no gateway listens there: start one with `espxdp run --config FILE`, or point --socket at its control socket (gateway.control in its configuration; default %s)", err, defaultSocket)
	case errors.Is(err, syscall.EACCES) || errors.Is(err, syscall.EPERM):
		err = fmt.Errorf("%w\n  the control socket is mode 0600 (SA keys travel over it): run this as the gateway's user or root", err)
	case errors.Is(err, os.ErrDeadlineExceeded):
		err = fmt.Errorf("%w\n  the gateway did not answer in time: raise --timeout, or check its log", err)
	}
	return resp, err
}

// cmdShowSALive is `show sa --socket S`: the running gateway's SAs.
func cmdShowSALive(socket string, timeout time.Duration, asJSON bool, stdout io.Writer) error {
	resp, err := callGateway(socket, gateway.Request{Cmd: "show-sa"}, timeout)
	if err != nil {
		return err
	}
	sres, err := callGateway(socket, gateway.Request{Cmd: "show-stats"}, timeout)
	if err != nil {
		return err
	}
	r := &show.Report{Title: "gateway: " + socket, SAs: resp.SAs}
	if sres.Stats != nil {
		r.Unowned = &sres.Stats.Processor.Drops
	}
	if asJSON {
		var buf bytes.Buffer
		if err := show.JSON(&buf, r); err != nil {
			return err
		}
		b, err := withOwners(buf.Bytes(), resp.Owners)
		if err != nil {
			return err
		}
		_, err = stdout.Write(b)
		return err
	}
	if err := show.Text(stdout, r); err != nil {
		return err
	}
	writeOwners(stdout, resp.Owners)
	return nil
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
		{"xsk rx dropped", st.Kernel.RxDropped}, {"xsk rx ring full", st.Kernel.RxRingFull},
		{"xsk fill ring empty", st.Kernel.RxFillRingEmptyDescs},
		{"xsk invalid descs", st.Kernel.RxInvalidDescs + st.Kernel.TxInvalidDescs},
		{"fragmented (before encr.)", st.Wire.Fragmented}, {"fragment failed", st.Wire.FragmentFailed},
		{"jumbo rx", st.Wire.JumboRX}, {"jumbo tx", st.Wire.JumboTX}, {"jumbo drops", st.Wire.JumboDrops},
		{"outer fragments", st.Wire.Reassembly.Fragments}, {"outer reassembled", st.Wire.Reassembly.Reassembled},
		{"outer fragments dropped", st.Wire.Reassembly.Refused() + st.Wire.Reassembly.Discarded + st.Wire.ReasmNoFrame},
		{"processor in", st.Processor.InPkts}, {"processor out", st.Processor.OutPkts},
	}
	if t := st.TUN; t != nil {
		rows = append(rows, []struct {
			name string
			v    uint64
		}{
			{"tun super-packets split", t.SplitSuperPackets}, {"tun segments split", t.SplitSegments},
			{"tun super-packets coalesced", t.CoalescedSuperPackets}, {"tun segments coalesced", t.CoalescedSegments},
			{"tun drops", t.ReadDrops + t.OversizeDrops}, {"tun write errors", t.WriteErrors},
		}...)
	}
	if st.Steering != "" {
		fmt.Fprintf(stdout, "%-28s %s (workers %d, queues %d)\n", "steering:", st.Steering, st.Workers, st.Queues)
	}
	for _, r := range rows {
		fmt.Fprintf(stdout, "%-28s %d\n", r.name+":", r.v)
	}
	workerRows(stdout, st)
	unprotectedRows(stdout, st)
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
	for _, l := range st.Links {
		fmt.Fprintf(stdout, "%-28s %s\n", "link "+l.Name+":", l.State)
	}
	return nil
}

// cmdSA is `espxdp sa add|update|del`.
func cmdSA(args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		return usagef("sa: missing subcommand (add, update, del, alloc-spi, release-spi or reload)")
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
		// again. sa add takes a list too (added all or none).
		var cs []*config.SA
		if sub == "add" {
			cs, err = config.ParseSAs(*file, data)
		} else {
			var c *config.SA
			c, err = config.ParseSA(*file, data)
			cs = []*config.SA{c}
		}
		if err != nil {
			clear(data)
			return err
		}
		for _, c := range cs {
			c.Key.Wipe()
			c.AuthKey.Wipe()
		}
		_, err = cf.call(gateway.Request{Cmd: "sa-" + sub, SA: string(data), Tunnel: *tunnel})
		clear(data)
		if err != nil {
			return err
		}
		for _, c := range cs {
			child := ""
			if c.Child != 0 {
				child = fmt.Sprintf(", child %d", c.Child)
			}
			fmt.Fprintf(stdout, "sa %s: %s SPI 0x%x (%s%s) done\n", sub, c.Direction, c.SPI, c.Name, child)
		}
		return nil
	case "del", "delete":
		dir := fs.String("direction", "", "in or out")
		spi := fs.String("spi", "", "SPI (decimal or 0x hex)")
		remote := fs.String("remote", "", "outbound: the peer's address, when several outbound SAs share the SPI")
		child := fs.String("child", "", "delete every SA of this child `id` at once (instead of --direction and --spi)")
		if err := parseFlags(fs, args[1:]); err != nil {
			return err
		}
		if *child != "" {
			if *dir != "" || *spi != "" || *remote != "" {
				return usagef("sa del: --child goes alone, without --direction, --spi or --remote")
			}
			id, err := parseNumber(*child, 64)
			if err != nil || id == 0 {
				return usagef("sa del: bad --child %q (want a child id of 1 or more)", *child)
			}
			resp, err := cf.call(gateway.Request{Cmd: "child-del", Child: id})
			if err != nil {
				return err
			}
			fmt.Fprintf(stdout, "sa del: child %d: %d SAs deleted\n", id, resp.Deleted)
			return nil
		}
		if *dir == "" || *spi == "" {
			return usagef("sa del: missing --direction and --spi (or --child)")
		}
		x, err := parseNumber(*spi, 32)
		if err != nil {
			return usagef("sa del: bad --spi %q", *spi)
		}
		if _, err := cf.call(gateway.Request{Cmd: "sa-del", Direction: *dir, SPI: uint32(x), Remote: *remote}); err != nil {
			return err
		}
		fmt.Fprintf(stdout, "sa del: %s SPI 0x%x done\n", *dir, x)
		return nil
	case "alloc-spi":
		lo := fs.String("min", "", "lowest SPI (decimal or 0x hex; default 256)")
		hi := fs.String("max", "", "highest SPI (default 0xffffffff)")
		ttl := fs.Duration("ttl", 0, "how long the SPI stays reserved unless an inbound SA takes it (default 30s)")
		asJSON := fs.Bool("json", false, "print {\"spi\": N}")
		if err := parseFlags(fs, args[1:]); err != nil {
			return err
		}
		req := gateway.Request{Cmd: "alloc-spi"}
		for _, b := range []struct {
			flag, v string
			dst     *uint32
		}{{"min", *lo, &req.Min}, {"max", *hi, &req.Max}} {
			if b.v == "" {
				continue
			}
			x, err := parseNumber(b.v, 32)
			if err != nil {
				return usagef("sa alloc-spi: bad --%s %q", b.flag, b.v)
			}
			*b.dst = uint32(x)
		}
		if *lo != "" && *hi != "" && req.Min > req.Max {
			return usagef("sa alloc-spi: --min 0x%x is above --max 0x%x", req.Min, req.Max)
		}
		if *ttl < 0 {
			return usagef("sa alloc-spi: negative --ttl")
		}
		if *ttl > 0 {
			req.TTL = ttl.String()
		}
		resp, err := cf.call(req)
		if err != nil {
			return err
		}
		if *asJSON {
			return json.NewEncoder(stdout).Encode(map[string]uint32{"spi": resp.SPI})
		}
		fmt.Fprintf(stdout, "0x%08x\n", resp.SPI)
		return nil
	case "release-spi":
		spi := fs.String("spi", "", "the SPI alloc-spi reserved")
		if err := parseFlags(fs, args[1:], "spi"); err != nil {
			return err
		}
		x, err := parseNumber(*spi, 32)
		if err != nil {
			return usagef("sa release-spi: bad --spi %q", *spi)
		}
		if _, err := cf.call(gateway.Request{Cmd: "release-spi", SPI: uint32(x)}); err != nil {
			return err
		}
		fmt.Fprintf(stdout, "sa release-spi: SPI 0x%x released\n", x)
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
		fmt.Fprintf(stdout, "reload: added %v, removed %v, replaced %v, updated %v, unchanged %d\n", r.Added, r.Removed, r.Replaced, r.Updated, r.Unchanged)
		return nil
	}
	return usagef("sa: unknown subcommand %q (want add, update, del, alloc-spi, release-spi or reload)", sub)
}

// parseNumber parses a decimal or 0x-hex unsigned number of bits bits.
func parseNumber(s string, bits int) (uint64, error) {
	base, digits := 10, strings.ToLower(s)
	if h, ok := strings.CutPrefix(digits, "0x"); ok {
		base, digits = 16, h
	}
	return strconv.ParseUint(digits, base, bits)
}

// cmdEvents is `espxdp events --socket S [--json]`: print the running
// gateway's events (lifetime expiry, sequence overflow, acquire, ...) as
// they happen, until interrupted or the gateway stops.
func cmdEvents(args []string, stdout, stderr io.Writer) error {
	fs := newFlags("events", stderr)
	cf := addCallFlags(fs)
	asJSON := fs.Bool("json", false, "print each event as a JSON line")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	return printEvents(ctx, *cf.socket, *cf.timeout, *asJSON, stdout)
}

// printEvents prints the events of the gateway at socket until ctx ends
// (nil error) or the stream does.
func printEvents(ctx context.Context, socket string, timeout time.Duration, asJSON bool, stdout io.Writer) error {
	s, err := gateway.Subscribe(socket, timeout)
	if err != nil {
		return err
	}
	go func() {
		<-ctx.Done()
		s.Close()
	}()
	enc := json.NewEncoder(stdout)
	for {
		ev, err := s.Next(time.Time{})
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			if errors.Is(err, io.EOF) {
				return errors.New("events: the gateway closed the stream")
			}
			return fmt.Errorf("events: %w", err)
		}
		if asJSON {
			if err := enc.Encode(ev); err != nil {
				return err
			}
			continue
		}
		line := ev.Time.Format(time.RFC3339Nano) + " " + ev.Kind
		if ev.SA != "" || ev.SPI != 0 {
			line += fmt.Sprintf(" sa=%s spi=0x%x dir=%s", ev.SA, ev.SPI, ev.Direction)
		}
		if ev.Limit != "" {
			line += " limit=" + ev.Limit
		}
		if ev.Policy != "" {
			line += " policy=" + ev.Policy
		}
		if ev.Packet != nil {
			line += fmt.Sprintf(" packet=%v->%v proto=%d", ev.Packet.Src, ev.Packet.Dst, ev.Packet.Proto)
		}
		if ev.Lost > 0 {
			line += fmt.Sprintf(" lost=%d", ev.Lost)
		}
		fmt.Fprintln(stdout, line)
	}
}

// workerRows are the show stats lines of the engine's workers, one
// each: what it received and passed on, and its drops of every kind.
func workerRows(w io.Writer, st *gateway.Stats) {
	for i := range st.Engine.Workers {
		ws := &st.Engine.Workers[i]
		fmt.Fprintf(w, "%-28s rx %d/%d, encrypted %d, decrypted %d, handed off %d, drops %d, tx ring full %d\n",
			fmt.Sprintf("worker %d (tx queue %d):", ws.Worker, ws.Queue), ws.CipherRX, ws.PlainRX,
			ws.Encrypted, ws.Decrypted, ws.HandedOff, workerDrops(ws), ws.TXFull)
	}
}

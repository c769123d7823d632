// Command bench measures the esp and sa packages through their public
// APIs and writes results.json and a Markdown report with SVG plots.
//
//	go run ./bench                       # default suites, all transforms
//	go run ./bench -quick                # CI-sized, a few seconds
//	go run ./bench -suite crypto -transforms aes128gcm16,chacha20poly1305 -sizes 64,1420
//
// See bench/README.md for what each number means.
package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"runtime/pprof"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/espxdp/espxdp/bench/internal/harness"
	"github.com/espxdp/espxdp/bench/internal/report"
	"github.com/espxdp/espxdp/esp"
)

func main() {
	// The wg suite's TCP endpoints are this program again, in a
	// namespace (harness.RunHelper exits when it ran one).
	if harness.RunHelper() {
		return
	}
	// On Ctrl-C, remove the e2e and wg suites' namespaces before exiting.
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, os.Interrupt, syscall.SIGTERM)
	go func() {
		s := <-sig
		harness.CloseNetworks()
		fmt.Fprintln(os.Stderr, "\nbench:", s)
		os.Exit(130)
	}()
	if err := run(os.Args[1:], os.Stderr); err != nil {
		if !errors.Is(err, flag.ErrHelp) {
			fmt.Fprintln(os.Stderr, "bench:", err)
		}
		os.Exit(2)
	}
}

// Defaults; -quick replaces the ones not set explicitly.
const (
	defSizes    = "64,512,1420,9000"
	defWorkers  = "1,2"
	defSAs      = "1,16,1000,100000"
	quickSizes  = "64,1420"
	quickTrans  = "aes128gcm16,aes128-sha256"
	quickSAs    = "1,1000"
	defDuration = 200 * time.Millisecond
	quickDur    = 20 * time.Millisecond
	defSeed     = 1
	// e2e and wg suites
	defE2ESizes = "64,512,1420,imix"
	defE2EDur   = 2 * time.Second
	quickE2EDur = 300 * time.Millisecond
	defWGBytes  = 256 << 20
	quickWGByte = 16 << 20
)

func run(args []string, stderr io.Writer) error {
	fs := flag.NewFlagSet("bench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	suite := fs.String("suite", strings.Join(harness.Suites, ","), "suites to run: crypto, sa; e2e, wg and peers (root: namespaces, XDP; peers: strongSwan) and shard (CPU only, a few minutes) on request")
	sizes := fs.String("sizes", defSizes, "payload sizes in bytes (crypto suite; shard suite: inner packet sizes, default 1420,64)")
	transforms := fs.String("transforms", "all", "transforms (crypto suite), or all")
	dur := fs.Duration("duration", defDuration, "time budget of each measurement")
	workers := fs.String("workers", defWorkers, "worker counts (sa suite: concurrency modes; the largest is used for skew; shard suite: default 1,2,4,...,GOMAXPROCS)")
	sas := fs.String("sas", defSAs, "SA counts for the SAD lookup (sa suite) and of the shard matrix")
	out := fs.String("out", "bench/out", "output directory")
	quick := fs.Bool("quick", false, "CI-sized run: "+quickTrans+" at "+quickSizes+" B, SAs "+quickSAs+", 20ms per measurement, unless set explicitly")
	seed := fs.Uint64("seed", defSeed, "seed of keys and payloads")
	note := fs.String("note", "", "a paragraph to put under the report's title (e.g. the conditions of the run)")
	from := fs.String("from", "", "render the report from this results.json instead of measuring")
	progress := fs.Bool("progress", true, "progress line on stderr")
	e2eSizes := fs.String("e2e-sizes", defE2ESizes, "inner IP packet sizes of the e2e suite, 28..1420 or imix")
	e2eDur := fs.Duration("e2e-duration", defE2EDur, "sending time of each e2e measurement (wg: of each UDP run)")
	e2eTrial := fs.Duration("e2e-trial", harness.DefaultE2ETrial, fmt.Sprintf("length of each trial of the e2e suite's NDR/PDR rate search (-quick: %v unless set)", harness.QuickE2ETrial))
	e2eJumbo := fs.Int("e2e-jumbo", harness.E2EDefaultJumbo, fmt.Sprintf("inner IP packet size of the e2e suite's jumbo rows (veths at MTU %d, the engine with MultiBuffer), 1421..%d; 0: none", harness.E2EJumboMTU, harness.E2EMaxJumbo))
	wgBytes := fs.Int64("wg-bytes", defWGBytes, "bytes of each TCP transfer of the wg and peers suites")
	steps := fs.String("steps", "", "comma-separated strings: run only the steps (of the e2e, wg, peers, shard and one-SA suites) whose label contains one, e.g. \"wireguard-go offload,espxdp-tun aes\"")
	wgStreams := fs.String("wg-streams", "", "TCP connection counts of the wg suite's TCP rows (default 1,4)")
	wgUDP := fs.Bool("wg-udp", true, "run the wg suite's UDP rows")
	cpuProfile := fs.String("cpuprofile", "", "write a CPU profile (pprof) of the whole run to this file")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	if *from != "" {
		return rerender(*from, *out, *note)
	}
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	if *quick {
		if !set["sizes"] {
			*sizes = quickSizes
		}
		if !set["transforms"] {
			*transforms = quickTrans
		}
		if !set["sas"] {
			*sas = quickSAs
		}
		if !set["duration"] {
			*dur = quickDur
		}
		if !set["e2e-duration"] {
			*e2eDur = quickE2EDur
		}
		if !set["e2e-trial"] {
			*e2eTrial = harness.QuickE2ETrial
		}
		if !set["wg-bytes"] {
			*wgBytes = quickWGByte
		}
	}
	cfg := harness.Config{Suites: splitList(*suite), DurationNs: int64(*dur), Quick: *quick, Seed: *seed}
	var err error
	if cfg.Sizes, err = intList("sizes", *sizes); err != nil {
		return err
	}
	if cfg.Workers, err = intList("workers", *workers); err != nil {
		return err
	}
	if cfg.SAs, err = intList("sas", *sas); err != nil {
		return err
	}
	if set["workers"] {
		cfg.ShardWorkers = cfg.Workers // else 1, 2, 4, ... GOMAXPROCS
	}
	if set["sizes"] {
		cfg.ShardSizes = cfg.Sizes // else 1420, 64
	}
	if cfg.E2ESizes, err = intList("e2e-sizes", strings.ReplaceAll(strings.ToLower(*e2eSizes), "imix", "0")); err != nil {
		return err
	}
	cfg.E2EDurationNs, cfg.WGBytes, cfg.E2EJumbo = int64(*e2eDur), *wgBytes, *e2eJumbo
	cfg.E2ETrialNs = int64(*e2eTrial)
	cfg.Steps, cfg.WGNoUDP = splitList(*steps), !*wgUDP
	if *wgStreams != "" {
		if cfg.WGStreams, err = intList("wg-streams", *wgStreams); err != nil {
			return err
		}
	}
	if *transforms == "all" {
		cfg.Transforms = esp.TransformNames()
	} else {
		cfg.Transforms = splitList(*transforms)
	}
	if err := cfg.Validate(); err != nil {
		return err
	}
	if err := os.MkdirAll(*out, 0o755); err != nil {
		return err
	}
	if *cpuProfile != "" {
		f, err := os.Create(*cpuProfile)
		if err != nil {
			return err
		}
		if err := pprof.StartCPUProfile(f); err != nil {
			f.Close()
			return err
		}
		defer func() {
			pprof.StopCPUProfile()
			f.Close()
		}()
	}
	var pw io.Writer
	if *progress {
		pw = stderr
	}
	rep, err := harness.Run(cfg, pw)
	if err != nil {
		return err
	}
	rep.Command = "go run ./bench"
	fs.Visit(func(f *flag.Flag) {
		if f.Name != "note" {
			rep.Command += " -" + f.Name + "=" + f.Value.String()
		}
	})
	f, err := os.Create(filepath.Join(*out, report.ResultsFile))
	if err != nil {
		return err
	}
	if err := rep.WriteJSON(f); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	if err := report.Write(*out, rep, rep.Command, *note); err != nil {
		return err
	}
	fmt.Fprintf(stderr, "wrote %s and %s\n", filepath.Join(*out, report.ResultsFile), filepath.Join(*out, report.ReportFile))
	return nil
}

func splitList(s string) []string {
	var out []string
	for _, f := range strings.Split(s, ",") {
		if f = strings.TrimSpace(f); f != "" {
			out = append(out, f)
		}
	}
	return out
}

func intList(name, s string) ([]int, error) {
	var out []int
	for _, f := range splitList(s) {
		v, err := strconv.Atoi(f)
		if err != nil {
			return nil, fmt.Errorf("-%s: %q is not a number", name, f)
		}
		out = append(out, v)
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("-%s: empty list", name)
	}
	return out, nil
}

// rerender writes the report of an earlier run's results.json into out.
func rerender(from, out, note string) error {
	f, err := os.Open(from)
	if err != nil {
		return err
	}
	defer f.Close()
	rep, err := harness.ReadJSON(f)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(out, 0o755); err != nil {
		return err
	}
	cmd := rep.Command
	if cmd == "" {
		cmd = "go run ./bench"
	}
	return report.Write(out, rep, cmd+"`, re-rendered with `go run ./bench -from="+from, note)
}

package harness

import (
	"errors"
	"fmt"
	"os"
	"slices"
	"sync"
)

// ErrNeedRoot is returned by the privileged suites (e2e, wg, peers) when the
// process is not root: they build network namespaces, veth pairs and
// XDP programs.
var ErrNeedRoot = errors.New("harness: the e2e, wg and peers suites need root (network namespaces, veth, XDP, AF_XDP, TUN): run as root, e.g. sudo go run ./bench -suite e2e,wg,peers")

// suiteStep is one measurement step of a suite that keeps state across
// its steps (a topology): its progress label and what it runs.
type suiteStep struct {
	label string
	run   func() ([]Result, error)
}

// Kinds and units of the e2e and wg suites.
const (
	KindE2E = "e2e" // gen → gateway → sink over veth, packets per second
	KindWG  = "wg"  // two gateways, TCP goodput: espxdp vs wireguard-go
	// KindWGPaired is one TCP stream through espxdp and through
	// wireguard-go measured in alternation (the wg suite's last step).
	KindWGPaired = "wg-paired"
	UnitGbps     = "Gbit/s"
	UnitSeconds  = "s"
	UnitBytes    = "bytes"
	// UnitMicros is microseconds (latency).
	UnitMicros = "µs"
	// UnitCPUPerGB is CPU seconds per gigabyte (1e9 bytes) of goodput.
	UnitCPUPerGB = "CPU s/GB"
)

// PrivilegedSuites are the suites that need root; they are not in the
// default set.
var PrivilegedSuites = []string{"e2e", "wg", "peers", SuiteOneSA}

// validateNet checks the configuration of the e2e and wg suites.
func (cfg *Config) validateNet() error {
	if slices.Contains(cfg.Suites, "e2e") {
		if len(cfg.E2ESizes) == 0 {
			return fmt.Errorf("harness: e2e: no size")
		}
		for _, n := range cfg.E2ESizes {
			if n != 0 && (n < e2eMinInner || n > e2eMaxInner) {
				return fmt.Errorf("harness: e2e: size %d out of range %d..%d (0: IMIX)", n, e2eMinInner, e2eMaxInner)
			}
		}
		if n := cfg.E2EJumbo; n != 0 && (n <= e2eMaxInner || n > E2EMaxJumbo) {
			return fmt.Errorf("harness: e2e: jumbo size %d out of range %d..%d (0: no jumbo rows)", n, e2eMaxInner+1, E2EMaxJumbo)
		}
		for _, w := range cfg.Workers {
			if w > 64 {
				return fmt.Errorf("harness: e2e: %d workers: at most 64 veth queues", w)
			}
		}
	}
	if slices.ContainsFunc(cfg.Suites, func(s string) bool { return slices.Contains(PrivilegedSuites, s) }) && cfg.E2EDurationNs <= 0 {
		return fmt.Errorf("harness: e2e duration must be positive")
	}
	if cfg.E2ETrialNs < 0 {
		return fmt.Errorf("harness: e2e trial length must not be negative")
	}
	for _, s := range []string{"wg", "peers"} {
		if slices.Contains(cfg.Suites, s) && cfg.WGBytes < 1<<20 {
			return fmt.Errorf("harness: %s: transfer size %d below 1 MiB", s, cfg.WGBytes)
		}
	}
	return nil
}

// checkPrivileged fails early (before any suite runs) when a suite of
// cfg needs root and the process is not root.
func checkPrivileged(cfg Config) error {
	for _, s := range cfg.Suites {
		if slices.Contains(PrivilegedSuites, s) && os.Geteuid() != 0 {
			return ErrNeedRoot
		}
	}
	return nil
}

const (
	// e2eMaxInner is the largest inner IP packet of the e2e suite: its
	// ESP packet (+ 56 bytes with aes128gcm16 in tunnel mode) fits a
	// 1500-byte MTU.
	e2eMaxInner = 1420
	e2eMinInner = 28 // IPv4 + UDP headers
)

// e2eOps are the measurements of the e2e suite, in the order they run
// for each worker count: the baselines first, so that decrypt and
// encrypt can be compared with them.
var e2eOps = []string{"forward", "kernel", "decrypt", "encrypt"}

// e2eSteps are the steps of the e2e suite for each worker count: e2eOps
// and, with Config.E2EJumbo set, the jumbo step last (its own kernel
// baseline, decrypt and encrypt at that size, the veths at
// E2EJumboMTU meanwhile).
func e2eSteps(cfg Config) []string {
	if cfg.E2EJumbo == 0 {
		return e2eOps
	}
	return append(slices.Clone(e2eOps), TrafficJumbo)
}

// The jumbo rows of the e2e suite: the veths at E2EJumboMTU, inner
// packets of Config.E2EJumbo bytes (E2EDefaultJumbo by default), at most
// E2EMaxJumbo so that the ESP packet (+ at most 57 bytes with
// aes128gcm16 in tunnel mode) fits the MTU.
const (
	E2EJumboMTU     = 9000
	E2EDefaultJumbo = 8900
	E2EMaxJumbo     = E2EJumboMTU - 60
	// TrafficJumbo is the Traffic of a jumbo row.
	TrafficJumbo = "jumbo"
)

// E2ETransformName is the transform of the e2e suite.
const E2ETransformName = "aes128gcm16"

// imixPattern is the IMIX of the e2e suite: 7:4:1 of 64, 576 and 1420
// byte inner IP packets (1420, not 1500, so that the ESP packet still
// fits a 1500-byte MTU), interleaved; mean 347.7 bytes.
var imixPattern = []int{64, 576, 64, 576, 64, 576, 64, 576, 64, 64, 64, 1420}

// IMIXMean is the mean inner packet size of the IMIX.
func IMIXMean() float64 {
	s := 0
	for _, n := range imixPattern {
		s += n
	}
	return float64(s) / float64(len(imixPattern))
}

// openNets are the closers of the e2e and wg suites' topologies that
// exist now, for CloseNetworks.
var openNets struct {
	sync.Mutex
	m map[*int]func() error
}

// trackNet registers close (a topology's Close) until the returned
// function is called.
func trackNet(close func() error) (untrack func()) {
	k := new(int)
	openNets.Lock()
	if openNets.m == nil {
		openNets.m = map[*int]func() error{}
	}
	openNets.m[k] = close
	openNets.Unlock()
	return func() {
		openNets.Lock()
		delete(openNets.m, k)
		openNets.Unlock()
	}
}

// CloseNetworks removes the namespaces of every e2e or wg topology that
// exists now. Safe to call from a signal handler's goroutine while a
// suite runs (the suite then fails); main calls it on SIGINT/SIGTERM.
func CloseNetworks() {
	openNets.Lock()
	fs := make([]func() error, 0, len(openNets.m))
	for _, f := range openNets.m {
		fs = append(fs, f)
	}
	openNets.Unlock()
	for _, f := range fs {
		f()
	}
}

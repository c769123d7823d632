package exampleenv

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/espxdp/espxdp/esp"
	"github.com/espxdp/espxdp/sa"
	"github.com/espxdp/espxdp/xdp"
)

func TestParseSize(t *testing.T) {
	for in, want := range map[string]int64{"1": 1, "64K": 64 << 10, "64k": 64 << 10, "8M": 8 << 20, "3m": 3 << 20} {
		if got, err := ParseSize(in); err != nil || got != want {
			t.Errorf("ParseSize(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	for _, in := range []string{"", "M", "-1", "x", "0", "1G", "8MB", " 8M", "0x10", "9999999999999999M"} {
		if _, err := ParseSize(in); err == nil {
			t.Errorf("ParseSize(%q) accepted", in)
		}
	}
}

func TestCommandMessage(t *testing.T) {
	live := context.Background()
	gone, cancel := context.WithCancel(context.Background())
	cancel()
	plain := Command{Name: "ex"}
	noted := Command{Name: "ex", Interrupted: "interrupted; everything created was removed"}
	for _, c := range []struct {
		c    Command
		ctx  context.Context
		err  error
		want string
	}{
		{plain, live, errors.New("boom"), "ex: boom"},
		{plain, live, fmt.Errorf("run: %w", ErrNeedsRoot), "run: needs root: run with sudo"},
		{plain, gone, errors.New("ping: context canceled"), "ex: interrupted: ping: context canceled"},
		{noted, live, fmt.Errorf("transfer: %w", context.Canceled), "ex: interrupted; everything created was removed"},
		{noted, gone, errors.New("x"), "ex: interrupted; everything created was removed"},
		{noted, live, context.DeadlineExceeded, "ex: context deadline exceeded"},
	} {
		if got := c.c.message(c.ctx, c.err); got != c.want {
			t.Errorf("%+v.message(%v) = %q, want %q", c.c, c.err, got, c.want)
		}
	}
}

func TestWaitUntil(t *testing.T) {
	n := 0
	if !WaitUntil(context.Background(), time.Second, func() bool { n++; return n == 3 }) || n != 3 {
		t.Errorf("WaitUntil: %d calls, want 3 and true", n)
	}
	start := time.Now()
	if WaitUntil(context.Background(), 50*time.Millisecond, func() bool { return false }) {
		t.Error("WaitUntil held for a condition that never holds")
	}
	if time.Since(start) < 50*time.Millisecond {
		t.Error("WaitUntil gave up before its deadline")
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if WaitUntil(ctx, time.Hour, func() bool { return false }) {
		t.Error("WaitUntil held after its context ended")
	}
}

func TestWaitStable(t *testing.T) {
	// A counter that moves five more times, then stops.
	v := 0
	moving := func() int {
		if v < 5 {
			v++
		}
		return v
	}
	if !WaitStable(context.Background(), 2*time.Second, time.Millisecond, 3, moving) || v != 5 {
		t.Errorf("WaitStable: false or stopped at %d, want true at 5", v)
	}
	// Three equal reads in a row are needed, not three in all.
	calls, seq := 0, []int{1, 1, 2, 2, 3, 3, 3, 3}
	got := WaitStable(context.Background(), 2*time.Second, time.Millisecond, 3, func() int {
		calls++
		return seq[min(calls-1, len(seq)-1)]
	})
	if !got || calls != 8 {
		t.Errorf("WaitStable = %v after %d reads, want true after 8", got, calls)
	}
	// Never stable: false once d has passed.
	n := 0
	if WaitStable(context.Background(), 30*time.Millisecond, time.Millisecond, 1, func() int { n++; return n }) {
		t.Error("WaitStable reported a counter that always moves as stable")
	}
}

func TestAgreement(t *testing.T) {
	var b bytes.Buffer
	a := Agreement{W: &b, Width: 10}
	a.Print("same", 7, 7)
	a.Print("differ", 7, 8)
	want := "  same              7        7  ok\n  differ            7        8  MISMATCH\n"
	if b.String() != want {
		t.Errorf("got\n%q\nwant\n%q", b.String(), want)
	}
}

func TestManualKeys(t *testing.T) {
	tr, err := esp.ParseTransform("aes256-sha256")
	if err != nil {
		t.Fatal(err)
	}
	a, b, wipe := ManualKeys(tr, 0x707, 0x808)
	for _, c := range []struct {
		cfg  sa.Config
		name string
		spi  uint32
	}{{a, "gwA-to-gwB", 0x707}, {b, "gwB-to-gwA", 0x808}} {
		if c.cfg.Name != c.name || c.cfg.SPI != c.spi || !c.cfg.ESN || len(c.cfg.Key) != tr.KeyLen() || len(c.cfg.AuthKey) != tr.AuthKeyLen() || tr.AuthKeyLen() == 0 {
			t.Fatalf("config %+v, want %s, SPI %d", c.cfg, c.name, c.spi)
		}
	}
	if bytes.Equal(a.Key, b.Key) || bytes.Equal(a.AuthKey, b.AuthKey) {
		t.Error("the two directions have the same keys")
	}
	// The gateways complete the Config into an SA.
	c := a
	c.Direction, c.Mode = sa.Out, esp.Tunnel
	c.Local, c.Remote = netip.MustParseAddr("192.0.2.1"), netip.MustParseAddr("198.51.100.1")
	s, err := sa.New(c)
	if err != nil {
		t.Fatalf("sa.New with the keys: %v", err)
	}
	s.Close()
	wipe()
	for _, k := range [][]byte{a.Key, a.AuthKey, b.Key, b.AuthKey} {
		if !bytes.Equal(k, make([]byte, len(k))) {
			t.Errorf("key % x not wiped", k)
		}
	}
}

func TestSumWorkers(t *testing.T) {
	st := xdp.EngineStats{Workers: []xdp.EngineWorkerStats{
		{CipherRX: 1, Decrypted: 2, Encrypted: 3, SADrops: 4, MTUDrops: 5, TXFull: 6, Sent: 7, SendFull: 8},
		{CipherRX: 10, Decrypted: 20, Encrypted: 30, SADrops: 40, MTUDrops: 50, TXFull: 60, Sent: 70, SendFull: 80},
	}}
	want := xdp.EngineWorkerStats{CipherRX: 11, Decrypted: 22, Encrypted: 33, SADrops: 44, MTUDrops: 55, TXFull: 66, Sent: 77, SendFull: 88}
	if got := SumWorkers(st); got != want {
		t.Errorf("SumWorkers = %+v, want %+v", got, want)
	}
}

// recorder is a testing.TB that records failures instead of failing.
type recorder struct {
	testing.TB
	errs []string
	logs []string
}

func (r *recorder) Helper()                   {}
func (r *recorder) Errorf(f string, a ...any) { r.errs = append(r.errs, fmt.Sprintf(f, a...)) }
func (r *recorder) Log(a ...any)              { r.logs = append(r.logs, fmt.Sprint(a...)) }

func TestCheckSAPair(t *testing.T) {
	out := sa.Stats{Name: "out", EncapsPkts: 10, EncapsBytes: 1000}
	in := sa.Stats{Name: "in", DecapsPkts: 10, DecapsBytes: 1000}
	for _, c := range []struct {
		name      string
		out, in   sa.Stats
		wireDrops uint64
		fails     int
	}{
		{"agree", out, in, 0, 0},
		{"dropped on the wire", out, sa.Stats{Name: "in", DecapsPkts: 8, DecapsBytes: 800}, 2, 0},
		{"packets differ", out, sa.Stats{Name: "in", DecapsPkts: 9, DecapsBytes: 1000}, 0, 1},
		{"bytes differ", out, sa.Stats{Name: "in", DecapsPkts: 10, DecapsBytes: 999}, 0, 1},
		{"nothing sent", sa.Stats{}, sa.Stats{}, 0, 1},
		{"auth drops", out, func() sa.Stats { s := in; s.Drops[sa.DropAuth] = 1; return s }(), 0, 1},
		{"replay and policy drops", func() sa.Stats { s := out; s.Drops[sa.DropPolicy] = 1; return s }(),
			func() sa.Stats { s := in; s.Drops[sa.DropReplay] = 2; return s }(), 0, 2},
	} {
		r := &recorder{TB: t}
		CheckSAPair(r, c.name, c.out, c.in, c.wireDrops)
		if len(r.errs) != c.fails {
			t.Errorf("%s: %d failures %q, want %d", c.name, len(r.errs), r.errs, c.fails)
		}
	}
	r := &recorder{TB: t}
	CheckEqual(r, "a vs b", 1, 1)
	CheckEqual(r, "c vs d", 1, 2)
	if len(r.errs) != 1 || r.errs[0] != "c vs d: 1 != 2" {
		t.Errorf("CheckEqual failures %q", r.errs)
	}
}

func TestLogWriter(t *testing.T) {
	r := &recorder{TB: t}
	w := LogWriter(r)
	fmt.Fprint(w, "one\ntw")
	fmt.Fprint(w, "o\n\nthree")
	if want := []string{"one", "two", ""}; strings.Join(r.logs, "|") != strings.Join(want, "|") {
		t.Errorf("logged %q, want %q", r.logs, want)
	}
	fmt.Fprint(w, "\n")
	if r.logs[len(r.logs)-1] != "three" {
		t.Errorf("logged %q, want the held partial line last", r.logs)
	}
}

func TestParseWorkload(t *testing.T) {
	tr, err := ParseWorkload("aes128gcm16", 1, 1)
	if err != nil || tr.String() == "" {
		t.Errorf("ParseWorkload: %v, %v", tr, err)
	}
	for _, c := range []struct {
		transform   string
		pings       int
		size        int64
		errContains string
	}{{"rot13", 1, 1, ""}, {"aes128gcm16", 0, 1, "one ping"}, {"aes128gcm16", 1, 0, "one byte"}} {
		if _, err := ParseWorkload(c.transform, c.pings, c.size); err == nil || !strings.Contains(err.Error(), c.errContains) {
			t.Errorf("ParseWorkload(%q, %d, %d) = %v", c.transform, c.pings, c.size, err)
		}
	}
}

func TestWorkload(t *testing.T) {
	tr, timeout, err := Workload{Transform: "aes256gcm16", Pings: 1, Size: 1}.Parse()
	if err != nil || tr.String() == "" || timeout != time.Minute {
		t.Errorf("Parse without a timeout: %v, %v, %v; want a minute", tr, timeout, err)
	}
	if _, timeout, err := (Workload{Transform: "aes256gcm16", Pings: 1, Size: 1, Timeout: time.Second}).Parse(); err != nil || timeout != time.Second {
		t.Errorf("Parse with a timeout: %v, %v", timeout, err)
	}
	for _, w := range []Workload{{Transform: "rot13", Pings: 1, Size: 1}, {Transform: "aes256gcm16", Size: 1}, {Transform: "aes256gcm16", Pings: 1}} {
		if _, _, err := w.Parse(); err == nil {
			t.Errorf("Parse(%+v) accepted", w)
		}
	}
}

func TestWorkloadFlags(t *testing.T) {
	var w Workload
	fs := flag.NewFlagSet("x", flag.ContinueOnError)
	w.RegisterFlags(fs, "echo requests")
	want := Workload{Transform: "aes256gcm16", Pings: 5, Size: 8 << 20, Timeout: time.Minute}
	if w != want {
		t.Errorf("defaults %+v, want %+v", w, want)
	}
	if fs.Lookup("pings").Usage != "echo requests" {
		t.Errorf("-pings usage %q", fs.Lookup("pings").Usage)
	}
	if err := fs.Parse([]string{"-transform", "aes128gcm16", "-pings", "2", "-size", "100", "-timeout", "3s"}); err != nil {
		t.Fatal(err)
	}
	want = Workload{Transform: "aes128gcm16", Pings: 2, Size: 100, Timeout: 3 * time.Second}
	if w != want {
		t.Errorf("parsed %+v, want %+v", w, want)
	}
}

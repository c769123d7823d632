package main

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/espxdp/espxdp/internal/gateway"
	"github.com/espxdp/espxdp/sa"
	"github.com/espxdp/espxdp/xdp"
)

// snapshot is one reading of a gateway's counters.
type snapshot struct {
	At    time.Time
	SAs   []sa.Stats
	Stats gateway.Stats
}

// saRate is one SA's rates over an interval.
type saRate struct {
	Name      string       `json:"name"`
	SPI       uint32       `json:"spi"`
	Direction sa.Direction `json:"direction"`
	State     sa.State     `json:"state"`
	// Packets and bits per second: encapsulated (outbound) or
	// decapsulated (inbound).
	PktsPerSec float64 `json:"pkts_per_sec"`
	BitsPerSec float64 `json:"bits_per_sec"`
	// DropsPerSec is the sum of DropsByReason.
	DropsPerSec   float64            `json:"drops_per_sec"`
	DropsByReason map[string]float64 `json:"drops_per_sec_by_reason,omitempty"`
	// Packets and bytes counted since the SA was installed.
	Pkts  uint64 `json:"pkts"`
	Bytes uint64 `json:"bytes"`
	// HardRemaining is the hard lifetime left (-1: unlimited).
	HardRemaining sa.Remaining `json:"hard_remaining"`
}

// workerRate is one engine worker's rates over an interval.
type workerRate struct {
	// Worker is the engine worker; Queue the queue it transmits on
	// (with gateway.steering spi or spread it receives on every queue).
	Worker         int     `json:"worker"`
	Queue          int     `json:"queue"`
	CipherRXPerSec float64 `json:"cipher_rx_per_sec"`
	PlainRXPerSec  float64 `json:"plain_rx_per_sec"`
	EncryptedPerS  float64 `json:"encrypted_per_sec"`
	DecryptedPerS  float64 `json:"decrypted_per_sec"`
	// DropsPerSec: the worker's drops of every kind (SA processor, TX
	// ring full, TTL expired, not IP, no room, control dropped).
	DropsPerSec  float64 `json:"drops_per_sec"`
	TXFullPerSec float64 `json:"tx_full_per_sec"`
}

// rates are the rates between two snapshots.
type rates struct {
	Time     time.Time          `json:"time"`
	Interval float64            `json:"interval_s"`
	SAs      []saRate           `json:"sas"`
	Workers  []workerRate       `json:"workers"`
	Drops    map[string]float64 `json:"processor_drops_per_sec_by_reason,omitempty"`
}

// delta is cur-prev for a counter; a counter that went back (the SA was
// replaced, the gateway restarted) counts from zero.
func delta(prev, cur uint64) uint64 {
	if cur < prev {
		return cur
	}
	return cur - prev
}

// saKey identifies an SA across snapshots.
type saKey struct {
	dir sa.Direction
	spi uint32
}

// computeRates returns the rates from prev to cur, the busiest SAs (by
// packets/s, then bits/s, then drops/s) first. An SA missing from prev
// counts from zero (it was added during the interval); a zero or negative
// interval gives zero rates.
func computeRates(prev, cur snapshot) rates {
	secs := cur.At.Sub(prev.At).Seconds()
	per := func(d uint64) float64 {
		if secs <= 0 {
			return 0
		}
		return float64(d) / secs
	}
	r := rates{Time: cur.At, Interval: secs}
	before := make(map[saKey]*sa.Stats, len(prev.SAs))
	for i := range prev.SAs {
		s := &prev.SAs[i]
		before[saKey{s.Direction, s.SPI}] = s
	}
	for i := range cur.SAs {
		c := &cur.SAs[i]
		p := before[saKey{c.Direction, c.SPI}]
		if p == nil {
			p = &sa.Stats{}
		}
		pk, by, ppk, pby := c.EncapsPkts, c.EncapsBytes, p.EncapsPkts, p.EncapsBytes
		if c.Direction == sa.In {
			pk, by, ppk, pby = c.DecapsPkts, c.DecapsBytes, p.DecapsPkts, p.DecapsBytes
		}
		sr := saRate{Name: c.Name, SPI: c.SPI, Direction: c.Direction, State: c.State,
			PktsPerSec: per(delta(ppk, pk)), BitsPerSec: 8 * per(delta(pby, by)),
			Pkts: pk, Bytes: by, HardRemaining: c.HardRemaining}
		sr.DropsByReason = dropRates(&p.Drops, &c.Drops, per)
		for _, v := range sr.DropsByReason {
			sr.DropsPerSec += v
		}
		r.SAs = append(r.SAs, sr)
	}
	slices.SortStableFunc(r.SAs, func(a, b saRate) int {
		if c := cmp.Compare(b.PktsPerSec, a.PktsPerSec); c != 0 {
			return c
		}
		if c := cmp.Compare(b.BitsPerSec, a.BitsPerSec); c != 0 {
			return c
		}
		return cmp.Compare(b.DropsPerSec, a.DropsPerSec)
	})
	pw := map[int]int{}
	for i, w := range prev.Stats.Engine.Workers {
		pw[w.Worker] = i
	}
	for _, w := range cur.Stats.Engine.Workers {
		p := xdp.EngineWorkerStats{Worker: w.Worker, Queue: w.Queue}
		if i, ok := pw[w.Worker]; ok {
			p = prev.Stats.Engine.Workers[i]
		}
		cd, pd := workerDrops(&w), workerDrops(&p)
		r.Workers = append(r.Workers, workerRate{Worker: w.Worker, Queue: w.Queue,
			CipherRXPerSec: per(delta(p.CipherRX, w.CipherRX)), PlainRXPerSec: per(delta(p.PlainRX, w.PlainRX)),
			EncryptedPerS: per(delta(p.Encrypted, w.Encrypted)), DecryptedPerS: per(delta(p.Decrypted, w.Decrypted)),
			DropsPerSec: per(delta(pd, cd)), TXFullPerSec: per(delta(p.TXFull, w.TXFull))})
	}
	r.Drops = dropRates(&prev.Stats.Processor.Drops, &cur.Stats.Processor.Drops, per)
	return r
}

// workerDrops is the sum of a worker's drops of every kind.
func workerDrops(w *xdp.EngineWorkerStats) uint64 {
	return w.SADrops + w.TXFull + w.TTLExpired + w.NotIP + w.NoRoom + w.ControlDropped
}

// dropRates returns the non-zero drop rates by reason name.
func dropRates(prev, cur *sa.DropCounts, per func(uint64) float64) map[string]float64 {
	var m map[string]float64
	for r := sa.DropReason(1); r < sa.NumDropReasons; r++ {
		if d := delta(prev[r], cur[r]); d > 0 {
			if m == nil {
				m = map[string]float64{}
			}
			m[r.String()] = per(d)
		}
	}
	return m
}

// human formats x with an SI prefix ("1.23M").
func human(x float64) string {
	switch {
	case x >= 1e9:
		return fmt.Sprintf("%.2fG", x/1e9)
	case x >= 1e6:
		return fmt.Sprintf("%.2fM", x/1e6)
	case x >= 1e3:
		return fmt.Sprintf("%.2fk", x/1e3)
	}
	return fmt.Sprintf("%.1f", x)
}

// lifetimeText is an SA's hard lifetime left, e.g. "3540s 4.90MB".
func lifetimeText(r sa.Remaining) string {
	var parts []string
	if r.Seconds >= 0 {
		parts = append(parts, fmt.Sprintf("%ds", r.Seconds))
	}
	if r.Bytes >= 0 {
		parts = append(parts, human(float64(r.Bytes))+"B")
	}
	if r.Packets >= 0 {
		parts = append(parts, human(float64(r.Packets))+"pkts")
	}
	if len(parts) == 0 {
		return "unlimited"
	}
	return strings.Join(parts, " ")
}

// writeRatesText prints r as a table, at most maxSAs SAs (0: all).
func writeRatesText(w io.Writer, title string, r rates, maxSAs int) {
	fmt.Fprintf(w, "%s  %s  every %.1fs\n\n", title, r.Time.Format("15:04:05"), r.Interval)
	fmt.Fprintf(w, "%-20s %-3s %-10s %-12s %10s %10s %9s  %s\n", "SA", "DIR", "SPI", "STATE", "PKTS/S", "BITS/S", "DROPS/S", "HARD LIFETIME LEFT")
	for i, s := range r.SAs {
		if maxSAs > 0 && i == maxSAs {
			fmt.Fprintf(w, "... %d more SAs\n", len(r.SAs)-maxSAs)
			break
		}
		fmt.Fprintf(w, "%-20s %-3s 0x%08x %-12s %10s %10s %9s  %s\n", trunc(s.Name, 20), s.Direction, s.SPI, s.State,
			human(s.PktsPerSec), human(s.BitsPerSec), human(s.DropsPerSec), lifetimeText(s.HardRemaining))
		if len(s.DropsByReason) > 0 {
			fmt.Fprintf(w, "%-20s drops/s: %s\n", "", reasonsText(s.DropsByReason))
		}
	}
	if len(r.Workers) > 0 {
		fmt.Fprintf(w, "\n%-6s %-5s %12s %12s %12s %12s %9s %9s\n", "WORKER", "QUEUE", "CIPHER RX/S", "PLAIN RX/S", "ENCRYPTED/S", "DECRYPTED/S", "DROPS/S", "TXFULL/S")
		for _, q := range r.Workers {
			fmt.Fprintf(w, "%-6d %-5d %12s %12s %12s %12s %9s %9s\n", q.Worker, q.Queue, human(q.CipherRXPerSec), human(q.PlainRXPerSec),
				human(q.EncryptedPerS), human(q.DecryptedPerS), human(q.DropsPerSec), human(q.TXFullPerSec))
		}
	}
	if len(r.Drops) > 0 {
		fmt.Fprintf(w, "\nprocessor drops/s: %s\n", reasonsText(r.Drops))
	}
}

func trunc(s string, n int) string {
	if len(s) > n {
		return s[:n-1] + "~"
	}
	return s
}

// reasonsText is "replay 3.0, auth 1.0", largest first.
func reasonsText(m map[string]float64) string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.SortFunc(keys, func(a, b string) int {
		if c := cmp.Compare(m[b], m[a]); c != 0 {
			return c
		}
		return strings.Compare(a, b)
	})
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = k + " " + human(m[k])
	}
	return strings.Join(parts, ", ")
}

// isTerminal reports whether w is a character device (a terminal).
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	fi, err := f.Stat()
	return err == nil && fi.Mode()&os.ModeCharDevice != 0
}

// watchOptions are the flags of show sa --watch.
type watchOptions struct {
	interval time.Duration
	count    int // intervals to print; 0: until ctx ends
	json     bool
	title    string
	clear    bool // clear the screen before each table (a terminal)
}

// clearScreen moves the cursor home and clears the screen (ANSI).
const clearScreen = "\x1b[H\x1b[2J"

// watch prints the rates between successive snapshots from fetch every
// interval until ctx ends or count intervals were printed.
func watch(ctx context.Context, w io.Writer, o watchOptions, fetch func() (snapshot, error)) error {
	if o.interval <= 0 {
		return usagef("--interval must be positive")
	}
	prev, err := fetch()
	if err != nil {
		return err
	}
	tick := time.NewTicker(o.interval)
	defer tick.Stop()
	enc := json.NewEncoder(w)
	for n := 0; o.count == 0 || n < o.count; n++ {
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
		}
		cur, err := fetch()
		if err != nil {
			return err
		}
		r := computeRates(prev, cur)
		prev = cur
		if o.json {
			if err := enc.Encode(r); err != nil {
				return err
			}
			continue
		}
		var b strings.Builder
		if o.clear {
			b.WriteString(clearScreen)
		} else if n > 0 {
			b.WriteString("\n")
		}
		writeRatesText(&b, o.title, r, 0)
		if _, err := io.WriteString(w, b.String()); err != nil {
			return err
		}
	}
	return nil
}

// fetchSnapshot reads a running gateway's counters.
func fetchSnapshot(socket string, timeout time.Duration) (snapshot, error) {
	resp, err := callGateway(socket, gateway.Request{Cmd: "show-sa"}, timeout)
	if err != nil {
		return snapshot{}, err
	}
	sres, err := callGateway(socket, gateway.Request{Cmd: "show-stats"}, timeout)
	if err != nil {
		return snapshot{}, err
	}
	if sres.Stats == nil {
		return snapshot{}, errors.New("show-stats: empty response")
	}
	return snapshot{At: time.Now(), SAs: resp.SAs, Stats: *sres.Stats}, nil
}

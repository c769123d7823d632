package exampleenv

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"math"
	"os"
	"os/signal"
	"strconv"
	"syscall"
	"time"

	"github.com/espxdp/espxdp/esp"
)

// ErrNeedsRoot is returned by CheckRoot when the process is not root.
var ErrNeedsRoot = errors.New("needs root: run with sudo")

// CheckRoot returns ErrNeedsRoot unless the process runs as root.
func CheckRoot() error {
	if os.Geteuid() != 0 {
		return ErrNeedsRoot
	}
	return nil
}

// Command describes an example's command line for Main.
type Command struct {
	// Name prefixes every message ("site-to-site: ...").
	Name string
	// RootFor, when set, makes Main refuse to start without root,
	// printing "NAME: needs root (ROOTFOR): run with sudo". Leave it
	// empty when the run checks root itself (CheckRoot).
	RootFor string
	// Interrupted, when set, replaces the error of a run that Ctrl-C or
	// SIGTERM ended ("NAME: INTERRUPTED"); otherwise it is reported as
	// "NAME: interrupted: ERR".
	Interrupted string
}

// Main runs fn with a context that Ctrl-C and SIGTERM cancel (fn's
// deferred cleanups then remove what it made), and exits with status 1
// and a message on standard error if fn fails. ErrNeedsRoot is printed
// as it is.
func Main(c Command, fn func(ctx context.Context) error) {
	if c.RootFor != "" && os.Geteuid() != 0 {
		fmt.Fprintf(os.Stderr, "%s: needs root (%s): run with sudo\n", c.Name, c.RootFor)
		os.Exit(1)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := fn(ctx); err != nil {
		fmt.Fprintln(os.Stderr, c.message(ctx, err))
		stop()
		os.Exit(1)
	}
}

// message is what Main prints for a failed run; ctx is the signal
// context.
func (c Command) message(ctx context.Context, err error) string {
	switch {
	case errors.Is(err, ErrNeedsRoot):
		return err.Error()
	case ctx.Err() != nil || errors.Is(err, context.Canceled):
		if c.Interrupted != "" {
			return c.Name + ": " + c.Interrupted
		}
		return fmt.Sprintf("%s: interrupted: %v", c.Name, err)
	default:
		return c.Name + ": " + err.Error()
	}
}

// ParseSize reads a byte count: "123", "64K" or "8M" (k and m too), a
// decimal number of at least 1 with nothing after the suffix.
func ParseSize(s string) (int64, error) {
	mult := int64(1)
	switch {
	case len(s) > 0 && (s[len(s)-1] == 'K' || s[len(s)-1] == 'k'):
		mult, s = 1<<10, s[:len(s)-1]
	case len(s) > 0 && (s[len(s)-1] == 'M' || s[len(s)-1] == 'm'):
		mult, s = 1<<20, s[:len(s)-1]
	}
	v, err := strconv.ParseInt(s, 10, 64)
	if err != nil || v < 1 || v > math.MaxInt64/mult {
		return 0, fmt.Errorf("bad size %q", s)
	}
	return v * mult, nil
}

// Workload is what a run sends and how long it may take: the options
// of the site-to-site and policy-based examples.
type Workload struct {
	Transform string        // ESP transform, e.g. "aes256gcm16"
	Pings     int           // echo requests per demonstration
	Size      int64         // bytes of the TCP transfer hostA → hostB
	Timeout   time.Duration // bound of the whole run (0: a minute)
}

// RegisterFlags registers -transform, -pings (described by
// pingsUsage), -size and -timeout on fs (flag.CommandLine in a main).
func (w *Workload) RegisterFlags(fs *flag.FlagSet, pingsUsage string) {
	fs.StringVar(&w.Transform, "transform", "aes256gcm16", "ESP transform (e.g. aes256gcm16, aes128gcm16, chacha20poly1305, aes256-sha256)")
	fs.IntVar(&w.Pings, "pings", 5, pingsUsage)
	fs.Int64Var(&w.Size, "size", 8<<20, "bytes of the TCP transfer from hostA to hostB")
	fs.DurationVar(&w.Timeout, "timeout", time.Minute, "bound of the whole run")
}

// Parse parses the transform and checks that there is at least one
// ping and one byte to send; it returns the transform and the run's
// time bound.
func (w Workload) Parse() (esp.Transform, time.Duration, error) {
	tr, err := ParseWorkload(w.Transform, w.Pings, w.Size)
	if err != nil {
		return tr, 0, err
	}
	if w.Timeout <= 0 {
		return tr, time.Minute, nil
	}
	return tr, w.Timeout, nil
}

// ParseWorkload parses an ESP transform name and checks that a run has
// at least one ping and one byte to send.
func ParseWorkload(transform string, pings int, size int64) (esp.Transform, error) {
	tr, err := esp.ParseTransform(transform)
	if err != nil {
		return tr, err
	}
	if pings < 1 || size < 1 {
		return tr, fmt.Errorf("need at least one ping and one byte")
	}
	return tr, nil
}

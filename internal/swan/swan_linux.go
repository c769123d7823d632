//go:build linux

package swan

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/espxdp/espxdp/internal/testenv"
)

// CharonPath is where Debian installs charon.
const CharonPath = "/usr/lib/ipsec/charon"

// Errors of a running Charon.
var (
	// ErrExited is returned when charon is no longer running.
	ErrExited = errors.New("swan: charon exited")
	// ErrNoChild is returned by WaitChild when no child SA of that name
	// was installed in time.
	ErrNoChild = errors.New("swan: no installed child SA")
)

// Charon is one charon process in a network namespace.
type Charon struct {
	// NS is the network namespace's name (ip netns).
	NS      string
	dir     string
	tmp     bool // dir is ours to remove
	uri     string
	logPath string
	outPath string
	swanctl string
	cmd     *exec.Cmd
	done    chan struct{}
	waitErr error
	stop    sync.Once
}

// Start runs charon in the network namespace ns (a name as ip netns
// knows it) and waits until its vici socket answers, at most until ctx
// ends. The caller must Stop (or Kill) it.
func Start(ctx context.Context, ns string, o Options) (_ *Charon, err error) {
	charon := o.Charon
	if charon == "" {
		charon = CharonPath
	}
	c := &Charon{NS: ns, dir: o.Dir, swanctl: o.Swanctl, done: make(chan struct{})}
	if c.swanctl == "" {
		c.swanctl = "swanctl"
	}
	if c.dir == "" {
		if c.dir, err = os.MkdirTemp("", "swan"); err != nil {
			return nil, fmt.Errorf("swan: %w", err)
		}
		c.tmp = true
	}
	defer func() {
		if err != nil && c.tmp {
			os.RemoveAll(c.dir)
		}
	}()
	// Unix socket paths are limited to 108 bytes.
	c.uri = "unix://" + filepath.Join(c.dir, "charon.vici")
	c.logPath = filepath.Join(c.dir, "charon.log")
	c.outPath = filepath.Join(c.dir, "charon.out")
	run := filepath.Join(c.dir, "run")
	if err := os.MkdirAll(run, 0o755); err != nil {
		return nil, fmt.Errorf("swan: %w", err)
	}
	conf := filepath.Join(c.dir, "strongswan.conf")
	if err := os.WriteFile(conf, []byte(StrongswanConf(o, strings.TrimPrefix(c.uri, "unix://"), c.logPath)), 0o600); err != nil {
		return nil, fmt.Errorf("swan: %w", err)
	}
	out, err := os.Create(c.outPath)
	if err != nil {
		return nil, fmt.Errorf("swan: %w", err)
	}
	// ip netns exec and unshare exec (no fork), and so does sh: the
	// process started is charon itself (Pid, CPUTime). The private
	// mount namespace gives charon a /run of its own for its pid file.
	cmd := exec.Command("ip", "netns", "exec", ns, "unshare", "-m", "sh", "-c",
		`mount --bind "$1" /run && exec "$2"`, "sh", run, charon)
	cmd.Env = append(os.Environ(), "STRONGSWAN_CONF="+conf)
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		out.Close()
		return nil, fmt.Errorf("swan: start charon: %w", err)
	}
	c.cmd = cmd
	go func() {
		c.waitErr = cmd.Wait()
		out.Close()
		close(c.done)
	}()
	for {
		if c.exited() {
			return nil, fmt.Errorf("%w at start: %v: %s", ErrExited, c.waitErr, c.output())
		}
		sctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		_, err := c.Swanctl(sctx, "--stats")
		cancel()
		if err == nil {
			return c, nil
		}
		select {
		case <-ctx.Done():
			c.Kill()
			return nil, fmt.Errorf("swan: charon's vici socket did not come up: %w (%v)", ctx.Err(), err)
		case <-c.done:
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// StartTest is Start for a test: it skips (or in CI fails) t unless the
// process is privileged and charon, swanctl and ip are there, fails t
// when charon does not start within 15 s, stops charon when t ends and
// then logs charon's log if t failed.
func StartTest(t testing.TB, ns string, o Options) *Charon {
	t.Helper()
	Require(t)
	if o.Dir == "" {
		o.Dir = t.TempDir()
	}
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	c, err := Start(ctx, ns, o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		c.Stop()
		if t.Failed() {
			t.Logf("charon in %s, log:\n%s\n%s", ns, c.Log(), c.output())
		}
	})
	return c
}

// Require skips t (or fails it in CI) unless charon can run here: root
// privileges, charon, swanctl and ip.
func Require(t testing.TB) {
	t.Helper()
	testenv.RequirePrivileged(t)
	testenv.RequireCommand(t, "ip")
	testenv.RequireCommand(t, "swanctl")
	testenv.RequireCommand(t, "/usr/lib/ipsec/charon")
}

func (c *Charon) exited() bool {
	select {
	case <-c.done:
		return true
	default:
		return false
	}
}

func (c *Charon) output() string {
	b, _ := os.ReadFile(c.outPath)
	return string(b)
}

// Dir is charon's directory.
func (c *Charon) Dir() string { return c.dir }

// LogPath is the path of charon's log file.
func (c *Charon) LogPath() string { return c.logPath }

// Log returns charon's log so far.
func (c *Charon) Log() string {
	b, _ := os.ReadFile(c.logPath)
	return string(b)
}

// Pid is charon's process id.
func (c *Charon) Pid() int { return c.cmd.Process.Pid }

// Done is closed when charon has exited.
func (c *Charon) Done() <-chan struct{} { return c.done }

// CPUTime returns the CPU time (user plus system, all threads) charon
// has used so far, from /proc/PID/stat.
func (c *Charon) CPUTime() (time.Duration, error) {
	if c.exited() {
		return 0, ErrExited
	}
	return ProcessCPUTime(c.Pid())
}

// clockTicks is USER_HZ, the unit of /proc/PID/stat's times: 100 on
// every Linux architecture Go supports.
const clockTicks = 100

// ProcessCPUTime returns the user plus system CPU time of process pid
// (all its threads) from /proc/PID/stat.
func ProcessCPUTime(pid int) (time.Duration, error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0, fmt.Errorf("swan: %w", err)
	}
	return parseStatCPU(string(b))
}

// TaskCPUTime returns the user plus system CPU time of thread tid of
// process pid, from /proc/PID/task/TID/stat.
func TaskCPUTime(pid, tid int) (time.Duration, error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/task/" + strconv.Itoa(tid) + "/stat")
	if err != nil {
		return 0, fmt.Errorf("swan: %w", err)
	}
	return parseStatCPU(string(b))
}

// parseStatCPU reads utime and stime (fields 14 and 15) of a
// /proc/PID/stat line; the command name (field 2) may contain spaces
// and parentheses, so fields are counted after its last ')'.
func parseStatCPU(s string) (time.Duration, error) {
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return 0, fmt.Errorf("swan: malformed /proc stat %q", s)
	}
	f := strings.Fields(s[i+1:])
	// f[0] is field 3 (state): utime is field 14, f[11].
	if len(f) < 13 {
		return 0, fmt.Errorf("swan: short /proc stat %q", s)
	}
	var ticks uint64
	for _, x := range f[11:13] {
		n, err := strconv.ParseUint(x, 10, 64)
		if err != nil {
			return 0, fmt.Errorf("swan: /proc stat: %w", err)
		}
		ticks += n
	}
	return time.Duration(ticks) * time.Second / clockTicks, nil
}

// Swanctl runs swanctl with args against this charon's vici socket and
// returns its combined output.
func (c *Charon) Swanctl(ctx context.Context, args ...string) (string, error) {
	args = append(args, "--uri", c.uri)
	out, err := exec.CommandContext(ctx, c.swanctl, args...).CombinedOutput()
	if err != nil {
		if c.exited() {
			return string(out), fmt.Errorf("%w: swanctl %s: %v: %s", ErrExited, args[0], err, out)
		}
		return string(out), fmt.Errorf("swan: swanctl %s: %w: %s", strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return string(out), nil
}

// Load writes the connections (and their secrets) to swanctl.conf in
// charon's directory and loads them (swanctl --load-all), replacing
// what was loaded before.
func (c *Charon) Load(conns ...Conn) error {
	text, err := SwanctlConf(conns...)
	if err != nil {
		return err
	}
	file := filepath.Join(c.dir, "swanctl.conf")
	if err := os.WriteFile(file, []byte(text), 0o600); err != nil {
		return fmt.Errorf("swan: %w", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, err = c.Swanctl(ctx, "--load-all", "--file", file)
	return err
}

// Initiate brings up the child SA named child (and its IKE SA) and
// waits for the result, at most until ctx ends.
func (c *Charon) Initiate(ctx context.Context, child string) error {
	_, err := c.Swanctl(ctx, append([]string{"--initiate", "--child", child}, timeoutArg(ctx)...)...)
	return err
}

// Terminate deletes the IKE SA named ike (with its children) and waits
// for the peer's answer, at most until ctx ends.
func (c *Charon) Terminate(ctx context.Context, ike string) error {
	_, err := c.Swanctl(ctx, append([]string{"--terminate", "--ike", ike}, timeoutArg(ctx)...)...)
	return err
}

// Rekey starts a rekeying of the child SA named child; it does not wait
// for the new one (see WaitChild).
func (c *Charon) Rekey(ctx context.Context, child string) error {
	_, err := c.Swanctl(ctx, "--rekey", "--child", child)
	return err
}

// RekeyIKE starts a rekeying of the IKE SA named ike.
func (c *Charon) RekeyIKE(ctx context.Context, ike string) error {
	_, err := c.Swanctl(ctx, "--rekey", "--ike", ike)
	return err
}

// timeoutArg gives swanctl a --timeout (whole seconds) a little shorter
// than ctx's deadline, so that swanctl reports its own error first.
func timeoutArg(ctx context.Context) []string {
	d, ok := ctx.Deadline()
	if !ok {
		return nil
	}
	s := int(time.Until(d).Seconds()) - 1
	return []string{"--timeout", strconv.Itoa(max(s, 1))}
}

// ListSAs returns charon's IKE SAs with their child SAs (swanctl
// --list-sas --raw, parsed by ParseSAs).
func (c *Charon) ListSAs(ctx context.Context) ([]IKESA, error) {
	out, err := c.Swanctl(ctx, "--list-sas", "--raw")
	if err != nil {
		return nil, err
	}
	return ParseSAs(out)
}

// WaitChild polls ListSAs until a child SA named child is INSTALLED
// under an ESTABLISHED IKE SA, and not one of the excluded inbound SPIs
// (to wait for a rekeyed successor), and returns it.
func (c *Charon) WaitChild(ctx context.Context, child string, exclude ...uint32) (ChildSA, error) {
	for {
		sas, err := c.ListSAs(ctx)
		if err == nil {
			for _, ike := range sas {
				if ike.State != "ESTABLISHED" {
					continue
				}
				for _, ch := range ike.Children {
					if ch.Name == child && ch.State == "INSTALLED" && !contains(exclude, ch.SPIIn) {
						return ch, nil
					}
				}
			}
		} else if errors.Is(err, ErrExited) {
			return ChildSA{}, err
		}
		select {
		case <-ctx.Done():
			return ChildSA{}, fmt.Errorf("%w named %q: %v", ErrNoChild, child, ctx.Err())
		case <-time.After(20 * time.Millisecond):
		}
	}
}

func contains(s []uint32, v uint32) bool {
	for _, x := range s {
		if x == v {
			return true
		}
	}
	return false
}

// Stop ends charon with SIGTERM (it deletes its IKE SAs with their
// peers first), or SIGKILL after 5 s, and removes its directory if
// Start made it. It may be called more than once.
func (c *Charon) Stop() error { return c.end(syscall.SIGTERM, 5*time.Second) }

// Kill ends charon with SIGKILL at once, as a crash would: the peer is
// not told. It may be called more than once.
func (c *Charon) Kill() error { return c.end(syscall.SIGKILL, 0) }

func (c *Charon) end(sig syscall.Signal, grace time.Duration) error {
	var err error
	c.stop.Do(func() {
		if !c.exited() {
			c.cmd.Process.Signal(sig)
			select {
			case <-c.done:
			case <-time.After(grace + time.Second):
				c.cmd.Process.Kill()
				<-c.done
				err = fmt.Errorf("swan: charon ignored %v for %v, killed", sig, grace+time.Second)
			}
		}
		if c.tmp {
			os.RemoveAll(c.dir)
		}
	})
	return err
}

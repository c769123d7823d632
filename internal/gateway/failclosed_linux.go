//go:build linux

package gateway

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os/exec"
	"strings"

	"github.com/vishvananda/netlink"

	"github.com/espxdp/espxdp/internal/config"
	"github.com/espxdp/espxdp/internal/topo"
)

// ErrFailClosed: the fail-closed nftables table could not be installed,
// removed or read.
var ErrFailClosed = errors.New("gateway: fail-closed table")

// nft runs nft(8) with script on standard input, in the network
// namespace netns (a path; "" for the caller's).
//
// The nft command rather than a netlink library: its script format
// gives a whole table replacement as one kernel transaction with the
// standard create/delete/create idiom, the same text an operator reads
// with "nft list table", and no new module dependency; nftables is a
// package CI installs anyway.
func nft(netns, script string, args ...string) ([]byte, error) {
	var out []byte
	run := func() error {
		var stderr bytes.Buffer
		cmd := exec.Command("nft", args...)
		if script != "" {
			cmd.Stdin = strings.NewReader(script)
		}
		cmd.Stderr = &stderr
		o, err := cmd.Output()
		if errors.Is(err, exec.ErrNotFound) {
			return fmt.Errorf("%w: the nft command (Debian package nftables) is needed; install it, or set gateway.fail_closed: false to run without the table", ErrFailClosed)
		}
		if err != nil {
			return fmt.Errorf("%w: nft %s: %v: %s", ErrFailClosed, strings.Join(args, " "), err, bytes.TrimSpace(stderr.Bytes()))
		}
		out = o
		return nil
	}
	if netns == "" {
		return out, run()
	}
	return out, topo.Do(netns, run)
}

// InstallFailClosed creates or atomically replaces the gateway's
// fail-closed table (FailClosedTable) in the network namespace netns.
// With a cipher VLAN, the VLAN devices on the cipher interface with that
// VLAN ID in netns are matched too (see FailClosedRuleset).
func InstallFailClosed(g *config.Gateway, netns string) error {
	var devs []string
	if g.Cipher.VLAN != 0 {
		find := func() error {
			devs = vlanDevices(g.Cipher.Name, g.Cipher.VLAN)
			return nil
		}
		if netns == "" {
			_ = find()
		} else if err := topo.Do(netns, find); err != nil {
			return fmt.Errorf("%w: %v", ErrFailClosed, err)
		}
	}
	script, err := failClosedRuleset(g, devs)
	if err != nil {
		return err
	}
	_, err = nft(netns, script, "-f", "-")
	return err
}

// RemoveFailClosed deletes the gateway's fail-closed table from netns, if
// it exists. Nothing else is touched.
func RemoveFailClosed(g *config.Gateway, netns string) error {
	_, err := nft(netns, removeScript(FailClosedTable(g)), "-f", "-")
	return err
}

// FailClosedCounters returns the packets the fail-closed table dropped
// arriving from the cipher interface (in) and leaving through it (out).
func FailClosedCounters(g *config.Gateway, netns string) (in, out uint64, err error) {
	b, err := nft(netns, "", "-j", "list", "counters", "table", "inet", FailClosedTable(g))
	if err != nil {
		return 0, 0, err
	}
	var doc struct {
		Nftables []struct {
			Counter *struct {
				Name    string `json:"name"`
				Packets uint64 `json:"packets"`
			} `json:"counter"`
		} `json:"nftables"`
	}
	if err := json.Unmarshal(b, &doc); err != nil {
		return 0, 0, fmt.Errorf("%w: nft -j: %v", ErrFailClosed, err)
	}
	for _, o := range doc.Nftables {
		switch {
		case o.Counter == nil:
		case o.Counter.Name == counterIn:
			in = o.Counter.Packets
		case o.Counter.Name == counterOut:
			out = o.Counter.Packets
		}
	}
	return in, out, nil
}

// applyFailClosed installs the table, or removes it with fail_closed:
// false (called by Start before the engine runs).
func (gw *Gateway) applyFailClosed() error {
	if !gw.g.FailClosed {
		// Without nft there is no table of ours to remove.
		if _, err := exec.LookPath("nft"); err == nil {
			if err := RemoveFailClosed(gw.g, gw.opts.NetNS); err != nil {
				return err
			}
		}
		gw.log.Warn("fail_closed is off: no nftables table keeps clear text between the protected networks out when the daemon is not running",
			"table", "inet "+FailClosedTable(gw.g))
		return nil
	}
	if err := InstallFailClosed(gw.g, gw.opts.NetNS); err != nil {
		return err
	}
	gw.log.Info("fail-closed table installed (stays after the daemon stops; remove with espxdp failclosed remove)",
		"table", "inet "+FailClosedTable(gw.g))
	return nil
}

// vlanDevices returns the names of the VLAN devices stacked on base with
// VLAN ID vid in the calling thread's network namespace; none when base
// does not exist or the links cannot be listed (the conventional name is
// matched regardless).
func vlanDevices(base string, vid int) []string {
	parent, err := netlink.LinkByName(base)
	if err != nil {
		return nil
	}
	links, err := netlink.LinkList()
	if err != nil {
		return nil
	}
	var names []string
	for _, l := range links {
		v, ok := l.(*netlink.Vlan)
		if ok && v.VlanId == vid && v.Attrs().ParentIndex == parent.Attrs().Index {
			names = append(names, v.Attrs().Name)
		}
	}
	return names
}

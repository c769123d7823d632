//go:build linux

package gateway

import (
	"fmt"
	"log/slog"
	"net"

	"github.com/vishvananda/netlink"

	"github.com/espxdp/espxdp/internal/config"
	"github.com/espxdp/espxdp/xdp"
)

// tunOffload makes openTUN ask for GSO/GRO offloads (tests turn it off
// to compare with the bare device).
var tunOffload = true

// openTUN opens the gateway's TUN device in the calling thread's
// namespace, with offloads (xdp.OpenTUNOffload: the kernel hands over
// TCP and UDP super-packets, which are split, and what is delivered is
// coalesced) and, with several queues, as a multi-queue device with one
// queue per engine worker; if the kernel refuses offloads, as a bare
// single-queue device.
func openTUN(name string, queues int, log *slog.Logger) ([]*xdp.TUN, error) {
	if tunOffload {
		var tuns []*xdp.TUN
		var err error
		if queues > 1 {
			tuns, err = xdp.OpenTUNQueues(name, queues)
		} else {
			var t *xdp.TUN
			if t, err = xdp.OpenTUNOffload(name); err == nil {
				tuns = []*xdp.TUN{t}
			}
		}
		if err == nil {
			return tuns, nil
		}
		log.Warn("tun without offloads: every packet costs a system call, one queue", "tun", name, "err", err)
	}
	t, err := xdp.OpenTUN(name)
	if err != nil {
		return nil, err
	}
	return []*xdp.TUN{t}, nil
}

// setupTUN configures an open TUN device over rtnetlink: MTU, address,
// up, routes. It runs on the thread that is in the gateway's namespace;
// the netlink handle is opened there, so it talks to that namespace.
func setupTUN(t *config.TUNIface, mtu int) error {
	h, err := netlink.NewHandle()
	if err != nil {
		return fmt.Errorf("netlink: %w", err)
	}
	defer h.Close()
	link, err := h.LinkByName(t.Name)
	if err != nil {
		return fmt.Errorf("tun %s: %w", t.Name, err)
	}
	if err := h.LinkSetMTU(link, mtu); err != nil {
		return fmt.Errorf("tun %s: set mtu %d: %w", t.Name, mtu, err)
	}
	if err := h.LinkSetUp(link); err != nil {
		return fmt.Errorf("tun %s: set up: %w", t.Name, err)
	}
	if p := t.Address; p.IsValid() {
		a := &netlink.Addr{IPNet: &net.IPNet{IP: p.Addr().AsSlice(), Mask: net.CIDRMask(p.Bits(), p.Addr().BitLen())}}
		if p.Addr().Is6() {
			a.Flags = 0x02 // IFA_F_NODAD: usable at once, like "ip addr ... nodad"
		}
		if err := h.AddrReplace(link, a); err != nil {
			return fmt.Errorf("tun %s: address %v: %w", t.Name, p, err)
		}
	}
	for _, r := range t.Routes {
		dst := &net.IPNet{IP: r.Masked().Addr().AsSlice(), Mask: net.CIDRMask(r.Bits(), r.Addr().BitLen())}
		route := &netlink.Route{LinkIndex: link.Attrs().Index, Dst: dst}
		if r.Addr().Is4() {
			route.Scope = netlink.SCOPE_LINK // as "ip route ... dev" sets for a route without a gateway
		}
		if err := h.RouteReplace(route); err != nil {
			return fmt.Errorf("tun %s: route %v: %w", t.Name, r, err)
		}
	}
	return nil
}

// setTUNMTU sets the MTU of the TUN device name (in the calling thread's
// namespace).
func setTUNMTU(name string, mtu int) error {
	h, err := netlink.NewHandle()
	if err != nil {
		return fmt.Errorf("netlink: %w", err)
	}
	defer h.Close()
	link, err := h.LinkByName(name)
	if err != nil {
		return fmt.Errorf("tun %s: %w", name, err)
	}
	if link.Attrs().MTU == mtu {
		return nil
	}
	if err := h.LinkSetMTU(link, mtu); err != nil {
		return fmt.Errorf("tun %s: set mtu %d: %w", name, mtu, err)
	}
	return nil
}

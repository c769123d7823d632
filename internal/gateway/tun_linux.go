//go:build linux

package gateway

import (
	"bytes"
	"fmt"
	"os/exec"
	"strconv"
	"strings"

	"github.com/espxdp/espxdp/internal/config"
)

// setupTUN configures an open TUN device with iproute2: MTU, address,
// up, routes. It runs on the thread that is in the gateway's namespace,
// which the ip command inherits.
func setupTUN(t *config.TUNIface, mtu int) error {
	cmds := [][]string{{"link", "set", "dev", t.Name, "mtu", strconv.Itoa(mtu), "up"}}
	if t.Address.IsValid() {
		args := []string{"addr", "replace", t.Address.String(), "dev", t.Name}
		if t.Address.Addr().Is6() {
			args = append(args, "nodad")
		}
		cmds = append(cmds, args)
	}
	for _, r := range t.Routes {
		args := []string{"route", "replace", r.String(), "dev", t.Name}
		if r.Addr().Is6() {
			args = append([]string{"-6"}, args...)
		}
		cmds = append(cmds, args)
	}
	for _, args := range cmds {
		var stderr bytes.Buffer
		cmd := exec.Command("ip", args...)
		cmd.Stderr = &stderr
		if err := cmd.Run(); err != nil {
			return fmt.Errorf("ip %s: %v: %s", strings.Join(args, " "), err, bytes.TrimSpace(stderr.Bytes()))
		}
	}
	return nil
}

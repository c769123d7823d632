//go:build linux

package xdp

import (
	"fmt"
	"net"

	"github.com/espxdp/espxdp/esp"
)

// checkMTU fails with ErrMTU when port p's interface (index idx) has an
// MTU whose full-size frames the engine cannot take whole: larger than a
// UMEM frame holds after its headroom, or, on the plaintext side, too
// large to be encrypted in place (an ESP trailer must fit behind the
// packet, the ESP and outer headers in the headroom). Such frames would
// be dropped by the kernel with nothing but a socket counter to show for
// it, so the engine refuses to start instead.
func checkMTU(p *Port, idx int, plain bool, u UMEMConfig, multi bool) error {
	ifi, err := net.InterfaceByIndex(idx)
	if err != nil {
		return fmt.Errorf("%w: interface %d: %v", ErrInvalidConfig, idx, err)
	}
	if multi {
		if ifi.MTU > MaxJumboMTU {
			return fmt.Errorf("%w: %s has MTU %d, the engine takes at most %d (MaxJumboMTU)", ErrMTU, ifi.Name, ifi.MTU, MaxJumboMTU)
		}
		return nil
	}
	l2 := 14
	if p.VLAN != 0 {
		l2 = 18
	}
	limit := MaxFrameLen(u) - l2
	what := "receives"
	if plain {
		limit -= esp.MaxTailroom
		what = "encrypts in place"
	}
	if ifi.MTU > limit {
		return fmt.Errorf("%w: %s has MTU %d, but with %d-byte UMEM frames (%d bytes of headroom) the engine %s IP packets of at most %d bytes; set the MTU of %s to %d or less, or use AF_XDP multi-buffer for jumbo frames (EngineConfig.MultiBuffer, gateway option jumbo: true)",
			ErrMTU, ifi.Name, ifi.MTU, u.FrameSize, u.Headroom+KernelHeadroom, what, limit, ifi.Name, limit)
	}
	return nil
}

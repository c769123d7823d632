package harness

import "testing"

// TestKeepStep: -steps keeps a step whose label contains one of the
// strings, every step without a filter, and nothing else.
func TestKeepStep(t *testing.T) {
	labels := []string{"wg wireguard-go offload", "wg wireguard-go no-offload", "wg espxdp aes128gcm16",
		"wg espxdp busy-poll aes128gcm16", "wg espxdp-tun aes128gcm16", "wg espxdp-tun chacha20poly1305"}
	for _, c := range []struct {
		filter []string
		want   []bool
	}{
		{nil, []bool{true, true, true, true, true, true}},
		{[]string{"wireguard-go offload", "espxdp-tun aes", "wg espxdp aes"}, []bool{true, false, true, false, true, false}},
		{[]string{"nothing"}, []bool{false, false, false, false, false, false}},
	} {
		for i, l := range labels {
			if got := keepStep(c.filter, l); got != c.want[i] {
				t.Errorf("keepStep(%q, %q) = %v, want %v", c.filter, l, got, c.want[i])
			}
		}
	}
}

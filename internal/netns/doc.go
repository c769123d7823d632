// Package netns builds throw-away network namespaces and veth pairs for
// tests, using the ip(8) command of iproute2.
//
// Everything created is removed by t.Cleanup, also when the test fails:
// deleting a namespace destroys the interfaces in it, and with them the
// other ends of veth pairs.
//
//	a := netns.New(t)
//	b := netns.New(t)
//	v := netns.NewVethPair(t, a, b)
//	v.A.AddAddr(t, netip.MustParsePrefix("192.0.2.1/24"))
//	v.B.AddAddr(t, netip.MustParsePrefix("192.0.2.2/24"))
//	v.A.SetNeighbour(t, netip.MustParseAddr("192.0.2.2"), v.B.MAC)
//	err := a.Do(func() error { ... code running inside a ... })
//	out, err := b.Exec(ctx, "ping", "-c1", "192.0.2.1")
//
// Names are unique per process and test run (a prefix, the pid and a
// counter), and interface names stay within the kernel's 15 characters.
// Static neighbours (SetNeighbour) are there because an XDP program under
// test may take ARP or neighbour discovery packets away from the kernel.
//
// All functions need root (CAP_SYS_ADMIN and CAP_NET_ADMIN) and the ip
// command; callers check that with internal/testenv first. Traffic must
// only go to addresses inside namespaces the test created.
package netns

// Package swan runs strongSwan's charon (5.9, IKEv2) in a network
// namespace for interoperability tests and the benchmarks.
//
// Each Charon gets a directory of its own (strongswan.conf, swanctl.conf,
// the vici socket, the log), a private /run (charon writes its pid file
// there, so several charons run side by side) and the namespace's
// network. It uses the kernel-libipsec plugin: ESP is processed in
// charon's user space and delivered through a TUN device ("ipsec0"), so
// nothing is installed in the kernel's XFRM tables and the namespace
// needs no XFRM support. kernel-libipsec only does UDP-encapsulated ESP
// (RFC 3948): the peer must speak NAT-T on port 4500 (strongSwan fakes
// NAT detection to get it).
//
// Use it in three steps: Start (or StartTest in a test, which checks the
// machine with internal/testenv and registers Stop with t.Cleanup), Load
// with one or more Conn, then Initiate, ListSAs, WaitChild, Rekey,
// Terminate as the test needs. Stop ends charon with SIGTERM (it deletes
// its SAs with the peer), Kill with SIGKILL (a crash: the peer is not
// told).
//
//	c := swan.StartTest(t, ns.Name, swan.Options{})
//	err := c.Load(swan.Conn{LocalAddrs: "192.0.2.1", RemoteAddrs: "192.0.2.2",
//		LocalID: "a.test", RemoteID: "b.test", PSK: psk,
//		LocalTS: []netip.Prefix{netA}, RemoteTS: []netip.Prefix{netB}})
//	err = c.Initiate(ctx, swan.DefaultChild)
//	sas, err := c.ListSAs(ctx)
//
// SwanctlConf and ParseSAs need no privileges and are what Load and
// ListSAs use; they are tested on their own.
//
// Running charon needs root (namespaces, mounts, a TUN device), the
// programs /usr/lib/ipsec/charon and swanctl (Debian packages
// strongswan-charon, strongswan-swanctl, libstrongswan-standard-plugins,
// libstrongswan-extra-plugins, libcharon-extra-plugins for
// kernel-libipsec), ip (iproute2) and unshare and mount (util-linux).
package swan

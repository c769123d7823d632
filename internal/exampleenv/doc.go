// Package exampleenv is the scaffolding shared by the examples under
// examples/: what stands in for real hosts, a real network and a real
// IKE daemon, so that each example keeps only its espxdp-facing code
// (SAs, policies, engines, TUN devices, GRE, keepalives) in its own
// files, readable on its own.
//
// It has:
//
//   - Main, the command wrapper: an optional root check, a context that
//     Ctrl-C and SIGTERM cancel, and the exit message; ErrNeedsRoot and
//     CheckRoot for runs that check root themselves; Workload (the
//     -transform, -pings, -size and -timeout options), ParseWorkload
//     and ParseSize for "8M"-style flags.
//   - Begin and Session.End (Linux): a run's deadline and namespaces,
//     removed however the run ends, with what was left behind.
//   - Build (Linux), the line of five namespaces
//     hostA ── gwA ── middle ── gwB ── hostB joined by veth pairs with
//     addresses and static neighbours, parameterised by a Plan (names,
//     addresses, an IPv6 wan's prefix length, MTU, IPv4 only, IPv6
//     forwarding, TX checksum offload); AddRoutes and
//     Line.RouteHosts; Line.WANDrops, the drop counters of the links
//     between the gateways; Teardown.
//   - PacketCounter (Linux), an AF_PACKET socket on one interface that
//     hands every frame to a classify callback: the "tcpdump on the
//     router" the examples use to show what crossed the wire.
//   - PingAndTransfer (Linux), the pings and checksummed TCP transfer
//     that prove a tunnel works.
//   - WaitUntil and WaitStable, bounded polling; Agreement, the
//     "a b ok|MISMATCH" lines of the examples' output; ManualKeys,
//     random keys standing in for IKE; SumWorkers.
//   - Test helpers for the examples' tests: LogWriter, CheckSAPair,
//     CheckEqual and (Linux) CheckNamespaces and CheckTraffic.
//
// Nothing here is espxdp API, and none of it is meant to be copied into
// a product.
package exampleenv

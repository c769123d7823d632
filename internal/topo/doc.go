// Package topo builds small networks of Linux network namespaces joined
// by veth pairs, for the demo, the examples and the end-to-end
// benchmarks: unlike the test helper internal/netns it reports errors
// instead of failing a test, and a Topology removes everything it made
// in one Close, which callers run on exit, on failure and on Ctrl-C.
//
// It also has the traffic the demo and examples use to prove a tunnel
// works: ICMP echo (Ping) and a checksummed TCP transfer (Transfer),
// both run from inside a namespace.
//
// It needs root (or CAP_NET_ADMIN and CAP_SYS_ADMIN) and iproute2.
package topo

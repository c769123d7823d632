//go:build linux

package bpf_test

import (
	"errors"
	"fmt"
	"log"
	"net"
	"net/netip"

	"github.com/espxdp/espxdp/bpf"
)

// Load the steering program for a host with one public address, attach it
// to eth0 and hand an AF_XDP socket (bound to queue 0 of eth0 elsewhere,
// e.g. by the xdp package) to it.
func Example() {
	prog, err := bpf.Load(bpf.Options{
		LocalAddrs: []netip.Addr{netip.MustParseAddr("192.0.2.1")},
	})
	if errors.Is(err, bpf.ErrPermission) {
		log.Fatal("run as root or with CAP_BPF and CAP_NET_ADMIN")
	} else if err != nil {
		log.Fatal(err)
	}
	defer prog.Close()

	ifc, err := net.InterfaceByName("eth0")
	if err != nil {
		log.Fatal(err)
	}
	att, err := prog.Attach(ifc.Index, bpf.AttachAuto)
	if err != nil {
		log.Fatal(err)
	}
	defer att.Close()
	fmt.Println("attached in", att.Mode(), "mode")

	var xskFD int // an AF_XDP socket bound to eth0 queue 0
	idx, err := prog.SocketIndex(0, 0)
	if err != nil {
		log.Fatal(err)
	}
	if err := prog.RegisterSocket(idx, xskFD); err != nil {
		log.Fatal(err)
	}

	st, err := prog.Stats()
	if err != nil {
		log.Fatal(err)
	}
	fmt.Printf("ESP %d, ESP-in-UDP %d, keepalives %d, no socket %d\n",
		st.ESPRedirected, st.NATTRedirected, st.KeepalivePassed, st.RedirectNoSocket)
}

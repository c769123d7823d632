// Command espxdp processes IPsec ESP with statically keyed SAs.
//
// Usage:
//
//	espxdp pcap encrypt --config F --sa NAME --in plain.pcap --out esp.pcap [--json]
//	espxdp pcap decrypt --config F --in esp.pcap --out plain.pcap [--json]
//	espxdp show sa --config F [--json]
//	espxdp run --config F [--netns NAME] [--socket PATH]
//	espxdp show sa|stats [--socket PATH] [--json]
//	espxdp sa add|update --file SA.yaml [--tunnel NAME] [--socket PATH]
//	espxdp sa del --direction in|out --spi X [--remote ADDR] [--socket PATH]
//	espxdp sa reload [--socket PATH]
//	espxdp events [--socket PATH] [--json]
//	espxdp demo [-size BYTES] [-transform NAME] [-duration D]
//	espxdp failclosed show|rules|remove --config F [--netns NAME]
//
// The SAs come from a YAML file (see package internal/config). Exit status:
// 0 success, 1 runtime error, 2 usage error.
//
// The pcap commands read pcap and pcapng files with Ethernet (VLAN tags
// kept), Linux SLL or raw IP link types and write pcap with the same link
// type and timestamps; LINKTYPE_IPV4 and LINKTYPE_IPV6 input is written
// as LINKTYPE_RAW, since the output may mix families. Dropped packets are
// counted by reason and never written. pcap decrypt handles one NAT-T
// port (the inbound SAs' local_port). It reassembles outer IP fragments
// before decryption (package esp/reasm, 30 s of capture time per set):
// a reassembled packet is written with the link header and timestamp of
// its last fragment, and the summary counts fragments, reassembled
// packets and dropped fragments or sets by reason.
package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
)

// Exit codes.
const (
	exitOK      = 0
	exitFailure = 1
	exitUsage   = 2
)

// usageError is a mistake on the command line.
type usageError struct{ msg string }

func (e *usageError) Error() string { return e.msg }

func usagef(format string, args ...any) error {
	return &usageError{fmt.Sprintf(format, args...)}
}

const usageText = `usage:
  espxdp pcap encrypt --config FILE --sa NAME --in PLAIN.pcap --out ESP.pcap [--json]
  espxdp pcap decrypt --config FILE --in ESP.pcap --out PLAIN.pcap [--json]
  espxdp show sa --config FILE [--json]
  espxdp demo [-size BYTES] [-transform NAME] [-duration D]   (root: two gateways in namespaces)
  espxdp failclosed show|rules|remove --config FILE [--netns NAME]
`

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

// run executes the command line args and returns the exit status.
func run(args []string, stdout, stderr io.Writer) int {
	err := dispatch(args, stdout, stderr)
	if err == nil {
		return exitOK
	}
	if errors.Is(err, flag.ErrHelp) {
		return exitOK
	}
	fmt.Fprintf(stderr, "espxdp: %v\n", err)
	var ue *usageError
	if errors.As(err, &ue) {
		fmt.Fprint(stderr, usageText)
		return exitUsage
	}
	return exitFailure
}

func dispatch(args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		return usagef("missing command")
	}
	switch args[0] {
	case "help", "-h", "-help", "--help":
		fmt.Fprint(stdout, usageText)
		return nil
	case "pcap":
		if len(args) < 2 {
			return usagef("pcap: missing subcommand (encrypt or decrypt)")
		}
		switch args[1] {
		case "encrypt":
			return cmdPcapEncrypt(args[2:], stdout, stderr)
		case "decrypt":
			return cmdPcapDecrypt(args[2:], stdout, stderr)
		}
		return usagef("pcap: unknown subcommand %q (want encrypt or decrypt)", args[1])
	case "show":
		if len(args) < 2 {
			return usagef("show: missing subcommand (sa)")
		}
		switch args[1] {
		case "sa", "sas":
			return cmdShowSA(args[2:], stdout, stderr)
		case "stats":
			return cmdShowStats(args[2:], stdout, stderr)
		}
		return usagef("show: unknown subcommand %q (want sa or stats)", args[1])
	case "run":
		return cmdRun(args[1:], stdout, stderr)
	case "sa":
		return cmdSA(args[1:], stdout, stderr)
	case "events":
		return cmdEvents(args[1:], stdout, stderr)
	case "demo":
		return cmdDemo(args[1:], stdout, stderr)
	case "failclosed":
		return cmdFailClosed(args[1:], stdout, stderr)
	}
	return usagef("unknown command %q", args[0])
}

// newFlags returns a FlagSet for a subcommand that reports errors as
// usage errors instead of exiting.
func newFlags(name string, stderr io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	return fs
}

// parseFlags parses args and rejects stray positional arguments and
// missing required flags.
func parseFlags(fs *flag.FlagSet, args []string, required ...string) error {
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return usagef("%s: %v", fs.Name(), err)
	}
	if fs.NArg() > 0 {
		return usagef("%s: unexpected argument %q", fs.Name(), fs.Arg(0))
	}
	var missing []string
	for _, name := range required {
		if f := fs.Lookup(name); f != nil && f.Value.String() == "" {
			missing = append(missing, "--"+name)
		}
	}
	if len(missing) > 0 {
		return usagef("%s: missing %s", fs.Name(), strings.Join(missing, ", "))
	}
	return nil
}

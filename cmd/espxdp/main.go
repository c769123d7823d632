// Command espxdp processes IPsec ESP with statically keyed SAs.
//
// Usage: espxdp COMMAND [flags]. `espxdp --help` lists the commands (the
// table in commands.go), `espxdp COMMAND -h` shows one's flags and an
// example, `espxdp version` the build and the kernel features found.
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
	"slices"
	"strings"
)

// Exit codes.
const (
	exitOK      = 0
	exitFailure = 1
	exitUsage   = 2
)

// usageError is a mistake on the command line. cmd, if set, is the
// command whose usage is printed after the message.
type usageError struct {
	msg string
	cmd string
}

func (e *usageError) Error() string { return e.msg }

func usagef(format string, args ...any) error {
	return &usageError{msg: fmt.Sprintf(format, args...)}
}

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

// run executes the command line args and returns the exit status: 0
// success (help included), 1 runtime failure, 2 usage error.
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
		if c := commandNamed(ue.cmd); c != nil {
			writeCommandUsage(stderr, c, nil)
			fmt.Fprintf(stderr, "\n(espxdp %s -h lists its flags)\n", c.name)
		} else {
			writeHelp(stderr)
		}
		return exitUsage
	}
	return exitFailure
}

// dispatch runs the command of the table that args name.
func dispatch(args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		return usagef("missing command")
	}
	switch args[0] {
	case "-h", "-help", "--help":
		writeHelp(stdout)
		return nil
	case "-version", "--version", "-V":
		return cmdVersion(args[1:], stdout, stderr)
	}
	c, n := lookupCommand(args)
	if c == nil {
		if subs := subcommands(args[0]); len(subs) > 0 {
			if len(args) > 1 && isHelpFlag(args[1]) {
				fmt.Fprintf(stdout, "espxdp %s: subcommands %s; espxdp %s SUBCOMMAND -h for one\n", args[0], orList(subs), args[0])
				return nil
			}
			if len(args) == 1 {
				return usagef("%s: missing subcommand (%s)", args[0], orList(subs))
			}
			return usagef("%s: unknown subcommand %q (want %s)", args[0], args[1], orList(subs))
		}
		return usagef("unknown command %q (espxdp --help lists them)", args[0])
	}
	rest := args[n:]
	// -h prints the command's usage on stdout, so that it pages.
	if slices.ContainsFunc(rest, isHelpFlag) {
		stderr = stdout
	}
	err := c.run(rest, stdout, stderr)
	var ue *usageError
	if errors.As(err, &ue) && ue.cmd == "" {
		ue.cmd = c.name
	}
	return err
}

// newFlags returns a FlagSet for the subcommand name that reports errors
// as usage errors instead of exiting; its -h prints the command table's
// usage, flags and example.
func newFlags(name string, stderr io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	if c := commandNamed(name); c != nil {
		fs.Usage = func() { writeCommandUsage(fs.Output(), c, fs) }
	}
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

package main

import (
	"flag"
	"fmt"
	"io"
	"slices"
	"strings"
)

// command is one entry of the command table. The table drives dispatch,
// `espxdp --help` and every `espxdp CMD -h`: adding a command is adding
// one entry here.
type command struct {
	// name is the command words, e.g. "show sa".
	name string
	// aliases are other spellings of the last word (e.g. "sas").
	aliases []string
	// synopsis follows "espxdp NAME" in the usage line.
	synopsis string
	// summary is the one-line purpose in `espxdp --help`.
	summary string
	// detail is printed under the usage line of `espxdp NAME -h`.
	detail string
	// example is a command line (or a few) to copy.
	example string
	// run executes the command with the arguments after its name.
	run func(args []string, stdout, stderr io.Writer) error
}

// saSub returns the runner of `espxdp sa SUB`.
func saSub(sub string) func([]string, io.Writer, io.Writer) error {
	return func(args []string, stdout, stderr io.Writer) error {
		return cmdSA(append([]string{sub}, args...), stdout, stderr)
	}
}

// failClosedSub returns the runner of `espxdp failclosed SUB`.
func failClosedSub(sub string) func([]string, io.Writer, io.Writer) error {
	return func(args []string, stdout, stderr io.Writer) error {
		return cmdFailClosed(append([]string{sub}, args...), stdout, stderr)
	}
}

// commands is every command, in the order `espxdp --help` lists them.
var commands []command

func init() {
	// Set in init: the help command reads the table.
	commands = []command{
		{name: "run", synopsis: "--config FILE [--netns NAME] [--socket PATH] [--log-format text|json] [--log-level LEVEL]",
			summary: "run the gateway daemon from a YAML configuration (SIGHUP reloads, SIGTERM stops)",
			detail: "Runs AF_XDP on the configured interfaces, serves the control socket (0600) and,\n" +
				"if gateway.metrics is set, Prometheus metrics on that address. See docs/OPERATIONS.md\n" +
				"for the capabilities it needs and a systemd unit.",
			example: "espxdp run --config /etc/espxdp/gw.yaml --socket /run/espxdp/gw.sock",
			run:     cmdRun},
		{name: "show sa", aliases: []string{"sas"}, synopsis: "[--socket PATH | --config FILE] [--json] [--watch [--interval D] [--count N]]",
			summary: "show the SAs (show crypto ipsec sa) of a running gateway or of a --config file; --watch for live rates",
			detail: "Without --config it asks the gateway on --socket. --watch refreshes every --interval\n" +
				"with per-SA and per-worker rates (packets/s, bits/s, drops/s by reason), busiest SAs first.",
			example: "espxdp show sa --socket /run/espxdp/gw.sock\n  espxdp show sa --watch --interval 2s\n  espxdp show sa --config gw.yaml --json",
			run:     cmdShowSA},
		{name: "show stats", synopsis: "[--socket PATH] [--json]",
			summary: "show a running gateway's engine, processor and router counters",
			example: "espxdp show stats --socket /run/espxdp/gw.sock --json",
			run:     cmdShowStats},
		{name: "show ike", synopsis: "[--socket PATH] [--json]",
			summary: "show a running gateway's IKE peers, IKE SAs (SPIs, proposal, NAT-T, age) and child SAs (SPIs, selectors)",
			detail: "One block per peer of the configuration's peers: section; the child the tunnel sends on is\n" +
				"marked \"sending\", a rekeyed child \"retiring\" until its SAs are deleted.",
			example: "espxdp show ike --socket /run/espxdp/gw.sock\n  espxdp show ike --json",
			run:     cmdShowIKE},
		{name: "ike initiate", synopsis: "PEER [--socket PATH]",
			summary: "negotiate with an IKE peer now (and release a peer held down by ike terminate)",
			detail:  "Waits up to 8s for the IKE SA; the negotiation goes on in the background after that.",
			example: "espxdp ike initiate siteB",
			run:     ikeSub("initiate")},
		{name: "ike terminate", synopsis: "PEER [--socket PATH]",
			summary: "delete a peer's IKE SAs and child SAs (the peer is told); no automatic initiation until ike initiate",
			example: "espxdp ike terminate siteB",
			run:     ikeSub("terminate")},
		{name: "sa add", synopsis: "--file SA.yaml [--tunnel NAME] [--socket PATH]",
			summary: "add SAs to a running gateway (the file holds one SA mapping as in the sas list, or a list: all or none)",
			detail:  "A list (e.g. both directions of a child SA, with the same child: id) is added atomically.",
			example: "espxdp sa add --file new-sa.yaml --tunnel to-B",
			run:     saSub("add")},
		{name: "sa update", synopsis: "--file SA.yaml [--tunnel NAME] [--socket PATH]",
			summary: "change an SA of a running gateway: in place (lifetimes, path MTU, peer), else replaced make-before-break",
			example: "espxdp sa update --file rekeyed-sa.yaml",
			run:     saSub("update")},
		{name: "sa del", aliases: []string{"delete"}, synopsis: "--direction in|out --spi SPI [--remote ADDR] | --child ID [--socket PATH]",
			summary: "delete an SA, or every SA of a child id, from a running gateway (keys wiped)",
			detail: "Outbound SAs are identified by SPI and peer: --remote is needed when two peers chose the same SPI.\n" +
				"--child deletes every SA with that child: id in one step.",
			example: "espxdp sa del --direction in --spi 0x2001\n  espxdp sa del --child 7",
			run:     saSub("del")},
		{name: "sa alloc-spi", synopsis: "[--min SPI] [--max SPI] [--ttl D] [--json] [--socket PATH]",
			summary: "reserve a free inbound SPI on a running gateway and print it (for an IKE daemon)",
			detail: "The SPI is neither in use nor reserved; the reservation lasts --ttl (default 30s), until\n" +
				"sa release-spi, or until an inbound SA with that SPI is added.",
			example: "espxdp sa alloc-spi --min 0xc0000000 --max 0xcfffffff --ttl 1m",
			run:     saSub("alloc-spi")},
		{name: "sa release-spi", synopsis: "--spi SPI [--socket PATH]",
			summary: "give back an SPI reserved by sa alloc-spi",
			example: "espxdp sa release-spi --spi 0xc0a1b2c3",
			run:     saSub("release-spi")},
		{name: "sa reload", synopsis: "[--socket PATH]",
			summary: "make a running gateway re-read its configuration file (like SIGHUP)",
			example: "espxdp sa reload --socket /run/espxdp/gw.sock",
			run:     saSub("reload")},
		{name: "events", synopsis: "[--socket PATH] [--json] [--timeout D]",
			summary: "stream a running gateway's events (expiry, acquire, seq-limit, deleted, endpoint changed) as they happen",
			example: "espxdp events --socket /run/espxdp/gw.sock --json",
			run:     cmdEvents},
		{name: "failclosed show", synopsis: "--config FILE [--netns NAME]",
			summary: "show the gateway's fail-closed nftables table and its drop counters",
			detail:  "The table (inet espxdp_<cipher interface>) stays when the daemon stops or dies, so clear\ntext between the protected networks never crosses the gateway meanwhile.",
			example: "espxdp failclosed show --config gw.yaml --netns gw",
			run:     failClosedSub("show")},
		{name: "failclosed rules", synopsis: "--config FILE",
			summary: "print the nftables ruleset the gateway installs for a configuration",
			example: "espxdp failclosed rules --config gw.yaml",
			run:     failClosedSub("rules")},
		{name: "failclosed remove", synopsis: "--config FILE [--netns NAME]",
			summary: "remove the gateway's fail-closed table (opens the clear-text path while no gateway runs)",
			example: "espxdp failclosed remove --config gw.yaml --netns gw",
			run:     failClosedSub("remove")},
		{name: "pcap encrypt", synopsis: "--config FILE --sa NAME --in PLAIN.pcap --out ESP.pcap [--json]",
			summary: "encrypt the IP packets of a capture with an outbound SA of a config file",
			example: "espxdp pcap encrypt --config sas.yaml --sa to-b --in plain.pcap --out esp.pcap",
			run:     cmdPcapEncrypt},
		{name: "pcap decrypt", synopsis: "--config FILE --in ESP.pcap --out PLAIN.pcap [--json]",
			summary: "decrypt the ESP packets of a capture with the inbound SAs of a config file",
			example: "espxdp pcap decrypt --config sas.yaml --in esp.pcap --out plain.pcap",
			run:     cmdPcapDecrypt},
		{name: "demo", synopsis: "[-size BYTES] [-transform NAME] [-duration D] [-ipv6]",
			summary: "two gateways in network namespaces: ping and a TCP transfer through ESP (root)",
			detail: "Builds hostA — gwA — wan — gwB — hostB in network namespaces, runs two ESP\n" +
				"gateways over AF_XDP, pings and pushes a checksummed TCP transfer through the\n" +
				"tunnel, shows both gateways' SAs and removes everything again. Needs root.",
			example: "sudo espxdp demo -size 16MiB -transform aes256gcm16",
			run:     cmdDemo},
		{name: "version", synopsis: "[--json]",
			summary: "print the version, commit, Go version, kernel release and the kernel features found",
			example: "espxdp version",
			run:     cmdVersion},
		{name: "help", synopsis: "[COMMAND]",
			summary: "list the commands, or show one command's flags and an example",
			example: "espxdp help show sa",
			run:     cmdHelp},
	}
}

// lookupCommand finds the command that args start with; n is how many
// words its name took. It returns nil when none does.
func lookupCommand(args []string) (cmd *command, n int) {
	for i := range commands {
		c := &commands[i]
		words := strings.Fields(c.name)
		if len(args) < len(words) {
			continue
		}
		ok := true
		for j, w := range words {
			a := args[j]
			if a != w && !(j == len(words)-1 && slices.Contains(c.aliases, a)) {
				ok = false
				break
			}
		}
		if ok && len(words) > n {
			cmd, n = c, len(words)
		}
	}
	return cmd, n
}

// commandNamed returns the command called name (exactly), or nil.
func commandNamed(name string) *command {
	for i := range commands {
		if commands[i].name == name {
			return &commands[i]
		}
	}
	return nil
}

// subcommands returns the second words of the commands whose first word
// is group ("show" → sa, stats).
func subcommands(group string) []string {
	var out []string
	for _, c := range commands {
		if w := strings.Fields(c.name); len(w) == 2 && w[0] == group {
			out = append(out, w[1])
		}
	}
	return out
}

// orList joins words as "a, b or c".
func orList(words []string) string {
	switch len(words) {
	case 0:
		return ""
	case 1:
		return words[0]
	}
	return strings.Join(words[:len(words)-1], ", ") + " or " + words[len(words)-1]
}

// isHelpFlag reports whether a is a request for help.
func isHelpFlag(a string) bool {
	return a == "-h" || a == "-help" || a == "--help"
}

// writeHelp prints the command list.
func writeHelp(w io.Writer) {
	fmt.Fprint(w, `espxdp processes IPsec ESP (RFC 4303) at line rate with AF_XDP.

usage: espxdp COMMAND [flags]
       espxdp COMMAND -h       flags of COMMAND and an example
       espxdp --version

commands:
`)
	width := 0
	for _, c := range commands {
		width = max(width, len(c.name))
	}
	for _, c := range commands {
		fmt.Fprintf(w, "  %-*s  %s\n", width, c.name, c.summary)
	}
	fmt.Fprint(w, `
exit status: 0 success, 1 runtime failure, 2 usage error.
docs: README.md (configuration), docs/OPERATIONS.md (running it in production).
`)
}

// writeCommandUsage prints the short usage of c (and, when fs is given,
// its flags and example).
func writeCommandUsage(w io.Writer, c *command, fs *flag.FlagSet) {
	fmt.Fprintf(w, "usage: espxdp %s %s\n\n%s\n", c.name, c.synopsis, c.summary)
	if c.detail != "" {
		fmt.Fprintf(w, "\n%s\n", c.detail)
	}
	if fs != nil {
		n := 0
		fs.VisitAll(func(*flag.Flag) { n++ })
		if n > 0 {
			fmt.Fprint(w, "\nflags:\n")
			writeFlags(w, fs)
		}
	}
	if c.example != "" {
		fmt.Fprintf(w, "\nexample:\n  %s\n", c.example)
	}
}

// writeFlags lists fs's flags as --name ARG, the usage and the default,
// like flag.PrintDefaults but with the double dash the synopses use (the
// flag package takes both).
func writeFlags(w io.Writer, fs *flag.FlagSet) {
	fs.VisitAll(func(f *flag.Flag) {
		arg, usage := flag.UnquoteUsage(f)
		line := "  --" + f.Name
		if arg != "" {
			line += " " + strings.ToUpper(arg)
		}
		line += "\n        " + strings.ReplaceAll(usage, "\n", "\n        ")
		if d := f.DefValue; d != "" && d != "false" && d != "0" && d != "0s" {
			line += fmt.Sprintf(" (default %s)", d)
		}
		fmt.Fprintln(w, line)
	})
}

// cmdHelp is `espxdp help [COMMAND]`.
func cmdHelp(args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 || isHelpFlag(args[0]) {
		writeHelp(stdout)
		return nil
	}
	c, n := lookupCommand(args)
	if c == nil || n != len(args) {
		if subs := subcommands(args[0]); len(subs) > 0 && len(args) == 1 {
			fmt.Fprintf(stdout, "espxdp %s: subcommands %s; espxdp help %s SUBCOMMAND for one\n", args[0], orList(subs), args[0])
			return nil
		}
		return usagef("help: no command %q", strings.Join(args, " "))
	}
	// The command prints its own usage, flags included, for -h.
	return c.run([]string{"-h"}, stdout, stdout)
}

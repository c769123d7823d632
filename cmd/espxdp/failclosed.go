package main

import (
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"

	"github.com/espxdp/espxdp/internal/config"
	"github.com/espxdp/espxdp/internal/gateway"
)

// cmdFailClosed is `espxdp failclosed show|remove --config F [--netns
// NAME]`: the nftables table a gateway leaves behind so that clear text
// between the protected networks never crosses it, also while the daemon
// is not running. Removing it is this explicit operator action (or
// fail_closed: false at the next start); the daemon never removes it
// when it stops.
func cmdFailClosed(args []string, stdout, stderr io.Writer) error {
	if len(args) < 1 {
		return usagef("failclosed: missing subcommand (show, rules or remove)")
	}
	sub := args[0]
	fs := newFlags("failclosed "+sub, stderr)
	cfgPath := fs.String("config", "", "YAML configuration `file` of the gateway")
	netns := fs.String("netns", "", "the gateway's named network namespace (ip netns)")
	if err := parseFlags(fs, args[1:], "config"); err != nil {
		return err
	}
	cfg, err := config.Load(*cfgPath)
	if err != nil {
		return err
	}
	defer cfg.Wipe()
	if cfg.Gateway == nil {
		return fmt.Errorf("%s: no interfaces section: not a gateway configuration", *cfgPath)
	}
	ns := *netns
	if ns != "" && !strings.Contains(ns, "/") {
		ns = "/run/netns/" + ns
	}
	table := "inet " + gateway.FailClosedTable(cfg.Gateway)
	switch sub {
	case "rules":
		// What `espxdp run` installs (an nft -f script).
		script, err := gateway.FailClosedRuleset(cfg.Gateway)
		if err != nil {
			return err
		}
		_, err = io.WriteString(stdout, script)
		return err
	case "show":
		in, out, err := gateway.FailClosedCounters(cfg.Gateway, ns)
		if err != nil {
			return err
		}
		fmt.Fprintf(stdout, "table %s\n%-28s %d\n%-28s %d\n", table, "unprotected in dropped:", in, "unprotected out dropped:", out)
		return nil
	case "remove":
		if err := gateway.RemoveFailClosed(cfg.Gateway, ns); err != nil {
			return err
		}
		fmt.Fprintf(stdout, "espxdp: removed table %s; clear text between the protected networks is no longer blocked while the gateway is not running\n", table)
		return nil
	}
	return usagef("failclosed: unknown subcommand %q (want show, rules or remove)", sub)
}

// unprotectedRows are the show stats lines of the clear-text discard.
func unprotectedRows(stdout io.Writer, st *gateway.Stats) {
	fmt.Fprintf(stdout, "%-28s %d\n", "unprotected discarded:", st.UnprotectedDropped)
	fmt.Fprintf(stdout, "%-28s %d\n", "unprotected bypassed:", st.UnprotectedBypassed)
	names := slices.Sorted(maps.Keys(st.UnprotectedByTunnel))
	for _, name := range names {
		fmt.Fprintf(stdout, "%-28s %d\n", "unprotected tunnel "+name+":", st.UnprotectedByTunnel[name])
	}
}

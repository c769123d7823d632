package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/espxdp/espxdp/internal/gateway"
)

// cmdShowIKE is `espxdp show ike`: the IKE peers of a running gateway,
// their IKE SAs and child SAs.
func cmdShowIKE(args []string, stdout, stderr io.Writer) error {
	fs := newFlags("show ike", stderr)
	cf := addCallFlags(fs)
	asJSON := fs.Bool("json", false, "print JSON")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	resp, err := cf.call(gateway.Request{Cmd: "show-ike"})
	if err != nil {
		return err
	}
	if *asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		peers := resp.IKE
		if peers == nil {
			peers = []gateway.IKEPeerInfo{}
		}
		return enc.Encode(peers)
	}
	writeIKE(stdout, resp.IKE)
	return nil
}

// writeIKE prints show ike's text form.
func writeIKE(w io.Writer, peers []gateway.IKEPeerInfo) {
	if len(peers) == 0 {
		fmt.Fprintln(w, "no IKE peers configured (peers: in the configuration)")
		return
	}
	for _, p := range peers {
		state := "down"
		if p.Up {
			state = "up"
		}
		if p.Held {
			state += ", held (ike initiate releases)"
		}
		fmt.Fprintf(w, "peer %s: %s ⇄ %s, %s, start_action %s, auth failures %d\n", p.Peer, p.Local, p.Remote, state, p.StartAction, p.Stats.AuthFailed)
		if p.LastError != "" {
			fmt.Fprintf(w, "  last error: %s\n", p.LastError)
		}
		for _, s := range p.IKESAs {
			role := "responder"
			if s.Initiator {
				role = "initiator"
			}
			nat := ""
			if s.NATT {
				nat = ", NAT-T"
			}
			fmt.Fprintf(w, "  IKE SA %s %s (%s%s), %s ⇄ %s, %s ⇄ %s\n", s.SPIs, s.State, role, nat, s.Local, s.Remote, s.LocalID, s.RemoteID)
			fmt.Fprintf(w, "    proposal %s, established %s ago\n", s.Proposal, s.Established)
			for _, c := range s.Children {
				flags := []string{}
				if c.Primary {
					flags = append(flags, "sending")
				}
				if c.Retiring {
					flags = append(flags, "retiring")
				}
				if c.ESN {
					flags = append(flags, "esn")
				}
				fmt.Fprintf(w, "    child %d: SPIs in %s out %s, %s, %s === %s, age %s %s\n", c.Child, c.SPIIn, c.SPIOut, c.Transform,
					strings.Join(c.LocalTS, ","), strings.Join(c.RemoteTS, ","), c.Age, strings.Join(flags, " "))
			}
		}
	}
}

// ikeSub returns the runner of `espxdp ike SUB PEER`.
func ikeSub(sub string) func([]string, io.Writer, io.Writer) error {
	return func(args []string, stdout, stderr io.Writer) error {
		fs := newFlags("ike "+sub, stderr)
		cf := addCallFlags(fs)
		// The peer may come before the flags.
		var peer string
		if len(args) > 0 && !strings.HasPrefix(args[0], "-") {
			peer, args = args[0], args[1:]
		}
		if err := parseFlags(fs, args); err != nil {
			return err
		}
		if peer == "" && fs.NArg() == 1 {
			peer = fs.Arg(0)
		} else if fs.NArg() > 0 || peer == "" {
			return usagef("ike %s: want one peer name (as in peers:)", sub)
		}
		if sub == "initiate" && *cf.timeout < 10*time.Second {
			*cf.timeout = 10 * time.Second // the gateway waits up to 8s
		}
		if _, err := cf.call(gateway.Request{Cmd: "ike-" + sub, Peer: peer}); err != nil {
			return err
		}
		if sub == "initiate" {
			fmt.Fprintf(stdout, "peer %s: IKE SA established\n", peer)
		} else {
			fmt.Fprintf(stdout, "peer %s: IKE and child SAs deleted; not initiated again until `espxdp ike initiate %s`\n", peer, peer)
		}
		return nil
	}
}

// writeOwners prints which IKE SA owns each negotiated SA (show sa).
func writeOwners(w io.Writer, owners []gateway.SAOwner) {
	if len(owners) == 0 {
		return
	}
	fmt.Fprintln(w, "\nIKE-negotiated SAs:")
	for _, o := range owners {
		fmt.Fprintf(w, "  %-24s peer %s, IKE SA %s, child %d\n", o.SA, o.Peer, o.IKESA, o.Child)
	}
}

// withOwners adds the owners to show sa's JSON object.
func withOwners(report []byte, owners []gateway.SAOwner) ([]byte, error) {
	if len(owners) == 0 {
		return report, nil
	}
	var m map[string]json.RawMessage
	if err := json.Unmarshal(report, &m); err != nil {
		return nil, err
	}
	b, err := json.Marshal(owners)
	if err != nil {
		return nil, err
	}
	m["owners"] = b
	var out bytes.Buffer
	enc := json.NewEncoder(&out)
	enc.SetIndent("", "  ")
	if err := enc.Encode(m); err != nil {
		return nil, err
	}
	return out.Bytes(), nil
}

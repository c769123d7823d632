package swan

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// ErrParse is wrapped by errors about swanctl output ParseSAs cannot
// read.
var ErrParse = errors.New("swan: cannot parse swanctl --list-sas --raw")

// IKESA is one IKE SA as charon lists it (vici list-sas).
type IKESA struct {
	// Name is the connection's name.
	Name string
	// UniqueID is charon's number for the SA (#N in swanctl's listing).
	UniqueID int
	// Version is the IKE version (2).
	Version int
	// State is CREATED, CONNECTING, ESTABLISHED, PASSIVE, REKEYING,
	// REKEYED, DELETING or DESTROYING.
	State string
	// LocalHost, LocalPort, RemoteHost and RemotePort are the outer
	// addresses and ports in use (4500 after a switch to NAT-T).
	LocalHost, RemoteHost string
	LocalPort, RemotePort int
	// LocalID and RemoteID are the identities.
	LocalID, RemoteID string
	// Initiator is true when this charon initiated the SA.
	Initiator bool
	// InitiatorSPI and ResponderSPI are the IKE SPIs.
	InitiatorSPI, ResponderSPI uint64
	// EncrAlg, PRFAlg and DHGroup are the negotiated algorithms
	// (strongSwan's names, e.g. AES_GCM_16, PRF_HMAC_SHA2_256,
	// CURVE_25519).
	EncrAlg, PRFAlg, DHGroup string
	// Children are the IKE SA's child SAs.
	Children []ChildSA
}

// ChildSA is one child SA (a pair of ESP SAs) of an IKESA.
type ChildSA struct {
	// Name is the child's name in the configuration.
	Name string
	// UniqueID and ReqID are charon's numbers for it.
	UniqueID, ReqID int
	// State is CREATED, ROUTED, INSTALLING, INSTALLED, UPDATING,
	// REKEYING, REKEYED, RETRYING, DELETING, DELETED or DESTROYING.
	State string
	// Mode is TUNNEL or TRANSPORT, Protocol ESP or AH.
	Mode, Protocol string
	// Encap is true for UDP-encapsulated ESP.
	Encap bool
	// SPIIn and SPIOut are the inbound and outbound SPIs.
	SPIIn, SPIOut uint32
	// EncrAlg is the ESP cipher (e.g. AES_GCM_16), EncrKeySize its key
	// size in bits.
	EncrAlg     string
	EncrKeySize int
	// BytesIn, PacketsIn, BytesOut and PacketsOut count the traffic.
	BytesIn, PacketsIn, BytesOut, PacketsOut uint64
	// LocalTS and RemoteTS are the negotiated traffic selectors as
	// strongSwan writes them ("10.0.0.0/24", "10.0.0.1/32[tcp/80]").
	LocalTS, RemoteTS []string
}

// section is one vici section of the raw listing.
type section struct {
	kv    map[string]string
	lists map[string][]string
	subs  []*section
	name  string
}

// ParseSAs reads the output of swanctl --list-sas --raw: one
// "list-sa event {...}" line per IKE SA, then a "list-sas reply" line.
// Values must not contain spaces (identities with spaces, such as
// distinguished names, are not supported). Malformed input is an error
// wrapping ErrParse, never a panic.
func ParseSAs(out string) ([]IKESA, error) {
	var sas []IKESA
	for _, line := range strings.Split(out, "\n") {
		line = strings.TrimSpace(line)
		if line == "" {
			continue
		}
		head, body, ok := strings.Cut(line, "{")
		if !ok {
			return nil, fmt.Errorf("%w: no '{' in %q", ErrParse, line)
		}
		root, err := parseSection(tokenize("{" + body))
		if err != nil {
			return nil, err
		}
		switch strings.TrimSpace(head) {
		case "list-sa event":
			for _, s := range root.subs {
				ike, err := ikeFrom(s)
				if err != nil {
					return nil, err
				}
				sas = append(sas, ike)
			}
		case "list-sas reply":
		default:
			return nil, fmt.Errorf("%w: unexpected message %q", ErrParse, head)
		}
	}
	return sas, nil
}

// tokenize splits a raw vici message into "{", "}", "[", "]" and words.
func tokenize(s string) []string {
	var toks []string
	word := func(i, j int) {
		if j > i {
			toks = append(toks, s[i:j])
		}
	}
	start := 0
	inWord := false // a '[' inside a word ("10.0.0.0/24[tcp/80]") is open
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case c == ' ' || c == '\t':
			word(start, i)
			start, inWord = i+1, false
		case c == '[' && i > start && s[i-1] != '=':
			inWord = true
		case c == ']' && inWord:
			inWord = false
		case c == '{' || c == '}' || c == '[' || c == ']':
			word(start, i)
			toks = append(toks, string(c))
			start, inWord = i+1, false
		}
	}
	word(start, len(s))
	return toks
}

// parseSection parses toks, which start with "{", up to the matching
// "}" (the whole of toks).
func parseSection(toks []string) (*section, error) {
	if len(toks) == 0 || toks[0] != "{" {
		return nil, fmt.Errorf("%w: section does not start with '{'", ErrParse)
	}
	root := &section{}
	stack := []*section{root}
	var key string // of a list being read
	var inList bool
	for i := 1; i < len(toks); i++ {
		tok := toks[i]
		if len(stack) == 0 {
			return nil, fmt.Errorf("%w: text after the last '}'", ErrParse)
		}
		cur := stack[len(stack)-1]
		switch {
		case inList:
			switch tok {
			case "]":
				inList = false
			case "{", "}", "[":
				return nil, fmt.Errorf("%w: %q in list %s", ErrParse, tok, key)
			default:
				cur.list(key, tok)
			}
		case tok == "}":
			stack = stack[:len(stack)-1]
		case tok == "{" || tok == "]":
			return nil, fmt.Errorf("%w: unexpected %q", ErrParse, tok)
		case strings.HasSuffix(tok, "=") && i+1 < len(toks) && toks[i+1] == "[":
			key, inList = strings.TrimSuffix(tok, "="), true
			cur.list(key, "")
			i++
		case i+1 < len(toks) && toks[i+1] == "{":
			sub := &section{name: tok}
			cur.subs = append(cur.subs, sub)
			stack = append(stack, sub)
			i++
		case tok == "[":
			return nil, fmt.Errorf("%w: list without a name", ErrParse)
		default:
			k, v, ok := strings.Cut(tok, "=")
			if !ok {
				return nil, fmt.Errorf("%w: %q is neither key=value nor a section", ErrParse, tok)
			}
			if cur.kv == nil {
				cur.kv = map[string]string{}
			}
			cur.kv[k] = v
		}
	}
	if len(stack) != 0 || inList {
		return nil, fmt.Errorf("%w: unbalanced braces", ErrParse)
	}
	return root, nil
}

// list appends v to the list k ("" only creates it).
func (s *section) list(k, v string) {
	if s.lists == nil {
		s.lists = map[string][]string{}
	}
	if v == "" {
		s.lists[k] = s.lists[k][:0:0]
		return
	}
	s.lists[k] = append(s.lists[k], v)
}

// fields converts a section's values, remembering the first error.
type fields struct {
	s   *section
	err error
}

func (f *fields) str(k string) string { return f.s.kv[k] }

func (f *fields) num(k string, bits int) uint64 {
	v, ok := f.s.kv[k]
	if !ok {
		return 0
	}
	n, err := strconv.ParseUint(v, 10, bits)
	if err != nil && f.err == nil {
		f.err = fmt.Errorf("%w: %s=%q in %s", ErrParse, k, v, f.s.name)
	}
	return n
}

func (f *fields) hex(k string, bits int) uint64 {
	v, ok := f.s.kv[k]
	if !ok {
		return 0
	}
	n, err := strconv.ParseUint(v, 16, bits)
	if err != nil && f.err == nil {
		f.err = fmt.Errorf("%w: %s=%q in %s", ErrParse, k, v, f.s.name)
	}
	return n
}

func ikeFrom(s *section) (IKESA, error) {
	f := &fields{s: s}
	ike := IKESA{
		Name:         s.name,
		UniqueID:     int(f.num("uniqueid", 31)),
		Version:      int(f.num("version", 8)),
		State:        f.str("state"),
		LocalHost:    f.str("local-host"),
		LocalPort:    int(f.num("local-port", 16)),
		LocalID:      f.str("local-id"),
		RemoteHost:   f.str("remote-host"),
		RemotePort:   int(f.num("remote-port", 16)),
		RemoteID:     f.str("remote-id"),
		Initiator:    f.str("initiator") == "yes",
		InitiatorSPI: f.hex("initiator-spi", 64),
		ResponderSPI: f.hex("responder-spi", 64),
		EncrAlg:      f.str("encr-alg"),
		PRFAlg:       f.str("prf-alg"),
		DHGroup:      f.str("dh-group"),
	}
	if ike.State == "" {
		return IKESA{}, fmt.Errorf("%w: IKE SA %q without a state", ErrParse, s.name)
	}
	for _, sub := range s.subs {
		if sub.name != "child-sas" {
			continue
		}
		for _, c := range sub.subs {
			ch, err := childFrom(c)
			if err != nil {
				return IKESA{}, err
			}
			ike.Children = append(ike.Children, ch)
		}
	}
	return ike, f.err
}

func childFrom(s *section) (ChildSA, error) {
	f := &fields{s: s}
	c := ChildSA{
		Name:        f.str("name"),
		UniqueID:    int(f.num("uniqueid", 31)),
		ReqID:       int(f.num("reqid", 31)),
		State:       f.str("state"),
		Mode:        f.str("mode"),
		Protocol:    f.str("protocol"),
		Encap:       f.str("encap") == "yes",
		SPIIn:       uint32(f.hex("spi-in", 32)),
		SPIOut:      uint32(f.hex("spi-out", 32)),
		EncrAlg:     f.str("encr-alg"),
		EncrKeySize: int(f.num("encr-keysize", 16)),
		BytesIn:     f.num("bytes-in", 64),
		PacketsIn:   f.num("packets-in", 64),
		BytesOut:    f.num("bytes-out", 64),
		PacketsOut:  f.num("packets-out", 64),
		LocalTS:     s.lists["local-ts"],
		RemoteTS:    s.lists["remote-ts"],
	}
	if c.Name == "" || c.State == "" {
		return ChildSA{}, fmt.Errorf("%w: child SA %q without a name or state", ErrParse, s.name)
	}
	return c, f.err
}

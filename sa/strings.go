package sa

import (
	"encoding/json"
	"fmt"
	"strings"
)

// enumText is the shared String / parse logic of the small enums.
func enumString(names []string, v int, typ string) string {
	if v >= 0 && v < len(names) && names[v] != "" {
		return names[v]
	}
	return fmt.Sprintf("%s(%d)", typ, v)
}

func enumParse(names []string, s, typ string) (int, error) {
	s = strings.ToLower(strings.TrimSpace(s))
	for i, n := range names {
		if n != "" && n == s {
			return i, nil
		}
	}
	return 0, fmt.Errorf("sa: unknown %s %q (want one of %s)", typ, s, strings.Join(nonEmpty(names), ", "))
}

func nonEmpty(names []string) []string {
	var out []string
	for _, n := range names {
		if n != "" {
			out = append(out, n)
		}
	}
	return out
}

var (
	directionNames   = []string{"", "in", "out"}
	stateNames       = []string{"active", "soft-expired", "expired", "deleted"}
	eventNames       = []string{"", "soft-expire", "hard-expire", "seq-overflow", "acquire", "seq-limit", "deleted", "endpoint-changed"}
	limitNames       = []string{"", "bytes", "packets", "time", "sequence"}
	verdictNames     = []string{"none", "ok", "drop", "control", "bypass", "handed-off"}
	concurrencyNames = []string{"shared", "sharded", "per-cpu", "ordered"}
	actionNames      = []string{"", "protect", "bypass", "discard"}
	dropNames        = [NumDropReasons]string{
		DropNone:        "none",
		DropNoSA:        "no-sa",
		DropReplay:      "replay",
		DropAuth:        "auth",
		DropPadding:     "padding",
		DropMalformed:   "malformed",
		DropTruncated:   "truncated",
		DropExpired:     "expired",
		DropSeqOverflow: "seq-overflow",
		DropMTU:         "mtu",
		DropPolicy:      "policy",
		DropNoPolicy:    "no-policy",
		DropDiscard:     "discard",
		DropAcquire:     "acquire",
		DropFragment:    "fragment",
		DropNotESP:      "not-esp",
		DropDummy:       "dummy",
		DropNoRoom:      "no-room",
		DropTooBig:      "too-big",
		DropQueueFull:   "queue-full",
		DropInternal:    "internal",
		DropSeqLimit:    "seq-limit",
		DropEncap:       "encap",
		DropOuter:       "outer-address",
	}
)

// String returns the name of the Direction (as in JSON and the CLI).
func (d Direction) String() string { return enumString(directionNames, int(d), "Direction") }

// MarshalText implements encoding.TextMarshaler ("in", "out").
func (d Direction) MarshalText() ([]byte, error) { return []byte(d.String()), nil }

// UnmarshalText implements encoding.TextUnmarshaler.
func (d *Direction) UnmarshalText(b []byte) error {
	v, err := ParseDirection(string(b))
	*d = v
	return err
}

// ParseDirection parses "in" or "out" (also "inbound", "outbound").
func ParseDirection(s string) (Direction, error) {
	switch strings.ToLower(strings.TrimSpace(s)) {
	case "inbound":
		return In, nil
	case "outbound":
		return Out, nil
	}
	v, err := enumParse(directionNames, s, "direction")
	return Direction(v), err
}

// String returns the name of the State (as in JSON and the CLI).
func (s State) String() string { return enumString(stateNames, int(s), "State") }

// MarshalText implements encoding.TextMarshaler.
func (s State) MarshalText() ([]byte, error) { return []byte(s.String()), nil }

// UnmarshalText implements encoding.TextUnmarshaler.
func (x *State) UnmarshalText(b []byte) error {
	v, err := enumParse(stateNames, string(b), "state")
	*x = State(v)
	return err
}

// String returns the name of the EventKind (as in JSON and the CLI).
func (k EventKind) String() string { return enumString(eventNames, int(k), "EventKind") }

// MarshalText implements encoding.TextMarshaler.
func (k EventKind) MarshalText() ([]byte, error) { return []byte(k.String()), nil }

// UnmarshalText implements encoding.TextUnmarshaler.
func (x *EventKind) UnmarshalText(b []byte) error {
	v, err := enumParse(eventNames, string(b), "event kind")
	*x = EventKind(v)
	return err
}

// String returns the name of the Limit (as in JSON and the CLI).
func (l Limit) String() string { return enumString(limitNames, int(l), "Limit") }

// MarshalText implements encoding.TextMarshaler.
func (l Limit) MarshalText() ([]byte, error) { return []byte(l.String()), nil }

// UnmarshalText implements encoding.TextUnmarshaler.
func (x *Limit) UnmarshalText(b []byte) error {
	v, err := enumParse(limitNames, string(b), "limit")
	*x = Limit(v)
	return err
}

// String returns the name of the Verdict (as in JSON and the CLI).
func (v Verdict) String() string { return enumString(verdictNames, int(v), "Verdict") }

// String returns the name of the Concurrency (as in JSON and the CLI).
func (c Concurrency) String() string { return enumString(concurrencyNames, int(c), "Concurrency") }

// MarshalText implements encoding.TextMarshaler.
func (c Concurrency) MarshalText() ([]byte, error) { return []byte(c.String()), nil }

// UnmarshalText implements encoding.TextUnmarshaler.
func (c *Concurrency) UnmarshalText(b []byte) error {
	v, err := ParseConcurrency(string(b))
	*c = v
	return err
}

// ParseConcurrency parses "shared", "sharded", "per-cpu" ("percpu") or
// "ordered".
func ParseConcurrency(s string) (Concurrency, error) {
	if strings.ToLower(strings.TrimSpace(s)) == "percpu" {
		return PerCPU, nil
	}
	v, err := enumParse(concurrencyNames, s, "concurrency mode")
	return Concurrency(v), err
}

// String returns the name of the Action (as in JSON and the CLI).
func (a Action) String() string { return enumString(actionNames, int(a), "Action") }

// MarshalText implements encoding.TextMarshaler.
func (a Action) MarshalText() ([]byte, error) { return []byte(a.String()), nil }

// UnmarshalText implements encoding.TextUnmarshaler.
func (a *Action) UnmarshalText(b []byte) error {
	v, err := ParseAction(string(b))
	*a = v
	return err
}

// ParseAction parses "protect", "bypass" or "discard" (also "ipsec",
// "none" and "drop" as in setkey / ip xfrm).
func ParseAction(s string) (Action, error) {
	switch strings.ToLower(strings.TrimSpace(s)) {
	case "ipsec":
		return Protect, nil
	case "none", "allow", "pass":
		return Bypass, nil
	case "drop", "block":
		return Discard, nil
	}
	v, err := enumParse(actionNames, s, "action")
	return Action(v), err
}

// String returns the name of the DropReason (as in JSON and the CLI).
func (r DropReason) String() string { return enumString(dropNames[:], int(r), "DropReason") }

// MarshalText implements encoding.TextMarshaler.
func (r DropReason) MarshalText() ([]byte, error) { return []byte(r.String()), nil }

// ParseDropReason parses a name as printed by DropReason.String.
func ParseDropReason(s string) (DropReason, error) {
	v, err := enumParse(dropNames[:], s, "drop reason")
	return DropReason(v), err
}

// Total returns the sum of all drops.
func (c DropCounts) Total() uint64 {
	var t uint64
	for _, v := range c {
		t += v
	}
	return t
}

// MarshalJSON writes {"no-sa": n, "replay": n, ...} with every reason
// but DropNone, in DropReason order.
func (c DropCounts) MarshalJSON() ([]byte, error) {
	b := []byte{'{'}
	for r := DropReason(1); r < NumDropReasons; r++ {
		if r > 1 {
			b = append(b, ',')
		}
		b = fmt.Appendf(b, "%q:%d", r.String(), c[r])
	}
	return append(b, '}'), nil
}

// UnmarshalJSON reads what MarshalJSON writes; unknown names are errors.
func (c *DropCounts) UnmarshalJSON(b []byte) error {
	var m map[string]uint64
	if err := json.Unmarshal(b, &m); err != nil {
		return err
	}
	*c = DropCounts{}
	for k, v := range m {
		r, err := ParseDropReason(k)
		if err != nil {
			return err
		}
		c[r] = v
	}
	return nil
}

// Error implements error.
func (e *ConfigError) Error() string {
	s := "sa: invalid config: " + e.Field + ": " + e.Reason
	if e.Err != nil {
		s += ": " + e.Err.Error()
	}
	return s
}

// Is makes errors.Is(err, ErrInvalidConfig) true.
func (e *ConfigError) Is(target error) bool { return target == ErrInvalidConfig }

// Unwrap returns the underlying error, if any.
func (e *ConfigError) Unwrap() error { return e.Err }

func cfgErr(field, reason string, err error) error {
	return &ConfigError{Field: field, Reason: reason, Err: err}
}

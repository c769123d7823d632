package sa

import (
	"encoding/json"
	"fmt"
	"log/slog"
	"math"
	"net/netip"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"github.com/espxdp/espxdp/esp"
	"github.com/espxdp/espxdp/sa/replay"
)

// cacheLine is the padding unit that keeps data written by different
// cores on different lines (128 covers adjacent-line prefetch on x86 and
// the 128-byte lines of some arm64 parts).
const cacheLine = 128

// SA is one Security Association: an esp.Cipher plus everything the
// data path needs around it (SPI, endpoints, sequence counter, replay
// window, lifetimes, counters). Create it with New. All methods are safe
// for concurrent use; the data path uses it through a Processor.
//
// An SA never prints its keys: String, Format, GoString, LogValue and
// MarshalJSON show the configuration without them (MarshalJSON writes
// Stats).
type SA struct {
	// Immutable after New.
	cfg       Config // Key and AuthKey are nil
	spi       uint32
	dir       Direction
	mode      esp.Mode
	esn       bool
	cipher    *esp.Cipher
	transform esp.Transform
	ipv6      bool // outer family (tunnel), or family of Remote (transport)
	selectors []Selector
	created   int64 // unix nanos
	hashOwner uint32
	growable  bool // inbound with the default window: a Processor may grow it (Grow)

	_ [cacheLine]byte

	// Written by workers.
	seq       atomic.Uint64 // outbound: last sequence number handed out
	busy      atomic.Int32  // runs of packets in flight (see Close)
	state     atomic.Uint32 // State
	expLimit  atomic.Uint32 // Limit that expired the SA
	usedPkts  atomic.Uint64 // lifetime accounting
	usedBytes atomic.Uint64
	rxTop     atomic.Uint64 // inbound: highest authenticated sequence number

	_ [cacheLine]byte

	mu     sync.Mutex // guards win in the Shared and Ordered concurrency modes
	win    replay.Window
	winLen atomic.Int32 // win.Size(), for Stats; 0: disabled or outbound

	_ [cacheLine]byte

	// Rarely written.
	pathMTU atomic.Int32
	ptMTU   [2]atomic.Int32 // plaintext MTU for IPv4, IPv6 packets; 0: no check
	ctrs    atomic.Pointer[ctrTable]
	events  atomic.Pointer[EventFunc]
	tunnel  atomic.Pointer[Tunnel]
	owner   atomic.Pointer[SAD]
	lastEP  atomic.Pointer[netip.AddrPort] // FloatRemote: last endpoint reported (outer.go)
	binds   tunnelSet                      // tunnels the SA was bound to (tunnel.go)
	closeMu sync.Mutex

	// Mutable attributes and lifecycle state (update.go, seqstate.go).
	attrs    atomic.Pointer[attrs] // outer header and lifetimes; replaced whole by Update
	updMu    sync.Mutex            // serialises Update, SetSeqLimit and SAD.Replace's carry-over
	seqLimit atomic.Uint64         // outbound: highest sequence number usable; 0: none
	seqWarn  atomic.Uint64         // outbound: raise EventSeqLimit at this number; 0: raised or none
	held     atomic.Bool           // SAD.Replace is carrying state into this SA: workers keep off
	lastUsed atomic.Int64          // unix nanos of the last run that processed a packet, coarse
	keyFP    [32]byte              // keyed fingerprint of the key material (keyFingerprint)
	retireTo atomic.Pointer[SAD]   // the SAD it left, which remembers its key once it is closed (retired.go)
	closed   atomic.Bool           // Close finished: no worker uses it, Seq and ReplayState are final
}

// New validates cfg and builds an SA. An invalid field yields a
// *ConfigError naming it (errors.Is(err, ErrInvalidConfig) holds; key
// size errors also match esp.ErrKeySize). Key material is copied into
// the esp.Cipher; New keeps no other copy and clears the temporary one
// it makes.
func New(cfg Config) (*SA, error) {
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	key := append([]byte(nil), cfg.Key...)
	auth := append([]byte(nil), cfg.AuthKey...)
	c, err := esp.New(esp.Config{Transform: cfg.Transform, Key: key, AuthKey: auth, ESN: cfg.ESN, TFCPadTo: cfg.TFCPadTo})
	clear(key)
	clear(auth)
	if err != nil {
		field := "Transform"
		switch {
		case len(cfg.Key) != cfg.Transform.KeyLen():
			field = "Key"
		case len(cfg.AuthKey) != cfg.Transform.AuthKeyLen():
			field = "AuthKey"
		}
		return nil, cfgErr(field, "rejected by esp", err)
	}
	s := &SA{
		spi:       cfg.SPI,
		dir:       cfg.Direction,
		mode:      cfg.Mode,
		esn:       cfg.ESN,
		cipher:    c,
		transform: cfg.Transform,
		hashOwner: ownerHash(cfg.SPI),
		keyFP:     keyFingerprint(cfg.Transform, cfg.Key, cfg.AuthKey),
	}
	s.cfg = cfg
	s.cfg.Key, s.cfg.AuthKey = nil, nil
	s.cfg.Selectors = append([]Selector(nil), cfg.Selectors...)
	s.selectors = s.cfg.Selectors
	if s.cfg.Created.IsZero() {
		s.cfg.Created = time.Now()
	}
	s.created = s.cfg.Created.UnixNano()
	s.attrs.Store(s.newAttrs(esp.Outer{Src: cfg.Local, Dst: cfg.Remote, UDP: cfg.UDPEncap,
		SrcPort: cfg.LocalPort, DstPort: cfg.RemotePort, TTL: cfg.TTL, DF: cfg.DF},
		cfg.SoftLifetime, cfg.HardLifetime))
	if cfg.UDPEncap {
		if s.cfg.LocalPort == 0 {
			s.cfg.LocalPort = esp.NATTPort
		}
		if s.cfg.RemotePort == 0 {
			s.cfg.RemotePort = esp.NATTPort
		}
	}
	s.ipv6 = cfg.Remote.IsValid() && cfg.Remote.Is6() && !cfg.Remote.Is4In6() ||
		cfg.ESPOnly && !cfg.Remote.IsValid() && cfg.Local.IsValid() && cfg.Local.Is6()
	if cfg.Direction == In {
		w := cfg.ReplayWindow
		switch w {
		case 0:
			w = DefaultReplayWindow
		case ReplayDisabled:
			w = 0
		}
		s.winLen.Store(int32(w))
		s.growable = cfg.ReplayWindow == 0 && w > 0
		if err := s.win.Init(w, cfg.ESN); err != nil {
			c.Wipe()
			return nil, cfgErr("ReplayWindow", err.Error(), nil)
		}
	}
	if err := s.SetPathMTU(cfg.PathMTU); err != nil {
		c.Wipe()
		return nil, err
	}
	s.initState(&cfg)
	return s, nil
}

func (cfg *Config) validate() error {
	switch {
	case cfg.SPI == 0:
		return cfgErr("SPI", "0 is reserved (RFC 4303 §2.1)", nil)
	case cfg.SPI < MinSPI:
		return cfgErr("SPI", fmt.Sprintf("%d: 1..255 are reserved by IANA (RFC 4303 §2.1)", cfg.SPI), nil)
	case cfg.Direction != In && cfg.Direction != Out:
		return cfgErr("Direction", fmt.Sprintf("%v (want In or Out)", cfg.Direction), nil)
	case cfg.Mode != esp.Tunnel && cfg.Mode != esp.Transport:
		return cfgErr("Mode", fmt.Sprintf("%v (want esp.Tunnel or esp.Transport)", cfg.Mode), nil)
	case cfg.Transform.IsZero():
		return cfgErr("Transform", "not set (use esp.ParseTransform)", nil)
	case len(cfg.Key) != cfg.Transform.KeyLen():
		return cfgErr("Key", fmt.Sprintf("%s needs %d bytes (key plus salt/nonce where the RFC has one), got %d",
			cfg.Transform, cfg.Transform.KeyLen(), len(cfg.Key)), esp.ErrKeySize)
	case len(cfg.AuthKey) != cfg.Transform.AuthKeyLen():
		return cfgErr("AuthKey", fmt.Sprintf("%s needs %d bytes, got %d",
			cfg.Transform, cfg.Transform.AuthKeyLen(), len(cfg.AuthKey)), esp.ErrKeySize)
	case cfg.ReplayWindow < ReplayDisabled || cfg.ReplayWindow > MaxReplayWindow:
		return cfgErr("ReplayWindow", fmt.Sprintf("%d (want %d to disable, 0 for the default %d, or 1..%d)",
			cfg.ReplayWindow, ReplayDisabled, DefaultReplayWindow, MaxReplayWindow), nil)
	case cfg.TFCPadTo < 0 || cfg.TFCPadTo > 65535:
		return cfgErr("TFCPadTo", fmt.Sprintf("%d out of range", cfg.TFCPadTo), nil)
	case cfg.TFCPadTo > 0 && cfg.Mode == esp.Transport:
		return cfgErr("TFCPadTo", "TFC padding needs tunnel mode: a transport payload carries no length to strip it by (RFC 4303 §2.4)", nil)
	case cfg.PinWorker && cfg.Worker < 0:
		return cfgErr("Worker", fmt.Sprintf("%d is negative", cfg.Worker), nil)
	}
	l, r := cfg.Local, cfg.Remote
	if cfg.Mode == esp.Tunnel && !cfg.ESPOnly && (!l.IsValid() || !r.IsValid()) {
		return cfgErr("Local/Remote", "tunnel mode needs both endpoint addresses", nil)
	}
	if l.IsValid() && r.IsValid() && l.Unmap().Is4() != r.Unmap().Is4() {
		return cfgErr("Local/Remote", fmt.Sprintf("%v and %v are of different families", l, r), nil)
	}
	if l.IsValid() && l.Unmap().Is4() != l.Is4() || r.IsValid() && r.Unmap().Is4() != r.Is4() {
		return cfgErr("Local/Remote", "IPv4-mapped IPv6 addresses are not allowed; use the IPv4 form", nil)
	}
	if err := checkLifetimes(cfg.SoftLifetime, cfg.HardLifetime); err != nil {
		return err
	}
	if err := cfg.validateState(); err != nil {
		return err
	}
	for i, sel := range cfg.Selectors {
		if err := sel.validate(); err != nil {
			return cfgErr(fmt.Sprintf("Selectors[%d]", i), err.Error(), nil)
		}
	}
	return nil
}

func checkLifetimes(soft, hard Lifetime) error {
	if soft.Time < 0 {
		return cfgErr("SoftLifetime.Time", "negative", nil)
	}
	if hard.Time < 0 {
		return cfgErr("HardLifetime.Time", "negative", nil)
	}
	if soft.Bytes != 0 && hard.Bytes != 0 && soft.Bytes > hard.Bytes {
		return cfgErr("SoftLifetime.Bytes", fmt.Sprintf("%d exceeds the hard limit %d", soft.Bytes, hard.Bytes), nil)
	}
	if soft.Packets != 0 && hard.Packets != 0 && soft.Packets > hard.Packets {
		return cfgErr("SoftLifetime.Packets", fmt.Sprintf("%d exceeds the hard limit %d", soft.Packets, hard.Packets), nil)
	}
	if soft.Time != 0 && hard.Time != 0 && soft.Time > hard.Time {
		return cfgErr("SoftLifetime.Time", fmt.Sprintf("%v exceeds the hard limit %v", soft.Time, hard.Time), nil)
	}
	return nil
}

// SPI returns the SA's SPI.
func (s *SA) SPI() uint32 { return s.spi }

// Name returns Config.Name.
func (s *SA) Name() string { return s.cfg.Name }

// Direction returns In or Out.
func (s *SA) Direction() Direction { return s.dir }

// Config returns the configuration the SA was built from, without keys
// (Key and AuthKey are nil) and with defaults filled in (Created, NAT-T
// ports). The mutable attributes (lifetimes, PathMTU, Remote,
// RemotePort, TTL, DF, SeqLimit) show their current values; Replay is
// nil (see ReplayState).
func (s *SA) Config() Config {
	c := s.cfg
	s.attrs.Load().apply(&c)
	c.PathMTU = s.PathMTU()
	if s.dir == Out {
		c.SeqLimit = s.seqLimit.Load()
	}
	c.Selectors = append([]Selector(nil), s.cfg.Selectors...)
	return c
}

// State returns the life-cycle state.
func (s *SA) State() State { return State(s.state.Load()) }

// Tunnel returns the tunnel the SA was added to with Tunnel.AddInbound
// or Tunnel.SetOutbound, or nil.
func (s *SA) Tunnel() *Tunnel { return s.tunnel.Load() }

// SetEvents sets the function that receives this SA's lifetime events.
// SAD.Add sets it to the SAD's SADOptions.Events when that is not nil.
func (s *SA) SetEvents(fn EventFunc) {
	if fn == nil {
		s.events.Store(nil)
		return
	}
	s.events.Store(&fn)
}

// PathMTU returns the path MTU (0: unknown).
func (s *SA) PathMTU() int { return int(s.pathMTU.Load()) }

// PlaintextMTU is the largest packet (inner IP packet in tunnel mode, the
// original IP packet in transport mode) that fits the path MTU after
// encapsulation, for the SA's address family; 0 when PathMTU is unknown.
func (s *SA) PlaintextMTU() int {
	if s.ipv6 {
		return int(s.ptMTU[1].Load())
	}
	return int(s.ptMTU[0].Load())
}

// SetPathMTU updates the path MTU (e.g. from an ICMP "fragmentation
// needed" / "packet too big" received for the outer packets); 0 means
// unknown and turns the MTU check off. It is safe while workers run.
func (s *SA) SetPathMTU(mtu int) error {
	s.updMu.Lock() // keeps pathMTU and ptMTU consistent with Update
	defer s.updMu.Unlock()
	v, err := s.plaintextMTUs(mtu)
	if err != nil {
		return err
	}
	s.storeMTU(mtu, v)
	return nil
}

// storeMTU publishes a path MTU and its plaintext MTUs (zeros for mtu
// 0), and caps TFC padding at the plaintext MTU so that a padded packet
// fits the path MTU too (updMu held).
func (s *SA) storeMTU(mtu int, v [2]int) {
	s.pathMTU.Store(int32(mtu))
	s.ptMTU[0].Store(int32(max(v[0], 0)))
	s.ptMTU[1].Store(int32(max(v[1], 0)))
	if s.cfg.TFCPadTo > 0 {
		pt := v[0]
		if s.ipv6 {
			pt = v[1]
		}
		s.cipher.SetTFCLimit(max(pt, 0))
	}
}

// plaintextMTU is esp.Cipher.PlaintextMTU computed from the transform
// alone, so that it can be evaluated after the cipher was wiped.
func plaintextMTU(t esp.Transform, pathMTU int, mode esp.Mode, ipv6, udp bool) int {
	ipLen := 20
	if ipv6 {
		ipLen = 40
	}
	fixed := ipLen + esp.HeaderLen + t.IVLen() + t.ICVLen()
	if udp {
		fixed += esp.UDPHeaderLen
	}
	a := max(t.BlockSize(), 4)
	p := (pathMTU-fixed)/a*a - 2
	if p < 0 {
		return 0
	}
	if mode == esp.Transport {
		p += ipLen
	}
	return p
}

// Expire forces the SA into soft (hard false) or hard expiry, as if a
// lifetime had run out, and sends the event. The control plane uses it
// to retire an SA early.
func (s *SA) Expire(hard bool) {
	if hard {
		s.expireHard(LimitNone, time.Now().UnixNano(), nil)
	} else {
		s.expireSoft(LimitNone, time.Now().UnixNano(), nil)
	}
}

// Close retires the SA: it moves to StateDeleted so that workers stop
// using it, waits until no worker is inside a batch that uses it, then
// wipes its keys (esp.Cipher.Wipe). SAD.Delete and SAD.Replace call it.
// An EventFunc may call it (or SAD.Delete): workers deliver events only
// after they released their SAs, so it waits for the other workers'
// batches, never for its own. Closing twice is harmless. The sequence
// counter and the replay window survive it (Seq, ReplayState).
func (s *SA) Close() {
	if !s.close() {
		return
	}
	// Invariant (retired keys, retired.go): the SAD s left learns its
	// final counter or window; closed is set before retireTo is swapped.
	s.closed.Store(true)
	if d := s.retireTo.Swap(nil); d != nil {
		d.retire(s)
	}
}

// close is Close without the retirement; it reports whether it closed s
// (false: closed before).
func (s *SA) close() bool {
	s.closeMu.Lock()
	defer s.closeMu.Unlock()
	if State(s.state.Swap(uint32(StateDeleted))) == StateDeleted {
		return false
	}
	// A worker increments busy before it re-checks the state, so once
	// busy reads zero after the Swap above, no worker can still be
	// using the cipher.
	for i := 0; s.busy.Load() != 0; i++ {
		if i < 100 {
			runtime.Gosched()
		} else {
			time.Sleep(10 * time.Microsecond)
		}
	}
	// The replay window and the sequence counter are kept (they are not
	// secret): ReplayState and Seq still report them, so a daemon can
	// persist them after deleting its SAs.
	s.cipher.Wipe()
	return true
}

// ---- lifetimes and events ----

// eventSink collects events raised inside a batch; the worker delivers
// them after it released the SAs, so that a handler may delete them.
type eventSink interface{ raise(fn EventFunc, e Event) }

func (s *SA) emit(sink eventSink, e Event) {
	p := s.events.Load()
	if p == nil {
		return
	}
	e.SA, e.SPI, e.Name, e.Direction, e.Child = s, s.spi, s.cfg.Name, s.dir, s.cfg.Child
	if sink != nil {
		sink.raise(*p, e)
		return
	}
	(*p)(e)
}

func (s *SA) expireSoft(l Limit, now int64, sink eventSink) {
	if s.state.CompareAndSwap(uint32(StateActive), uint32(StateSoftExpired)) {
		s.emit(sink, Event{Kind: EventSoftExpire, Time: time.Unix(0, now), Limit: l})
	}
}

func (s *SA) expireHard(l Limit, now int64, sink eventSink) {
	// Invariant: soft expiry always precedes hard expiry by a lifetime,
	// even when one run of packets (or one clock step) crosses both
	// limits: an IKE daemon always gets its chance to rekey first.
	if l == LimitBytes || l == LimitPackets || l == LimitTime {
		s.expireSoft(l, now, sink)
	}
	for {
		st := s.state.Load()
		if st >= uint32(StateExpired) {
			return
		}
		if s.state.CompareAndSwap(st, uint32(StateExpired)) {
			break
		}
	}
	s.expLimit.Store(uint32(l))
	kind := EventHardExpire
	if l == LimitSequence {
		kind = EventSeqOverflow
	}
	s.emit(sink, Event{Kind: kind, Time: time.Unix(0, now), Limit: l})
}

// checkTime expires the SA by time if due.
func (s *SA) checkTime(a *attrs, now int64, sink eventSink) {
	if a.hardAt != 0 && now >= a.hardAt {
		s.expireHard(LimitTime, now, sink)
	} else if a.softAt != 0 && now >= a.softAt {
		s.expireSoft(LimitTime, now, sink)
	}
}

// hardReached reports whether the hard packet or byte limit is reached
// counting pkts and bytes not yet added to the SA's totals.
func (s *SA) hardReached(a *attrs, pkts, bytes uint64) Limit {
	if a.hard.Packets != 0 && s.usedPkts.Load()+pkts >= a.hard.Packets {
		return LimitPackets
	}
	if a.hard.Bytes != 0 && s.usedBytes.Load()+bytes >= a.hard.Bytes {
		return LimitBytes
	}
	return LimitNone
}

// account adds a run of packets to the lifetime totals and fires soft /
// hard expiry when they cross a limit.
func (s *SA) account(pkts, bytes uint64, now int64, sink eventSink) {
	if pkts == 0 {
		return
	}
	p := s.usedPkts.Add(pkts)
	b := s.usedBytes.Add(bytes)
	s.checkUsage(s.attrs.Load(), p, b, now, sink)
}

// checkUsage expires the SA if the totals p and b reach a limit of a.
func (s *SA) checkUsage(a *attrs, p, b uint64, now int64, sink eventSink) {
	switch {
	case a.hard.Packets != 0 && p >= a.hard.Packets:
		s.expireHard(LimitPackets, now, sink)
	case a.hard.Bytes != 0 && b >= a.hard.Bytes:
		s.expireHard(LimitBytes, now, sink)
	case a.soft.Packets != 0 && p >= a.soft.Packets:
		s.expireSoft(LimitPackets, now, sink)
	case a.soft.Bytes != 0 && b >= a.soft.Bytes:
		s.expireSoft(LimitBytes, now, sink)
	}
}

// expiredReason is the drop reason for a packet on an expired SA.
// expired reports whether the SA hard-expired (lifetime or sequence
// overflow), even if it was deleted afterwards.
func (s *SA) expired() bool {
	st := State(s.state.Load())
	return st == StateExpired || st == StateDeleted && Limit(s.expLimit.Load()) != LimitNone
}

func (s *SA) expiredReason() DropReason {
	if Limit(s.expLimit.Load()) == LimitSequence {
		return DropSeqOverflow
	}
	return DropExpired
}

// ---- replay ----

func (s *SA) replayCheck(lo uint32, locked bool) (uint64, bool) {
	if locked {
		s.mu.Lock()
		seq, ok := s.win.Check(lo)
		s.mu.Unlock()
		return seq, ok
	}
	return s.win.Check(lo)
}

func (s *SA) replayUpdate(seq uint64, locked bool) bool {
	if locked {
		s.mu.Lock()
		ok := s.win.Update(seq)
		s.mu.Unlock()
		return ok
	}
	return s.win.Update(seq)
}

// ---- stats ----

// Stats returns a snapshot of the counters, summed over all workers.
func (s *SA) Stats() Stats { return s.StatsAt(time.Now()) }

// StatsAt is Stats with the time used for the age and the remaining
// time lifetimes given (for a fake clock).
func (s *SA) StatsAt(now time.Time) Stats {
	st := Stats{
		Name:         s.cfg.Name,
		SPI:          s.spi,
		Child:        s.cfg.Child,
		Direction:    s.dir,
		Mode:         s.mode.String(),
		Transform:    s.transform.Name(),
		Local:        s.cfg.Local,
		Remote:       s.cfg.Remote,
		UDPEncap:     s.cfg.UDPEncap,
		ESN:          s.esn,
		State:        s.State(),
		ReplayWindow: int(s.winLen.Load()),
		PathMTU:      s.PathMTU(),
		PlaintextMTU: s.PlaintextMTU(),
	}
	if s.cfg.UDPEncap {
		st.LocalPort, st.RemotePort = s.cfg.LocalPort, s.cfg.RemotePort
	}
	if s.dir == Out {
		st.Seq = s.seq.Load()
		if !s.esn {
			st.Seq = min(st.Seq, math.MaxUint32)
		}
	} else {
		st.Seq = s.rxTop.Load()
	}
	var c [nCtr]uint64
	if t := s.ctrs.Load(); t != nil {
		for i := range t.blocks {
			if b := t.blocks[i].Load(); b != nil {
				for j := range c {
					c[j] += b.v[j].Load()
				}
			}
		}
	}
	st.EncapsPkts, st.EncryptPkts, st.DigestPkts = c[cEncPkts], c[cEncPkts], c[cEncPkts]
	st.EncapsBytes = c[cEncBytes]
	st.DecapsPkts, st.DecapsBytes = c[cDecPkts], c[cDecBytes]
	st.DecryptPkts, st.VerifyPkts = c[cDecrypt], c[cVerify]
	copy(st.Drops[:], c[cDrop:])
	n := now.UnixNano()
	st.Age = time.Duration(n - s.created)
	used := [2]uint64{s.usedBytes.Load(), s.usedPkts.Load()}
	rem := func(l Lifetime, at int64) Remaining {
		r := Remaining{Bytes: Unlimited, Packets: Unlimited, Seconds: Unlimited}
		if l.Bytes != 0 {
			r.Bytes = int64(min(l.Bytes-min(used[0], l.Bytes), math.MaxInt64))
		}
		if l.Packets != 0 {
			r.Packets = int64(min(l.Packets-min(used[1], l.Packets), math.MaxInt64))
		}
		if at != 0 {
			r.Seconds = max(0, (at-n+int64(time.Second)-1)/int64(time.Second))
		}
		return r
	}
	a := s.attrs.Load()
	st.SoftRemaining = rem(a.soft, a.softAt)
	st.HardRemaining = rem(a.hard, a.hardAt)
	st.Remote = a.outer.Dst
	if s.cfg.UDPEncap {
		st.RemotePort = a.remotePort
	}
	st.SeqLimit = s.seqLimit.Load()
	st.LastUsed = s.LastUsed()
	return st
}

// ---- printing without keys ----

// configView is Config without key material, for printing.
type configView struct {
	Name                  string     `json:"name,omitempty"`
	SPI                   string     `json:"spi"`
	Direction             Direction  `json:"direction"`
	Mode                  string     `json:"mode"`
	Local                 netip.Addr `json:"local,omitzero"`
	Remote                netip.Addr `json:"remote,omitzero"`
	UDPEncap              bool       `json:"udp_encap,omitempty"`
	LocalPort, RemotePort uint16     `json:",omitempty"`
	Transform             string     `json:"transform"`
	Key                   string     `json:"key,omitempty"`
	AuthKey               string     `json:"auth_key,omitempty"`
	ESN                   bool       `json:"esn,omitempty"`
	ReplayWindow          int        `json:"replay_window,omitempty"`
	SoftLifetime          Lifetime   `json:"soft_lifetime,omitzero"`
	HardLifetime          Lifetime   `json:"hard_lifetime,omitzero"`
	PathMTU               int        `json:"path_mtu,omitempty"`
	TTL                   uint8      `json:"ttl,omitempty"`
	DF                    bool       `json:"df,omitempty"`
	TFCPadTo              int        `json:"tfc_pad_to,omitempty"`
	Selectors             []Selector `json:"selectors,omitempty"`
	Worker                int        `json:"worker,omitempty"`
	PinWorker             bool       `json:"pin_worker,omitempty"`
	Created               time.Time  `json:"created,omitzero"`
	InitialSeq            uint64     `json:"initial_seq,omitempty"`
	SeqLimit              uint64     `json:"seq_limit,omitempty"`
	ESPOnly               bool       `json:"esp_only,omitempty"`
	Child                 ChildID    `json:"child,omitempty"`
	FloatRemote           bool       `json:"float_remote,omitempty"`
}

func redacted(k []byte) string {
	if len(k) == 0 {
		return ""
	}
	return fmt.Sprintf("[redacted %d bytes]", len(k))
}

func (cfg Config) view() configView {
	return configView{
		Name: cfg.Name, SPI: fmt.Sprintf("0x%08x", cfg.SPI), Direction: cfg.Direction,
		Mode: cfg.Mode.String(), Local: cfg.Local, Remote: cfg.Remote,
		UDPEncap: cfg.UDPEncap, LocalPort: cfg.LocalPort, RemotePort: cfg.RemotePort,
		Transform: cfg.Transform.Name(), Key: redacted(cfg.Key), AuthKey: redacted(cfg.AuthKey),
		ESN: cfg.ESN, ReplayWindow: cfg.ReplayWindow, SoftLifetime: cfg.SoftLifetime,
		HardLifetime: cfg.HardLifetime, PathMTU: cfg.PathMTU, TTL: cfg.TTL, DF: cfg.DF,
		TFCPadTo: cfg.TFCPadTo, Selectors: cfg.Selectors, Worker: cfg.Worker,
		PinWorker: cfg.PinWorker, Created: cfg.Created,
		InitialSeq: cfg.InitialSeq, SeqLimit: cfg.SeqLimit, ESPOnly: cfg.ESPOnly,
		Child: cfg.Child, FloatRemote: cfg.FloatRemote,
	}
}

// String describes cfg with the keys redacted.
func (cfg Config) String() string { return fmt.Sprintf("%+v", cfg.view()) }

// GoString is String, so that %#v does not print keys either.
func (cfg Config) GoString() string { return "sa.Config" + cfg.String() }

// Format implements fmt.Formatter so that every verb redacts the keys:
// %v, %+v and %#v print the fields, %q quotes String, any other verb
// prints String; width, precision and '-' apply to the whole text.
func (cfg Config) Format(f fmt.State, verb rune) {
	var s string
	switch {
	case verb == 'v' && f.Flag('#'):
		s = cfg.GoString()
	case verb == 'v' && !f.Flag('+'):
		s = fmt.Sprintf("%v", cfg.view())
	case verb == 'q':
		s = fmt.Sprintf("%q", cfg.String())
	default:
		s = cfg.String()
	}
	writePadded(f, s)
}

// writePadded writes s honouring the width, precision and '-' flag of f.
func writePadded(f fmt.State, s string) {
	format := "%"
	if f.Flag('-') {
		format += "-"
	}
	if w, ok := f.Width(); ok {
		format += fmt.Sprint(w)
	}
	if p, ok := f.Precision(); ok {
		format += "." + fmt.Sprint(p)
	}
	fmt.Fprintf(f, format+"s", s)
}

// LogValue implements slog.LogValuer without the keys.
func (cfg Config) LogValue() slog.Value { return slog.StringValue(cfg.String()) }

// MarshalJSON writes the configuration with the keys redacted.
func (cfg Config) MarshalJSON() ([]byte, error) { return json.Marshal(cfg.view()) }

// String describes the SA (never its keys).
func (s *SA) String() string {
	return fmt.Sprintf("SA{%q spi=0x%08x %v %v %v %v->%v state=%v}", s.cfg.Name, s.spi, s.dir, s.mode,
		s.transform, s.cfg.Local, s.attrs.Load().outer.Dst, s.State())
}

// GoString is String.
func (s *SA) GoString() string { return s.String() }

// Format implements fmt.Formatter: every verb prints String.
func (s *SA) Format(f fmt.State, verb rune) { writePadded(f, s.String()) }

// LogValue implements slog.LogValuer.
func (s *SA) LogValue() slog.Value { return slog.StringValue(s.String()) }

// MarshalJSON writes the SA's Stats.
func (s *SA) MarshalJSON() ([]byte, error) { return json.Marshal(s.Stats()) }

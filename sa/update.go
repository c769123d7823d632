package sa

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"io"
	"net/netip"
	"runtime"
	"sync"
	"time"

	"github.com/espxdp/espxdp/esp"
)

// Changes lists the mutable attributes of an SA for SA.Update. A nil
// field leaves the attribute as it is.
//
// TFC padding (Config.TFCPadTo) is not among them: it lives inside the
// esp.Cipher, which workers read without synchronisation, so changing it
// needs a new SA (with a new key, or SAD.Replace with the same key,
// which carries the sequence number and replay window over).
type Changes struct {
	// SoftLifetime and HardLifetime replace the lifetimes; the usage so
	// far (bytes, packets, time since Created) counts against the new
	// limits.
	SoftLifetime, HardLifetime *Lifetime
	// PathMTU is as for SA.SetPathMTU (0: unknown).
	PathMTU *int
	// Remote is the new peer address (the outer destination of outbound
	// tunnel-mode packets), e.g. after a NAT rebinding or MOBIKE. It must
	// be of the SA's address family.
	Remote *netip.Addr
	// RemotePort is the new peer UDP port of a NAT-T SA (UDPEncap); 0
	// means 4500. Setting it on an SA without UDPEncap is an error.
	RemotePort *uint16
	// TTL is the outer TTL / hop limit in tunnel mode (0: 64).
	TTL *uint8
	// DF sets Don't Fragment on outer IPv4 headers in tunnel mode.
	DF *bool
}

// attrs holds an SA's mutable attributes. It is immutable once
// published: SA.Update builds a new one and stores it with one atomic
// pointer store, and a worker loads the pointer once per run of packets
// (Worker.use), so the data path pays neither a lock nor a per-packet
// load, and a run never sees half an update.
type attrs struct {
	outer          esp.Outer
	remotePort     uint16 // effective (4500 when UDPEncap and not set)
	soft, hard     Lifetime
	softAt, hardAt int64 // unix nanos, 0: none
}

func (s *SA) newAttrs(o esp.Outer, soft, hard Lifetime) *attrs {
	a := &attrs{outer: o, soft: soft, hard: hard, remotePort: o.DstPort}
	if o.UDP && a.remotePort == 0 {
		a.remotePort = esp.NATTPort
	}
	if d := soft.Time; d > 0 {
		a.softAt = s.created + int64(d)
	}
	if d := hard.Time; d > 0 {
		a.hardAt = s.created + int64(d)
	}
	return a
}

// apply writes a's values into the corresponding Config fields.
func (a *attrs) apply(c *Config) {
	c.Remote = a.outer.Dst
	if c.UDPEncap {
		c.RemotePort = a.remotePort
	}
	c.TTL, c.DF = a.outer.TTL, a.outer.DF
	c.SoftLifetime, c.HardLifetime = a.soft, a.hard
}

// plaintextMTUs computes the plaintext MTUs (IPv4, IPv6 packets) for a
// path MTU, or the error SetPathMTU returns. mtu 0 gives zeros.
func (s *SA) plaintextMTUs(mtu int) ([2]int, error) {
	var v [2]int
	if mtu == 0 {
		return v, nil
	}
	min := 68
	if s.ipv6 {
		min = 1280
	}
	if mtu < min || mtu > 65535 {
		return v, cfgErr("PathMTU", fmt.Sprintf("%d (want 0 or %d..65535)", mtu, min), nil)
	}
	udp := s.cfg.UDPEncap || s.cfg.ESPOnly
	for i, v6 := range []bool{false, true} {
		if s.mode == esp.Tunnel {
			v6 = s.ipv6
		}
		v[i] = plaintextMTU(s.transform, mtu, s.mode, v6, udp)
	}
	if v[0] <= 0 && v[1] <= 0 || s.mode == esp.Tunnel && v[0] <= 0 {
		return v, cfgErr("PathMTU", fmt.Sprintf("%d leaves no room for a payload", mtu), nil)
	}
	return v, nil
}

// eventList is an eventSink that keeps events for delivery after a lock
// is released.
type eventList []pendingEvent

func (l *eventList) raise(fn EventFunc, e Event) { *l = append(*l, pendingEvent{fn, e}) }

func (l eventList) deliver() {
	for _, p := range l {
		p.fn(p.e)
	}
}

// now returns the time of the SA's SAD clock, or time.Now.
func (s *SA) now() time.Time {
	if d := s.owner.Load(); d != nil {
		return d.clock()
	}
	return time.Now()
}

// Update changes mutable attributes in place, while workers use the SA:
// the sequence number, the replay window, the counters and the lifetime
// usage stay. Everything is validated first; on error nothing changes
// (the error is a *ConfigError naming the field). An SA that was
// deleted (closed) returns ErrClosed.
//
// Workers pick the change up at their next run of packets of the SA
// (at most one batch later). Config and Stats show the new values.
//
// New lifetimes are checked at once against the usage so far, with the
// time of the SA's SAD clock (time.Now outside a SAD): an SA whose new
// limits are already reached expires now (soft before hard, events sent
// from Update after its locks are released). Expiry is never undone: a
// soft-expired SA stays soft-expired even if its new soft limit lies
// ahead (the rekey it asked for is under way), and a hard-expired SA
// stays expired.
func (s *SA) Update(c Changes) error {
	var ev eventList
	err := s.update(c, &ev)
	ev.deliver()
	return err
}

func (s *SA) update(c Changes, ev *eventList) error {
	// A new peer endpoint of an outbound SA changes its key in the SAD
	// (SPI, Remote, RemotePort): take the SAD's lock first (the order
	// SAD.Replace uses, d.mu then updMu) so that the check below and the
	// change are one step. Invariant: no two outbound SAs of a SAD share
	// SPI, Remote and RemotePort.
	var d *SAD
	if s.dir == Out && (c.Remote != nil || c.RemotePort != nil) {
		if d = s.owner.Load(); d != nil {
			d.mu.Lock()
			defer d.mu.Unlock()
			if s.owner.Load() != d { // removed meanwhile
				d = nil
			}
		}
	}
	s.updMu.Lock()
	defer s.updMu.Unlock()
	if s.State() == StateDeleted {
		return fmt.Errorf("%w: %v", ErrClosed, s)
	}
	cur := s.attrs.Load()
	outer, soft, hard := cur.outer, cur.soft, cur.hard
	if c.SoftLifetime != nil {
		soft = *c.SoftLifetime
	}
	if c.HardLifetime != nil {
		hard = *c.HardLifetime
	}
	if err := checkLifetimes(soft, hard); err != nil {
		return err
	}
	if c.Remote != nil {
		r := *c.Remote
		switch {
		case !r.IsValid():
			return cfgErr("Remote", "not a valid address", nil)
		case r.Unmap().Is4() != r.Is4():
			return cfgErr("Remote", "IPv4-mapped IPv6 addresses are not allowed; use the IPv4 form", nil)
		case r.Is6() != s.ipv6:
			return cfgErr("Remote", fmt.Sprintf("%v: the SA's address family cannot change", r), nil)
		}
		outer.Dst = r
	}
	if c.RemotePort != nil {
		if !s.cfg.UDPEncap {
			return cfgErr("RemotePort", "the SA does not use UDP encapsulation", nil)
		}
		outer.DstPort = *c.RemotePort
	}
	if c.TTL != nil {
		outer.TTL = *c.TTL
	}
	if c.DF != nil {
		outer.DF = *c.DF
	}
	var pt [2]int
	if c.PathMTU != nil {
		var err error
		if pt, err = s.plaintextMTUs(*c.PathMTU); err != nil {
			return err
		}
	}
	a := s.newAttrs(outer, soft, hard)
	if d != nil {
		if o := d.out.conflict(s, keyOfOutAt(s, a)); o != nil {
			return fmt.Errorf("%w: outbound SPI 0x%08x towards %v is %v", ErrExists, s.spi, a.endpoint(s.cfg.UDPEncap), o)
		}
	}
	// Validated: commit. Invariant: Update never touches the sequence
	// counter, the replay window, the counters or the lifetime usage -
	// the SA stays the same SA under the same key.
	s.attrs.Store(a)
	if c.PathMTU != nil {
		s.storeMTU(*c.PathMTU, pt)
	}
	if c.SoftLifetime != nil || c.HardLifetime != nil {
		now := s.now().UnixNano()
		s.checkTime(a, now, ev)
		s.checkUsage(a, s.usedPkts.Load(), s.usedBytes.Load(), now, ev)
	}
	return nil
}

// ---- same-key detection for SAD.Replace ----

// fpKey keys the fingerprints of key material. It is random per
// process, so a fingerprint says nothing about a key outside the
// process, and fingerprints are only ever compared with each other.
var fpKey = sync.OnceValue(func() []byte {
	k := make([]byte, 32)
	if _, err := rand.Read(k); err != nil {
		panic("sa: no randomness for the key fingerprint: " + err.Error())
	}
	return k
})

// WriteKeyIdentity writes to w the identity of key material under
// transform t: what two SAs share exactly when one of them would repeat
// the other's (key, nonce) pairs for the same sequence number. It is the
// key family (esp.Transform.KeyFamily: one per keystream primitive, so
// that aes128gcm16, aes128gcm12, aes128gmac and aes128ctr with the same
// key and salt are one key) and the key, plus the integrity key for
// transforms without a counter IV (CBC, NULL), each length-prefixed.
// w must be a keyed hash (an HMAC under a secret), never a plain hash or
// a buffer that outlives the call: the identity contains the key.
func WriteKeyIdentity(w io.Writer, t esp.Transform, key, auth []byte) {
	var n [4]byte
	put := func(b []byte) {
		binary.BigEndian.PutUint32(n[:], uint32(len(b)))
		w.Write(n[:])
		w.Write(b)
	}
	put([]byte(t.KeyFamily()))
	put(key)
	if !t.CounterIV() {
		put(auth)
	}
}

// keyFingerprint is HMAC-SHA256 under fpKey of the key identity
// (WriteKeyIdentity). Two SAs have the same fingerprint exactly when (up
// to HMAC collisions) one would repeat the other's nonces for the same
// sequence number: the SA keeps this instead of any plain hash of the
// key, and never the key itself.
func keyFingerprint(t esp.Transform, key, auth []byte) [32]byte {
	m := hmac.New(sha256.New, fpKey())
	WriteKeyIdentity(m, t, key, auth)
	var fp [32]byte
	m.Sum(fp[:0])
	return fp
}

// SameKey reports whether s and o use the same key (compared through
// keyed fingerprints of the key identity, in constant time): the same key
// material under the same keystream primitive, whatever the ICV length
// (aes128gcm16 and aes128gcm12 with one key are the same key; see
// WriteKeyIdentity).
func (s *SA) SameKey(o *SA) bool {
	return o != nil && hmac.Equal(s.keyFP[:], o.keyFP[:])
}

// waitIdle waits until no worker is inside a run of packets of s. The
// caller has made sure (Close's StateDeleted, SAD.Replace's held) that
// no new run starts.
func (s *SA) waitIdle() {
	for i := 0; s.busy.Load() != 0; i++ {
		if i < 100 {
			runtime.Gosched()
		} else {
			time.Sleep(10 * time.Microsecond)
		}
	}
}

// carryFrom takes over the sequence state of old, an SA with the same
// key that is closed (no worker uses it any more), into s, which no
// worker uses either (held). Invariant: under one key no sequence
// number is sent twice and no packet is accepted twice - outbound, s
// continues after the highest number either SA reached; inbound, s
// rejects whatever either window rejects.
func (s *SA) carryFrom(old *SA, ev *eventList) {
	s.updMu.Lock()
	defer s.updMu.Unlock()
	// The key's lifetime usage, too: a reload must not extend a key's
	// byte or packet lifetime.
	p := s.usedPkts.Add(old.usedPkts.Load())
	b := s.usedBytes.Add(old.usedBytes.Load())
	s.checkUsage(s.attrs.Load(), p, b, s.now().UnixNano(), ev)
	if o := old.seq.Load(); o > s.seq.Load() {
		s.seq.Store(o)
	}
	if s.seqLimit.Load() == 0 {
		if l := old.seqLimit.Load(); l != 0 {
			s.setSeqLimitLocked(l)
		}
	}
	if s.dir == In {
		old.mu.Lock()
		st := old.win.State()
		old.mu.Unlock()
		s.mu.Lock()
		s.win.Merge(st)
		top := s.win.Top()
		s.mu.Unlock()
		if top > s.rxTop.Load() {
			s.rxTop.Store(top)
		}
	}
}

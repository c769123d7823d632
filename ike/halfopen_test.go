package ike

import (
	"errors"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/netip"
	"testing"
	"time"
)

// TestHalfOpenPerSourceProperty: random sequences of IKE_SA_INIT
// requests from a few real sources (answering cookie challenges, so
// holding valid cookies), spoofed ones claiming the victim's address
// (no valid cookie: possible below the cookie threshold only, or with
// a forged cookie), and half-open SAs timing out. Invariants: the
// per-source counts equal the half-open SAs created with a valid cookie
// from that address; no address holds more than MaxHalfOpenPerSource
// of them; a request with a valid cookie from a source at its bound
// creates no state and is not answered (SourceBlocked counts it), an
// IPv6 source counting by its /64; and
// the victim, which never reached its bound itself, is always served
// while the global MaxHalfOpen leaves room - spoofed requests never
// use up its share.
func TestHalfOpenPerSourceProperty(t *testing.T) {
	r := rand.New(rand.NewPCG(21, 22))
	victim := netip.MustParseAddr("192.0.2.10")
	// Two IPv6 sources share a /64 and count as one (sourceKey); a
	// third has its own.
	real := []netip.Addr{victim, netip.MustParseAddr("192.0.2.11"), netip.MustParseAddr("192.0.2.12"),
		netip.MustParseAddr("2001:db8:1::1"), netip.MustParseAddr("2001:db8:1::2:3"), netip.MustParseAddr("2001:db8:2::1")}
	var totalBlocked, victimServed int
	for iter := range 10 {
		conn := &captureConn{}
		lim, thr := 1+r.IntN(4), 1+r.IntN(4)
		e, err := NewEndpoint(Config{PSK: testPSK, LocalID: FQDN("r"), LocalTS: ts("10.0.0.0/8"), RemoteTS: ts("10.1.0.0/16"),
			CookieThreshold: thr, MaxHalfOpen: 64, MaxHalfOpenPerSource: lim,
			Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}, conn, &fakeConn{})
		if err != nil {
			t.Fatal(err)
		}
		victimOwn := 0 // half-open SAs the victim made with its cookies
		for op := range 80 {
			spi := r.Uint64() | 1
			ni := make([]byte, 32)
			for k := range ni {
				ni[k] = byte(r.Uint32())
			}
			kind := r.IntN(5)
			from := netip.AddrPortFrom(real[r.IntN(len(real))], 500)
			var cookie []byte
			e.mu.Lock()
			switch kind {
			case 0, 1, 2: // a real source with the cookie it was sent
				cookie = e.cookies.issue(ni, from.Addr(), spi, time.Now())
			case 3: // spoofed as the victim: no cookie or a forged one
				from = netip.AddrPortFrom(victim, 500)
				if r.IntN(2) == 0 {
					cookie = make([]byte, cookieLen)
					cookie[0] = e.cookies.version
				}
			case 4: // a half-open SA times out
				for _, s := range e.sas {
					if s.state == stateInitDone {
						if s.cookieSrc == victim {
							victimOwn--
						}
						after := s.dieLocked(ErrTimeout)
						e.mu.Unlock()
						for _, f := range after {
							f()
						}
						e.mu.Lock()
						break
					}
				}
			}
			demand := e.halfOpen >= thr
			atLimit := e.halfOpenBy[sourceKey(from.Addr())] >= lim
			room := e.halfOpen < e.cfg.MaxHalfOpen
			before, blocked := len(e.sas), e.sourceBlocked.Load()
			conn.last = nil
			e.mu.Unlock()
			if kind == 4 {
				continue
			}
			e.HandlePacket(floodInit(t, spi, ni, cookie), from, false)
			e.mu.Lock()
			counts := map[netip.Addr]int{}
			for _, s := range e.sas {
				if s.state == stateInitDone && s.cookieSrc.IsValid() {
					counts[sourceKey(s.cookieSrc)]++
				}
			}
			for a, n := range counts {
				if e.halfOpenBy[a] != n {
					t.Fatalf("iter %d op %d: halfOpenBy[%v] = %d, %d such SAs", iter, op, a, e.halfOpenBy[a], n)
				}
				if n > lim {
					t.Fatalf("iter %d op %d: %v holds %d half-open SAs, bound %d", iter, op, a, n, lim)
				}
			}
			if len(counts) != len(e.halfOpenBy) {
				t.Fatalf("iter %d op %d: halfOpenBy %v, SAs %v", iter, op, e.halfOpenBy, counts)
			}
			after, last := len(e.sas), conn.last
			var served bool
			if last != nil {
				m, err := Parse(last)
				served = err == nil && m.Get(PayloadKE) != nil
			}
			nowBlocked := e.sourceBlocked.Load() - blocked
			if served && cookie != nil && kind != 3 && from.Addr() == victim {
				victimOwn++
				victimServed++
			}
			totalBlocked += int(nowBlocked)
			own := victimOwn
			e.mu.Unlock()
			switch {
			case kind != 3 && demand && atLimit:
				if after != before || last != nil || nowBlocked != 1 {
					t.Fatalf("iter %d op %d: a source at its bound: SAs %d→%d, answered %v, blocked +%d", iter, op, before, after, last != nil, nowBlocked)
				}
			case kind != 3 && room && (!atLimit || !demand):
				if !served {
					t.Fatalf("iter %d op %d: %v (own half-open %d, bound %d) not served", iter, op, from, own, lim)
				}
			case kind == 3 && nowBlocked != 0:
				t.Fatalf("iter %d op %d: a request without a valid cookie counted as blocked", iter, op)
			}
		}
		e.Close()
	}
	if totalBlocked == 0 || victimServed == 0 {
		t.Fatalf("the sequences never hit the bound (%d) or never served the victim (%d)", totalBlocked, victimServed)
	}
}

// TestRetransmitScheduleBounds: Retries and Retransmit beyond
// MaxRetries and MaxRetransmit are refused (a large Retries
// overflowed the back-off and reapLater's grace); at the bounds, every
// delay of the schedule is positive and growing.
func TestRetransmitScheduleBounds(t *testing.T) {
	base := Config{PSK: testPSK, LocalID: FQDN("r"), LocalTS: ts("10.0.0.0/8"), RemoteTS: ts("10.1.0.0/16")}
	for _, c := range []struct {
		retries int
		rt      time.Duration
		ok      bool
	}{
		{MaxRetries, MaxRetransmit, true}, {MaxRetries + 1, 0, false}, {1 << 40, 0, false}, {64, time.Second, false},
		{3, MaxRetransmit + 1, false}, {3, time.Duration(1 << 62), false},
	} {
		cfg := base
		cfg.Retries, cfg.Retransmit = c.retries, c.rt
		e, err := NewEndpoint(cfg, &fakeConn{}, nil)
		if c.ok != (err == nil) || (err != nil && !errors.Is(err, ErrConfig)) {
			t.Fatalf("Retries %d Retransmit %v: %v", c.retries, c.rt, err)
		}
		if err != nil {
			continue
		}
		prev := time.Duration(0)
		for try := 0; try <= e.cfg.Retries; try++ {
			d := e.cfg.Retransmit << try
			if d <= prev {
				t.Fatalf("try %d: delay %v after %v", try, d, prev)
			}
			prev = d
		}
		if g := 2 * e.cfg.Retransmit * time.Duration(1<<(e.cfg.Retries+1)-1); g <= prev {
			t.Fatalf("reap grace %v not beyond the last delay %v", g, prev)
		}
		e.Close()
	}
}

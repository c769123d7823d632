package ike

import (
	"context"
	"errors"
	"math/rand/v2"
	"net/netip"
	"time"
)

// Timers of established IKE SAs: dead peer detection (Config.DPDDelay)
// and the IKE SA rekey time (Config.IKELifetime).

// startTimers arms the DPD and rekey timers of a newly established IKE
// SA (e.mu held).
func (s *IKESA) startTimers() {
	e := s.e
	if e.closed {
		return
	}
	if d := e.cfg.DPDDelay; d > 0 && s.dpdTimer == nil {
		s.dpdTimer = time.AfterFunc(d, s.dpdTick)
	}
	if l := e.cfg.IKELifetime; l > 0 && s.lifeTimer == nil {
		s.lifeTimer = time.AfterFunc(jitter(l), s.lifeTick)
	}
}

// jitter returns l minus a random 0-10 % of it.
func jitter(l time.Duration) time.Duration {
	if l < 10 {
		return l
	}
	return l - rand.N(l/10)
}

// stopTimers stops all of s's timers (e.mu held).
func (s *IKESA) stopTimers() {
	for _, t := range []*time.Timer{s.expiry, s.dpdTimer, s.lifeTimer} {
		if t != nil {
			t.Stop()
		}
	}
}

// live tells whether s is established and in charge of its children
// (e.mu held).
func (s *IKESA) live() bool {
	return !s.e.closed && s.state == stateEstablished && s.successor == nil && !s.deleting && !s.redundant
}

// dpdTick runs every DPDDelay: when nothing arrived from the peer for
// DPDDelay (on the IKE SA, or on the children per
// Config.InboundActivity), it sends an empty INFORMATIONAL. An
// exchange that times out kills the SA (arm, dieLocked), which is how
// a dead peer is cleared.
func (s *IKESA) dpdTick() {
	e := s.e
	d := e.cfg.DPDDelay
	e.mu.Lock()
	if !s.live() {
		e.mu.Unlock()
		return
	}
	last := s.lastRecv
	e.mu.Unlock()
	if f := e.cfg.InboundActivity; f != nil {
		if t := f(s); t.After(last) {
			last = t
		}
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	if !s.live() {
		return
	}
	if s.lastRecv.After(last) {
		last = s.lastRecv
	}
	if idle := time.Since(last); idle < d {
		s.dpdTimer.Reset(d - idle)
		return
	}
	if s.pending == nil {
		b, err := s.seal(s.header(Informational, s.nextReq, false), nil)
		if err != nil {
			e.log.Error("ike: cannot build the DPD request", "err", err)
			return
		}
		e.log.Debug("ike: dead peer detection: probing", "sa", s, "peer", s.remote)
		s.startRequest(b, func(*Message, []byte, netip.AddrPort, bool) []func() { return nil })
	}
	// A pending exchange's retransmissions check the peer as well.
	s.dpdTimer.Reset(d)
}

// lifeTick starts the IKE SA rekey when its rekey time came.
func (s *IKESA) lifeTick() {
	e := s.e
	e.mu.Lock()
	if !s.live() {
		e.mu.Unlock()
		return
	}
	e.bg.Add(1)
	e.mu.Unlock()
	go func() {
		defer e.bg.Done()
		e.log.Info("ike: IKE SA rekey time reached", "sa", s)
		_, err := s.RekeyIKE(e.ctx)
		if err == nil {
			return
		}
		e.mu.Lock()
		defer e.mu.Unlock()
		if s.live() {
			retry := min(e.cfg.IKELifetime/10+1, time.Minute)
			e.log.Warn("ike: IKE SA rekey failed, retrying", "sa", s, "err", err, "in", retry)
			s.lifeTimer = time.AfterFunc(retry, s.lifeTick)
		}
	}()
}

// restart initiates an IKE SA to remote again after its predecessor's
// peer stopped answering (DPDAction "restart"), every max(DPDDelay, 1s)
// until it succeeds or the Endpoint is closed. The caller did
// e.bg.Add(1).
func (e *Endpoint) restart(remote netip.AddrPort) {
	defer e.bg.Done()
	delay := max(e.cfg.DPDDelay, time.Second)
	for {
		e.log.Info("ike: restarting the IKE SA", "peer", remote)
		_, err := e.Initiate(e.ctx, remote)
		if err == nil || errors.Is(err, ErrClosed) || errors.Is(err, context.Canceled) || e.ctx.Err() != nil {
			return
		}
		e.log.Warn("ike: restart failed", "peer", remote, "err", err, "retry_in", delay)
		select {
		case <-time.After(delay):
		case <-e.ctx.Done():
			return
		}
	}
}

package sa

import "time"

// Acquire events for route-based tunnels. A packet sent to a Tunnel
// that has no usable outbound SA (none bound, or only deleted ones) is
// dropped with DropAcquire and raises EventAcquire with Tunnel and
// TunnelName set, so that an IKE daemon negotiates a child SA, as the
// SPD does for a protect policy without SA. The event goes to
// ProcessorOptions.Events (default: the SAD's SADOptions.Events), at
// most once per ProcessorOptions.AcquireInterval (default 1s) per
// tunnel, and is delivered at the end of the worker's batch.

// tunnelAcquire drops p for want of an SA on tunnel t and raises the
// acquire event unless one was raised less than the interval ago.
func (w *Worker) tunnelAcquire(p *Packet, t *Tunnel) {
	w.raiseTunnelAcquire(p, t)
	w.pdrop(p, DropAcquire)
}

// raiseTunnelAcquire raises EventAcquire for t (rate-limited; the
// compare-and-swap lets one worker win when several race).
func (w *Worker) raiseTunnelAcquire(p *Packet, t *Tunnel) {
	fn := w.p.acqEvents
	if fn == nil {
		return
	}
	last := t.lastAcquire.Load()
	if last != 0 && w.now-last < w.p.acqInterval || !t.lastAcquire.CompareAndSwap(last, w.now) {
		return
	}
	e := Event{Kind: EventAcquire, Time: time.Unix(0, w.now), Direction: Out, Tunnel: t, TunnelName: t.name}
	if p.Off >= 0 && p.Len > 0 && p.Off+p.Len <= len(p.Buf) && parseFlow(p.Buf[p.Off:p.Off+p.Len], &w.flow) == nil {
		e.Packet = w.flow.selector()
	}
	w.raise(fn, e)
}

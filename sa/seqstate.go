package sa

import (
	"fmt"
	"math"
	"time"

	"github.com/espxdp/espxdp/sa/replay"
)

// MinSPI is the lowest SPI New accepts: 1..255 are reserved by IANA for
// future use and 0 for local use (RFC 4303 §2.1).
const MinSPI = 256

// ReplayState is the content of an inbound SA's anti-replay window, as
// exported by SA.ReplayState and imported through Config.Replay (see
// replay.State for the encoding). It marshals to JSON for persistence.
type ReplayState = replay.State

func (cfg *Config) validateState() error {
	switch {
	case cfg.Direction == In && cfg.InitialSeq != 0:
		return cfgErr("InitialSeq", "set on an inbound SA (use Replay)", nil)
	case cfg.Direction == Out && cfg.Replay != nil:
		return cfgErr("Replay", "set on an outbound SA (use InitialSeq)", nil)
	case !cfg.ESN && cfg.InitialSeq > math.MaxUint32:
		return cfgErr("InitialSeq", fmt.Sprintf("%d exceeds 2^32-1 without ESN", cfg.InitialSeq), nil)
	}
	if r := cfg.Replay; r != nil {
		switch {
		case len(r.Bitmap) > MaxReplayWindow/64+1:
			return cfgErr("Replay", fmt.Sprintf("bitmap of %d words (at most %d)", len(r.Bitmap), MaxReplayWindow/64+1), nil)
		case !cfg.ESN && r.Top > math.MaxUint32:
			return cfgErr("Replay", fmt.Sprintf("top %d exceeds 2^32-1 without ESN", r.Top), nil)
		}
	}
	return nil
}

// initState applies InitialSeq, Replay and SeqLimit in New.
func (s *SA) initState(cfg *Config) {
	s.seq.Store(cfg.InitialSeq)
	if cfg.Replay != nil {
		s.win.Merge(*cfg.Replay)
		s.rxTop.Store(s.win.Top())
	}
	if cfg.SeqLimit != 0 && cfg.Direction == Out {
		s.setSeqLimitLocked(cfg.SeqLimit)
	}
	s.cfg.Replay = nil // Config reports ReplayState live, not the import
}

// seqLowWater raises EventSeqLimit when n reaches the low-water mark of
// the current limit, once per limit.
func (s *SA) seqLowWater(n uint64, now int64, sink eventSink) {
	if w := s.seqWarn.Load(); w != 0 && n >= w && s.seqWarn.CompareAndSwap(w, 0) {
		s.emit(sink, Event{Kind: EventSeqLimit, Time: time.Unix(0, now), Limit: LimitSequence})
	}
}

// SetSeqLimit sets the highest sequence number the outbound SA may use
// (0: no limit). Packets that would need a higher number are dropped
// with DropSeqLimit and never sent; the counter does not move past the
// limit, so raising it lets traffic continue at once.
//
// It is a sequence reservation for persistence: a daemon writes a
// limit to stable storage (and fsyncs) before it sets it, and after a
// restart creates the SA with InitialSeq set to the persisted limit, so
// no number can be sent twice whatever moment the process died.
// EventSeqLimit (once per limit set) says that the counter passed half
// of the room between the previous limit (or the counter, when there
// was none) and this one: time to persist the next block and raise the
// limit. A limit set on an SA without one applies to the numbers handed
// out after the call; set the first one with Config.SeqLimit. Inbound
// SAs ignore it.
func (s *SA) SetSeqLimit(limit uint64) {
	if s.dir != Out {
		return
	}
	s.updMu.Lock()
	defer s.updMu.Unlock()
	s.setSeqLimitLocked(limit)
}

func (s *SA) setSeqLimitLocked(limit uint64) {
	prev := s.seqLimit.Load()
	if limit == prev {
		return
	}
	if limit == 0 {
		s.seqWarn.Store(0)
		s.seqLimit.Store(0)
		return
	}
	base := prev
	if base == 0 {
		base = s.seq.Load()
	}
	warn := uint64(1)
	if limit > base {
		warn = max(base+(limit-base)/2, 1)
	}
	s.seqWarn.Store(warn)
	s.seqLimit.Store(limit)
}

// SeqLimit returns the limit set by Config.SeqLimit or SetSeqLimit (0:
// none).
func (s *SA) SeqLimit() uint64 { return s.seqLimit.Load() }

// Seq returns, for an outbound SA, the last sequence number handed out
// (Config.InitialSeq before the first packet); for an inbound SA, the
// highest sequence number accepted as of the last finished run of
// packets.
func (s *SA) Seq() uint64 {
	if s.dir == Out {
		n := s.seq.Load()
		if !s.esn {
			n = min(n, math.MaxUint32)
		}
		return n
	}
	return s.rxTop.Load()
}

// ReplayState exports an inbound SA's anti-replay window, for
// Config.Replay of the SA that takes over after a restart. It is exact
// once the SA is closed (SAD.Delete, SA.Close: no worker can change the
// window any more; closing keeps it). While workers may still use the
// SA it returns the highest number accepted so far with no bitmap -
// safe to read, but packets in flight may still be accepted after it,
// so take restart snapshots after Close. Outbound SAs return the zero
// ReplayState.
func (s *SA) ReplayState() ReplayState {
	if s.dir != In {
		return ReplayState{}
	}
	s.closeMu.Lock() // Close holds it until no worker uses the SA
	defer s.closeMu.Unlock()
	if s.State() != StateDeleted {
		return ReplayState{Top: s.rxTop.Load()}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.win.State()
}

// LastUsed returns when a packet was last processed by the SA, to about
// a second (the processor's clock, read once per batch); zero if never.
func (s *SA) LastUsed() time.Time {
	if n := s.lastUsed.Load(); n != 0 {
		return time.Unix(0, n)
	}
	return time.Time{}
}

// lastUsedGrain is how stale SA.LastUsed may be: a worker writes the
// shared field only when it is older than that, not once per batch.
const lastUsedGrain = int64(time.Second)

func (s *SA) touch(now int64) {
	if now-s.lastUsed.Load() >= lastUsedGrain {
		s.lastUsed.Store(now)
	}
}

// MergeReplayStates returns a ReplayState that records every number a or
// b records (replay.MergeStates): a window merged with it rejects every
// packet that a window merged with either rejects.
func MergeReplayStates(a, b ReplayState) ReplayState { return replay.MergeStates(a, b) }

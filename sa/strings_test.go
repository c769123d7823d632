package sa

import "testing"

func TestEnumTextRoundTrip(t *testing.T) {
	for _, st := range []State{StateActive, StateSoftExpired, StateExpired, StateDeleted} {
		b, _ := st.MarshalText()
		var got State
		if err := got.UnmarshalText(b); err != nil || got != st {
			t.Errorf("State %v: got %v, %v", st, got, err)
		}
	}
	for _, k := range []EventKind{EventSoftExpire, EventHardExpire, EventSeqOverflow, EventAcquire} {
		b, _ := k.MarshalText()
		var got EventKind
		if err := got.UnmarshalText(b); err != nil || got != k {
			t.Errorf("EventKind %v: got %v, %v", k, got, err)
		}
	}
	for _, l := range []Limit{LimitBytes, LimitPackets, LimitTime, LimitSequence} {
		b, _ := l.MarshalText()
		var got Limit
		if err := got.UnmarshalText(b); err != nil || got != l {
			t.Errorf("Limit %v: got %v, %v", l, got, err)
		}
	}
	var s State
	if err := s.UnmarshalText([]byte("sleepy")); err == nil {
		t.Error("unknown state accepted")
	}
}

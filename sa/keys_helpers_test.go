package sa

// lastOf returns the last event of kind k (the zero Event if none).
func (l *eventLog) lastOf(k EventKind) Event {
	l.mu.Lock()
	defer l.mu.Unlock()
	for i := len(l.ev) - 1; i >= 0; i-- {
		if l.ev[i].Kind == k {
			return l.ev[i]
		}
	}
	return Event{}
}

// ofKind returns the events of kind k.
func (l *eventLog) ofKind(k EventKind) []Event {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []Event
	for _, e := range l.ev {
		if e.Kind == k {
			out = append(out, e)
		}
	}
	return out
}

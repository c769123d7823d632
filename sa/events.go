package sa

import "sync/atomic"

// EventChannel returns an EventFunc that sends events to ch without ever
// blocking the data path: an event that does not fit in ch is dropped
// and counted in dropped (which may be nil). Give ch a buffer.
func EventChannel(ch chan<- Event, dropped *atomic.Uint64) EventFunc {
	return func(e Event) {
		select {
		case ch <- e:
		default:
			if dropped != nil {
				dropped.Add(1)
			}
		}
	}
}

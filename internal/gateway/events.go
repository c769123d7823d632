package gateway

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/espxdp/espxdp/sa"
)

// The event stream: a client that sends {"cmd":"events"} gets {"ok":true}
// and then one JSON Event per line, every event the gateway raises
// (acquire, soft/hard expiry, sequence overflow and whatever kinds the sa
// package adds), until it closes the connection or the gateway stops.
// Each subscriber has a bounded queue: a subscriber that does not keep up
// loses events (counted, and reported to it as a "lost" event once it
// reads again); the data path never waits for a subscriber.

// Limits of the event stream.
const (
	// MaxSubscribers bounds the event subscribers at once (they do not
	// count against MaxConns).
	MaxSubscribers = 8
	// SubscriberQueue is the number of events queued per subscriber.
	SubscriberQueue = 256
)

// Event is one gateway event as the control socket streams it.
type Event struct {
	Time time.Time `json:"time"`
	// Kind is the sa.EventKind's name (soft-expire, hard-expire,
	// seq-overflow, acquire, ...) or "lost": Lost events were dropped
	// for this subscriber since the last one it received.
	Kind      string `json:"kind"`
	SA        string `json:"sa,omitempty"`
	SPI       uint32 `json:"spi,omitempty"`
	Direction string `json:"direction,omitempty"`
	Limit     string `json:"limit,omitempty"`
	// Acquire: the policy and the packet that raised it.
	Policy string       `json:"policy,omitempty"`
	Packet *sa.Selector `json:"packet,omitempty"`
	Lost   uint64       `json:"lost,omitempty"`
}

// eventOf converts an sa.Event.
func eventOf(e sa.Event) Event {
	ev := Event{Time: e.Time, Kind: e.Kind.String(), SA: e.Name, SPI: e.SPI}
	if ev.Time.IsZero() {
		ev.Time = time.Now()
	}
	if e.SPI != 0 || e.Name != "" {
		ev.Direction = e.Direction.String()
	}
	if e.Limit != 0 {
		ev.Limit = e.Limit.String()
	}
	if e.Kind == sa.EventAcquire {
		if e.Policy != nil {
			ev.Policy = e.Policy.Name
		}
		p := e.Packet
		ev.Packet = &p
	}
	return ev
}

// subscriber is one event-stream connection.
type subscriber struct {
	ch   chan Event
	lost atomic.Uint64
}

// hub fans events out to the subscribers.
type hub struct {
	mu   sync.Mutex
	subs map[*subscriber]bool
	lost atomic.Uint64 // over all subscribers
}

func (h *hub) add() (*subscriber, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if len(h.subs) >= MaxSubscribers {
		return nil, fmt.Errorf("busy: %d event subscribers already", MaxSubscribers)
	}
	if h.subs == nil {
		h.subs = map[*subscriber]bool{}
	}
	s := &subscriber{ch: make(chan Event, SubscriberQueue)}
	h.subs[s] = true
	return s, nil
}

func (h *hub) remove(s *subscriber) {
	h.mu.Lock()
	delete(h.subs, s)
	h.mu.Unlock()
}

// publish queues ev for every subscriber without waiting: a full queue
// loses the event (counted).
func (h *hub) publish(ev Event) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for s := range h.subs {
		select {
		case s.ch <- ev:
		default:
			s.lost.Add(1)
			h.lost.Add(1)
		}
	}
}

func (h *hub) count() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return len(h.subs)
}

// Publish sends an event to the control socket's subscribers (the
// gateway publishes the sa events itself; an embedder may add its own).
func (gw *Gateway) Publish(ev Event) { gw.hub.publish(ev) }

// serveEvents streams events on c until the client leaves or the server
// closes; release gives back the request slot.
func (gw *Gateway) serveEvents(s *controlServer, c net.Conn, release func()) {
	sub, err := gw.hub.add()
	if err != nil {
		writeResponse(c, Response{Error: err.Error()})
		return
	}
	defer gw.hub.remove(sub)
	release()
	c.SetDeadline(time.Time{})
	if err := writeResponseErr(c, Response{OK: true}); err != nil {
		return
	}
	gone := make(chan struct{})
	go func() {
		// The client sends nothing more; EOF or an error means it left.
		var b [64]byte
		for {
			if _, err := c.Read(b[:]); err != nil {
				close(gone)
				return
			}
		}
	}()
	enc := json.NewEncoder(c)
	for {
		select {
		case <-gone:
			return
		case <-s.done:
			return
		case ev := <-sub.ch:
			c.SetWriteDeadline(time.Now().Add(10 * time.Second))
			if n := sub.lost.Swap(0); n > 0 {
				if enc.Encode(Event{Time: time.Now(), Kind: "lost", Lost: n}) != nil {
					return
				}
			}
			if enc.Encode(ev) != nil {
				return
			}
		}
	}
}

func writeResponseErr(c net.Conn, resp Response) error {
	b, err := json.Marshal(resp)
	if err != nil {
		return err
	}
	_, err = c.Write(append(b, '\n'))
	return err
}

// EventStream reads the events of a gateway's control socket.
type EventStream struct {
	c   net.Conn
	dec *json.Decoder
}

// Subscribe connects to the control socket at path and asks for its
// events; timeout bounds the connection and the answer.
func Subscribe(path string, timeout time.Duration) (*EventStream, error) {
	c, err := net.DialTimeout("unix", path, timeout)
	if err != nil {
		return nil, fmt.Errorf("control socket %s: %w (is espxdp run going?)", path, err)
	}
	c.SetDeadline(time.Now().Add(timeout))
	b, _ := json.Marshal(Request{Cmd: "events"})
	_, werr := c.Write(append(b, '\n')) // a busy server may answer first
	dec := json.NewDecoder(bufio.NewReader(c))
	var resp Response
	if err := dec.Decode(&resp); err != nil {
		c.Close()
		if werr != nil {
			return nil, werr
		}
		return nil, fmt.Errorf("control socket %s: bad response: %w", path, err)
	}
	if !resp.OK {
		c.Close()
		return nil, errors.New(resp.Error)
	}
	c.SetDeadline(time.Time{})
	return &EventStream{c: c, dec: dec}, nil
}

// Next waits for the next event (at most until deadline, if not zero).
func (s *EventStream) Next(deadline time.Time) (Event, error) {
	var ev Event
	s.c.SetReadDeadline(deadline)
	err := s.dec.Decode(&ev)
	return ev, err
}

// Close ends the subscription.
func (s *EventStream) Close() error { return s.c.Close() }

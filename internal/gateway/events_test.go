package gateway

import (
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/espxdp/espxdp/sa"
)

// eventGateway is an offline gateway whose inbound SA has time lifetimes,
// with its control socket and event logger running.
func eventGateway(t *testing.T) (*Gateway, string) {
	t.Helper()
	y := strings.Replace(offlineYAML, "direction: in, spi: 0x2001,", "direction: in, spi: 0x2001, lifetime: {soft_seconds: 10, hard_seconds: 20},", 1)
	path := filepath.Join(t.TempDir(), "ctl.sock") // removed after gw is closed
	gw := yamlGateway(t, y)
	ctl, err := gw.listenControl(path)
	if err != nil {
		t.Fatal(err)
	}
	gw.ctl = ctl
	gw.stop = make(chan struct{})
	gw.wg.Add(1)
	go gw.logEvents()
	return gw, path
}

// TestEventStream: two subscribers both receive the soft and the hard
// expiry of an SA, in order, with its name, SPI and direction.
func TestEventStream(t *testing.T) {
	gw, path := eventGateway(t)
	var subs []*EventStream
	for range 2 {
		s, err := Subscribe(path, 2*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		subs = append(subs, s)
	}
	if st := gw.Stats(); st.Subscribers != 2 {
		t.Errorf("subscribers %d, want 2", st.Subscribers)
	}
	gw.SAD().Sweep(time.Now().Add(15 * time.Second))
	gw.SAD().Sweep(time.Now().Add(25 * time.Second))
	for i, s := range subs {
		var kinds []string
		for range 2 {
			ev, err := s.Next(time.Now().Add(5 * time.Second))
			if err != nil {
				t.Fatalf("subscriber %d: %v", i, err)
			}
			if ev.SA != "b-to-a" || ev.SPI != 0x2001 || ev.Direction != "in" || ev.Time.IsZero() {
				t.Errorf("subscriber %d: %+v", i, ev)
			}
			kinds = append(kinds, ev.Kind)
		}
		if want := []string{sa.EventSoftExpire.String(), sa.EventHardExpire.String()}; strings.Join(kinds, ",") != strings.Join(want, ",") {
			t.Errorf("subscriber %d: kinds %v, want %v", i, kinds, want)
		}
	}
	// A subscriber that leaves is forgotten.
	subs[0].Close()
	deadline := time.Now().Add(5 * time.Second)
	for gw.Stats().Subscribers != 1 {
		if time.Now().After(deadline) {
			t.Fatalf("subscribers %d after one left", gw.Stats().Subscribers)
		}
		gw.Publish(Event{Kind: "test"}) // a write notices a closed peer too
		time.Sleep(10 * time.Millisecond)
	}
}

// TestEventStreamSlowSubscriber: a subscriber that reads nothing never
// blocks publishing; its lost events are counted and reported to it as a
// "lost" event when it reads again; at most MaxSubscribers subscribe.
func TestEventStreamSlowSubscriber(t *testing.T) {
	gw, path := eventGateway(t)
	slow, err := Subscribe(path, 2*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer slow.Close()
	const n = 20000 // far beyond the queue and the socket buffer
	done := make(chan struct{})
	go func() {
		for i := range n {
			gw.Publish(Event{Kind: "test", SPI: uint32(i + 1)})
		}
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("Publish blocked on a subscriber that does not read")
	}
	lost := gw.Stats().SubscribersLost
	if lost == 0 {
		t.Fatal("no events counted lost")
	}
	// Reading again: the events come in order, and the gap is announced.
	var last uint32
	sawLost := false
	var got uint64
	for {
		ev, err := slow.Next(time.Now().Add(500 * time.Millisecond))
		if err != nil {
			break
		}
		if ev.Kind == "lost" {
			sawLost = true
			got += ev.Lost
			continue
		}
		if ev.SPI <= last {
			t.Fatalf("out of order: %d after %d", ev.SPI, last)
		}
		last = ev.SPI
	}
	if !sawLost || got != lost {
		t.Errorf("lost announced %v, %d, counted %d", sawLost, got, lost)
	}

	for range MaxSubscribers - 1 {
		s, err := Subscribe(path, 2*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
	}
	if _, err := Subscribe(path, 2*time.Second); err == nil || !strings.Contains(err.Error(), "busy") {
		t.Errorf("subscriber %d: %v, want busy", MaxSubscribers+1, err)
	}
	// Subscribers do not take request slots.
	if _, err := Call(path, Request{Cmd: "show-sa"}, 2*time.Second); err != nil {
		t.Errorf("show-sa with %d subscribers: %v", MaxSubscribers, err)
	}
}

package xdp

import (
	"testing"
	"time"
)

// TestWaitRoom: waitRoom returns true exactly when room reaches n (or
// goes negative: the engine stopped) and false when stop closes first;
// it never returns true while room is short.
func TestWaitRoom(t *testing.T) {
	for _, tc := range []struct {
		name  string
		rooms []int // successive room() results; the last repeats
		n     int
		want  bool
		calls int // room() calls made
	}{
		{"room at once", []int{64}, 64, true, 1},
		{"room later", []int{0, 10, 63, 64}, 64, true, 4},
		{"more than needed", []int{0, 1000}, 64, true, 2},
		{"engine stopped", []int{5, -1}, 64, true, 2},
	} {
		i := 0
		room := func() int {
			r := tc.rooms[min(i, len(tc.rooms)-1)]
			i++
			return r
		}
		if got := waitRoom(room, tc.n, nil); got != tc.want || i != tc.calls {
			t.Errorf("%s: waitRoom = %v after %d calls, want %v after %d", tc.name, got, i, tc.want, tc.calls)
		}
	}
	// Never room: only stop ends the wait, with false, and not before
	// stop is closed.
	stop := make(chan struct{})
	done := make(chan bool, 1)
	go func() { done <- waitRoom(func() int { return 0 }, 1, stop) }()
	select {
	case <-done:
		t.Fatal("waitRoom returned without room and without stop")
	case <-time.After(20 * time.Millisecond):
	}
	close(stop)
	select {
	case got := <-done:
		if got {
			t.Error("waitRoom after stop = true, want false")
		}
	case <-time.After(2 * time.Second):
		t.Fatal("waitRoom did not return after stop")
	}
}

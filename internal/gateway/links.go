package gateway

import (
	"os"
	"sync"
)

// LinkState is the state of one of the gateway's interfaces as the link
// monitor last saw it.
type LinkState struct {
	Name  string `json:"name"`
	Index int    `json:"index"`
	// State is "up", "down" or "deleted" (the engine's sockets on a
	// deleted interface carry nothing until the daemon is restarted).
	State string `json:"state"`
	// Changes counts the transitions seen since start.
	Changes uint64 `json:"changes"`
}

// links tracks the gateway's interfaces.
type links struct {
	mu    sync.Mutex
	state []LinkState
	f     *os.File
}

func (l *links) snapshot() []LinkState {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]LinkState(nil), l.state...)
}

// startLinkMonitor opens the monitor in the gateway's namespace and
// watches names; gw.mu is held. A failure is logged, not fatal.
func (gw *Gateway) startLinkMonitor(names []string) {
	var f *os.File
	err := gw.inNS(func() (err error) {
		f, err = openLinkMonitor()
		if err != nil {
			return err
		}
		gw.links.mu.Lock()
		gw.links.state = nil
		for _, n := range names {
			gw.links.state = append(gw.links.state, LinkState{Name: n, Index: linkIndex(n), State: "up"})
		}
		gw.links.mu.Unlock()
		return nil
	})
	if err != nil {
		gw.log.Warn("link monitor not available; interface changes will not be reported", "err", err)
		return
	}
	gw.links.f = f
	gw.wg.Add(1)
	go func() {
		defer gw.wg.Done()
		readLinkEvents(f, func(index int, deleted, up bool) {
			gw.links.mu.Lock()
			defer gw.links.mu.Unlock()
			for i := range gw.links.state {
				ls := &gw.links.state[i]
				if ls.Index != index || ls.Index == 0 {
					continue
				}
				st := "down"
				switch {
				case deleted:
					st = "deleted"
				case up:
					st = "up"
				}
				if st == ls.State || ls.State == "deleted" {
					continue
				}
				ls.State = st
				ls.Changes++
				if deleted {
					gw.log.Error("interface deleted under the running gateway: its traffic stops; restart once it is back", "interface", ls.Name)
				} else {
					gw.log.Warn("interface state changed", "interface", ls.Name, "state", st)
				}
			}
		})
	}()
}

// stopLinkMonitor closes the monitor (its reader ends).
func (gw *Gateway) stopLinkMonitor() {
	if gw.links.f != nil {
		gw.links.f.Close()
		gw.links.f = nil
	}
}

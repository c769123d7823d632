package ike

import (
	"fmt"
	"sync"
	"testing"

	"github.com/espxdp/espxdp/sa"
)

// TestChildIDsAboveBase: the children an Endpoint negotiates (IKE_AUTH
// and rekeys, both sides) get ids above ChildIDBase, the range that no
// embedder's own child group uses, all different, and their SA names
// carry the short number.
func TestChildIDsAboveBase(t *testing.T) {
	i, r := pair(t, Config{}, Config{})
	ctx, s, ic := establish(t, i, r)
	rc := recv(t, r.children)
	nc, err := s.RekeyChild(ctx)
	if err != nil {
		t.Fatal(err)
	}
	in2, rn2 := recv(t, i.children), recv(t, r.children)
	if nc != in2 && nc != rn2 {
		t.Fatal("RekeyChild's result was not reported to OnChild")
	}
	seen := map[sa.ChildID]bool{}
	for _, c := range []*ChildSA{ic, rc, in2, rn2} {
		if c.ID <= ChildIDBase {
			t.Errorf("child id %d is not above ChildIDBase %d: it may be a static child's", c.ID, ChildIDBase)
		}
		if seen[c.ID] {
			t.Errorf("child id %d handed out twice", c.ID)
		}
		seen[c.ID] = true
		if c.In.Child != c.ID || c.Out.Child != c.ID {
			t.Errorf("child %d: SAs grouped as %d/%d", c.ID, c.In.Child, c.Out.Child)
		}
		if want := fmt.Sprintf("ike-%d-in", c.ID-ChildIDBase); c.In.Name != want {
			t.Errorf("inbound SA named %q, want %q", c.In.Name, want)
		}
	}
}

// TestNewChildIDConcurrent: ids handed out concurrently (several
// Endpoints in one process) are unique and above ChildIDBase.
func TestNewChildIDConcurrent(t *testing.T) {
	const workers, each = 4, 1000
	var mu sync.Mutex
	seen := map[sa.ChildID]bool{}
	var wg sync.WaitGroup
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ids := make([]sa.ChildID, 0, each)
			for range each {
				ids = append(ids, newChildID())
			}
			mu.Lock()
			defer mu.Unlock()
			for _, id := range ids {
				if id <= ChildIDBase || seen[id] {
					t.Errorf("child id %d: duplicate or not above ChildIDBase", id)
				}
				seen[id] = true
			}
		}()
	}
	wg.Wait()
}

package ike

import (
	"bytes"
	"context"
	"fmt"
	"math/rand/v2"
	"sync"
	"testing"
	"time"

	"github.com/espxdp/espxdp/sa"
)

// recorder checks the callbacks of one side as they come: OnChild and
// OnChildDown pair up (each child up once, down at most once, only
// after up), OnIKEUp and OnIKEDown likewise, and no key material
// (child keys, SK_d/SK_e/SK_a of the IKE SAs) ever repeats.
type recorder struct {
	mu       sync.Mutex
	live     map[sa.ChildID]*ChildSA
	seen     map[sa.ChildID]bool
	liveIKE  map[*IKESA]bool
	seenIKE  map[*IKESA]bool
	keys     map[string]string
	problems []string
}

func newRecorder() *recorder {
	return &recorder{live: map[sa.ChildID]*ChildSA{}, seen: map[sa.ChildID]bool{}, liveIKE: map[*IKESA]bool{},
		seenIKE: map[*IKESA]bool{}, keys: map[string]string{}}
}

func (r *recorder) problem(f string, args ...any) {
	r.problems = append(r.problems, fmt.Sprintf(f, args...))
}

func (r *recorder) key(k []byte, what string) {
	if len(k) == 0 || bytes.Count(k, []byte{0}) == len(k) {
		return
	}
	if prev, dup := r.keys[string(k)]; dup {
		r.problem("key material repeats: %s and %s", prev, what)
	}
	r.keys[string(k)] = what
}

func (r *recorder) config(cfg *Config) {
	cfg.OnChild = func(c *ChildSA) {
		r.mu.Lock()
		defer r.mu.Unlock()
		if r.seen[c.ID] {
			r.problem("child %d reported up twice", c.ID)
		}
		r.seen[c.ID], r.live[c.ID] = true, c
		r.key(c.In.Key, fmt.Sprintf("child %d in", c.ID))
		r.key(c.Out.Key, fmt.Sprintf("child %d out", c.ID))
		r.key(c.In.AuthKey, fmt.Sprintf("child %d in auth", c.ID))
		r.key(c.Out.AuthKey, fmt.Sprintf("child %d out auth", c.ID))
	}
	cfg.OnChildDown = func(c *ChildSA) {
		r.mu.Lock()
		defer r.mu.Unlock()
		if r.live[c.ID] == nil {
			r.problem("child %d reported down without being up (or twice)", c.ID)
		}
		delete(r.live, c.ID)
	}
	cfg.OnIKEUp = func(s *IKESA) {
		s.e.mu.Lock()
		var ks [][]byte
		if s.keys != nil {
			ks = [][]byte{clone(s.keys.d), clone(s.keys.ei), clone(s.keys.er), clone(s.keys.ai), clone(s.keys.ar)}
		}
		s.e.mu.Unlock()
		r.mu.Lock()
		defer r.mu.Unlock()
		if r.seenIKE[s] {
			r.problem("%v reported up twice", s)
		}
		r.seenIKE[s], r.liveIKE[s] = true, true
		for k, b := range ks {
			r.key(b, fmt.Sprintf("%v key %d", s, k))
		}
	}
	cfg.OnIKEDown = func(s *IKESA, err error) {
		r.mu.Lock()
		defer r.mu.Unlock()
		if !r.liveIKE[s] {
			r.problem("%v reported down without being up (or twice): %v", s, err)
		}
		delete(r.liveIKE, s)
	}
}

// current returns the one live IKE SA, or nil.
func (r *recorder) current() *IKESA {
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.liveIKE) != 1 {
		return nil
	}
	for s := range r.liveIKE {
		return s
	}
	return nil
}

func (r *recorder) state() (children []sa.ChildID, ikes int, problems []string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for id := range r.live {
		children = append(children, id)
	}
	return children, len(r.liveIKE), append([]string(nil), r.problems...)
}

// TestRekeyProperty runs random sequences of child SA rekeys, IKE SA
// rekeys (from either side, sometimes crossing on the wire), pings and
// deletes, and checks after each step that both sides hold one IKE SA
// with the same SPIs and the same child (mirrored SPIs), that the
// callbacks balance (the recorder) and no key material repeats.
func TestRekeyProperty(t *testing.T) {
	for seed := uint64(1); seed <= 3; seed++ {
		t.Run(fmt.Sprint(seed), func(t *testing.T) {
			rng := rand.New(rand.NewPCG(seed, 0x1ce))
			ri, rr := newRecorder(), newRecorder()
			esp := []string{"aes128gcm16-x25519", "aes128gcm16"}
			if seed%2 == 0 {
				esp = []string{"aes128gcm16"}
			}
			icfg := Config{ESPTransforms: esp}
			rcfg := Config{ESPTransforms: esp}
			ri.config(&icfg)
			rr.config(&rcfg)
			i, r, gi, gr := gatedPair(t, icfg, rcfg)
			ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
			defer cancel()
			if _, err := i.ep.Initiate(ctx, port(r.conn)); err != nil {
				t.Fatal(err)
			}
			check := func(step int, op string) {
				t.Helper()
				var why string
				ok := waitFor(func() bool {
					a, b := i.ep.IKESAs(), r.ep.IKESAs()
					ci, ni, _ := ri.state()
					cr, nr, _ := rr.state()
					switch {
					case len(a) != 1 || len(b) != 1:
						why = fmt.Sprintf("%d and %d IKE SAs", len(a), len(b))
					case a[0].State != StateEstablished || b[0].State != StateEstablished:
						why = "not established: " + a[0].State + " " + b[0].State
					case a[0].SPIi != b[0].SPIi || a[0].SPIr != b[0].SPIr:
						why = "IKE SPIs differ"
					case len(a[0].Children) != 1 || len(b[0].Children) != 1:
						why = fmt.Sprintf("%d and %d children", len(a[0].Children), len(b[0].Children))
					case a[0].Children[0].InSPI != b[0].Children[0].OutSPI || a[0].Children[0].OutSPI != b[0].Children[0].InSPI:
						why = "child SPIs differ"
					case len(ci) != 1 || len(cr) != 1 || ci[0] != a[0].Children[0].ID || cr[0] != b[0].Children[0].ID:
						why = fmt.Sprintf("OnChild/OnChildDown do not balance: live %v and %v", ci, cr)
					case ni != 1 || nr != 1:
						why = fmt.Sprintf("OnIKEUp/OnIKEDown do not balance: %d and %d live", ni, nr)
					default:
						return true
					}
					return false
				})
				_, _, pi := ri.state()
				_, _, pr := rr.state()
				if len(pi) > 0 || len(pr) > 0 {
					t.Fatalf("step %d (%s): %v %v", step, op, pi, pr)
				}
				if !ok {
					t.Fatalf("step %d (%s): %s", step, op, why)
				}
			}
			check(0, "initiate")
			sides := [2]*side{i, r}
			recs := [2]*recorder{ri, rr}
			for step := 1; step <= 25; step++ {
				si, sr := ri.current(), rr.current()
				var op string
				var err error
				switch k := rng.IntN(9); k {
				case 0, 1:
					op = fmt.Sprintf("child rekey by %d", k)
					_, err = [2]*IKESA{si, sr}[k].RekeyChild(ctx)
				case 2, 3:
					op = fmt.Sprintf("IKE SA rekey by %d", k-2)
					_, err = [2]*IKESA{si, sr}[k-2].RekeyIKE(ctx)
				case 4:
					op = "crossing child rekeys"
					e1, e2 := crossing(t, gi, gr,
						func() error { _, err := si.RekeyChild(ctx); return err },
						func() error { _, err := sr.RekeyChild(ctx); return err })
					err = firstErr(e1, e2)
				case 5:
					op = "crossing IKE SA rekeys"
					e1, e2 := crossing(t, gi, gr,
						func() error { _, err := si.RekeyIKE(ctx); return err },
						func() error { _, err := sr.RekeyIKE(ctx); return err })
					err = firstErr(e1, e2)
				case 6:
					op = "crossing child rekey and IKE SA rekey"
					e1, e2 := crossing(t, gi, gr,
						func() error { _, err := si.RekeyChild(ctx); return err },
						func() error { _, err := sr.RekeyIKE(ctx); return err })
					err = firstErr(e1, e2)
				case 7:
					op = "ping"
					err = [2]*IKESA{si, sr}[rng.IntN(2)].Ping(ctx)
				case 8:
					who := rng.IntN(2)
					op = fmt.Sprintf("delete by %d and initiate again", who)
					if err = [2]*IKESA{si, sr}[who].Delete(ctx); err == nil {
						if !waitFor(func() bool { _, n0, _ := recs[0].state(); _, n1, _ := recs[1].state(); return n0 == 0 && n1 == 0 }) {
							t.Fatalf("step %d: IKE SA not down on both sides", step)
						}
						_, err = sides[0].ep.Initiate(ctx, port(r.conn))
					}
				}
				if err != nil {
					t.Fatalf("step %d (%s): %v", step, op, err)
				}
				check(step, op)
			}
			if err := ri.current().Delete(ctx); err != nil {
				t.Fatal(err)
			}
			if !waitFor(func() bool {
				c0, n0, _ := ri.state()
				c1, n1, _ := rr.state()
				return len(c0)+len(c1)+n0+n1 == 0
			}) {
				t.Fatal("callbacks do not balance after the final delete")
			}
		})
	}
}

func firstErr(errs ...error) error {
	for _, e := range errs {
		if e != nil {
			return e
		}
	}
	return nil
}

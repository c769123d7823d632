package ike

import (
	"errors"
	"math/rand/v2"
	"reflect"
	"strings"
	"sync"
	"testing"
)

// TestESPProposalDeterministic (the README's esp_proposals:
// [aes256gcm16-ecp384] was reported to fail once with "unsupported
// encryption algorithm"): over random lists of ESP names, with and
// without DH groups, in random case and spacing, parsed repeatedly,
// concurrently and interleaved with IKE proposals and invalid names.
// Invariant: the result of ESPProposal depends on its arguments only
// (no state, no map iteration order): the same list always gives the
// same proposal or the same error.
func TestESPProposalDeterministic(t *testing.T) {
	bases := []string{"aes128gcm16", "aes256gcm16", "aes192gcm16", "aes128-sha256", "aes256-sha384", "aes256-sha512", "aes256gcm"}
	groups := []string{"", "ecp384", "ecp256", "x25519", "curve25519", "modp2048", "ecp384-x25519"}
	rng := rand.New(rand.NewPCG(3, 4))
	var lists [][]string
	for range 200 {
		var l []string
		for range 1 + rng.IntN(3) {
			n := bases[rng.IntN(len(bases))]
			if g := groups[rng.IntN(len(groups))]; g != "" {
				n += "-" + g
			}
			if rng.IntN(3) == 0 {
				n = " " + strings.ToUpper(n) + " "
			}
			l = append(l, n)
		}
		lists = append(lists, l)
	}
	lists = append(lists, []string{"aes256gcm16-ecp384"})
	type result struct {
		p   Proposal
		err string
	}
	parse := func(l []string) result {
		p, err := ESPProposal(l, "no")
		if err != nil {
			return result{err: err.Error()}
		}
		return result{p: p}
	}
	want := make([]result, len(lists))
	for k, l := range lists {
		want[k] = parse(l)
		if want[k].err != "" {
			t.Fatalf("ESPProposal(%q): %s", l, want[k].err)
		}
	}
	var wg sync.WaitGroup
	errs := make(chan string, 8)
	for w := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r := rand.New(rand.NewPCG(uint64(w), 9))
			for range 500 {
				k := r.IntN(len(lists))
				switch r.IntN(4) {
				case 0:
					ParseIKEProposal("aes256gcm16-prfsha384-ecp384")
				case 1:
					ESPProposal([]string{"aes256gcm16-ecp521"}, "no")
				}
				if got := parse(lists[k]); !reflect.DeepEqual(got, want[k]) {
					select {
					case errs <- strings.Join(lists[k], ","):
					default:
					}
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for l := range errs {
		t.Errorf("ESPProposal(%s) gave another result on another call", l)
	}
	p := want[len(want)-1].p
	if dhOf(p) != ECP384 {
		t.Fatalf("aes256gcm16-ecp384: group %v", dhOf(p))
	}
}

// TestESPProposalUnknownGroup: an unknown DH group after a valid ESP
// transform is named as such, not as an unsupported cipher.
func TestESPProposalUnknownGroup(t *testing.T) {
	for n, bad := range map[string]string{"aes256gcm16-ecp521": "ecp521", "aes256-sha256-ecp521": "ecp521", "aes128gcm16-x25519-modp1024": "modp1024"} {
		_, err := ESPProposal([]string{n}, "no")
		if !errors.Is(err, ErrConfig) || !strings.Contains(err.Error(), `unsupported DH group "`+bad+`"`) || strings.Contains(err.Error(), "encryption algorithm") {
			t.Errorf("ESPProposal(%q): %v", n, err)
		}
	}
	if _, err := ESPProposal([]string{"aes999gcm16-ecp384"}, "no"); err == nil || strings.Contains(err.Error(), "DH group") {
		t.Errorf("unknown cipher with a known group: %v", err)
	}
}

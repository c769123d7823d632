package sa

import (
	"errors"
	"strings"
	"testing"

	"github.com/espxdp/espxdp/esp"
)

// TestKeyIdentityFamilies: SameKey follows the keystream primitive, not
// the transform name: the AES transforms with a 4-byte salt (GCM of any
// ICV length, GMAC, CTR) are one key per key material, whatever the
// integrity key of CTR; CBC and ChaCha20 keys of the same bytes are not.
func TestKeyIdentityFamilies(t *testing.T) {
	key := make([]byte, 20)
	for i := range key {
		key[i] = byte(i + 1)
	}
	mk := func(tr string, k []byte, auth byte) *SA {
		t.Helper()
		tf := esp.MustParseTransform(tr)
		a := make([]byte, tf.AuthKeyLen())
		for i := range a {
			a[i] = auth
		}
		return mustSA(t, Config{SPI: 0x100, Direction: Out, Mode: esp.Transport, Local: gwA, Remote: gwB,
			Transform: tf, Key: k, AuthKey: a})
	}
	gcm := mk("aes128gcm16", key, 0)
	for _, tr := range []string{"aes128gcm12", "aes128gcm8", "aes128gmac"} {
		if !gcm.SameKey(mk(tr, key, 0)) {
			t.Errorf("aes128gcm16 and %s with one key and salt: not the same key", tr)
		}
	}
	if !gcm.SameKey(mk("aes128ctr-sha256", key, 1)) || !mk("aes128ctr-sha256", key, 1).SameKey(mk("aes128ctr-sha1", key, 2)) {
		t.Error("AES-CTR with the key and nonce of an AES-GCM SA: not the same key (same keystream)")
	}
	other := append([]byte(nil), key...)
	other[19] ^= 1 // another salt: another nonce sequence
	if gcm.SameKey(mk("aes128gcm16", other, 0)) {
		t.Error("another salt counts as the same key")
	}
	cbc := mk("aes128-sha256", key[:16], 3)
	if cbc.SameKey(mk("aes128-sha256", key[:16], 4)) {
		t.Error("CBC with another integrity key counts as the same key")
	}
	if !cbc.SameKey(mk("aes128-sha256", key[:16], 3)) {
		t.Error("CBC with the same keys: not the same key")
	}
	k256 := make([]byte, 36)
	if mk("chacha20poly1305", k256, 0).SameKey(mk("aes256gcm16", k256, 0)) {
		t.Error("ChaCha20 and AES-256 keys of the same bytes count as one key")
	}
}

// TestSADRefusesSecondOutboundKey: no two outbound SAs of a SAD share a
// key (Add, AddChild, Replace), nor with one removed and not closed yet;
// re-adding the removed SA itself is fine.
func TestSADRefusesSecondOutboundKey(t *testing.T) {
	oc, ic := pairCfg("aes128gcm16", 0x100, fixedKeys)
	d := NewSAD(SADOptions{})
	a := mustSA(t, oc)
	if err := d.Add(a); err != nil {
		t.Fatal(err)
	}
	oc2 := oc
	oc2.SPI, oc2.Transform = 0x200, esp.MustParseTransform("aes128gcm12")
	b := mustSA(t, oc2)
	err := d.Add(b)
	if !errors.Is(err, ErrExists) || !strings.Contains(err.Error(), "key already in use by outbound SA") {
		t.Fatalf("second outbound SA with the key: %v", err)
	}
	// Inbound with the same key: the peer's choice, accepted.
	if err := d.Add(mustSA(t, ic)); err != nil {
		t.Fatal(err)
	}
	// Replace of another outbound SA by one with a's key.
	oc3 := oc
	oc3.SPI, oc3.Key = 0x300, append([]byte(nil), oc.Key...)
	oc3.Key[0] ^= 0xff
	c := mustSA(t, oc3)
	if err := d.Add(c); err != nil {
		t.Fatal(err)
	}
	oc4 := oc
	oc4.SPI = 0x300
	if _, err := d.Replace(mustSA(t, oc4)); !errors.Is(err, ErrExists) {
		t.Fatalf("Replace by an SA with a live outbound SA's key: %v", err)
	}
	if err := d.AddChild(mustSA(t, func() Config {
		x := oc3
		x.SPI, x.Key = 0x400, append([]byte(nil), oc3.Key...)
		x.Key[1] ^= 1
		return x
	}()),
		mustSA(t, func() Config { x := oc3; x.SPI = 0x500; return x }())); !errors.Is(err, ErrExists) {
		t.Fatalf("AddChild with c's key: %v", err)
	}
	// Removed, not closed: the key may still send.
	r, err := d.Remove(Out, 0x100)
	if err != nil {
		t.Fatal(err)
	}
	if err := d.Add(mustSA(t, oc2)); !errors.Is(err, ErrExists) {
		t.Fatalf("key of a removed, unclosed SA reused: %v", err)
	}
	if err := d.Add(r); err != nil { // the same SA back
		t.Fatalf("re-adding the removed SA: %v", err)
	}
}

// TestSADRetiredKeyCarries: an SA with a retired key (deleted, removed
// and closed, replaced by another key) continues above the highest
// number used under it, or with its window, whatever its SPI and ICV.
func TestSADRetiredKeyCarries(t *testing.T) {
	oc, ic := pairCfg("aes128gcm16", 0x100, fixedKeys)
	d := NewSAD(SADOptions{})
	a := mustSA(t, oc)
	d.Add(a)
	a.seq.Store(1000)
	if err := d.Delete(Out, 0x100); err != nil {
		t.Fatal(err)
	}
	oc2 := oc
	oc2.SPI, oc2.Transform = 0x200, esp.MustParseTransform("aes128gmac")
	b := mustSA(t, oc2)
	if err := d.Add(b); err != nil {
		t.Fatal(err)
	}
	if b.Seq() != 1000 {
		t.Fatalf("re-added key starts after %d, want 1000", b.Seq())
	}
	// Replaced by another key, then back.
	b.seq.Store(2000)
	oc3 := oc2
	oc3.Key = append([]byte(nil), oc.Key...)
	oc3.Key[0] ^= 0xff
	if _, err := d.Replace(mustSA(t, oc3)); err != nil {
		t.Fatal(err)
	}
	d.Delete(Out, 0x200)
	c := mustSA(t, oc)
	d.Add(c)
	if c.Seq() != 2000 {
		t.Fatalf("key back after a Replace by another key starts after %d, want 2000", c.Seq())
	}
	// Inbound: the window comes back.
	in := mustSA(t, ic)
	d.Add(in)
	in.mu.Lock()
	for _, n := range []uint64{5, 7, 9} {
		in.win.Update(n)
	}
	in.mu.Unlock()
	r, _ := d.Remove(In, 0x100)
	r.Close()
	ic2 := ic
	ic2.SPI = 0x600
	in2 := mustSA(t, ic2)
	d.Add(in2)
	for _, n := range []uint32{5, 7, 9} {
		if _, ok := in2.win.Check(n); ok {
			t.Errorf("seq %d accepted again after the key was re-added", n)
		}
	}
	if _, ok := in2.win.Check(8); !ok {
		t.Error("seq 8, never accepted, refused")
	}
}

// TestSADRetiredBounded: the SAD forgets the oldest retired keys first,
// beyond its bound.
func TestSADRetiredBounded(t *testing.T) {
	d := NewSAD(SADOptions{})
	d.retired.max = 4
	var first Config
	for i := range 6 {
		oc, _ := pairCfg("aes128gcm16", 0x100+uint32(i), nil)
		if i == 0 {
			first = oc
		}
		s := mustSA(t, oc)
		d.Add(s)
		s.seq.Store(100)
		d.Delete(Out, s.SPI())
	}
	if n := d.retired.lru.Len(); n != 4 || len(d.retired.m) != 4 {
		t.Fatalf("%d retired keys kept, want 4", n)
	}
	s := mustSA(t, first)
	d.Add(s)
	if s.Seq() != 0 {
		t.Fatalf("the oldest retired key was not forgotten (seq %d)", s.Seq())
	}
}

package sa

import (
	"errors"
	"math/rand/v2"
	"testing"
)

// bareSA makes a lightweight SA for table tests (no cipher).
func bareSA(spi uint32, dir Direction) *SA { return &SA{spi: spi, dir: dir} }

func TestSADAddReplaceDelete(t *testing.T) {
	d := NewSAD(SADOptions{})
	out, in := mustPair(t, "aes128gcm16", 0x500, nil)
	if err := d.Add(in); err != nil {
		t.Fatal(err)
	}
	if err := d.Add(out); err != nil { // same SPI, other direction
		t.Fatal(err)
	}
	if d.Lookup(0x500) != in || d.LookupOut(0x500) != out || d.Get(Out, 0x500) != out {
		t.Fatal("lookup by direction")
	}
	if d.Lookup(0x501) != nil {
		t.Fatal("phantom SA")
	}
	_, in2 := mustPair(t, "aes128gcm16", 0x500, nil)
	if err := d.Add(in2); !errors.Is(err, ErrExists) {
		t.Fatalf("duplicate add: %v", err)
	}
	other := NewSAD(SADOptions{})
	if err := other.Add(in); !errors.Is(err, ErrExists) {
		t.Fatalf("SA in two SADs: %v", err)
	}
	old, err := d.Replace(in2)
	if err != nil || old != in {
		t.Fatalf("Replace: %v %v", old, err)
	}
	if d.Lookup(0x500) != in2 || in.State() != StateDeleted {
		t.Fatal("Replace did not swap or did not close the old SA")
	}
	_, in3 := mustPair(t, "aes128gcm16", 0x777, nil)
	if _, err := d.Replace(in3); !errors.Is(err, ErrNotFound) {
		t.Fatalf("Replace of a missing SPI: %v", err)
	}
	if d.Len() != 2 || len(d.All()) != 2 {
		t.Fatalf("Len %d All %d", d.Len(), len(d.All()))
	}
	if err := d.Delete(In, 0x500); err != nil {
		t.Fatal(err)
	}
	if d.Lookup(0x500) != nil || d.LookupOut(0x500) != out || in2.State() != StateDeleted {
		t.Fatal("Delete")
	}
	s, err := d.Remove(Out, 0x500)
	if err != nil || s != out || out.State() == StateDeleted {
		t.Fatalf("Remove: %v %v %v", s, err, out.State())
	}
	if err := other.Add(out); err != nil {
		t.Fatalf("a removed SA can move to another SAD: %v", err)
	}
}

// TestSADManyRandomOps checks the table against a map through growth,
// tombstones and reuse.
func TestSADManyRandomOps(t *testing.T) {
	d := NewSAD(SADOptions{})
	ref := map[uint32]*SA{}
	rng := rand.New(rand.NewPCG(3, 4))
	for i := 0; i < 50000; i++ {
		spi := uint32(rng.IntN(3000)) + MinSPI
		switch rng.IntN(3) {
		case 0, 1:
			s := bareSA(spi, In)
			err := d.Add(s)
			if _, had := ref[spi]; had != (err != nil) {
				t.Fatalf("op %d Add %d: %v (had %v)", i, spi, err, had)
			}
			if err == nil {
				ref[spi] = s
			}
		case 2:
			_, err := d.Remove(In, spi)
			if _, had := ref[spi]; had != (err == nil) {
				t.Fatalf("op %d Remove %d: %v", i, spi, err)
			}
			delete(ref, spi)
		}
		if i%997 == 0 {
			for s := uint32(1); s <= 3000; s++ {
				if got := d.Lookup(s); got != ref[s] {
					t.Fatalf("op %d: Lookup(%d) = %v, want %v", i, s, got, ref[s])
				}
			}
		}
	}
	if d.Len() != len(ref) || len(d.All()) != len(ref) {
		t.Fatalf("Len %d, want %d", d.Len(), len(ref))
	}
	// Tombstones do not pile up: the table stays proportional to the
	// live entries.
	if n := len(d.in.Load().slots); n > 16*max(len(ref), 8) {
		t.Fatalf("table of %d slots for %d SAs", n, len(ref))
	}
}

func TestSADMillion(t *testing.T) {
	if testing.Short() {
		t.Skip("short")
	}
	d := NewSAD(SADOptions{})
	const n = 100_000
	for i := uint32(1); i <= n; i++ {
		if err := d.Add(bareSA(i*2654435761, In)); err != nil {
			// Multiplying by an odd constant is a bijection: no duplicates.
			t.Fatal(err)
		}
	}
	for i := uint32(1); i <= n; i += 101 {
		if s := d.Lookup(i * 2654435761); s == nil || s.spi != i*2654435761 {
			t.Fatalf("lookup %d", i)
		}
	}
}

package gateway

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"log/slog"
	mrand "math/rand/v2"
	"net/netip"
	"strings"
	"testing"

	"github.com/espxdp/espxdp/internal/config"
	"github.com/espxdp/espxdp/sa"
)

func zero(b []byte) bool {
	for _, x := range b {
		if x != 0 {
			return false
		}
	}
	return true
}

func hexKey(t *testing.T) string {
	k := make([]byte, 20)
	rand.Read(k)
	return "0x" + hex.EncodeToString(k)
}

// TestKeysWiped checks the invariant of entry over random sequences of
// control operations (New, sa-add, sa-update, sa-del, reload, Close):
// once an operation succeeded, no config.SA it was given still holds key
// bytes; the installed SAs are exactly those the operations left.
func TestKeysWiped(t *testing.T) {
	r := mrand.New(mrand.NewPCG(7, 8))
	fileYAML := func(kOut, kIn string, extra int) string {
		y := strings.Replace(offlineYAML, "key: 0x000102030405060708090a0b0c0d0e0f10111213", "key: "+kOut, 1)
		y = strings.Replace(y, "key: 0x101112131415161718191a1b1c1d1e1f20212223", "key: "+kIn, 1)
		for i := range extra {
			y += fmt.Sprintf("  - {name: x%d, direction: in, spi: 0x%x, local: 192.0.2.1, remote: 192.0.2.9, transform: aes128gcm16, key: %s}\n", i, 0x3000+i, hexKey(t))
		}
		return y
	}
	var given [][]byte // every key slice handed to the gateway by a successful operation
	track := func(cs ...*config.SA) {
		for _, c := range cs {
			given = append(given, c.Key, c.AuthKey)
		}
	}
	check := func(op string) {
		t.Helper()
		for i, k := range given {
			if !zero(k) {
				t.Fatalf("after %s: key slice %d of %d not wiped", op, i, len(given))
			}
		}
	}
	for iter := range 20 {
		cfg, err := config.Parse("gw.yaml", []byte(fileYAML(hexKey(t), hexKey(t), r.IntN(3))))
		if err != nil {
			t.Fatal(err)
		}
		gw, err := New(cfg, Options{Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
		if err != nil {
			t.Fatal(err)
		}
		track(cfg.SAs...)
		check("New")
		added := map[uint32]bool{}
		for op := range 30 {
			switch r.IntN(4) {
			case 0: // sa-add (or update, if present)
				spi := uint32(0x5000 + r.IntN(4))
				c, err := config.ParseSA("control", []byte(fmt.Sprintf("{name: c%x, direction: in, spi: 0x%x, local: 192.0.2.1, remote: 192.0.2.8, transform: aes128gcm16, key: %s}", spi, spi, hexKey(t))))
				if err != nil {
					t.Fatal(err)
				}
				if added[spi] {
					err = gw.UpdateSA(c, "")
				} else {
					err = gw.AddSA(c, "peer")
				}
				if err != nil {
					t.Fatalf("iter %d op %d: %v", iter, op, err)
				}
				added[spi] = true
				track(c)
			case 1: // sa-update of a file SA with a new key
				c, err := config.ParseSA("control", []byte("{name: b-to-a, direction: in, spi: 0x2001, local: 192.0.2.1, remote: 192.0.2.2, transform: aes128gcm16, key: "+hexKey(t)+"}"))
				if err != nil {
					t.Fatal(err)
				}
				if err := gw.UpdateSA(c, ""); err != nil {
					t.Fatal(err)
				}
				track(c)
			case 2: // sa-del of an added SA
				for spi := range added {
					if err := gw.DeleteSA(sa.In, spi, netip.Addr{}); err != nil {
						t.Fatal(err)
					}
					delete(added, spi)
					break
				}
			case 3: // reload: same keys or new ones, more or fewer SAs
				ncfg, err := config.Parse("gw.yaml", []byte(fileYAML(hexKey(t), hexKey(t), r.IntN(3))))
				if err != nil {
					t.Fatal(err)
				}
				if _, err := gw.Reload(ncfg); err != nil {
					t.Fatal(err)
				}
				track(ncfg.SAs...)
				clear(added) // the file is the truth
			}
			check(fmt.Sprintf("iter %d op %d", iter, op))
			if gw.SAD().Len() != len(gw.sas) {
				t.Fatalf("SAD has %d SAs, gateway %d", gw.SAD().Len(), len(gw.sas))
			}
		}
		gw.Close()
		if gw.SAD().Len() != 0 {
			t.Fatalf("SAs left after Close: %d", gw.SAD().Len())
		}
	}
}

// TestReloadSameKeysUnchanged: the same file after its keys were wiped
// from the running configuration is still recognised as unchanged (the
// fingerprint was taken before wiping).
func TestReloadSameKeysUnchanged(t *testing.T) {
	gw := offlineGateway(t)
	cfg, err := config.Parse("gw.yaml", []byte(offlineYAML))
	if err != nil {
		t.Fatal(err)
	}
	rr, err := gw.Reload(cfg)
	if err != nil || rr.Unchanged != 2 || len(rr.Replaced) != 0 {
		t.Errorf("reload of the same file: %+v, %v", rr, err)
	}
	for _, c := range cfg.SAs {
		if !zero(c.Key) {
			t.Errorf("%s: key kept after reload", c.Name)
		}
	}
}

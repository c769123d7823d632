package sa

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"time"
)

// ErrNoSPI: AllocSPI found no free SPI in the range.
var ErrNoSPI = errors.New("sa: no free SPI in range")

// DefaultSPIReservation is how long an SPI reserved by AllocSPI stays
// reserved when the ttl given is 0.
const DefaultSPIReservation = 30 * time.Second

// AllocSPI reserves a random free inbound SPI in [max(lo, MinSPI), hi],
// like XFRM's ALLOCSPI does for an IKE daemon that must tell its peer
// the SPI before it has the keys. The SPI is neither the SPI of an
// inbound SA in the SAD nor reserved; the reservation lasts ttl (0:
// DefaultSPIReservation), until ReleaseSPI, or until an inbound SA with
// that SPI is added (Add, AddChild), which consumes it. Expired
// reservations are dropped lazily (AllocSPI, Add) and by Sweep. It fails
// with ErrNoSPI when every SPI of the range is taken.
//
// Invariant: a reserved SPI is never the SPI of a live inbound SA
// (AllocSPI skips live SPIs, Add consumes the reservation), and AllocSPI
// never hands out an SPI that is live or reserved.
//
// The SAD cannot tell callers apart: any inbound SA added with a
// reserved SPI consumes the reservation, after which a second one fails
// with ErrExists.
func (d *SAD) AllocSPI(lo, hi uint32, ttl time.Duration) (uint32, error) {
	lo = max(lo, MinSPI)
	if lo > hi {
		return 0, fmt.Errorf("%w: empty range [0x%x, 0x%x]", ErrNoSPI, lo, hi)
	}
	if ttl <= 0 {
		ttl = DefaultSPIReservation
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	now := d.clock().UnixNano()
	n := uint64(hi) - uint64(lo) + 1
	free := func(spi uint32) bool {
		if exp, ok := d.spis[spi]; ok {
			if now < exp {
				return false
			}
			delete(d.spis, spi)
		}
		return d.in.Load().find(spi) == nil
	}
	take := func(spi uint32) (uint32, error) {
		d.spis[spi] = now + int64(ttl)
		return spi, nil
	}
	// Random probes find a free SPI at once unless the range is nearly
	// full; then a scan from a random start visits every SPI once. The
	// scan is only reached when the range holds few free SPIs, so it is
	// bounded by the number of SAs and reservations, not the range.
	for range 32 {
		if spi := lo + uint32(rand.Uint64N(n)); free(spi) {
			return take(spi)
		}
	}
	start := rand.Uint64N(n)
	for i := uint64(0); i < n; i++ {
		if spi := lo + uint32((start+i)%n); free(spi) {
			return take(spi)
		}
	}
	return 0, fmt.Errorf("%w: [0x%x, 0x%x]", ErrNoSPI, lo, hi)
}

// ReleaseSPI gives back an SPI reserved by AllocSPI and not consumed.
// It fails with ErrNotFound when spi is not reserved (never was, was
// consumed, released or expired).
func (d *SAD) ReleaseSPI(spi uint32) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	exp, ok := d.spis[spi]
	delete(d.spis, spi)
	if !ok || d.clock().UnixNano() >= exp {
		return fmt.Errorf("%w: SPI 0x%08x is not reserved", ErrNotFound, spi)
	}
	return nil
}

// Reserved reports whether spi is reserved by AllocSPI (and the
// reservation has not expired).
func (d *SAD) Reserved(spi uint32) bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	exp, ok := d.spis[spi]
	return ok && d.clock().UnixNano() < exp
}

// expireReservations drops the reservations expired at now (d.mu held).
func (d *SAD) expireReservations(now int64) {
	for spi, exp := range d.spis {
		if now >= exp {
			delete(d.spis, spi)
		}
	}
}

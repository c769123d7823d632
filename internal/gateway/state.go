package gateway

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strings"
	"sync"

	"github.com/espxdp/espxdp/esp"
	"github.com/espxdp/espxdp/internal/config"
	"github.com/espxdp/espxdp/sa"
)

// Persisted sequence state (gateway.state_dir).
//
// Invariant (outbound): under one key no sequence number is sent twice,
// across restarts and crashes. Each outbound SA runs under a reservation
// (sa.Config.SeqLimit / SA.SetSeqLimit): it may use sequence numbers up
// to the reserved limit and no further. A limit is written to the state
// file and made durable (temporary file, fsync, rename, fsync of the
// directory) BEFORE the SA is allowed to use it, and an SA created after
// a restart starts above the persisted limit (sa.Config.InitialSeq), so
// whatever moment the process died at, every number it may have sent is
// at or below the persisted limit, and every number it sends after the
// restart is above it. The peer receives numbers above its window: no
// black hole. Numbers between the last one sent and the limit are
// skipped, which is harmless.
//
// Inbound replay windows are saved when an SA is removed (control socket,
// reload) and at a clean stop (SA.ReplayState, exact once the SA is
// closed; merged with what the record held) and restored when an SA with
// the key is installed (sa.Config.Replay). After
// a crash an inbound SA starts with an empty window: what protects
// against replays across the crash is then the peer's own persisted
// counter; the residual risk is that packets captured before the crash,
// with numbers above the restored (or empty) window, are accepted once
// until the window moves past them.
//
// Records are keyed by direction and an HMAC of the key identity
// (sa.WriteKeyIdentity: the key material under its keystream primitive,
// so aes128gcm16 and aes128gcm12 with one key are one record) under a
// random secret kept in the state file - not by SPI: the same key under
// another SPI continues above the reservation. A rekey (new key) starts
// afresh, and the file reveals nothing about the keys. Records are never
// removed when an SA is deleted: a re-added SA with the same key
// continues above its old reservation. Records of the older format
// (direction/SPI/HMAC of transform name and key) are folded into the new
// one the first time an SA with their key is installed.

// SeqBlock is how many sequence numbers one reservation adds. A new block
// is reserved when half of the current one is used (sa.EventSeqLimit,
// and the sweeper as a fallback), so the file is written about once per
// SeqBlock/2 packets per SA.
const SeqBlock = 1 << 20

// seqBlock is SeqBlock (tests make it small).
var seqBlock uint64 = SeqBlock

// stateFile is the file under state_dir.
const stateFile = "espxdp-state.json"

// stateData is the file's content.
type stateData struct {
	Secret string                     `json:"secret"`
	Out    map[string]uint64          `json:"out"` // record id -> reserved limit
	In     map[string]*sa.ReplayState `json:"in"`  // record id -> window at the last clean stop
}

// stateStore is the state file of a gateway; its methods are safe for
// concurrent use.
type stateStore struct {
	mu     sync.Mutex
	dir    string
	secret []byte
	data   stateData
}

// openState reads (or creates) the state file in dir.
func openState(dir string) (*stateStore, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("gateway: state_dir: %w", err)
	}
	// Whoever can rewrite the file can lower a reservation and make us
	// reuse sequence numbers: the directory must be ours alone.
	if err := checkSocketDir(dir); err != nil {
		return nil, fmt.Errorf("gateway: state_dir: %w", err)
	}
	st := &stateStore{dir: dir}
	b, err := os.ReadFile(filepath.Join(dir, stateFile))
	switch {
	case errors.Is(err, os.ErrNotExist):
		st.secret = make([]byte, 32)
		if _, err := rand.Read(st.secret); err != nil {
			return nil, err
		}
		st.data.Secret = hex.EncodeToString(st.secret)
	case err != nil:
		return nil, fmt.Errorf("gateway: state_dir: %w", err)
	default:
		if err := json.Unmarshal(b, &st.data); err != nil {
			// Never guess: starting from zero would reuse numbers.
			return nil, fmt.Errorf("gateway: state file %s is damaged (%v); refusing to start (restore it, or rekey every SA and remove it)", filepath.Join(dir, stateFile), err)
		}
		st.secret, err = hex.DecodeString(st.data.Secret)
		if err != nil || len(st.secret) < 16 {
			return nil, fmt.Errorf("gateway: state file %s has no valid secret; refusing to start", filepath.Join(dir, stateFile))
		}
	}
	if st.data.Out == nil {
		st.data.Out = map[string]uint64{}
	}
	if st.data.In == nil {
		st.data.In = map[string]*sa.ReplayState{}
	}
	return st, nil
}

// recordID names an SA's record: direction and an HMAC of its key
// identity (not the SPI, not the transform name). Call it before the
// config's keys are wiped; it folds the records of the older format for
// the same key into the new one (in memory; saved with the next write).
func (st *stateStore) recordID(c *config.SA) string {
	m := hmac.New(sha256.New, st.secret)
	sa.WriteKeyIdentity(m, c.Transform, c.Key, c.AuthKey)
	id := fmt.Sprintf("%s/key/%x", c.Direction, m.Sum(nil)[:16])
	st.mu.Lock()
	defer st.mu.Unlock()
	st.foldLegacyLocked(id, c)
	return id
}

// foldLegacyLocked merges the records of the older format (direction/
// SPI/HMAC of transform name and keys, any SPI, any transform of c's key
// family) into the record id (st.mu held).
func (st *stateStore) foldLegacyLocked(id string, c *config.SA) {
	sums := map[string]bool{}
	for _, n := range esp.TransformNames() {
		t, err := esp.ParseTransform(n)
		if err != nil || t.KeyFamily() != c.Transform.KeyFamily() || t.KeyLen() != len(c.Key) || t.AuthKeyLen() != len(c.AuthKey) {
			continue
		}
		m := hmac.New(sha256.New, st.secret)
		fmt.Fprintf(m, "%s|%d|", t.Name(), len(c.Key))
		m.Write(c.Key)
		m.Write(c.AuthKey)
		sums[fmt.Sprintf("%x", m.Sum(nil)[:16])] = true
	}
	match := func(rid string) bool {
		d, rest, ok := strings.Cut(rid, "/")
		if !ok || d != c.Direction.String() {
			return false
		}
		spi, sum, ok := strings.Cut(rest, "/")
		return ok && len(spi) == 8 && sums[sum]
	}
	for rid, lim := range st.data.Out {
		if match(rid) {
			st.data.Out[id] = max(st.data.Out[id], lim)
			delete(st.data.Out, rid)
		}
	}
	for rid, w := range st.data.In {
		if match(rid) {
			m := sa.MergeReplayStates(st.in(id), *w)
			st.data.In[id] = &m
			delete(st.data.In, rid)
		}
	}
}

// in returns the saved window of id (zero if none; st.mu held).
func (st *stateStore) in(id string) sa.ReplayState {
	if w := st.data.In[id]; w != nil {
		return *w
	}
	return sa.ReplayState{}
}

// saveLocked writes the file durably: temporary file, fsync, rename,
// fsync of the directory. st.mu is held.
func (st *stateStore) saveLocked() error {
	b, err := json.Marshal(&st.data)
	if err != nil {
		return err
	}
	tmp, err := os.CreateTemp(st.dir, stateFile+".tmp*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if err := tmp.Chmod(0o600); err != nil {
		tmp.Close()
		return err
	}
	if _, err := tmp.Write(b); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	if err := os.Rename(tmp.Name(), filepath.Join(st.dir, stateFile)); err != nil {
		return err
	}
	d, err := os.Open(st.dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

// maxSeq is the highest sequence number of an SA.
func maxSeq(esn bool) uint64 {
	if esn {
		return math.MaxUint64
	}
	return math.MaxUint32
}

// start returns the InitialSeq and the first SeqLimit of an outbound SA
// with record id, having made the new reservation durable.
func (st *stateStore) start(id string, esn bool) (initial, limit uint64, err error) {
	st.mu.Lock()
	defer st.mu.Unlock()
	initial = min(st.data.Out[id], maxSeq(esn))
	limit = reserveAbove(initial, esn)
	st.data.Out[id] = limit
	if err := st.saveLocked(); err != nil {
		st.data.Out[id] = initial
		return 0, 0, fmt.Errorf("gateway: state_dir: %w", err)
	}
	return initial, limit, nil
}

// reserveAbove is the limit SeqBlock above n (saturating).
func reserveAbove(n uint64, esn bool) uint64 {
	m := maxSeq(esn)
	if n > m-seqBlock {
		return m
	}
	return n + seqBlock
}

// extend reserves the block after the current limit of the record id
// and returns the new limit, durable, for SA.SetSeqLimit.
func (st *stateStore) extend(id string, esn bool) (uint64, error) {
	st.mu.Lock()
	defer st.mu.Unlock()
	old := st.data.Out[id]
	limit := reserveAbove(old, esn)
	if limit == old {
		return old, nil
	}
	st.data.Out[id] = limit
	if err := st.saveLocked(); err != nil {
		st.data.Out[id] = old
		return 0, fmt.Errorf("gateway: state_dir: %w", err)
	}
	return limit, nil
}

// replay returns the saved window of the inbound record id, or nil.
func (st *stateStore) replay(id string) *sa.ReplayState {
	st.mu.Lock()
	defer st.mu.Unlock()
	if r := st.data.In[id]; r != nil {
		c := *r
		return &c
	}
	return nil
}

// saveReplay stores inbound windows (exact, of closed SAs) durably,
// merged with what their records hold: several SAs may have used a key.
func (st *stateStore) saveReplay(wins map[string]sa.ReplayState) error {
	st.mu.Lock()
	defer st.mu.Unlock()
	for id, w := range wins {
		m := sa.MergeReplayStates(st.in(id), w)
		st.data.In[id] = &m
	}
	return st.saveLocked()
}

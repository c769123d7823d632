package exampleenv

import (
	"bytes"
	"sync"
	"testing"

	"github.com/espxdp/espxdp/sa"
)

// LogWriter returns a writer that sends what is written to t's log,
// line by line (a partial last line waits for its newline). It is safe
// for concurrent use.
func LogWriter(t testing.TB) *TestLog {
	return &TestLog{t: t}
}

// TestLog is the writer LogWriter returns.
type TestLog struct {
	t   testing.TB
	mu  sync.Mutex
	buf bytes.Buffer
}

// Write logs every complete line of p (with what came before it).
func (l *TestLog) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.buf.Write(p)
	for {
		line, err := l.buf.ReadString('\n')
		if err != nil {
			l.buf.WriteString(line)
			return len(p), nil
		}
		l.t.Log(line[:len(line)-1])
	}
}

// CheckSAPair checks that an SA's two ends agree once traffic stopped:
// the receiver decrypted what the sender encrypted (at least one
// packet), less what the interfaces between them dropped (a busy
// machine can overflow a veth's XDP ring; TCP retransmits); bytes too
// when nothing was dropped; and no packet failed authentication,
// anti-replay or the inbound selectors.
func CheckSAPair(t testing.TB, name string, out, in sa.Stats, wireDrops uint64) {
	t.Helper()
	if out.EncapsPkts == 0 || out.EncapsPkts != in.DecapsPkts+wireDrops {
		t.Errorf("%s: %d packets encapsulated, %d decapsulated, %d dropped on the way", name, out.EncapsPkts, in.DecapsPkts, wireDrops)
	}
	if wireDrops == 0 && out.EncapsBytes != in.DecapsBytes {
		t.Errorf("%s: %d bytes encapsulated, %d decapsulated", name, out.EncapsBytes, in.DecapsBytes)
	}
	for _, s := range []sa.Stats{out, in} {
		for _, r := range []sa.DropReason{sa.DropAuth, sa.DropReplay, sa.DropPolicy} {
			if s.Drops[r] != 0 {
				t.Errorf("SA %s: %d drops %v", s.Name, s.Drops[r], r)
			}
		}
	}
}

// CheckEqual fails t unless two counters that must agree do.
func CheckEqual(t testing.TB, what string, x, y uint64) {
	t.Helper()
	if x != y {
		t.Errorf("%s: %d != %d", what, x, y)
	}
}

// Package scapypeer runs scapy's IPsec implementation
// (scapy.layers.ipsec.SecurityAssociation) as an independent ESP peer for
// interoperability tests.
//
// A test collects all its cases and hands them to Run, which starts one
// Python process for the whole batch (Python and scapy take about a
// second to start, so one process per packet would be far too slow),
// passes the cases as JSON on stdin and reads the results as JSON from
// stdout. The Python side is peer.py, embedded in this package; it only
// calls scapy and does no cryptography of its own.
//
// The interpreter is /usr/bin/python3 (Debian's python3-scapy installs
// there; a python3 earlier in PATH may lack scapy), or the one named by
// the environment variable SCAPY_PYTHON. When it or scapy is missing, the
// test is skipped with a message saying so, except in CI (CI=true), where
// it fails: CI installs scapy, and a skipped interop test would hide that
// nothing was checked.
package scapypeer

import (
	"bytes"
	"context"
	_ "embed"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/espxdp/espxdp/internal/testenv"
)

//go:embed peer.py
var script string

// DefaultPython is the interpreter used unless SCAPY_PYTHON is set.
const DefaultPython = "/usr/bin/python3"

// exitNoScapy is peer.py's exit status when scapy cannot be imported.
const exitNoScapy = 3

// ErrUnavailable means Python or scapy is not installed.
var ErrUnavailable = errors.New("scapypeer: python3 with scapy is not available")

// Op is what scapy does with a case's packet.
type Op string

const (
	// Encrypt calls SecurityAssociation.encrypt on a plaintext packet.
	Encrypt Op = "encrypt"
	// Decrypt calls SecurityAssociation.decrypt on an ESP packet.
	Decrypt Op = "decrypt"
)

// SA holds the arguments of scapy's SecurityAssociation(ESP, ...). Algorithm
// names are scapy's: "AES-CBC", "AES-CTR", "AES-GCM", "3DES",
// "CHACHA20-POLY1305", "" for NULL; "HMAC-SHA1-96", "SHA2-256-128",
// "SHA2-384-192", "SHA2-512-256", "" for none. Keys are in scapy's layout,
// which for AES-CTR, AES-GCM and ChaCha20-Poly1305 is key‖4-byte salt, as
// in RFC 3686, 4106, 7634 and Linux xfrm.
type SA struct {
	SPI          uint32 `json:"spi"`
	CryptAlgo    string `json:"crypt_algo"`
	CryptKey     []byte `json:"crypt_key"`
	CryptICVSize int    `json:"crypt_icv_size,omitempty"` // 0: the algorithm's default
	AuthAlgo     string `json:"auth_algo"`
	AuthKey      []byte `json:"auth_key"`
	// ESN is scapy's esn_en, ESNHigh its esn: the high 32 bits of the
	// sequence number.
	ESN     bool   `json:"esn_en"`
	ESNHigh uint32 `json:"esn"`
	// Tunnel selects tunnel mode. To encrypt, TunnelSrc and TunnelDst are
	// the outer addresses (both IPv4 or both IPv6); to decrypt they are
	// not needed.
	Tunnel    bool   `json:"tunnel"`
	TunnelSrc string `json:"tunnel_src,omitempty"`
	TunnelDst string `json:"tunnel_dst,omitempty"`
	// NATT adds (encrypt) or expects (decrypt) a UDP 4500→4500 header.
	NATT bool `json:"natt"`
}

// Case is one operation of a batch.
type Case struct {
	Op Op `json:"op"`
	SA SA `json:"sa"`
	// Seq is the (low 32 bits of the) sequence number to encrypt with.
	Seq uint32 `json:"seq"`
	// Packet starts at the IP header: the plaintext packet to encrypt or
	// the ESP packet to decrypt.
	Packet []byte `json:"packet"`
}

// Result is scapy's answer to one Case.
type Result struct {
	// Packet is the raw result (the encrypted packet, or the decrypted
	// and decapsulated one), empty on error.
	Packet []byte `json:"packet"`
	// ErrorType is the Python exception class scapy raised, e.g.
	// "IPSecIntegrityError", and Error its message; both empty on success.
	ErrorType string `json:"error_type"`
	Error     string `json:"error"`
	// OuterUDPChecksum is, for a NAT-T Decrypt, scapy's verdict on the
	// outer UDP checksum of the packet it was given: "zero" (no checksum),
	// "ok" or "bad".
	OuterUDPChecksum string `json:"outer_udp_checksum"`
}

// Response is the answer to a batch.
type Response struct {
	ScapyVersion string   `json:"scapy_version"`
	Results      []Result `json:"results"`
}

// Python returns the interpreter to use: $SCAPY_PYTHON or DefaultPython.
func Python() string {
	if p := os.Getenv("SCAPY_PYTHON"); p != "" {
		return p
	}
	return DefaultPython
}

// Exec runs all cases in one Python process and returns one Result per
// case, in order. It returns an error wrapping ErrUnavailable when the
// interpreter or scapy is missing, and another error if the process fails
// as a whole.
func Exec(ctx context.Context, cases []Case) (*Response, error) {
	py := Python()
	if _, err := os.Stat(py); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrUnavailable, err)
	}
	req, err := json.Marshal(struct {
		Cases []Case `json:"cases"`
	}{cases})
	if err != nil {
		return nil, err
	}
	cmd := exec.CommandContext(ctx, py, "-c", script)
	cmd.Stdin = bytes.NewReader(req)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err = cmd.Run()
	var ee *exec.ExitError
	if errors.As(err, &ee) && ee.ExitCode() == exitNoScapy {
		return nil, fmt.Errorf("%w: %s: %s", ErrUnavailable, py, strings.TrimSpace(stderr.String()))
	}
	if err != nil {
		return nil, fmt.Errorf("scapypeer: %s: %v; stderr:\n%s", py, err, tail(stderr.String(), 2000))
	}
	var resp Response
	if err := json.Unmarshal(stdout.Bytes(), &resp); err != nil {
		return nil, fmt.Errorf("scapypeer: bad response from peer.py: %v; stderr:\n%s", err, tail(stderr.String(), 2000))
	}
	if len(resp.Results) != len(cases) {
		return nil, fmt.Errorf("scapypeer: %d results for %d cases", len(resp.Results), len(cases))
	}
	return &resp, nil
}

// Run is Exec for tests: when scapy is unavailable it skips t (or fails
// it when CI=true), and any other failure is fatal. It gives the batch
// two minutes.
func Run(t testing.TB, cases []Case) *Response {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	resp, err := Exec(ctx, cases)
	if errors.Is(err, ErrUnavailable) {
		testenv.Unavailable(t, err.Error()+" (install Debian's python3-scapy, or set SCAPY_PYTHON)")
	}
	if err != nil {
		t.Fatal(err)
	}
	return resp
}

func tail(s string, n int) string {
	if len(s) > n {
		return "…" + s[len(s)-n:]
	}
	return s
}

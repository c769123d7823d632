package gateway

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/espxdp/espxdp/internal/config"
	"github.com/espxdp/espxdp/sa"
)

// The control protocol: a client connects to the unix socket, writes one
// JSON Request on a line and reads one JSON Response on a line; then the
// connection closes. Commands:
//
//	show-sa                       -> Response.SAs
//	show-stats                    -> Response.Stats
//	sa-add    {sa, tunnel}        -> ok (sa: one SA mapping, or a list added all or none)
//	sa-update {sa, tunnel}        -> ok
//	sa-del    {direction, spi[, remote]} -> ok (remote: outbound SAs sharing an SPI)
//	child-del {child}             -> Response.Deleted (every SA of the child group)
//	alloc-spi {[min, max, ttl]}   -> Response.SPI (a reserved free inbound SPI)
//	release-spi {spi}             -> ok
//	reload                        -> Response.Reload (re-reads the file the daemon runs from)
//	events                        -> ok, then one Event per line until either side closes
//	show-ike                      -> Response.IKE (peers, IKE SAs, child SAs)
//	ike-initiate {peer}           -> ok once the IKE SA is up (or its error)
//	ike-terminate {peer}          -> ok (IKE and child SAs deleted; no automatic initiation)

// Request is one control command.
type Request struct {
	Cmd string `json:"cmd"`
	// SA is an SA mapping as in the configuration's sas list (sa-add,
	// sa-update), or for sa-add a list of them, added atomically (all or
	// none); key material travels here, so the socket is 0600.
	SA        string `json:"sa,omitempty"`
	Tunnel    string `json:"tunnel,omitempty"`
	Direction string `json:"direction,omitempty"`
	SPI       uint32 `json:"spi,omitempty"`
	// Remote identifies an outbound SA for sa-del when several outbound
	// SAs (to different peers) have the SPI.
	Remote string `json:"remote,omitempty"`
	// Child is the child group of child-del (an SA's child:).
	Child uint64 `json:"child,omitempty"`
	// Min and Max bound the SPI of alloc-spi (defaults: 256 and
	// 0xffffffff); TTL is how long it stays reserved, a Go duration
	// such as "30s" (default: 30s).
	Min uint32 `json:"min,omitempty"`
	Max uint32 `json:"max,omitempty"`
	TTL string `json:"ttl,omitempty"`
	// Peer names an IKE peer (ike-initiate, ike-terminate).
	Peer string `json:"peer,omitempty"`
}

// Response answers a Request.
type Response struct {
	OK     bool          `json:"ok"`
	Error  string        `json:"error,omitempty"`
	SAs    []sa.Stats    `json:"sas,omitempty"`
	Stats  *Stats        `json:"stats,omitempty"`
	Reload *ReloadResult `json:"reload,omitempty"`
	// SPI is the SPI alloc-spi reserved.
	SPI uint32 `json:"spi,omitempty"`
	// Deleted is how many SAs child-del deleted.
	Deleted int `json:"deleted,omitempty"`
	// Owners names the IKE SA of every SA negotiated with IKE
	// (show-sa).
	Owners []SAOwner `json:"owners,omitempty"`
	// IKE is the IKE peers and their SAs (show-ike).
	IKE []IKEPeerInfo `json:"ike,omitempty"`

	// touched names the SAs of an sa-add or sa-update, for the request
	// log (which would otherwise parse the request, keys and all, again).
	touched []saIdent
}

// saIdent names an SA in the request log.
type saIdent struct {
	name, dir string
	spi       uint32
}

func identsOf(cs ...*config.SA) []saIdent {
	ids := make([]saIdent, len(cs))
	for i, c := range cs {
		ids[i] = saIdent{c.Name, c.Direction.String(), c.SPI}
	}
	return ids
}

// Limits of the control socket.
const (
	// MaxRequest bounds a request line (an sa-add carries one SA).
	MaxRequest = 1 << 20
	// MaxConns bounds the request connections served at once; one more
	// is answered with an error and closed.
	MaxConns = 16
)

// Errors of the control socket.
var (
	// ErrSocketPath: the control socket path holds something that is
	// not a stale socket, or its directory (or the state_dir) is
	// unsafe; nothing was deleted.
	ErrSocketPath = errors.New("gateway: unsafe path")
)

type controlServer struct {
	ln    *net.UnixListener
	path  string
	wg    sync.WaitGroup
	mu    sync.Mutex
	open  map[net.Conn]bool
	slots chan struct{} // one per request connection being served
	done  chan struct{} // closed by close
}

// ReloadFunc, if set on a gateway with SetReloader, serves the reload
// command (the daemon re-reads its file).
type ReloadFunc func() (ReloadResult, error)

// SetReloader sets what the control socket's reload command does.
func (gw *Gateway) SetReloader(fn ReloadFunc) {
	gw.mu.Lock()
	gw.reloader = fn
	gw.mu.Unlock()
}

// checkSocketDir refuses a directory for the control socket that others
// could write to: not a directory, owned by someone other than root or
// us, or group/world-writable (sticky or not: another user could then
// create the path before us, or a look-alike socket beside it).
func checkSocketDir(dir string) error {
	fi, err := os.Lstat(dir)
	if err != nil {
		return fmt.Errorf("%w: %w", ErrSocketPath, err)
	}
	if !fi.IsDir() {
		return fmt.Errorf("%w: %s is not a directory", ErrSocketPath, dir)
	}
	if uid, ok := fileOwner(fi); ok && uid != 0 && uid != os.Geteuid() {
		return fmt.Errorf("%w: directory %s belongs to uid %d, not root or us", ErrSocketPath, dir, uid)
	}
	if fi.Mode().Perm()&0o022 != 0 {
		return fmt.Errorf("%w: directory %s is writable by group or others (mode %v); use a private directory such as /run/espxdp", ErrSocketPath, dir, fi.Mode().Perm())
	}
	return nil
}

// clearStaleSocket removes path if it is a socket nobody listens on; a
// live socket or anything that is not a socket is an error, and left
// alone.
func clearStaleSocket(path string) error {
	fi, err := os.Lstat(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("%w: %w", ErrSocketPath, err)
	}
	if fi.Mode().Type() != os.ModeSocket {
		return fmt.Errorf("%w: %s exists and is not a socket (%v); not removing it", ErrSocketPath, path, fi.Mode().Type())
	}
	if c, err := net.DialTimeout("unix", path, 200*time.Millisecond); err == nil {
		c.Close()
		return fmt.Errorf("%w: %s is in use by another process", ErrSocketPath, path)
	}
	if err := os.Remove(path); err != nil {
		return fmt.Errorf("%w: stale socket %s: %w", ErrSocketPath, path, err)
	}
	return nil
}

// listenControl creates the control socket (mode 0600, its directory
// 0700 if it has to make it, which must not be writable by others),
// replacing a stale socket but nothing else.
func (gw *Gateway) listenControl(path string) (*controlServer, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, fmt.Errorf("gateway: control socket: %w", err)
	}
	if err := checkSocketDir(filepath.Dir(path)); err != nil {
		return nil, err
	}
	if err := clearStaleSocket(path); err != nil {
		return nil, err
	}
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
	if err != nil {
		return nil, fmt.Errorf("gateway: control socket: %w", err)
	}
	if err := os.Chmod(path, 0o600); err != nil {
		ln.Close()
		return nil, fmt.Errorf("gateway: control socket: %w", err)
	}
	s := &controlServer{ln: ln, path: path, open: map[net.Conn]bool{}, slots: make(chan struct{}, MaxConns), done: make(chan struct{})}
	s.wg.Add(1)
	go s.serve(gw)
	return s, nil
}

func (s *controlServer) serve(gw *Gateway) {
	defer s.wg.Done()
	for {
		c, err := s.ln.Accept()
		if err != nil {
			return
		}
		select {
		case s.slots <- struct{}{}:
		default:
			c.SetWriteDeadline(time.Now().Add(time.Second))
			writeResponse(c, Response{Error: fmt.Sprintf("busy: %d control connections already open; try again", MaxConns)})
			c.Close()
			continue
		}
		s.mu.Lock()
		s.open[c] = true
		s.mu.Unlock()
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			defer func() {
				s.mu.Lock()
				delete(s.open, c)
				s.mu.Unlock()
				c.Close()
			}()
			gw.serveConn(s, c)
		}()
	}
}

func (s *controlServer) close() error {
	err := s.ln.Close()
	close(s.done)
	s.mu.Lock()
	for c := range s.open {
		c.Close()
	}
	s.mu.Unlock()
	s.wg.Wait()
	os.Remove(s.path)
	return err
}

// serveConn serves one request connection, which holds a slot of s.
func (gw *Gateway) serveConn(s *controlServer, c net.Conn) {
	release := sync.OnceFunc(func() { <-s.slots })
	defer release()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	r := bufio.NewReaderSize(io.LimitReader(c, MaxRequest+1), 4096)
	line, err := r.ReadBytes('\n')
	if len(line) > MaxRequest {
		writeResponse(c, Response{Error: fmt.Sprintf("request: larger than %d bytes", MaxRequest)})
		return
	}
	if err != nil && !(errors.Is(err, io.EOF) && len(line) > 0) {
		writeResponse(c, Response{Error: "request: want one JSON object on a line"})
		return
	}
	var req Request
	if err := json.Unmarshal(line, &req); err != nil {
		resp := Response{Error: "request: " + err.Error()}
		gw.logRequest(peerOf(c), Request{Cmd: "(malformed)", SA: string(line)}, resp, 0)
		writeResponse(c, resp)
		return
	}
	clear(line) // an sa-add carries keys
	if req.Cmd == "events" || req.Cmd == "subscribe" {
		gw.logRequest(peerOf(c), req, Response{OK: true}, 0)
		gw.serveEvents(s, c, release)
		return
	}
	start := time.Now()
	resp := gw.Handle(req)
	gw.logRequest(peerOf(c), req, resp, time.Since(start))
	writeResponse(c, resp)
}

func writeResponse(w io.Writer, resp Response) {
	b, err := json.Marshal(resp)
	if err != nil {
		b, _ = json.Marshal(Response{Error: "response: " + err.Error()})
	}
	w.Write(append(b, '\n'))
}

// Handle executes one control request; the socket server calls it, and
// so can an embedding program.
func (gw *Gateway) Handle(req Request) Response {
	fail := func(err error) Response { return Response{Error: err.Error()} }
	switch req.Cmd {
	case "show-sa":
		return Response{OK: true, SAs: gw.SAStats(), Owners: gw.SAOwners()}
	case "show-ike":
		return Response{OK: true, IKE: gw.IKEInfo()}
	case "ike-initiate":
		if err := gw.Initiate(req.Peer, 8*time.Second); err != nil {
			return fail(err)
		}
		return Response{OK: true}
	case "ike-terminate":
		if err := gw.Terminate(req.Peer); err != nil {
			return fail(err)
		}
		return Response{OK: true}
	case "show-stats":
		st := gw.Stats()
		return Response{OK: true, Stats: &st}
	case "sa-add":
		if len(req.SA) == 0 {
			return fail(errors.New("missing sa"))
		}
		cs, err := config.ParseSAs("control", []byte(req.SA))
		if err != nil {
			return fail(err)
		}
		ids := identsOf(cs...)
		if err := gw.AddSAs(cs, req.Tunnel); err != nil {
			for _, c := range cs {
				c.Key.Wipe()
				c.AuthKey.Wipe()
			}
			resp := fail(err)
			resp.touched = ids
			return resp
		}
		return Response{OK: true, touched: ids}
	case "sa-update":
		if len(req.SA) == 0 {
			return fail(errors.New("missing sa"))
		}
		c, err := config.ParseSA("control", []byte(req.SA))
		if err != nil {
			return fail(err)
		}
		ids := identsOf(c)
		if err := gw.UpdateSA(c, req.Tunnel); err != nil {
			c.Key.Wipe()
			c.AuthKey.Wipe()
			resp := fail(err)
			resp.touched = ids
			return resp
		}
		return Response{OK: true, touched: ids}
	case "child-del":
		if req.Child == 0 {
			return fail(errors.New("child-del: missing child (a child id of 1 or more)"))
		}
		n, err := gw.DeleteChild(sa.ChildID(req.Child))
		if err != nil {
			return fail(err)
		}
		return Response{OK: true, Deleted: n}
	case "alloc-spi":
		var ttl time.Duration
		if req.TTL != "" {
			var err error
			if ttl, err = time.ParseDuration(req.TTL); err != nil || ttl <= 0 {
				return fail(fmt.Errorf("ttl %q: want a positive duration such as 30s", req.TTL))
			}
		}
		spi, err := gw.AllocSPI(req.Min, req.Max, ttl)
		if err != nil {
			return fail(err)
		}
		return Response{OK: true, SPI: spi}
	case "release-spi":
		if err := gw.ReleaseSPI(req.SPI); err != nil {
			return fail(err)
		}
		return Response{OK: true}
	case "sa-del":
		var dir sa.Direction
		switch strings.ToLower(req.Direction) {
		case "in", "inbound":
			dir = sa.In
		case "out", "outbound":
			dir = sa.Out
		default:
			return fail(fmt.Errorf("direction %q: want in or out", req.Direction))
		}
		var remote netip.Addr
		if req.Remote != "" {
			var err error
			if remote, err = netip.ParseAddr(req.Remote); err != nil {
				return fail(fmt.Errorf("remote: %v", err))
			}
		}
		if err := gw.DeleteSA(dir, req.SPI, remote); err != nil {
			return fail(err)
		}
		return Response{OK: true}
	case "reload":
		gw.mu.Lock()
		fn := gw.reloader
		gw.mu.Unlock()
		if fn == nil {
			return fail(errors.New("reload: this gateway has no configuration file"))
		}
		res, err := fn()
		if err != nil {
			return Response{Error: err.Error(), Reload: &res}
		}
		return Response{OK: true, Reload: &res}
	}
	return fail(fmt.Errorf("unknown command %q (want show-sa, show-stats, show-ike, ike-initiate, ike-terminate, sa-add, sa-update, sa-del, child-del, alloc-spi, release-spi, reload, events)", req.Cmd))
}

// Call sends one request to the control socket at path and returns the
// response; a response with OK false comes back as an error too.
func Call(path string, req Request, timeout time.Duration) (Response, error) {
	var resp Response
	c, err := net.DialTimeout("unix", path, timeout)
	if err != nil {
		return resp, fmt.Errorf("control socket %s: %w (is espxdp run going?)", path, err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(timeout))
	b, err := json.Marshal(req)
	if err != nil {
		return resp, err
	}
	// A server that refuses the connection (busy) may answer and close
	// before the request is written: read its answer all the same.
	_, werr := c.Write(append(b, '\n'))
	dec := json.NewDecoder(bufio.NewReader(c))
	if err := dec.Decode(&resp); err != nil {
		if werr != nil {
			return resp, werr
		}
		return resp, fmt.Errorf("control socket %s: bad response: %w", path, err)
	}
	if !resp.OK {
		return resp, errors.New(resp.Error)
	}
	return resp, nil
}

package gateway

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
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
//	sa-add    {sa, tunnel}        -> ok
//	sa-update {sa, tunnel}        -> ok
//	sa-del    {direction, spi}    -> ok
//	reload                        -> Response.Reload (re-reads the file the daemon runs from)

// Request is one control command.
type Request struct {
	Cmd string `json:"cmd"`
	// SA is an SA mapping as in the configuration's sas list (sa-add,
	// sa-update); key material travels here, so the socket is 0600.
	SA        string `json:"sa,omitempty"`
	Tunnel    string `json:"tunnel,omitempty"`
	Direction string `json:"direction,omitempty"`
	SPI       uint32 `json:"spi,omitempty"`
}

// Response answers a Request.
type Response struct {
	OK     bool          `json:"ok"`
	Error  string        `json:"error,omitempty"`
	SAs    []sa.Stats    `json:"sas,omitempty"`
	Stats  *Stats        `json:"stats,omitempty"`
	Reload *ReloadResult `json:"reload,omitempty"`
}

// maxRequest bounds a request line.
const maxRequest = 64 << 10

type controlServer struct {
	ln   *net.UnixListener
	path string
	wg   sync.WaitGroup
	mu   sync.Mutex
	open map[net.Conn]bool
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

// listenControl creates the control socket (mode 0600, its directory
// 0700 if it has to make it), replacing a stale socket file but not a
// live one.
func (gw *Gateway) listenControl(path string) (*controlServer, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, fmt.Errorf("gateway: control socket: %w", err)
	}
	if _, err := os.Stat(path); err == nil {
		if c, err := net.DialTimeout("unix", path, 200*time.Millisecond); err == nil {
			c.Close()
			return nil, fmt.Errorf("gateway: control socket %s is in use by another process", path)
		}
		os.Remove(path)
	}
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
	if err != nil {
		return nil, fmt.Errorf("gateway: control socket: %w", err)
	}
	if err := os.Chmod(path, 0o600); err != nil {
		ln.Close()
		return nil, fmt.Errorf("gateway: control socket: %w", err)
	}
	s := &controlServer{ln: ln, path: path, open: map[net.Conn]bool{}}
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
			gw.serveConn(c)
		}()
	}
}

func (s *controlServer) close() error {
	err := s.ln.Close()
	s.mu.Lock()
	for c := range s.open {
		c.Close()
	}
	s.mu.Unlock()
	s.wg.Wait()
	os.Remove(s.path)
	return err
}

func (gw *Gateway) serveConn(c net.Conn) {
	c.SetDeadline(time.Now().Add(10 * time.Second))
	r := bufio.NewReaderSize(io.LimitReader(c, maxRequest), 4096)
	line, err := r.ReadBytes('\n')
	if err != nil && !(errors.Is(err, io.EOF) && len(line) > 0) {
		writeResponse(c, Response{Error: "request: want one JSON object on a line (at most 64 KiB)"})
		return
	}
	var req Request
	if err := json.Unmarshal(line, &req); err != nil {
		resp := Response{Error: "request: " + err.Error()}
		gw.logRequest(peerOf(c), Request{Cmd: "(malformed)", SA: string(line)}, resp, 0)
		writeResponse(c, resp)
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
		return Response{OK: true, SAs: gw.SAStats()}
	case "show-stats":
		st := gw.Stats()
		return Response{OK: true, Stats: &st}
	case "sa-add", "sa-update":
		if len(req.SA) == 0 {
			return fail(errors.New("missing sa"))
		}
		c, err := config.ParseSA("control", []byte(req.SA))
		if err != nil {
			return fail(err)
		}
		if req.Cmd == "sa-add" {
			err = gw.AddSA(c, req.Tunnel)
		} else {
			err = gw.UpdateSA(c, req.Tunnel)
		}
		if err != nil {
			c.Key.Wipe()
			c.AuthKey.Wipe()
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
		if err := gw.DeleteSA(dir, req.SPI); err != nil {
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
	return fail(fmt.Errorf("unknown command %q (want show-sa, show-stats, sa-add, sa-update, sa-del, reload)", req.Cmd))
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
	if _, err := c.Write(append(b, '\n')); err != nil {
		return resp, err
	}
	dec := json.NewDecoder(bufio.NewReader(c))
	if err := dec.Decode(&resp); err != nil {
		return resp, fmt.Errorf("control socket %s: bad response: %w", path, err)
	}
	if !resp.OK {
		return resp, errors.New(resp.Error)
	}
	return resp, nil
}

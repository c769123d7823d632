package gateway

import (
	"fmt"
	"net"
	"regexp"
	"strings"
	"time"
)

// Peer is the process at the other end of a control connection, from
// SO_PEERCRED (unknown fields are -1).
type Peer struct {
	UID, GID, PID int
}

// hexRun matches the hex digits in an error message that may echo part
// of a request.
var hexRun = regexp.MustCompile(`[0-9a-fA-F]{6,}`)

// redact removes from msg every run of 6 or more hex digits that also
// appears in secret (a request carrying keys): the log must never hold
// key material, even when an error message quotes the input.
func redact(msg, secret string) string {
	if secret == "" {
		return msg
	}
	low := strings.ToLower(secret)
	return hexRun.ReplaceAllStringFunc(msg, func(run string) string {
		if strings.Contains(low, strings.ToLower(run)) {
			return "[redacted]"
		}
		return run
	})
}

// logRequest logs one control request: who (the peer's uid and pid),
// what (the command and the SA it names, never its keys) and the
// result. It is the only place control requests are logged.
func (gw *Gateway) logRequest(peer Peer, req Request, resp Response, took time.Duration) {
	attrs := []any{"cmd", req.Cmd, "peer_uid", peer.UID, "peer_pid", peer.PID, "ok", resp.OK, "took", took.Round(time.Microsecond)}
	switch req.Cmd {
	case "sa-add", "sa-update":
		if req.Tunnel != "" {
			attrs = append(attrs, "tunnel", req.Tunnel)
		}
		// The SAs Handle parsed (the request is not parsed twice).
		for _, id := range resp.touched {
			attrs = append(attrs, "sa", id.name, "direction", id.dir, "spi", fmt.Sprintf("0x%x", id.spi))
		}
	case "child-del":
		attrs = append(attrs, "child", req.Child)
	case "alloc-spi":
		attrs = append(attrs, "min", req.Min, "max", req.Max, "ttl", req.TTL, "spi", fmt.Sprintf("0x%x", resp.SPI))
	case "release-spi":
		attrs = append(attrs, "spi", fmt.Sprintf("0x%x", req.SPI))
	case "sa-del":
		attrs = append(attrs, "direction", req.Direction, "spi", fmt.Sprintf("0x%x", req.SPI))
	}
	if !resp.OK {
		gw.log.Warn("control request failed", append(attrs, "err", redact(resp.Error, req.SA))...)
		return
	}
	if req.Cmd == "show-sa" || req.Cmd == "show-stats" {
		// Read-only and frequent (show sa --watch): debug level.
		gw.log.Debug("control request", attrs...)
		return
	}
	gw.log.Info("control request", attrs...)
}

// peerOf returns the credentials of a unix socket's peer.
func peerOf(c net.Conn) Peer {
	p := Peer{UID: -1, GID: -1, PID: -1}
	if uc, ok := c.(*net.UnixConn); ok {
		peerCred(uc, &p)
	}
	return p
}

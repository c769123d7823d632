package ike

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha1"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/espxdp/espxdp/esp"
	"github.com/espxdp/espxdp/sa"
)

// Identity is an IKE identity (ID payload contents).
type Identity struct {
	// Type is the identification type.
	Type IDType
	// Data is the identification data (FQDN text, address bytes...).
	Data []byte
}

// FQDN returns an ID_FQDN identity.
func FQDN(name string) Identity { return Identity{Type: IDFQDN, Data: []byte(name)} }

// AddrID returns an ID_IPV4_ADDR or ID_IPV6_ADDR identity.
func AddrID(a netip.Addr) Identity {
	if a.Is4() {
		return Identity{Type: IDIPv4, Data: a.AsSlice()}
	}
	return Identity{Type: IDIPv6, Data: a.AsSlice()}
}

// String formats the identity for logs.
func (i Identity) String() string {
	switch i.Type {
	case IDIPv4, IDIPv6:
		a, _ := netip.AddrFromSlice(i.Data)
		return a.String()
	case IDFQDN, IDEmail:
		return string(i.Data)
	}
	return fmt.Sprintf("id-type-%d(%x)", i.Type, i.Data)
}

// Config configures an Endpoint. One Config describes one peer
// relationship: the Endpoint initiates with it and accepts initiators
// that authenticate with the same PSK and RemoteID.
type Config struct {
	// PSK is the pre-shared key (required, at least 16 bytes).
	PSK []byte
	// LocalID is our identity; RemoteID, when set, is the identity the
	// peer must present.
	LocalID, RemoteID Identity
	// IKEProposals in ParseIKEProposal notation; default
	// "aes128gcm16-prfsha256-x25519".
	IKEProposals []string
	// ESPTransforms are esp.ParseTransform names; default aes128gcm16.
	ESPTransforms []string
	// ESN: "no" (default), "yes" or "both" (offer or accept either).
	ESN string
	// LocalTS and RemoteTS are our protected networks and the peer's
	// (at most MaxTS each). The responder narrows the initiator's
	// selectors to these.
	LocalTS, RemoteTS []TrafficSelector
	// SAD, when set, allocates inbound child SPIs (SAD.AllocSPI).
	SAD *sa.SAD
	// OnChild is called (from the Endpoint's goroutine, without locks
	// held) when a child SA is established; it typically installs
	// sa.New(c.In) and sa.New(c.Out) with SAD.AddChild. As responder,
	// the Endpoint sends the response announcing the child only after
	// OnChild returned, so the peer cannot use the child before it is
	// installed.
	OnChild func(c *ChildSA)
	// OnChildDown is called when a child SA is deleted (by either side).
	// After a rekey the peer may still send on the old child's inbound
	// SA until it has processed the DELETE (some implementations switch
	// their outbound SA only then): keep the old inbound SA installed a
	// short while (the gateway keeps it 2 s) rather than removing it
	// at once, or packets in flight are lost.
	OnChildDown func(c *ChildSA)
	// OnESP receives the non-IKE packets (ESP, without the marker) read
	// from the NAT-T socket.
	OnESP func(pkt []byte, from netip.AddrPort)
	// ForceEncap makes the peer believe we are behind a NAT (a random
	// NAT_DETECTION_SOURCE_IP), so both use UDP encapsulation on the
	// NAT-T port.
	ForceEncap bool
	// PeerNATTPort is the peer's NAT-T port for an initiator that
	// switches to it (default 4500).
	PeerNATTPort uint16
	// Retransmit is the first retransmission timeout (default 500ms,
	// at most MaxRetransmit), doubled on every try.
	Retransmit time.Duration
	// Retries is the number of retransmissions before the exchange
	// fails with ErrTimeout (default 5, at most MaxRetries).
	Retries int
	// Logger receives events; never key material. Default slog.Default.
	Logger *slog.Logger
	// CookieThreshold is the number of half-open IKE SAs (IKE_SA_INIT
	// answered, IKE_AUTH not yet) from which the responder answers an
	// IKE_SA_INIT without a valid cookie with a stateless COOKIE notify
	// (RFC 7296 §2.6). 0 means DefaultCookieThreshold; negative means
	// always demand a cookie.
	CookieThreshold int
	// MaxHalfOpen bounds the half-open IKE SAs (default
	// DefaultMaxHalfOpen); beyond it IKE_SA_INIT (with a valid cookie)
	// is answered with TEMPORARY_FAILURE.
	MaxHalfOpen int
	// MaxIKESAs bounds the other IKE SAs (established, or being
	// initiated; default DefaultMaxIKESAs): half-open SAs do not count.
	MaxIKESAs int
	// MaxHalfOpenPerSource bounds the half-open IKE SAs that one source
	// address may hold once it proved it receives at that address, by
	// returning a valid cookie (like strongSwan's block_threshold);
	// beyond it, its IKE_SA_INIT requests are dropped (counted in
	// Stats.SourceBlocked). Only half-open SAs created with a valid
	// cookie count, so a spoofer cannot block its victim's address.
	// An IPv6 source counts by its /64 prefix, which one host may
	// hold whole. 0 means DefaultMaxHalfOpenPerSource; negative means no
	// bound.
	MaxHalfOpenPerSource int
	// OnIKEDown is called (without locks held) when an IKE SA that had
	// been established goes away for any reason: deleted by either
	// side, a peer that stopped answering (err wraps ErrTimeout), a
	// failed rekey, or replaced by its successor after an IKE SA rekey
	// (err wraps ErrRekeyed; its children live on in the successor and
	// are not reported down). It runs after OnChildDown for the SA's
	// children. IKE SAs that never completed IKE_AUTH are not reported
	// (Initiate returns their error); Endpoint.Close reports nothing.
	OnIKEDown func(s *IKESA, err error)
	// OnIKEUp is called (without locks held) when an IKE SA is
	// established: IKE_AUTH completed (before OnChild for its first
	// child) or it replaced its predecessor in an IKE SA rekey.
	OnIKEUp func(s *IKESA)
	// IKELifetime is the IKE SA's rekey time (RFC 7296 §2.18): each
	// side rekeys its established IKE SAs after IKELifetime minus a
	// random 0-10 % (so both sides rarely start at once). 0 means
	// DefaultIKELifetime (4h, strongSwan's rekey_time); negative means
	// never (the peer may still rekey).
	IKELifetime time.Duration
	// DPDDelay enables dead peer detection (RFC 7296 §2.4): when
	// nothing arrived on an IKE SA for DPDDelay (nor, with
	// InboundActivity, on its child SAs), an empty INFORMATIONAL is
	// sent; when its retransmissions time out, the IKE SA is dead (see
	// DPDAction). 0 disables it.
	DPDDelay time.Duration
	// DPDAction is what happens to an IKE SA whose peer stopped
	// answering (DPD or any other exchange timing out): "clear" (the
	// default: local state is deleted, OnChildDown for its children,
	// OnIKEDown with an error wrapping ErrTimeout) or "restart" (clear,
	// then, for IKE SAs made by Initiate, Initiate again to the same
	// remote, retrying every max(DPDDelay, 1s) until it succeeds or the
	// Endpoint is closed).
	DPDAction string
	// InboundActivity, when set, returns the last time traffic from the
	// peer was accepted on the IKE SA's child SAs (e.g. from the SAs'
	// counters); DPD then probes only when both the IKE SA and its
	// children were idle for DPDDelay. Called without locks held.
	InboundActivity func(s *IKESA) time.Time
	// OnRemoteChanged is called (without locks held) when an
	// established IKE SA follows its peer to a new address or port
	// (RFC 7296 §2.23: an authenticated message from elsewhere while a
	// NAT was detected); the embedder updates its child SAs' remote
	// endpoint.
	OnRemoteChanged func(s *IKESA, old, new netip.AddrPort)
}

// DefaultIKELifetime is the IKE SA rekey time when Config.IKELifetime
// is 0.
const DefaultIKELifetime = 4 * time.Hour

// ChildSA is a negotiated child SA: the two sa.Configs to install.
type ChildSA struct {
	// ID groups In and Out (sa.Config.Child).
	ID sa.ChildID
	// In and Out are the inbound and outbound SAs' configs. In.Selectors
	// holds the negotiated traffic selectors (source: the peer's side).
	In, Out sa.Config
	// LocalTS and RemoteTS are the negotiated traffic selectors.
	LocalTS, RemoteTS []TrafficSelector
	// Transform is the ESP transform name (esp.ParseTransform).
	Transform string
	// ESN tells whether extended sequence numbers were negotiated.
	ESN bool
	// PFS is the Diffie-Hellman group of the exchange that created the
	// child (0: none; the first child, from IKE_AUTH, never has one).
	PFS DHGroup
	// IKE is the IKE SA that negotiated the child. After an IKE SA
	// rekey the child belongs to the successor: Owner returns the
	// current one.
	IKE *IKESA

	owner   *IKESA    // current IKE SA (e.mu)
	created time.Time // when it was established

	// Rekey state (e.mu), RFC 7296 §2.8.
	ni, nr    []byte   // nonces of the exchange that created it
	succ      *ChildSA // its successor, once a rekey completed
	ourRekey  bool     // our CREATE_CHILD_SA rekeying it is pending
	peerSucc  *ChildSA // created answering the peer's rekey of it while ourRekey (a collision)
	redundant bool     // lost a rekey collision: deleted by its initiator
}

// Owner returns the IKE SA the child currently belongs to (IKE, or its
// successor after IKE SA rekeys).
func (c *ChildSA) Owner() *IKESA {
	if c.IKE == nil {
		return nil
	}
	c.IKE.e.mu.Lock()
	defer c.IKE.e.mu.Unlock()
	return c.owner
}

// Stats counts the Endpoint's messages.
type Stats struct {
	// Received, Sent and Retransmits count IKE datagrams (a
	// retransmission counts in Sent too).
	Received, Sent, Retransmits uint64
	// Malformed counts datagrams refused by the parser or the SK check.
	Malformed uint64
	// Dropped counts well-formed messages that matched no IKE SA or
	// exchange (unknown SPI, unexpected message ID).
	Dropped uint64
	// AuthFailed counts failed authentications (either side).
	AuthFailed uint64
	// CookiesSent counts the stateless COOKIE replies of the responder.
	CookiesSent uint64
	// SourceBlocked counts IKE_SA_INIT requests with a valid cookie
	// dropped because their source address held
	// Config.MaxHalfOpenPerSource half-open SAs.
	SourceBlocked uint64
}

// Endpoint runs IKEv2 on a UDP socket (port 500) and optionally a NAT-T
// socket (port 4500, non-ESP marker).
type Endpoint struct {
	cfg      Config
	ikeProps []Proposal
	espProp  Proposal // for CREATE_CHILD_SA: DH groups (PFS) included
	espAuth  Proposal // for IKE_AUTH: without DH (RFC 7296 §1.2)
	log      *slog.Logger
	conn     net.PacketConn
	natt     net.PacketConn

	mu       sync.Mutex
	sas      map[uint64]*IKESA // by our SPI
	halfOpen int               // responder SAs in stateInitDone
	// halfOpenBy counts, by source address, the half-open SAs created
	// with a valid cookie (IKESA.cookieSrc).
	halfOpenBy map[netip.Addr]int
	cookies    cookieSecrets
	closed     bool

	ctx    context.Context // canceled by Close
	cancel context.CancelFunc
	bg     sync.WaitGroup // background rekeys and restarts; Close waits
	// inflight counts HandlePacket calls and timer callbacks that may
	// call Config callbacks (enter); Close waits for them.
	inflight sync.WaitGroup

	received, sent, retransmits, malformed, dropped, authFailed atomic.Uint64
	cookiesSent, sourceBlocked                                  atomic.Uint64
	wg                                                          sync.WaitGroup
}

// ChildIDBase is where the ike package's child ids begin: every
// ChildSA.ID is ChildIDBase+n (n = 1, 2, 3... for the process), so the
// ids below it, [1, ChildIDBase), are the embedder's for the SAs it adds
// itself (a gateway's static child: groups). An SAD groups SAs by id
// alone (sa.SAD.DeleteChild deletes the whole group), so a negotiated
// child must never share an id with an SA it does not own.
//
// Invariant (TestChildIDsAboveBase): every child id the package hands
// out is at least ChildIDBase+1 and unique in the process; an embedder
// that keeps its own ids below ChildIDBase (internal/config refuses
// larger child: values) can never collide with one.
const ChildIDBase sa.ChildID = 1 << 32

// childIDs counts the children made in the process (ChildIDBase+n).
var childIDs atomic.Uint64

// newChildID returns a fresh child id, ChildIDBase+n.
func newChildID() sa.ChildID { return ChildIDBase + sa.ChildID(childIDs.Add(1)) }

// NewEndpoint checks cfg and returns an Endpoint on conn (IKE, port
// 500) and natt (NAT-T, port 4500; may be nil). Call Serve to read.
func NewEndpoint(cfg Config, conn, natt net.PacketConn) (*Endpoint, error) {
	if len(cfg.PSK) < 16 {
		return nil, errf(ErrConfig, "PSK shorter than 16 bytes")
	}
	if conn == nil {
		return nil, errf(ErrConfig, "no socket")
	}
	if len(cfg.IKEProposals) == 0 {
		cfg.IKEProposals = []string{"aes128gcm16-prfsha256-x25519"}
	}
	if len(cfg.ESPTransforms) == 0 {
		cfg.ESPTransforms = []string{"aes128gcm16"}
	}
	if len(cfg.LocalTS) == 0 || len(cfg.RemoteTS) == 0 {
		return nil, errf(ErrConfig, "LocalTS and RemoteTS are required")
	}
	if len(cfg.LocalTS) > MaxTS || len(cfg.RemoteTS) > MaxTS {
		return nil, errf(ErrConfig, "more than %d LocalTS or RemoteTS", MaxTS)
	}
	if cfg.LocalID.Type == 0 {
		return nil, errf(ErrConfig, "LocalID is required")
	}
	if cfg.Retransmit <= 0 {
		cfg.Retransmit = 500 * time.Millisecond
	}
	if cfg.Retries <= 0 {
		cfg.Retries = 5
	}
	// Invariant (TestRetransmitScheduleBounds): Retransmit << Retries
	// and the schedules derived from it (reapLater's grace) fit in a
	// time.Duration.
	if cfg.Retries > MaxRetries {
		return nil, errf(ErrConfig, "Retries %d (at most %d)", cfg.Retries, MaxRetries)
	}
	if cfg.Retransmit > MaxRetransmit {
		return nil, errf(ErrConfig, "Retransmit %v (at most %v)", cfg.Retransmit, MaxRetransmit)
	}
	if cfg.MaxHalfOpenPerSource == 0 {
		cfg.MaxHalfOpenPerSource = DefaultMaxHalfOpenPerSource
	}
	if cfg.PeerNATTPort == 0 {
		cfg.PeerNATTPort = 4500
	}
	if cfg.CookieThreshold == 0 {
		cfg.CookieThreshold = DefaultCookieThreshold
	}
	if cfg.MaxHalfOpen <= 0 {
		cfg.MaxHalfOpen = DefaultMaxHalfOpen
	}
	if cfg.MaxIKESAs <= 0 {
		cfg.MaxIKESAs = DefaultMaxIKESAs
	}
	if cfg.IKELifetime == 0 {
		cfg.IKELifetime = DefaultIKELifetime
	}
	if cfg.DPDDelay < 0 {
		return nil, errf(ErrConfig, "negative DPDDelay")
	}
	switch cfg.DPDAction {
	case "":
		cfg.DPDAction = "clear"
	case "clear", "restart":
	default:
		return nil, errf(ErrConfig, "DPDAction %q (clear or restart)", cfg.DPDAction)
	}
	e := &Endpoint{cfg: cfg, conn: conn, natt: natt, sas: map[uint64]*IKESA{}, halfOpenBy: map[netip.Addr]int{}, log: cfg.Logger}
	e.ctx, e.cancel = context.WithCancel(context.Background())
	if e.log == nil {
		e.log = slog.Default()
	}
	for i, s := range cfg.IKEProposals {
		p, err := ParseIKEProposal(s)
		if err != nil {
			return nil, err
		}
		p.Num = uint8(i + 1)
		e.ikeProps = append(e.ikeProps, p)
	}
	var err error
	if e.espProp, err = ESPProposal(cfg.ESPTransforms, cfg.ESN); err != nil {
		return nil, err
	}
	e.espProp.Num = 1
	e.espAuth = stripDH(e.espProp)
	return e, nil
}

// Stats returns the counters.
func (e *Endpoint) Stats() Stats {
	return Stats{Received: e.received.Load(), Sent: e.sent.Load(), Retransmits: e.retransmits.Load(),
		Malformed: e.malformed.Load(), Dropped: e.dropped.Load(), AuthFailed: e.authFailed.Load(),
		CookiesSent: e.cookiesSent.Load(), SourceBlocked: e.sourceBlocked.Load()}
}

// Serve reads both sockets until they are closed (Close); it returns
// after the read loops ended.
func (e *Endpoint) Serve() {
	e.wg.Add(1)
	go e.readLoop(e.conn, false)
	if e.natt != nil {
		e.wg.Add(1)
		go e.readLoop(e.natt, true)
	}
	e.wg.Wait()
}

// Close closes the sockets, stops all timers and waits for the
// Endpoint's background rekeys (Config.IKELifetime) and restarts
// (DPDAction "restart") to end, and for the HandlePacket calls and
// timers in flight, so no callback runs once it returned; Serve
// returns, and Initiate and the IKE SAs' operations return ErrClosed.
// It reports nothing to the callbacks of the IKE SAs it drops. Those
// goroutines may be in a callback: do not call Close from a callback,
// nor while holding a lock a callback takes.
func (e *Endpoint) Close() error {
	e.mu.Lock()
	e.closed = true
	e.cancel()
	for _, s := range e.sas {
		s.stopLocked(ErrClosed)
		s.stopTimers()
	}
	e.mu.Unlock()
	err := e.conn.Close()
	if e.natt != nil {
		e.natt.Close()
	}
	e.bg.Wait()
	e.inflight.Wait()
	return err
}

// enter registers an operation that may call Config callbacks (e.mu
// held): false once the Endpoint is closed. The caller calls
// e.inflight.Done when its callbacks ran.
//
// Invariant (TestRedTeamCallbackAfterClose): when Close returns, no
// callback is running and none will start (Close sets closed, then
// waits for the operations that entered before).
func (e *Endpoint) enter() bool {
	if e.closed {
		return false
	}
	e.inflight.Add(1)
	return true
}

func (e *Endpoint) readLoop(c net.PacketConn, natt bool) {
	defer e.wg.Done()
	buf := make([]byte, MaxMessageLen)
	for {
		n, addr, err := c.ReadFrom(buf)
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			continue
		}
		ua, ok := addr.(*net.UDPAddr)
		if !ok {
			continue
		}
		from := ua.AddrPort()
		from = netip.AddrPortFrom(from.Addr().Unmap(), from.Port())
		e.HandlePacket(buf[:n], from, natt)
	}
}

// HandlePacket processes one datagram received from 'from'; natt tells
// it came from the NAT-T socket (where IKE follows a 4-byte zero
// non-ESP marker, a 0xff byte is a keepalive and anything else is ESP
// for Config.OnESP). Embedders that read the sockets themselves call
// it instead of Serve. pkt is not retained.
func (e *Endpoint) HandlePacket(pkt []byte, from netip.AddrPort, natt bool) {
	if natt {
		switch {
		case len(pkt) == 1 && pkt[0] == 0xff:
			return
		case len(pkt) >= 4 && binary.BigEndian.Uint32(pkt) == 0:
			pkt = pkt[4:]
		default:
			if e.cfg.OnESP != nil {
				e.cfg.OnESP(pkt, from)
			}
			return
		}
	}
	e.received.Add(1)
	m, err := Parse(pkt)
	if err != nil {
		e.malformed.Add(1)
		e.log.Debug("ike: malformed message refused", "from", from, "err", err)
		return
	}
	raw := clone(pkt)
	var after []func()
	e.mu.Lock()
	if !e.enter() {
		e.mu.Unlock()
		return
	}
	defer e.inflight.Done()
	if m.Exchange == IKESAInit && !m.Response() {
		after = e.responderInit(m, raw, from, natt)
	} else {
		s := e.lookup(m)
		if s == nil {
			e.dropped.Add(1)
			e.log.Debug("ike: message for an unknown IKE SA", "from", from, "exchange", m.Exchange)
		} else {
			after = s.handle(m, raw, from, natt)
		}
	}
	e.mu.Unlock()
	for _, f := range after {
		f()
	}
}

func (e *Endpoint) lookup(m *Message) *IKESA {
	// Messages from the original initiator carry the I flag: then we are
	// the responder and our SPI is SPIr; otherwise it is SPIi.
	our := m.SPIr
	if !m.Initiator() {
		our = m.SPIi
	}
	s := e.sas[our]
	if s == nil || s.initiator == m.Initiator() {
		return nil
	}
	if s.initiator && s.state != stateInitSent && m.SPIr != s.spiR {
		return nil
	}
	if !s.initiator && m.SPIi != s.spiI {
		return nil
	}
	return s
}

func (e *Endpoint) newSPI() uint64 {
	var b [8]byte
	for {
		rand.Read(b[:])
		v := binary.BigEndian.Uint64(b[:])
		if _, dup := e.sas[v]; v != 0 && !dup {
			return v
		}
	}
}

func (e *Endpoint) localAddr(natt bool) netip.AddrPort {
	c := e.conn
	if natt && e.natt != nil {
		c = e.natt
	}
	if ua, ok := c.LocalAddr().(*net.UDPAddr); ok {
		ap := ua.AddrPort()
		return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
	}
	return netip.AddrPort{}
}

func (e *Endpoint) send(b []byte, to netip.AddrPort, natt bool) {
	c := e.conn
	if natt && e.natt != nil {
		c = e.natt
		b = append([]byte{0, 0, 0, 0}, b...)
	}
	e.sent.Add(1)
	if _, err := c.WriteTo(b, net.UDPAddrFromAddrPort(to)); err != nil {
		e.log.Debug("ike: send failed", "to", to, "err", err)
	}
}

// IKE SA states.
const (
	stateInitSent = iota + 1
	stateAuthSent
	stateInitDone // responder: IKE_SA_INIT answered, waiting for IKE_AUTH
	stateEstablished
	stateDead
	stateRekeyInit // initiator of an IKE SA rekey: CREATE_CHILD_SA sent
)

// sourceKey is the unit a half-open bound per source counts in: an IPv4
// address, or the /64 prefix of an IPv6 address (RFC 4291: a /64 is one
// link's interface identifiers, all of which one host may use; RFC 7707).
func sourceKey(a netip.Addr) netip.Addr {
	a = a.Unmap()
	if a.Is6() {
		p, _ := a.Prefix(64)
		return p.Addr()
	}
	return a
}

// setState moves s to state st (e.mu held), keeping e.halfOpen the
// number of IKE SAs in stateInitDone (invariant, checked by
// TestHalfOpenCountProperty).
func (s *IKESA) setState(st int) {
	e := s.e
	if s.state == stateInitDone {
		e.halfOpen--
		if a := s.cookieSrc; a.IsValid() {
			if e.halfOpenBy[a]--; e.halfOpenBy[a] <= 0 {
				delete(e.halfOpenBy, a)
			}
		}
	}
	if st == stateInitDone {
		e.halfOpen++
		if a := s.cookieSrc; a.IsValid() {
			e.halfOpenBy[a]++
		}
	}
	s.state = st
}

// IKESA is one IKE SA and its child SA.
type IKESA struct {
	e          *Endpoint
	initiator  bool
	spiI, spiR uint64
	remote     netip.AddrPort
	natt       bool // the IKE SA moved to the NAT-T port
	nat        bool // a NAT was detected (or forced): child SAs use UDP encapsulation
	state      int
	suite      suite
	keys       *keys
	dh         *dhKey
	ni, nr     []byte
	initReq    []byte // IKE_SA_INIT request as sent
	initResp   []byte
	chosenIKE  Proposal
	group      DHGroup

	nextReq  uint32 // message ID of our next request
	expect   uint32 // message ID of the peer's next request
	lastResp []byte // our last response (for retransmitted requests)

	pending  *request
	children []*ChildSA // oldest first; two during a rekey
	childSP  []byte     // our inbound SPI of the first child (4 bytes)
	done     chan error
	err      error
	expiry   *time.Timer // responder: removes a half-open SA

	cookie      *Notify    // initiator: the COOKIE the responder demanded
	cookieSrc   netip.Addr // responder: sourceKey of the source that returned a valid cookie (Endpoint.halfOpenBy)
	cookieTries int
	keTries     int // initiator: IKE_SA_INIT retries after INVALID_KE_PAYLOAD

	remoteID    Identity  // the peer's authenticated identity
	established time.Time // when IKE_AUTH (or the rekey creating it) completed
	rekeying    bool      // our IKE SA rekey of this SA is under way
	deleting    bool      // a Delete of this SA is under way
	reported    bool      // reported to OnIKEUp (so OnIKEDown is due)
	lastRecv    time.Time // last authenticated message from the peer
	initiated   bool      // made by Initiate (or rekeyed from such an SA): DPDAction restart applies
	origRemote  netip.AddrPort
	successor   *IKESA // the IKE SA that took over the children (IKE SA rekey)
	peerNew     *IKESA // created answering the peer's IKE SA rekey while ours was pending (collision)
	redundant   bool   // lost an IKE SA rekey collision: deleted by its initiator
	dpdTimer    *time.Timer
	lifeTimer   *time.Timer
}

type request struct {
	fin     chan struct{} // closed when the request is no longer pending
	id      uint32
	x       ExchangeType // the request's exchange type: its response's too
	msg     []byte
	tries   int
	timer   *time.Timer
	onReply func(m *Message, raw []byte, from netip.AddrPort, natt bool) []func()
	result  chan error
}

// Remote is the peer's current address and port.
func (s *IKESA) Remote() netip.AddrPort {
	s.e.mu.Lock()
	defer s.e.mu.Unlock()
	return s.remote
}

// Child returns the newest established child SA (of the successor,
// after an IKE SA rekey), or nil.
func (s *IKESA) Child() *ChildSA {
	s.e.mu.Lock()
	defer s.e.mu.Unlock()
	h := s.home()
	for k := len(h.children) - 1; k >= 0; k-- {
		if c := h.children[k]; c.succ == nil && !c.redundant {
			return c
		}
	}
	if len(h.children) == 0 {
		return nil
	}
	return h.children[len(h.children)-1]
}

// Established reports whether IKE_AUTH completed and the SA was not
// deleted.
func (s *IKESA) Established() bool {
	s.e.mu.Lock()
	defer s.e.mu.Unlock()
	return s.state == stateEstablished
}

// ourSPI is our SPI of the IKE SA.
func (s *IKESA) ourSPI() uint64 {
	if s.initiator {
		return s.spiI
	}
	return s.spiR
}

func (s *IKESA) header(x ExchangeType, id uint32, response bool) Header {
	h := Header{SPIi: s.spiI, SPIr: s.spiR, Exchange: x, MsgID: id}
	if s.initiator {
		h.Flags |= FlagInitiator
	}
	if response {
		h.Flags |= FlagResponse
	}
	return h
}

// outKeys are the keys for messages we send.
func (s *IKESA) outKeys() (ke, ka []byte) {
	if s.initiator {
		return s.keys.ei, s.keys.ai
	}
	return s.keys.er, s.keys.ar
}

func (s *IKESA) inKeys() (ke, ka []byte) {
	if s.initiator {
		return s.keys.er, s.keys.ar
	}
	return s.keys.ei, s.keys.ai
}

func (s *IKESA) seal(h Header, ps []Payload) ([]byte, error) {
	ke, ka := s.outKeys()
	return sealSK(s.suite, ke, ka, h, ps)
}

// open decrypts m's SK payload in place (m.Payloads becomes the inner
// payloads).
func (s *IKESA) open(m *Message, raw []byte) error {
	if len(m.Payloads) != 1 {
		return errf(ErrMalformed, "exchange %d message with %d payloads, want only SK", m.Exchange, len(m.Payloads))
	}
	enc, ok := m.Payloads[0].(*Encrypted)
	if !ok {
		return errf(ErrMalformed, "exchange %d message not encrypted", m.Exchange)
	}
	ke, ka := s.inKeys()
	inner, err := openSK(s.suite, ke, ka, raw, enc)
	if err != nil {
		return err
	}
	for _, p := range inner {
		if p.Type() == PayloadSK {
			return errf(ErrMalformed, "nested SK payload")
		}
	}
	m.Payloads, m.Encrypted = inner, true
	return nil
}

// startRequest sends a request and arms retransmission. Called with
// e.mu held.
func (s *IKESA) startRequest(x ExchangeType, msg []byte, onReply func(*Message, []byte, netip.AddrPort, bool) []func()) *request {
	r := &request{id: s.nextReq, x: x, msg: msg, onReply: onReply, result: make(chan error, 1), fin: make(chan struct{})}
	s.nextReq++
	s.pending = r
	s.e.send(msg, s.remote, s.natt)
	s.arm(r)
	return r
}

func (s *IKESA) arm(r *request) {
	d := s.e.cfg.Retransmit << r.tries
	r.timer = time.AfterFunc(d, func() {
		e := s.e
		e.mu.Lock()
		if s.pending != r || !e.enter() {
			e.mu.Unlock()
			return
		}
		defer e.inflight.Done()
		if r.tries >= e.cfg.Retries {
			e.log.Warn("ike: peer does not answer", "peer", s.remote, "message_id", r.id)
			after := s.finish(errf(ErrTimeout, "message ID %d after %d retransmissions", r.id, r.tries))
			e.mu.Unlock()
			for _, f := range after {
				f()
			}
			return
		}
		defer e.mu.Unlock()
		r.tries++
		e.retransmits.Add(1)
		e.send(r.msg, s.remote, s.natt)
		s.arm(r)
	})
}

// stopLocked ends the SA's pending request with err.
func (s *IKESA) stopLocked(err error) {
	if r := s.pending; r != nil {
		r.timer.Stop()
		s.pending = nil
		close(r.fin)
		r.result <- err
	}
}

// dieLocked removes the SA; the child is reported down by the caller's
// after-functions (returned).
func (s *IKESA) dieLocked(err error) []func() {
	s.stopLocked(err)
	if s.state == stateDead {
		return nil
	}
	// Invariant (TestRedTeamReplacedSATimeout): an IKE SA replaced by a
	// rekey, or redundant after a collision, goes down with ErrRekeyed
	// whatever ends it (e.g. its Delete timing out): its children live
	// on in the successor, so it is not a dead peer and never restarts.
	if (s.successor != nil || s.redundant) && !errors.Is(err, ErrRekeyed) {
		err = errf(ErrRekeyed, "replaced; then %v", err)
	}
	s.setState(stateDead)
	s.err = err
	s.stopTimers()
	delete(s.e.sas, s.ourSPI())
	if s.keys != nil {
		s.keys.wipe()
	}
	var after []func()
	for _, c := range s.children {
		if f := s.e.cfg.OnChildDown; f != nil {
			after = append(after, func() { f(c); wipeChild(c) })
		} else {
			wipeChild(c)
		}
	}
	if s.e.cfg.SAD != nil && s.childSP != nil && len(s.children) == 0 {
		s.e.cfg.SAD.ReleaseSPI(binary.BigEndian.Uint32(s.childSP))
	}
	s.children = nil
	// An IKE SA created answering the peer's colliding rekey, not taken
	// over, goes with its predecessor.
	if p := s.peerNew; p != nil && s.successor != p && !p.redundant {
		after = append(after, p.dieLocked(err)...)
	}
	// Invariant (TestRekeyProperty): every IKE SA reported to OnIKEUp is
	// reported to OnIKEDown exactly once (state moves to stateDead
	// once), after OnChildDown for its children.
	if f := s.e.cfg.OnIKEDown; f != nil && s.reported {
		after = append(after, func() { f(s, err) })
	}
	if errors.Is(err, ErrTimeout) && s.reported && s.initiated && s.e.cfg.DPDAction == "restart" && !s.e.closed {
		s.e.bg.Add(1)
		remote := s.origRemote
		after = append(after, func() { go s.e.restart(remote) })
	}
	return after
}

// upAfter marks s established for the callbacks and timers and returns
// the after-function reporting it to OnIKEUp (e.mu held).
func (s *IKESA) upAfter() []func() {
	s.reported = true
	s.lastRecv = time.Now()
	s.startTimers()
	if f := s.e.cfg.OnIKEUp; f != nil {
		return []func(){func() { f(s) }}
	}
	return nil
}

func wipeChild(c *ChildSA) {
	clear(c.In.Key)
	clear(c.In.AuthKey)
	clear(c.Out.Key)
	clear(c.Out.AuthKey)
}

// handle processes a message for this SA (e.mu held).
func (s *IKESA) handle(m *Message, raw []byte, from netip.AddrPort, natt bool) []func() {
	if m.Response() {
		// Invariant (TestRedTeamPlaintextResponse): a response answers
		// the pending request only with its message ID and exchange
		// type, and only the IKE_SA_INIT response to our IKE_SA_INIT
		// request is processed without a verified SK payload: the
		// header is cleartext, so anyone who sees the SPIs and message
		// ID could otherwise answer any request.
		r := s.pending
		if r == nil || m.MsgID != r.id || m.Exchange != r.x {
			s.e.dropped.Add(1)
			return nil
		}
		var after []func()
		if r.x != IKESAInit {
			if err := s.open(m, raw); err != nil {
				s.e.malformed.Add(1)
				s.e.log.Debug("ike: response refused", "peer", from, "err", err)
				return nil
			}
			s.lastRecv = time.Now()
			if m.Exchange != IKEAuth {
				after = s.follow(from, natt)
			}
		}
		r.timer.Stop()
		s.pending = nil
		close(r.fin)
		return append(after, r.onReply(m, raw, from, natt)...)
	}
	// A request from the peer.
	if s.state == stateInitSent || s.keys == nil {
		s.e.dropped.Add(1)
		return nil
	}
	if m.MsgID+1 == s.expect && s.lastResp != nil {
		if err := s.open(m, raw); err == nil {
			s.e.send(s.lastResp, from, natt)
		}
		return nil
	}
	if m.MsgID != s.expect {
		s.e.dropped.Add(1)
		return nil
	}
	if err := s.open(m, raw); err != nil {
		s.e.malformed.Add(1)
		s.e.log.Debug("ike: request refused", "peer", from, "err", err)
		return nil
	}
	s.lastRecv = time.Now()
	after := s.follow(from, natt)
	switch {
	case m.Exchange == IKEAuth && !s.initiator && s.state == stateInitDone:
		return append(after, s.responderAuth(m, from, natt)...)
	case m.Exchange == Informational && s.state == stateEstablished:
		return append(after, s.informational(m)...)
	case m.Exchange == CreateChildSA && s.state == stateEstablished:
		if isIKERekey(m) {
			return append(after, s.respondRekeyIKE(m)...)
		}
		return append(after, s.respondCreateChild(m)...)
	}
	s.e.dropped.Add(1)
	return after
}

// follow moves the IKE SA to the address of an authenticated message
// from the peer when a NAT was detected (RFC 7296 §2.23); for an
// established SA it logs it and returns the OnRemoteChanged call.
func (s *IKESA) follow(from netip.AddrPort, natt bool) []func() {
	if !s.nat && !natt {
		return nil
	}
	old := s.remote
	if old == from && s.natt == natt {
		return nil
	}
	s.remote, s.natt = from, natt
	if s.state != stateEstablished || old == from {
		return nil
	}
	s.e.log.Info("ike: peer moved", "sa", s, "old", old, "new", from)
	if f := s.e.cfg.OnRemoteChanged; f != nil {
		return []func(){func() { f(s, old, from) }}
	}
	return nil
}

// respond seals and sends a response to m and caches it.
func (s *IKESA) respond(m *Message, ps []Payload) {
	b, err := s.seal(s.header(m.Exchange, m.MsgID, true), ps)
	if err != nil {
		s.e.log.Error("ike: cannot build response", "err", err)
		return
	}
	s.expect = m.MsgID + 1
	s.lastResp = b
	s.e.send(b, s.remote, s.natt)
}

// respondLater is respond for a response that announces a child SA: it
// builds the response and moves the message ID window on, but returns
// its transmission, which the caller runs after Config.OnChild installed
// the child (without e.mu held). Until then the response is not recorded
// for retransmitted requests either: a retransmission arriving meanwhile
// is dropped, and the peer's next one gets the recorded response.
// Invariant: the peer learns a new child SA's SPIs only after our
// inbound SA for it is installed, so its first packets on it are not
// dropped (it may send on the new SA as soon as it has the response; a
// loaded gateway that installed after sending dropped them as no-sa).
func (s *IKESA) respondLater(m *Message, ps []Payload) func() {
	b, err := s.seal(s.header(m.Exchange, m.MsgID, true), ps)
	if err != nil {
		s.e.log.Error("ike: cannot build response", "err", err)
		return func() {}
	}
	s.expect = m.MsgID + 1
	s.lastResp = nil
	id := m.MsgID
	return func() {
		e := s.e
		e.mu.Lock()
		if s.expect != id+1 {
			e.mu.Unlock()
			return // the exchange was overtaken (the IKE SA went away or moved on)
		}
		s.lastResp = b
		remote, natt := s.remote, s.natt
		e.mu.Unlock()
		e.send(b, remote, natt)
	}
}

func (s *IKESA) informational(m *Message) []func() {
	var reply []Payload
	var after []func()
	deleteIKE := false
	for _, p := range m.Payloads {
		d, ok := p.(*Delete)
		if !ok {
			continue
		}
		switch d.Proto {
		case ProtoIKE:
			deleteIKE = true
		case ProtoESP:
			for _, spi := range d.SPIs {
				c := s.home().removeChild(spi)
				if c == nil {
					continue
				}
				reply = append(reply, &Delete{Proto: ProtoESP, SPISize: 4, SPIs: [][]byte{binary.BigEndian.AppendUint32(nil, c.In.SPI)}})
				s.e.log.Info("ike: child SA deleted by peer", "peer", s.remote, "child", c.ID)
				after = append(after, s.childDown(c))
			}
		}
	}
	if deleteIKE {
		s.respond(m, nil)
		if s.successor != nil || s.redundant {
			s.e.log.Info("ike: rekeyed IKE SA deleted by peer", "sa", s)
			return append(after, s.dieLocked(errf(ErrRekeyed, "deleted by the peer after the rekey"))...)
		}
		s.e.log.Info("ike: IKE SA deleted by peer", "peer", s.remote)
		return append(after, s.dieLocked(errf(ErrClosed, "deleted by the peer"))...)
	}
	s.respond(m, reply)
	return after
}

// Initiate negotiates an IKE SA and its child SA with the peer at
// remote (port 500, or the IKE port of the peer) and returns once
// IKE_AUTH completed or failed. The child SA is reported to
// Config.OnChild before Initiate returns.
func (e *Endpoint) Initiate(ctx context.Context, remote netip.AddrPort) (*IKESA, error) {
	e.mu.Lock()
	if e.closed {
		e.mu.Unlock()
		return nil, ErrClosed
	}
	s := &IKESA{e: e, initiator: true, remote: remote, done: make(chan error, 1), initiated: true, origRemote: remote}
	s.spiI = e.newSPI()
	e.sas[s.spiI] = s
	d, _ := e.ikeProps[0].get(TransformDH)
	s.group = DHGroup(d.ID)
	err := s.sendInit()
	e.mu.Unlock()
	if err != nil {
		return nil, err
	}
	select {
	case err = <-s.done:
	case <-e.ctx.Done():
		// Close ended the exchange without a result (see request).
		return nil, ErrClosed
	case <-ctx.Done():
		err = ctx.Err()
		e.mu.Lock()
		after := s.dieLocked(err)
		e.mu.Unlock()
		for _, f := range after {
			f()
		}
	}
	if err != nil {
		return nil, err
	}
	return s, nil
}

func (s *IKESA) finish(err error) []func() {
	var after []func()
	if err != nil {
		after = s.dieLocked(err)
	}
	select {
	case s.done <- err:
	default:
	}
	return after
}

func natHash(spiI, spiR uint64, ap netip.AddrPort) []byte {
	h := sha1.New()
	var b [16]byte
	binary.BigEndian.PutUint64(b[:], spiI)
	binary.BigEndian.PutUint64(b[8:], spiR)
	h.Write(b[:])
	h.Write(ap.Addr().AsSlice())
	h.Write(binary.BigEndian.AppendUint16(nil, ap.Port()))
	return h.Sum(nil)
}

func (s *IKESA) natNotifies(local netip.AddrPort) []Payload {
	src := natHash(s.spiI, s.spiR, local)
	if s.e.cfg.ForceEncap {
		src = make([]byte, 20)
		rand.Read(src)
	}
	return []Payload{
		&Notify{NotifyType: NATDetectionSourceIP, Data: src},
		&Notify{NotifyType: NATDetectionDestinationIP, Data: natHash(s.spiI, s.spiR, s.remote)},
	}
}

// detectNAT evaluates the peer's NAT-D notifies (RFC 7296 §2.23).
func (s *IKESA) detectNAT(m *Message, from netip.AddrPort, natt bool) {
	local := s.e.localAddr(natt)
	var srcOK, dstOK, any bool
	for _, n := range m.Notifies() {
		switch n.NotifyType {
		case NATDetectionSourceIP:
			any = true
			srcOK = srcOK || string(n.Data) == string(natHash(m.SPIi, m.SPIr, from))
		case NATDetectionDestinationIP:
			any = true
			dstOK = dstOK || string(n.Data) == string(natHash(m.SPIi, m.SPIr, local))
		}
	}
	s.nat = s.e.cfg.ForceEncap || (any && (!srcOK || !dstOK))
}

func newNonce() []byte {
	n := make([]byte, 32)
	rand.Read(n)
	return n
}

// sendInit sends (again) the IKE_SA_INIT request, with the cookie
// the responder demanded first, if any (RFC 7296 §2.6), and a DH key of
// s.group (kept across retries with the same group).
func (s *IKESA) sendInit() error {
	if s.dh == nil || s.dh.group != s.group {
		var err error
		if s.dh, err = newDH(s.group); err != nil {
			return err
		}
	}
	if s.ni == nil {
		s.ni = newNonce()
	}
	var ps []Payload
	if s.cookie != nil {
		ps = append(ps, s.cookie)
	}
	ps = append(ps, &SA{Proposals: s.e.ikeProps}, &KE{Group: s.group, Data: s.dh.pub}, &Nonce{Data: s.ni})
	ps = append(ps, s.natNotifies(s.e.localAddr(false))...)
	m := &Message{Header: s.header(IKESAInit, 0, false), Payloads: ps}
	s.nextReq = 0
	s.initReq = m.Marshal()
	s.setState(stateInitSent)
	s.startRequest(IKESAInit, s.initReq, s.onInitResponse)
	return nil
}

func (s *IKESA) onInitResponse(m *Message, raw []byte, from netip.AddrPort, natt bool) []func() {
	e := s.e
	if n := m.Notify(InvalidKEPayload); n != nil && len(n.Data) == 2 {
		g := DHGroup(binary.BigEndian.Uint16(n.Data))
		offered := false
		for _, p := range e.ikeProps {
			for _, t := range p.Transforms {
				offered = offered || (t.Type == TransformDH && DHGroup(t.ID) == g)
			}
		}
		if offered && g != s.group {
			// Invariant (TestRedTeamInvalidKEPingPong): at most
			// maxKETries such retries; the notify is unauthenticated.
			if s.keTries >= maxKETries {
				return s.finish(errf(ErrNoProposalChosen, "responder keeps asking for another DH group"))
			}
			s.keTries++
			e.log.Info("ike: peer asks for another DH group", "peer", from, "group", g)
			s.group = g
			if err := s.sendInit(); err != nil {
				return s.finish(err)
			}
			return nil
		}
	}
	if n := m.Notify(Cookie); n != nil {
		// RFC 7296 §2.6: retry with the cookie as the first payload,
		// the same SPIi and Ni; a few times only.
		if len(n.Data) < 1 || len(n.Data) > 64 {
			e.malformed.Add(1)
			return s.finish(errf(ErrMalformed, "COOKIE of %d bytes", len(n.Data)))
		}
		if s.cookieTries >= maxCookieTries {
			return s.finish(errf(ErrTimeout, "responder keeps demanding a COOKIE"))
		}
		s.cookieTries++
		s.cookie = &Notify{NotifyType: Cookie, Data: clone(n.Data)}
		e.log.Debug("ike: responder demands a cookie", "peer", from)
		if err := s.sendInit(); err != nil {
			return s.finish(err)
		}
		return nil
	}
	for _, n := range m.Notifies() {
		if n.NotifyType.IsError() {
			return s.finish(notifyErr(n.NotifyType))
		}
	}
	sap, _ := m.Get(PayloadSA).(*SA)
	ke, _ := m.Get(PayloadKE).(*KE)
	nr, _ := m.Get(PayloadNonce).(*Nonce)
	if sap == nil || ke == nil || nr == nil || len(sap.Proposals) != 1 || m.SPIr == 0 {
		e.malformed.Add(1)
		return s.finish(errf(ErrMalformed, "IKE_SA_INIT response lacks SA, KE or Nr"))
	}
	chosen := sap.Proposals[0]
	if !acceptable(e.ikeProps, chosen) {
		return s.finish(errf(ErrNoProposalChosen, "responder chose a proposal we did not offer"))
	}
	var err error
	if s.suite, err = suiteFor(chosen); err != nil {
		return s.finish(err)
	}
	if s.suite.dh != s.group || ke.Group != s.group {
		return s.finish(errf(ErrMalformed, "responder's KE group %d does not match", ke.Group))
	}
	gir, err := s.dh.shared(ke.Data)
	if err != nil {
		return s.finish(err)
	}
	s.spiR = m.SPIr
	s.nr = nr.Data
	s.initResp = raw
	s.keys = deriveKeys(s.suite, s.ni, s.nr, gir, s.spiI, s.spiR)
	clear(gir)
	s.chosenIKE = chosen
	s.detectNAT(m, from, natt)
	if s.nat && e.natt != nil && !natt {
		s.natt = true
		s.remote = netip.AddrPortFrom(s.remote.Addr(), e.cfg.PeerNATTPort)
	}
	e.log.Debug("ike: IKE_SA_INIT done", "peer", s.remote, "nat", s.nat)
	return s.sendAuth()
}

func (s *IKESA) idPayload(responder bool) *ID {
	return &ID{Responder: responder, IDType: s.e.cfg.LocalID.Type, Data: s.e.cfg.LocalID.Data}
}

func idBody(id *ID) []byte { return id.body(nil) }

func (s *IKESA) allocChildSPI() ([]byte, error) {
	var spi uint32
	if d := s.e.cfg.SAD; d != nil {
		var err error
		if spi, err = d.AllocSPI(256, 0xffffffff, time.Minute); err != nil {
			return nil, err
		}
	} else {
		var b [4]byte
		for spi < 256 {
			rand.Read(b[:])
			spi = binary.BigEndian.Uint32(b[:])
		}
	}
	return binary.BigEndian.AppendUint32(nil, spi), nil
}

func (s *IKESA) sendAuth() []func() {
	e := s.e
	spi, err := s.allocChildSPI()
	if err != nil {
		return s.finish(err)
	}
	s.childSP = spi
	id := s.idPayload(false)
	auth := pskAuth(s.suite.prf, e.cfg.PSK, s.initReq, s.nr, s.keys.pi, idBody(id))
	prop := e.espAuth
	prop.SPI = spi
	ps := []Payload{id}
	if e.cfg.RemoteID.Type != 0 {
		ps = append(ps, &ID{Responder: true, IDType: e.cfg.RemoteID.Type, Data: e.cfg.RemoteID.Data})
	}
	ps = append(ps, &Auth{Method: AuthPSK, Data: auth},
		&SA{Proposals: []Proposal{prop}},
		&TS{Selectors: e.cfg.LocalTS}, &TS{Responder: true, Selectors: e.cfg.RemoteTS},
		&Notify{NotifyType: InitialContact})
	b, err := s.seal(s.header(IKEAuth, 1, false), ps)
	if err != nil {
		return s.finish(err)
	}
	s.setState(stateAuthSent)
	s.startRequest(IKEAuth, b, s.onAuthResponse)
	return nil
}

func notifyErr(t NotifyType) error {
	switch t {
	case NoProposalChosen:
		return errf(ErrNoProposalChosen, "peer sent NO_PROPOSAL_CHOSEN")
	case AuthenticationFailed:
		return errf(ErrAuthenticationFailed, "peer sent AUTHENTICATION_FAILED")
	case TSUnacceptable:
		return errf(ErrTSUnacceptable, "peer sent TS_UNACCEPTABLE")
	}
	return errf(ErrPeerError, "notify type %d", t)
}

func (s *IKESA) onAuthResponse(m *Message, raw []byte, from netip.AddrPort, natt bool) []func() {
	e := s.e
	if s.nat || natt {
		s.remote, s.natt = from, natt
	}
	if n := m.Notify(AuthenticationFailed); n != nil {
		e.authFailed.Add(1)
		e.log.Warn("ike: peer refused our authentication (AUTHENTICATION_FAILED): check the PSK and identities", "peer", from)
		return s.finish(notifyErr(n.NotifyType))
	}
	idr, _ := m.Get(PayloadIDr).(*ID)
	auth, _ := m.Get(PayloadAUTH).(*Auth)
	if idr == nil || auth == nil {
		for _, n := range m.Notifies() {
			if n.NotifyType.IsError() {
				return s.finish(notifyErr(n.NotifyType))
			}
		}
		return s.finish(errf(ErrMalformed, "IKE_AUTH response lacks IDr or AUTH"))
	}
	want := pskAuth(s.suite.prf, e.cfg.PSK, s.initResp, s.ni, s.keys.pr, idBody(idr))
	if auth.Method != AuthPSK || !hmac.Equal(want, auth.Data) || !s.idOK(idr) {
		e.authFailed.Add(1)
		e.log.Warn("ike: responder authentication failed (wrong PSK or identity)", "peer", from, "id", Identity{idr.IDType, idr.Data})
		return s.finish(errf(ErrAuthenticationFailed, "responder's AUTH does not verify"))
	}
	for _, n := range m.Notifies() {
		if n.NotifyType.IsError() {
			// The IKE SA is up but the child failed; we keep one
			// child per IKE SA, so the whole thing failed.
			return s.finish(notifyErr(n.NotifyType))
		}
	}
	sap, _ := m.Get(PayloadSA).(*SA)
	tsi, _ := m.Get(PayloadTSi).(*TS)
	tsr, _ := m.Get(PayloadTSr).(*TS)
	if sap == nil || tsi == nil || tsr == nil || len(sap.Proposals) != 1 {
		return s.finish(errf(ErrMalformed, "IKE_AUTH response lacks SA or TS"))
	}
	chosen := sap.Proposals[0]
	if chosen.Protocol != ProtoESP || len(chosen.SPI) != 4 || !acceptable([]Proposal{e.espAuth}, chosen) {
		return s.finish(errf(ErrNoProposalChosen, "responder chose an ESP proposal we did not offer"))
	}
	if !within(tsi.Selectors, e.cfg.LocalTS) || !within(tsr.Selectors, e.cfg.RemoteTS) {
		return s.finish(errf(ErrTSUnacceptable, "responder widened the traffic selectors"))
	}
	if m.Notify(UseTransportMode) != nil {
		return s.finish(errf(ErrUnsupported, "transport mode"))
	}
	c, err := s.makeChild(chosen, s.childSP, s.ni, s.nr, nil, true, tsi.Selectors, tsr.Selectors)
	if err != nil {
		return s.finish(err)
	}
	s.setState(stateEstablished)
	s.established = time.Now()
	s.remoteID = Identity{Type: idr.IDType, Data: clone(idr.Data)}
	s.children = append(s.children, c)
	e.log.Info("ike: IKE SA established", "peer", s.remote, "role", "initiator", "child", c.ID, "transform", c.Transform,
		"spi_in", fmt.Sprintf("%08x", c.In.SPI), "spi_out", fmt.Sprintf("%08x", c.Out.SPI), "nat", s.nat)
	after := s.upAfter()
	if f := e.cfg.OnChild; f != nil {
		after = append(after, func() { f(c) })
	}
	// Initiate returns after OnChild ran.
	return append(after, func() {
		select {
		case s.done <- nil:
		default:
		}
	})
}

func (s *IKESA) idOK(id *ID) bool {
	r := s.e.cfg.RemoteID
	return r.Type == 0 || (r.Type == id.IDType && string(r.Data) == string(id.Data))
}

// makeChild derives KEYMAT = prf+(SK_d, [g^ir (new) |] Ni | Nr) (RFC
// 7296 §2.17; gir is nil without PFS) and builds the sa.Configs. ni,
// nr, tsi and tsr are the nonces and
// negotiated selectors of the exchange's initiator and responder; ini
// tells whether we initiated the exchange (keys for the exchange
// initiator's outbound direction come first). inSPI is our inbound SPI.
func (s *IKESA) makeChild(chosen Proposal, inSPI, ni, nr, gir []byte, ini bool, tsi, tsr []TrafficSelector) (*ChildSA, error) {
	name, err := espFromIKE(chosen)
	if err != nil {
		return nil, err
	}
	tr, err := esp.ParseTransform(name)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrUnsupported, err)
	}
	esn := false
	if t, ok := chosen.get(TransformESN); ok {
		esn = t.ID == ESNYes
	}
	n := 2 * (tr.KeyLen() + tr.AuthKeyLen())
	seed := append(append(append([]byte(nil), gir...), ni...), nr...)
	km := s.suite.prf.plus(s.keys.d, seed, n)
	clear(seed)
	take := func(l int) []byte {
		if l == 0 {
			return nil
		}
		b := km[:l:l]
		km = km[l:]
		return b
	}
	iEnc, iAuth := take(tr.KeyLen()), take(tr.AuthKeyLen())
	rEnc, rAuth := take(tr.KeyLen()), take(tr.AuthKeyLen())
	local, remote := tsi, tsr
	outEnc, outAuth, inEnc, inAuth := iEnc, iAuth, rEnc, rAuth
	if !ini {
		local, remote = tsr, tsi
		outEnc, outAuth, inEnc, inAuth = rEnc, rAuth, iEnc, iAuth
	}
	id := newChildID()
	localAddr := s.e.localAddr(s.natt).Addr()
	base := sa.Config{
		Mode: esp.Tunnel, Transform: tr, ESN: esn, Child: id,
		Local: localAddr, Remote: s.remote.Addr(),
	}
	if s.nat {
		base.UDPEncap = true
		base.LocalPort = s.e.localAddr(true).Port()
		base.RemotePort = s.remote.Port()
	}
	in, out := base, base
	in.Direction, out.Direction = sa.In, sa.Out
	in.FloatRemote = s.nat // NAT mappings may change (RFC 7296 §2.23)
	in.SPI = binary.BigEndian.Uint32(inSPI)
	out.SPI = binary.BigEndian.Uint32(chosen.SPI)
	in.Key, in.AuthKey = inEnc, inAuth
	out.Key, out.AuthKey = outEnc, outAuth
	in.Selectors = saSelectors(remote, local)
	out.Selectors = saSelectors(local, remote)
	// Names carry n, not the whole id: short and still unique.
	in.Name = fmt.Sprintf("ike-%d-in", id-ChildIDBase)
	out.Name = fmt.Sprintf("ike-%d-out", id-ChildIDBase)
	if out.SPI < 256 {
		return nil, errf(ErrMalformed, "peer's ESP SPI %d is reserved", out.SPI)
	}
	var pfs DHGroup
	if d, ok := chosen.get(TransformDH); ok {
		pfs = DHGroup(d.ID)
	}
	return &ChildSA{ID: id, In: in, Out: out, LocalTS: local, RemoteTS: remote, Transform: tr.Name(), ESN: esn, IKE: s,
		PFS: pfs, owner: s, created: time.Now(), ni: ni, nr: nr}, nil
}

// responderInit answers an IKE_SA_INIT request (e.mu held).
func (e *Endpoint) responderInit(m *Message, raw []byte, from netip.AddrPort, natt bool) []func() {
	if m.SPIr != 0 || m.MsgID != 0 {
		e.dropped.Add(1)
		return nil
	}
	// Invariant (TestRedTeamHalfOpenMemory): a half-open SA holds at
	// most maxInitLen bytes of request.
	if len(raw) > maxInitLen {
		e.malformed.Add(1)
		e.log.Debug("ike: oversized IKE_SA_INIT refused", "from", from, "len", len(raw))
		return nil
	}
	// A retransmitted request: resend our response.
	for _, s := range e.sas {
		if !s.initiator && s.spiI == m.SPIi && s.remote == from && s.initResp != nil {
			if string(s.initReq) == string(raw) {
				e.send(s.initResp, from, natt)
			}
			return nil
		}
	}
	sap, _ := m.Get(PayloadSA).(*SA)
	ke, _ := m.Get(PayloadKE).(*KE)
	ni, _ := m.Get(PayloadNonce).(*Nonce)
	s := &IKESA{e: e, spiI: m.SPIi, remote: from, natt: natt}
	reply := func(ps ...Payload) []func() {
		h := s.header(IKESAInit, 0, true)
		mm := &Message{Header: h, Payloads: ps}
		e.send(mm.Marshal(), from, natt)
		return nil
	}
	if sap == nil || ke == nil || ni == nil || m.SPIi == 0 {
		e.malformed.Add(1)
		return reply(&Notify{NotifyType: InvalidSyntax})
	}
	// Invariant (RFC 7296 §2.6; TestRedTeamHalfOpenFlood,
	// TestCookieNoStateProperty): from CookieThreshold half-open SAs on,
	// an IKE_SA_INIT without a valid cookie as its first payload gets a
	// stateless COOKIE reply - no state, no DH - and the caps on
	// half-open and other IKE SAs are checked before any DH work.
	now := time.Now()
	if e.cfg.CookieThreshold < 0 || e.halfOpen >= e.cfg.CookieThreshold {
		var got []byte
		if len(m.Payloads) > 0 {
			if n, ok := m.Payloads[0].(*Notify); ok && n.NotifyType == Cookie {
				got = n.Data
			}
		}
		if !e.cookies.valid(got, ni.Data, from.Addr(), m.SPIi, now) {
			e.cookiesSent.Add(1)
			return reply(&Notify{NotifyType: Cookie, Data: e.cookies.issue(ni.Data, from.Addr(), m.SPIi, now)})
		}
		// Invariant (TestHalfOpenPerSourceProperty): a source address
		// that returned a valid cookie (so receives there: not
		// spoofed) holds at most MaxHalfOpenPerSource half-open SAs
		// created with a cookie; SAs created without one never count,
		// so a spoofer cannot use up its victim's share.
		// An IPv6 source counts by its /64 (sourceKey): one host
		// holds a whole /64 and could otherwise take 2^64 shares.
		src := sourceKey(from.Addr())
		if lim := e.cfg.MaxHalfOpenPerSource; lim > 0 && e.halfOpenBy[src] >= lim {
			e.sourceBlocked.Add(1)
			e.log.Debug("ike: IKE_SA_INIT dropped: source holds too many half-open SAs", "peer", from, "half_open", e.halfOpenBy[src])
			return nil
		}
		s.cookieSrc = src
	}
	if e.halfOpen >= e.cfg.MaxHalfOpen || len(e.sas)-e.halfOpen >= e.cfg.MaxIKESAs {
		e.log.Warn("ike: IKE SA table full", "peer", from, "half_open", e.halfOpen, "sas", len(e.sas))
		return reply(&Notify{NotifyType: TemporaryFailure})
	}
	chosen, ok := choose(e.ikeProps, sap.Proposals)
	if !ok {
		e.log.Warn("ike: no acceptable IKE proposal", "peer", from)
		return reply(&Notify{NotifyType: NoProposalChosen})
	}
	var err error
	if s.suite, err = suiteFor(chosen); err != nil {
		return reply(&Notify{NotifyType: NoProposalChosen})
	}
	if ke.Group != s.suite.dh {
		return reply(&Notify{NotifyType: InvalidKEPayload, Data: binary.BigEndian.AppendUint16(nil, uint16(s.suite.dh))})
	}
	if s.dh, err = newDH(s.suite.dh); err != nil {
		return reply(&Notify{NotifyType: NoProposalChosen})
	}
	gir, err := s.dh.shared(ke.Data)
	if err != nil {
		e.malformed.Add(1)
		e.log.Warn("ike: invalid KE payload", "peer", from, "err", err)
		return reply(&Notify{NotifyType: InvalidSyntax})
	}
	s.spiR = e.newSPI()
	s.ni, s.nr = ni.Data, newNonce()
	s.keys = deriveKeys(s.suite, s.ni, s.nr, gir, s.spiI, s.spiR)
	clear(gir)
	s.chosenIKE = chosen
	s.detectNAT(m, from, natt)
	ps := []Payload{&SA{Proposals: []Proposal{chosen}}, &KE{Group: s.suite.dh, Data: s.dh.pub}, &Nonce{Data: s.nr}}
	ps = append(ps, s.natNotifies(e.localAddr(natt))...)
	mm := &Message{Header: s.header(IKESAInit, 0, true), Payloads: ps}
	s.initReq = raw
	s.initResp = mm.Marshal()
	s.setState(stateInitDone)
	s.expect = 1
	e.sas[s.spiR] = s
	// Half-open SAs that never complete are removed.
	s.expiry = time.AfterFunc(time.Duration(e.cfg.Retries+1)*e.cfg.Retransmit*8, func() {
		e.mu.Lock()
		if !e.enter() {
			e.mu.Unlock()
			return
		}
		defer e.inflight.Done()
		var after []func()
		if s.state == stateInitDone {
			after = s.dieLocked(ErrTimeout)
		}
		e.mu.Unlock()
		for _, f := range after {
			f()
		}
	})
	e.send(s.initResp, from, natt)
	return nil
}

// responderAuth answers IKE_AUTH (e.mu held).
func (s *IKESA) responderAuth(m *Message, from netip.AddrPort, natt bool) []func() {
	e := s.e
	idi, _ := m.Get(PayloadIDi).(*ID)
	auth, _ := m.Get(PayloadAUTH).(*Auth)
	if idi == nil || auth == nil {
		s.respond(m, []Payload{&Notify{NotifyType: InvalidSyntax}})
		return s.dieLocked(errf(ErrMalformed, "IKE_AUTH without IDi or AUTH"))
	}
	want := pskAuth(s.suite.prf, e.cfg.PSK, s.initReq, s.nr, s.keys.pi, idBody(idi))
	if auth.Method != AuthPSK || !hmac.Equal(want, auth.Data) || !s.idOK(idi) {
		e.authFailed.Add(1)
		e.log.Warn("ike: initiator authentication failed (wrong PSK or identity), sent AUTHENTICATION_FAILED",
			"peer", from, "id", Identity{idi.IDType, idi.Data}, "method", auth.Method)
		s.respond(m, []Payload{&Notify{NotifyType: AuthenticationFailed}})
		return s.dieLocked(errf(ErrAuthenticationFailed, "initiator's AUTH does not verify"))
	}
	id := s.idPayload(true)
	ps := []Payload{id, &Auth{Method: AuthPSK, Data: pskAuth(s.suite.prf, e.cfg.PSK, s.initResp, s.ni, s.keys.pr, idBody(id))}}
	s.setState(stateEstablished)
	s.established = time.Now()
	s.remoteID = Identity{Type: idi.IDType, Data: clone(idi.Data)}
	c, notify := s.responderChild(m)
	if c == nil {
		e.log.Warn("ike: IKE SA established without child SA", "peer", from, "notify", notify)
		ps = append(ps, &Notify{NotifyType: notify})
		s.respond(m, ps)
		return s.upAfter()
	}
	ps = append(ps, &SA{Proposals: []Proposal{c.prop}}, &TS{Selectors: c.tsi}, &TS{Responder: true, Selectors: c.tsr})
	send := s.respondLater(m, ps)
	s.children = append(s.children, c.child)
	e.log.Info("ike: IKE SA established", "peer", s.remote, "role", "responder", "child", c.child.ID, "transform", c.child.Transform,
		"spi_in", fmt.Sprintf("%08x", c.child.In.SPI), "spi_out", fmt.Sprintf("%08x", c.child.Out.SPI), "nat", s.nat)
	after := s.upAfter()
	if f := e.cfg.OnChild; f != nil {
		ch := c.child
		after = append(after, func() { f(ch) })
	}
	return append(after, send) // after OnChild: see respondLater
}

type respChild struct {
	child    *ChildSA
	prop     Proposal
	tsi, tsr []TrafficSelector
}

func (s *IKESA) responderChild(m *Message) (*respChild, NotifyType) {
	e := s.e
	sap, _ := m.Get(PayloadSA).(*SA)
	tsi, _ := m.Get(PayloadTSi).(*TS)
	tsr, _ := m.Get(PayloadTSr).(*TS)
	if sap == nil || tsi == nil || tsr == nil {
		return nil, InvalidSyntax
	}
	if m.Notify(UseTransportMode) != nil {
		return nil, NoProposalChosen
	}
	// RFC 7296 §1.2: the child of IKE_AUTH uses the IKE SA's keys, no
	// DH transform (a peer offering one has it ignored).
	theirs := make([]Proposal, len(sap.Proposals))
	for i, p := range sap.Proposals {
		theirs[i] = stripDH(p)
	}
	chosen, ok := choose([]Proposal{e.espAuth}, theirs)
	if !ok || len(chosen.SPI) != 4 {
		return nil, NoProposalChosen
	}
	ni := narrow(tsi.Selectors, e.cfg.RemoteTS)
	nr := narrow(tsr.Selectors, e.cfg.LocalTS)
	if len(ni) == 0 || len(nr) == 0 {
		return nil, TSUnacceptable
	}
	spi, err := s.allocChildSPI()
	if err != nil {
		return nil, TemporaryFailure
	}
	s.childSP = spi
	c, err := s.makeChild(chosen, spi, s.ni, s.nr, nil, false, ni, nr)
	if err != nil {
		return nil, NoProposalChosen
	}
	ours := chosen
	ours.SPI = spi
	return &respChild{child: c, prop: ours, tsi: ni, tsr: nr}, 0
}

// request runs one request/response exchange on an established SA.
func (s *IKESA) request(ctx context.Context, x ExchangeType, ps []Payload, onReply func(*Message) []func()) error {
	e := s.e
	e.mu.Lock()
	// Invariant (TestRedTeamCloseUnblocks): no request starts or keeps
	// waiting once the Endpoint is closed (Close ends the pending ones
	// and stops their timers, so nothing else would end it).
	// Window of one: wait for our pending exchange to end.
	for s.pending != nil && s.state == stateEstablished && !e.closed {
		fin := s.pending.fin
		e.mu.Unlock()
		select {
		case <-fin:
		case <-ctx.Done():
			return ctx.Err()
		case <-e.ctx.Done():
			return ErrClosed
		}
		e.mu.Lock()
	}
	if e.closed {
		e.mu.Unlock()
		return ErrClosed
	}
	if s.state != stateEstablished {
		e.mu.Unlock()
		return errf(ErrClosed, "IKE SA not established")
	}
	b, err := s.seal(s.header(x, s.nextReq, false), ps)
	if err != nil {
		e.mu.Unlock()
		return err
	}
	done := make(chan struct{})
	r := s.startRequest(x, b, func(m *Message, _ []byte, _ netip.AddrPort, _ bool) []func() {
		var after []func()
		if onReply != nil {
			after = onReply(m)
		}
		// Invariant (TestIKERekeyUnderTraffic in internal/gateway):
		// request returns only after the reply's after-functions ran
		// (Config.OnChild among them), as Initiate does. A child rekey
		// sends the DELETE of the old child once its CREATE_CHILD_SA
		// request returned; had it returned before OnChild installed
		// the new child, the peer could retire the old child and send
		// on the new one before our inbound SA existed (no-sa drops).
		return append(after, func() { close(done) })
	})
	e.mu.Unlock()
	select {
	case <-done:
		return nil
	case err := <-r.result:
		return err
	case <-e.ctx.Done():
		return ErrClosed
	case <-ctx.Done():
		// Invariant (TestRedTeamCanceledRequestDesync): the request
		// keeps its message ID in the window - retransmitted until
		// answered (the answer discarded) or timed out - so the next
		// request's ID follows one the peer has seen (window of one,
		// RFC 7296 §2.3).
		e.mu.Lock()
		if s.pending == r {
			r.onReply = func(*Message, []byte, netip.AddrPort, bool) []func() { return nil }
		}
		e.mu.Unlock()
		return ctx.Err()
	}
}

// Ping sends an empty INFORMATIONAL request (liveness check, RFC 7296
// §2.4) and waits for the answer (on the successor of an IKE SA
// replaced by a rekey).
func (s *IKESA) Ping(ctx context.Context) error {
	s.e.mu.Lock()
	h := s.home() // after an IKE SA rekey: the successor
	s.e.mu.Unlock()
	return h.request(ctx, Informational, nil, nil)
}

// Delete deletes the IKE SA (and so its children) with an
// INFORMATIONAL exchange; the SA is gone locally even if the peer does
// not answer. On an IKE SA replaced by a rekey it deletes the successor
// holding the children.
func (s *IKESA) Delete(ctx context.Context) error {
	// Invariant (TestRedTeamDeleteDuringRekey): when Delete returns,
	// neither s nor a successor holding its children is alive: an IKE
	// SA rekey pending while the Delete waited for the window may have
	// moved the children on, so the new home is deleted too (each round
	// deletes one SA; a rekey needs the window, so few rounds happen).
	var err error
	for range maxTempRetries {
		s.e.mu.Lock()
		h := s.home() // after an IKE SA rekey: the successor holding the children
		s.e.mu.Unlock()
		err = h.deleteIKE(ctx, errf(ErrClosed, "deleted locally"))
		s.e.mu.Lock()
		moved := h.successor != nil && h.home().state == stateEstablished
		s.e.mu.Unlock()
		if !moved || ctx.Err() != nil {
			break
		}
	}
	return err
}

// deleteIKE sends the Delete of the IKE SA and removes it with reason.
func (s *IKESA) deleteIKE(ctx context.Context, reason error) error {
	s.e.mu.Lock()
	s.deleting = true
	s.e.mu.Unlock()
	err := s.request(ctx, Informational, []Payload{&Delete{Proto: ProtoIKE}}, nil)
	s.e.mu.Lock()
	after := s.dieLocked(reason)
	s.e.mu.Unlock()
	for _, f := range after {
		f()
	}
	return err
}

// removeChild takes the child whose outbound SPI is spi out of the SA.
func (s *IKESA) removeChild(spi []byte) *ChildSA {
	if len(spi) != 4 {
		return nil
	}
	v := binary.BigEndian.Uint32(spi)
	for k, c := range s.children {
		if c.Out.SPI == v {
			s.children = append(s.children[:k:k], s.children[k+1:]...)
			return c
		}
	}
	return nil
}

// childDown reports c deleted and wipes its keys (an after-function).
func (s *IKESA) childDown(c *ChildSA) func() {
	f := s.e.cfg.OnChildDown
	return func() {
		if f != nil {
			f(c)
		}
		wipeChild(c)
	}
}

// String describes the IKE SA without key material (fmt would otherwise
// print its unexported fields, keys included).
func (s *IKESA) String() string {
	role := "responder"
	if s.initiator {
		role = "initiator"
	}
	return fmt.Sprintf("IKE SA %016x_i %016x_r (%s)", s.spiI, s.spiR, role)
}

// Format implements fmt.Formatter with String for every verb.
func (s *IKESA) Format(f fmt.State, _ rune) { fmt.Fprint(f, s.String()) }

// LogValue implements slog.LogValuer without key material.
func (s *IKESA) LogValue() slog.Value { return slog.StringValue(s.String()) }

package ike

import (
	"encoding/binary"
	"net/netip"
)

// ExchangeType is the IKE exchange type (RFC 7296 §3.1).
type ExchangeType uint8

// Exchange types.
const (
	IKESAInit     ExchangeType = 34
	IKEAuth       ExchangeType = 35
	CreateChildSA ExchangeType = 36
	Informational ExchangeType = 37
)

// Header flags (RFC 7296 §3.1).
const (
	FlagInitiator uint8 = 0x08
	FlagVersion   uint8 = 0x10
	FlagResponse  uint8 = 0x20
)

// PayloadType is a payload type (RFC 7296 §3.2).
type PayloadType uint8

// Payload types.
const (
	PayloadNone    PayloadType = 0
	PayloadSA      PayloadType = 33
	PayloadKE      PayloadType = 34
	PayloadIDi     PayloadType = 35
	PayloadIDr     PayloadType = 36
	PayloadCERT    PayloadType = 37
	PayloadCERTREQ PayloadType = 38
	PayloadAUTH    PayloadType = 39
	PayloadNonce   PayloadType = 40
	PayloadNotify  PayloadType = 41
	PayloadDelete  PayloadType = 42
	PayloadVendor  PayloadType = 43
	PayloadTSi     PayloadType = 44
	PayloadTSr     PayloadType = 45
	PayloadSK      PayloadType = 46
	PayloadCP      PayloadType = 47
	PayloadEAP     PayloadType = 48
	PayloadSKF     PayloadType = 53
)

// HeaderLen is the length of the IKE header.
const HeaderLen = 28

// MaxMessageLen bounds the messages this package accepts and builds.
const MaxMessageLen = 65535

// Header is the fixed IKE header.
type Header struct {
	// SPIi and SPIr are the initiator's and responder's IKE SPIs.
	SPIi, SPIr uint64
	// Next is the type of the first payload.
	Next PayloadType
	// Version is 0x20 for IKEv2 (major 2, minor 0).
	Version uint8
	// Exchange is the exchange type.
	Exchange ExchangeType
	// Flags holds FlagInitiator, FlagVersion and FlagResponse.
	Flags uint8
	// MsgID is the message ID.
	MsgID uint32
	// Length is the length of the whole message.
	Length uint32
}

// Response reports the R flag.
func (h *Header) Response() bool { return h.Flags&FlagResponse != 0 }

// Initiator reports the I flag (sent by the original initiator).
func (h *Header) Initiator() bool { return h.Flags&FlagInitiator != 0 }

// ParseHeader decodes the IKE header of b and checks its length field
// against len(b).
func ParseHeader(b []byte) (Header, error) {
	var h Header
	if len(b) < HeaderLen {
		return h, errf(ErrTruncated, "%d-byte message, header is %d", len(b), HeaderLen)
	}
	h.SPIi = binary.BigEndian.Uint64(b[0:])
	h.SPIr = binary.BigEndian.Uint64(b[8:])
	h.Next = PayloadType(b[16])
	h.Version = b[17]
	h.Exchange = ExchangeType(b[18])
	h.Flags = b[19]
	h.MsgID = binary.BigEndian.Uint32(b[20:])
	h.Length = binary.BigEndian.Uint32(b[24:])
	if h.Version>>4 != 2 {
		return h, errf(ErrVersion, "version %#x", h.Version)
	}
	if h.Length < HeaderLen || int64(h.Length) != int64(len(b)) {
		return h, errf(ErrBadLength, "header length %d, datagram %d", h.Length, len(b))
	}
	return h, nil
}

func (h *Header) put(b []byte) {
	binary.BigEndian.PutUint64(b[0:], h.SPIi)
	binary.BigEndian.PutUint64(b[8:], h.SPIr)
	b[16] = byte(h.Next)
	b[17] = 0x20
	b[18] = byte(h.Exchange)
	b[19] = h.Flags
	binary.BigEndian.PutUint32(b[20:], h.MsgID)
	binary.BigEndian.PutUint32(b[24:], h.Length)
}

// Payload is one decoded payload.
type Payload interface {
	// Type is the payload type.
	Type() PayloadType
	// body appends the payload's body (after the generic header).
	body(b []byte) []byte
}

// Message is a decoded IKE message. For an encrypted message Payloads
// holds the inner payloads after decryption (see Endpoint) and
// Encrypted is true.
type Message struct {
	Header
	// Payloads are the payloads in order.
	Payloads []Payload
	// Encrypted tells that Payloads came out of an SK payload.
	Encrypted bool
}

// Get returns the first payload of type t, or nil.
func (m *Message) Get(t PayloadType) Payload {
	for _, p := range m.Payloads {
		if p.Type() == t {
			return p
		}
	}
	return nil
}

// Notifies returns the notify payloads.
func (m *Message) Notifies() []*Notify {
	var out []*Notify
	for _, p := range m.Payloads {
		if n, ok := p.(*Notify); ok {
			out = append(out, n)
		}
	}
	return out
}

// Notify returns the first notify of type t, or nil.
func (m *Message) Notify(t NotifyType) *Notify {
	for _, n := range m.Notifies() {
		if n.NotifyType == t {
			return n
		}
	}
	return nil
}

// Raw is a payload this package does not interpret (vendor ID,
// certificate request, configuration...), kept as bytes.
type Raw struct {
	// T is the payload type.
	T PayloadType
	// Critical is the critical bit.
	Critical bool
	// Data is the body after the generic header.
	Data []byte
}

// Type implements Payload.
func (r *Raw) Type() PayloadType    { return r.T }
func (r *Raw) body(b []byte) []byte { return append(b, r.Data...) }

// KE is the key exchange payload (§3.4).
type KE struct {
	// Group is the DH group of Data.
	Group DHGroup
	// Data is the public value.
	Data []byte
}

// Type implements Payload.
func (*KE) Type() PayloadType { return PayloadKE }
func (k *KE) body(b []byte) []byte {
	b = binary.BigEndian.AppendUint16(b, uint16(k.Group))
	b = append(b, 0, 0)
	return append(b, k.Data...)
}

// Nonce is the Ni/Nr payload (§3.9).
type Nonce struct {
	// Data is the nonce (16-256 bytes).
	Data []byte
}

// Type implements Payload.
func (*Nonce) Type() PayloadType      { return PayloadNonce }
func (n *Nonce) body(b []byte) []byte { return append(b, n.Data...) }

// IDType is an identification type (§3.5).
type IDType uint8

// Identification types.
const (
	IDIPv4  IDType = 1
	IDFQDN  IDType = 2
	IDEmail IDType = 3
	IDIPv6  IDType = 5
	IDKeyID IDType = 11
)

// ID is the IDi/IDr payload (§3.5).
type ID struct {
	// Responder marks IDr rather than IDi.
	Responder bool
	// IDType is the identification type.
	IDType IDType
	// Data is the identification data.
	Data []byte
}

// Type implements Payload.
func (i *ID) Type() PayloadType {
	if i.Responder {
		return PayloadIDr
	}
	return PayloadIDi
}
func (i *ID) body(b []byte) []byte {
	b = append(b, byte(i.IDType), 0, 0, 0)
	return append(b, i.Data...)
}

// AuthMethod is the AUTH payload's method (§3.8).
type AuthMethod uint8

// AuthPSK is the Shared Key Message Integrity Code method.
const AuthPSK AuthMethod = 2

// Auth is the AUTH payload (§3.8).
type Auth struct {
	// Method is the authentication method.
	Method AuthMethod
	// Data is the authentication data.
	Data []byte
}

// Type implements Payload.
func (*Auth) Type() PayloadType { return PayloadAUTH }
func (a *Auth) body(b []byte) []byte {
	b = append(b, byte(a.Method), 0, 0, 0)
	return append(b, a.Data...)
}

// NotifyType is a notify message type (§3.10.1).
type NotifyType uint16

// Notify message types used by this package.
const (
	UnsupportedCriticalPayload NotifyType = 1
	InvalidIKESPI              NotifyType = 4
	InvalidMajorVersion        NotifyType = 5
	InvalidSyntax              NotifyType = 7
	InvalidMessageID           NotifyType = 9
	InvalidSPI                 NotifyType = 11
	NoProposalChosen           NotifyType = 14
	InvalidKEPayload           NotifyType = 17
	AuthenticationFailed       NotifyType = 24
	SinglePairRequired         NotifyType = 34
	NoAdditionalSAs            NotifyType = 35
	InternalAddressFailure     NotifyType = 36
	FailedCPRequired           NotifyType = 37
	TSUnacceptable             NotifyType = 38
	InvalidSelectors           NotifyType = 39
	TemporaryFailure           NotifyType = 43
	ChildSANotFound            NotifyType = 44
	InitialContact             NotifyType = 16384
	NATDetectionSourceIP       NotifyType = 16388
	NATDetectionDestinationIP  NotifyType = 16389
	Cookie                     NotifyType = 16390
	UseTransportMode           NotifyType = 16391
	RekeySA                    NotifyType = 16393
	ESPTFCPaddingNotSupported  NotifyType = 16394
)

// IsError reports whether t is an error type (< 16384).
func (t NotifyType) IsError() bool { return t < 16384 }

// Protocol is a protocol ID (§3.3.1).
type Protocol uint8

// Protocol IDs.
const (
	ProtoIKE Protocol = 1
	ProtoAH  Protocol = 2
	ProtoESP Protocol = 3
)

// Notify is the N payload (§3.10).
type Notify struct {
	// Proto is the protocol of SPI (0 when there is none).
	Proto Protocol
	// SPI is the SA the notification is about, if any.
	SPI []byte
	// NotifyType is the notify message type.
	NotifyType NotifyType
	// Data is the notification data.
	Data []byte
}

// Type implements Payload.
func (*Notify) Type() PayloadType { return PayloadNotify }
func (n *Notify) body(b []byte) []byte {
	b = append(b, byte(n.Proto), byte(len(n.SPI)))
	b = binary.BigEndian.AppendUint16(b, uint16(n.NotifyType))
	b = append(b, n.SPI...)
	return append(b, n.Data...)
}

// Delete is the D payload (§3.11).
type Delete struct {
	// Proto is ProtoIKE (no SPIs: this IKE SA) or ProtoESP.
	Proto Protocol
	// SPISize is the size of each SPI (0 for IKE, 4 for ESP).
	SPISize uint8
	// SPIs are the sender's inbound SPIs of the SAs to delete.
	SPIs [][]byte
}

// Type implements Payload.
func (*Delete) Type() PayloadType { return PayloadDelete }
func (d *Delete) body(b []byte) []byte {
	b = append(b, byte(d.Proto), d.SPISize)
	b = binary.BigEndian.AppendUint16(b, uint16(len(d.SPIs)))
	for _, s := range d.SPIs {
		b = append(b, s...)
	}
	return b
}

// TS types (§3.13.1).
const (
	tsIPv4 = 7
	tsIPv6 = 8
)

// TrafficSelector is one entry of a TS payload (§3.13.1): an address
// range, an IP protocol (0: any) and a port range.
type TrafficSelector struct {
	// Proto is the IP protocol; 0 means any.
	Proto uint8
	// StartPort and EndPort bound the ports (0-65535: any).
	StartPort, EndPort uint16
	// Start and End bound the addresses (same family).
	Start, End netip.Addr
}

// TS is the TSi/TSr payload (§3.13).
type TS struct {
	// Responder marks TSr rather than TSi.
	Responder bool
	// Selectors are the traffic selectors (at least one).
	Selectors []TrafficSelector
}

// Type implements Payload.
func (t *TS) Type() PayloadType {
	if t.Responder {
		return PayloadTSr
	}
	return PayloadTSi
}
func (t *TS) body(b []byte) []byte {
	b = append(b, byte(len(t.Selectors)), 0, 0, 0)
	for _, s := range t.Selectors {
		typ, l := byte(tsIPv4), 16
		if s.Start.Is6() {
			typ, l = tsIPv6, 40
		}
		b = append(b, typ, s.Proto)
		b = binary.BigEndian.AppendUint16(b, uint16(l))
		b = binary.BigEndian.AppendUint16(b, s.StartPort)
		b = binary.BigEndian.AppendUint16(b, s.EndPort)
		b = append(b, s.Start.AsSlice()...)
		b = append(b, s.End.AsSlice()...)
	}
	return b
}

// Encrypted is the SK payload (§3.14) as found on the wire: Next is the
// type of the first inner payload, Data the IV, ciphertext and ICV.
// Parse leaves it encrypted; Endpoint decrypts it.
type Encrypted struct {
	// Next is the type of the first inner payload.
	Next PayloadType
	// Data is the IV, ciphertext and ICV.
	Data []byte
	// Offset is the offset of the SK payload's generic header in the
	// message (the end of the associated data).
	Offset int
}

// Type implements Payload.
func (*Encrypted) Type() PayloadType      { return PayloadSK }
func (e *Encrypted) body(b []byte) []byte { return append(b, e.Data...) }

// Parse decodes an IKE message: the header and the payload chain. An SK
// payload is returned as *Encrypted (it must be the last payload). It
// never panics; every error wraps a sentinel error.
func Parse(b []byte) (*Message, error) {
	h, err := ParseHeader(b)
	if err != nil {
		return nil, err
	}
	m := &Message{Header: h}
	m.Payloads, err = parseChain(h.Next, b[HeaderLen:], HeaderLen)
	if err != nil {
		return nil, err
	}
	return m, nil
}

// parseChain decodes a chain of payloads starting with type next; base
// is the offset of b in the message (for Encrypted.Offset).
func parseChain(next PayloadType, b []byte, base int) ([]Payload, error) {
	var out []Payload
	off := 0
	for next != PayloadNone {
		if len(out) >= 64 {
			return nil, errf(ErrMalformed, "more than 64 payloads")
		}
		if len(b)-off < 4 {
			return nil, errf(ErrTruncated, "payload %d header at offset %d", next, base+off)
		}
		nn := PayloadType(b[off])
		crit := b[off+1]&0x80 != 0
		l := int(binary.BigEndian.Uint16(b[off+2:]))
		if l < 4 || l > len(b)-off {
			return nil, errf(ErrBadLength, "payload %d length %d at offset %d (%d left)", next, l, base+off, len(b)-off)
		}
		body := b[off+4 : off+l]
		if next == PayloadSK {
			if off+l != len(b) {
				return nil, errf(ErrMalformed, "SK payload is not the last payload")
			}
			out = append(out, &Encrypted{Next: nn, Data: body, Offset: base + off})
			return out, nil
		}
		p, err := parsePayload(next, crit, body)
		if err != nil {
			return nil, err
		}
		out = append(out, p)
		off += l
		next = nn
	}
	if off != len(b) {
		return nil, errf(ErrBadLength, "%d bytes after the last payload", len(b)-off)
	}
	return out, nil
}

func parsePayload(t PayloadType, crit bool, b []byte) (Payload, error) {
	switch t {
	case PayloadSA:
		props, err := parseProposals(b)
		if err != nil {
			return nil, err
		}
		return &SA{Proposals: props}, nil
	case PayloadKE:
		if len(b) < 4 {
			return nil, errf(ErrTruncated, "KE payload")
		}
		return &KE{Group: DHGroup(binary.BigEndian.Uint16(b)), Data: clone(b[4:])}, nil
	case PayloadNonce:
		if len(b) < 16 || len(b) > 256 {
			return nil, errf(ErrBadLength, "nonce of %d bytes (16-256)", len(b))
		}
		return &Nonce{Data: clone(b)}, nil
	case PayloadIDi, PayloadIDr:
		if len(b) < 4 {
			return nil, errf(ErrTruncated, "ID payload")
		}
		return &ID{Responder: t == PayloadIDr, IDType: IDType(b[0]), Data: clone(b[4:])}, nil
	case PayloadAUTH:
		if len(b) < 4 {
			return nil, errf(ErrTruncated, "AUTH payload")
		}
		return &Auth{Method: AuthMethod(b[0]), Data: clone(b[4:])}, nil
	case PayloadNotify:
		if len(b) < 4 {
			return nil, errf(ErrTruncated, "notify payload")
		}
		ss := int(b[1])
		if len(b) < 4+ss {
			return nil, errf(ErrBadLength, "notify SPI size %d in %d bytes", ss, len(b))
		}
		return &Notify{Proto: Protocol(b[0]), NotifyType: NotifyType(binary.BigEndian.Uint16(b[2:])),
			SPI: clone(b[4 : 4+ss]), Data: clone(b[4+ss:])}, nil
	case PayloadDelete:
		if len(b) < 4 {
			return nil, errf(ErrTruncated, "delete payload")
		}
		d := &Delete{Proto: Protocol(b[0]), SPISize: b[1]}
		n := int(binary.BigEndian.Uint16(b[2:]))
		if len(b)-4 != n*int(d.SPISize) {
			return nil, errf(ErrBadLength, "delete payload: %d SPIs of %d bytes in %d bytes", n, d.SPISize, len(b)-4)
		}
		if d.SPISize == 0 && n != 0 {
			return nil, errf(ErrMalformed, "delete payload: %d SPIs of size 0", n)
		}
		for i := 0; i < n; i++ {
			s := 4 + i*int(d.SPISize)
			d.SPIs = append(d.SPIs, clone(b[s:s+int(d.SPISize)]))
		}
		return d, nil
	case PayloadTSi, PayloadTSr:
		return parseTS(t == PayloadTSr, b)
	case PayloadCERT, PayloadCERTREQ, PayloadVendor, PayloadCP, PayloadEAP:
		return &Raw{T: t, Critical: crit, Data: clone(b)}, nil
	}
	if crit {
		return nil, errf(ErrCritical, "payload type %d", t)
	}
	return &Raw{T: t, Data: clone(b)}, nil
}

func parseTS(resp bool, b []byte) (*TS, error) {
	if len(b) < 4 {
		return nil, errf(ErrTruncated, "TS payload")
	}
	n := int(b[0])
	if n == 0 {
		return nil, errf(ErrMalformed, "TS payload without selectors")
	}
	ts := &TS{Responder: resp}
	off := 4
	for i := 0; i < n; i++ {
		if len(b)-off < 8 {
			return nil, errf(ErrTruncated, "traffic selector %d", i)
		}
		typ := b[off]
		l := int(binary.BigEndian.Uint16(b[off+2:]))
		var alen int
		switch typ {
		case tsIPv4:
			alen = 4
		case tsIPv6:
			alen = 16
		default:
			return nil, errf(ErrUnsupported, "traffic selector type %d", typ)
		}
		if l != 8+2*alen || len(b)-off < l {
			return nil, errf(ErrBadLength, "traffic selector %d length %d", i, l)
		}
		s := TrafficSelector{
			Proto:     b[off+1],
			StartPort: binary.BigEndian.Uint16(b[off+4:]),
			EndPort:   binary.BigEndian.Uint16(b[off+6:]),
		}
		s.Start, _ = netip.AddrFromSlice(b[off+8 : off+8+alen])
		s.End, _ = netip.AddrFromSlice(b[off+8+alen : off+8+2*alen])
		off += l
		ts.Selectors = append(ts.Selectors, s)
	}
	if off != len(b) {
		return nil, errf(ErrBadLength, "%d bytes after the traffic selectors", len(b)-off)
	}
	return ts, nil
}

func clone(b []byte) []byte { return append([]byte(nil), b...) }

// appendChain appends the payloads with generic headers; the first
// payload's type is returned for the enclosing Next field.
func appendChain(b []byte, ps []Payload) ([]byte, PayloadType) {
	for i, p := range ps {
		start := len(b)
		next := PayloadNone
		if i+1 < len(ps) {
			next = ps[i+1].Type()
		}
		if e, ok := p.(*Encrypted); ok {
			next = e.Next
		}
		crit := byte(0)
		if r, ok := p.(*Raw); ok && r.Critical {
			crit = 0x80
		}
		b = append(b, byte(next), crit, 0, 0)
		b = p.body(b)
		binary.BigEndian.PutUint16(b[start+2:], uint16(len(b)-start))
	}
	if len(ps) == 0 {
		return b, PayloadNone
	}
	return b, ps[0].Type()
}

// Marshal encodes an unencrypted message (header Length and Next are
// computed). Encrypted messages are built by the Endpoint.
func (m *Message) Marshal() []byte {
	b := make([]byte, HeaderLen, 512)
	b, m.Next = appendChain(b, m.Payloads)
	m.Length = uint32(len(b))
	m.Version = 0x20
	m.Header.put(b)
	return b
}

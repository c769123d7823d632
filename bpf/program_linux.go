//go:build linux

package bpf

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math/bits"
	"net/netip"
	"sync"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
	"github.com/cilium/ebpf/rlimit"
	"golang.org/x/sys/unix"
)

// Names of the objects in steer.c.
const (
	progName        = "xdp_steer"
	mapXSKs         = "xsks"
	mapStats        = "stats"
	mapLocalAddrs   = "local_addrs"
	mapProtectedV4  = "protected_v4"
	mapProtectedV6  = "protected_v6"
	mapUnprotV4     = "unprot_v4"
	mapUnprotV6     = "unprot_v6"
	mapUnprotRules  = "unprot_rules"
	mapUnprotDrops  = "unprot_drops"
	mapUnprotLast   = "unprot_last"
	varConfig       = "cfg"
	numStatCounters = 15 // STAT_MAX in steer.h
)

// Bits of steer_config.flags (enum steer_flag in steer.h).
const (
	flagLocalFilter    = 1 << 0
	flagSteerFragments = 1 << 1
	flagSPIHash        = 1 << 2
	flagPlaintext      = 1 << 3
	flagUnprotected    = 1 << 4
	flagSpread         = 1 << 5

	unprotNoMatchPass = 1 << 31 // UNPROT_NOMATCH_PASS
)

// steerConfig mirrors struct steer_config in steer.h.
type steerConfig struct {
	NATTPort        uint16
	SpreadShift     uint16
	Flags           uint32
	SocketsPerQueue uint32
	UnprotRules     uint32
}

// Program is the loaded (not yet attached) steering program with its maps.
// Its methods are safe for concurrent use; Close must not race with them.
type Program struct {
	opts Options

	prog  *ebpf.Program
	xsks  *ebpf.Map
	stats *ebpf.Map
	coll  *ebpf.Collection
}

var removeMemlock = sync.OnceValue(rlimit.RemoveMemlock)

// Load validates opts, loads the program and its maps into the kernel and
// fills the address maps. The configuration is baked in at load time; to
// change it, load a new Program and attach that one instead.
func Load(opts Options) (*Program, error) {
	opts, err := opts.normalize()
	if err != nil {
		return nil, err
	}
	// A no-op on kernels with memcg accounting of BPF memory (5.11+).
	if err := removeMemlock(); err != nil {
		return nil, wrapErr("raise RLIMIT_MEMLOCK", err)
	}

	spec, err := loadSteer()
	if err != nil {
		return nil, err
	}
	if err := configure(spec, opts); err != nil {
		return nil, err
	}

	coll, err := ebpf.NewCollection(spec)
	if err != nil {
		return nil, wrapErr("load steering program", err)
	}
	p := &Program{
		opts:  opts,
		prog:  coll.Programs[progName],
		xsks:  coll.Maps[mapXSKs],
		stats: coll.Maps[mapStats],
		coll:  coll,
	}
	if err := p.fillMaps(); err != nil {
		coll.Close()
		return nil, err
	}
	return p, nil
}

func configure(spec *ebpf.CollectionSpec, opts Options) error {
	cfg := steerConfig{
		NATTPort:        opts.NATTPort,
		SocketsPerQueue: uint32(opts.SocketsPerQueue),
	}
	if len(opts.LocalAddrs) > 0 {
		cfg.Flags |= flagLocalFilter
	}
	if opts.SteerFragments {
		cfg.Flags |= flagSteerFragments
	}
	if opts.SPIHash {
		cfg.Flags |= flagSPIHash
	}
	if opts.Spread {
		cfg.Flags |= flagSpread
		cfg.SpreadShift = uint16(bits.TrailingZeros(uint(opts.SpreadChunk)))
	}
	if opts.Plaintext {
		cfg.Flags |= flagPlaintext
	}
	if !opts.Unprotected.Empty() {
		cfg.Flags |= flagUnprotected
		cfg.UnprotRules = uint32(len(opts.Unprotected.Rules))
	}
	v, ok := spec.Variables[varConfig]
	if !ok {
		return fmt.Errorf("bpf: object has no %q variable", varConfig)
	}
	if err := v.Set(cfg); err != nil {
		return fmt.Errorf("bpf: set config: %w", err)
	}
	xsks, ok := spec.Maps[mapXSKs]
	if !ok {
		return fmt.Errorf("bpf: object has no %q map", mapXSKs)
	}
	xsks.MaxEntries = uint32(opts.Queues * opts.SocketsPerQueue)
	return nil
}

// addrKey mirrors struct addr_key in steer.h.
type addrKey struct {
	Family uint32
	Addr   [16]byte
}

func newAddrKey(a netip.Addr) addrKey {
	if a.Is4() {
		k := addrKey{Family: 4}
		a4 := a.As4()
		copy(k.Addr[:], a4[:])
		return k
	}
	return addrKey{Family: 6, Addr: a.As16()}
}

// lpmKeyV4 and lpmKeyV6 mirror struct lpm_key_v4/v6 in steer.h.
type lpmKeyV4 struct {
	PrefixLen uint32
	Addr      [4]byte
}

type lpmKeyV6 struct {
	PrefixLen uint32
	Addr      [16]byte
}

func (p *Program) fillMaps() error {
	one := uint8(1)
	local := p.coll.Maps[mapLocalAddrs]
	for _, a := range p.opts.LocalAddrs {
		if err := local.Update(newAddrKey(a), one, ebpf.UpdateAny); err != nil {
			return wrapErr(fmt.Sprintf("add local address %v", a), err)
		}
	}
	for _, pfx := range p.opts.ProtectedPrefixes {
		if err := p.updateLPM(mapProtectedV4, mapProtectedV6, pfx, one); err != nil {
			return wrapErr(fmt.Sprintf("add protected prefix %v", pfx), err)
		}
	}
	for _, rp := range p.opts.Unprotected.Prefixes {
		tun := uint32(rp.Tunnel)
		if rp.RulesOnly {
			tun |= unprotNoMatchPass
		}
		if err := p.updateLPM(mapUnprotV4, mapUnprotV6, rp.Prefix, tun); err != nil {
			return wrapErr(fmt.Sprintf("add remote protected prefix %v", rp.Prefix), err)
		}
	}
	for i, r := range p.opts.Unprotected.Rules {
		if err := p.coll.Maps[mapUnprotRules].Update(uint32(i), newUnprotRule(r), ebpf.UpdateAny); err != nil {
			return wrapErr(fmt.Sprintf("add unprotected rule %d", i), err)
		}
	}
	return nil
}

// updateLPM puts pfx with value into the IPv4 trie v4 or the IPv6 trie
// v6 (map names), by its family.
func (p *Program) updateLPM(v4, v6 string, pfx netip.Prefix, value any) error {
	if pfx.Addr().Is4() {
		key := lpmKeyV4{PrefixLen: uint32(pfx.Bits()), Addr: pfx.Addr().As4()}
		return p.coll.Maps[v4].Update(key, value, ebpf.UpdateAny)
	}
	key := lpmKeyV6{PrefixLen: uint32(pfx.Bits()), Addr: pfx.Addr().As16()}
	return p.coll.Maps[v6].Update(key, value, ebpf.UpdateAny)
}

// newUnprotRule is the map value (struct unprot_rule) of r.
func newUnprotRule(r InboundRule) steerUnprotRule {
	var v steerUnprotRule
	words := func(p netip.Prefix) (addr, mask [4]uint32) {
		if !p.IsValid() {
			return
		}
		var a, m [16]byte
		n := 16
		if p.Addr().Is4() {
			n = 4
			a4 := p.Addr().As4()
			copy(a[:], a4[:])
		} else {
			a = p.Addr().As16()
		}
		for i := range n * 8 {
			if i < p.Bits() {
				m[i/8] |= 0x80 >> (i % 8)
			}
		}
		for k := range 4 {
			// Network order in memory: read the bytes as the host
			// (little-endian) loads them.
			mask[k] = binary.LittleEndian.Uint32(m[4*k:])
			addr[k] = binary.LittleEndian.Uint32(a[4*k:]) & mask[k]
		}
		return
	}
	switch {
	case r.Src.IsValid():
		v.Family = familyOf(r.Src.Addr())
	case r.Dst.IsValid():
		v.Family = familyOf(r.Dst.Addr())
	}
	v.Proto = r.Proto
	if r.Bypass {
		v.Action = 1 // UNPROT_BYPASS
	}
	v.Tunnel = uint32(r.Tunnel)
	v.SportLo, v.SportHi = r.SrcPorts.Lo, r.SrcPorts.Hi
	v.DportLo, v.DportHi = r.DstPorts.Lo, r.DstPorts.Hi
	v.Src, v.SrcMask = words(r.Src)
	v.Dst, v.DstMask = words(r.Dst)
	return v
}

func familyOf(a netip.Addr) uint8 {
	if a.Is4() {
		return 4
	}
	return 6
}

// UnprotectedDrops returns the clear-text drops (Options.Unprotected)
// per tunnel index, summed over CPUs: element i counts the drops
// attributed to tunnel index i (0: unattributed). The slice has
// MaxTunnelIndex+1 elements.
func (p *Program) UnprotectedDrops() ([]uint64, error) {
	out := make([]uint64, MaxTunnelIndex+1)
	m := p.coll.Maps[mapUnprotDrops]
	var (
		key    uint32
		perCPU []uint64
	)
	it := m.Iterate()
	for it.Next(&key, &perCPU) {
		if int(key) < len(out) {
			for _, v := range perCPU {
				out[key] += v
			}
		}
	}
	if err := it.Err(); err != nil {
		return nil, wrapErr("read unprotected drops", err)
	}
	return out, nil
}

// LastUnprotected returns the most recent clear-text drop over all CPUs;
// ok is false if there was none.
func (p *Program) LastUnprotected() (pkt UnprotectedPacket, ok bool, err error) {
	var perCPU []steerUnprotLast
	if err := p.coll.Maps[mapUnprotLast].Lookup(uint32(0), &perCPU); err != nil {
		return pkt, false, wrapErr("read last unprotected packet", err)
	}
	var last *steerUnprotLast
	for i := range perCPU {
		if perCPU[i].Ns != 0 && (last == nil || perCPU[i].Ns > last.Ns) {
			last = &perCPU[i]
		}
	}
	if last == nil {
		return pkt, false, nil
	}
	pkt = UnprotectedPacket{Proto: last.Proto, Tunnel: int(last.Tunnel), Seen: time.Duration(last.Ns)}
	if last.Family == 4 {
		pkt.Src = netip.AddrFrom4([4]byte(last.Src[:4]))
		pkt.Dst = netip.AddrFrom4([4]byte(last.Dst[:4]))
	} else {
		pkt.Src, pkt.Dst = netip.AddrFrom16(last.Src), netip.AddrFrom16(last.Dst)
	}
	return pkt, true, nil
}

// Options returns the validated options the program was loaded with,
// defaults filled in.
func (p *Program) Options() Options { return p.opts }

// Program returns the XDP program, e.g. for BPF_PROG_TEST_RUN. It is owned
// by p: do not close it.
func (p *Program) Program() *ebpf.Program { return p.prog }

// XSKMap returns the XSKMAP the program redirects into. It is owned by p:
// do not close it. Prefer RegisterSocket/UnregisterSocket.
func (p *Program) XSKMap() *ebpf.Map { return p.xsks }

// SocketIndex returns the XSKMAP index of socket slot (0-based) on RX
// queue: queue*SocketsPerQueue + slot.
func (p *Program) SocketIndex(queue, slot int) (int, error) {
	if queue < 0 || queue >= p.opts.Queues || slot < 0 || slot >= p.opts.SocketsPerQueue {
		return 0, fmt.Errorf("bpf: %w: queue %d slot %d outside %d queues x %d sockets",
			ErrInvalidOptions, queue, slot, p.opts.Queues, p.opts.SocketsPerQueue)
	}
	return queue*p.opts.SocketsPerQueue + slot, nil
}

func (p *Program) checkIndex(index int) error {
	if index < 0 || index >= p.opts.Queues*p.opts.SocketsPerQueue {
		return fmt.Errorf("bpf: %w: XSKMAP index %d outside 0..%d", ErrInvalidOptions,
			index, p.opts.Queues*p.opts.SocketsPerQueue-1)
	}
	return nil
}

// RegisterSocket puts the AF_XDP socket fd into XSKMAP slot index (see
// SocketIndex), replacing whatever was there. The map holds its own
// reference to the socket.
func (p *Program) RegisterSocket(index int, fd int) error {
	if err := p.checkIndex(index); err != nil {
		return err
	}
	if fd < 0 {
		return fmt.Errorf("bpf: %w: negative socket fd", ErrInvalidOptions)
	}
	if err := p.xsks.Update(uint32(index), uint32(fd), ebpf.UpdateAny); err != nil {
		return wrapErr(fmt.Sprintf("register AF_XDP socket %d at index %d", fd, index), err)
	}
	return nil
}

// UnregisterSocket empties XSKMAP slot index. Emptying an empty slot is not
// an error.
func (p *Program) UnregisterSocket(index int) error {
	if err := p.checkIndex(index); err != nil {
		return err
	}
	err := p.xsks.Delete(uint32(index))
	if err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
		return wrapErr(fmt.Sprintf("unregister XSKMAP index %d", index), err)
	}
	return nil
}

// Stats returns the counters summed over all CPUs.
func (p *Program) Stats() (Stats, error) {
	var s Stats
	for i, c := range s.counters() {
		var perCPU []uint64
		if err := p.stats.Lookup(uint32(i), &perCPU); err != nil {
			return Stats{}, wrapErr("read statistics", err)
		}
		for _, v := range perCPU {
			*c += v
		}
	}
	return s, nil
}

// Close unloads the program and its maps. Attachments keep the program in
// the kernel until they are closed themselves.
func (p *Program) Close() error {
	if p.coll == nil {
		return nil
	}
	p.coll.Close()
	p.coll = nil
	return nil
}

// Attachment is the program attached to one interface through a BPF link.
// It stays attached until Close, or until the last file descriptor of the
// link goes away (e.g. the process exits).
type Attachment struct {
	link    link.Link
	ifindex int
	mode    AttachMode
}

// Attach attaches the program to the interface with index ifindex. With
// AttachAuto it tries native mode and falls back to generic mode;
// Attachment.Mode tells which was used.
func (p *Program) Attach(ifindex int, mode AttachMode) (*Attachment, error) {
	if ifindex <= 0 {
		return nil, fmt.Errorf("bpf: %w: interface index %d", ErrInvalidOptions, ifindex)
	}
	attach := func(m AttachMode) (*Attachment, error) {
		flags := link.XDPDriverMode
		if m == AttachGeneric {
			flags = link.XDPGenericMode
		}
		l, err := link.AttachXDP(link.XDPOptions{Program: p.prog, Interface: ifindex, Flags: flags})
		if err != nil {
			return nil, wrapErr(fmt.Sprintf("attach XDP (%s mode) to ifindex %d", m, ifindex), err)
		}
		return &Attachment{link: l, ifindex: ifindex, mode: m}, nil
	}
	switch mode {
	case AttachNative, AttachGeneric:
		return attach(mode)
	case AttachAuto:
		a, nativeErr := attach(AttachNative)
		if nativeErr == nil {
			return a, nil
		}
		if errors.Is(nativeErr, ErrPermission) || errors.Is(nativeErr, ErrBusy) {
			return nil, nativeErr
		}
		a, genericErr := attach(AttachGeneric)
		if genericErr != nil {
			return nil, errors.Join(nativeErr, genericErr)
		}
		return a, nil
	}
	return nil, fmt.Errorf("bpf: %w: attach mode %v", ErrInvalidOptions, mode)
}

// Mode is the XDP mode actually used: AttachNative or AttachGeneric.
func (a *Attachment) Mode() AttachMode { return a.mode }

// Ifindex is the index of the interface the program is attached to.
func (a *Attachment) Ifindex() int { return a.ifindex }

// Close detaches the program from the interface.
func (a *Attachment) Close() error {
	if a.link == nil {
		return nil
	}
	err := a.link.Close()
	a.link = nil
	if err != nil {
		return wrapErr("detach XDP", err)
	}
	return nil
}

// wrapErr adds context and, where it applies, one of the package's
// sentinel errors to err.
func wrapErr(what string, err error) error {
	var verr *ebpf.VerifierError
	switch {
	case errors.As(err, &verr):
		// A rejected program (EACCES/EINVAL plus the verifier log) is a
		// bug in steer.c or a kernel regression, not a privilege issue.
	case errors.Is(err, unix.EPERM):
		return fmt.Errorf("bpf: %s: %w: %w", what, ErrPermission, err)
	case errors.Is(err, ebpf.ErrNotSupported) || errors.Is(err, unix.EOPNOTSUPP) ||
		errors.Is(err, unix.Errno(524)): // ENOTSUPP, the kernel-internal errno
		return fmt.Errorf("bpf: %s: %w: %w", what, ErrNotSupported, err)
	case errors.Is(err, unix.EBUSY):
		return fmt.Errorf("bpf: %s: %w: %w", what, ErrBusy, err)
	}
	return fmt.Errorf("bpf: %s: %w", what, err)
}

//go:build linux

package harness

import (
	"errors"
	"fmt"
	"runtime"
	"time"

	"golang.org/x/sys/unix"

	"github.com/espxdp/espxdp/internal/topo"
	"github.com/espxdp/espxdp/xdp"
)

// The jumbo rows: gen sends frames longer than a UMEM frame as
// descriptor chains (AF_XDP multi-buffer, XDP_USE_SG), pre-built like
// the other rows' frames, so that the generator's cost per packet stays
// a few descriptors and no copy; the veths run at E2EJumboMTU; the
// gateway's engine has MultiBuffer on. The AF_XDP forwarder has no
// multi-buffer mode, so the jumbo rows have the kernel's forwarding and
// the raw AEAD as baselines, not the forwarder.

const (
	// chainFrameSize is the UMEM frame size of the chain generator: a
	// 9000-byte frame takes 3 descriptors.
	chainFrameSize = 4096
	// chainFrames is the number of UMEM frames per socket: a multiple
	// of 1..6, so that every frame belongs to a chain of up to 6.
	chainFrames = 1920
)

// chainLayout is how pre-built frames are laid out in the UMEM frames
// of one chain generator socket: chain c is the frames c*k .. c*k+k-1
// (by index), part j of frame template c mod len(templates) in frame
// c*k+j, each part at most room bytes.
type chainLayout struct {
	k      int      // frames per chain
	chains int      // chains per socket
	room   int      // bytes per frame
	part   []uint32 // by frame index: bytes of its part
	inner  []uint32 // by chain: inner packet bytes
}

// newChainLayout lays frames out over nframes UMEM frames of room
// bytes each. Every template takes the same number of frames (that of
// the longest); a template that needs more than maxChain frames is an
// error.
func newChainLayout(frames []frame, nframes, room int) (chainLayout, error) {
	longest := 0
	for _, f := range frames {
		longest = max(longest, len(f.wire))
	}
	if len(frames) == 0 || room <= 0 || longest == 0 {
		return chainLayout{}, errors.New("harness: chain layout: no frames")
	}
	k := (longest + room - 1) / room
	if k > maxChainFrames || nframes < k {
		return chainLayout{}, fmt.Errorf("harness: a %d-byte frame takes %d descriptors of %d bytes, at most %d", longest, k, room, maxChainFrames)
	}
	l := chainLayout{k: k, chains: nframes / k, room: room, part: make([]uint32, nframes), inner: make([]uint32, nframes/k)}
	for c := range l.chains {
		f := frames[c%len(frames)]
		l.inner[c] = uint32(f.inner)
		for j := range k {
			lo := min(j*room, len(f.wire))
			l.part[c*k+j] = uint32(min(len(f.wire)-lo, room))
		}
	}
	return l, nil
}

// write copies the parts of the templates into the frames: data(i) is
// the room of frame i.
func (l *chainLayout) write(frames []frame, data func(i int) []byte) {
	for c := range l.chains {
		f := frames[c%len(frames)]
		for j := range l.k {
			i := c*l.k + j
			lo := min(j*l.room, len(f.wire))
			copy(data(i), f.wire[lo:lo+int(l.part[i])])
		}
	}
}

// maxChainFrames is the most descriptors of one packet the kernel
// takes (MAX_SKB_FRAGS + 1).
const maxChainFrames = 18

// descs writes the descriptors of chain c into ds (len k): addr(i) is
// the address of frame i's data. Each but the last part has
// XDP_PKT_CONTD; empty trailing parts (a shorter template) are left
// out. It returns how many descriptors it wrote.
func (l *chainLayout) descs(c int, ds []xdp.Desc, addr func(i int) uint64) int {
	n := 0
	for j := range l.k {
		i := c*l.k + j
		if l.part[i] == 0 {
			break
		}
		ds[n] = xdp.Desc{Addr: addr(i), Len: l.part[i], Options: unix.XDP_PKT_CONTD}
		n++
	}
	ds[n-1].Options = 0
	return n
}

// chainSocket is one AF_XDP socket of the chain generator, on its own
// UMEM, bound with MultiBuffer.
type chainSocket struct {
	u      *xdp.UMEM
	s      *xdp.Socket
	layout chainLayout
	// held: the frames the generator holds (allocated, not on the TX
	// ring). have: by chain, how many of its frames are held; a chain
	// is sent again once all are (ready, oldest first).
	held  []bool
	have  []int
	ready []int
}

// chainGenerator is the generator of the jumbo rows: like generator,
// but every packet is a chain of descriptors over consecutive UMEM
// frames.
type chainGenerator struct {
	socks   []*chainSocket
	descs   []xdp.Desc
	tx      []xdp.Desc
	shift   uint
	dataOff uint64
}

func newChainGenerator(l *topo.Link, queues int) (*chainGenerator, error) {
	g := &chainGenerator{descs: make([]xdp.Desc, chainFrames), tx: make([]xdp.Desc, xdp.MaxBatch*4), shift: 12}
	ok := false
	defer func() {
		if !ok {
			g.close()
		}
	}()
	for q := range queues {
		u, err := xdp.NewUMEM(xdp.UMEMConfig{FrameSize: chainFrameSize, NumFrames: chainFrames, FillSize: 64, CompletionSize: 2048})
		if err != nil {
			return nil, err
		}
		cs := &chainSocket{u: u, held: make([]bool, chainFrames)}
		g.socks = append(g.socks, cs)
		g.dataOff = uint64(u.DataOffset())
		if err := l.NS.Do(func() (err error) {
			cs.s, err = u.NewSocket(xdp.SocketConfig{Ifindex: l.Index, Queue: q, RXSize: -1, TXSize: 2048, MultiBuffer: true})
			return err
		}); err != nil {
			return nil, fmt.Errorf("harness: chain generator socket on %s queue %d: %w", l.Name, q, err)
		}
	}
	ok = true
	return g, nil
}

func (g *chainGenerator) addr(i int) uint64 { return uint64(i)<<g.shift + g.dataOff }

// fill lays frames out in every UMEM frame of the first queues sockets
// (newChainLayout) and makes every chain ready to send. Frames still in
// the kernel from an earlier run are waited for (at most a second).
func (g *chainGenerator) fill(frames []frame, queues int) error {
	for _, cs := range g.socks[:queues] {
		for end := time.Now().Add(time.Second); ; {
			cs.s.Complete()
			k := cs.u.Alloc(g.descs)
			for _, d := range g.descs[:k] {
				cs.held[d.Addr>>g.shift] = true
			}
			if !slicesAll(cs.held) {
				if time.Now().After(end) {
					return fmt.Errorf("harness: chain generator: frames still in the kernel")
				}
				time.Sleep(time.Millisecond)
				continue
			}
			break
		}
		l, err := newChainLayout(frames, chainFrames, chainFrameSize-int(g.dataOff))
		if err != nil {
			return err
		}
		l.write(frames, func(i int) []byte {
			buf, off := cs.u.Frame(xdp.Desc{Addr: g.addr(i)})
			return buf[off:]
		})
		cs.layout = l
		cs.have = make([]int, l.chains)
		cs.ready = cs.ready[:0]
		for c := range l.chains {
			cs.have[c] = l.k
			cs.ready = append(cs.ready, c)
		}
		// Frames past the last whole chain are given back.
		for i := l.chains * l.k; i < chainFrames; i++ {
			cs.u.Free([]xdp.Desc{{Addr: g.addr(i)}})
			cs.held[i] = false
		}
	}
	return nil
}

func slicesAll(b []bool) bool {
	for _, v := range b {
		if !v {
			return false
		}
	}
	return true
}

// run sends whole chains as fast as it can for d, like generator.run.
func (g *chainGenerator) run(d time.Duration, queues int) (sent, innerBytes uint64, elapsed time.Duration) {
	socks := g.socks[:queues]
	start := time.Now()
	deadline := start.Add(d)
	for i := 0; ; i++ {
		if i&7 == 0 && time.Now().After(deadline) {
			break
		}
		progress := false
		for _, cs := range socks {
			s, n := g.step(cs)
			sent += s
			innerBytes += n
			progress = progress || s > 0
		}
		if !progress {
			runtime.Gosched()
		}
	}
	elapsed = time.Since(start)
	for end := time.Now().Add(time.Second); time.Now().Before(end); {
		left := 0
		for _, cs := range socks {
			cs.s.Complete()
			left += cs.s.TXOutstanding()
		}
		if left == 0 {
			break
		}
		time.Sleep(time.Millisecond)
	}
	return sent, innerBytes, elapsed
}

// step takes back the frames the kernel completed, and puts as many
// ready chains on the TX ring as fit. It returns the packets and inner
// bytes sent.
func (g *chainGenerator) step(cs *chainSocket) (sent, innerBytes uint64) {
	l := &cs.layout
	cs.s.Complete()
	k := cs.u.Alloc(g.descs)
	for _, d := range g.descs[:k] {
		i := int(d.Addr >> g.shift)
		cs.held[i] = true
		if c := i / l.k; c < l.chains {
			if cs.have[c]++; cs.have[c] == l.k {
				cs.ready = append(cs.ready, c)
			}
		}
	}
	nd, nc := 0, 0
	for _, c := range cs.ready {
		if nd+l.k > len(g.tx) {
			break
		}
		nd += l.descs(c, g.tx[nd:], g.addr)
		nc++
	}
	if nc == 0 {
		return 0, 0
	}
	n := cs.s.Transmit(g.tx[:nd])
	// Whole chains only: count the chains the ring took.
	done := 0
	for used := 0; done < nc; done++ {
		c := cs.ready[done]
		m := 0
		for j := range l.k {
			if l.part[c*l.k+j] != 0 {
				m++
			}
		}
		if used+m > n {
			break
		}
		used += m
		for j := range l.k {
			cs.held[c*l.k+j] = false
		}
		cs.have[c] = 0
		sent++
		innerBytes += uint64(l.inner[c])
	}
	cs.ready = cs.ready[:copy(cs.ready, cs.ready[done:])]
	return sent, innerBytes
}

func (g *chainGenerator) close() {
	for _, cs := range g.socks {
		if cs.s != nil {
			cs.s.Close()
		}
		cs.u.Close()
	}
	g.socks = nil
}

// jumbo runs the jumbo rows for w workers: the four veth ends at
// E2EJumboMTU, gen's chain generator, the kernel's forwarding, then
// decrypt and encrypt through an engine with MultiBuffer, all at
// Config.E2EJumbo inner bytes. The MTUs are set back afterwards.
func (r *e2eRun) jumbo(w int) (_ []Result, err error) {
	n := r.net
	size := r.cfg.E2EJumbo
	// The frame generator's sockets hold gen's queues.
	if r.gen != nil {
		r.gen.close()
		r.gen = nil
	}
	links := []*topo.Link{n.genEth, n.gwA, n.gwB, n.sinkEth}
	defer func() {
		for _, l := range links {
			if e := l.SetMTU(1500); e != nil && err == nil {
				err = e
			}
		}
	}()
	for _, l := range links {
		if err := l.SetMTU(E2EJumboMTU); err != nil {
			return nil, err
		}
	}
	g, err := newChainGenerator(n.genEth, w)
	if err != nil {
		return nil, err
	}
	defer g.close()
	k, err := r.measureOn(g, "kernel", size, w, n.plainFrames(size))
	if err != nil {
		return nil, err
	}
	out := []Result{k}
	for _, op := range []string{"decrypt", "encrypt"} {
		rs, err := r.engineOn(g, op, w, []int{size}, true)
		if err != nil {
			return nil, err
		}
		out = append(out, rs...)
	}
	return out, nil
}

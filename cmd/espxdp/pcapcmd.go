package main

import (
	"errors"
	"fmt"
	"io"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"

	"github.com/espxdp/espxdp/bpf"
	"github.com/espxdp/espxdp/esp"
	"github.com/espxdp/espxdp/esp/reasm"
	"github.com/espxdp/espxdp/internal/config"
	"github.com/espxdp/espxdp/internal/show"
	"github.com/espxdp/espxdp/sa"
)

const (
	// batchSize is how many packets go to the processor at once.
	batchSize = 64
	// dataOff is where a packet's IP header starts in its buffer: room
	// for a link-layer header and the largest outer headers in front.
	dataOff = maxLinkHeader + esp.MaxHeadroom
	// bufSize holds any IP packet (a reassembled IPv6 one is 65535 + 40
	// bytes) with that headroom and the tailroom any transform needs.
	bufSize = dataOff + reasm.MaxIPv6Len + esp.MaxTailroom
)

// pcapCounters are the pcap commands' own counters, besides the SAs'.
type pcapCounters struct {
	read, written    uint64
	notIP, truncated uint64 // frames skipped before the processor
	control, bypass  uint64 // IKE / keepalives, bypassed packets: not written
	other            uint64 // any other verdict
	// Clear text a gateway of this configuration would discard, or
	// pass under a bypass policy (pcap decrypt; see unprotCheck).
	unprotected, unprotBypass uint64
	// ra reassembles outer fragments before decryption (nil: encrypt).
	ra *reasm.Reassembler
}

func (c *pcapCounters) list() []show.Counter {
	l := []show.Counter{
		{Name: "packets read", Value: c.read},
		{Name: "packets written", Value: c.written},
		{Name: "skipped (not IP)", Value: c.notIP},
		{Name: "skipped (truncated capture)", Value: c.truncated},
		{Name: "IKE or keepalive (not written)", Value: c.control},
		{Name: "bypass (not written)", Value: c.bypass},
		{Name: "other verdicts (not written)", Value: c.other},
		{Name: "unprotected, would be discarded", Value: c.unprotected},
		{Name: "unprotected, bypass policy (not written)", Value: c.unprotBypass},
	}
	if c.ra != nil {
		l = append(l, reasmCounters(c.ra)...)
	}
	return l
}

// batch is the reusable state of a pcap run: one buffer per packet slot,
// so that reading, processing and writing a file allocates nothing per
// packet beyond what the pcap reader does.
type batch struct {
	lt   layers.LinkType
	bufs [batchSize][]byte
	pkts [batchSize]sa.Packet
	cis  [batchSize]gopacket.CaptureInfo
	hdrs [batchSize][maxLinkHeader]byte
	hlen [batchSize]int
	n    int

	unprot *unprotCheck       // pcap decrypt with a gateway configuration
	ra     *reasm.Reassembler // outer reassembly (decrypt only)
}

func newBatch(lt layers.LinkType) *batch {
	b := &batch{lt: lt}
	for i := range b.bufs {
		b.bufs[i] = make([]byte, bufSize)
	}
	return b
}

// fill reads up to batchSize packets. For each it saves the link-layer
// header and puts the IP packet at dataOff in its buffer; trim cuts it
// to the length its IP header gives (dropping Ethernet padding), which
// encryption needs. It returns false at the end of the file.
func (b *batch) fill(in *pcapIn, cnt *pcapCounters, trim bool, tun *sa.Tunnel) (bool, error) {
	b.n = 0
	for b.n < batchSize {
		data, ci, err := in.next()
		if err != nil {
			if isEOF(err) {
				return b.n > 0, nil
			}
			if errors.Is(err, errTruncatedCapt) {
				cnt.read++
				cnt.truncated++
				continue
			}
			return false, err
		}
		cnt.read++
		hl, err := linkHeaderLen(b.lt, data)
		if err != nil {
			cnt.notIP++
			continue
		}
		ip := data[hl:]
		if trim {
			n, err := ipLen(ip)
			if err != nil {
				cnt.notIP++
				continue
			}
			ip = ip[:n]
		}
		if b.ra != nil {
			var ok bool
			if ip, ok = b.reassemble(ip, ci); !ok {
				continue
			}
		}
		if b.unprot != nil {
			switch b.unprot.classify(ip) {
			case bpf.Discard:
				cnt.unprotected++
				continue
			case bpf.Exempt:
				cnt.unprotBypass++
				continue
			}
		}
		i := b.n
		copy(b.hdrs[i][:], data[:hl])
		b.hlen[i] = hl
		b.cis[i] = ci
		buf := b.bufs[i]
		copy(buf[dataOff:], ip)
		b.pkts[i].Reset(buf, dataOff, len(ip))
		b.pkts[i].Tunnel = tun
		b.n++
	}
	return true, nil
}

// flush writes the packets the processor accepted, with their link-layer
// header and original timestamp, and counts the others.
func (b *batch) flush(out *pcapOut, cnt *pcapCounters) error {
	for i := 0; i < b.n; i++ {
		p := &b.pkts[i]
		switch p.Verdict {
		case sa.VerdictOK:
		case sa.VerdictDrop:
			continue // counted by the SA or the processor, by reason
		case sa.VerdictControl:
			cnt.control++
			continue
		case sa.VerdictBypass:
			cnt.bypass++
			continue
		default:
			cnt.other++
			continue
		}
		hl := b.hlen[i]
		if p.Off < hl || p.Len < 1 {
			return fmt.Errorf("internal error: result of packet %d has no room for its link header", cnt.read)
		}
		frame := p.Buf[p.Off-hl : p.Off+p.Len]
		copy(frame, b.hdrs[i][:hl])
		setLinkProto(b.lt, frame[:hl], p.Buf[p.Off]>>4)
		if err := out.write(b.cis[i], frame); err != nil {
			return err
		}
		cnt.written++
	}
	return nil
}

// pcapFlags are the flags both pcap commands take.
type pcapFlags struct {
	config, in, out, saName string
	json                    bool
}

func parsePcapFlags(name string, args []string, stderr io.Writer, withSA bool) (*pcapFlags, error) {
	f := &pcapFlags{}
	fs := newFlags(name, stderr)
	fs.StringVar(&f.config, "config", "", "YAML configuration `file`")
	fs.StringVar(&f.in, "in", "", "input pcap or pcapng `file`")
	fs.StringVar(&f.out, "out", "", "output pcap `file`")
	fs.BoolVar(&f.json, "json", false, "print the counters as JSON")
	required := []string{"config", "in", "out"}
	if withSA {
		fs.StringVar(&f.saName, "sa", "", "`name` of the outbound SA to encrypt with")
		required = append(required, "sa")
	}
	if err := parseFlags(fs, args, required...); err != nil {
		return nil, err
	}
	if f.in == f.out {
		return nil, usagef("%s: --in and --out are the same file", name)
	}
	return f, nil
}

func cmdPcapEncrypt(args []string, stdout, stderr io.Writer) error {
	f, err := parsePcapFlags("pcap encrypt", args, stderr, true)
	if err != nil {
		return err
	}
	var chosen *config.SA
	l, err := loadConfig(f.config, func(c *config.SA) bool {
		if c.Name == f.saName {
			chosen = c
			return true
		}
		return false
	})
	if err != nil {
		return err
	}
	defer l.close()
	if chosen == nil {
		return fmt.Errorf("%s: no SA named %q", l.cfg.File, f.saName)
	}
	if chosen.Direction != config.Out {
		return chosen.Pos.Errorf("SA %q is inbound; pcap encrypt needs an outbound SA", f.saName)
	}
	s := l.sas[indexOf(l.cfg, chosen)]
	sad := sa.NewSAD(sa.SADOptions{})
	if err := sad.Add(s); err != nil {
		return err
	}
	tun := sa.NewTunnel(chosen.Name)
	tun.SetOutbound(s)
	proc, err := sa.NewProcessor(sa.ProcessorOptions{SAD: sad, Tunnel: tun})
	if err != nil {
		return err
	}
	var cnt pcapCounters
	if err := runPcap(f, proc, &cnt, true, tun, nil); err != nil {
		return err
	}
	return report(stdout, f, l, proc, &cnt)
}

func cmdPcapDecrypt(args []string, stdout, stderr io.Writer) error {
	f, err := parsePcapFlags("pcap decrypt", args, stderr, false)
	if err != nil {
		return err
	}
	l, err := loadConfig(f.config, func(c *config.SA) bool { return c.Direction == config.In })
	if err != nil {
		return err
	}
	defer l.close()
	sad := sa.NewSAD(sa.SADOptions{})
	var nattPort uint16
	var nattSA *config.SA
	for i, s := range l.sas {
		if s == nil {
			continue
		}
		c := l.cfg.SAs[i]
		if err := sad.Add(s); err != nil {
			return c.Pos.Errorf("%v", err)
		}
		if c.Encap == config.EncapUDP {
			if nattSA != nil && c.LocalPort != nattPort {
				return c.Pos.Errorf("local_port %d differs from %d of %s (%s); pcap decrypt handles one NAT-T port", c.LocalPort, nattPort, nattSA.Pos.Field, nattSA.Name)
			}
			nattPort, nattSA = c.LocalPort, c
		}
	}
	if sad.Len() == 0 {
		return fmt.Errorf("%s: no inbound SAs", l.cfg.File)
	}
	proc, err := sa.NewProcessor(sa.ProcessorOptions{SAD: sad, NATTPort: nattPort})
	if err != nil {
		return err
	}
	unprot, err := newUnprotCheck(l.cfg, nattPort)
	if err != nil {
		return err
	}
	cnt := pcapCounters{ra: newPcapReassembler()}
	if err := runPcap(f, proc, &cnt, false, nil, unprot); err != nil {
		return err
	}
	return report(stdout, f, l, proc, &cnt)
}

func indexOf(cfg *config.Config, c *config.SA) int {
	for i, s := range cfg.SAs {
		if s == c {
			return i
		}
	}
	return -1
}

// runPcap streams f.in through the processor (outbound when encrypting)
// into f.out.
func runPcap(f *pcapFlags, proc *sa.Processor, cnt *pcapCounters, encrypt bool, tun *sa.Tunnel, unprot *unprotCheck) error {
	in, err := openPcap(f.in)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := createPcap(f.out, outputLinkType(in.lt), in.nanos)
	if err != nil {
		return err
	}
	b := newBatch(in.lt)
	b.unprot = unprot
	b.ra = cnt.ra
	w := proc.Worker(0)
	for {
		more, err := b.fill(in, cnt, encrypt, tun)
		if err != nil {
			out.Close()
			return fmt.Errorf("%s: %v", f.in, err)
		}
		if b.n > 0 {
			if encrypt {
				w.Outbound(b.pkts[:b.n])
			} else {
				w.Inbound(b.pkts[:b.n])
			}
			if err := b.flush(out, cnt); err != nil {
				out.Close()
				return fmt.Errorf("%s: %v", f.out, err)
			}
		}
		if !more {
			break
		}
	}
	if err := out.Close(); err != nil {
		return fmt.Errorf("%s: %v", f.out, err)
	}
	return nil
}

func report(stdout io.Writer, f *pcapFlags, l *loaded, proc *sa.Processor, cnt *pcapCounters) error {
	ps := proc.Stats()
	r := &show.Report{
		Title:   fmt.Sprintf("pcap: %s -> %s", f.in, f.out),
		SAs:     l.stats(),
		Unowned: &ps.Drops,
		Extra:   cnt.list(),
	}
	if f.json {
		return show.JSON(stdout, r)
	}
	return show.Text(stdout, r)
}

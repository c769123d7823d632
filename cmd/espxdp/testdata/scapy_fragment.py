#!/usr/bin/python3
"""Fragments ESP packets with scapy, for the outer-reassembly test of
espxdp pcap decrypt (an implementation of fragmentation independent of
ours).

Usage: scapy_fragment.py JOB.json
The job is {"out": path, "seed": int, "packets": [spec, ...]}; each spec is
{"in": pcap path (LINKTYPE_RAW), "index": packet number in it, "size":
fragment size, "how": mode, "hbh": bool}. IPv4 packets are fragmented with
fragment() ("size" bytes of data per fragment), IPv6 ones with
fragment6() ("size" bytes per fragment in all), after a hop-by-hop options
header when "hbh" is set (so that the fragment header follows an extension
header). Modes:

  inorder, reverse, shuffle   the fragments in that order
  dup                         shuffled, with one fragment sent twice
  mix                         shuffled together with the next spec's
                              fragments (which must be a good mode)
  overlap                     the second fragment moved 8 bytes back
                              (RFC 5722: the whole set must be dropped)
  tiny                        IPv4 only: the first fragment carries 8 bytes
  toobig                      IPv4 only: the last fragment moved to offset
                              8189 (beyond 65535 bytes)

Prints {"fragments": n} as JSON.
"""

import json
import logging
import random
import sys

logging.getLogger("scapy.runtime").setLevel(logging.ERROR)

from scapy.layers.inet import IP, fragment  # noqa: E402
from scapy.layers.inet6 import (IPv6, IPv6ExtHdrFragment,  # noqa: E402
                                IPv6ExtHdrHopByHop, fragment6)
from scapy.packet import Raw  # noqa: E402
from scapy.utils import PcapWriter, RawPcapReader  # noqa: E402

LINKTYPE_RAW = 101


def read_raw(path):
    return [data for data, _ in RawPcapReader(path)]


def frags_of(data, spec, rng):
    if data[0] >> 4 == 4:
        ip = IP(data)
        fs = fragment(ip, fragsize=spec["size"])
        if spec["how"] == "tiny":
            fs = fragment(ip, fragsize=8)[:1] + fs[1:]
        return [bytes(f) for f in fs]
    ip6 = IPv6(data)
    hdr = IPv6(src=ip6.src, dst=ip6.dst, hlim=ip6.hlim, tc=ip6.tc, fl=ip6.fl)
    if spec.get("hbh"):
        hdr = hdr / IPv6ExtHdrHopByHop()
    pkt = hdr / IPv6ExtHdrFragment(nh=ip6.nh, id=rng.randint(1, 0xffffffff)) / Raw(bytes(ip6.payload))
    return [bytes(f) for f in fragment6(pkt, spec["size"])]


def main():
    job = json.load(open(sys.argv[1]))
    rng = random.Random(job["seed"])
    cache = {}
    out = PcapWriter(job["out"], linktype=LINKTYPE_RAW, sync=True)
    n = 0
    held = []
    for spec in job["packets"]:
        if spec["in"] not in cache:
            cache[spec["in"]] = read_raw(spec["in"])
        fs = frags_of(cache[spec["in"]][spec["index"]], spec, rng)
        assert len(fs) > 2, "want at least 3 fragments"
        how = spec["how"]
        if how == "reverse":
            fs.reverse()
        elif how in ("shuffle", "dup", "mix"):
            rng.shuffle(fs)
            if how == "dup":
                fs.insert(rng.randrange(1, len(fs)), fs[0])
        elif how == "overlap":
            f = fs[1]
            if f[0] >> 4 == 4:
                p = IP(f)
                p.frag -= 1
                del p.chksum
            else:
                p = IPv6(f)
                p[IPv6ExtHdrFragment].offset -= 1
            fs[1] = bytes(p)
        elif how == "toobig":
            p = IP(fs[-1])
            p.frag = 8189
            del p.chksum
            fs[-1] = bytes(p)
        if how == "mix":
            held = fs
            continue
        if held:
            fs = fs + held
            rng.shuffle(fs)
            held = []
        for f in fs:
            out.write(f)
            n += 1
    assert not held, "mix must not be the last spec"
    out.close()
    print(json.dumps({"fragments": n}))


main()

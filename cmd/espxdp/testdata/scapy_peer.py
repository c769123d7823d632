#!/usr/bin/python3
"""Scapy as the IPsec peer of espxdp's pcap commands, for the interop tests.

Usage: scapy_peer.py JOB.json
The job is {"ops": [op, ...]}; the ops run in order and the script prints
{"results": [result, ...]} as JSON on stdout. Ops:

  plain   {"out", "link": "raw"|"ether", "families": [4, 6], "src4", "dst4",
           "src6", "dst6", "seed"}
          writes plaintext TCP, UDP and ICMP packets of both families and
          several sizes.
  encrypt {"sa", "in", "out", "link", "replay": [i], "tamper": [i]}
          encrypts every packet of "in" with the SA (sequence numbers from
          1); then appends copies of the listed output packets (replays) and
          corrupted copies of them with fresh sequence numbers (tampered).
          With "append": true the packets are added to an existing "out".
          Result: {"n": packets written, "tampered_seq": [...]}
  decrypt {"sa", "in", "out"}
          decrypts every packet of "in" and writes the inner packets.
          Result: {"n": packets decrypted, "errors": [...]}

An SA is {"spi", "crypt", "key" (hex, salt included), "auth", "auth_key",
"icv", "mode": "tunnel"|"transport", "src", "dst", "natt": null |
{"sport", "dport"}, "esn": bool, "esn_hi": int}.
"""

import json
import logging
import random
import struct
import sys

logging.getLogger("scapy.runtime").setLevel(logging.ERROR)

# Import only the layers used: "from scapy.all import *" loads every
# protocol scapy knows and takes seconds.
from scapy.layers.inet import ICMP, IP, TCP, UDP  # noqa: E402
from scapy.layers.inet6 import ICMPv6EchoRequest, IPv6  # noqa: E402
from scapy.layers.ipsec import ESP, SecurityAssociation  # noqa: E402
from scapy.layers.l2 import Ether  # noqa: E402
from scapy.packet import Raw  # noqa: E402
from scapy.utils import PcapWriter, rdpcap  # noqa: E402

LINKTYPE_ETHERNET = 1
LINKTYPE_RAW = 101


def make_sa(spec, seq=1):
    kw = {}
    if spec["mode"] == "tunnel":
        if ":" in spec["src"]:
            kw["tunnel_header"] = IPv6(src=spec["src"], dst=spec["dst"], hlim=64)
        else:
            kw["tunnel_header"] = IP(src=spec["src"], dst=spec["dst"], ttl=64)
    if spec.get("natt"):
        kw["nat_t_header"] = UDP(sport=spec["natt"]["sport"], dport=spec["natt"]["dport"])
    if spec.get("auth"):
        kw["auth_algo"] = spec["auth"]
        kw["auth_key"] = bytes.fromhex(spec["auth_key"])
    if spec.get("icv"):
        kw["crypt_icv_size"] = spec["icv"]
    if spec.get("esn"):
        kw["esn_en"] = True
        kw["esn"] = spec.get("esn_hi", 0)
    return SecurityAssociation(ESP, spi=spec["spi"], seq_num=seq,
                               crypt_algo=spec["crypt"],
                               crypt_key=bytes.fromhex(spec["key"]), **kw)


def ip_layer(p):
    """The IP packet of a frame read back by rdpcap."""
    if isinstance(p, Ether):
        return p.payload
    return p


def frame(ip, link):
    if link == "ether":
        return Ether(src="02:00:00:00:00:01", dst="02:00:00:00:00:02") / ip
    return ip


def writer(path, link, append=False):
    lt = LINKTYPE_ETHERNET if link == "ether" else LINKTYPE_RAW
    return PcapWriter(path, linktype=lt, append=append)


def op_plain(op):
    rnd = random.Random(op.get("seed", 1))
    pkts = []
    sizes = [0, 1, 15, 16, 17, 100, 555, 1200]
    for fam in op.get("families", [4, 6]):
        for i, size in enumerate(sizes):
            data = bytes(rnd.getrandbits(8) for _ in range(size))
            if fam == 4:
                ip = IP(src=op["src4"], dst=op["dst4"], id=i + 1, ttl=63, tos=0x20)
            else:
                ip = IPv6(src=op["src6"], dst=op["dst6"], hlim=63, fl=i)
            kind = i % 3
            if kind == 0:
                l4 = TCP(sport=40000 + i, dport=443, seq=i * 1000, flags="PA")
            elif kind == 1:
                l4 = UDP(sport=50000 + i, dport=53)
            else:
                l4 = ICMP(id=7, seq=i) if fam == 4 else ICMPv6EchoRequest(id=7, seq=i)
            pkt = ip / l4 / Raw(data)
            pkts.append(pkt.__class__(bytes(pkt)))  # freeze checksums and lengths
    w = writer(op["out"], op.get("link", "raw"))
    for i, p in enumerate(pkts):
        f = frame(p, op.get("link", "raw"))
        f.time = 1700000000 + i + 0.125
        w.write(f)
    w.close()
    return {"n": len(pkts)}


def fix_natt_len(e):
    """Scapy 2.5 computes the NAT-T UDP length of IPv4 packets before it
    attaches ESP (it says 8); put in the real length, as a peer would."""
    b = bytearray(bytes(e))
    if b[0] >> 4 == 4 and b[9] == 17:
        off = (b[0] & 0x0F) * 4
        struct.pack_into("!H", b, off + 4, len(b) - off)
    return bytes(b)


def op_encrypt(op):
    sa = make_sa(op["sa"])
    link = op.get("link", "raw")
    out = []
    for i, p in enumerate(rdpcap(op["in"])):
        e = sa.encrypt(ip_layer(p))
        out.append((p.time, fix_natt_len(e)))
    tampered = []
    for i in op.get("replay", []):
        out.append((out[i][0] + 100, out[i][1]))
    for i in op.get("tamper", []):
        # A fresh sequence number, so that only the ICV can reject it.
        p = rdpcap(op["in"])[i]
        seq = sa.seq_num
        e = bytearray(fix_natt_len(sa.encrypt(ip_layer(p))))
        e[-20] ^= 0x01  # inside the ciphertext or ICV
        tampered.append(seq)
        out.append((p.time + 200, bytes(e)))
    w = writer(op["out"], link, append=op.get("append", False))
    for t, b in out:
        cls = IPv6 if b[0] >> 4 == 6 else IP
        f = frame(cls(b), link)
        f.time = t
        w.write(f)
    w.close()
    return {"n": len(out), "tampered_seq": tampered}


def strip_natt(ip):
    """Turn IP/UDP/ESP into IP/ESP: scapy's transport-mode decrypt of
    IPv6 does not expect the UDP header."""
    if UDP not in ip:
        return ip
    esp = bytes(ip[UDP].payload)
    ip = ip.copy()
    ip.remove_payload()
    if ip.version == 4:
        ip.proto = 50
        del ip.len
        del ip.chksum
    else:
        ip.nh = 50
        del ip.plen
    return ip.__class__(bytes(ip / ESP(esp)))


def op_decrypt(op):
    sa = make_sa(op["sa"])
    link = op.get("link", "raw")
    w = writer(op["out"], link)
    n, errors = 0, []
    for i, p in enumerate(rdpcap(op["in"])):
        try:
            ip = strip_natt(ip_layer(p))
            d = sa.decrypt(ip)
        except Exception as e:  # noqa: BLE001 - report every failure
            errors.append("packet %d: %s: %s" % (i, type(e).__name__, e))
            continue
        b = bytes(d)
        cls = IPv6 if b[0] >> 4 == 6 else IP
        f = frame(cls(b), link)
        f.time = p.time
        w.write(f)
        n += 1
    w.close()
    return {"n": n, "errors": errors}


def main():
    with open(sys.argv[1]) as f:
        job = json.load(f)
    ops = {"plain": op_plain, "encrypt": op_encrypt, "decrypt": op_decrypt}
    results = [ops[op["op"]](op) for op in job["ops"]]
    json.dump({"results": results}, sys.stdout)


if __name__ == "__main__":
    main()

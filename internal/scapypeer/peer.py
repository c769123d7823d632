"""ESP interop peer: runs a batch of cases through scapy's IPsec layer.

Reads one JSON request from stdin:

    {"cases": [{"op": "encrypt" | "decrypt", "sa": {...}, "seq": N,
                "packet": "<base64>"}, ...]}

and writes one JSON response to stdout:

    {"scapy_version": "...", "results": [{"packet": "<base64>",
      "error_type": "", "error": "", "outer_udp_checksum": ""}, ...]}

with one result per case, in order. Each case builds its own
scapy.layers.ipsec.SecurityAssociation from "sa" (see SA in peer.go for
the fields) and calls its encrypt or decrypt method on the packet, parsed
as IP or IPv6 from its version nibble. An exception in one case is
reported in that case's result and does not stop the batch.

Exit status 3 means scapy (or the cryptography package it needs) could not
be imported; the message is on stderr.

This file deliberately does no cryptography or packet surgery of its own:
everything it returns is what scapy produced.
"""

import base64
import json
import sys
import warnings


def _b64(s):
    return base64.b64decode(s) if s else b""


def main():
    out = sys.stdout
    # Keep stdout for the JSON answer only: anything scapy prints goes to
    # stderr instead.
    sys.stdout = sys.stderr
    warnings.simplefilter("ignore")
    try:
        import scapy
        from scapy.compat import raw
        from scapy.config import conf
        from scapy.layers.inet import IP, UDP
        from scapy.layers.inet6 import IPv6
        from scapy.layers.ipsec import ESP, SecurityAssociation
    except Exception as e:  # noqa: BLE001 - any import failure means "no scapy"
        print("scapy is not importable: %r" % (e,), file=sys.stderr)
        return 3
    if not conf.crypto_valid:
        print("scapy is installed but python3-cryptography is missing",
              file=sys.stderr)
        return 3

    def parse(b):
        if not b:
            raise ValueError("empty packet")
        return (IP if b[0] >> 4 == 4 else IPv6)(b)

    def make_sa(c):
        s = c["sa"]
        tunnel = None
        if s.get("tunnel"):
            src, dst = s.get("tunnel_src") or "", s.get("tunnel_dst") or ""
            if ":" in src:
                tunnel = IPv6(src=src, dst=dst)
            elif src:
                tunnel = IP(src=src, dst=dst)
            else:
                # Decryption only needs to know it is tunnel mode.
                tunnel = IP()
        return SecurityAssociation(
            ESP,
            spi=s["spi"],
            seq_num=c.get("seq") or 0,
            crypt_algo=s.get("crypt_algo") or None,
            crypt_key=_b64(s.get("crypt_key")) or None,
            crypt_icv_size=s.get("crypt_icv_size") or None,
            auth_algo=s.get("auth_algo") or None,
            auth_key=_b64(s.get("auth_key")) or None,
            tunnel_header=tunnel,
            nat_t_header=UDP(sport=4500, dport=4500) if s.get("natt") else None,
            esn_en=bool(s.get("esn_en")),
            esn=s.get("esn") or 0,
        )

    def outer_udp_checksum(b):
        """Checks the UDP checksum of a received NAT-T packet with scapy's
        own checksum code: "zero" (none), "ok" or "bad"; "" if no UDP."""
        p = parse(b)
        if UDP not in p:
            return ""
        got = p[UDP].chksum
        if got == 0:
            return "zero"
        q = parse(b)
        del q[UDP].chksum
        want = parse(raw(q))[UDP].chksum
        return "ok" if got == want else "bad"

    def run(c):
        r = {"packet": "", "error_type": "", "error": "", "outer_udp_checksum": ""}
        try:
            sa = make_sa(c)
            b = _b64(c["packet"])
            if c["op"] == "encrypt":
                res = sa.encrypt(parse(b), seq_num=c.get("seq") or None)
            elif c["op"] == "decrypt":
                if c["sa"].get("natt"):
                    r["outer_udp_checksum"] = outer_udp_checksum(b)
                res = sa.decrypt(parse(b))
            else:
                raise ValueError("unknown op %r" % (c["op"],))
            r["packet"] = base64.b64encode(raw(res)).decode("ascii")
        except Exception as e:  # noqa: BLE001 - reported to the Go side
            r["error_type"] = type(e).__name__
            r["error"] = str(e)[:300]
        return r

    req = json.load(sys.stdin)
    results = [run(c) for c in req["cases"]]
    json.dump({"scapy_version": scapy.VERSION, "results": results}, out)
    out.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())

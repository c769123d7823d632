//go:build ignore

/*
 * espxdp steering program: sends IPsec ESP (raw and UDP-encapsulated,
 * RFC 4303 / RFC 3948) and, in gateway mode, plaintext to protected
 * prefixes into AF_XDP sockets; everything else goes to the kernel.
 *
 * Policy in short (the Go package documentation is the reference):
 *   - The program never aborts. It drops only clear text from a remote
 *     protected prefix (FLAG_UNPROTECTED, RFC 4301 section 5.2) and, in
 *     gateway mode, frames it cannot parse (fail closed, below); anything
 *     else it does not want, including malformed packets, is XDP_PASS.
 *   - Fail closed: a packet whose headers the program cannot fully parse
 *     (more than MAX_IPV6_EXT_HDRS extension headers, a malformed
 *     extension chain or IP length) still gets the clear-text check by
 *     its addresses whenever they are readable: to a protected prefix it
 *     is steered to the engine (never to the kernel, which would route
 *     it in clear), from a remote protected prefix it is dropped unless
 *     a bypass rule certainly exempts it (protocol and ports unknown).
 *     A frame with more than MAX_VLAN_TAGS tags is dropped whenever
 *     FLAG_PLAINTEXT or FLAG_UNPROTECTED is set (addresses unknown).
 *   - Every packet increments exactly one counter of enum stat_reason.
 *   - Every packet access is bounds-checked against data_end; lengths
 *     taken from headers are additionally checked against the IP
 *     packet's own length so Ethernet padding is never parsed.
 */
#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/in.h>
#include <linux/ip.h>
#include <linux/ipv6.h>
#include <linux/udp.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

#include "steer.h"

#ifndef ETH_P_8021AD
#define ETH_P_8021AD 0x88A8
#endif

#define IKE_PORT 500
#define MAX_VLAN_TAGS 2
#define MAX_IPV6_EXT_HDRS 6

/* IPv4 frag_off field bits (host order). */
#define IP4_MF 0x2000
#define IP4_OFFSET 0x1FFF

/* IPv6 fragment header frag_off field bits (host order). */
#define IP6_OFFSET 0xFFF8
#define IP6_MF 0x0001

/* IPv6 extension header numbers (RFC 8200). */
#define NEXTHDR_HOP 0
#define NEXTHDR_ROUTING 43
#define NEXTHDR_FRAGMENT 44
#define NEXTHDR_DEST 60

struct vlan_tag {
	__be16 tci;
	__be16 proto;
};

struct ip6_ext {
	__u8 nexthdr;
	__u8 hdrlen; /* in 8-byte units, not counting the first 8 bytes */
};

struct ip6_frag {
	__u8 nexthdr;
	__u8 reserved;
	__be16 frag_off;
	__be32 identification;
};

/* Rewritten by the loader before load; see struct steer_config. */
volatile const struct steer_config cfg = {
	.natt_port = 4500,
	.flags = 0,
	.sockets_per_queue = 1,
};

/*
 * Never read by the program; only here so that the enums are part of the
 * object's BTF and bpf2go can generate their Go mirror.
 */
volatile const enum stat_reason abi_stat_reason = STAT_MAX;
volatile const enum steer_flag abi_steer_flag = FLAG_PLAINTEXT;
volatile const enum unprot_action abi_unprot_action = UNPROT_BYPASS;

struct {
	__uint(type, BPF_MAP_TYPE_XSKMAP);
	__type(key, __u32);
	__type(value, __u32);
	__uint(max_entries, 64); /* resized by the loader */
} xsks SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__type(key, __u32);
	__type(value, __u64);
	__uint(max_entries, STAT_MAX);
} stats SEC(".maps");

/*
 * FLAG_SPREAD: packets this CPU steered with spreading, the dealer's
 * position. Per CPU, so no packet writes a line another CPU reads.
 */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__type(key, __u32);
	__type(value, __u32);
	__uint(max_entries, 1);
} spread SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__type(key, struct addr_key);
	__type(value, __u8);
	__uint(max_entries, 1024);
} local_addrs SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__type(key, struct lpm_key_v4);
	__type(value, __u8);
	__uint(max_entries, 1024);
	__uint(map_flags, BPF_F_NO_PREALLOC);
} protected_v4 SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__type(key, struct lpm_key_v6);
	__type(value, __u8);
	__uint(max_entries, 1024);
	__uint(map_flags, BPF_F_NO_PREALLOC);
} protected_v6 SEC(".maps");

/*
 * Clear-text discard (FLAG_UNPROTECTED): the remote protected prefixes,
 * looked up by a packet's SOURCE, with the tunnel counter index as value;
 * the inbound rules (SPD entries read inbound, first match wins) walked
 * only on a hit; the drops per tunnel index; the last drop per CPU.
 */
struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__type(key, struct lpm_key_v4);
	__type(value, __u32);
	__uint(max_entries, 1024);
	__uint(map_flags, BPF_F_NO_PREALLOC);
} unprot_v4 SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__type(key, struct lpm_key_v6);
	__type(value, __u32);
	__uint(max_entries, 1024);
	__uint(map_flags, BPF_F_NO_PREALLOC);
} unprot_v6 SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__type(key, __u32);
	__type(value, struct unprot_rule);
	__uint(max_entries, MAX_UNPROT_RULES);
} unprot_rules SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__type(key, __u32);
	__type(value, __u64);
	__uint(max_entries, MAX_UNPROT_TUNNELS);
} unprot_drops SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__type(key, __u32);
	__type(value, struct unprot_last);
	__uint(max_entries, 1);
} unprot_last SEC(".maps");

/* What the IP parser found out about a packet. */
struct ipinfo {
	void *nh;      /* the IP header (bounds-checked by the parser) */
	void *l4;      /* first byte after the IP (extension) headers */
	void *end;     /* end of the IP packet according to its length field */
	__u8 proto;    /* upper-layer protocol */
	__u8 is_v6;
	__u8 frag;     /* outer packet is a fragment (not an atomic one) */
	__u8 first;    /* ... and it is the first fragment (offset 0) */
	__u8 opaque;   /* header chain not parsed: proto and l4 unknown */
	__u32 hashkey; /* destination address folded to 32 bits, host order */
	struct addr_key dst;
};

enum parse_result {
	PARSE_OK = 0,
	PARSE_MALFORMED,
	PARSE_OTHER, /* well-formed, but we stopped parsing (too many ext headers) */
};

static __always_inline int account(__u32 reason, int action)
{
	__u64 *v = bpf_map_lookup_elem(&stats, &reason);

	if (v)
		*v += 1;
	return action;
}

/* lowbias32 integer finaliser; mirrored by SPIHashSlot in Go. */
static __always_inline __u32 hash32(__u32 x)
{
	x ^= x >> 16;
	x *= 0x7feb352dU;
	x ^= x >> 15;
	x *= 0x846ca68bU;
	x ^= x >> 16;
	return x;
}

/*
 * Redirect into the XSKMAP slot of this RX queue. With FLAG_SPI_HASH and
 * more than one socket per queue, the slot is
 * queue*sockets_per_queue + hash32(key) % sockets_per_queue.
 * With FLAG_SPREAD instead, it is
 * queue*sockets_per_queue + (c >> spread_shift) % sockets_per_queue,
 * where c counts the spread packets of this CPU: runs of 2^spread_shift
 * consecutive packets are dealt to the queue's sockets in turn.
 * An empty (or out of range) slot makes bpf_redirect_map return the
 * fallback XDP_PASS, which is counted as STAT_REDIRECT_NO_SOCKET.
 */
static __always_inline int steer(struct xdp_md *ctx, __u32 reason, __u32 key, int use_hash)
{
	__u32 n = cfg.sockets_per_queue;
	__u32 idx;
	long ret;

	if (n == 0)
		n = 1;
	idx = ctx->rx_queue_index * n;
	if (use_hash && n > 1) {
		if (cfg.flags & FLAG_SPREAD) {
			__u32 zero = 0;
			__u32 *c = bpf_map_lookup_elem(&spread, &zero);

			if (c) {
				idx += (*c >> (cfg.spread_shift & 31)) % n;
				*c += 1;
			}
		} else if (cfg.flags & FLAG_SPI_HASH) {
			idx += hash32(key) % n;
		}
	}

	ret = bpf_redirect_map(&xsks, idx, XDP_PASS);
	if (ret == XDP_REDIRECT)
		return account(reason, XDP_REDIRECT);
	return account(STAT_REDIRECT_NO_SOCKET, XDP_PASS);
}

static __always_inline int is_local(struct ipinfo *ip)
{
	if (!(cfg.flags & FLAG_LOCAL_FILTER))
		return 1;
	return bpf_map_lookup_elem(&local_addrs, &ip->dst) != NULL;
}

static __always_inline int is_protected(struct ipinfo *ip)
{
	if (!(cfg.flags & FLAG_PLAINTEXT))
		return 0;

	if (ip->is_v6) {
		struct lpm_key_v6 k6 = { .prefixlen = 128 };

		__builtin_memcpy(k6.addr, ip->dst.addr, 16);
		return bpf_map_lookup_elem(&protected_v6, &k6) != NULL;
	}

	struct lpm_key_v4 k4 = { .prefixlen = 32 };

	__builtin_memcpy(k4.addr, ip->dst.addr, 4);
	return bpf_map_lookup_elem(&protected_v4, &k4) != NULL;
}

static __always_inline int parse_ipv4(void *nh, void *data_end, struct ipinfo *ip)
{
	struct iphdr *iph = nh;
	__u32 hlen, tot, frag_off;

	if ((void *)(iph + 1) > data_end)
		return PARSE_MALFORMED;
	if (iph->version != 4)
		return PARSE_MALFORMED;

	/* Addresses known from here on (see parse_ipv6). */
	ip->nh = nh;
	ip->is_v6 = 0;
	ip->dst.family = 4;
	__builtin_memcpy(ip->dst.addr, &iph->daddr, 4);
	__builtin_memset(&ip->dst.addr[4], 0, 12);
	ip->hashkey = bpf_ntohl(iph->daddr);

	if (iph->ihl < 5)
		return PARSE_MALFORMED;

	hlen = (__u32)iph->ihl * 4;
	tot = bpf_ntohs(iph->tot_len);
	if (tot < hlen)
		return PARSE_MALFORMED;
	if (nh + tot > data_end || nh + hlen > data_end)
		return PARSE_MALFORMED;

	ip->l4 = nh + hlen;
	ip->end = nh + tot;
	ip->proto = iph->protocol;

	frag_off = bpf_ntohs(iph->frag_off);
	ip->frag = (frag_off & (IP4_MF | IP4_OFFSET)) != 0;
	ip->first = (frag_off & IP4_OFFSET) == 0;
	return PARSE_OK;
}

static __always_inline int parse_ipv6(void *nh, void *data_end, struct ipinfo *ip)
{
	struct ipv6hdr *ip6h = nh;
	void *cur, *end;
	__u8 next;
	int i;

	if ((void *)(ip6h + 1) > data_end)
		return PARSE_MALFORMED;
	if (ip6h->version != 6)
		return PARSE_MALFORMED;

	/*
	 * The addresses are known from here on (ip->nh set): a failure
	 * below still gets the fail-closed check in xdp_steer.
	 */
	ip->nh = nh;
	ip->is_v6 = 1;
	ip->frag = 0;
	ip->first = 1;
	ip->dst.family = 6;
	__builtin_memcpy(ip->dst.addr, &ip6h->daddr, 16);
	ip->hashkey = bpf_ntohl(ip6h->daddr.in6_u.u6_addr32[0]) ^
		      bpf_ntohl(ip6h->daddr.in6_u.u6_addr32[1]) ^
		      bpf_ntohl(ip6h->daddr.in6_u.u6_addr32[2]) ^
		      bpf_ntohl(ip6h->daddr.in6_u.u6_addr32[3]);

	cur = (void *)(ip6h + 1);
	end = cur + bpf_ntohs(ip6h->payload_len);
	if (end > data_end)
		return PARSE_MALFORMED;
	ip->end = end;

	next = ip6h->nexthdr;
#pragma unroll
	for (i = 0; i < MAX_IPV6_EXT_HDRS; i++) {
		if (next == NEXTHDR_HOP || next == NEXTHDR_ROUTING || next == NEXTHDR_DEST) {
			struct ip6_ext *ext = cur;
			__u32 len;

			/* Every extension header is at least 8 bytes long. */
			if (cur + 8 > data_end || cur + 8 > end)
				return PARSE_MALFORMED;
			len = ((__u32)ext->hdrlen + 1) * 8;
			next = ext->nexthdr;
			cur += len;
			if (cur > end)
				return PARSE_MALFORMED;
			continue;
		}
		if (next == NEXTHDR_FRAGMENT) {
			struct ip6_frag *fh = cur;
			__u16 off;

			if ((void *)(fh + 1) > data_end || (void *)(fh + 1) > end)
				return PARSE_MALFORMED;
			off = bpf_ntohs(fh->frag_off);
			next = fh->nexthdr;
			cur = (void *)(fh + 1);
			/* An atomic fragment (offset 0, no M bit) is a whole packet. */
			if (off & (IP6_OFFSET | IP6_MF)) {
				ip->frag = 1;
				ip->first = (off & IP6_OFFSET) == 0;
				if (!ip->first)
					break; /* nothing but payload follows */
			}
			continue;
		}
		break;
	}

	/*
	 * A non-first fragment carries only payload; otherwise still being
	 * inside the extension header chain means we gave up on it.
	 */
	if (!(ip->frag && !ip->first) &&
	    (next == NEXTHDR_HOP || next == NEXTHDR_ROUTING || next == NEXTHDR_DEST ||
	     next == NEXTHDR_FRAGMENT))
		return PARSE_OTHER;

	ip->l4 = cur;
	ip->proto = next;
	return PARSE_OK;
}

enum unprot_verdict {
	UNPROT_MISS = 0, /* source not in a remote protected prefix */
	UNPROT_DROP,
	UNPROT_PASS, /* exempted by a bypass rule */
};

/* Protocols whose first four bytes are source and destination port. */
static __always_inline int has_ports(__u8 proto)
{
	return proto == IPPROTO_TCP || proto == IPPROTO_UDP || proto == IPPROTO_SCTP ||
	       proto == IPPROTO_UDPLITE || proto == IPPROTO_DCCP;
}

static __always_inline int port_ok(__u16 lo, __u16 hi, __u16 port, int ports)
{
	if (lo == 0 && hi == 0)
		return 1;
	return ports && port >= lo && port <= hi;
}

/*
 * Does rule r match? For an opaque packet (protocol and ports unknown)
 * only the family and addresses are compared: the rule MAY match, and
 * the caller decides conservatively (see rule_certain).
 */
static __always_inline int rule_match(const struct unprot_rule *r, __u8 family, __u8 proto,
				      const __u32 *s, const __u32 *d,
				      __u16 sport, __u16 dport, int ports, int opaque)
{
	int k;

	if (r->family && r->family != family)
		return 0;
	if (!opaque && r->proto && r->proto != proto)
		return 0;
#pragma unroll
	for (k = 0; k < 4; k++) {
		if ((s[k] & r->src_mask[k]) != r->src[k])
			return 0;
		if ((d[k] & r->dst_mask[k]) != r->dst[k])
			return 0;
	}
	if (opaque)
		return 1;
	return port_ok(r->sport_lo, r->sport_hi, sport, ports) &&
	       port_ok(r->dport_lo, r->dport_hi, dport, ports);
}

/* A rule that matches whatever the protocol and ports are. */
static __always_inline int rule_certain(const struct unprot_rule *r)
{
	return r->proto == 0 && r->sport_lo == 0 && r->sport_hi == 0 &&
	       r->dport_lo == 0 && r->dport_hi == 0;
}

/*
 * Is this packet (not ESP to us) clear text that the SPD protects?
 * RFC 4301 section 5.2: an unprotected inbound packet that matches a
 * PROTECT (or DISCARD) entry is dropped; a BYPASS entry lets it pass.
 * The source lookup costs one trie lookup for non-ESP packets only; the
 * rules are walked only when it hits, i.e. only for packets that will be
 * dropped or exempted.
 */
static __always_inline int unprotected(struct ipinfo *ip, void *data_end)
{
	__u32 s[4] = {}, d[4] = {};
	__u32 *hit, tunnel, i, zero = 0;
	__u16 sport = 0, dport = 0;
	int ports = 0, nomatch_pass;
	__u8 family;
	struct unprot_last *last;
	__u64 *cnt;

	if (!(cfg.flags & FLAG_UNPROTECTED))
		return UNPROT_MISS;

	if (ip->is_v6) {
		struct ipv6hdr *h = ip->nh;
		struct lpm_key_v6 k6 = { .prefixlen = 128 };

		if ((void *)(h + 1) > data_end)
			return UNPROT_MISS;
		__builtin_memcpy(k6.addr, &h->saddr, 16);
		hit = bpf_map_lookup_elem(&unprot_v6, &k6);
		if (!hit)
			return UNPROT_MISS;
		__builtin_memcpy(s, &h->saddr, 16);
		__builtin_memcpy(d, &h->daddr, 16);
		family = 6;
	} else {
		struct iphdr *h = ip->nh;
		struct lpm_key_v4 k4 = { .prefixlen = 32 };

		if ((void *)(h + 1) > data_end)
			return UNPROT_MISS;
		__builtin_memcpy(k4.addr, &h->saddr, 4);
		hit = bpf_map_lookup_elem(&unprot_v4, &k4);
		if (!hit)
			return UNPROT_MISS;
		s[0] = h->saddr;
		d[0] = h->daddr;
		family = 4;
	}
	tunnel = *hit & UNPROT_TUNNEL_MASK;
	nomatch_pass = (*hit & UNPROT_NOMATCH_PASS) != 0;

	if (cfg.unprot_rules) {
		if (!ip->opaque && !(ip->frag && !ip->first) && has_ports(ip->proto)) {
			__be16 *p = ip->l4;

			if ((void *)(p + 2) <= data_end && (void *)(p + 2) <= ip->end) {
				sport = bpf_ntohs(p[0]);
				dport = bpf_ntohs(p[1]);
				ports = 1;
			}
		}
		for (i = 0; i < MAX_UNPROT_RULES; i++) {
			struct unprot_rule *r;
			__u32 idx = i;

			if (i >= cfg.unprot_rules)
				break;
			r = bpf_map_lookup_elem(&unprot_rules, &idx);
			if (!r)
				break;
			if (!rule_match(r, family, ip->proto, s, d, sport, dport, ports, ip->opaque))
				continue;
			/*
			 * Invariant (fail closed): an opaque packet is dropped
			 * iff SOME protocol and ports would make it a drop: a
			 * bypass rule exempts it only if it matches whatever
			 * they are, a discard rule that may match drops it.
			 */
			if (r->action == UNPROT_BYPASS) {
				if (ip->opaque && !rule_certain(r))
					continue;
				return UNPROT_PASS;
			}
			if (r->tunnel)
				tunnel = r->tunnel;
			nomatch_pass = 0;
			break;
		}
	}
	if (nomatch_pass)
		return UNPROT_MISS;

	if (tunnel >= MAX_UNPROT_TUNNELS)
		tunnel = 0;
	cnt = bpf_map_lookup_elem(&unprot_drops, &tunnel);
	if (cnt)
		*cnt += 1;
	last = bpf_map_lookup_elem(&unprot_last, &zero);
	if (last) {
		last->ns = bpf_ktime_get_ns();
		last->tunnel = tunnel;
		last->family = family;
		last->proto = ip->proto;
		__builtin_memcpy(last->src, s, 16);
		__builtin_memcpy(last->dst, d, 16);
	}
	return UNPROT_DROP;
}

/* Drop, pass as exempt, or fall back to the verdict the caller had. */
static __always_inline int unprotected_or(struct ipinfo *ip, void *data_end, __u32 reason)
{
	switch (unprotected(ip, data_end)) {
	case UNPROT_DROP:
		return account(STAT_UNPROTECTED_DROPPED, XDP_DROP);
	case UNPROT_PASS:
		return account(STAT_BYPASS_PASSED, XDP_PASS);
	}
	return account(reason, XDP_PASS);
}

/* Ciphertext-side classification of a non-fragmented packet. */
static __always_inline int classify(struct xdp_md *ctx, struct ipinfo *ip, void *data_end)
{
	int not_local = 0;

	/*
	 * ESP, NAT-T, IKE and keepalives to a local address return before
	 * the clear-text check below (they are the tunnel itself); so does
	 * everything in Plaintext mode, which never sets FLAG_UNPROTECTED.
	 */
	if (ip->proto == IPPROTO_ESP) {
		void *esp = ip->l4;
		__u32 spi;

		/* SPI + sequence number. */
		if (esp + 8 > data_end || esp + 8 > ip->end)
			return account(STAT_MALFORMED, XDP_PASS);
		if (is_local(ip)) {
			spi = bpf_ntohl(*(__be32 *)esp);
			return steer(ctx, STAT_ESP_REDIRECTED, spi, 1);
		}
		not_local = 1;
	} else if (ip->proto == IPPROTO_UDP) {
		struct udphdr *udp = ip->l4;
		__u8 *pl;
		__u32 ulen, plen, spi;

		if ((void *)(udp + 1) > data_end || (void *)(udp + 1) > ip->end)
			return account(STAT_MALFORMED, XDP_PASS);
		ulen = bpf_ntohs(udp->len);
		if (ulen < sizeof(*udp) || (void *)udp + ulen > ip->end)
			return account(STAT_MALFORMED, XDP_PASS);
		plen = ulen - sizeof(*udp);
		pl = (__u8 *)(udp + 1);

		if (udp->dest == bpf_htons(cfg.natt_port)) {
			if (!is_local(ip)) {
				not_local = 1;
				goto plaintext;
			}
			if (plen == 1) {
				if ((void *)(pl + 1) > data_end)
					return account(STAT_MALFORMED, XDP_PASS);
				if (pl[0] == 0xff)
					return account(STAT_KEEPALIVE_PASSED, XDP_PASS);
				return account(STAT_MALFORMED, XDP_PASS);
			}
			if (plen < 4)
				return account(STAT_MALFORMED, XDP_PASS);
			if ((void *)(pl + 4) > data_end)
				return account(STAT_MALFORMED, XDP_PASS);
			spi = ((__u32)pl[0] << 24) | ((__u32)pl[1] << 16) |
			      ((__u32)pl[2] << 8) | (__u32)pl[3];
			if (spi == 0)
				return account(STAT_IKE_PASSED, XDP_PASS);
			if (plen < 8)
				return account(STAT_MALFORMED, XDP_PASS);
			return steer(ctx, STAT_NATT_REDIRECTED, spi, 1);
		}
		if (udp->dest == bpf_htons(IKE_PORT)) {
			if (is_local(ip))
				return account(STAT_IKE_PASSED, XDP_PASS);
			not_local = 1;
		}
	}

plaintext:
	if (is_protected(ip))
		return steer(ctx, STAT_PLAINTEXT_REDIRECTED, ip->hashkey, 1);
	if (not_local)
		return unprotected_or(ip, data_end, STAT_NOT_LOCAL);
	return unprotected_or(ip, data_end, STAT_PASSED_OTHER);
}

/*
 * Is this outer fragment (to a local address) our tunnel traffic? ESP
 * always; UDP only when the first fragment shows the NAT-T or IKE port.
 * A non-first UDP fragment cannot be told apart: *unknown is set.
 */
static __always_inline int frag_tunnel(struct ipinfo *ip, void *data_end, int *unknown)
{
	*unknown = 0;
	if (ip->proto == IPPROTO_ESP)
		return is_local(ip);
	if (ip->proto != IPPROTO_UDP || !is_local(ip))
		return 0;
	if (!ip->first) {
		*unknown = 1;
		return 0;
	}
	struct udphdr *udp = ip->l4;

	if ((void *)(udp + 1) > data_end || (void *)(udp + 1) > ip->end)
		return 0; /* no port to show: not known to be ours */
	return udp->dest == bpf_htons(cfg.natt_port) || udp->dest == bpf_htons(IKE_PORT);
}

/*
 * Outer fragments. Invariant (RFC 4301 section 5.2, fail closed): a
 * fragment from a remote protected source skips the clear-text check
 * only if it is known tunnel traffic (ESP, or a first fragment of UDP to
 * the NAT-T/IKE port, to a local address), or it is a non-first UDP
 * fragment to a local address steered to the engine for reassembly
 * (FLAG_STEER_FRAGMENTS), which classifies the whole datagram. Without
 * reassembly steering such a non-first UDP fragment gets the check and
 * is dropped when its source is protected.
 */
static __always_inline int handle_fragment(struct xdp_md *ctx, struct ipinfo *ip, void *data_end)
{
	int candidate = 0, unknown, tunnel;

	tunnel = frag_tunnel(ip, data_end, &unknown);
	if (cfg.flags & FLAG_STEER_FRAGMENTS) {
		if (tunnel || unknown)
			candidate = 1;
		else if (is_protected(ip))
			candidate = 1;
	}
	if (!candidate) {
		if (tunnel)
			return account(STAT_FRAGMENT_PASSED, XDP_PASS);
		return unprotected_or(ip, data_end, STAT_FRAGMENT_PASSED);
	}
	/*
	 * All fragments of a datagram must meet in one socket for
	 * reassembly, and only the first one has an SPI: always use the
	 * queue's first socket.
	 */
	return steer(ctx, STAT_FRAGMENT_REDIRECTED, 0, 0);
}

/*
 * A packet whose header chain was not fully parsed (PARSE_OTHER, or
 * PARSE_MALFORMED after the addresses were read): fail closed. To a
 * protected prefix it goes to the engine, which encrypts it or drops it
 * by the SPD; from a remote protected prefix it is dropped unless a
 * bypass rule certainly exempts it; otherwise it passes under reason.
 */
static __always_inline int fail_closed(struct xdp_md *ctx, struct ipinfo *ip, void *data_end, __u32 reason)
{
	ip->opaque = 1;
	ip->proto = 0;
	/* Packet pointers for the verifier; nothing after nh is trusted. */
	ip->l4 = ip->nh;
	ip->end = ip->nh;
	ip->frag = 0;
	ip->first = 1;
	if (is_protected(ip))
		return steer(ctx, STAT_PLAINTEXT_REDIRECTED, ip->hashkey, 1);
	return unprotected_or(ip, data_end, reason);
}

SEC("xdp")
int xdp_steer(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	struct ethhdr *eth = data;
	struct ipinfo ip = {};
	void *nh;
	__u16 proto;
	int i, res;

	if ((void *)(eth + 1) > data_end)
		return account(STAT_MALFORMED, XDP_PASS);
	proto = eth->h_proto;
	nh = eth + 1;

#pragma unroll
	for (i = 0; i < MAX_VLAN_TAGS; i++) {
		struct vlan_tag *tag = nh;

		if (proto != bpf_htons(ETH_P_8021Q) && proto != bpf_htons(ETH_P_8021AD))
			break;
		if ((void *)(tag + 1) > data_end)
			return account(STAT_MALFORMED, XDP_PASS);
		proto = tag->proto;
		nh = tag + 1;
	}
	/*
	 * Deeper tag stacks are not parsed. A gateway drops them (fail
	 * closed: the kernel may strip the tags and route the inner packet,
	 * and its addresses are unknown here); other programs pass them.
	 */
	if (proto == bpf_htons(ETH_P_8021Q) || proto == bpf_htons(ETH_P_8021AD)) {
		if (cfg.flags & (FLAG_PLAINTEXT | FLAG_UNPROTECTED))
			return account(STAT_FAIL_CLOSED_DROPPED, XDP_DROP);
		return account(STAT_PASSED_NON_IP, XDP_PASS);
	}

	if (proto == bpf_htons(ETH_P_IP))
		res = parse_ipv4(nh, data_end, &ip);
	else if (proto == bpf_htons(ETH_P_IPV6))
		res = parse_ipv6(nh, data_end, &ip);
	else
		return account(STAT_PASSED_NON_IP, XDP_PASS);

	if (res != PARSE_OK) {
		__u32 reason = res == PARSE_MALFORMED ? STAT_MALFORMED : STAT_PASSED_OTHER;

		/*
		 * No addresses (truncated IP header, wrong version): passed;
		 * the kernel's ip_rcv/ipv6_rcv drop such packets themselves.
		 */
		if (!ip.nh)
			return account(reason, XDP_PASS);
		return fail_closed(ctx, &ip, data_end, reason);
	}

	if (ip.frag)
		return handle_fragment(ctx, &ip, data_end);
	return classify(ctx, &ip, data_end);
}

char LICENSE[] SEC("license") = "Dual MIT/GPL";

/*
 * ABI shared between steer.c and the Go loader in this directory.
 *
 * Everything here is mirrored in Go: the enums and struct steer_config are
 * emitted into the object's BTF and turned into Go declarations by bpf2go
 * (-type flags in gen.go), and abi_test.go checks the hand-written Go names
 * against them.
 */
#ifndef ESPXDP_STEER_H
#define ESPXDP_STEER_H

#include <linux/types.h>

/*
 * Why a packet left the program. Every packet increments exactly one of
 * these per-CPU counters, so their sum is the number of packets seen.
 */
enum stat_reason {
	STAT_ESP_REDIRECTED = 0,      /* raw ESP (IP proto 50) -> AF_XDP */
	STAT_NATT_REDIRECTED = 1,     /* ESP in UDP (RFC 3948) -> AF_XDP */
	STAT_PLAINTEXT_REDIRECTED = 2, /* plaintext to a protected prefix -> AF_XDP */
	STAT_PASSED_NON_IP = 3,       /* not IPv4/IPv6 (ARP, LLDP, ...) */
	STAT_PASSED_OTHER = 4,        /* IP, but nothing for us (TCP, ICMP, other UDP) */
	STAT_IKE_PASSED = 5,          /* UDP 500, or NAT-T port with non-ESP marker */
	STAT_KEEPALIVE_PASSED = 6,    /* NAT-T port, 1-byte 0xFF payload */
	STAT_FRAGMENT_PASSED = 7,     /* outer IP fragment left to the kernel */
	STAT_FRAGMENT_REDIRECTED = 8, /* outer IP fragment -> AF_XDP (reassembly) */
	STAT_MALFORMED = 9,           /* truncated or inconsistent headers */
	STAT_NOT_LOCAL = 10,          /* ESP/NAT-T/IKE not addressed to a local address */
	STAT_REDIRECT_NO_SOCKET = 11, /* wanted AF_XDP, but the XSKMAP slot was empty */
	STAT_UNPROTECTED_DROPPED = 12, /* clear text from a remote protected prefix: XDP_DROP */
	STAT_BYPASS_PASSED = 13,      /* ... exempted by a bypass rule, passed */
	STAT_FAIL_CLOSED_DROPPED = 14, /* gateway mode, unparsable (3+ VLAN tags): XDP_DROP */
	STAT_MAX = 15,
};

/* Bits of steer_config.flags. */
enum steer_flag {
	FLAG_LOCAL_FILTER = 1 << 0,   /* ESP/NAT-T/IKE must be to an address in local_addrs */
	FLAG_STEER_FRAGMENTS = 1 << 1, /* steer candidate outer fragments to AF_XDP */
	FLAG_SPI_HASH = 1 << 2,       /* spread over sockets_per_queue sockets by hash */
	FLAG_PLAINTEXT = 1 << 3,      /* steer plaintext to protected prefixes */
	FLAG_UNPROTECTED = 1 << 4,    /* drop clear text from remote protected prefixes */
	FLAG_SPREAD = 1 << 5,         /* deal over sockets_per_queue sockets in chunks */
};

/* Capacities of the unprotected-traffic maps. */
#define MAX_UNPROT_RULES 64
#define MAX_UNPROT_TUNNELS 256

/*
 * Value of the unprot_v4/v6 tries: the tunnel counter index in the low
 * 16 bits, and this bit for prefixes that come from SPD rules only (a
 * packet from there that matches no rule is not protected and passes;
 * from any other prefix it is dropped).
 */
#define UNPROT_NOMATCH_PASS 0x80000000u
#define UNPROT_TUNNEL_MASK 0xffffu

/* unprot_rule.action */
enum unprot_action {
	UNPROT_DISCARD = 0, /* protect or discard policy: the packet is dropped */
	UNPROT_BYPASS = 1,  /* bypass policy: the packet passes */
};

/*
 * Load-time configuration. It lives in .rodata (a "volatile const"
 * global), is written by the Go loader before the program is loaded and
 * is frozen afterwards, so the verifier sees constants and prunes the
 * branches of disabled features.
 */
struct steer_config {
	__u16 natt_port;          /* host byte order, default 4500 */
	__u16 spread_shift;       /* FLAG_SPREAD: 2^spread_shift packets per socket in turn */
	__u32 flags;              /* enum steer_flag bits */
	__u32 sockets_per_queue;  /* 1..64 */
	__u32 unprot_rules;       /* entries of unprot_rules in use, 0..MAX_UNPROT_RULES */
};

/*
 * Key of the local_addrs hash map: family 4 with the IPv4 address in
 * addr[0..3] and zeros after it, or family 6 with the IPv6 address.
 */
struct addr_key {
	__u32 family;
	__u8 addr[16];
};

/* Keys of the LPM tries (prefix length in host order, then the address). */
struct lpm_key_v4 {
	__u32 prefixlen;
	__u8 addr[4];
};

struct lpm_key_v6 {
	__u32 prefixlen;
	__u8 addr[16];
};

/*
 * One inbound rule for clear text from a remote protected prefix (FLAG_UNPROTECTED):
 * an SPD entry read in the inbound direction (its selector with source
 * and destination swapped). Rules are tried in order, first match wins;
 * a packet that matches none is dropped. Addresses and masks are in
 * network order, as four 32-bit words (IPv4 in word 0, the rest zero);
 * family 0 matches both families (all masks zero). Port ranges are in
 * host order and inclusive; lo = hi = 0 matches any port and packets
 * without ports, any other range only TCP, UDP and SCTP packets that
 * carry ports (not non-first fragments).
 */
struct unprot_rule {
	__u8 family;   /* 0 (any), 4 or 6 */
	__u8 proto;    /* 0: any */
	__u8 action;   /* enum unprot_action */
	__u8 pad;
	__u32 tunnel;  /* counter index, 0..MAX_UNPROT_TUNNELS-1 */
	__u16 sport_lo, sport_hi, dport_lo, dport_hi;
	__u32 src[4], src_mask[4], dst[4], dst_mask[4];
};

/*
 * The last clear-text packet dropped on a CPU (for the daemon's
 * rate-limited log line), written only on that drop path.
 */
struct unprot_last {
	__u64 ns;      /* bpf_ktime_get_ns() of the drop */
	__u32 tunnel;
	__u8 family;
	__u8 proto;
	__u16 pad;
	__u8 src[16];
	__u8 dst[16];
};

#endif

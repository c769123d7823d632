// Package ike is an IKEv2 (RFC 7296) implementation for the espxdp data
// path: it negotiates ESP child SAs with a pre-shared key and hands
// their keys over as sa.Config pairs, ready for sa.New and
// SAD.AddChild. It is importable on its own and has been tested against
// strongSwan 5.9 on the wire.
//
// # Implemented
//
//   - Message codec (RFC 7296 §3): header, generic payload chain, SA
//     (proposals, transforms, the Key Length attribute), KE, Ni/Nr,
//     IDi/IDr, AUTH, TSi/TSr (IPv4 and IPv6 ranges), N, D and SK; other
//     payloads (V, CERTREQ, CP, ...) are kept as Raw and ignored, and an
//     unknown critical payload is refused. Every length is checked
//     against its enclosing structure; malformed input gives an error
//     wrapping one of the sentinel errors (ErrTruncated, ErrBadLength,
//     ErrVersion, ErrCritical, ErrMalformed, ...) and never panics
//     (FuzzParse, FuzzOpenSK, FuzzEndpoint).
//   - Crypto: PRF HMAC-SHA2-256/384/512 (RFC 4868), prf+ (§2.13),
//     SKEYSEED and SK_d/ai/ar/ei/er/pi/pr (§2.14), child KEYMAT (§2.17);
//     the SK payload with AES-GCM with a 16-byte ICV (RFC 5282; the
//     4-byte salt comes from the keying material) or AES-CBC with
//     HMAC-SHA2-256-128/384-192/512-256 (RFC 4868); Diffie-Hellman groups
//     31 (Curve25519, RFC 8031), 19 and 20 (ECP, RFC 5903) with
//     crypto/ecdh, and 14 (MODP-2048, RFC 3526) with math/big and the
//     1 < y < p-1 public-value check; PSK authentication (§2.15).
//   - Initiator and responder for IKE_SA_INIT and IKE_AUTH with one
//     tunnel-mode ESP child SA: proposal selection (the responder takes
//     the initiator's first acceptable proposal; INVALID_KE_PAYLOAD
//     makes the initiator retry with the requested group), traffic
//     selector narrowing (the responder intersects the initiator's
//     selectors with its own, TS_UNACCEPTABLE when nothing is left; the
//     initiator refuses selectors wider than it proposed), ESN
//     negotiation, NAT detection (NAT_DETECTION_SOURCE_IP and
//     NAT_DETECTION_DESTINATION_IP; the initiator moves to the NAT-T
//     port, with the non-ESP marker, when either side is behind a NAT,
//     and the child SAs then use ESP-in-UDP), message IDs with a window
//     of one, retransmission with exponential back-off (Config.Retransmit
//     doubling, Config.Retries times) and answering retransmitted
//     requests from a cached response, INFORMATIONAL exchanges: delete
//     of the IKE SA or the child SA (either side) and liveness checks
//     (IKESA.Ping, an empty INFORMATIONAL).
//   - Child SAs: the inbound SPI comes from SAD.AllocSPI (Config.SAD),
//     both directions share a fresh sa.ChildID (above ChildIDBase: the
//     ids below it are the embedder's own), the negotiated traffic
//     selectors become the inbound SA's Selectors (source: the peer's
//     side) and the outbound SA's, ESP transforms are named as in
//     esp.ParseTransform (aes128gcm16 etc., key with the 4-byte salt
//     appended, RFC 4106 §8.1; aesNNN-sha256/384/512). With a NAT the
//     SAs are UDPEncap with the NAT-T ports and the inbound SA has
//     FloatRemote (RFC 7296 §2.23).
//   - Child SA rekeying with CREATE_CHILD_SA and REKEY_SA, either side
//     (IKESA.RekeyChild; a peer's rekey is answered), make-before-break:
//     the successor is reported to OnChild before the old child is
//     deleted and reported to OnChildDown. PFS (RFC 7296 §2.17): an ESP
//     transform may name DH groups the strongSwan way
//     ("aes128gcm16-x25519", "aes256-sha256-modp2048"); the rekey then
//     carries KE payloads (INVALID_KE_PAYLOAD answered by a retry with
//     the group asked for) and KEYMAT = prf+(SK_d, g^ir | Ni | Nr); a
//     side configured with PFS refuses a rekey without it; the child of
//     IKE_AUTH never has a DH transform (§1.2: stripped). An IKE SA
//     holds at most 8 child SAs: a peer's rekey beyond that (rekeying
//     without deleting the replaced ones) gets TEMPORARY_FAILURE.
//   - Additional child SAs (RFC 7296 §1.3.1: CREATE_CHILD_SA without
//     REKEY_SA), either side: IKESA.CreateChild proposes the configured
//     selectors and ESP proposal (with a KE when it names a DH group);
//     the responder answers like IKE_AUTH (selectors narrowed, PFS
//     required when configured, as for rekeys) and reports the child
//     to OnChild. strongSwan recreates a child this way after a hard
//     expiry or swanctl --initiate --child on an existing IKE SA. They
//     count against the 8 child SAs per IKE SA: beyond,
//     NO_ADDITIONAL_SAS. With several children, IKESA.RekeyChildSA
//     rekeys a given one (RekeyChild the newest) and IKESA.DeleteChild
//     deletes one, the IKE SA staying up.
//   - IKE SA rekeying (RFC 7296 §1.3.2, §2.18), either side
//     (IKESA.RekeyIKE; the peer's is answered; Config.IKELifetime starts
//     it, default 4h, up to 10 % earlier at random): CREATE_CHILD_SA with
//     an IKE proposal, the new SPI, nonces and KE; SKEYSEED =
//     prf(SK_d (old), g^ir (new) | Ni | Nr) with the old PRF, the keys
//     with the new one, message IDs from 0; the children move to the
//     new SA (ChildSA.Owner, IKESA.Successor; not reported down), which
//     goes to OnIKEUp, and the old one is deleted by the rekey's
//     initiator (OnIKEDown with ErrRekeyed; a replaced or redundant SA
//     the peer does not delete is removed after twice the
//     retransmission schedule; a peer's rekey of an SA with 4 replaced
//     predecessors still alive gets TEMPORARY_FAILURE). While an IKE SA
//     rekey is under way, a peer's child rekey is refused with
//     TEMPORARY_FAILURE (§2.25), and RekeyChild/RekeyIKE retry such
//     refusals a few times.
//   - Rekey collisions (RFC 7296 §2.8.1, §2.8.2): simultaneous child
//     rekeys, and simultaneous IKE SA rekeys, by both sides: each side
//     answers the other's request, then the exchange holding the lowest
//     of the four nonces made a redundant SA that its initiator deletes;
//     the other rekey's initiator deletes the old SA; no child is lost,
//     OnChild/OnChildDown and OnIKEUp/OnIKEDown stay paired
//     (TestRekeyProperty).
//   - Dead peer detection (Config.DPDDelay): an empty INFORMATIONAL
//     after DPDDelay without anything from the peer (on the IKE SA and,
//     with Config.InboundActivity, on its children); an exchange that
//     times out (DPD or any other) kills the IKE SA: Config.DPDAction
//     "clear" (OnChildDown, then OnIKEDown with ErrTimeout) or "restart"
//     (clear, then Initiate again to the same remote for SAs made by
//     Initiate, until it succeeds or the Endpoint is closed).
//   - Peer address changes (RFC 7296 §2.23): with a NAT detected (or
//     on the NAT-T port), an authenticated request or response from
//     another address or port moves the IKE SA there (logged at Info,
//     Config.OnRemoteChanged); the embedder updates its child SAs (the
//     inbound ones have FloatRemote).
//   - Denial-of-service bounds (RFC 7296 §2.6): from
//     Config.CookieThreshold half-open IKE SAs (default 64) on, the
//     responder answers an IKE_SA_INIT that does not carry a valid
//     cookie as its first payload with a stateless COOKIE notify
//     (version byte ‖ first 64 bits of SHA-256(Ni | IPi | SPIi |
//     secret), the secret rotating every minute, the previous one still
//     accepted), before any DH computation and without keeping state;
//     half-open SAs are bounded apart (Config.MaxHalfOpen) from the
//     others (Config.MaxIKESAs), both checked before the DH, beyond
//     them TEMPORARY_FAILURE; a source address (an IPv6 source: its
//     /64) that returned a valid cookie holds at most Config.MaxHalfOpenPerSource half-open SAs
//     made with a cookie (default 5, strongSwan's block_threshold;
//     beyond, its IKE_SA_INIT is dropped and counted in
//     Stats.SourceBlocked), and SAs made without a cookie never count,
//     so spoofing a victim's address cannot block it; an IKE_SA_INIT
//     request over 8 KiB is refused (a half-open SA keeps its
//     request). Config.Retries and Config.Retransmit are bounded
//     (MaxRetries, MaxRetransmit) so the back-off cannot overflow. The initiator answers
//     a COOKIE by retrying with it (same SPIi, Ni and KE), and an
//     INVALID_KE_PAYLOAD by retrying with the group asked for, each at
//     most three times.
//   - Traffic selector bounds: at most MaxTS selectors per side of a
//     child SA, splitting into at most MaxTSPrefixes address prefixes
//     in all, so an SA carries at most MaxTSPrefixes² sa.Selectors. The
//     responder narrows further to keep them (the first selectors, a
//     range cut at the end of the budget), the initiator refuses a
//     response beyond them with ErrTSUnacceptable (so configure at
//     most MaxTS LocalTS and RemoteTS each).
//
// # Not implemented
//
// Certificates and signature authentication, EAP, child SA lifetimes (the embedder calls
// RekeyChild on the SAs' soft-expiry events, or deletes and initiates
// again; the peer's lifetimes drive its own rekeys), MOBIKE, IKE
// fragmentation (RFC 7383), configuration payloads, transport mode,
// IPComp, AES-XCBC and other PRFs, a window size above one (our
// requests queue behind the pending one), multiple peers with
// different configurations on one Endpoint, redirect, and collisions
// beyond the two-party cases above (e.g. a third rekey crossing a
// collision is refused with TEMPORARY_FAILURE and retried). Traffic
// selectors must be valid IPv4 or IPv6 ranges (no FC or security
// labels).
//
// # Using it
//
// An Endpoint owns a UDP socket for port 500 and, optionally, one for
// port 4500 (NAT-T): Serve reads both; or an embedder that reads the
// sockets itself (to demultiplex ESP-in-UDP on 4500) passes datagrams
// to HandlePacket and gets the non-IKE ones back through Config.OnESP.
// Bind the sockets to specific addresses: the local address is used for
// NAT detection and as the child SAs' Local. Initiate negotiates with a
// peer and returns the IKESA; a responder accepts any initiator that
// proves the PSK (and presents Config.RemoteID, when set). Child SAs
// are reported through Config.OnChild and Config.OnChildDown, called
// without the Endpoint's lock held.
//
// Status: Endpoint.IKESAs and IKESA.Info return snapshots (SPIs,
// state, addresses, identities, the chosen proposal, children) without
// key material; Config.OnIKEUp and Config.OnIKEDown report IKE SAs
// coming and going (OnIKEDown after OnChildDown of their children).
//
// Logs (Config.Logger) never contain key material: SPIs, addresses,
// identities and algorithm names only. A failed authentication is
// logged at Warn level on both sides ("authentication failed (wrong PSK
// or identity)") and counted in Stats.AuthFailed.
package ike

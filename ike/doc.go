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
//     both directions share a fresh sa.ChildID, the negotiated traffic
//     selectors become the inbound SA's Selectors (source: the peer's
//     side) and the outbound SA's, ESP transforms are named as in
//     esp.ParseTransform (aes128gcm16 etc., key with the 4-byte salt
//     appended, RFC 4106 §8.1; aesNNN-sha256/384/512). With a NAT the
//     SAs are UDPEncap with the NAT-T ports and the inbound SA has
//     FloatRemote (RFC 7296 §2.23).
//   - Child SA rekeying with CREATE_CHILD_SA and REKEY_SA, either side
//     (IKESA.RekeyChild; a peer's rekey is answered), make-before-break:
//     the successor is reported to OnChild before the old child is
//     deleted and reported to OnChildDown. No PFS (a KE payload is
//     refused with NO_PROPOSAL_CHOSEN).
//   - Denial-of-service bounds (RFC 7296 §2.6): from
//     Config.CookieThreshold half-open IKE SAs (default 64) on, the
//     responder answers an IKE_SA_INIT that does not carry a valid
//     cookie as its first payload with a stateless COOKIE notify
//     (version byte ‖ first 64 bits of SHA-256(Ni | IPi | SPIi |
//     secret), the secret rotating every minute, the previous one still
//     accepted), before any DH computation and without keeping state;
//     half-open SAs are bounded apart (Config.MaxHalfOpen) from the
//     others (Config.MaxIKESAs), both checked before the DH, beyond
//     them TEMPORARY_FAILURE. The initiator answers a COOKIE by
//     retrying with it (same SPIi, Ni and KE), at most three times.
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
// Certificates and signature authentication, EAP, IKE SA rekeying and
// additional child SAs (such CREATE_CHILD_SA requests are answered with
// NO_ADDITIONAL_SAS), simultaneous rekeying by both sides (RFC 7296
// §2.8.1), lifetimes (the embedder calls RekeyChild on the SAs'
// soft-expiry events, or deletes and initiates again; the peer's
// lifetimes drive its own rekeys), MOBIKE, IKE
// fragmentation (RFC 7383), configuration payloads, transport mode,
// IPComp, PFS in child SAs, AES-XCBC and other PRFs, a window size
// above one, multiple peers with different configurations on one
// Endpoint, and redirect. Traffic selectors must be valid IPv4 or IPv6
// ranges (no FC or security labels).
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

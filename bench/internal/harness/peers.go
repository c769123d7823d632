package harness

// The peers suite (issue #16 item 4): IKEv2-negotiated ESP between two
// gateways on the wg suite's four namespaces, strongSwan's charon with
// kernel-libipsec and espxdp (an ike.Endpoint and an xdp.Engine) in
// each combination; one TCP stream and ping latency.

// KindPeers is the Kind of the peers suite's results.
const KindPeers = "peers"

// PeersTransform is the ESP transform the peers negotiate.
const PeersTransform = "aes128gcm16"

// Implementations of a peers gateway (the halves of Result.Impl, which
// is "GWA-GWB").
const (
	PeerStrongSwan = "strongswan"
	PeerESPXDP     = "espxdp"
)

// PeersRows are the peers suite's pairings, gwA's implementation first
// (gwA initiates).
var PeersRows = [][2]string{
	{PeerStrongSwan, PeerStrongSwan},
	{PeerStrongSwan, PeerESPXDP},
	{PeerESPXDP, PeerESPXDP},
}

// PeersInnerMTU is the MTU of the hosts' links in the peers suite:
// that of strongSwan's kernel-libipsec TUN device, which charon fixes at
// 1400 (it reads packets into buffers of that size; a larger MTU set
// from outside truncates packets).
const PeersInnerMTU = 1400

// peersPings is the number of echo requests of the latency measurement.
const peersPings = 20

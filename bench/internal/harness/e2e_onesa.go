package harness

// KindOneSA is the kind of the e2e suite's one-SA rows: one SA through
// an engine of 1 or 2 workers on ONE veth queue (as RSS delivers one ESP
// flow), in each concurrency mode, with the XDP program's steering
// (xdp.SteerSpread for Shared, xdp.SteerSPI otherwise); and TCP goodput
// through one SA with 2 workers in the wg suite's four namespaces.
const KindOneSA = "e2e-one-sa"

// SuiteOneSA is the suite of the one-SA rows (-suite e2e-one-sa): rows of
// the e2e topology (Result.Suite "e2e"), run on request beside the e2e
// suite's own rows, which take long enough already.
const SuiteOneSA = "e2e-one-sa"

// Traffic of the one-SA rows: the overload throughput ("udp"), the
// paced in-order stream that measures reordering and replay drops
// ("stream"), and a TCP transfer ("tcp").
const (
	OneSAUDP    = "udp"
	OneSAStream = "stream"
	OneSATCP    = "tcp"
)

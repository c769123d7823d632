package xdp

// jumboMeta marks an sa.Packet.Meta (and the Desc built from it) as the
// index of a worker's jumbo buffer (EngineConfig.MultiBuffer) rather
// than a UMEM frame address (UMEM addresses are far below 2^63).
const jumboMeta = uint64(1) << 63

// isJumbo reports whether addr (a packet's Meta) is a jumbo buffer's,
// which is not freed to the UMEM.
func isJumbo(addr uint64) bool { return addr&jumboMeta != 0 }

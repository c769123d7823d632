package xdp

// TUNStats are the counters of a TUN device.
type TUNStats struct {
	// Offload reports a device opened with OpenTUNOffload.
	Offload bool
	// SplitSuperPackets counts reads that returned a GSO super-packet of
	// more than one segment; SplitSegments the packets they split into.
	SplitSuperPackets, SplitSegments uint64
	// CoalescedSuperPackets counts GRO super-packets written (each one
	// write(2) carrying several packets handed to Deliver);
	// CoalescedSegments the packets they carried.
	CoalescedSuperPackets, CoalescedSegments uint64
	// ReadDrops counts reads whose packet could not be used (a malformed
	// or unsupported virtio-net header, a super-packet of more segments
	// than the read buffers hold, a packet longer than TUNBufSize).
	ReadDrops uint64
	// OversizeDrops counts packets that filled a whole TUNBufSize buffer
	// (see TUN.OversizeDrops).
	OversizeDrops uint64
	// WriteErrors counts Deliver batches that the kernel refused at
	// least in part.
	WriteErrors uint64
}

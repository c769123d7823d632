package xdp

// TUNStats are the counters of a TUN device.
type TUNStats struct {
	// Offload reports a device opened with OpenTUNOffload.
	Offload bool `json:"offload"`
	// SplitSuperPackets counts reads that returned a GSO super-packet of
	// more than one segment; SplitSegments the packets they split into.
	SplitSuperPackets uint64 `json:"split_super_packets"`
	SplitSegments     uint64 `json:"split_segments"`
	// CoalescedSuperPackets counts GRO super-packets written (each one
	// write(2) carrying several packets handed to Deliver);
	// CoalescedSegments the packets they carried.
	CoalescedSuperPackets uint64 `json:"coalesced_super_packets"`
	CoalescedSegments     uint64 `json:"coalesced_segments"`
	// ReadDrops counts reads whose packet could not be used, wholly or
	// in part (a malformed or unsupported virtio-net header, a
	// super-packet of more segments than the read buffers hold, a packet
	// longer than TUNBufSize; with a TUNPort: no free UMEM frame for the
	// rest of a super-packet).
	ReadDrops uint64 `json:"read_drops"`
	// OversizeDrops counts packets that filled a whole TUNBufSize buffer
	// (see TUN.OversizeDrops); with a TUNPort, super-packets whose
	// segments do not fit a UMEM frame.
	OversizeDrops uint64 `json:"oversize_drops"`
	// WriteErrors counts Deliver batches that the kernel refused at
	// least in part.
	WriteErrors uint64 `json:"write_errors"`
	// Reads and Writes count the read(2) and write(2) (TUNPort:
	// writev(2)) system calls made on the device that moved a packet
	// (ReadBatch, Deliver, TUNPort).
	Reads  uint64 `json:"reads"`
	Writes uint64 `json:"writes"`
}

// Add adds o's counters to s (to sum a multi-queue device's queues).
func (s *TUNStats) Add(o TUNStats) {
	s.Offload = s.Offload || o.Offload
	s.SplitSuperPackets += o.SplitSuperPackets
	s.SplitSegments += o.SplitSegments
	s.CoalescedSuperPackets += o.CoalescedSuperPackets
	s.CoalescedSegments += o.CoalescedSegments
	s.ReadDrops += o.ReadDrops
	s.OversizeDrops += o.OversizeDrops
	s.WriteErrors += o.WriteErrors
	s.Reads += o.Reads
	s.Writes += o.Writes
}

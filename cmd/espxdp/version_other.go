//go:build !linux

package main

// probeKernel: AF_XDP is Linux only.
func probeKernel() kernelInfo {
	no := "no (not Linux)"
	return kernelInfo{Release: "n/a", AFXDP: no, MultiBuffer: no, BTF: no}
}

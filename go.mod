module github.com/espxdp/espxdp

go 1.26.0

require (
	github.com/cilium/ebpf v0.22.0
	github.com/google/gopacket v1.1.19
	golang.org/x/crypto v0.58.0
	golang.org/x/sys v0.49.0
	gopkg.in/yaml.v3 v3.0.1
)

require golang.org/x/net v0.60.0 // indirect

tool github.com/cilium/ebpf/cmd/bpf2go

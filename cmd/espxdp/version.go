package main

import (
	"encoding/json"
	"fmt"
	"io"
	"runtime"
	"runtime/debug"
)

// buildInfo is what `espxdp version` reports.
type buildInfo struct {
	Version   string     `json:"version"`
	Commit    string     `json:"commit,omitempty"`
	Modified  bool       `json:"modified,omitempty"`
	GoVersion string     `json:"go_version"`
	OSArch    string     `json:"os_arch"`
	Kernel    kernelInfo `json:"kernel"`
}

// kernelInfo is the running kernel and the features espxdp uses.
type kernelInfo struct {
	Release string `json:"release"`
	// AFXDP: "yes", "yes (…)" or "no (…)": socket(AF_XDP) works.
	AFXDP string `json:"af_xdp"`
	// MultiBuffer: XDP multi-buffer for AF_XDP (kernel 6.6 or later).
	MultiBuffer string `json:"xdp_multi_buffer"`
	// BTF: /sys/kernel/btf/vmlinux exists.
	BTF string `json:"btf"`
}

// linkVersion and linkCommit, if set with
// -ldflags "-X main.linkVersion=v1.2.3 -X main.linkCommit=abc123", win
// over the build information (a build from a tarball, or with
// -buildvcs=false, has no VCS stamp).
var linkVersion, linkCommit string

// readBuildInfo fills the build part of buildInfo from the binary.
func readBuildInfo() (b buildInfo) {
	b = buildInfo{Version: "(devel)", GoVersion: runtime.Version(), OSArch: runtime.GOOS + "/" + runtime.GOARCH}
	defer func() {
		if linkVersion != "" {
			b.Version = linkVersion
		}
		if linkCommit != "" {
			b.Commit, b.Modified = linkCommit, false
		}
	}()
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return b
	}
	if v := bi.Main.Version; v != "" {
		b.Version = v
	}
	for _, s := range bi.Settings {
		switch s.Key {
		case "vcs.revision":
			b.Commit = s.Value
		case "vcs.modified":
			b.Modified = s.Value == "true"
		}
	}
	return b
}

// cmdVersion is `espxdp version` (and --version).
func cmdVersion(args []string, stdout, stderr io.Writer) error {
	fs := newFlags("version", stderr)
	asJSON := fs.Bool("json", false, "print JSON")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	b := readBuildInfo()
	b.Kernel = probeKernel()
	if *asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(b)
	}
	commit := b.Commit
	if commit == "" {
		commit = "unknown (built without VCS information)"
	} else if b.Modified {
		commit += " (modified)"
	}
	fmt.Fprintf(stdout, "espxdp %s\ncommit:           %s\ngo:               %s %s\nkernel:           %s\n"+
		"AF_XDP:           %s\nXDP multi-buffer: %s\nBTF:              %s\n",
		b.Version, commit, b.GoVersion, b.OSArch, b.Kernel.Release, b.Kernel.AFXDP, b.Kernel.MultiBuffer, b.Kernel.BTF)
	return nil
}

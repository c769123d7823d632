package harness

import (
	"bufio"
	"os"
	"os/exec"
	"runtime"
	"runtime/debug"
	"slices"
	"strings"
	"time"
)

// Machine describes where the results were measured.
type Machine struct {
	CPU        string   `json:"cpu"`
	Flags      []string `json:"flags"` // the crypto-relevant CPU flags present
	Cores      int      `json:"cores"` // runtime.NumCPU
	Kernel     string   `json:"kernel"`
	GoVersion  string   `json:"go_version"`
	GOMAXPROCS int      `json:"gomaxprocs"`
	GOARCH     string   `json:"goarch"`
	Date       string   `json:"date"` // RFC 3339, UTC
	Commit     string   `json:"commit"`
}

// cryptoFlags are the /proc/cpuinfo flags that matter for ESP crypto.
var cryptoFlags = []string{"aes", "vaes", "pclmulqdq", "vpclmulqdq", "avx", "avx2", "avx512f", "sha_ni", "ssse3", "sse4_1", "bmi2", "adx"}

// DescribeMachine collects the machine description.
func DescribeMachine() Machine {
	m := Machine{
		Cores:      runtime.NumCPU(),
		GoVersion:  runtime.Version(),
		GOMAXPROCS: runtime.GOMAXPROCS(0),
		GOARCH:     runtime.GOARCH,
		Date:       time.Now().UTC().Format(time.RFC3339),
		CPU:        "unknown",
		Kernel:     "unknown",
		Commit:     "unknown",
		Flags:      []string{},
	}
	if f, err := os.Open("/proc/cpuinfo"); err == nil {
		m.CPU, m.Flags = parseCPUInfo(bufio.NewScanner(f))
		f.Close()
	}
	// uname -sr, read from /proc so that this builds everywhere.
	ost, err1 := os.ReadFile("/proc/sys/kernel/ostype")
	rel, err2 := os.ReadFile("/proc/sys/kernel/osrelease")
	if err1 == nil && err2 == nil {
		m.Kernel = strings.TrimSpace(string(ost)) + " " + strings.TrimSpace(string(rel))
	}
	m.Commit = gitCommit()
	return m
}

// parseCPUInfo returns the model name and the crypto flags of the first
// processor in /proc/cpuinfo.
func parseCPUInfo(sc *bufio.Scanner) (model string, flags []string) {
	model = "unknown"
	flags = []string{}
	gotModel, gotFlags := false, false
	for sc.Scan() && !(gotModel && gotFlags) {
		k, v, ok := strings.Cut(sc.Text(), ":")
		if !ok {
			continue
		}
		k, v = strings.TrimSpace(k), strings.TrimSpace(v)
		switch {
		case k == "model name" && !gotModel:
			model, gotModel = v, true
		case (k == "flags" || k == "Features") && !gotFlags:
			have := strings.Fields(v)
			for _, f := range cryptoFlags {
				if slices.Contains(have, f) {
					flags = append(flags, f)
				}
			}
			gotFlags = true
		}
	}
	return model, flags
}

// gitCommit is the commit of the working tree: git rev-parse, else the
// VCS stamp of the binary, else "unknown".
func gitCommit() string {
	if out, err := exec.Command("git", "rev-parse", "HEAD").Output(); err == nil {
		if s := strings.TrimSpace(string(out)); s != "" {
			dirty := ""
			if st, err := exec.Command("git", "status", "--porcelain", "--untracked-files=no").Output(); err == nil && len(strings.TrimSpace(string(st))) > 0 {
				dirty = "+dirty"
			}
			return s + dirty
		}
	}
	if bi, ok := debug.ReadBuildInfo(); ok {
		for _, s := range bi.Settings {
			if s.Key == "vcs.revision" && s.Value != "" {
				return s.Value
			}
		}
	}
	return "unknown"
}

package report

import "github.com/espxdp/espxdp/bench/internal/harness"

// latencyText explains the latency columns of the loss-free rate table
// (a format string: its one verb is the load in percent of the NDR).
const latencyText = `Latency: one more trial at %.0f %% of the NDR (the rate achieved in the
NDR trial), run again (up to 3 times) when gen falls short of 90 %% of
that load; "at %% of NDR" is the load it achieved. gen writes a
CLOCK_MONOTONIC timestamp into the inner UDP payload: encrypt rows stamp
every plaintext packet, decrypt rows re-encrypt one packet per batch
with the stamp (UDP port 10, so the sink can pick them out). A packet
socket on the sink's interface reads the stamped packets (encrypt: a
random 1 in 64 of the ESP packets, decrypted with the gateway's outbound
key) and subtracts the stamp from its own clock reading: one clock, no
synchronisation error; the figures include the sink's wake-up, the same
for every row. p50 and p99 are nearest-rank percentiles; no sample (or no
NDR) shows –.`

// latencyCell is "p50 / p99 / max" in µs of an e2e row, or "–".
func latencyCell(r *harness.Result) string {
	if _, ok := r.Get("lat-p50-us"); !ok {
		return "–"
	}
	return cell(r, "lat-p50-us") + " / " + cell(r, "lat-p99-us") + " / " + cell(r, "lat-max-us")
}

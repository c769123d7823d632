package config

import "testing"

// TestRedTeamTwoOutboundSAsOneKey: the configuration accepts two
// outbound SAs with the same AEAD key material (here to two peers).
// Each starts its sequence counter at 1, and with a counter IV
// (aes-gcm: nonce = salt from the key ‖ sequence number) the first
// packet of each repeats the (key, nonce) pair - the invariant "under
// one key no sequence number is sent twice" cannot hold, and the
// gateway's per-(direction, SPI, key) state record does not see it.
// Fix: refuse (or at least refuse for counter-IV transforms) two SAs
// with the same transform and key material, in Parse and in
// Gateway.AddSAs/UpdateSA/Reload against the installed SAs (the SAD
// already keeps keyed fingerprints for SameKey).
func TestRedTeamTwoOutboundSAsOneKey(t *testing.T) {
	y := `sas:
  - {name: a-to-b, direction: out, spi: 0x1001, local: 192.0.2.1, remote: 198.51.100.1, transform: aes128gcm16, key: 0x000102030405060708090a0b0c0d0e0f10111213}
  - {name: a-to-c, direction: out, spi: 0x1002, local: 192.0.2.1, remote: 198.51.100.2, transform: aes128gcm16, key: 0x000102030405060708090a0b0c0d0e0f10111213}
`
	cfg, err := Parse("sas.yaml", []byte(y))
	if err == nil {
		cfg.Wipe()
		t.Fatal("two outbound aes-gcm SAs with the same key accepted: both send sequence number 1 under one key")
	}
}

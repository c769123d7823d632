//go:build linux

package bpf

import (
	"reflect"
	"strings"
	"testing"

	"github.com/cilium/ebpf/btf"
)

// norm lower-cases and drops underscores: "STAT_NOT_LOCAL" and "NotLocal"
// both become "notlocal".
func norm(s string) string {
	return strings.ToLower(strings.ReplaceAll(s, "_", ""))
}

func enumValues(t *testing.T, name string) []btf.EnumValue {
	t.Helper()
	spec, err := loadSteer()
	if err != nil {
		t.Fatal(err)
	}
	typ, err := spec.Types.AnyTypeByName(name)
	if err != nil {
		t.Fatalf("BTF of the object has no %s: %v", name, err)
	}
	e, ok := typ.(*btf.Enum)
	if !ok {
		t.Fatalf("%s is a %T, not an enum", name, typ)
	}
	return e.Values
}

// TestStatsMirrorEnum checks Stats has one field per enum stat_reason
// value, in the same order and with matching names, and that counters()
// follows the field order.
func TestStatsMirrorEnum(t *testing.T) {
	s := new(Stats)
	sv := reflect.ValueOf(s).Elem()
	st := sv.Type()
	ptrs := s.counters()
	if len(ptrs) != st.NumField() || len(ptrs) != numStatCounters {
		t.Fatalf("counters() has %d entries, Stats %d fields, numStatCounters %d", len(ptrs), st.NumField(), numStatCounters)
	}
	for i, p := range ptrs {
		if p != sv.Field(i).Addr().Interface().(*uint64) {
			t.Errorf("counters()[%d] is not field %s", i, st.Field(i).Name)
		}
	}
	for _, v := range enumValues(t, "stat_reason") {
		name := strings.TrimPrefix(v.Name, "STAT_")
		if name == "MAX" {
			if v.Value != numStatCounters {
				t.Errorf("STAT_MAX = %d, Go has %d counters", v.Value, numStatCounters)
			}
			continue
		}
		if v.Value >= uint64(st.NumField()) {
			t.Errorf("%s = %d has no Stats field", v.Name, v.Value)
			continue
		}
		if f := st.Field(int(v.Value)); norm(f.Name) != norm(name) {
			t.Errorf("%s = %d, but Stats field %d is %s", v.Name, v.Value, v.Value, f.Name)
		}
	}
}

func TestFlagsMirrorEnum(t *testing.T) {
	want := map[string]uint64{
		"FLAG_LOCAL_FILTER":    flagLocalFilter,
		"FLAG_STEER_FRAGMENTS": flagSteerFragments,
		"FLAG_SPI_HASH":        flagSPIHash,
		"FLAG_PLAINTEXT":       flagPlaintext,
		"FLAG_UNPROTECTED":     flagUnprotected,
		"FLAG_SPREAD":          flagSpread,
	}
	vals := enumValues(t, "steer_flag")
	if len(vals) != len(want) {
		t.Errorf("steer_flag has %d values, Go knows %d", len(vals), len(want))
	}
	for _, v := range vals {
		if w, ok := want[v.Name]; !ok || w != v.Value {
			t.Errorf("%s = %d, Go has %d (known: %v)", v.Name, v.Value, w, ok)
		}
	}
}

// TestStructsMirrorBTF compares the Go mirrors of the C structs member
// by member.
func TestStructsMirrorBTF(t *testing.T) {
	spec, err := loadSteer()
	if err != nil {
		t.Fatal(err)
	}
	for cName, goVal := range map[string]any{
		"steer_config": steerConfig{},
		"addr_key":     addrKey{},
		"lpm_key_v4":   lpmKeyV4{},
		"lpm_key_v6":   lpmKeyV6{},
	} {
		var s *btf.Struct
		if err := spec.Types.TypeByName(cName, &s); err != nil {
			t.Errorf("%s: %v", cName, err)
			continue
		}
		gt := reflect.TypeOf(goVal)
		if uintptr(s.Size) != gt.Size() {
			t.Errorf("%s: C size %d, Go %s size %d", cName, s.Size, gt, gt.Size())
		}
		if len(s.Members) != gt.NumField() {
			t.Errorf("%s: %d C members, %d Go fields", cName, len(s.Members), gt.NumField())
			continue
		}
		for i, m := range s.Members {
			f := gt.Field(i)
			size, err := btf.Sizeof(m.Type)
			if err != nil {
				t.Fatal(err)
			}
			if norm(m.Name) != norm(f.Name) || uintptr(m.Offset.Bytes()) != f.Offset || uintptr(size) != f.Type.Size() {
				t.Errorf("%s.%s (offset %d, size %d) vs Go %s (offset %d, size %d)",
					cName, m.Name, m.Offset.Bytes(), size, f.Name, f.Offset, f.Type.Size())
			}
		}
	}
}

func TestDefaultConfigInObject(t *testing.T) {
	spec, err := loadSteer()
	if err != nil {
		t.Fatal(err)
	}
	var cfg steerConfig
	if err := spec.Variables[varConfig].Get(&cfg); err != nil {
		t.Fatal(err)
	}
	if cfg != (steerConfig{NATTPort: DefaultNATTPort, SocketsPerQueue: 1}) {
		t.Errorf("default config in the object is %+v", cfg)
	}
	if !spec.Variables[varConfig].Constant() {
		t.Error("cfg is not in read-only data")
	}
}

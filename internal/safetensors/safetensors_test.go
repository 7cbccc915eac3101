package safetensors

import (
	"encoding/binary"
	"errors"
	"math"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

// file builds a safetensors file from a raw header and data.
func file(header string, data []byte) []byte {
	b := binary.LittleEndian.AppendUint64(nil, uint64(len(header)))
	b = append(b, header...)
	return append(b, data...)
}

func f32bytes(v ...float32) []byte {
	var b []byte
	for _, x := range v {
		b = binary.LittleEndian.AppendUint32(b, math.Float32bits(x))
	}
	return b
}

func TestRoundTrip(t *testing.T) {
	in := []Tensor{
		{Name: "b", Shape: []int{2, 3}, Data: []float32{1, -2, 3.5, float32(math.Inf(1)), 0, float32(math.SmallestNonzeroFloat32)}},
		{Name: "a", Shape: []int{}, Data: []float32{42}},
		{Name: "empty", Shape: []int{0, 4}, Data: []float32{}},
		{Name: "ünï \"quoted\"", Shape: []int{1}, Data: []float32{-0.0}},
	}
	meta := map[string]string{"format": "pt", "x": "y"}
	path := filepath.Join(t.TempDir(), "m.safetensors")
	if err := WriteFile(path, in, meta); err != nil {
		t.Fatal(err)
	}
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if n := binary.LittleEndian.Uint64(raw); (8+n)%8 != 0 {
		t.Errorf("data starts at %d, not 8-byte aligned", 8+n)
	}
	f, err := ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(f.Metadata, meta) {
		t.Errorf("metadata %v, want %v", f.Metadata, meta)
	}
	if len(f.Tensors) != len(in) {
		t.Fatalf("%d tensors, want %d", len(f.Tensors), len(in))
	}
	for i, want := range in {
		got := f.Tensors[i]
		if got.Name != want.Name || !reflect.DeepEqual(got.Shape, want.Shape) || len(got.Data) != len(want.Data) {
			t.Fatalf("tensor %d: got %q %v, want %q %v", i, got.Name, got.Shape, want.Name, want.Shape)
		}
		for j := range want.Data {
			if math.Float32bits(got.Data[j]) != math.Float32bits(want.Data[j]) {
				t.Errorf("%s[%d] = %v, want %v", want.Name, j, got.Data[j], want.Data[j])
			}
		}
	}
	if f.Tensor("a") == nil || f.Tensor("a").Data[0] != 42 || f.Tensor("nope") != nil {
		t.Error("File.Tensor lookup")
	}
	// Writing the decoded file again gives the same bytes.
	again, err := Marshal(f.Tensors, f.Metadata)
	if err != nil {
		t.Fatal(err)
	}
	if string(again) != string(raw) {
		t.Error("re-encoding differs")
	}
}

// TestReference reads a file laid out as the reference implementation writes
// it (tensors sorted, header padded to 8 bytes).
func TestReference(t *testing.T) {
	hdr := `{"__metadata__":{"format":"pt"},"bias":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"weight":{"dtype":"F32","shape":[2,2],"data_offsets":[8,24]}}`
	for len(hdr)%8 != 0 {
		hdr += " "
	}
	f, err := Read(file(hdr, f32bytes(0.5, -1, 1, 2, 3, 4)), "ref")
	if err != nil {
		t.Fatal(err)
	}
	w := f.Tensor("weight")
	if w == nil || !reflect.DeepEqual(w.Shape, []int{2, 2}) || !reflect.DeepEqual(w.Data, []float32{1, 2, 3, 4}) {
		t.Fatalf("weight = %+v", w)
	}
	if b := f.Tensor("bias"); !reflect.DeepEqual(b.Data, []float32{0.5, -1}) {
		t.Fatalf("bias = %+v", b)
	}
}

func TestParseOtherDTypes(t *testing.T) {
	hdr := `{"h":{"dtype":"BF16","shape":[3],"data_offsets":[0,6]},"g":{"dtype":"F16","shape":[1],"data_offsets":[6,8]}}`
	data := file(hdr, make([]byte, 8))
	h, err := Parse(data, "half.safetensors")
	if err != nil {
		t.Fatal(err)
	}
	if len(h.Tensors) != 2 || h.Tensors[0].DType != BF16 || h.Tensors[1].DType != F16 {
		t.Fatalf("header = %+v", h)
	}
	_, err = Read(data, "half.safetensors")
	if err == nil || !strings.Contains(err.Error(), "BF16 is not supported") || !strings.Contains(err.Error(), `"h"`) {
		t.Fatalf("Read of BF16: %v", err)
	}
}

func TestReadErrors(t *testing.T) {
	ok := `{"w":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}`
	long := binary.LittleEndian.AppendUint64(nil, 1000)
	tests := []struct {
		name string
		data []byte
		want []string // substrings of the error
	}{
		{"short", []byte{1, 2, 3}, []string{"too short"}},
		{"header length beyond file", append(long, "{}"...), []string{"header length 1000 exceeds the 2 bytes", "at byte 0"}},
		{"huge header length", binary.LittleEndian.AppendUint64(nil, math.MaxUint64), []string{"exceeds the limit"}},
		{"bad json", file(`{"w":{"dtype":}`, nil), []string{"invalid JSON header"}},
		{"not an object", file(`[1,2]`, nil), []string{"not a JSON object"}},
		{"trailing garbage", file(ok+`x`, make([]byte, 8)), []string{"invalid JSON"}},
		{"duplicate", file(`{"w":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"w":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}}`, make([]byte, 8)), []string{`duplicate key "w"`}},
		{"missing field", file(`{"w":{"dtype":"F32","shape":[2]}}`, make([]byte, 8)), []string{`tensor "w"`, "data_offsets"}},
		{"unknown field", file(`{"w":{"dtype":"F32","shape":[2],"data_offsets":[0,8],"x":1}}`, make([]byte, 8)), []string{`tensor "w"`, "unknown field"}},
		{"unknown dtype", file(`{"w":{"dtype":"F33","shape":[2],"data_offsets":[0,8]}}`, make([]byte, 8)), []string{`unknown dtype "F33"`}},
		{"offsets out of range", file(`{"w":{"dtype":"F32","shape":[4],"data_offsets":[0,16]}}`, make([]byte, 8)), []string{`tensor "w"`, "out of range", "8 bytes"}},
		{"end before begin", file(`{"w":{"dtype":"F32","shape":[0],"data_offsets":[8,0]}}`, make([]byte, 8)), []string{"out of range"}},
		{"negative offset", file(`{"w":{"dtype":"F32","shape":[0],"data_offsets":[-4,0]}}`, nil), []string{"out of range"}},
		{"three offsets", file(`{"w":{"dtype":"F32","shape":[2],"data_offsets":[0,4,8]}}`, make([]byte, 8)), []string{"[begin, end]"}},
		{"shape mismatch", file(`{"w":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}}`, make([]byte, 8)), []string{`tensor "w"`, "needs 12 bytes", "span 8"}},
		{"negative dim", file(`{"w":{"dtype":"F32","shape":[-2],"data_offsets":[0,8]}}`, make([]byte, 8)), []string{"negative dimension"}},
		{"overflowing shape", file(`{"w":{"dtype":"F32","shape":[4611686018427387904,4],"data_offsets":[0,8]}}`, make([]byte, 8)), []string{"too large"}},
		{"overlap", file(`{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}}`, make([]byte, 12)), []string{`tensor "b"`, `overlaps tensor "a"`}},
		{"gap", file(`{"a":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}}`, make([]byte, 8)), []string{`tensor "a"`, "unused bytes"}},
		{"trailing data", file(ok, make([]byte, 12)), []string{"4 trailing bytes"}},
		{"bad metadata", file(`{"__metadata__":{"a":1}}`, nil), []string{"__metadata__"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Read(tc.data, "x.safetensors")
			if err == nil {
				t.Fatal("no error")
			}
			var fe *FormatError
			if !errors.As(err, &fe) {
				t.Fatalf("error %T is not a *FormatError: %v", err, err)
			}
			for _, w := range append(tc.want, "x.safetensors") {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not contain %q", err, w)
				}
			}
		})
	}
}

func TestErrorOffset(t *testing.T) {
	hdr := `{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"b":{"dtype":"F32","shape":[3],"data_offsets":[4,12]}}`
	_, err := Read(file(hdr, make([]byte, 12)), "f")
	var fe *FormatError
	if !errors.As(err, &fe) || fe.Tensor != "b" {
		t.Fatalf("err = %v", err)
	}
	// The size mismatch is reported at b's data: 8 + len(header) + 4.
	if want := int64(8 + len(hdr) + 4); fe.Offset != want {
		t.Errorf("offset %d, want %d", fe.Offset, want)
	}
	_, err = Read(file(`{"a":{"dtype":"X","shape":[],"data_offsets":[0,0]}}`, nil), "f")
	if !errors.As(err, &fe) || fe.Offset != 8+1 {
		t.Errorf("unknown dtype reported at %v, want byte 9 (the key)", err)
	}
}

func TestMarshalErrors(t *testing.T) {
	for _, ts := range [][]Tensor{
		{{Name: "a", Shape: []int{2}, Data: []float32{1}}},
		{{Name: "a", Shape: []int{1}, Data: []float32{1}}, {Name: "a", Shape: []int{1}, Data: []float32{1}}},
		{{Name: "__metadata__", Shape: []int{1}, Data: []float32{1}}},
		{{Name: "a", Shape: []int{-1}, Data: nil}},
	} {
		if _, err := Marshal(ts, nil); err == nil {
			t.Errorf("Marshal(%+v) succeeded", ts)
		}
	}
}

func TestWriteFileFailureKeepsOld(t *testing.T) {
	path := filepath.Join(t.TempDir(), "m.safetensors")
	good := []Tensor{{Name: "a", Shape: []int{1}, Data: []float32{1}}}
	if err := WriteFile(path, good, nil); err != nil {
		t.Fatal(err)
	}
	if err := WriteFile(path, []Tensor{{Name: "a", Shape: []int{3}, Data: []float32{1}}}, nil); err == nil {
		t.Fatal("bad write succeeded")
	}
	f, err := ReadFile(path)
	if err != nil || f.Tensors[0].Data[0] != 1 {
		t.Fatalf("old file damaged: %v", err)
	}
	ents, _ := os.ReadDir(filepath.Dir(path))
	if len(ents) != 1 {
		t.Errorf("stray files: %v", ents)
	}
}

func FuzzRead(f *testing.F) {
	good, _ := Marshal([]Tensor{
		{Name: "w", Shape: []int{2, 2}, Data: []float32{1, 2, 3, 4}},
		{Name: "b", Shape: []int{2}, Data: []float32{5, 6}},
	}, map[string]string{"k": "v"})
	f.Add(good)
	f.Add(file(`{"h":{"dtype":"BF16","shape":[3],"data_offsets":[0,6]}}`, make([]byte, 6)))
	f.Add(file(`{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}}`, make([]byte, 12)))
	f.Add([]byte{})
	f.Add(binary.LittleEndian.AppendUint64(nil, 1<<62))
	f.Fuzz(func(t *testing.T, data []byte) {
		h, err := Parse(data, "fuzz")
		if err != nil {
			return
		}
		// A valid header describes every data byte exactly once.
		pos := h.DataStart
		for _, ti := range h.Tensors {
			if ti.Begin != pos || ti.End < ti.Begin || ti.End > int64(len(data)) {
				t.Fatalf("inconsistent tensor %+v at %d", ti, pos)
			}
			pos = ti.End
		}
		if pos != int64(len(data)) {
			t.Fatalf("tensors end at %d of %d", pos, len(data))
		}
		file, err := Read(data, "fuzz")
		if err != nil {
			return // e.g. a non-F32 dtype
		}
		// Re-encoding and decoding preserves every tensor bit for bit.
		enc, err := Marshal(file.Tensors, file.Metadata)
		if err != nil {
			t.Fatalf("re-encode: %v", err)
		}
		back, err := Read(enc, "re-encoded")
		if err != nil {
			t.Fatalf("re-read: %v", err)
		}
		for i, ten := range file.Tensors {
			got := back.Tensors[i]
			if got.Name != ten.Name || !reflect.DeepEqual(got.Shape, ten.Shape) || len(got.Data) != len(ten.Data) {
				t.Fatalf("tensor %d changed: %+v -> %+v", i, ten, got)
			}
			for j := range ten.Data {
				if math.Float32bits(got.Data[j]) != math.Float32bits(ten.Data[j]) {
					t.Fatalf("%s[%d] changed", ten.Name, j)
				}
			}
		}
	})
}

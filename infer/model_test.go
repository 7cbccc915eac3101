package infer

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io/fs"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/gallop-dev/gallop/internal/safetensors"
)

func saveRandom(t *testing.T) (string, *Model) {
	t.Helper()
	r := rand.New(rand.NewPCG(11, 11))
	m := randomModel(r, 20, 44, []int{64, 64}, 3)
	dir := filepath.Join(t.TempDir(), "export")
	if err := Save(dir, m); err != nil {
		t.Fatal(err)
	}
	return dir, m
}

func sameBits(a, b []float32) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if math.Float32bits(a[i]) != math.Float32bits(b[i]) {
			return false
		}
	}
	return true
}

func TestSaveLoadRoundTrip(t *testing.T) {
	dir, m := saveRandom(t)
	if m.Format != Format || m.FormatVersion != FormatVersion || m.WeightsFile != WeightsFile || len(m.WeightsSHA256) != 64 {
		t.Errorf("Save did not fill in the spec: %+v", m.Spec)
	}
	got, err := Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got.Spec, m.Spec) {
		t.Errorf("spec changed:\n got %+v\nwant %+v", got.Spec, m.Spec)
	}
	if !sameBits(got.Mean, m.Mean) || !sameBits(got.Std, m.Std) || len(got.W) != len(m.W) || len(got.B) != len(m.B) {
		t.Fatal("normalisation or layer count changed")
	}
	for l := range m.W {
		if !sameBits(got.W[l], m.W[l]) || !sameBits(got.B[l], m.B[l]) {
			t.Errorf("layer %d changed", l)
		}
	}
	// The files are what the format says.
	raw, err := os.ReadFile(filepath.Join(dir, WeightsFile))
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(raw)
	if hex.EncodeToString(sum[:]) != m.WeightsSHA256 {
		t.Error("weights_sha256 is not the SHA-256 of model.safetensors")
	}
	var js map[string]any
	b, _ := os.ReadFile(filepath.Join(dir, SpecFile))
	if err := json.Unmarshal(b, &js); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"format", "format_version", "arch", "window", "features", "layers", "activation", "classes", "meta", "weights_file", "weights_sha256"} {
		if _, ok := js[k]; !ok {
			t.Errorf("model.json lacks %q", k)
		}
	}
	f, err := safetensors.ReadFile(filepath.Join(dir, WeightsFile))
	if err != nil {
		t.Fatal(err)
	}
	if w := f.Tensor("dense0.w"); w == nil || !reflect.DeepEqual(w.Shape, []int{880, 64}) {
		t.Errorf("dense0.w = %+v", w)
	}
	if s := f.Tensor("norm.std"); s == nil || !reflect.DeepEqual(s.Shape, []int{44}) {
		t.Errorf("norm.std = %+v", s)
	}
	// Saving again over the export works and leaves no temporary files.
	if err := Save(dir, m); err != nil {
		t.Fatal(err)
	}
	ents, _ := os.ReadDir(dir)
	if len(ents) != 2 {
		t.Errorf("export holds %v", ents)
	}
}

// editSpec rewrites model.json in dir through edit.
func editSpec(t *testing.T, dir string, edit func(map[string]any)) {
	t.Helper()
	p := filepath.Join(dir, SpecFile)
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	var js map[string]any
	if err := json.Unmarshal(b, &js); err != nil {
		t.Fatal(err)
	}
	edit(js)
	if b, err = json.Marshal(js); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, b, 0o644); err != nil {
		t.Fatal(err)
	}
}

// rewriteWeights replaces model.safetensors with the model's tensors passed
// through edit, and records the new file's SHA-256 in model.json, so that
// only the tensor problem remains.
func rewriteWeights(t *testing.T, dir string, m *Model, edit func([]safetensors.Tensor) []safetensors.Tensor) {
	t.Helper()
	ts := []safetensors.Tensor{
		{Name: "norm.mean", Shape: []int{len(m.Mean)}, Data: m.Mean},
		{Name: "norm.std", Shape: []int{len(m.Std)}, Data: m.Std},
	}
	for l := range m.W {
		in, out := m.Layers[l], m.Layers[l+1]
		ts = append(ts,
			safetensors.Tensor{Name: "dense" + string(rune('0'+l)) + ".w", Shape: []int{in, out}, Data: m.W[l]},
			safetensors.Tensor{Name: "dense" + string(rune('0'+l)) + ".b", Shape: []int{out}, Data: m.B[l]})
	}
	b, err := safetensors.Marshal(edit(ts), nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, WeightsFile), b, 0o644); err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(b)
	editSpec(t, dir, func(js map[string]any) { js["weights_sha256"] = hex.EncodeToString(sum[:]) })
}

func TestLoadRefuses(t *testing.T) {
	tests := []struct {
		name   string
		break_ func(t *testing.T, dir string, m *Model)
		want   []string
	}{
		{"flipped byte", func(t *testing.T, dir string, m *Model) {
			p := filepath.Join(dir, WeightsFile)
			b, _ := os.ReadFile(p)
			b[len(b)-5] ^= 0x01
			os.WriteFile(p, b, 0o644)
		}, []string{"sha256", "does not match", "corrupt"}},
		{"missing tensor", func(t *testing.T, dir string, m *Model) {
			rewriteWeights(t, dir, m, func(ts []safetensors.Tensor) []safetensors.Tensor { return ts[:len(ts)-1] })
		}, []string{`tensor "dense2.b" is missing`}},
		{"wrong shape", func(t *testing.T, dir string, m *Model) {
			rewriteWeights(t, dir, m, func(ts []safetensors.Tensor) []safetensors.Tensor {
				ts[2].Shape = []int{64, 880}
				return ts
			})
		}, []string{`tensor "dense0.w" has shape [64 880], want [880 64]`}},
		{"extra tensor", func(t *testing.T, dir string, m *Model) {
			rewriteWeights(t, dir, m, func(ts []safetensors.Tensor) []safetensors.Tensor {
				return append(ts, safetensors.Tensor{Name: "dense9.w", Shape: []int{1}, Data: []float32{1}})
			})
		}, []string{`unexpected tensor "dense9.w"`}},
		{"format_version 99", func(t *testing.T, dir string, m *Model) {
			editSpec(t, dir, func(js map[string]any) { js["format_version"] = 99 })
		}, []string{"format_version 99 is newer", "upgrade"}},
		{"format_version 0", func(t *testing.T, dir string, m *Model) {
			editSpec(t, dir, func(js map[string]any) { delete(js, "format_version") })
		}, []string{"invalid format_version 0"}},
		{"other format", func(t *testing.T, dir string, m *Model) {
			editSpec(t, dir, func(js map[string]any) { js["format"] = "onnx" })
		}, []string{`format "onnx" is not a gallop model export`}},
		{"unknown arch", func(t *testing.T, dir string, m *Model) {
			editSpec(t, dir, func(js map[string]any) { js["arch"] = "lstm" })
		}, []string{`arch "lstm" is not supported`}},
		{"inconsistent layers", func(t *testing.T, dir string, m *Model) {
			editSpec(t, dir, func(js map[string]any) { js["window"] = 10 })
		}, []string{"layers[0] = 880", "10 × 44 = 440"}},
		{"escaping weights_file", func(t *testing.T, dir string, m *Model) {
			editSpec(t, dir, func(js map[string]any) { js["weights_file"] = "../model.safetensors" })
		}, []string{"weights_file", "inside the export directory"}},
		{"bad json", func(t *testing.T, dir string, m *Model) {
			os.WriteFile(filepath.Join(dir, SpecFile), []byte(`{"format":`), 0o644)
		}, []string{SpecFile}},
		{"zero std", func(t *testing.T, dir string, m *Model) {
			rewriteWeights(t, dir, m, func(ts []safetensors.Tensor) []safetensors.Tensor {
				ts[1].Data = append([]float32(nil), ts[1].Data...)
				ts[1].Data[3] = 0
				return ts
			})
		}, []string{`norm.std[3] (feature "f3")`, "positive"}},
		{"truncated weights", func(t *testing.T, dir string, m *Model) {
			p := filepath.Join(dir, WeightsFile)
			b, _ := os.ReadFile(p)
			b = b[:len(b)-4]
			os.WriteFile(p, b, 0o644)
			sum := sha256.Sum256(b)
			editSpec(t, dir, func(js map[string]any) { js["weights_sha256"] = hex.EncodeToString(sum[:]) })
		}, []string{"safetensors", "out of range"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dir, m := saveRandom(t)
			tc.break_(t, dir, m)
			_, err := Load(dir)
			if err == nil {
				t.Fatal("Load succeeded")
			}
			t.Log(err)
			for _, w := range append(tc.want, "infer: load "+dir) {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not contain %q", err, w)
				}
			}
		})
	}
}

func TestLoadShaMismatchNamesBothHashes(t *testing.T) {
	dir, m := saveRandom(t)
	p := filepath.Join(dir, WeightsFile)
	b, _ := os.ReadFile(p)
	b[100] ^= 0x80
	os.WriteFile(p, b, 0o644)
	sum := sha256.Sum256(b)
	_, err := Load(dir)
	if err == nil || !strings.Contains(err.Error(), m.WeightsSHA256) || !strings.Contains(err.Error(), hex.EncodeToString(sum[:])) {
		t.Fatalf("error %v should name the recorded %s and the actual %x", err, m.WeightsSHA256, sum)
	}
}

func TestLoadMissing(t *testing.T) {
	if _, err := Load(t.TempDir()); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("empty dir: %v", err)
	}
	dir, _ := saveRandom(t)
	os.Remove(filepath.Join(dir, WeightsFile))
	if _, err := Load(dir); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("no weights: %v", err)
	}
}

func TestSaveRefusesInvalid(t *testing.T) {
	r := rand.New(rand.NewPCG(12, 12))
	tests := []struct {
		name   string
		break_ func(m *Model)
		want   string
	}{
		{"nan weight", func(m *Model) { m.W[1][7] = float32(math.NaN()) }, "dense1.w[7] = NaN is not finite"},
		{"short bias", func(m *Model) { m.B[0] = m.B[0][:3] }, "dense0.b has 3 values, want 16"},
		{"missing layer", func(m *Model) { m.W = m.W[:1] }, "have 1 weight and 2 bias tensors, want 2 each"},
		{"classes", func(m *Model) { m.Classes = m.Classes[:2] }, "last layer width 3 != 2 classes"},
		{"activation", func(m *Model) { m.Activation = "tanh" }, `activation "tanh" is not supported`},
		{"no arch", func(m *Model) { m.Arch = "" }, "arch is not set"},
		{"negative std", func(m *Model) { m.Std[0] = -1 }, "norm.std[0]"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			good := randomModel(r, 2, 3, []int{16}, 3)
			if err := Save(dir, good); err != nil {
				t.Fatal(err)
			}
			bad := randomModel(r, 2, 3, []int{16}, 3)
			tc.break_(bad)
			err := Save(dir, bad)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Save: %v, want it to mention %q", err, tc.want)
			}
			// The earlier export is intact.
			got, err := Load(dir)
			if err != nil || !sameBits(got.W[0], good.W[0]) {
				t.Fatalf("earlier export damaged: %v", err)
			}
		})
	}
}

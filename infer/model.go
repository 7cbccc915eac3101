// Package infer serves trained gallop models in-process: it defines the model
// export format (a directory with model.json and model.safetensors), loads
// and validates exports, and evaluates them with pure-Go kernels, either on a
// whole window (MLP.Forward) or one event at a time (Stream.Push).
package infer

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"github.com/gallop-dev/gallop/internal/atomicfile"
	"github.com/gallop-dev/gallop/internal/safetensors"
)

// Export format constants.
const (
	Format        = "gallop-model" // Spec.Format of every export
	FormatVersion = 1              // the newest Spec.FormatVersion this package reads and the one it writes
	SpecFile      = "model.json"
	WeightsFile   = "model.safetensors"

	ArchMLP        = "mlp"
	ActivationReLU = "relu"
)

// Spec is the content of model.json. Fields shared by all architectures come
// first; architecture-specific fields follow, each group used only by its
// Arch and omitted from the JSON by the others.
type Spec struct {
	Format        string `json:"format"`
	FormatVersion int    `json:"format_version"`
	Arch          string `json:"arch"`
	// Window is the number of consecutive events the model sees, oldest first.
	Window int `json:"window"`
	// Features names the F values of one event's feature vector, in order.
	Features []string `json:"features"`
	// Classes names the model outputs (one logit each), in order.
	Classes []string `json:"classes"`
	// Meta holds free-form training information (horizon, labelling, ...).
	Meta map[string]string `json:"meta,omitempty"`

	// Arch "mlp": Layers are the widths from input (Window*len(Features)) to
	// output (len(Classes)); every layer but the last is followed by
	// Activation.
	Layers     []int  `json:"layers,omitempty"`
	Activation string `json:"activation,omitempty"`

	// Arch "gru": Hidden is the state size. Arch "deeplob": Hidden is the
	// LSTM's units, Conv the channels of the convolution blocks, Inception
	// those of each inception branch, and BookIndex the positions among
	// Features of the 40 book columns (model.DeepLOBIndex).
	Hidden    int   `json:"hidden,omitempty"`
	Conv      int   `json:"conv,omitempty"`
	Inception int   `json:"inception,omitempty"`
	BookIndex []int `json:"book_index,omitempty"`

	// Arch "transformer": DModel is the model width, Heads the attention
	// heads (dividing DModel), Blocks the transformer blocks and FF the
	// width of each block's MLP. Window is also the number of learned
	// positions.
	DModel int `json:"d_model,omitempty"`
	Heads  int `json:"heads,omitempty"`
	Blocks int `json:"blocks,omitempty"`
	FF     int `json:"ff,omitempty"`

	WeightsFile   string `json:"weights_file"`
	WeightsSHA256 string `json:"weights_sha256"`
}

// Model is a loaded export: its Spec and weights. All slices are row-major.
//
// Mean and Std (length F) normalise each feature as (x-Mean[f])/Std[f].
// For Arch "mlp", W[l] has shape [Layers[l], Layers[l+1]] and B[l] has
// length Layers[l+1]. For the other architectures, Weights holds the trained
// parameters in the order, with the names and shapes, of the model
// package's Params (see ParamShapes and FromParams).
type Model struct {
	Spec
	Mean, Std []float32
	W, B      [][]float32
	Weights   [][]float32
}

// tensorSpec is one tensor an architecture stores.
type tensorSpec struct {
	name  string
	shape []int
	data  *[]float32 // where the tensor lives in a Model
}

// tensors lists the tensors of m's architecture, bound to m's fields.
func (m *Model) tensors() ([]tensorSpec, error) {
	s := &m.Spec
	f := len(s.Features)
	out := []tensorSpec{
		{"norm.mean", []int{f}, &m.Mean},
		{"norm.std", []int{f}, &m.Std},
	}
	switch s.Arch {
	case ArchMLP:
		n := len(s.Layers) - 1
		if n < 1 {
			return nil, fmt.Errorf("mlp needs at least 2 layer widths, have %v", s.Layers)
		}
		if len(m.W) != n || len(m.B) != n {
			return nil, fmt.Errorf("have %d weight and %d bias tensors, want %d each", len(m.W), len(m.B), n)
		}
		for l := range n {
			in, o := s.Layers[l], s.Layers[l+1]
			out = append(out,
				tensorSpec{"dense" + strconv.Itoa(l) + ".w", []int{in, o}, &m.W[l]},
				tensorSpec{"dense" + strconv.Itoa(l) + ".b", []int{o}, &m.B[l]})
		}
		return out, nil
	case ArchGRU, ArchDeepLOB, ArchTransformer:
		return m.seqTensors(out)
	case "":
		return nil, errors.New("arch is not set")
	}
	return nil, fmt.Errorf("arch %q is not supported (supported: %s)", s.Arch, supportedArchs)
}

// check checks the architecture-independent parts of s and its
// architecture's fields.
func (s *Spec) check() error {
	if s.Window < 1 {
		return fmt.Errorf("window %d must be positive", s.Window)
	}
	if len(s.Features) == 0 {
		return errors.New("no features")
	}
	if len(s.Classes) == 0 {
		return errors.New("no classes")
	}
	switch s.Arch {
	case ArchMLP:
		if len(s.Layers) < 2 {
			return fmt.Errorf("mlp needs at least 2 layer widths, have %v", s.Layers)
		}
		for _, n := range s.Layers {
			if n < 1 {
				return fmt.Errorf("layer widths %v must be positive", s.Layers)
			}
		}
		if want := s.Window * len(s.Features); s.Layers[0] != want {
			return fmt.Errorf("layers[0] = %d, want window × features = %d × %d = %d",
				s.Layers[0], s.Window, len(s.Features), want)
		}
		if last := s.Layers[len(s.Layers)-1]; last != len(s.Classes) {
			return fmt.Errorf("last layer width %d != %d classes", last, len(s.Classes))
		}
		if s.Activation != ActivationReLU {
			return fmt.Errorf("activation %q is not supported (supported: %s)", s.Activation, ActivationReLU)
		}
	case ArchGRU, ArchDeepLOB, ArchTransformer:
		return s.checkSeq()
	case "":
		return errors.New("arch is not set")
	default:
		return fmt.Errorf("arch %q is not supported (supported: %s)", s.Arch, supportedArchs)
	}
	return nil
}

// Validate checks that m is a complete, usable model: a consistent Spec,
// every tensor present with its shape, finite weights and positive finite
// standard deviations.
func (m *Model) Validate() error {
	if err := m.Spec.check(); err != nil {
		return err
	}
	ts, err := m.tensors()
	if err != nil {
		return err
	}
	for _, t := range ts {
		data := *t.data
		if want := product(t.shape); len(data) != want {
			return fmt.Errorf("tensor %s has %d values, want %d for shape %v", t.name, len(data), want, t.shape)
		}
		for i, v := range data {
			if math.IsNaN(float64(v)) || math.IsInf(float64(v), 0) {
				return fmt.Errorf("tensor %s[%d] = %v is not finite", t.name, i, v)
			}
		}
	}
	for i, v := range m.Std {
		if !(v > 0) {
			return fmt.Errorf("norm.std[%d] (feature %q) = %v, must be positive", i, m.Features[i], v)
		}
	}
	return nil
}

func product(shape []int) int {
	n := 1
	for _, d := range shape {
		n *= d
	}
	return n
}

// Save writes m as an export in dir, creating dir if needed: first
// model.safetensors, then model.json holding the weights' SHA-256, each
// written atomically, so an interrupted Save leaves either the previous
// export or one whose checksum mismatch makes Load refuse it. Save sets
// m.Format, m.FormatVersion, m.WeightsFile and m.WeightsSHA256 to what it
// wrote.
func Save(dir string, m *Model) error {
	spec := m.Spec
	spec.Format, spec.FormatVersion, spec.WeightsFile = Format, FormatVersion, WeightsFile
	mm := *m
	mm.Spec = spec
	if err := mm.Validate(); err != nil {
		return fmt.Errorf("infer: save %s: %w", dir, err)
	}
	ts, err := mm.tensors()
	if err != nil {
		return fmt.Errorf("infer: save %s: %w", dir, err)
	}
	st := make([]safetensors.Tensor, len(ts))
	for i, t := range ts {
		st[i] = safetensors.Tensor{Name: t.name, Shape: t.shape, Data: *t.data}
	}
	weights, err := safetensors.Marshal(st, map[string]string{"format": Format, "arch": spec.Arch})
	if err != nil {
		return fmt.Errorf("infer: save %s: %w", dir, err)
	}
	sum := sha256.Sum256(weights)
	spec.WeightsSHA256 = hex.EncodeToString(sum[:])
	js, err := json.MarshalIndent(&spec, "", "  ")
	if err != nil {
		return fmt.Errorf("infer: save %s: %w", dir, err)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("infer: save: %w", err)
	}
	if err := atomicfile.WriteFile(filepath.Join(dir, WeightsFile), weights, 0o644); err != nil {
		return fmt.Errorf("infer: save %s: %w", dir, err)
	}
	if err := atomicfile.WriteFile(filepath.Join(dir, SpecFile), append(js, '\n'), 0o644); err != nil {
		return fmt.Errorf("infer: save %s: %w", dir, err)
	}
	m.Spec = spec
	return nil
}

// Load reads and validates the export in dir. It refuses exports of another
// format, of a newer format version, of an unsupported architecture, whose
// weights file does not match the SHA-256 recorded in model.json, or whose
// tensors are missing, unexpected or misshapen.
func Load(dir string) (*Model, error) {
	m, err := load(dir)
	if err != nil {
		return nil, fmt.Errorf("infer: load %s: %w", dir, err)
	}
	return m, nil
}

func load(dir string) (*Model, error) {
	js, err := os.ReadFile(filepath.Join(dir, SpecFile))
	if err != nil {
		return nil, err
	}
	m := &Model{}
	if err := json.Unmarshal(js, &m.Spec); err != nil {
		return nil, fmt.Errorf("%s: %w", SpecFile, err)
	}
	s := &m.Spec
	switch {
	case s.Format != Format:
		return nil, fmt.Errorf("%s: format %q is not a gallop model export (want %q)", SpecFile, s.Format, Format)
	case s.FormatVersion > FormatVersion:
		return nil, fmt.Errorf("%s: format_version %d is newer than this gallop supports (%d): upgrade gallop to load it",
			SpecFile, s.FormatVersion, FormatVersion)
	case s.FormatVersion < 1:
		return nil, fmt.Errorf("%s: invalid format_version %d", SpecFile, s.FormatVersion)
	}
	if err := s.check(); err != nil {
		return nil, fmt.Errorf("%s: %w", SpecFile, err)
	}
	if s.WeightsFile == "" || !filepath.IsLocal(s.WeightsFile) || strings.ContainsAny(s.WeightsFile, `/\`) {
		return nil, fmt.Errorf("%s: weights_file %q must be a file name inside the export directory", SpecFile, s.WeightsFile)
	}
	wpath := filepath.Join(dir, s.WeightsFile)
	data, err := os.ReadFile(wpath)
	if err != nil {
		return nil, err
	}
	sum := sha256.Sum256(data)
	if got := hex.EncodeToString(sum[:]); !strings.EqualFold(got, s.WeightsSHA256) {
		return nil, fmt.Errorf("%s: sha256 %s does not match weights_sha256 %q recorded in %s: the export is corrupt or was modified",
			s.WeightsFile, got, s.WeightsSHA256, SpecFile)
	}
	f, err := safetensors.Read(data, wpath)
	if err != nil {
		return nil, err
	}
	if s.Arch == ArchMLP {
		m.W = make([][]float32, len(s.Layers)-1)
		m.B = make([][]float32, len(s.Layers)-1)
	} else if ps, err := s.ParamShapes(); err == nil {
		m.Weights = make([][]float32, len(ps))
	}
	ts, err := m.tensors()
	if err != nil {
		return nil, err
	}
	want := map[string]bool{}
	for _, t := range ts {
		want[t.name] = true
		ft := f.Tensor(t.name)
		if ft == nil {
			return nil, fmt.Errorf("%s: tensor %q is missing (arch %s needs it)", s.WeightsFile, t.name, s.Arch)
		}
		if !slices.Equal(ft.Shape, t.shape) {
			return nil, fmt.Errorf("%s: tensor %q has shape %v, want %v for the spec in %s",
				s.WeightsFile, t.name, ft.Shape, t.shape, SpecFile)
		}
		*t.data = ft.Data
	}
	for _, ft := range f.Tensors {
		if !want[ft.Name] {
			return nil, fmt.Errorf("%s: unexpected tensor %q for arch %s", s.WeightsFile, ft.Name, s.Arch)
		}
	}
	if err := m.Validate(); err != nil {
		return nil, err
	}
	return m, nil
}

package infer

import (
	"cmp"
	"fmt"
	"slices"
	"strconv"
)

// The sequence architectures, named as the model package's Arch methods
// name them.
const (
	ArchGRU         = "gru"         // model.GRU
	ArchDeepLOB     = "deeplob"     // model.DeepLOB
	ArchTransformer = "transformer" // model.Transformer
)

const supportedArchs = ArchMLP + ", " + ArchGRU + ", " + ArchDeepLOB + ", " + ArchTransformer

// Param is one named, row-major tensor of a trained model, as the model
// package's Params name and shape it.
type Param struct {
	Name  string
	Shape []int
	Data  []float32
}

// ParamShapes returns the names and shapes (Data nil) of the trained
// parameters of s's architecture, in the model package's Params order: for
// "mlp" those of model.MLP, and so on. Normalisation (norm.mean, norm.std)
// is not among them.
func (s *Spec) ParamShapes() ([]Param, error) {
	if err := s.check(); err != nil {
		return nil, err
	}
	switch s.Arch {
	case ArchMLP:
		var ps []Param
		for l := range len(s.Layers) - 1 {
			in, o := s.Layers[l], s.Layers[l+1]
			ps = append(ps,
				Param{Name: "dense" + strconv.Itoa(l) + ".w", Shape: []int{in, o}},
				Param{Name: "dense" + strconv.Itoa(l) + ".b", Shape: []int{o}})
		}
		return ps, nil
	case ArchGRU:
		return gruParams(s), nil
	case ArchDeepLOB:
		return deeplobParams(s), nil
	case ArchTransformer:
		return transformerParams(s), nil
	}
	return nil, fmt.Errorf("arch %q is not supported (supported: %s)", s.Arch, supportedArchs)
}

// FromParams builds the Model that the engines serve from a trained model:
// spec describes it (Arch, Window, Features, Classes and the architecture's
// fields; Format and the weights fields are left to Save), mean and std are
// the per-feature normalisation the training used, and params are the
// trained parameters exactly as the model package's Params list them (same
// order, names and shapes; for "mlp", dense0.w, dense0.b, ...). The Model
// refers to the params' Data rather than copying it. FromParams validates
// the result as Save would.
//
// A trainer exports a model m with state st like this:
//
//	var ps []infer.Param
//	for i, p := range m.Params() {
//		data, err := tensors.CopyFlatData[float32](st.Params[i])
//		...
//		ps = append(ps, infer.Param{Name: p.Name, Shape: p.Shape, Data: data})
//	}
//	im, err := infer.FromParams(spec, norm.Mean, norm.Std, ps)
//	...
//	err = infer.Save(dir, im)
func FromParams(spec Spec, mean, std []float32, params []Param) (*Model, error) {
	m, err := fromParams(spec, mean, std, params)
	if err != nil {
		return nil, fmt.Errorf("infer: FromParams (arch %q): %w", spec.Arch, err)
	}
	return m, nil
}

func fromParams(spec Spec, mean, std []float32, params []Param) (*Model, error) {
	want, err := spec.ParamShapes()
	if err != nil {
		return nil, err
	}
	if len(params) != len(want) {
		return nil, fmt.Errorf("have %d parameters, want %d (%s ... %s)",
			len(params), len(want), want[0].Name, want[len(want)-1].Name)
	}
	for i, p := range params {
		w := want[i]
		if p.Name != w.Name {
			return nil, fmt.Errorf("parameter %d is %q, want %q", i, p.Name, w.Name)
		}
		if !slices.Equal(p.Shape, w.Shape) {
			return nil, fmt.Errorf("parameter %s has shape %v, want %v", p.Name, p.Shape, w.Shape)
		}
		if len(p.Data) != product(w.Shape) {
			return nil, fmt.Errorf("parameter %s has %d values, want %d for shape %v", p.Name, len(p.Data), product(w.Shape), w.Shape)
		}
	}
	m := &Model{Spec: spec, Mean: mean, Std: std}
	if spec.Arch == ArchMLP {
		for i := 0; i < len(params); i += 2 {
			m.W = append(m.W, params[i].Data)
			m.B = append(m.B, params[i+1].Data)
		}
	} else {
		for _, p := range params {
			m.Weights = append(m.Weights, p.Data)
		}
	}
	if err := m.Validate(); err != nil {
		return nil, err
	}
	return m, nil
}

// Params returns m's trained parameters in the model package's Params order,
// names and shapes (the inverse of FromParams), sharing m's data.
func (m *Model) Params() ([]Param, error) {
	ps, err := m.Spec.ParamShapes()
	if err != nil {
		return nil, fmt.Errorf("infer: Params: %w", err)
	}
	ts, err := m.tensors()
	if err != nil {
		return nil, fmt.Errorf("infer: Params: %w", err)
	}
	ts = ts[2:] // norm.mean, norm.std
	for i := range ps {
		ps[i].Data = *ts[i].data
	}
	return ps, nil
}

// seqTensors appends the tensors of a sequence architecture, bound to
// m.Weights, to out (the normalisation tensors).
func (m *Model) seqTensors(out []tensorSpec) ([]tensorSpec, error) {
	ps, err := m.Spec.ParamShapes()
	if err != nil {
		return nil, err
	}
	if len(m.Weights) != len(ps) {
		return nil, fmt.Errorf("have %d weight tensors, want %d for arch %s", len(m.Weights), len(ps), m.Arch)
	}
	for i, p := range ps {
		out = append(out, tensorSpec{p.Name, p.Shape, &m.Weights[i]})
	}
	return out, nil
}

// checkSeq checks the architecture fields of a sequence architecture.
func (s *Spec) checkSeq() error {
	positive := func(name string, v int) error {
		if v < 1 {
			return fmt.Errorf("%s: %s = %d, must be positive", s.Arch, name, v)
		}
		return nil
	}
	switch s.Arch {
	case ArchGRU:
		return positive("hidden", s.Hidden)
	case ArchDeepLOB:
		for _, f := range []struct {
			name string
			v    int
		}{{"hidden", s.Hidden}, {"conv", s.Conv}, {"inception", s.Inception}} {
			if err := positive(f.name, f.v); err != nil {
				return err
			}
		}
		if len(s.BookIndex) != deeplobColumns {
			return fmt.Errorf("deeplob: book_index has %d entries, want %d (ask_d, ask_q, bid_d, bid_q of levels 0..9)",
				len(s.BookIndex), deeplobColumns)
		}
		for i, j := range s.BookIndex {
			if j < 0 || j >= len(s.Features) {
				return fmt.Errorf("deeplob: book_index[%d] = %d is not a feature position (%d features)", i, j, len(s.Features))
			}
		}
		return nil
	case ArchTransformer:
		for _, f := range []struct {
			name string
			v    int
		}{{"d_model", s.DModel}, {"heads", s.Heads}, {"blocks", s.Blocks}, {"ff", s.FF}} {
			if err := positive(f.name, f.v); err != nil {
				return err
			}
		}
		if s.DModel%s.Heads != 0 {
			return fmt.Errorf("transformer: heads = %d does not divide d_model = %d", s.Heads, s.DModel)
		}
		return nil
	}
	return fmt.Errorf("arch %q is not a sequence architecture", s.Arch)
}

// Streamer is what each engine's per-instrument stream provides: Push one
// event's raw feature vector and, when it reports ready, read the logits it
// wrote; Settle does, ahead of the next event, work Push would otherwise do
// first; Reset forgets all events. Which training forward the logits equal
// depends on the engine and its mode (see each stream type). Streamers are
// not safe for concurrent use.
type Streamer interface {
	Push(features, logits []float32) (ready bool)
	Settle()
	Reset()
	Ready() bool
}

// Mode selects which training forward a sequence model's stream reproduces.
type Mode int

const (
	// ModeWindow: once Window events are in, each Push yields the logits of
	// the model package's Forward on the window of the last Window events,
	// the forward the model was trained and validated with. Every
	// architecture has it.
	ModeWindow Mode = iota
	// ModeCarried (gru, mlp, deeplob): each Push yields the logits of the
	// model's ForwardSeq over all events since Reset as one sequence. The
	// GRU carries its state from event to event, one cell step per event;
	// the MLP and DeepLOB yield from the first event, a window's events
	// before Reset at the features' means.
	ModeCarried
	// ModeSegment (transformer): a key-value cache over segments of Window
	// events: each Push yields the logits of model.Transformer's ForwardSeq
	// over the events since Reset cut into consecutive sequences of Window
	// events, at the newest event's position in its sequence.
	ModeSegment
)

// ParseMode parses a mode's name: window, carried or segment.
func ParseMode(s string) (Mode, error) {
	for _, md := range []Mode{ModeWindow, ModeCarried, ModeSegment} {
		if md.String() == s {
			return md, nil
		}
	}
	return 0, fmt.Errorf("infer: mode %q: want window, carried or segment", s)
}

// String returns the mode's name: window, carried or segment.
func (md Mode) String() string {
	switch md {
	case ModeWindow:
		return "window"
	case ModeCarried:
		return "carried"
	case ModeSegment:
		return "segment"
	}
	return "Mode(" + strconv.Itoa(int(md)) + ")"
}

// NewStreamer returns a new stream over m in the given mode: an MLP's
// Stream (ModeWindow, ModeCarried), a GRUStream (ModeWindow, ModeCarried), a
// DeepLOBStream (ModeWindow, ModeCarried) or a TransformerStream (ModeWindow,
// ModeSegment). It prepares a new engine each call; to serve many
// instruments, prepare the engine once with Streams (or NewMLP, NewGRU, ...)
// and make one stream per instrument from it.
func NewStreamer(m *Model, mode Mode) (Streamer, error) {
	newStream, err := Streams(m, mode, Options{})
	if err != nil {
		return nil, err
	}
	return newStream(), nil
}

// Streams prepares m's engine once, with options o (int8 weights are for
// MLPs only), and returns a function that makes a new stream over it in the
// given mode on each call, as a server does per instrument: the streams
// share the engine's weights read-only, and each is for one goroutine.
func Streams(m *Model, mode Mode, o Options) (func() Streamer, error) {
	bad := func() error {
		return fmt.Errorf("infer: NewStreamer: arch %s has no %s mode", m.Arch, mode)
	}
	if m.Arch != ArchMLP && cmp.Or(o.Weights, WeightsFloat32) != WeightsFloat32 {
		return nil, fmt.Errorf("infer: NewStreamer: weights %s: only MLP engines have int8 weights, this model is %s", o.Weights, m.Arch)
	}
	switch m.Arch {
	case ArchMLP:
		if mode != ModeWindow && mode != ModeCarried {
			return nil, bad()
		}
		e, err := NewMLPWith(m, o)
		if err != nil {
			return nil, err
		}
		return func() Streamer {
			s, _ := e.NewStreamMode(mode) // mode checked above
			return s
		}, nil
	case ArchGRU:
		if mode != ModeWindow && mode != ModeCarried {
			return nil, bad()
		}
		e, err := NewGRU(m)
		if err != nil {
			return nil, err
		}
		return func() Streamer { return e.NewStream(mode) }, nil
	case ArchDeepLOB:
		if mode != ModeWindow && mode != ModeCarried {
			return nil, bad()
		}
		e, err := NewDeepLOB(m)
		if err != nil {
			return nil, err
		}
		return func() Streamer {
			s, _ := e.NewStreamMode(mode) // mode checked above
			return s
		}, nil
	case ArchTransformer:
		if mode != ModeWindow && mode != ModeSegment {
			return nil, bad()
		}
		e, err := NewTransformer(m)
		if err != nil {
			return nil, err
		}
		return func() Streamer { return e.NewStream(mode) }, nil
	}
	return nil, fmt.Errorf("infer: NewStreamer: arch %q is not supported (supported: %s)", m.Arch, supportedArchs)
}

// checkArch returns an error unless m has arch a and is valid.
func checkArch(fn string, m *Model, a string) error {
	if m.Arch != a {
		return fmt.Errorf("infer: %s: model arch is %q, not %q", fn, m.Arch, a)
	}
	if err := m.Validate(); err != nil {
		return fmt.Errorf("infer: %s: %w", fn, err)
	}
	return nil
}

// checkLens panics with a message naming fn unless the feature and logit
// slices have the engine's lengths.
func checkLens(fn string, features, logits []float32, nfeat, classes int) {
	if len(features) != nfeat || len(logits) != classes {
		panic(fmt.Sprintf("infer: %s: got %d features and %d logits, want %d and %d",
			fn, len(features), len(logits), nfeat, classes))
	}
}

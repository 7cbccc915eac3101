package shard

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"

	"github.com/gallop-dev/gallop/batch"
	"github.com/gallop-dev/gallop/data/feature"
)

// Format and Version identify the manifest format. Version changes when the
// shard schema or the meaning of a manifest field changes.
const (
	Format       = "gallop.dataset"
	Version      = 1
	ManifestFile = "dataset.json"
	markerDir    = ".ingest"
)

// FeatureDoc is where the feature formulas are documented.
const FeatureDoc = "github.com/gallop-dev/gallop/data/feature (package documentation)"

// Manifest is the content of dataset.json.
type Manifest struct {
	Format      string       `json:"format"`
	Version     int          `json:"version"`
	Schema      []Column     `json:"schema"`
	Features    Features     `json:"features"`
	Labels      Labels       `json:"labels"`
	Instruments []Instrument `json:"instruments"`
	Rows        int64        `json:"rows"`
	StartNs     int64        `json:"start_ns"` // first event time
	EndNs       int64        `json:"end_ns"`   // last event time
	Start       string       `json:"start"`    // StartNs as RFC 3339 (UTC), for people
	End         string       `json:"end"`
	Shards      []ShardInfo  `json:"shards"`
	Sources     []Source     `json:"sources"`
}

// Column is one shard column: its name and Arrow type.
type Column struct {
	Name string `json:"name"`
	Type string `json:"type"`
}

// Features names the feature columns in order and says where their formulas
// are.
type Features struct {
	Count int      `json:"count"`
	Names []string `json:"names"`
	Doc   string   `json:"doc"`
}

// Labels defines the label columns.
type Labels struct {
	Horizons   []int    `json:"horizons"`    // k, in events (rows)
	Theta      float64  `json:"theta_ticks"` // threshold θ in ticks
	Convention string   `json:"convention"`
	Classes    []string `json:"classes"` // by label value
	Missing    int      `json:"missing"` // the value of rows without a label
}

// Instrument is one instrument of the dataset.
type Instrument struct {
	ID     uint32 `json:"id"`
	Symbol string `json:"symbol"`
	// Tick is the tick size in book price units (1e-9), the unit of mid
	// and of the tick-denominated features; TickSource says where it came
	// from: "definition" (DBN instrument definition), "inferred-gcd" (GCD of
	// observed price differences), "decimals" (finest decimal place of the
	// observed prices), "lobster" ($0.01) or "sim".
	Tick       int64  `json:"tick"`
	TickSource string `json:"tick_source"`
	Rows       int64  `json:"rows"`
	StartNs    int64  `json:"start_ns"`
	EndNs      int64  `json:"end_ns"`
}

// ShardInfo is one shard file.
type ShardInfo struct {
	File       string `json:"file"` // relative to the dataset directory
	Rows       int64  `json:"rows"`
	Bytes      int64  `json:"bytes"`
	SHA256     string `json:"sha256"`
	Instrument uint32 `json:"instrument"`
	Symbol     string `json:"symbol"`
	Source     string `json:"source"` // Source.Name it came from
	StartNs    int64  `json:"start_ns"`
	EndNs      int64  `json:"end_ns"`
	// Classes counts labels per horizon (keyed like the label column):
	// down, flat, up, unlabelled.
	Classes map[string][4]int64 `json:"classes"`
}

// Source is one ingested input.
type Source struct {
	Input  string `json:"input"` // as given to Ingest
	Name   string `json:"name"`  // base name (or the sim spec)
	Format string `json:"format"`
	Bytes  int64  `json:"bytes"`
	SHA256 string `json:"sha256"` // of the file; of the resolved config for sim
	Events int64  `json:"events"` // book events read
	Rows   int64  `json:"rows"`
}

// Dataset is an opened dataset directory.
type Dataset struct {
	Dir      string
	Manifest Manifest

	mu     sync.Mutex
	shards []*Shard // opened lazily, in Manifest.Shards order
}

// Open reads and checks dir/dataset.json. It does not hash the shards (see
// Verify) and maps them only when Series or Shard needs them.
func Open(dir string) (*Dataset, error) {
	path := filepath.Join(dir, ManifestFile)
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("shard: %w", err)
	}
	var m Manifest
	if err := json.Unmarshal(b, &m); err != nil {
		return nil, fmt.Errorf("shard: %s: %w", path, err)
	}
	if m.Format != Format {
		return nil, fmt.Errorf("shard: %s: format %q, want %q", path, m.Format, Format)
	}
	if m.Version != Version {
		return nil, fmt.Errorf("shard: %s: version %d, this build reads %d", path, m.Version, Version)
	}
	if m.Features.Count != len(m.Features.Names) || m.Features.Count <= 0 {
		return nil, fmt.Errorf("shard: %s: %d features with %d names", path, m.Features.Count, len(m.Features.Names))
	}
	var rows int64
	for _, s := range m.Shards {
		if s.File == "" || s.File != filepath.Base(s.File) || strings.HasPrefix(s.File, ".") {
			return nil, fmt.Errorf("shard: %s: bad shard file name %q", path, s.File)
		}
		rows += s.Rows
	}
	if rows != m.Rows {
		return nil, fmt.Errorf("shard: %s: shards hold %d rows, manifest says %d", path, rows, m.Rows)
	}
	return &Dataset{Dir: dir, Manifest: m}, nil
}

// VerifyError names the shards whose content no longer matches the
// manifest.
type VerifyError struct {
	Dir     string
	Changed []string // size or SHA-256 differs
	Missing []string // cannot be read
}

func (e *VerifyError) Error() string {
	var parts []string
	if len(e.Changed) > 0 {
		parts = append(parts, fmt.Sprintf("%d changed (%s)", len(e.Changed), strings.Join(e.Changed, ", ")))
	}
	if len(e.Missing) > 0 {
		parts = append(parts, fmt.Sprintf("%d missing (%s)", len(e.Missing), strings.Join(e.Missing, ", ")))
	}
	return fmt.Sprintf("shard: dataset %s: shards %s", e.Dir, strings.Join(parts, "; "))
}

// ShardStatus is the outcome of checking one shard.
type ShardStatus int

const (
	ShardOK ShardStatus = iota
	ShardChanged
	ShardMissing
)

func (s ShardStatus) String() string {
	return [...]string{"OK", "CHANGED", "MISSING"}[s]
}

// Check rehashes every shard and returns its status, in Manifest.Shards
// order.
func (d *Dataset) Check() []ShardStatus {
	st := make([]ShardStatus, len(d.Manifest.Shards))
	for i, s := range d.Manifest.Shards {
		n, sum, err := hashFile(filepath.Join(d.Dir, s.File))
		switch {
		case err != nil:
			st[i] = ShardMissing
		case n != s.Bytes || sum != s.SHA256:
			st[i] = ShardChanged
		}
	}
	return st
}

// Verify rehashes every shard and returns a *VerifyError naming each one
// that changed or is missing, or nil.
func (d *Dataset) Verify() error {
	e := &VerifyError{Dir: d.Dir}
	for i, st := range d.Check() {
		switch st {
		case ShardChanged:
			e.Changed = append(e.Changed, d.Manifest.Shards[i].File)
		case ShardMissing:
			e.Missing = append(e.Missing, d.Manifest.Shards[i].File)
		}
	}
	if len(e.Changed)+len(e.Missing) > 0 {
		return e
	}
	return nil
}

func hashFile(path string) (int64, string, error) {
	f, err := os.Open(path)
	if err != nil {
		return 0, "", err
	}
	defer f.Close()
	h := sha256.New()
	n, err := io.Copy(h, f)
	if err != nil {
		return n, "", fmt.Errorf("%s: %w", path, err)
	}
	return n, hex.EncodeToString(h.Sum(nil)), nil
}

// Shard maps and returns shard i (in Manifest.Shards order). The Dataset
// owns it: it stays open until the Dataset is closed.
func (d *Dataset) Shard(i int) (*Shard, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.shard(i)
}

func (d *Dataset) shard(i int) (*Shard, error) {
	if i < 0 || i >= len(d.Manifest.Shards) {
		return nil, fmt.Errorf("shard: dataset %s has no shard %d", d.Dir, i)
	}
	if d.shards == nil {
		d.shards = make([]*Shard, len(d.Manifest.Shards))
	}
	if s := d.shards[i]; s != nil {
		return s, nil
	}
	info := d.Manifest.Shards[i]
	s, err := OpenShard(filepath.Join(d.Dir, info.File))
	if err != nil {
		return nil, err
	}
	if int64(s.Rows()) != info.Rows || s.F() != d.Manifest.Features.Count {
		s.Close()
		return nil, fmt.Errorf("shard: %s: %d rows of %d features, manifest says %d of %d",
			s.Path(), s.Rows(), s.F(), info.Rows, d.Manifest.Features.Count)
	}
	d.shards[i] = s
	return s, nil
}

// Series returns one batch.Series per shard, in manifest order, with the
// labels of horizon h. Features and TsNs point into the shards' mappings
// (no copy): they are valid until d is closed. Labels are converted to
// int32, a copy. A (source, instrument) pair split over several shards
// gives consecutive series.
func (d *Dataset) Series(h int) ([]batch.Series, error) {
	ok := false
	for _, x := range d.Manifest.Labels.Horizons {
		ok = ok || x == h
	}
	if !ok {
		return nil, fmt.Errorf("shard: dataset %s has no labels for horizon %d (have %v)", d.Dir, h, d.Manifest.Labels.Horizons)
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	out := make([]batch.Series, len(d.Manifest.Shards))
	for i := range d.Manifest.Shards {
		s, err := d.shard(i)
		if err != nil {
			return nil, err
		}
		if out[i], err = s.Series(h); err != nil {
			return nil, err
		}
		out[i].Symbol = d.Manifest.Shards[i].Symbol
	}
	return out, nil
}

// Close unmaps every shard the dataset opened. Series, features and
// timestamps obtained from it must not be used afterwards.
func (d *Dataset) Close() error {
	d.mu.Lock()
	defer d.mu.Unlock()
	var errs []error
	for _, s := range d.shards {
		if s != nil {
			errs = append(errs, s.Close())
		}
	}
	d.shards = nil
	return errors.Join(errs...)
}

// newManifest fills the fixed parts of a manifest.
func newManifest(opt *Options) Manifest {
	return Manifest{
		Format:  Format,
		Version: Version,
		Schema:  columns(feature.Count, opt.Horizons),
		Features: Features{
			Count: feature.Count,
			Names: feature.Names,
			Doc:   FeatureDoc,
		},
		Labels: Labels{
			Horizons: opt.Horizons,
			Theta:    opt.Theta,
			Convention: "FI-2010 (Ntakaris et al. 2018): m+ = mean of the next k mids; " +
				"up if (m+ - mid)/tick > theta, down if < -theta, else flat; the last k rows of a series have no label",
			Classes: feature.ClassNames,
			Missing: -1,
		},
	}
}

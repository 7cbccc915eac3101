package shard

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/gallop-dev/gallop/data/feature"
	"github.com/gallop-dev/gallop/internal/atomicfile"
)

// Options configures Ingest.
type Options struct {
	// Workers is how many inputs are processed at once; 0 means
	// runtime.NumCPU().
	Workers int
	// Horizons are the label horizons k in rows; empty means 10, 50, 100.
	Horizons []int
	// Theta is the FI-2010 label threshold in ticks (0 is valid).
	Theta float64
	// ShardRows caps the rows of one shard; 0 means 1<<20.
	ShardRows int
	// Progress, if set, is called once per input when it is done (or
	// skipped, or failed; definition files first, once read). Calls are
	// serialized.
	Progress func(Progress)
}

// DefaultOptions are the CLI's defaults: horizons 10, 50, 100 and θ = 0.1
// tick.
func DefaultOptions() Options {
	return Options{Horizons: []int{10, 50, 100}, Theta: 0.1}
}

// Progress reports one finished input.
type Progress struct {
	Input   string // as given
	Format  string
	Bytes   int64 // input size (0 for sim)
	Rows    int64
	Shards  int
	Skipped bool // a completion marker showed it was already ingested
	Err     error
	Elapsed time.Duration
}

func (o *Options) fill() error {
	if o.Workers <= 0 {
		o.Workers = runtime.NumCPU()
	}
	if len(o.Horizons) == 0 {
		o.Horizons = []int{10, 50, 100}
	}
	for _, h := range o.Horizons {
		if h < 1 {
			return fmt.Errorf("shard: horizon %d, want >= 1", h)
		}
	}
	hs := slices.Clone(o.Horizons)
	slices.Sort(hs)
	if len(slices.Compact(hs)) != len(o.Horizons) {
		return fmt.Errorf("shard: repeated horizon in %v", o.Horizons)
	}
	if o.Theta < 0 || math.IsNaN(o.Theta) || math.IsInf(o.Theta, 0) {
		return fmt.Errorf("shard: theta %g, want a finite value >= 0", o.Theta)
	}
	if o.ShardRows <= 0 {
		o.ShardRows = 1 << 20
	}
	return nil
}

// marker is the completion record of one input, written (atomically) after
// all of its shards are durable.
type marker struct {
	Fingerprint string       `json:"fingerprint"`
	Source      Source       `json:"source"`
	Instruments []Instrument `json:"instruments"`
	Shards      []ShardInfo  `json:"shards"`
}

// fingerprint identifies everything besides the input's content that
// determines its shards. A marker with another fingerprint is stale.
func fingerprint(opt *Options, format string, defs map[uint32]definition) string {
	v := struct {
		Version   int
		Format    string
		Horizons  []int
		Theta     float64
		ShardRows int
		Features  []string
		Defs      []string `json:",omitempty"`
	}{Version, format, opt.Horizons, opt.Theta, opt.ShardRows, feature.Names, nil}
	if format == FormatDBN {
		for id, d := range defs {
			v.Defs = append(v.Defs, fmt.Sprintf("%d:%d:%s", id, d.tick, d.symbol))
		}
		slices.Sort(v.Defs)
	}
	b, _ := json.Marshal(v)
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

// emitter writes the shards of one input.
type emitter struct {
	dir   string // "" builds the series without writing them
	in    *input
	opt   *Options
	names map[string]bool
	mk    marker
}

// finish labels b's series, splits it into shards of at most ShardRows rows
// and writes them.
func (em *emitter) finish(b *builder) error {
	bt, err := b.finish(em.opt.Horizons, em.opt.Theta)
	if err != nil {
		return fmt.Errorf("%s: %w", em.in.arg, err)
	}
	em.mk.Source.Events += bt.events
	rows := bt.s.Rows()
	if rows == 0 {
		return nil
	}
	inst := bt.inst
	inst.Rows = int64(rows)
	inst.StartNs, inst.EndNs = minMax(bt.s.TsNs)
	em.mk.Instruments = append(em.mk.Instruments, inst)
	em.mk.Source.Rows += int64(rows)
	sym := strings.Trim(unsafeName.ReplaceAllString(inst.Symbol, "_"), "._")
	if sym == "" || em.names[sym] {
		sym += "-" + strconv.FormatUint(uint64(inst.ID), 10)
	}
	em.names[sym] = true
	if em.dir == "" {
		return nil // a dry run (benchmarks): build, do not write
	}
	F := feature.Count
	for part, lo := 0, 0; lo < rows; part, lo = part+1, lo+em.opt.ShardRows {
		hi := min(lo+em.opt.ShardRows, rows)
		d := &shardData{
			instrument: inst.ID,
			ts:         bt.s.TsNs[lo:hi],
			features:   bt.s.Features[lo*F : hi*F],
			f:          F,
			mid:        bt.mids[lo:hi],
			horizons:   em.opt.Horizons,
			meta: map[string]string{
				"gallop.format": Format + "/" + strconv.Itoa(Version),
				"instrument":    strconv.FormatUint(uint64(inst.ID), 10),
				"symbol":        inst.Symbol,
				"tick":          strconv.FormatInt(inst.Tick, 10),
				"tick_source":   inst.TickSource,
				"source":        em.in.name(),
				"part":          strconv.Itoa(part),
			},
		}
		info := ShardInfo{
			File:       fmt.Sprintf("%s.%s.%03d.arrow", em.in.key, sym, part),
			Rows:       int64(hi - lo),
			Instrument: inst.ID,
			Symbol:     inst.Symbol,
			Source:     em.in.name(),
			Classes:    map[string][4]int64{},
		}
		info.StartNs, info.EndNs = minMax(d.ts)
		for i, h := range em.opt.Horizons {
			l := bt.labels[i][lo:hi]
			d.labels = append(d.labels, l)
			var c [4]int64
			for _, v := range l {
				if v < 0 {
					c[3]++
				} else {
					c[v]++
				}
			}
			info.Classes[LabelColumn(h)] = c
		}
		if info.Bytes, info.SHA256, err = writeShard(filepath.Join(em.dir, info.File), d); err != nil {
			return err
		}
		em.mk.Shards = append(em.mk.Shards, info)
	}
	return nil
}

func minMax(v []int64) (lo, hi int64) {
	if len(v) == 0 {
		return 0, 0
	}
	return slices.Min(v), slices.Max(v)
}

func markerPath(dir, key string) string { return filepath.Join(dir, markerDir, key+".json") }

// loadMarker returns the input's completion marker if it is current: same
// fingerprint and every shard present at its recorded size. Shard content
// is not rehashed here (that is Verify's job).
func loadMarker(dir string, in *input, fp string) (*marker, bool) {
	b, err := os.ReadFile(markerPath(dir, in.key))
	if err != nil {
		return nil, false
	}
	var mk marker
	if json.Unmarshal(b, &mk) != nil || mk.Fingerprint != fp || mk.Source.SHA256 != in.sum {
		return nil, false
	}
	for _, s := range mk.Shards {
		st, err := os.Stat(filepath.Join(dir, s.File))
		if err != nil || st.Size() != s.Bytes {
			return nil, false
		}
	}
	return &mk, true
}

// removeTemps deletes temporary files a killed ingest left behind
// (atomicfile's ".<name>.tmp-*"). Only one ingest may write a directory at
// a time.
func removeTemps(dir string) error {
	for _, d := range []string{dir, filepath.Join(dir, markerDir)} {
		ents, err := os.ReadDir(d)
		if err != nil {
			return fmt.Errorf("shard: %w", err)
		}
		for _, e := range ents {
			if n := e.Name(); strings.HasPrefix(n, ".") && strings.Contains(n, ".tmp-") && e.Type().IsRegular() {
				if err := os.Remove(filepath.Join(d, n)); err != nil {
					return fmt.Errorf("shard: %w", err)
				}
			}
		}
	}
	return nil
}

// Ingest builds the dataset outDir from inputs: market-data files (DBN MBO,
// plain or zstd, with DBN definition files for tick sizes; LOBSTER zip
// archives; hftbacktest .gz captures) and "sim" or "sim:<events>" for the
// embedded simulator (sim.DefaultConfig with that many events per
// instrument). Formats are detected from content; an input of no known
// format or one that cannot be read fails the call before any work.
//
// Each input is rebuilt into one book per instrument, then features
// (feature.Extractor, via dataset.Builder) and FI-2010 labels for every
// horizon (computed from the rows' mids) are written as shards of at most
// ShardRows rows. Inputs are processed in parallel (Options.Workers).
//
// Ingest is resumable. Every shard is written to a temporary file, fsynced
// and renamed, so a shard file is complete or absent; when all shards of an
// input are durable, a completion marker (.ingest/<key>.json, key = the
// input's base name and content hash) is written the same way. A rerun skips
// inputs whose marker is current (same content, options and shard sizes).
// An input that fails does not stop the others: they finish and get their
// markers, Ingest returns the errors of the failed ones (each naming its
// input), and no manifest is written. Once every input has succeeded,
// dataset.json is written atomically, listing the given inputs in order,
// and the opened Dataset is returned.
//
// Memory: an input's events and feature rows are held until its last
// instrument is written.
func Ingest(ctx context.Context, inputs []string, outDir string, opt Options) (*Dataset, error) {
	if err := opt.fill(); err != nil {
		return nil, err
	}
	if len(inputs) == 0 {
		return nil, errors.New("shard: no inputs")
	}
	ins := make([]*input, len(inputs))
	seen := map[string]int{}
	for i, a := range inputs {
		in, err := detect(a)
		if err != nil {
			return nil, err
		}
		in.index = i
		id := in.arg
		if in.path != "" {
			if abs, err := filepath.Abs(in.path); err == nil {
				id = abs
			}
		}
		if j, dup := seen[id]; dup {
			return nil, fmt.Errorf("shard: input %s given twice (arguments %d and %d)", a, j+1, i+1)
		}
		seen[id] = i
		ins[i] = in
	}
	if err := os.MkdirAll(filepath.Join(outDir, markerDir), 0o755); err != nil {
		return nil, fmt.Errorf("shard: %w", err)
	}
	if err := removeTemps(outDir); err != nil {
		return nil, err
	}

	// Definitions first: DBN inputs need their ticks.
	defs := map[uint32]definition{}
	sources := make([]Source, len(ins))
	var work, defInputs []*input
	for _, in := range ins {
		if in.format != FormatDefinition {
			work = append(work, in)
			continue
		}
		if err := in.identify(); err != nil {
			return nil, err
		}
		n, err := readDefinitions(in.path, defs)
		if err != nil {
			return nil, fmt.Errorf("shard: input %s: %w", in.arg, err)
		}
		sources[in.index] = Source{Input: in.arg, Name: in.name(), Format: in.format, Bytes: in.size, SHA256: in.sum, Events: n}
		defInputs = append(defInputs, in)
	}

	markers := make([]*marker, len(ins))
	errs := make([]error, len(ins))
	var mu sync.Mutex // serializes Progress
	report := func(p Progress) {
		if opt.Progress != nil {
			mu.Lock()
			defer mu.Unlock()
			opt.Progress(p)
		}
	}
	for _, in := range defInputs {
		report(Progress{Input: in.arg, Format: in.format, Bytes: in.size})
	}
	var claimed sync.Map // key → *input: two inputs with one name and content would write the same files
	jobs := make(chan *input)
	var wg sync.WaitGroup
	for w := 0; w < min(opt.Workers, max(len(work), 1)); w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for in := range jobs {
				start := time.Now()
				mk, skipped, err := ingestOne(ctx, in, outDir, &opt, defs, &claimed)
				p := Progress{Input: in.arg, Format: in.format, Bytes: in.size, Skipped: skipped, Err: err, Elapsed: time.Since(start)}
				if err != nil {
					errs[in.index] = fmt.Errorf("input %s: %w", in.arg, err)
				} else {
					markers[in.index] = mk
					p.Rows, p.Shards = mk.Source.Rows, len(mk.Shards)
				}
				report(p)
			}
		}()
	}
dispatch:
	for _, in := range work {
		select {
		case jobs <- in:
		case <-ctx.Done():
			break dispatch
		}
	}
	close(jobs)
	wg.Wait()
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	var failed []error
	for _, e := range errs {
		if e != nil {
			failed = append(failed, e)
		}
	}
	if len(failed) > 0 {
		return nil, fmt.Errorf("shard: ingest into %s: %d of %d inputs failed (finished inputs are kept; rerun to resume):\n%w",
			outDir, len(failed), len(work), errors.Join(failed...))
	}

	man := newManifest(&opt)
	type instKey struct {
		id   uint32
		sym  string
		tick int64
	}
	instIdx := map[instKey]int{}
	for i, mk := range markers {
		if mk == nil {
			continue // a definition file
		}
		sources[i] = mk.Source
		man.Shards = append(man.Shards, mk.Shards...)
		for _, in := range mk.Instruments {
			k := instKey{in.ID, in.Symbol, in.Tick}
			j, ok := instIdx[k]
			if !ok {
				instIdx[k] = len(man.Instruments)
				man.Instruments = append(man.Instruments, in)
				continue
			}
			m := &man.Instruments[j]
			m.Rows += in.Rows
			m.StartNs, m.EndNs = min(m.StartNs, in.StartNs), max(m.EndNs, in.EndNs)
		}
	}
	man.Sources = sources
	for i, s := range man.Shards {
		man.Rows += s.Rows
		if i == 0 || s.StartNs < man.StartNs {
			man.StartNs = s.StartNs
		}
		if i == 0 || s.EndNs > man.EndNs {
			man.EndNs = s.EndNs
		}
	}
	man.Start = time.Unix(0, man.StartNs).UTC().Format(time.RFC3339Nano)
	man.End = time.Unix(0, man.EndNs).UTC().Format(time.RFC3339Nano)
	b, err := json.MarshalIndent(man, "", "  ")
	if err != nil {
		return nil, fmt.Errorf("shard: %w", err)
	}
	if err := atomicfile.WriteFile(filepath.Join(outDir, ManifestFile), append(b, '\n'), 0o644); err != nil {
		return nil, fmt.Errorf("shard: %w", err)
	}
	return Open(outDir)
}

// ingestOne processes one input, or skips it when its marker is current.
func ingestOne(ctx context.Context, in *input, dir string, opt *Options, defs map[uint32]definition, claimed *sync.Map) (*marker, bool, error) {
	if err := in.identify(); err != nil {
		return nil, false, err
	}
	if other, dup := claimed.LoadOrStore(in.key, in); dup {
		return nil, false, fmt.Errorf("same file name and content as input %s", other.(*input).arg)
	}
	fp := fingerprint(opt, in.format, defs)
	if mk, ok := loadMarker(dir, in, fp); ok {
		mk.Source.Input = in.arg
		return mk, true, nil
	}
	em := &emitter{dir: dir, in: in, opt: opt, names: map[string]bool{}}
	em.mk = marker{
		Fingerprint: fp,
		Source:      Source{Input: in.arg, Name: in.name(), Format: in.format, Bytes: in.size, SHA256: in.sum},
	}
	var err error
	switch in.format {
	case FormatSim:
		err = ingestSim(ctx, in, em)
	case FormatLOBSTER:
		err = ingestLOBSTER(ctx, in, em)
	case FormatDBN:
		err = ingestDBN(ctx, in, defs, em)
	case FormatFeed:
		err = ingestFeed(ctx, in, em)
	default:
		err = fmt.Errorf("format %s: %w", in.format, ErrUnknownFormat)
	}
	if err != nil {
		// Take back the shards this attempt wrote: without a marker they
		// would be orphans, and a rerun writes them again.
		for _, s := range em.mk.Shards {
			os.Remove(filepath.Join(dir, s.File))
		}
		return nil, false, err
	}
	b, err := json.MarshalIndent(em.mk, "", "  ")
	if err != nil {
		return nil, false, err
	}
	if err := atomicfile.WriteFile(markerPath(dir, in.key), b, 0o644); err != nil {
		return nil, false, err
	}
	return &em.mk, false, nil
}

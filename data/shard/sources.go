package shard

import (
	"archive/zip"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"github.com/gallop-dev/gallop/data/book"
	"github.com/gallop-dev/gallop/data/dbn"
	"github.com/gallop-dev/gallop/data/feed"
	"github.com/gallop-dev/gallop/data/lobster"
	"github.com/gallop-dev/gallop/data/sim"
)

// Input formats, as the manifest names them.
const (
	FormatDBN        = "dbn-mbo"
	FormatDefinition = "dbn-definition"
	FormatLOBSTER    = "lobster"
	FormatFeed       = "hftbacktest"
	FormatSim        = "sim"
)

// LOBSTERTick is the tick of LOBSTER's NASDAQ data: $0.01 in book units.
const LOBSTERTick = book.PriceScale / 100

// ErrUnknownFormat is returned (wrapped, naming the input) for an input of
// no format Ingest reads.
var ErrUnknownFormat = errors.New("unknown input format")

// input is one argument of Ingest, classified.
type input struct {
	index  int
	arg    string // as given
	path   string // file path; "" for sim
	format string
	simCfg sim.Config
	size   int64
	sum    string // SHA-256 of the content (of the resolved config for sim)
	key    string // file-name stem of its shards and marker
}

// detect classifies arg by its content: DBN by its magic ("DBN", a zstd
// frame or the legacy DBZ skippable frame), a LOBSTER zip by its member
// names, a gzip file as an hftbacktest capture, and "sim" or "sim:<events>"
// for the embedded simulator.
func detect(arg string) (*input, error) {
	in := &input{arg: arg}
	if arg == "sim" || strings.HasPrefix(arg, "sim:") {
		cfg := sim.DefaultConfig()
		if s, ok := strings.CutPrefix(arg, "sim:"); ok {
			n, err := strconv.Atoi(s)
			if err != nil || n < 1 {
				return nil, fmt.Errorf("shard: input %q: want sim:<events per instrument>, a positive integer", arg)
			}
			cfg.Events = n
		}
		in.format, in.simCfg = FormatSim, cfg
		return in, nil
	}
	in.path = arg
	f, err := os.Open(arg)
	if err != nil {
		return nil, fmt.Errorf("shard: input: %w", err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("shard: input: %w", err)
	}
	if st.IsDir() {
		return nil, fmt.Errorf("shard: input %s: is a directory: %w", arg, ErrUnknownFormat)
	}
	in.size = st.Size()
	var magic [4]byte
	n, err := io.ReadFull(f, magic[:])
	if err != nil && n == 0 && err != io.EOF {
		return nil, fmt.Errorf("shard: input %s: %w", arg, err)
	}
	m := magic[:n]
	u32 := uint32(0)
	if n == 4 {
		u32 = binary.LittleEndian.Uint32(m)
	}
	switch {
	case bytes.HasPrefix(m, []byte("DBN")), n == 4 && (u32 == 0xFD2FB528 || u32&0xFFFFFFF0 == 0x184D2A50):
		d, err := dbn.Open(arg)
		if err != nil {
			return nil, fmt.Errorf("shard: input %s: %w", arg, err)
		}
		schema := d.Metadata().Schema
		d.Close()
		switch schema {
		case dbn.SchemaMBO, dbn.SchemaNone:
			in.format = FormatDBN
		case dbn.SchemaDefinition:
			in.format = FormatDefinition
		default:
			return nil, fmt.Errorf("shard: input %s: DBN schema %v: ingest rebuilds books from mbo (and reads definition files for tick sizes)", arg, schema)
		}
	case bytes.HasPrefix(m, []byte("PK\x03\x04")):
		if err := checkLOBSTERZip(arg); err != nil {
			return nil, err
		}
		in.format = FormatLOBSTER
	case bytes.HasPrefix(m, []byte{0x1f, 0x8b}):
		in.format = FormatFeed
	case n == 0:
		return nil, fmt.Errorf("shard: input %s: empty file: %w", arg, ErrUnknownFormat)
	default:
		return nil, fmt.Errorf("shard: input %s: %w (starts with % x); want DBN MBO (.dbn, .dbn.zst), "+
			"a LOBSTER .zip, an hftbacktest .gz capture, or sim[:events]", arg, ErrUnknownFormat, m)
	}
	return in, nil
}

func checkLOBSTERZip(path string) error {
	zr, err := zip.OpenReader(path)
	if err != nil {
		return fmt.Errorf("shard: input %s: %w", path, err)
	}
	defer zr.Close()
	for _, f := range zr.File {
		if n, err := lobster.ParseName(f.Name); err == nil && n.Kind == "message" {
			return nil
		}
	}
	return fmt.Errorf("shard: input %s: a zip without a LOBSTER message file: %w", path, ErrUnknownFormat)
}

// identify hashes the input's content and sets its key.
func (in *input) identify() error {
	var stem string
	if in.format == FormatSim {
		b, err := json.Marshal(sim.Resolved(in.simCfg))
		if err != nil {
			return err
		}
		s := sha256.Sum256(b)
		in.sum = hex.EncodeToString(s[:])
		stem = "sim-" + strconv.Itoa(in.simCfg.Events)
	} else {
		n, sum, err := hashFile(in.path)
		if err != nil {
			return fmt.Errorf("shard: input %w", err)
		}
		in.size, in.sum = n, sum
		stem = fileStem(in.path)
	}
	in.key = stem + "-" + in.sum[:12]
	return nil
}

var unsafeName = regexp.MustCompile(`[^A-Za-z0-9_.+-]+`)

// fileStem is the base name without data-file extensions, made safe for a
// file name.
func fileStem(p string) string {
	s := filepath.Base(p)
	for {
		ext := strings.ToLower(path.Ext(s))
		if ext == "" || !slices.Contains([]string{".zst", ".gz", ".zip", ".dbn", ".dbz", ".csv", ".txt", ".json"}, ext) {
			break
		}
		s = s[:len(s)-len(ext)]
	}
	s = strings.Trim(unsafeName.ReplaceAllString(s, "_"), "._")
	if s == "" {
		s = "input"
	}
	return s
}

func (in *input) name() string {
	if in.path == "" {
		return in.arg
	}
	return filepath.Base(in.path)
}

// checkEvery is how many events pass between context checks.
const checkEvery = 1 << 16

// ingestSim runs the simulator: one series per instrument, every event a
// row (as dataset.Simulated builds them).
func ingestSim(ctx context.Context, in *input, em *emitter) error {
	return sim.Run(in.simCfg, func(si sim.Instrument, evs []book.Event) error {
		inst := Instrument{ID: si.ID, Symbol: si.Symbol, Tick: int64(math.Round(si.Tick * book.PriceScale)), TickSource: "sim"}
		b := newBuilder(inst, len(evs))
		for i := range evs {
			if i%checkEvery == 0 && ctx.Err() != nil {
				return ctx.Err()
			}
			if err := b.add(&evs[i]); err != nil {
				return fmt.Errorf("%s event %d: %w", si.Symbol, i, err)
			}
		}
		return em.finish(b)
	})
}

// ingestLOBSTER builds the series of a LOBSTER archive. LOBSTER ships the
// book itself: orderbook row k is the top N levels after message k, and
// row 1 seeds it. Replaying the messages cannot reproduce it (LOBSTER only
// writes messages that touch the N levels of the file, so a level that
// slides into view when a better one empties is known only from the row;
// see lobster's conformance test). So the book is set to row k after
// message k, and the message supplies the event: its time and, for
// executions, the trade's side and size, passed to the feature extractor as
// a book-neutral print (see neutral). Every book-event message (types 1-6)
// is a row when the row shows both sides; halts are not rows. With fewer
// than 10 levels in the file, features of the missing levels use feature's
// rule for absent levels.
func ingestLOBSTER(ctx context.Context, in *input, em *emitter) error {
	z, err := lobster.OpenZip(in.path)
	if err != nil {
		return err
	}
	defer z.Close()
	inst := Instrument{ID: symbolID("lobster", z.Ticker), Symbol: z.Ticker, Tick: LOBSTERTick, TickSource: "lobster"}
	b := newBuilder(inst, 1<<16)
	bk := b.bd.Book()
	var (
		m       lobster.Message
		row     lobster.Row
		ev      book.Event
		scratch []book.Level
	)
	ev.Instrument = inst.ID
	for k := 1; ; k++ {
		err1 := z.Messages.Read(&m)
		err2 := z.Orderbook.Read(&row)
		if err1 == io.EOF && err2 == io.EOF {
			break
		}
		if err1 != nil {
			return err1
		}
		if err2 != nil {
			return err2
		}
		if k%checkEvery == 0 && ctx.Err() != nil {
			return ctx.Err()
		}
		scratch = resync(bk, book.Ask, row.Asks, scratch)
		scratch = resync(bk, book.Bid, row.Bids, scratch)
		if !lobster.ToEvent(&m, &ev) {
			continue
		}
		neutral(&ev)
		if err := b.add(&ev); err != nil {
			return fmt.Errorf("%s: message %d: %w", in.path, k, err)
		}
	}
	return em.finish(b)
}

// neutral turns e into a print with no effect on the book that gives the
// same features as e: the extractor reads only the time and, for fills and
// prints, the aggressor's side and the size. A fill of a resting order on
// one side is a print whose aggressor is the other side; anything else that
// is not a print is a print of size 0 with no side (no trade).
func neutral(e *book.Event) {
	switch e.Action {
	case book.Trade:
	case book.Fill:
		e.Action = book.Trade
		if e.Side == book.Bid {
			e.Side = book.Ask
		} else {
			e.Side = book.Bid
		}
	default:
		e.Action, e.Side, e.Size = book.Trade, book.None, 0
	}
}

// resync sets side s of b to exactly the levels obs (best first).
func resync(b *book.Book, s book.Side, obs []book.Level, scratch []book.Level) []book.Level {
	scratch = scratch[:0]
	for i := 0; ; i++ {
		l, ok := b.Level(s, i)
		if !ok {
			break
		}
		scratch = append(scratch, l)
	}
	for _, l := range scratch {
		if !slices.ContainsFunc(obs, func(o book.Level) bool { return o.Price == l.Price }) {
			b.SetLevel(s, l.Price, 0, 0)
		}
	}
	for _, o := range obs {
		i := slices.IndexFunc(scratch, func(l book.Level) bool { return l.Price == o.Price })
		if i < 0 || scratch[i].Size != o.Size {
			b.SetLevel(s, o.Price, o.Size, 0)
		}
	}
	return scratch
}

// definition is what an instrument definition tells ingest.
type definition struct {
	tick   int64
	symbol string
}

// readDefinitions reads the instrument definitions of a DBN file.
func readDefinitions(path string, defs map[uint32]definition) (int64, error) {
	d, err := dbn.Open(path)
	if err != nil {
		return 0, err
	}
	defer d.Close()
	var n int64
	for {
		r, err := d.Next()
		if err == io.EOF {
			return n, nil
		}
		if err != nil {
			return n, err
		}
		if def, ok := r.(*dbn.InstrumentDef); ok {
			n++
			if def.MinPriceIncrement > 0 && def.MinPriceIncrement != dbn.UndefPrice {
				defs[def.InstrumentID] = definition{tick: def.MinPriceIncrement, symbol: def.RawSymbol}
			}
		}
	}
}

// dbnStream is one instrument's events of a DBN file, held until the tick
// is known.
type dbnStream struct {
	events []book.Event
	row    []bool // false: book only (inside a snapshot)
	tick   gcdTick
	symbol string
}

// ingestDBN rebuilds one book per instrument of a DBN MBO file. Each record
// is a row, except inside a snapshot (records flagged F_SNAPSHOT before the
// one flagged F_LAST), which only builds the book. The tick of an
// instrument comes from its definition (a definition file among the inputs
// or a definition record in the file); without one it is inferred as the
// GCD of the differences between its observed order prices (see gcdTick).
func ingestDBN(ctx context.Context, in *input, defs map[uint32]definition, em *emitter) error {
	d, err := dbn.Open(in.path)
	if err != nil {
		return err
	}
	defer d.Close()
	md := d.Metadata()
	symbols := map[uint32]string{}
	if md.STypeOut == dbn.STypeInstrumentID {
		for _, m := range md.Mappings {
			for _, iv := range m.Intervals {
				if id, err := strconv.ParseUint(iv.Symbol, 10, 32); err == nil {
					symbols[uint32(id)] = m.RawSymbol
				}
			}
		}
	}
	local := map[uint32]definition{}
	streams := map[uint32]*dbnStream{}
	var ev book.Event
	for n := 0; ; n++ {
		if n%checkEvery == 0 && ctx.Err() != nil {
			return ctx.Err()
		}
		r, err := d.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return err
		}
		switch rec := r.(type) {
		case *dbn.InstrumentDef:
			if rec.MinPriceIncrement > 0 && rec.MinPriceIncrement != dbn.UndefPrice {
				local[rec.InstrumentID] = definition{tick: rec.MinPriceIncrement, symbol: rec.RawSymbol}
			}
		case *dbn.MBO:
			if !dbn.MBOEvent(rec, &ev) {
				continue
			}
			st := streams[ev.Instrument]
			if st == nil {
				st = &dbnStream{symbol: symbols[ev.Instrument]}
				streams[ev.Instrument] = st
			}
			if (ev.Action == book.Add || ev.Action == book.Modify) && ev.Price != dbn.UndefPrice {
				st.tick.add(ev.Price)
			}
			st.events = append(st.events, ev)
			st.row = append(st.row, ev.Flags&dbn.FlagSnapshot == 0 || ev.Flags&dbn.FlagLast != 0)
		}
	}
	ids := make([]uint32, 0, len(streams))
	for id := range streams {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	for _, id := range ids {
		st := streams[id]
		inst := Instrument{ID: id, Symbol: st.symbol, Tick: st.tick.tick(), TickSource: "inferred-gcd"}
		def, ok := local[id]
		if !ok {
			def, ok = defs[id]
		}
		if ok {
			inst.Tick, inst.TickSource = def.tick, "definition"
			if inst.Symbol == "" {
				inst.Symbol = def.symbol
			}
		}
		if inst.Symbol == "" {
			inst.Symbol = strconv.FormatUint(uint64(id), 10)
		}
		if inst.Tick <= 0 {
			// Fewer than two distinct prices: the book never has two
			// sides, so no row needs a tick.
			inst.Tick = 1
		}
		b := newBuilder(inst, len(st.events))
		for i := range st.events {
			if i%checkEvery == 0 && ctx.Err() != nil {
				return ctx.Err()
			}
			var err error
			if st.row[i] {
				err = b.add(&st.events[i])
			} else {
				err = b.apply(&st.events[i])
			}
			if err != nil {
				return fmt.Errorf("%s: instrument %d event %d: %w", in.path, id, i, err)
			}
		}
		streams[id] = nil // let the events go before the next instrument
		if err := em.finish(b); err != nil {
			return err
		}
	}
	return nil
}

var dateSuffix = regexp.MustCompile(`_\d{8}$`)

// feedSymbol is the symbol an hftbacktest capture's name gives:
// btcusdt_20240808.gz → BTCUSDT.
func feedSymbol(p string) string {
	s := strings.TrimSuffix(filepath.Base(p), ".gz")
	s = dateSuffix.ReplaceAllString(s, "")
	return strings.ToUpper(s)
}

// ingestFeed rebuilds the book of an hftbacktest capture (one instrument a
// file; the symbol comes from the file name) with feed.DepthBook, which
// follows the exchange's snapshot and update-id procedure. A row is written
// per depth message once the book is synced (its level changes are applied
// together), per snapshot, and per trade print. The tick is the finest
// decimal place of the observed prices (see decimalTick).
func ingestFeed(ctx context.Context, in *input, em *emitter) error {
	r, err := feed.Open(in.path)
	if err != nil {
		return err
	}
	defer r.Close()
	sym := feedSymbol(in.path)
	db := feed.NewDepthBook()
	var (
		m      feed.Message
		events []book.Event
		row    []bool
		tick   = newDecimalTick()
		evs    []book.Event
		lv     []book.Level
	)
	add := func(e []book.Event, lastRow bool) {
		for i := range e {
			events = append(events, e[i])
			row = append(row, lastRow && i == len(e)-1)
		}
	}
	for n := 0; ; n++ {
		if n%checkEvery == 0 && ctx.Err() != nil {
			return ctx.Err()
		}
		err := r.Read(&m)
		if err == io.EOF {
			break
		}
		if err != nil {
			return err
		}
		for _, l := range m.Bids {
			tick.add(l.Price)
		}
		for _, l := range m.Asks {
			tick.add(l.Price)
		}
		for _, t := range m.Trades {
			tick.add(t.Price)
		}
		switch m.Kind {
		case feed.KindDepth, feed.KindSnapshot, feed.KindL2Book:
			if !db.Apply(&m) {
				continue
			}
			if m.Kind == feed.KindDepth {
				// A synced diff was applied as AppendEvents gives it.
				evs = feed.AppendEvents(evs[:0], &m)
			} else {
				// A snapshot (and the held diffs replayed on it): copy the
				// resulting book.
				ts := m.TsNs
				if ts == 0 {
					ts = m.RecvNs
				}
				evs = append(evs[:0], book.Event{TsNs: ts, Action: book.Clear, Flags: feed.FlagSnapshot})
				for _, s := range []book.Side{book.Bid, book.Ask} {
					lv = slices.Grow(lv[:0], db.Book.Depth(s))[:db.Book.Depth(s)]
					db.Book.Levels(s, lv)
					for _, l := range lv {
						evs = append(evs, book.Event{TsNs: ts, Price: l.Price, Size: l.Size, Action: book.Set, Side: s, Flags: feed.FlagSnapshot})
					}
				}
			}
			add(evs, db.Synced())
		case feed.KindTrade, feed.KindTrades:
			if !db.Synced() {
				continue
			}
			evs = feed.AppendEvents(evs[:0], &m)
			for i := range evs {
				add(evs[i:i+1], true)
			}
		}
	}
	inst := Instrument{ID: symbolID("feed", sym), Symbol: sym, Tick: tick.tick(), TickSource: "decimals"}
	if inst.Tick <= 0 {
		inst.Tick = 1
	}
	b := newBuilder(inst, len(events)/4)
	for i := range events {
		if i%checkEvery == 0 && ctx.Err() != nil {
			return ctx.Err()
		}
		events[i].Instrument = inst.ID
		var err error
		if row[i] {
			err = b.add(&events[i])
		} else {
			err = b.apply(&events[i])
		}
		if err != nil {
			return fmt.Errorf("%s: event %d: %w", in.path, i, err)
		}
	}
	return em.finish(b)
}

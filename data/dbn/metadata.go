package dbn

import (
	"fmt"
	"time"
)

// Metadata is the header of a DBN stream.
type Metadata struct {
	Version       uint8  // DBN version: 1, 2 or 3; 0 for legacy DBZ
	Dataset       string // e.g. "GLBX.MDP3"
	Schema        Schema // SchemaNone for mixed-schema streams
	Start         uint64 // query start, ns since the Unix epoch
	End           uint64 // query end, UndefTimestamp when unset
	Limit         uint64 // record limit of the query, 0 for none
	STypeIn       SType  // STypeNone for mixed input symbologies
	STypeOut      SType
	TsOut         bool // every record carries a trailing 8-byte gateway send time
	SymbolCstrLen int  // width of symbol fields in bytes
	Symbols       []string
	Partial       []string // symbols resolved for part of the range
	NotFound      []string
	Mappings      []SymbolMapping
}

// SymbolMapping maps a requested symbol to output symbols over date ranges.
type SymbolMapping struct {
	RawSymbol string
	Intervals []MappingInterval
}

// MappingInterval is one date range of a SymbolMapping; dates are UTC days,
// End exclusive.
type MappingInterval struct {
	Start, End time.Time
	Symbol     string
}

// metaReader walks a metadata body with bounds checks.
type metaReader struct {
	b   []byte
	pos int
	err error
}

func (r *metaReader) fail(format string, args ...any) {
	if r.err == nil {
		r.err = fmt.Errorf("%w: "+format, append([]any{ErrMetadata}, args...)...)
	}
}

func (r *metaReader) take(n int, what string) []byte {
	if r.err != nil {
		return nil
	}
	if n < 0 || n > len(r.b)-r.pos {
		r.fail("%s: need %d bytes at body offset %d, have %d", what, n, r.pos, len(r.b)-r.pos)
		return nil
	}
	s := r.b[r.pos : r.pos+n]
	r.pos += n
	return s
}

func (r *metaReader) u8(what string) uint8 {
	if s := r.take(1, what); s != nil {
		return s[0]
	}
	return 0
}

func (r *metaReader) u16(what string) uint16 {
	if s := r.take(2, what); s != nil {
		return le.Uint16(s)
	}
	return 0
}

func (r *metaReader) u32(what string) uint32 {
	if s := r.take(4, what); s != nil {
		return le.Uint32(s)
	}
	return 0
}

func (r *metaReader) u64(what string) uint64 {
	if s := r.take(8, what); s != nil {
		return le.Uint64(s)
	}
	return 0
}

// count reads a u32 element count and checks that count elements of at
// least minSize bytes each fit in the rest of the body.
func (r *metaReader) count(minSize int, what string) int {
	n := r.u32(what + " count")
	if r.err != nil {
		return 0
	}
	if uint64(n)*uint64(minSize) > uint64(len(r.b)-r.pos) {
		r.fail("%s count %d does not fit in the %d remaining bytes", what, n, len(r.b)-r.pos)
		return 0
	}
	return int(n)
}

func (r *metaReader) symbols(width int, what string) []string {
	n := r.count(width, what)
	if n == 0 {
		return nil
	}
	out := make([]string, n)
	for i := range out {
		out[i] = cstr(r.take(width, what))
	}
	return out
}

func (r *metaReader) date(what string) time.Time {
	v := r.u32(what)
	if r.err != nil {
		return time.Time{}
	}
	y, m, d := int(v/10000), time.Month(v/100%100), int(v%100)
	t := time.Date(y, m, d, 0, 0, 0, 0, time.UTC)
	if m < 1 || m > 12 || d < 1 || t.Day() != d {
		r.fail("%s: %d is not a YYYYMMDD date", what, v)
	}
	return t
}

// mappings decodes the symbol mappings section.
func (r *metaReader) mappings(width int) []SymbolMapping {
	n := r.count(width+4, "symbol mapping")
	if n == 0 {
		return nil
	}
	out := make([]SymbolMapping, n)
	for i := range out {
		m := &out[i]
		m.RawSymbol = cstr(r.take(width, "symbol mapping raw symbol"))
		k := r.count(8+width, "mapping interval")
		if r.err != nil {
			return nil
		}
		if k > 0 {
			m.Intervals = make([]MappingInterval, k)
		}
		for j := range m.Intervals {
			iv := &m.Intervals[j]
			iv.Start = r.date("mapping interval start date")
			iv.End = r.date("mapping interval end date")
			iv.Symbol = cstr(r.take(width, "mapping interval symbol"))
		}
		if r.err != nil {
			return nil
		}
	}
	return out
}

// parseMetadata decodes a DBN metadata body (everything after the 8-byte
// "DBN", version, length prelude).
func parseMetadata(version uint8, body []byte) (*Metadata, error) {
	r := &metaReader{b: body}
	m := &Metadata{Version: version}
	m.Dataset = cstr(r.take(16, "dataset"))
	m.Schema = Schema(r.u16("schema"))
	m.Start = r.u64("start")
	m.End = r.u64("end")
	m.Limit = r.u64("limit")
	if version == 1 {
		r.u64("record count") // deprecated
	}
	m.STypeIn = SType(r.u8("stype_in"))
	m.STypeOut = SType(r.u8("stype_out"))
	m.TsOut = r.u8("ts_out") != 0
	if version == 1 {
		m.SymbolCstrLen = symbolCstrLenV1
		r.take(47, "reserved")
	} else {
		m.SymbolCstrLen = int(r.u16("symbol_cstr_len"))
		r.take(53, "reserved")
		if r.err == nil && m.SymbolCstrLen == 0 {
			r.fail("symbol_cstr_len is 0")
		}
	}
	// Schema definitions are not produced by any known encoder; skip them.
	r.take(int(r.u32("schema definition length")), "schema definition")
	m.Symbols = r.symbols(m.SymbolCstrLen, "symbol")
	m.Partial = r.symbols(m.SymbolCstrLen, "partial symbol")
	m.NotFound = r.symbols(m.SymbolCstrLen, "not-found symbol")
	m.Mappings = r.mappings(m.SymbolCstrLen)
	if r.err != nil {
		return nil, r.err
	}
	return m, nil
}

// parseDBZMetadata decodes the content of the legacy DBZ skippable frame.
// varPart decompresses the zstd-compressed variable-length section.
func parseDBZMetadata(frame []byte, varPart func([]byte) ([]byte, error)) (*Metadata, error) {
	r := &metaReader{b: frame}
	magic := r.take(4, "DBZ prefix")
	if r.err != nil {
		return nil, r.err
	}
	if string(magic[:3]) != "DBZ" {
		return nil, fmt.Errorf("%w: skippable frame without DBZ prefix", ErrBadMagic)
	}
	if magic[3] != 1 {
		return nil, fmt.Errorf("%w: DBZ version %d", ErrUnsupportedVersion, magic[3])
	}
	m := &Metadata{Version: 0, SymbolCstrLen: symbolCstrLenV1}
	m.Dataset = cstr(r.take(16, "dataset"))
	m.Schema = Schema(r.u16("schema"))
	m.Start = r.u64("start")
	m.End = r.u64("end")
	m.Limit = r.u64("limit")
	r.u64("record count")
	r.u8("compression")
	m.STypeIn = SType(r.u8("stype_in"))
	m.STypeOut = SType(r.u8("stype_out"))
	r.take(39, "reserved")
	if r.err != nil {
		return nil, r.err
	}
	vb, err := varPart(r.b[r.pos:])
	if err != nil {
		return nil, fmt.Errorf("%w: DBZ symbol section: %w", ErrMetadata, err)
	}
	r = &metaReader{b: vb}
	r.take(int(r.u32("schema definition length")), "schema definition")
	m.Symbols = r.symbols(m.SymbolCstrLen, "symbol")
	m.Partial = r.symbols(m.SymbolCstrLen, "partial symbol")
	m.NotFound = r.symbols(m.SymbolCstrLen, "not-found symbol")
	m.Mappings = r.mappings(m.SymbolCstrLen)
	if r.err != nil {
		return nil, r.err
	}
	return m, nil
}

// Package dbn decodes Databento Binary Encoding (DBN) versions 1, 2 and 3,
// raw or zstd-compressed (single- or multi-frame), plus the legacy DBZ
// format, as a stream in constant memory.
//
// A stream is a metadata header followed by records. Every record starts with
// a 16-byte RecordHeader whose first byte is the record length in 4-byte
// words, so records of types this package does not know are skipped by length
// and counted (see Decoder.Skipped), never misparsed.
//
//	dec, err := dbn.Open("glbx-mdp3.mbo.dbn.zst")
//	if err != nil { ... }
//	defer dec.Close()
//	for {
//		rec, err := dec.Next()
//		if err == io.EOF {
//			break
//		} else if err != nil {
//			return err
//		}
//		switch r := rec.(type) {
//		case *dbn.MBO:
//			...
//		}
//	}
//
// Next returns a pointer to a record owned by the Decoder, valid until the
// next call; it does not allocate for market-data records (MBO, MBP, trades,
// BBO, OHLCV, statistics, status, imbalance). Definition, error, system and
// symbol-mapping records carry strings and allocate.
//
// Prices are signed fixed-point integers in units of 1e-9 (see PriceScale);
// UndefPrice marks a missing price.
//
// Memory use is fixed: a 256 KiB record buffer plus, for compressed input,
// the zstd window (frames asking for a window over 32 MiB are rejected, as a
// tiny hostile file could otherwise make the decoder allocate that much).
// Errors are *DecodeError values naming the file, the byte offset in the
// decompressed stream and the record type; a bad record length or a corrupt
// frame stops decoding, as nothing after it can be trusted.
//
// Layouts follow the published DBN specification (github.com/databento/dbn,
// Apache-2.0). Records of DBN versions 1 and 2 whose layouts differ from
// version 3 (instrument definitions, statistics, error, system and symbol
// mapping records) decode into the same Go types as version 3; fields a
// version lacks are left at their zero value or, for Stat.Quantity, at
// UndefStatQuantity.
package dbn

import (
	"errors"
	"fmt"
	"strings"
)

// Record types (RecordHeader.RType).
const (
	RTypeMBP0            uint8 = 0x00 // trades schema (market by price, depth 0)
	RTypeMBP1            uint8 = 0x01 // mbp-1 and tbbo schemas
	RTypeMBP10           uint8 = 0x0A
	RTypeOHLCVDeprecated uint8 = 0x11
	RTypeStatus          uint8 = 0x12
	RTypeInstrumentDef   uint8 = 0x13
	RTypeImbalance       uint8 = 0x14
	RTypeError           uint8 = 0x15
	RTypeSymbolMapping   uint8 = 0x16
	RTypeSystem          uint8 = 0x17
	RTypeStatistics      uint8 = 0x18
	RTypeOHLCV1S         uint8 = 0x20
	RTypeOHLCV1M         uint8 = 0x21
	RTypeOHLCV1H         uint8 = 0x22
	RTypeOHLCV1D         uint8 = 0x23
	RTypeOHLCVEOD        uint8 = 0x24
	RTypeMBO             uint8 = 0xA0
	RTypeCMBP1           uint8 = 0xB1
	RTypeCBBO1S          uint8 = 0xC0
	RTypeCBBO1M          uint8 = 0xC1
	RTypeTCBBO           uint8 = 0xC2
	RTypeBBO1S           uint8 = 0xC3
	RTypeBBO1M           uint8 = 0xC4
)

// RTypeName returns the DBN name of a record type, or "unknown".
func RTypeName(rtype uint8) string {
	switch rtype {
	case RTypeMBP0:
		return "mbp-0"
	case RTypeMBP1:
		return "mbp-1"
	case RTypeMBP10:
		return "mbp-10"
	case RTypeOHLCVDeprecated:
		return "ohlcv-deprecated"
	case RTypeStatus:
		return "status"
	case RTypeInstrumentDef:
		return "instrument-def"
	case RTypeImbalance:
		return "imbalance"
	case RTypeError:
		return "error"
	case RTypeSymbolMapping:
		return "symbol-mapping"
	case RTypeSystem:
		return "system"
	case RTypeStatistics:
		return "statistics"
	case RTypeOHLCV1S:
		return "ohlcv-1s"
	case RTypeOHLCV1M:
		return "ohlcv-1m"
	case RTypeOHLCV1H:
		return "ohlcv-1h"
	case RTypeOHLCV1D:
		return "ohlcv-1d"
	case RTypeOHLCVEOD:
		return "ohlcv-eod"
	case RTypeMBO:
		return "mbo"
	case RTypeCMBP1:
		return "cmbp-1"
	case RTypeCBBO1S:
		return "cbbo-1s"
	case RTypeCBBO1M:
		return "cbbo-1m"
	case RTypeTCBBO:
		return "tcbbo"
	case RTypeBBO1S:
		return "bbo-1s"
	case RTypeBBO1M:
		return "bbo-1m"
	}
	return "unknown"
}

// Flag bits of the Flags field of MBO, MBP, trade and BBO records.
const (
	FlagLast         uint8 = 1 << 7 // last record of an event for the instrument
	FlagTOB          uint8 = 1 << 6 // top-of-book message, not an individual order
	FlagSnapshot     uint8 = 1 << 5 // record comes from a replay or snapshot
	FlagMBP          uint8 = 1 << 4 // aggregated price level, not an individual order
	FlagBadTsRecv    uint8 = 1 << 3 // ts_recv is inaccurate
	FlagMaybeBadBook uint8 = 1 << 2 // unrecoverable gap detected in the channel
)

// Sentinels for missing values.
const (
	PriceScale        = 1_000_000_000      // price units in 1.0
	UndefPrice        = int64(1<<63 - 1)   // price not set
	UndefTimestamp    = uint64(1<<64 - 1)  // timestamp not set
	UndefStatQuantity = int64(1<<63 - 1)   // Stat.Quantity not set
	undefStatQtyV1    = int32(1<<31 - 1)   // the same in DBN v1 and v2
	HeaderSize        = 16                 // bytes in a RecordHeader
	MaxRecordSize     = 255 * lengthUnit   // largest encodable record
	lengthUnit        = 4                  // RecordHeader.Length unit in bytes
	symbolCstrLenV1   = 22                 // symbol field width in DBN v1
	symbolCstrLenV2   = 71                 // symbol field width in DBN v2 and v3
	maxVersion        = 3                  // newest DBN version decoded
	dbnMagic          = "DBN"              // first bytes of an uncompressed stream
	zstdMagic         = uint32(0xFD2FB528) // little-endian zstd frame magic
	zstdSkippableMask = uint32(0xFFFFFFF0) // skippable frames: 0x184D2A50..5F
	zstdSkippableBase = uint32(0x184D2A50) // (used by legacy DBZ metadata)
	metadataFixedLen  = 100                // fixed part of the metadata body
	maxZstdWindow     = 32 << 20           // refuse zstd frames needing a larger window
)

// Schema identifies the record schema of a stream.
type Schema uint16

// Schemas. SchemaNone marks a stream mixing several schemas.
const (
	SchemaMBO        Schema = 0
	SchemaMBP1       Schema = 1
	SchemaMBP10      Schema = 2
	SchemaTBBO       Schema = 3
	SchemaTrades     Schema = 4
	SchemaOHLCV1S    Schema = 5
	SchemaOHLCV1M    Schema = 6
	SchemaOHLCV1H    Schema = 7
	SchemaOHLCV1D    Schema = 8
	SchemaDefinition Schema = 9
	SchemaStatistics Schema = 10
	SchemaStatus     Schema = 11
	SchemaImbalance  Schema = 12
	SchemaOHLCVEOD   Schema = 13
	SchemaCMBP1      Schema = 14
	SchemaCBBO1S     Schema = 15
	SchemaCBBO1M     Schema = 16
	SchemaTCBBO      Schema = 17
	SchemaBBO1S      Schema = 18
	SchemaBBO1M      Schema = 19
	SchemaNone       Schema = 0xFFFF
)

var schemaNames = [...]string{
	"mbo", "mbp-1", "mbp-10", "tbbo", "trades", "ohlcv-1s", "ohlcv-1m",
	"ohlcv-1h", "ohlcv-1d", "definition", "statistics", "status", "imbalance",
	"ohlcv-eod", "cmbp-1", "cbbo-1s", "cbbo-1m", "tcbbo", "bbo-1s", "bbo-1m",
}

func (s Schema) String() string {
	if int(s) < len(schemaNames) {
		return schemaNames[s]
	}
	if s == SchemaNone {
		return "none"
	}
	return fmt.Sprintf("schema(%d)", uint16(s))
}

// SType is a symbology type.
type SType uint8

// Symbology types. STypeNone marks a missing value.
const (
	STypeInstrumentID  SType = 0
	STypeRawSymbol     SType = 1
	STypeSmart         SType = 2 // deprecated
	STypeContinuous    SType = 3
	STypeParent        SType = 4
	STypeNasdaqSymbol  SType = 5
	STypeCMSSymbol     SType = 6
	STypeISIN          SType = 7
	STypeUSCode        SType = 8
	STypeBBGCompID     SType = 9
	STypeBBGCompTicker SType = 10
	STypeFIGI          SType = 11
	STypeFIGITicker    SType = 12
	STypeNone          SType = 0xFF
)

var stypeNames = [...]string{
	"instrument_id", "raw_symbol", "smart", "continuous", "parent",
	"nasdaq_symbol", "cms_symbol", "isin", "us_code", "bbg_comp_id",
	"bbg_comp_ticker", "figi", "figi_ticker",
}

func (s SType) String() string {
	if int(s) < len(stypeNames) {
		return stypeNames[s]
	}
	if s == STypeNone {
		return "none"
	}
	return fmt.Sprintf("stype(%d)", uint8(s))
}

// Errors wrapped by DecodeError; test with errors.Is.
var (
	ErrBadMagic           = errors.New("not DBN data")
	ErrUnsupportedVersion = errors.New("unsupported DBN version")
	ErrMetadata           = errors.New("invalid metadata")
	ErrTruncated          = errors.New("truncated input")
	ErrBadLength          = errors.New("invalid record length")
	ErrCompression        = errors.New("corrupt zstd stream")
)

// DecodeError describes where decoding failed.
type DecodeError struct {
	File   string // file name, when known
	Offset int64  // byte offset in the decompressed stream
	RType  int    // record type of the offending record, -1 when unknown
	Err    error  // cause, wrapping one of the Err* values or an I/O error
}

func (e *DecodeError) Error() string {
	var sb strings.Builder
	sb.WriteString("dbn: ")
	if e.File != "" {
		sb.WriteString(e.File)
		sb.WriteString(": ")
	}
	fmt.Fprintf(&sb, "offset %d", e.Offset)
	if e.RType >= 0 {
		fmt.Fprintf(&sb, ": rtype 0x%02x (%s)", e.RType, RTypeName(uint8(e.RType)))
	}
	sb.WriteString(": ")
	sb.WriteString(e.Err.Error())
	return sb.String()
}

func (e *DecodeError) Unwrap() error { return e.Err }

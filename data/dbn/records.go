package dbn

import (
	"bytes"
	"encoding/binary"
)

var le = binary.LittleEndian

// RecordHeader is the common start of every record.
type RecordHeader struct {
	Length       uint8 // record length in 4-byte words, header included
	RType        uint8 // record type, one of the RType constants
	PublisherID  uint16
	InstrumentID uint32
	TsEvent      uint64 // matching-engine-received time, ns since the Unix epoch
}

// Header returns h; it makes every record type a Record.
func (h *RecordHeader) Header() *RecordHeader { return h }

// Size is the record length in bytes.
func (h *RecordHeader) Size() int { return int(h.Length) * lengthUnit }

func (h *RecordHeader) decode(b []byte) {
	_ = b[15]
	h.Length = b[0]
	h.RType = b[1]
	h.PublisherID = le.Uint16(b[2:])
	h.InstrumentID = le.Uint32(b[4:])
	h.TsEvent = le.Uint64(b[8:])
}

// Record is implemented by pointers to all record types.
type Record interface {
	Header() *RecordHeader
}

// Record sizes in bytes (without ts_out).
const (
	sizeMBO        = 56
	sizeTrade      = 48
	sizeMBP1       = 80
	sizeMBP10      = 368
	sizeBBO        = 80
	sizeCMBP1      = 80
	sizeCBBO       = 80
	sizeOHLCV      = 56
	sizeStatus     = 40
	sizeImbalance  = 112
	sizeDefV1      = 360
	sizeDefV2      = 400
	sizeDefV3      = 520
	sizeStatV1     = 64 // v1 and v2
	sizeStatV3     = 80
	sizeErrorV1    = 80
	sizeErrorV2    = 320 // v2 and v3
	sizeSystemV1   = 80
	sizeSystemV2   = 320
	sizeSymMapV1   = 80
	sizeSymMapV2   = 176
	sizeBidAskPair = 32
)

// MBO is a market-by-order event (schema mbo, rtype 0xA0).
type MBO struct {
	RecordHeader
	OrderID   uint64
	Price     int64 // 1e-9 units
	Size      uint32
	Flags     uint8
	ChannelID uint8
	Action    byte // 'A'dd, 'C'ancel, 'M'odify, clea'R', 'T'rade, 'F'ill, 'N'one
	Side      byte // 'A'sk, 'B'id, 'N'one
	TsRecv    uint64
	TsInDelta int32
	Sequence  uint32
}

func (m *MBO) decode(b []byte) {
	_ = b[sizeMBO-1]
	m.RecordHeader.decode(b)
	m.OrderID = le.Uint64(b[16:])
	m.Price = int64(le.Uint64(b[24:]))
	m.Size = le.Uint32(b[32:])
	m.Flags = b[36]
	m.ChannelID = b[37]
	m.Action = b[38]
	m.Side = b[39]
	m.TsRecv = le.Uint64(b[40:])
	m.TsInDelta = int32(le.Uint32(b[48:]))
	m.Sequence = le.Uint32(b[52:])
}

// BidAskPair is one level of an MBP book.
type BidAskPair struct {
	BidPx, AskPx int64
	BidSz, AskSz uint32
	BidCt, AskCt uint32 // order counts
}

func (p *BidAskPair) decode(b []byte) {
	_ = b[sizeBidAskPair-1]
	p.BidPx = int64(le.Uint64(b))
	p.AskPx = int64(le.Uint64(b[8:]))
	p.BidSz = le.Uint32(b[16:])
	p.AskSz = le.Uint32(b[20:])
	p.BidCt = le.Uint32(b[24:])
	p.AskCt = le.Uint32(b[28:])
}

// ConsolidatedBidAskPair is one level of a consolidated book.
type ConsolidatedBidAskPair struct {
	BidPx, AskPx int64
	BidSz, AskSz uint32
	BidPb, AskPb uint16 // publisher of the best bid and ask
}

func (p *ConsolidatedBidAskPair) decode(b []byte) {
	_ = b[sizeBidAskPair-1]
	p.BidPx = int64(le.Uint64(b))
	p.AskPx = int64(le.Uint64(b[8:]))
	p.BidSz = le.Uint32(b[16:])
	p.AskSz = le.Uint32(b[20:])
	p.BidPb = le.Uint16(b[24:])
	p.AskPb = le.Uint16(b[28:])
}

// Trade is a trade print (schema trades, rtype 0x00 "mbp-0").
type Trade struct {
	RecordHeader
	Price     int64
	Size      uint32
	Action    byte
	Side      byte // aggressor side
	Flags     uint8
	Depth     uint8
	TsRecv    uint64
	TsInDelta int32
	Sequence  uint32
}

func (m *Trade) decode(b []byte) {
	_ = b[sizeTrade-1]
	m.RecordHeader.decode(b)
	m.Price = int64(le.Uint64(b[16:]))
	m.Size = le.Uint32(b[24:])
	m.Action = b[28]
	m.Side = b[29]
	m.Flags = b[30]
	m.Depth = b[31]
	m.TsRecv = le.Uint64(b[32:])
	m.TsInDelta = int32(le.Uint32(b[40:]))
	m.Sequence = le.Uint32(b[44:])
}

// MBP1 is a book update with the top level (schemas mbp-1 and tbbo, rtype 0x01).
type MBP1 struct {
	Trade
	Levels [1]BidAskPair
}

func (m *MBP1) decode(b []byte) {
	_ = b[sizeMBP1-1]
	m.Trade.decode(b)
	m.Levels[0].decode(b[48:])
}

// MBP10 is a book update with the top ten levels (schema mbp-10, rtype 0x0A).
type MBP10 struct {
	Trade
	Levels [10]BidAskPair
}

func (m *MBP10) decode(b []byte) {
	_ = b[sizeMBP10-1]
	m.Trade.decode(b)
	for i := range m.Levels {
		m.Levels[i].decode(b[48+i*sizeBidAskPair:])
	}
}

// BBO is a subsampled top of book (schemas bbo-1s and bbo-1m).
type BBO struct {
	RecordHeader
	Price    int64 // last trade price, UndefPrice if none in the session
	Size     uint32
	Side     byte
	Flags    uint8
	TsRecv   uint64
	Sequence uint32
	Levels   [1]BidAskPair
}

func (m *BBO) decode(b []byte) {
	_ = b[sizeBBO-1]
	m.RecordHeader.decode(b)
	m.Price = int64(le.Uint64(b[16:]))
	m.Size = le.Uint32(b[24:])
	m.Side = b[29]
	m.Flags = b[30]
	m.TsRecv = le.Uint64(b[32:])
	m.Sequence = le.Uint32(b[44:])
	m.Levels[0].decode(b[48:])
}

// CMBP1 is a consolidated top-of-book update (schemas cmbp-1 and tcbbo).
type CMBP1 struct {
	RecordHeader
	Price     int64
	Size      uint32
	Action    byte
	Side      byte
	Flags     uint8
	TsRecv    uint64
	TsInDelta int32
	Levels    [1]ConsolidatedBidAskPair
}

func (m *CMBP1) decode(b []byte) {
	_ = b[sizeCMBP1-1]
	m.RecordHeader.decode(b)
	m.Price = int64(le.Uint64(b[16:]))
	m.Size = le.Uint32(b[24:])
	m.Action = b[28]
	m.Side = b[29]
	m.Flags = b[30]
	m.TsRecv = le.Uint64(b[32:])
	m.TsInDelta = int32(le.Uint32(b[40:]))
	m.Levels[0].decode(b[48:])
}

// CBBO is a subsampled consolidated top of book (schemas cbbo-1s and cbbo-1m).
type CBBO struct {
	RecordHeader
	Price  int64
	Size   uint32
	Side   byte
	Flags  uint8
	TsRecv uint64
	Levels [1]ConsolidatedBidAskPair
}

func (m *CBBO) decode(b []byte) {
	_ = b[sizeCBBO-1]
	m.RecordHeader.decode(b)
	m.Price = int64(le.Uint64(b[16:]))
	m.Size = le.Uint32(b[24:])
	m.Side = b[29]
	m.Flags = b[30]
	m.TsRecv = le.Uint64(b[32:])
	m.Levels[0].decode(b[48:])
}

// OHLCV is an open-high-low-close-volume bar (schemas ohlcv-*).
type OHLCV struct {
	RecordHeader
	Open, High, Low, Close int64
	Volume                 uint64
}

func (m *OHLCV) decode(b []byte) {
	_ = b[sizeOHLCV-1]
	m.RecordHeader.decode(b)
	m.Open = int64(le.Uint64(b[16:]))
	m.High = int64(le.Uint64(b[24:]))
	m.Low = int64(le.Uint64(b[32:]))
	m.Close = int64(le.Uint64(b[40:]))
	m.Volume = le.Uint64(b[48:])
}

// Status is a trading status update (schema status).
type Status struct {
	RecordHeader
	TsRecv                uint64
	Action                uint16
	Reason                uint16
	TradingEvent          uint16
	IsTrading             byte // 'Y', 'N' or '~'
	IsQuoting             byte
	IsShortSellRestricted byte
}

func (m *Status) decode(b []byte) {
	_ = b[sizeStatus-1]
	m.RecordHeader.decode(b)
	m.TsRecv = le.Uint64(b[16:])
	m.Action = le.Uint16(b[24:])
	m.Reason = le.Uint16(b[26:])
	m.TradingEvent = le.Uint16(b[28:])
	m.IsTrading = b[30]
	m.IsQuoting = b[31]
	m.IsShortSellRestricted = b[32]
}

// Imbalance is an auction imbalance (schema imbalance).
type Imbalance struct {
	RecordHeader
	TsRecv               uint64
	RefPrice             int64
	AuctionTime          uint64
	ContBookClrPrice     int64
	AuctInterestClrPrice int64
	SsrFillingPrice      int64
	IndMatchPrice        int64
	UpperCollar          int64
	LowerCollar          int64
	PairedQty            uint32
	TotalImbalanceQty    uint32
	MarketImbalanceQty   uint32
	UnpairedQty          uint32
	AuctionType          byte
	Side                 byte
	AuctionStatus        uint8
	FreezeStatus         uint8
	NumExtensions        uint8
	UnpairedSide         byte
	SignificantImbalance byte
}

func (m *Imbalance) decode(b []byte) {
	_ = b[sizeImbalance-1]
	m.RecordHeader.decode(b)
	m.TsRecv = le.Uint64(b[16:])
	m.RefPrice = int64(le.Uint64(b[24:]))
	m.AuctionTime = le.Uint64(b[32:])
	m.ContBookClrPrice = int64(le.Uint64(b[40:]))
	m.AuctInterestClrPrice = int64(le.Uint64(b[48:]))
	m.SsrFillingPrice = int64(le.Uint64(b[56:]))
	m.IndMatchPrice = int64(le.Uint64(b[64:]))
	m.UpperCollar = int64(le.Uint64(b[72:]))
	m.LowerCollar = int64(le.Uint64(b[80:]))
	m.PairedQty = le.Uint32(b[88:])
	m.TotalImbalanceQty = le.Uint32(b[92:])
	m.MarketImbalanceQty = le.Uint32(b[96:])
	m.UnpairedQty = le.Uint32(b[100:])
	m.AuctionType = b[104]
	m.Side = b[105]
	m.AuctionStatus = b[106]
	m.FreezeStatus = b[107]
	m.NumExtensions = b[108]
	m.UnpairedSide = b[109]
	m.SignificantImbalance = b[110]
}

// Stat is a venue statistic (schema statistics). DBN v1 and v2 carry a 32-bit
// quantity; its null value is mapped to UndefStatQuantity.
type Stat struct {
	RecordHeader
	TsRecv       uint64
	TsRef        uint64
	Price        int64
	Quantity     int64
	Sequence     uint32
	TsInDelta    int32
	StatType     uint16
	ChannelID    uint16
	UpdateAction uint8
	StatFlags    uint8
}

func (m *Stat) decodeV1(b []byte) {
	_ = b[sizeStatV1-1]
	m.RecordHeader.decode(b)
	m.TsRecv = le.Uint64(b[16:])
	m.TsRef = le.Uint64(b[24:])
	m.Price = int64(le.Uint64(b[32:]))
	q := int32(le.Uint32(b[40:]))
	m.Quantity = int64(q)
	if q == undefStatQtyV1 {
		m.Quantity = UndefStatQuantity
	}
	m.Sequence = le.Uint32(b[44:])
	m.TsInDelta = int32(le.Uint32(b[48:]))
	m.StatType = le.Uint16(b[52:])
	m.ChannelID = le.Uint16(b[54:])
	m.UpdateAction = b[56]
	m.StatFlags = b[57]
}

func (m *Stat) decodeV3(b []byte) {
	_ = b[sizeStatV3-1]
	m.RecordHeader.decode(b)
	m.TsRecv = le.Uint64(b[16:])
	m.TsRef = le.Uint64(b[24:])
	m.Price = int64(le.Uint64(b[32:]))
	m.Quantity = int64(le.Uint64(b[40:]))
	m.Sequence = le.Uint32(b[48:])
	m.TsInDelta = int32(le.Uint32(b[52:]))
	m.StatType = le.Uint16(b[56:])
	m.ChannelID = le.Uint16(b[58:])
	m.UpdateAction = b[60]
	m.StatFlags = b[61]
}

// InstrumentDef is an instrument definition (schema definition). It holds the
// union of the DBN v1, v2 and v3 layouts: TradingReferencePrice,
// TradingReferenceDate, MDSecurityTradingStatus and SettlPriceType exist only
// before v3; the Leg* fields only from v3.
type InstrumentDef struct {
	RecordHeader
	TsRecv                   uint64
	MinPriceIncrement        int64
	DisplayFactor            int64
	Expiration               uint64
	Activation               uint64
	HighLimitPrice           int64
	LowLimitPrice            int64
	MaxPriceVariation        int64
	TradingReferencePrice    int64
	UnitOfMeasureQty         int64
	MinPriceIncrementAmount  int64
	PriceRatio               int64
	StrikePrice              int64
	RawInstrumentID          uint64
	LegPrice                 int64
	LegDelta                 int64
	InstAttribValue          int32
	UnderlyingID             uint32
	MarketDepthImplied       int32
	MarketDepth              int32
	MarketSegmentID          uint32
	MaxTradeVol              uint32
	MinLotSize               int32
	MinLotSizeBlock          int32
	MinLotSizeRoundLot       int32
	MinTradeVol              uint32
	ContractMultiplier       int32
	DecayQuantity            int32
	OriginalContractSize     int32
	LegInstrumentID          uint32
	LegRatioPriceNumerator   int32
	LegRatioPriceDenominator int32
	LegRatioQtyNumerator     int32
	LegRatioQtyDenominator   int32
	LegUnderlyingID          uint32
	TradingReferenceDate     uint16
	ApplID                   int16
	MaturityYear             uint16
	DecayStartDate           uint16
	ChannelID                uint16
	LegCount                 uint16
	LegIndex                 uint16
	Currency                 string
	SettlCurrency            string
	Secsubtype               string
	RawSymbol                string
	Group                    string
	Exchange                 string
	Asset                    string
	CFI                      string
	SecurityType             string
	UnitOfMeasure            string
	Underlying               string
	StrikePriceCurrency      string
	LegRawSymbol             string
	InstrumentClass          byte
	MatchAlgorithm           byte
	MDSecurityTradingStatus  uint8
	MainFraction             uint8
	PriceDisplayFormat       uint8
	SettlPriceType           uint8
	SubFraction              uint8
	UnderlyingProduct        uint8
	SecurityUpdateAction     byte
	MaturityMonth            uint8
	MaturityDay              uint8
	MaturityWeek             uint8
	UserDefinedInstrument    byte
	ContractMultiplierUnit   int8
	FlowScheduleType         int8
	TickRule                 uint8
	LegInstrumentClass       byte
	LegSide                  byte
}

// cstr returns the NUL-terminated string at the start of b.
func cstr(b []byte) string {
	if i := bytes.IndexByte(b, 0); i >= 0 {
		b = b[:i]
	}
	return string(b)
}

// decodeCommon decodes the fields at the same offsets in v1 and v2.
func (m *InstrumentDef) decodeCommonV1V2(b []byte) {
	m.RecordHeader.decode(b)
	m.TsRecv = le.Uint64(b[16:])
	m.MinPriceIncrement = int64(le.Uint64(b[24:]))
	m.DisplayFactor = int64(le.Uint64(b[32:]))
	m.Expiration = le.Uint64(b[40:])
	m.Activation = le.Uint64(b[48:])
	m.HighLimitPrice = int64(le.Uint64(b[56:]))
	m.LowLimitPrice = int64(le.Uint64(b[64:]))
	m.MaxPriceVariation = int64(le.Uint64(b[72:]))
	m.TradingReferencePrice = int64(le.Uint64(b[80:]))
	m.UnitOfMeasureQty = int64(le.Uint64(b[88:]))
	m.MinPriceIncrementAmount = int64(le.Uint64(b[96:]))
	m.PriceRatio = int64(le.Uint64(b[104:]))
	m.TradingReferenceDate = le.Uint16(b[176:])
	m.ApplID = int16(le.Uint16(b[178:]))
	m.MaturityYear = le.Uint16(b[180:])
	m.DecayStartDate = le.Uint16(b[182:])
	m.ChannelID = le.Uint16(b[184:])
	m.Currency = cstr(b[186:190])
	m.SettlCurrency = cstr(b[190:194])
	m.Secsubtype = cstr(b[194:200])
	m.LegPrice, m.LegDelta = 0, 0
	m.LegInstrumentID, m.LegUnderlyingID = 0, 0
	m.LegRatioPriceNumerator, m.LegRatioPriceDenominator = 0, 0
	m.LegRatioQtyNumerator, m.LegRatioQtyDenominator = 0, 0
	m.LegCount, m.LegIndex = 0, 0
	m.LegRawSymbol = ""
	m.LegInstrumentClass, m.LegSide = 0, 0
}

func (m *InstrumentDef) decodeV1(b []byte) {
	_ = b[sizeDefV1-1]
	m.decodeCommonV1V2(b)
	m.InstAttribValue = int32(le.Uint32(b[112:]))
	m.UnderlyingID = le.Uint32(b[116:])
	m.RawInstrumentID = uint64(le.Uint32(b[120:]))
	m.MarketDepthImplied = int32(le.Uint32(b[124:]))
	m.MarketDepth = int32(le.Uint32(b[128:]))
	m.MarketSegmentID = le.Uint32(b[132:])
	m.MaxTradeVol = le.Uint32(b[136:])
	m.MinLotSize = int32(le.Uint32(b[140:]))
	m.MinLotSizeBlock = int32(le.Uint32(b[144:]))
	m.MinLotSizeRoundLot = int32(le.Uint32(b[148:]))
	m.MinTradeVol = le.Uint32(b[152:])
	m.ContractMultiplier = int32(le.Uint32(b[160:]))
	m.DecayQuantity = int32(le.Uint32(b[164:]))
	m.OriginalContractSize = int32(le.Uint32(b[168:]))
	m.RawSymbol = cstr(b[200:222])
	m.Group = cstr(b[222:243])
	m.Exchange = cstr(b[243:248])
	m.Asset = cstr(b[248:255])
	m.CFI = cstr(b[255:262])
	m.SecurityType = cstr(b[262:269])
	m.UnitOfMeasure = cstr(b[269:300])
	m.Underlying = cstr(b[300:321])
	m.StrikePriceCurrency = cstr(b[321:325])
	m.InstrumentClass = b[325]
	m.StrikePrice = int64(le.Uint64(b[328:]))
	m.decodeTail(b[342:357], true)
}

func (m *InstrumentDef) decodeV2(b []byte) {
	_ = b[sizeDefV2-1]
	m.decodeCommonV1V2(b)
	m.StrikePrice = int64(le.Uint64(b[112:]))
	m.InstAttribValue = int32(le.Uint32(b[120:]))
	m.UnderlyingID = le.Uint32(b[124:])
	m.RawInstrumentID = uint64(le.Uint32(b[128:]))
	m.MarketDepthImplied = int32(le.Uint32(b[132:]))
	m.MarketDepth = int32(le.Uint32(b[136:]))
	m.MarketSegmentID = le.Uint32(b[140:])
	m.MaxTradeVol = le.Uint32(b[144:])
	m.MinLotSize = int32(le.Uint32(b[148:]))
	m.MinLotSizeBlock = int32(le.Uint32(b[152:]))
	m.MinLotSizeRoundLot = int32(le.Uint32(b[156:]))
	m.MinTradeVol = le.Uint32(b[160:])
	m.ContractMultiplier = int32(le.Uint32(b[164:]))
	m.DecayQuantity = int32(le.Uint32(b[168:]))
	m.OriginalContractSize = int32(le.Uint32(b[172:]))
	m.RawSymbol = cstr(b[200:271])
	m.Group = cstr(b[271:292])
	m.Exchange = cstr(b[292:297])
	m.Asset = cstr(b[297:304])
	m.CFI = cstr(b[304:311])
	m.SecurityType = cstr(b[311:318])
	m.UnitOfMeasure = cstr(b[318:349])
	m.Underlying = cstr(b[349:370])
	m.StrikePriceCurrency = cstr(b[370:374])
	m.InstrumentClass = b[374]
	m.decodeTail(b[375:390], true)
}

// decodeTail decodes the trailing one-byte fields, which have the same order
// from match_algorithm to tick_rule in v1 and v2 (withStatus) and in v3
// without md_security_trading_status and settl_price_type.
func (m *InstrumentDef) decodeTail(b []byte, withStatus bool) {
	i := 0
	next := func() uint8 { v := b[i]; i++; return v }
	m.MatchAlgorithm = next()
	m.MDSecurityTradingStatus = 0
	if withStatus {
		m.MDSecurityTradingStatus = next()
	}
	m.MainFraction = next()
	m.PriceDisplayFormat = next()
	m.SettlPriceType = 0
	if withStatus {
		m.SettlPriceType = next()
	}
	m.SubFraction = next()
	m.UnderlyingProduct = next()
	m.SecurityUpdateAction = next()
	m.MaturityMonth = next()
	m.MaturityDay = next()
	m.MaturityWeek = next()
	m.UserDefinedInstrument = next()
	m.ContractMultiplierUnit = int8(next())
	m.FlowScheduleType = int8(next())
	m.TickRule = next()
}

func (m *InstrumentDef) decodeV3(b []byte) {
	_ = b[sizeDefV3-1]
	m.RecordHeader.decode(b)
	m.TsRecv = le.Uint64(b[16:])
	m.MinPriceIncrement = int64(le.Uint64(b[24:]))
	m.DisplayFactor = int64(le.Uint64(b[32:]))
	m.Expiration = le.Uint64(b[40:])
	m.Activation = le.Uint64(b[48:])
	m.HighLimitPrice = int64(le.Uint64(b[56:]))
	m.LowLimitPrice = int64(le.Uint64(b[64:]))
	m.MaxPriceVariation = int64(le.Uint64(b[72:]))
	m.TradingReferencePrice = 0
	m.UnitOfMeasureQty = int64(le.Uint64(b[80:]))
	m.MinPriceIncrementAmount = int64(le.Uint64(b[88:]))
	m.PriceRatio = int64(le.Uint64(b[96:]))
	m.StrikePrice = int64(le.Uint64(b[104:]))
	m.RawInstrumentID = le.Uint64(b[112:])
	m.LegPrice = int64(le.Uint64(b[120:]))
	m.LegDelta = int64(le.Uint64(b[128:]))
	m.InstAttribValue = int32(le.Uint32(b[136:]))
	m.UnderlyingID = le.Uint32(b[140:])
	m.MarketDepthImplied = int32(le.Uint32(b[144:]))
	m.MarketDepth = int32(le.Uint32(b[148:]))
	m.MarketSegmentID = le.Uint32(b[152:])
	m.MaxTradeVol = le.Uint32(b[156:])
	m.MinLotSize = int32(le.Uint32(b[160:]))
	m.MinLotSizeBlock = int32(le.Uint32(b[164:]))
	m.MinLotSizeRoundLot = int32(le.Uint32(b[168:]))
	m.MinTradeVol = le.Uint32(b[172:])
	m.ContractMultiplier = int32(le.Uint32(b[176:]))
	m.DecayQuantity = int32(le.Uint32(b[180:]))
	m.OriginalContractSize = int32(le.Uint32(b[184:]))
	m.LegInstrumentID = le.Uint32(b[188:])
	m.LegRatioPriceNumerator = int32(le.Uint32(b[192:]))
	m.LegRatioPriceDenominator = int32(le.Uint32(b[196:]))
	m.LegRatioQtyNumerator = int32(le.Uint32(b[200:]))
	m.LegRatioQtyDenominator = int32(le.Uint32(b[204:]))
	m.LegUnderlyingID = le.Uint32(b[208:])
	m.TradingReferenceDate = 0
	m.ApplID = int16(le.Uint16(b[212:]))
	m.MaturityYear = le.Uint16(b[214:])
	m.DecayStartDate = le.Uint16(b[216:])
	m.ChannelID = le.Uint16(b[218:])
	m.LegCount = le.Uint16(b[220:])
	m.LegIndex = le.Uint16(b[222:])
	m.Currency = cstr(b[224:228])
	m.SettlCurrency = cstr(b[228:232])
	m.Secsubtype = cstr(b[232:238])
	m.RawSymbol = cstr(b[238:309])
	m.Group = cstr(b[309:330])
	m.Exchange = cstr(b[330:335])
	m.Asset = cstr(b[335:346])
	m.CFI = cstr(b[346:353])
	m.SecurityType = cstr(b[353:360])
	m.UnitOfMeasure = cstr(b[360:391])
	m.Underlying = cstr(b[391:412])
	m.StrikePriceCurrency = cstr(b[412:416])
	m.LegRawSymbol = cstr(b[416:487])
	m.InstrumentClass = b[487]
	m.decodeTail(b[488:501], false)
	m.LegInstrumentClass = b[501]
	m.LegSide = b[502]
}

// ErrorMsg is an error from the live gateway.
type ErrorMsg struct {
	RecordHeader
	Err    string
	Code   uint8 // v2 and later
	IsLast bool  // v2 and later; true in v1
}

func (m *ErrorMsg) decodeV1(b []byte) {
	_ = b[sizeErrorV1-1]
	m.RecordHeader.decode(b)
	m.Err = cstr(b[16:80])
	m.Code, m.IsLast = 0, true
}

func (m *ErrorMsg) decodeV2(b []byte) {
	_ = b[sizeErrorV2-1]
	m.RecordHeader.decode(b)
	m.Err = cstr(b[16:318])
	m.Code = b[318]
	m.IsLast = b[319] != 0
}

// SystemMsg is a non-error gateway message, also used for heartbeats.
type SystemMsg struct {
	RecordHeader
	Msg  string
	Code uint8 // v2 and later
}

func (m *SystemMsg) decodeV1(b []byte) {
	_ = b[sizeSystemV1-1]
	m.RecordHeader.decode(b)
	m.Msg = cstr(b[16:80])
	m.Code = 0
}

func (m *SystemMsg) decodeV2(b []byte) {
	_ = b[sizeSystemV2-1]
	m.RecordHeader.decode(b)
	m.Msg = cstr(b[16:319])
	m.Code = b[319]
}

// SymbolMappingMsg maps a symbol of one symbology to another (live data).
type SymbolMappingMsg struct {
	RecordHeader
	STypeIn        SType // STypeNone in v1
	STypeInSymbol  string
	STypeOut       SType // STypeNone in v1
	STypeOutSymbol string
	StartTs        uint64
	EndTs          uint64
}

func (m *SymbolMappingMsg) decodeV1(b []byte) {
	_ = b[sizeSymMapV1-1]
	m.RecordHeader.decode(b)
	m.STypeIn, m.STypeOut = STypeNone, STypeNone
	m.STypeInSymbol = cstr(b[16:38])
	m.STypeOutSymbol = cstr(b[38:60])
	m.StartTs = le.Uint64(b[64:])
	m.EndTs = le.Uint64(b[72:])
}

func (m *SymbolMappingMsg) decodeV2(b []byte) {
	_ = b[sizeSymMapV2-1]
	m.RecordHeader.decode(b)
	m.STypeIn = SType(b[16])
	m.STypeInSymbol = cstr(b[17:88])
	m.STypeOut = SType(b[88])
	m.STypeOutSymbol = cstr(b[89:160])
	m.StartTs = le.Uint64(b[160:])
	m.EndTs = le.Uint64(b[168:])
}

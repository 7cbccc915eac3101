package lobster

import (
	"archive/zip"
	"errors"
	"fmt"
	"io"
	"path"
	"time"
)

// Zip is an open LOBSTER zip archive holding one message file and its
// orderbook file (as lobsterdata.com ships them). Both readers stream from
// the archive; nothing is extracted to disk.
type Zip struct {
	Ticker     string
	Date       time.Time     // trading day, 00:00 UTC (a calendar date)
	Start, End time.Duration // requested window, after midnight
	Levels     int

	Messages  *MessageReader
	Orderbook *OrderbookReader

	// MessageFile and OrderbookFile are the archive members being read.
	MessageFile, OrderbookFile string

	zr      *zip.ReadCloser
	closers []io.Closer
}

// OpenZip opens the LOBSTER archive at path. Message times are based on
// NewYorkMidnight of the date in the file names.
func OpenZip(path string) (*Zip, error) {
	zr, err := zip.OpenReader(path)
	if err != nil {
		return nil, fmt.Errorf("lobster: %w", err)
	}
	z, err := openZip(zr, path)
	if err != nil {
		zr.Close()
		return nil, err
	}
	return z, nil
}

func openZip(zr *zip.ReadCloser, zipPath string) (*Zip, error) {
	var msg, ob *zip.File
	var msgName, obName Name
	for _, f := range zr.File {
		n, err := ParseName(path.Base(f.Name))
		if err != nil {
			continue // the readme and anything else
		}
		switch {
		case n.Kind == "message" && msg == nil:
			msg, msgName = f, n
		case n.Kind == "orderbook" && ob == nil:
			ob, obName = f, n
		case n.Kind == "message", n.Kind == "orderbook":
			return nil, fmt.Errorf("lobster: %s: more than one %s file", zipPath, n.Kind)
		}
	}
	if msg == nil || ob == nil {
		return nil, fmt.Errorf("lobster: %s: want one message and one orderbook file", zipPath)
	}
	if msgName.Ticker != obName.Ticker || !msgName.Date.Equal(obName.Date) ||
		msgName.Start != obName.Start || msgName.End != obName.End || msgName.Levels != obName.Levels {
		return nil, fmt.Errorf("lobster: %s: %s and %s do not match", zipPath, msg.Name, ob.Name)
	}
	z := &Zip{
		Ticker:        msgName.Ticker,
		Date:          msgName.Date,
		Start:         msgName.Start,
		End:           msgName.End,
		Levels:        msgName.Levels,
		MessageFile:   msg.Name,
		OrderbookFile: ob.Name,
		zr:            zr,
	}
	mr, err := msg.Open()
	if err != nil {
		return nil, fmt.Errorf("lobster: %s: %s: %w", zipPath, msg.Name, err)
	}
	z.closers = append(z.closers, mr)
	or, err := ob.Open()
	if err != nil {
		mr.Close()
		return nil, fmt.Errorf("lobster: %s: %s: %w", zipPath, ob.Name, err)
	}
	z.closers = append(z.closers, or)
	// Errors name the member inside the archive: "path/x.zip/member.csv:12: ...".
	z.Messages = NewMessageReader(mr, zipPath+"/"+msg.Name, NewYorkMidnight(z.Date))
	z.Orderbook = NewOrderbookReader(or, zipPath+"/"+ob.Name, z.Levels)
	return z, nil
}

// Close closes the archive.
func (z *Zip) Close() error {
	var errs []error
	for _, c := range z.closers {
		errs = append(errs, c.Close())
	}
	errs = append(errs, z.zr.Close())
	return errors.Join(errs...)
}

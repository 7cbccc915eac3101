package lobster

import (
	"bufio"
	"bytes"
	"io"
	"path/filepath"
	"testing"
)

// seedLines adds the first lines of every sample message file, and a few
// hand-written edge cases, to the fuzz corpus.
func seedLines(f *testing.F) {
	for _, s := range []string{
		"34200.015105074,4,15818974,4,5794000,1",
		"34200.113246707,5,0,1,5795100,1",
		"36023,7,0,0,-1,-1",
		"34200.05,2,21748178,200,2239900,-1",
		"1.0000000019,1,1,1,1,1",
		"999999999.999999999,3,999999999999999999,0,-92233720368547,-1",
		"1,1,1,1,1,1,1",
		"",
	} {
		f.Add([]byte(s))
	}
	m, _ := filepath.Glob(filepath.Join(sampleDir(f), "LOBSTER_SampleFile_*.zip"))
	for _, path := range m {
		z, err := OpenZip(path)
		if err != nil {
			continue
		}
		sc := bufio.NewScanner(io.LimitReader(z.Messages.lr.br, 4096))
		for sc.Scan() {
			f.Add(bytes.Clone(sc.Bytes()))
		}
		z.Close()
	}
}

// FuzzParseMessage checks the hand-written message parser against the
// regexp+strconv reference: same acceptance, same failing column, same
// values.
func FuzzParseMessage(f *testing.F) {
	seedLines(f)
	f.Fuzz(func(t *testing.T, line []byte) {
		var got, want Message
		col, err := parseMessage(line, 1e18, &got)
		rcol, rerr := parseMessageStrconv(line, 1e18, &want)
		if (err == nil) != (rerr == nil) || col != rcol {
			t.Fatalf("%q: got col %d %v, reference col %d %v", line, col, err, rcol, rerr)
		}
		if err == nil && got != want {
			t.Fatalf("%q: got %+v, reference %+v", line, got, want)
		}
		// The reader must agree with the line parser and never panic, with
		// or without a trailing CRLF.
		r := NewMessageReader(bytes.NewReader(append(bytes.Clone(line), "\r\n"...)), "fuzz", 1e18)
		var m Message
		if rerr := r.Read(&m); bytes.IndexByte(line, '\n') < 0 && (rerr == nil) != (err == nil) {
			t.Fatalf("%q: reader %v, parser %v", line, rerr, err)
		}
	})
}

// FuzzOrderbookRow feeds arbitrary rows to the orderbook reader: no panics,
// and accepted rows are well formed.
func FuzzOrderbookRow(f *testing.F) {
	f.Add([]byte("5802300,100,5794000,496,5804300,100,5787000,400"), 2)
	f.Add([]byte("9999999999,0,5794000,496,9999999999,0,-9999999999,0"), 2)
	f.Add([]byte("5802300,100,5794000,496"), 1)
	f.Fuzz(func(t *testing.T, line []byte, levels int) {
		if levels < 1 || levels > 50 {
			return
		}
		r := NewOrderbookReader(bytes.NewReader(line), "fuzz", levels)
		var row Row
		for r.Read(&row) == nil {
			if len(row.Asks) > levels || len(row.Bids) > levels {
				t.Fatalf("%q: %d/%d levels", line, len(row.Asks), len(row.Bids))
			}
			for _, l := range append(row.Asks, row.Bids...) {
				if l.Size <= 0 || l.Price <= 0 {
					t.Fatalf("%q: level %+v", line, l)
				}
			}
		}
	})
}

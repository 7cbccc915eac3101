package feed

import (
	"bytes"
	"compress/gzip"
	"io"
	"os"
	"path/filepath"
	"testing"
)

func loadFeed(b *testing.B, rel string) []byte {
	b.Helper()
	f, err := os.Open(filepath.Join(dataDir(b), rel))
	if err != nil {
		b.Skip(err)
	}
	defer f.Close()
	zr, err := gzip.NewReader(f)
	if err != nil {
		b.Fatal(err)
	}
	data, err := io.ReadAll(zr)
	if err != nil {
		b.Fatal(err)
	}
	return data
}

func benchDecode(b *testing.B, rel string, rebuild bool) {
	data := loadFeed(b, rel)
	b.SetBytes(int64(len(data)))
	b.ReportAllocs()
	var m Message
	n := 0
	for b.Loop() {
		r := NewReader(bytes.NewReader(data), rel)
		d := NewDepthBook()
		for {
			err := r.Read(&m)
			if err == io.EOF {
				break
			}
			if err != nil {
				b.Fatal(err)
			}
			if rebuild {
				d.Apply(&m)
			}
			n++
		}
	}
	b.ReportMetric(float64(n)/b.Elapsed().Seconds(), "lines/s")
}

func BenchmarkDecodeSpot(b *testing.B)  { benchDecode(b, "spot/btcusdt_20240808.gz", false) }
func BenchmarkDecodeCM(b *testing.B)    { benchDecode(b, "cm/btcusd_perp_20240808.gz", false) }
func BenchmarkRebuildSpot(b *testing.B) { benchDecode(b, "spot/btcusdt_20240808.gz", true) }
func BenchmarkRebuildCM(b *testing.B)   { benchDecode(b, "cm/btcusd_perp_20240808.gz", true) }

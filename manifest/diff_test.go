package manifest

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"
)

// fixedManifest returns a deterministic manifest; each call returns a fresh
// deep copy.
func fixedManifest(runID string, start time.Time) *Manifest {
	return &Manifest{
		SchemaVersion: SchemaVersion,
		RunID:         runID,
		Code:          Code{Commit: "1111111111111111111111111111111111111111", Branch: "main"},
		Toolchain: Toolchain{
			GoVersion: "go1.26.8",
			Main:      Module{Path: "github.com/gallop-dev/gallop", Version: "(devel)"},
			Modules: []Module{
				{Path: "github.com/gomlx/go-xla", Version: "v0.4.1", Sum: "h1:xla="},
				{Path: "github.com/gomlx/gomlx", Version: "v0.28.2", Sum: "h1:old="},
			},
			Settings: map[string]string{"CGO_ENABLED": "1"},
		},
		Host:   Host{Hostname: "box", OS: "linux", Arch: "amd64", NumCPU: 16, GOMAXPROCS: 16},
		Env:    map[string]string{"XLA_FLAGS": "--xla_gpu_deterministic_ops=true"},
		Config: json.RawMessage(`{"optimizer":{"name":"adam","lr":0.001},"layers":[64,64],"api_key":"sk-a"}`),
		Seeds:  map[string]uint64{"init": 1, "shuffle": 2},
		Data: Data{
			ManifestSHA256: "aa",
			Files:          []DataFile{{Name: "shard-0.bin", SHA256: "s0", Size: 10}, {Name: "shard-1.bin", SHA256: "s1", Size: 11}},
		},
		World:   World{Size: 1},
		Outcome: Outcome{Start: start, End: start.Add(time.Hour), Status: StatusOK, Metrics: Metrics{"loss": 0.5}},
	}
}

var t0 = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

func TestDiffIdentical(t *testing.T) {
	a, b := fixedManifest("run-a", t0), fixedManifest("run-b", t0.Add(24*time.Hour))
	if d := Diff(a, b); len(d) != 0 {
		t.Errorf("Diff of identical runs = %v", d)
	}
	d := DiffOptions{IncludeTimes: true}.Diff(a, b)
	var fields []string
	for _, x := range d {
		fields = append(fields, x.Section+"."+x.Field)
	}
	if got, want := strings.Join(fields, " "), "run.run_id outcome.end outcome.start"; got != want {
		t.Errorf("Diff with times = %s, want %s", got, want)
	}
	if d := Diff(a, a); len(d) != 0 {
		t.Errorf("Diff(a, a) = %v", d)
	}
}

func TestDiffChanges(t *testing.T) {
	a, b := fixedManifest("run-a", t0), fixedManifest("run-b", t0)
	b.Config = json.RawMessage(`{"layers":[64,64],"api_key":"sk-b","optimizer":{"lr":0.0003,"name":"adam"}}`)
	b.Toolchain.Modules[1].Version = "v0.29.0"
	b.Seeds["shuffle"] = 3

	got := Diff(a, b)
	want := []Difference{
		{Section: "toolchain", Field: "modules[github.com/gomlx/gomlx].version", A: "v0.28.2", B: "v0.29.0"},
		{Section: "config", Field: "optimizer.lr", A: "0.001", B: "0.0003"},
		{Section: "seeds", Field: "shuffle", A: "2", B: "3"},
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("Diff =\n%v\nwant\n%v", got, want)
	}
	for _, d := range got {
		if strings.Contains(d.A+d.B, "sk-") {
			t.Errorf("Diff shows a secret: %v", d)
		}
	}
}

func TestDiffNested(t *testing.T) {
	a, b := fixedManifest("r", t0), fixedManifest("r", t0)
	// Inserting a module or data file must not shift the others.
	b.Toolchain.Modules = append([]Module{{Path: "github.com/aaa/new", Version: "v1.0.0"}}, b.Toolchain.Modules...)
	b.Data.Files[1].SHA256 = "s1-changed"
	b.Host.Device = &Device{Backend: "xla:cuda"}
	b.Outcome.Metrics["loss"] = 0.25
	b.Outcome.Metrics["acc"] = 0.9
	b.Config = json.RawMessage(`{"optimizer":{"name":"adam","lr":0.001},"layers":[64,64,32],"api_key":"sk-a"}`)
	b.Env["GOGC"] = "400"

	var lines []string
	for _, d := range Diff(a, b) {
		lines = append(lines, d.Section+" "+d.Field+" "+d.A+" "+d.B)
	}
	want := []string{
		"toolchain modules[github.com/aaa/new].version (absent) v1.0.0",
		"host device.backend (absent) xla:cuda",
		"env GOGC (absent) 400",
		"config layers[2] (absent) 32",
		"data files[shard-1.bin].sha256 s1 s1-changed",
		"outcome metrics.acc (absent) 0.9",
		"outcome metrics.loss 0.5 0.25",
	}
	if got := strings.Join(lines, "\n"); got != strings.Join(want, "\n") {
		t.Errorf("Diff =\n%s\nwant\n%s", got, strings.Join(want, "\n"))
	}
	if d := Diff(nil, nil); len(d) != 0 {
		t.Errorf("Diff(nil, nil) = %v", d)
	}
}

func TestNaturalCompare(t *testing.T) {
	for _, tc := range []struct {
		a, b string
		want int
	}{
		{"layers[2]", "layers[10]", -1},
		{"layers[10]", "layers[2]", 1},
		{"a", "b", -1},
		{"x1", "x1", 0},
		{"x", "x1", -1},
	} {
		if got := naturalCompare(tc.a, tc.b); got != tc.want {
			t.Errorf("naturalCompare(%q, %q) = %d, want %d", tc.a, tc.b, got, tc.want)
		}
	}
}

func TestFormatDiff(t *testing.T) {
	var buf bytes.Buffer
	if err := FormatDiff(&buf, nil); err != nil || buf.String() != "no differences\n" {
		t.Errorf("FormatDiff(nil) = %q, %v", buf.String(), err)
	}
	buf.Reset()
	diffs := []Difference{
		{"toolchain", "modules[github.com/gomlx/gomlx].version", "v0.28.2", "v0.29.0"},
		{"config", "lr", "0.001", "0.0003"},
		{"env", "XLA_FLAGS", "a\tb", Absent},
	}
	if err := FormatDiff(&buf, diffs); err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSuffix(buf.String(), "\n"), "\n")
	if len(lines) != 4 {
		t.Fatalf("FormatDiff printed %d lines:\n%s", len(lines), buf.String())
	}
	// Columns line up: the A column starts at the same offset on every line.
	col := strings.Index(lines[0], "A ")
	for i, want := range []string{"v0.28.2", "0.001", `"a\tb"`} {
		if got := strings.Index(lines[i+1], want); got != col {
			t.Errorf("line %d: %q at column %d, want %d:\n%s", i+1, want, got, col, buf.String())
		}
	}
}

func TestCompatible(t *testing.T) {
	rec, cur := fixedManifest("a", t0), fixedManifest("b", t0)
	if why := Compatible(rec, cur); len(why) != 0 {
		t.Errorf("identical manifests incompatible: %q", why)
	}

	cur.Code.Commit = "2222222222222222222222222222222222222222"
	cur.Data.Files[0].SHA256 = "s0-new"
	why := Compatible(rec, cur)
	want := []string{
		"code revision differs: recorded 1111111111111111111111111111111111111111 (main), current 2222222222222222222222222222222222222222 (main)",
		"data file shard-0.bin differs: recorded sha256 s0 (10 bytes), current s0-new (10 bytes)",
	}
	if strings.Join(why, "\n") != strings.Join(want, "\n") {
		t.Errorf("Compatible =\n%s\nwant\n%s", strings.Join(why, "\n"), strings.Join(want, "\n"))
	}

	cur = fixedManifest("b", t0)
	cur.Code.Dirty, cur.Code.DiffSHA256 = true, "d1"
	cur.Toolchain.GoVersion = "go1.27"
	cur.Toolchain.Modules[0].Version = "v0.5.0"
	cur.Data.ManifestSHA256 = "bb"
	cur.Data.Files = cur.Data.Files[:1]
	cur.Data.SampleOrderSHA256 = "order"
	why = Compatible(rec, cur)
	for _, w := range []string{
		"uncommitted changes differ: recorded clean, current dirty, diff sha256 d1",
		"Go version differs: recorded go1.26.8, current go1.27",
		"module github.com/gomlx/go-xla differs: recorded v0.4.1 h1:xla=, current v0.5.0 h1:xla=",
		"dataset manifest hash differs: recorded aa, current bb",
		"data file shard-1.bin is missing from the current data (recorded sha256 s1)",
		"first-epoch sample order differs: recorded (absent), current order",
	} {
		if !contains(why, w) {
			t.Errorf("Compatible lacks %q; got\n%s", w, strings.Join(why, "\n"))
		}
	}
	if len(why) != 6 {
		t.Errorf("Compatible gave %d reasons, want 6:\n%s", len(why), strings.Join(why, "\n"))
	}

	rec, cur = fixedManifest("a", t0), fixedManifest("b", t0)
	rec.Code.Dirty, rec.Code.Untracked = true, []UntrackedFile{{Path: "w.bin", Size: 3, SHA256: "h1", Omitted: "binary"}, {Path: ".env", Size: 9, Omitted: omittedSecret}}
	cur.Code.Dirty, cur.Code.Untracked = true, []UntrackedFile{{Path: "w.bin", Size: 3, SHA256: "h2", Omitted: "binary"}, {Path: ".env", Size: 12, Omitted: omittedSecret}}
	why = Compatible(rec, cur)
	if len(why) != 1 || why[0] != "untracked file w.bin differs: recorded sha256 h1, current sha256 h2" {
		t.Errorf("Compatible with a changed binary untracked file = %q", why)
	}

	rec.Code = Code{Note: "not a git checkout"}
	why = Compatible(rec, fixedManifest("b", t0))
	if len(why) != 1 || !strings.Contains(why[0], "no code revision (not a git checkout)") {
		t.Errorf("Compatible without a recorded revision = %q", why)
	}
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

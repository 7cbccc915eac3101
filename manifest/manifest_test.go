package manifest

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// hermeticGit isolates git from the user's configuration and from any
// repository above the test's temporary directories.
func hermeticGit(t *testing.T) {
	t.Helper()
	if _, err := exec.LookPath("git"); err != nil {
		t.Skip("git not installed")
	}
	t.Setenv("GIT_CONFIG_GLOBAL", os.DevNull)
	t.Setenv("GIT_CONFIG_NOSYSTEM", "1")
	t.Setenv("GIT_CEILING_DIRECTORIES", filepath.Dir(t.TempDir()))
	t.Setenv("GIT_AUTHOR_NAME", "Test")
	t.Setenv("GIT_AUTHOR_EMAIL", "test@example.com")
	t.Setenv("GIT_COMMITTER_NAME", "Test")
	t.Setenv("GIT_COMMITTER_EMAIL", "test@example.com")
	os.Unsetenv("GIT_DIR")
	os.Unsetenv("GIT_WORK_TREE")
}

func runGit(t *testing.T, dir string, args ...string) string {
	t.Helper()
	cmd := exec.Command("git", append([]string{"-C", dir}, args...)...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("git %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return strings.TrimSpace(string(out))
}

func writeFile(t *testing.T, path, content string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

// newRepo returns a git repository with one commit of a.txt ("one\n").
func newRepo(t *testing.T) string {
	t.Helper()
	repo := t.TempDir()
	runGit(t, repo, "init", "-q", "-b", "main")
	writeFile(t, filepath.Join(repo, "a.txt"), "one\n")
	writeFile(t, filepath.Join(repo, "sub", "keep.txt"), "keep\n")
	runGit(t, repo, "add", ".")
	runGit(t, repo, "commit", "-q", "-m", "first")
	return repo
}

func TestCollectDirtyGitCheckout(t *testing.T) {
	hermeticGit(t)
	repo := newRepo(t)
	head := runGit(t, repo, "rev-parse", "HEAD")
	writeFile(t, filepath.Join(repo, "a.txt"), "two\n")
	writeFile(t, filepath.Join(repo, "new.txt"), "hello untracked\nno newline")
	writeFile(t, filepath.Join(repo, ".env"), "DB_URL=postgres://u:pw@h/db\n")
	writeFile(t, filepath.Join(repo, "weights.bin"), "\x00\x01\x02")

	m, err := Collect(context.Background(), filepath.Join(repo, "sub"))
	if err != nil {
		t.Fatal(err)
	}
	c := m.Code
	if c.Commit != head {
		t.Errorf("Commit = %q, want %q", c.Commit, head)
	}
	if c.Branch != "main" {
		t.Errorf("Branch = %q, want main", c.Branch)
	}
	if !c.Dirty {
		t.Error("Dirty = false for a modified checkout")
	}
	if c.Note != "" {
		t.Errorf("Note = %q in a git checkout", c.Note)
	}
	if c.BinarySHA256 == "" || c.Binary == "" {
		t.Errorf("binary not hashed: %q %q", c.Binary, c.BinarySHA256)
	}
	omitted := map[string]string{}
	for _, u := range c.Untracked {
		omitted[u.Path] = u.Omitted
	}
	if want := map[string]string{".env": "name suggests it holds secrets", "new.txt": "", "weights.bin": "binary"}; fmt.Sprint(omitted) != fmt.Sprint(want) {
		t.Errorf("untracked = %v, want %v", omitted, want)
	}

	runDir := filepath.Join(t.TempDir(), "run")
	if err := m.Write(runDir); err != nil {
		t.Fatal(err)
	}
	diff, err := os.ReadFile(filepath.Join(runDir, DiffFileName))
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"-one\n", "+two\n", "+hello untracked\n", "+no newline\n\\ No newline at end of file\n"} {
		if !bytes.Contains(diff, []byte(want)) {
			t.Errorf("code.diff lacks %q:\n%s", want, diff)
		}
	}
	if bytes.Contains(diff, []byte("postgres://")) {
		t.Errorf("code.diff contains the .env file:\n%s", diff)
	}
	sum := sha256.Sum256(diff)
	if got := hex.EncodeToString(sum[:]); got != c.DiffSHA256 {
		t.Errorf("code.diff sha256 %s, manifest records %s", got, c.DiffSHA256)
	}
	if sum, err := HashFile(filepath.Join(runDir, DiffFileName)); err != nil || sum != c.DiffSHA256 {
		t.Errorf("HashFile = %s, %v; want %s", sum, err, c.DiffSHA256)
	}

	// The diff reproduces the working tree on a clean checkout of the commit.
	clone := filepath.Join(t.TempDir(), "clone")
	runGit(t, repo, "clone", "-q", repo, clone)
	runGit(t, clone, "apply", filepath.Join(runDir, DiffFileName))
	for _, f := range []string{"a.txt", "new.txt"} {
		want, _ := os.ReadFile(filepath.Join(repo, f))
		got, err := os.ReadFile(filepath.Join(clone, f))
		if err != nil || !bytes.Equal(got, want) {
			t.Errorf("%s after git apply = %q, %v; want %q", f, got, err, want)
		}
	}
}

func TestCollectCleanCheckout(t *testing.T) {
	hermeticGit(t)
	repo := newRepo(t)
	m, err := Collect(context.Background(), repo)
	if err != nil {
		t.Fatal(err)
	}
	if m.Code.Dirty || m.Code.DiffFile != "" || m.CodeDiff() != nil {
		t.Errorf("clean checkout recorded as dirty: %+v", m.Code)
	}
	runDir := t.TempDir()
	if err := m.Write(runDir); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(runDir, DiffFileName)); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("code.diff written for a clean checkout: %v", err)
	}
}

func TestCollectOutsideGit(t *testing.T) {
	hermeticGit(t)
	dir := t.TempDir()
	m, err := Collect(context.Background(), dir)
	if err != nil {
		t.Fatalf("Collect outside a git checkout: %v", err)
	}
	if !strings.Contains(m.Code.Note, "not a git checkout") {
		t.Errorf("Code.Note = %q, want it to say not a git checkout", m.Code.Note)
	}
	if m.Code.Commit != "" || m.Code.Dirty {
		t.Errorf("code section filled outside git: %+v", m.Code)
	}
	if m.Toolchain.GoVersion == "" || m.Host.OS == "" || m.Host.NumCPU == 0 || m.Host.GOMAXPROCS == 0 {
		t.Errorf("toolchain/host not collected: %+v %+v", m.Toolchain, m.Host)
	}
	if m.Outcome.Status != StatusRunning || m.Outcome.Start.IsZero() {
		t.Errorf("outcome = %+v, want running with a start time", m.Outcome)
	}
}

func TestCollectCanceled(t *testing.T) {
	hermeticGit(t)
	repo := newRepo(t)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := Collect(ctx, repo); !errors.Is(err, context.Canceled) {
		t.Fatalf("Collect with canceled context: %v, want context.Canceled", err)
	}
}

func TestHostFromProc(t *testing.T) {
	if _, err := os.Stat("/proc/meminfo"); err != nil {
		t.Skip("no /proc")
	}
	h := collectHost()
	if h.MemTotalBytes == 0 || h.Kernel == "" {
		t.Errorf("host = %+v, want memory and kernel from /proc", h)
	}
	if got := parseMemTotal("24684100 kB"); got != 24684100*1024 {
		t.Errorf("parseMemTotal = %d", got)
	}
}

func TestEnvAllowList(t *testing.T) {
	env := []string{
		"XLA_FLAGS=--xla_gpu_deterministic_ops=true",
		"GOMLX_BACKEND=xla:cuda",
		"GOGC=200",
		"GALLOP_BATCH=64",
		"GALLOP_API_TOKEN=abc",
		"GALLOP_S3_SECRET=abc",
		"GOMLX_HF_KEY=abc",
		"HOME=/root",
		"PATH=/bin",
		"AWS_SECRET_ACCESS_KEY=abc",
		"XLA_FLAGS_EXTRA=1",
	}
	got := filterEnv(env)
	want := map[string]string{
		"XLA_FLAGS":     "--xla_gpu_deterministic_ops=true",
		"GOMLX_BACKEND": "xla:cuda",
		"GOGC":          "200",
		"GALLOP_BATCH":  "64",
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("filterEnv = %v, want %v", got, want)
	}
}

func TestNoSecretsInRunDir(t *testing.T) {
	hermeticGit(t)
	const (
		awsSecret = "AKIAFAKESECRET123"
		apiKey    = "sk-fake-123"
		password  = "hunter2"
		token     = "tok-fake-999"
	)
	t.Setenv("AWS_SECRET_ACCESS_KEY", awsSecret)
	t.Setenv("GALLOP_API_TOKEN", token)
	t.Setenv("GALLOP_BATCH", "64")

	repo := newRepo(t)
	// An untracked note that happens to contain the secret value.
	writeFile(t, filepath.Join(repo, "notes.txt"), "export AWS_SECRET_ACCESS_KEY="+awsSecret+"\n")
	m, err := Collect(context.Background(), repo)
	if err != nil {
		t.Fatal(err)
	}
	// Set the config raw, bypassing SetConfig: Write must redact anyway.
	m.Config = json.RawMessage(`{"api_key":"` + apiKey + `", "nested":{"password":"` + password + `"}, "lr": 0.001}`)
	m.Seeds = map[string]uint64{"init": 42}
	// A careless caller adds a secret to Env directly.
	m.Env["GALLOP_DB_PASSWORD"] = password
	runDir := t.TempDir()
	if err := m.Write(runDir); err != nil {
		t.Fatal(err)
	}
	m.Finish(StatusOK, 0)
	if err := m.Write(runDir); err != nil {
		t.Fatal(err)
	}

	files := 0
	err = filepath.WalkDir(runDir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		files++
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		for _, s := range []string{awsSecret, apiKey, password, token} {
			if bytes.Contains(b, []byte(s)) {
				t.Errorf("%s contains secret %q:\n%s", p, s, b)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if files != 2 {
		t.Errorf("run dir holds %d files, want run.json and code.diff", files)
	}
	got, err := Load(runDir)
	if err != nil {
		t.Fatal(err)
	}
	var cfg struct {
		APIKey string `json:"api_key"`
		Nested struct {
			Password string `json:"password"`
		} `json:"nested"`
		LR json.Number `json:"lr"`
	}
	if err := json.Unmarshal(got.Config, &cfg); err != nil {
		t.Fatal(err)
	}
	if cfg.APIKey != Redacted || cfg.Nested.Password != Redacted || cfg.LR != "0.001" {
		t.Errorf("config = %s", got.Config)
	}
	if got.Env["GALLOP_BATCH"] != "64" {
		t.Errorf("allow-listed GALLOP_BATCH not recorded: %v", got.Env)
	}
	if !bytes.Contains(got.CodeDiff(), []byte("AWS_SECRET_ACCESS_KEY="+Redacted)) {
		t.Errorf("code.diff should keep the note with the value redacted:\n%s", got.CodeDiff())
	}
}

// fullManifest returns a manifest with every caller-owned section filled.
func fullManifest(t *testing.T) *Manifest {
	t.Helper()
	hermeticGit(t)
	m, err := Collect(context.Background(), t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	m.RunID = "run-1"
	if err := m.SetConfig(map[string]any{"optimizer": map[string]any{"lr": 0.001}, "layers": []int{64, 64}}); err != nil {
		t.Fatal(err)
	}
	m.Seeds = map[string]uint64{"init": 1, "shuffle": 1<<63 + 5}
	m.Data = Data{
		ManifestSHA256:    strings.Repeat("a", 64),
		Files:             []DataFile{{Name: "shard-0.bin", SHA256: strings.Repeat("b", 64), Size: 10}},
		SampleOrderSHA256: HashSampleOrder([]int{2, 0, 1}),
	}
	m.World = World{Size: 2, Ranks: []Rank{{Rank: 0, Host: "h0", Device: "cuda:0"}, {Rank: 1, LocalRank: 1, Host: "h0", Device: "cuda:1"}}}
	m.Host.Device = &Device{Backend: "xla:cuda", PJRTPlugin: "/opt/pjrt/pjrt_c_api_cuda_plugin.so", Driver: "550.54", GPUs: []GPU{{Name: "NVIDIA H100", MemoryBytes: 80 << 30}}}
	m.Outcome.Metrics = Metrics{"loss": 0.25, "grad_norm": math.NaN(), "max": math.Inf(1)}
	m.Outcome.Checkpoint = "ckpt/final"
	m.Finish(StatusFailed(errors.New("loss diverged")), 1)
	return m
}

func TestWriteLoadRoundTrip(t *testing.T) {
	m := fullManifest(t)
	runDir := t.TempDir()
	if err := m.Write(runDir); err != nil {
		t.Fatal(err)
	}
	got, err := Load(runDir)
	if err != nil {
		t.Fatal(err)
	}
	if d := (DiffOptions{IncludeTimes: true}).Diff(m, got); len(d) != 0 {
		t.Errorf("round trip changed fields: %v", d)
	}
	if !got.Outcome.Start.Equal(m.Outcome.Start) || !got.Outcome.End.Equal(m.Outcome.End) {
		t.Errorf("times %v..%v, want %v..%v", got.Outcome.Start, got.Outcome.End, m.Outcome.Start, m.Outcome.End)
	}
	if got.Seeds["shuffle"] != 1<<63+5 {
		t.Errorf("uint64 seed = %d", got.Seeds["shuffle"])
	}
	if !math.IsNaN(got.Outcome.Metrics["grad_norm"]) || !math.IsInf(got.Outcome.Metrics["max"], 1) || got.Outcome.Metrics["loss"] != 0.25 {
		t.Errorf("metrics = %v", got.Outcome.Metrics)
	}
	if got.Outcome.Status != "failed: loss diverged" || got.Outcome.ExitCode == nil || *got.Outcome.ExitCode != 1 {
		t.Errorf("outcome = %+v", got.Outcome)
	}
	if len(got.Toolchain.Modules) != len(m.Toolchain.Modules) || got.Host.Device.GPUs[0].Name != "NVIDIA H100" {
		t.Errorf("toolchain/device lost: %+v %+v", got.Toolchain, got.Host.Device)
	}
}

func TestLoadCodeDiff(t *testing.T) {
	hermeticGit(t)
	repo := newRepo(t)
	writeFile(t, filepath.Join(repo, "a.txt"), "two\n")
	m, err := Collect(context.Background(), repo)
	if err != nil {
		t.Fatal(err)
	}
	runDir := t.TempDir()
	if err := m.Write(runDir); err != nil {
		t.Fatal(err)
	}
	got, err := Load(runDir)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got.CodeDiff(), m.CodeDiff()) || len(got.CodeDiff()) == 0 {
		t.Errorf("CodeDiff after Load = %q, want %q", got.CodeDiff(), m.CodeDiff())
	}
	// A loaded manifest written elsewhere carries its diff along.
	other := t.TempDir()
	if err := got.Write(other); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(filepath.Join(other, DiffFileName)); !bytes.Equal(b, m.CodeDiff()) {
		t.Errorf("copied code.diff = %q", b)
	}
	// A tampered diff is reported.
	dpath := filepath.Join(runDir, DiffFileName)
	if err := os.WriteFile(dpath, []byte("tampered"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := Load(runDir); err == nil || !strings.Contains(err.Error(), dpath) {
		t.Errorf("Load with tampered diff: %v, want an error naming %s", err, dpath)
	}
}

func TestLoadErrors(t *testing.T) {
	m := fullManifest(t)
	runDir := t.TempDir()
	if err := m.Write(runDir); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(runDir, FileName)
	full, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}

	t.Run("truncated", func(t *testing.T) {
		n := len(full) / 2
		if err := os.WriteFile(path, full[:n], 0o644); err != nil {
			t.Fatal(err)
		}
		_, err := Load(runDir)
		if err == nil {
			t.Fatal("Load of a truncated run.json succeeded")
		}
		for _, want := range []string{path, fmt.Sprintf("byte offset %d", n)} {
			if !strings.Contains(err.Error(), want) {
				t.Errorf("error %q lacks %q", err, want)
			}
		}
	})
	t.Run("garbage", func(t *testing.T) {
		bad := bytes.Replace(full, []byte(`"code": {`), []byte(`"code": {]`), 1)
		off := bytes.Index(bad, []byte(`{]`)) + 2 // the offset after ']'
		if err := os.WriteFile(path, bad, 0o644); err != nil {
			t.Fatal(err)
		}
		_, err := Load(runDir)
		if err == nil {
			t.Fatal("Load of a corrupt run.json succeeded")
		}
		line := 1 + bytes.Count(bad[:off], []byte("\n"))
		for _, want := range []string{path, fmt.Sprintf("byte offset %d", off), fmt.Sprintf("(line %d, column", line)} {
			if !strings.Contains(err.Error(), want) {
				t.Errorf("error %q lacks %q", err, want)
			}
		}
	})
	t.Run("wrong type", func(t *testing.T) {
		if err := os.WriteFile(path, []byte(`{"schema_version": "one"}`), 0o644); err != nil {
			t.Fatal(err)
		}
		_, err := Load(runDir)
		if err == nil || !strings.Contains(err.Error(), path) || !strings.Contains(err.Error(), "byte offset") {
			t.Errorf("Load with a wrong type: %v", err)
		}
	})
	t.Run("not a manifest", func(t *testing.T) {
		if err := os.WriteFile(path, []byte(`{}`), 0o644); err != nil {
			t.Fatal(err)
		}
		if _, err := Load(runDir); err == nil || !strings.Contains(err.Error(), "schema_version") {
			t.Errorf("Load of {}: %v", err)
		}
	})
	t.Run("missing", func(t *testing.T) {
		dir := filepath.Join(t.TempDir(), "nope")
		_, err := Load(dir)
		if !errors.Is(err, fs.ErrNotExist) {
			t.Fatalf("Load of a missing manifest: %v, want fs.ErrNotExist", err)
		}
		if !strings.Contains(err.Error(), filepath.Join(dir, FileName)) {
			t.Errorf("error %q does not name the path", err)
		}
	})
}

func TestWriteRewritesAtomically(t *testing.T) {
	m := fullManifest(t)
	runDir := t.TempDir()
	m.Outcome.Status = StatusRunning
	if err := m.Write(runDir); err != nil {
		t.Fatal(err)
	}
	m.Finish(StatusOK, 0)
	if err := m.Write(runDir); err != nil {
		t.Fatal(err)
	}
	got, err := Load(runDir)
	if err != nil {
		t.Fatal(err)
	}
	if got.Outcome.Status != StatusOK {
		t.Errorf("status = %q after the final Write", got.Outcome.Status)
	}
	ents, _ := os.ReadDir(runDir)
	if len(ents) != 1 {
		t.Errorf("run dir = %v, want only run.json", ents)
	}
}

func TestHashFile(t *testing.T) {
	p := filepath.Join(t.TempDir(), "f")
	writeFile(t, p, "abc")
	got, err := HashFile(p)
	if err != nil {
		t.Fatal(err)
	}
	if want := "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"; got != want {
		t.Errorf("HashFile = %s, want %s", got, want)
	}
	df, err := HashDataFile("f", p)
	if err != nil || df.SHA256 != got || df.Size != 3 {
		t.Errorf("HashDataFile = %+v, %v", df, err)
	}
	if _, err := HashFile(p + ".missing"); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("HashFile of missing file: %v", err)
	}
	if HashSampleOrder([]int{0, 1}) == HashSampleOrder([]int{1, 0}) {
		t.Error("HashSampleOrder ignores order")
	}
}

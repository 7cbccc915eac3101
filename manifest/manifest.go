// Package manifest records everything that produced a model in a run
// manifest (run.json): code revision and uncommitted changes, toolchain and
// module versions, host and accelerator, numerics-affecting environment, the
// resolved config, seeds, data hashes, world layout and the outcome.
//
// A run calls Collect at start, fills the caller-owned sections (Config,
// Seeds, Data, World, Host.Device), and calls Write with status running; at
// the end it calls Finish and Write again. Months later Load reads the
// manifest back, Diff explains how two runs differ and Compatible says
// whether the current checkout can faithfully replay a recorded run.
//
// Secrets are kept out of the run directory: environment variables are
// recorded by allow-list only, config values under secret-looking keys are
// replaced by "[redacted]" (see RedactJSON), and the values of secret-looking
// environment variables are scrubbed from run.json and code.diff.
package manifest

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/gallop-dev/gallop/internal/atomicfile"
)

// File names inside a run directory.
const (
	// FileName is the manifest itself.
	FileName = "run.json"
	// DiffFileName holds the uncommitted changes (tracked and untracked)
	// when the checkout was dirty.
	DiffFileName = "code.diff"
)

// SchemaVersion is the manifest format version written by this package.
// Load refuses manifests with a newer version.
const SchemaVersion = 1

// Outcome statuses. A failed run has a status of the form "failed: <reason>";
// see StatusFailed.
const (
	StatusRunning     = "running"
	StatusOK          = "ok"
	StatusInterrupted = "interrupted"
	statusFailedPfx   = "failed: "
)

// StatusFailed returns the status string recorded for a run that failed with
// err.
func StatusFailed(err error) string {
	if err == nil {
		return statusFailedPfx + "unknown error"
	}
	return statusFailedPfx + err.Error()
}

// Manifest is the content of run.json. Collect fills Code, Toolchain, Host
// (except Device), Env, World.Size and the start of Outcome; the caller fills
// the rest.
type Manifest struct {
	// SchemaVersion is the format version (SchemaVersion when written by
	// this package).
	SchemaVersion int `json:"schema_version"`
	// RunID optionally names the run; it is set by the caller.
	RunID string `json:"run_id,omitempty"`
	// Code identifies the source that was built and run.
	Code Code `json:"code"`
	// Toolchain describes the Go toolchain and every linked module.
	Toolchain Toolchain `json:"toolchain"`
	// Host describes the machine and its accelerator.
	Host Host `json:"host"`
	// Env holds the allow-listed, numerics-affecting environment variables
	// that were set, by name. See EnvAllowList.
	Env map[string]string `json:"env,omitempty"`
	// Config is the fully resolved run config as JSON, with secret-looking
	// keys redacted. Set it with SetConfig; Write redacts it again.
	Config json.RawMessage `json:"config,omitempty"`
	// Seeds holds every random seed used, by purpose (e.g. "init",
	// "shuffle", "dropout").
	Seeds map[string]uint64 `json:"seeds,omitempty"`
	// Data identifies the training data.
	Data Data `json:"data,omitzero"`
	// World describes the distributed layout.
	World World `json:"world,omitzero"`
	// ResumedFrom names the checkpoint a resumed run started from.
	ResumedFrom *Resume `json:"resumed_from,omitempty"`
	// Outcome is how the run went; it is updated by Finish.
	Outcome Outcome `json:"outcome"`

	// codeDiff is the content of code.diff: set by Collect when the
	// checkout is dirty, written by Write, read back by Load.
	codeDiff []byte
}

// Code identifies the source code of a run.
type Code struct {
	// Root is the top-level directory of the git checkout.
	Root string `json:"root,omitempty"`
	// Commit is the full hash of HEAD, from `git rev-parse HEAD`.
	Commit string `json:"commit,omitempty"`
	// Branch is the checked-out branch, or "(detached)".
	Branch string `json:"branch,omitempty"`
	// Dirty reports uncommitted changes to tracked files or untracked files
	// not ignored by .gitignore.
	Dirty bool `json:"dirty"`
	// DiffFile is the name of the file, beside run.json, holding the
	// uncommitted changes as a patch against Commit (`git diff HEAD` followed
	// by the untracked files as new-file patches). Empty when clean.
	DiffFile string `json:"diff_file,omitempty"`
	// DiffSHA256 is the hex SHA-256 of DiffFile's content.
	DiffSHA256 string `json:"diff_sha256,omitempty"`
	// DiffBytes is the size of DiffFile's content.
	DiffBytes int64 `json:"diff_bytes,omitempty"`
	// Untracked lists the untracked files (not ignored) at collection
	// time, whether or not their content went into DiffFile.
	Untracked []UntrackedFile `json:"untracked,omitempty"`
	// UntrackedNotListed counts untracked files beyond the listing cap.
	UntrackedNotListed int `json:"untracked_not_listed,omitempty"`

	// VCS, VCSRevision, VCSTime and VCSModified are the vcs.* build
	// settings stamped into the binary by the go command, when present
	// (builds with -buildvcs=false have none).
	VCS         string `json:"vcs,omitempty"`
	VCSRevision string `json:"vcs_revision,omitempty"`
	VCSTime     string `json:"vcs_time,omitempty"`
	VCSModified string `json:"vcs_modified,omitempty"`

	// Note explains missing information, e.g. "not a git checkout".
	Note string `json:"note,omitempty"`

	// Binary is the path of the running executable and BinarySHA256 the
	// hex SHA-256 of its content.
	Binary       string `json:"binary,omitempty"`
	BinarySHA256 string `json:"binary_sha256,omitempty"`
}

// UntrackedFile describes one untracked file of a dirty checkout.
type UntrackedFile struct {
	// Path is relative to Code.Root, slash-separated.
	Path string `json:"path"`
	// Size is the file size in bytes.
	Size int64 `json:"size"`
	// SHA256 is the hex SHA-256 of the content, when it was read.
	SHA256 string `json:"sha256,omitempty"`
	// Omitted, when set, says why the content is not in the diff file
	// (too large, binary, name suggests a secret, ...).
	Omitted string `json:"omitted,omitempty"`
}

// Toolchain describes how the binary was built, from debug.ReadBuildInfo.
type Toolchain struct {
	// GoVersion is the Go version the binary was built with.
	GoVersion string `json:"go_version"`
	// Compiler is runtime.Compiler.
	Compiler string `json:"compiler,omitempty"`
	// Path is the main package path.
	Path string `json:"path,omitempty"`
	// Main is the main module.
	Main Module `json:"main,omitzero"`
	// Modules lists every dependency module linked into the binary, in
	// build-info order (sorted by path).
	Modules []Module `json:"modules,omitempty"`
	// Settings are the build settings (GOEXPERIMENT, CGO_ENABLED, -tags,
	// GOARCH, GOAMD64, -trimpath, ...). The vcs.* settings go to Code.
	Settings map[string]string `json:"settings,omitempty"`
	// Note explains missing information.
	Note string `json:"note,omitempty"`
}

// Module is a Go module version.
type Module struct {
	Path    string `json:"path"`
	Version string `json:"version,omitempty"`
	// Sum is the go.sum checksum ("h1:...").
	Sum string `json:"sum,omitempty"`
	// Replace is the module that replaced this one, if any.
	Replace *Module `json:"replace,omitempty"`
}

// Host describes the machine a run executed on.
type Host struct {
	Hostname string `json:"hostname,omitempty"`
	OS       string `json:"os"`
	Arch     string `json:"arch"`
	// Kernel is the kernel release (/proc/sys/kernel/osrelease).
	Kernel string `json:"kernel,omitempty"`
	// CPUModel is the "model name" of /proc/cpuinfo.
	CPUModel string `json:"cpu_model,omitempty"`
	// NumCPU is the number of logical CPUs usable by the process.
	NumCPU int `json:"num_cpu"`
	// GOMAXPROCS is runtime.GOMAXPROCS at collection time.
	GOMAXPROCS int `json:"gomaxprocs"`
	// MemTotalBytes is MemTotal of /proc/meminfo.
	MemTotalBytes uint64 `json:"mem_total_bytes,omitempty"`
	// Device is the accelerator; the caller sets it once the backend is up.
	Device *Device `json:"device,omitempty"`
}

// Device describes the compute backend and accelerators, as set by the caller.
type Device struct {
	// Backend is the backend name (e.g. "xla:cuda", "xla:cpu", "go").
	Backend string `json:"backend,omitempty"`
	// PJRTPlugin is the path of the PJRT plugin shared library.
	PJRTPlugin string `json:"pjrt_plugin,omitempty"`
	// PJRTVersion is the plugin's version string.
	PJRTVersion string `json:"pjrt_version,omitempty"`
	// Driver is the accelerator driver version (e.g. CUDA driver).
	Driver string `json:"driver,omitempty"`
	// GPUs lists the accelerators visible to the run.
	GPUs []GPU `json:"gpus,omitempty"`
}

// GPU describes one accelerator.
type GPU struct {
	Name        string `json:"name"`
	MemoryBytes uint64 `json:"memory_bytes,omitempty"`
	UUID        string `json:"uuid,omitempty"`
}

// Data identifies the training data of a run.
type Data struct {
	// ManifestSHA256 is the hex SHA-256 of the dataset manifest.
	ManifestSHA256 string `json:"manifest_sha256,omitempty"`
	// Files lists every shard or file read, with its hash.
	Files []DataFile `json:"files,omitempty"`
	// SampleOrderSHA256 is the hash of the first epoch's sample order
	// (see HashSampleOrder).
	SampleOrderSHA256 string `json:"sample_order_sha256,omitempty"`
}

// DataFile identifies one data shard or file.
type DataFile struct {
	// Name identifies the file within the dataset (e.g. a relative path).
	Name   string `json:"name"`
	SHA256 string `json:"sha256"`
	Size   int64  `json:"size"`
}

// World describes the distributed layout of a run.
type World struct {
	// Size is the number of processes (ranks); 1 for a single process.
	Size int `json:"size"`
	// Ranks describes each rank; it may be empty for a single process.
	Ranks []Rank `json:"ranks,omitempty"`
}

// Rank places one process of a distributed run.
type Rank struct {
	Rank      int    `json:"rank"`
	LocalRank int    `json:"local_rank"`
	Host      string `json:"host,omitempty"`
	// Device names the accelerator the rank drives (e.g. "cuda:0").
	Device string `json:"device,omitempty"`
}

// Outcome records how a run went.
type Outcome struct {
	Start time.Time `json:"start,omitzero"`
	End   time.Time `json:"end,omitzero"`
	// Status is StatusRunning, StatusOK, StatusInterrupted or
	// "failed: <reason>" (StatusFailed).
	Status string `json:"status"`
	// ExitCode is the process exit code, once known.
	ExitCode *int `json:"exit_code,omitempty"`
	// Metrics are the final metrics by name. NaN and ±Inf are kept (written
	// as the strings "NaN", "+Inf", "-Inf").
	Metrics Metrics `json:"metrics,omitempty"`
	// Checkpoint is the path of the final checkpoint.
	Checkpoint string `json:"checkpoint,omitempty"`
	// Export is the path of the exported model.
	Export string `json:"export,omitempty"`
}

// Metrics maps metric names to values. Unlike a plain map[string]float64 it
// survives JSON encoding when a value is NaN or infinite, as happens when a
// run diverges.
type Metrics map[string]float64

// MarshalJSON implements json.Marshaler.
func (m Metrics) MarshalJSON() ([]byte, error) {
	if m == nil {
		return []byte("null"), nil
	}
	obj := make(map[string]json.RawMessage, len(m))
	for k, v := range m {
		switch {
		case math.IsNaN(v):
			obj[k] = json.RawMessage(`"NaN"`)
		case math.IsInf(v, 1):
			obj[k] = json.RawMessage(`"+Inf"`)
		case math.IsInf(v, -1):
			obj[k] = json.RawMessage(`"-Inf"`)
		default:
			obj[k] = strconv.AppendFloat(nil, v, 'g', -1, 64)
		}
	}
	return json.Marshal(obj)
}

// UnmarshalJSON implements json.Unmarshaler.
func (m *Metrics) UnmarshalJSON(b []byte) error {
	var obj map[string]json.RawMessage
	if err := json.Unmarshal(b, &obj); err != nil {
		return err
	}
	if obj == nil {
		*m = nil
		return nil
	}
	out := make(Metrics, len(obj))
	for k, raw := range obj {
		var s string
		if json.Unmarshal(raw, &s) == nil {
			switch s {
			case "NaN":
				out[k] = math.NaN()
			case "+Inf", "Inf":
				out[k] = math.Inf(1)
			case "-Inf":
				out[k] = math.Inf(-1)
			default:
				return fmt.Errorf("metric %q: unexpected string %q", k, s)
			}
			continue
		}
		var f float64
		if err := json.Unmarshal(raw, &f); err != nil {
			return fmt.Errorf("metric %q: %w", k, err)
		}
		out[k] = f
	}
	*m = out
	return nil
}

// SetConfig records cfg, the fully resolved run config, as redacted JSON.
// cfg may be a json.RawMessage or []byte holding JSON, or any value that
// encoding/json can marshal.
func (m *Manifest) SetConfig(cfg any) error {
	var raw []byte
	switch c := cfg.(type) {
	case json.RawMessage:
		raw = c
	case []byte:
		raw = c
	default:
		b, err := json.Marshal(cfg)
		if err != nil {
			return fmt.Errorf("manifest: encoding config: %w", err)
		}
		raw = b
	}
	red, err := RedactJSON(raw)
	if err != nil {
		return fmt.Errorf("manifest: config: %w", err)
	}
	m.Config = red
	return nil
}

// CodeDiff returns the uncommitted changes recorded for the run (the content
// of code.diff), or nil when the checkout was clean or the diff is not
// available.
func (m *Manifest) CodeDiff() []byte { return m.codeDiff }

// Finish records the end of the run: the end time, status and exit code.
// Metrics, checkpoint and export paths are set directly on m.Outcome.
func (m *Manifest) Finish(status string, exitCode int) {
	m.Outcome.End = time.Now().UTC()
	m.Outcome.Status = status
	m.Outcome.ExitCode = &exitCode
}

// Write writes the manifest to runDir/run.json atomically, creating runDir if
// needed, and, when the checkout was dirty, the uncommitted changes to
// runDir/code.diff (before run.json, so run.json never names a missing
// diff). It is meant to be called at the start of a run (status running) and
// again at the end. The config is redacted, non-allow-listed environment
// variables are dropped, and values of secret-looking environment variables
// of this process are scrubbed from everything written.
func (m *Manifest) Write(runDir string) error {
	if err := os.MkdirAll(runDir, 0o755); err != nil {
		return fmt.Errorf("manifest: write: %w", err)
	}
	secrets := secretEnvValues(os.Environ())

	out := *m
	if out.SchemaVersion == 0 {
		out.SchemaVersion = SchemaVersion
	}
	if len(out.Config) > 0 {
		red, err := RedactJSON(out.Config)
		if err != nil {
			return fmt.Errorf("manifest: write %s: config: %w", filepath.Join(runDir, FileName), err)
		}
		out.Config = red
	}
	out.Env = filterEnvMap(out.Env)

	if len(m.codeDiff) > 0 {
		diff := scrubValues(m.codeDiff, secrets)
		path := filepath.Join(runDir, DiffFileName)
		if !fileHasContent(path, diff) {
			if err := atomicfile.WriteFile(path, diff, 0o644); err != nil {
				return fmt.Errorf("manifest: write: %w", err)
			}
		}
		out.Code.DiffFile = DiffFileName
		out.Code.DiffSHA256 = sha256Hex(diff)
		out.Code.DiffBytes = int64(len(diff))
	}

	b, err := json.MarshalIndent(&out, "", "  ")
	if err != nil {
		return fmt.Errorf("manifest: encoding %s: %w", FileName, err)
	}
	b = scrubJSON(b, secrets)
	if !json.Valid(b) {
		return fmt.Errorf("manifest: write %s: scrubbing a secret environment value broke the JSON; refusing to write", filepath.Join(runDir, FileName))
	}
	b = append(b, '\n')
	if err := atomicfile.WriteFile(filepath.Join(runDir, FileName), b, 0o644); err != nil {
		return fmt.Errorf("manifest: write: %w", err)
	}
	return nil
}

// fileHasContent reports whether path exists with exactly content.
func fileHasContent(path string, content []byte) bool {
	got, err := os.ReadFile(path)
	return err == nil && bytes.Equal(got, content)
}

// Load reads runDir/run.json and, when it names one, the diff file beside it.
// A missing diff file is tolerated (CodeDiff returns nil); a diff file whose
// hash does not match the manifest is an error.
func Load(runDir string) (*Manifest, error) {
	path := filepath.Join(runDir, FileName)
	b, err := os.ReadFile(path)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("manifest: no run manifest at %s: %w", path, err)
		}
		return nil, fmt.Errorf("manifest: load: %w", err)
	}
	m := new(Manifest)
	if err := json.Unmarshal(b, m); err != nil {
		var syn *json.SyntaxError
		var typ *json.UnmarshalTypeError
		switch {
		case errors.As(err, &syn):
			line, col := lineCol(b, syn.Offset)
			return nil, fmt.Errorf("manifest: %s is corrupt: invalid JSON at byte offset %d (line %d, column %d) of %d bytes: %w",
				path, syn.Offset, line, col, len(b), err)
		case errors.As(err, &typ):
			line, col := lineCol(b, typ.Offset)
			return nil, fmt.Errorf("manifest: %s is corrupt: wrong type for %q at byte offset %d (line %d, column %d): %w",
				path, typ.Field, typ.Offset, line, col, err)
		}
		return nil, fmt.Errorf("manifest: %s is corrupt: %w", path, err)
	}
	switch {
	case m.SchemaVersion == 0:
		return nil, fmt.Errorf("manifest: %s is not a run manifest (no schema_version)", path)
	case m.SchemaVersion > SchemaVersion:
		return nil, fmt.Errorf("manifest: %s has schema version %d; this build reads up to %d", path, m.SchemaVersion, SchemaVersion)
	}
	if m.Code.DiffFile != "" {
		dpath := filepath.Join(runDir, filepath.Base(m.Code.DiffFile))
		d, err := os.ReadFile(dpath)
		switch {
		case errors.Is(err, fs.ErrNotExist):
			// The manifest alone is still useful; CodeDiff reports nil.
		case err != nil:
			return nil, fmt.Errorf("manifest: load: %w", err)
		case m.Code.DiffSHA256 != "" && sha256Hex(d) != m.Code.DiffSHA256:
			return nil, fmt.Errorf("manifest: %s is corrupt: SHA-256 %s, %s records %s", dpath, sha256Hex(d), path, m.Code.DiffSHA256)
		default:
			m.codeDiff = d
		}
	}
	return m, nil
}

// lineCol converts a byte offset of b to a 1-based line and column.
func lineCol(b []byte, off int64) (line, col int) {
	if off > int64(len(b)) {
		off = int64(len(b))
	}
	if off < 0 {
		off = 0
	}
	pre := b[:off]
	line = 1 + bytes.Count(pre, []byte{'\n'})
	col = int(off) - bytes.LastIndexByte(pre, '\n')
	return line, col
}

// HashFile returns the hex SHA-256 of the file at path, reading it as a
// stream.
func HashFile(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", fmt.Errorf("manifest: hash: %w", err)
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", fmt.Errorf("manifest: hash %s: %w", path, err)
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// HashDataFile returns the DataFile for the file at path, named name in the
// manifest.
func HashDataFile(name, path string) (DataFile, error) {
	f, err := os.Open(path)
	if err != nil {
		return DataFile{}, fmt.Errorf("manifest: hash data file: %w", err)
	}
	defer f.Close()
	h := sha256.New()
	n, err := io.Copy(h, f)
	if err != nil {
		return DataFile{}, fmt.Errorf("manifest: hash data file %s: %w", path, err)
	}
	return DataFile{Name: name, SHA256: hex.EncodeToString(h.Sum(nil)), Size: n}, nil
}

// HashSampleOrder returns the hex SHA-256 of a sample order, each index
// encoded as a little-endian uint64. Record the first epoch's order in
// Data.SampleOrderSHA256.
func HashSampleOrder(order []int) string {
	h := sha256.New()
	var buf [8]byte
	for _, i := range order {
		binary.LittleEndian.PutUint64(buf[:], uint64(i))
		h.Write(buf[:])
	}
	return hex.EncodeToString(h.Sum(nil))
}

func sha256Hex(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

// scrubValues replaces every occurrence of each secret in b.
func scrubValues(b []byte, secrets []string) []byte {
	for _, s := range secrets {
		if bytes.Contains(b, []byte(s)) {
			b = bytes.ReplaceAll(b, []byte(s), []byte(Redacted))
		}
	}
	return b
}

// scrubJSON replaces every occurrence of each secret in encoded JSON, both as
// written raw and as JSON-escaped inside a string.
func scrubJSON(b []byte, secrets []string) []byte {
	for _, s := range secrets {
		q, _ := json.Marshal(s)
		esc := strings.TrimSuffix(strings.TrimPrefix(string(q), `"`), `"`)
		b = scrubValues(b, []string{esc})
		if esc != s {
			b = scrubValues(b, []string{s})
		}
	}
	return b
}

// Resume identifies the checkpoint a run resumed from.
type Resume struct {
	Run        string `json:"run"`        // the run directory that wrote it
	RunID      string `json:"run_id"`     // its run ID
	Checkpoint string `json:"checkpoint"` // the checkpoint file
	SHA256     string `json:"sha256"`     // of the checkpoint file
	Step       int64  `json:"step"`       // optimizer steps done when it was written
}

package manifest

import (
	"context"
	"fmt"
	"os"
	"runtime"
	"runtime/debug"
	"strconv"
	"strings"
	"time"

	"github.com/gallop-dev/gallop/internal/procfile"
)

// EnvAllowList lists the environment variables recorded in Manifest.Env: the
// ones that can change numerics or performance. Entries ending in '*' match
// by prefix. Whatever the list says, a variable whose name contains SECRET,
// TOKEN, KEY, PASSWORD or CREDENTIAL is never recorded.
const EnvAllowList = "XLA_FLAGS GOMLX_* GOMAXPROCS GOGC GOMEMLIMIT GOEXPERIMENT GODEBUG CUDA_VISIBLE_DEVICES TF_CPP_MIN_LOG_LEVEL GALLOP_*"

// envAllowed reports whether the environment variable name may be recorded.
func envAllowed(name string) bool {
	if isSecretEnvName(name) {
		return false
	}
	for _, pat := range strings.Fields(EnvAllowList) {
		if prefix, ok := strings.CutSuffix(pat, "*"); ok {
			if strings.HasPrefix(name, prefix) {
				return true
			}
		} else if name == pat {
			return true
		}
	}
	return false
}

// filterEnv returns the allow-listed variables of env ("NAME=value" pairs).
func filterEnv(env []string) map[string]string {
	out := make(map[string]string)
	for _, kv := range env {
		if name, val, ok := strings.Cut(kv, "="); ok && envAllowed(name) {
			out[name] = val
		}
	}
	return out
}

// filterEnvMap drops variables that are not allow-listed from a recorded
// environment.
func filterEnvMap(env map[string]string) map[string]string {
	if env == nil {
		return nil
	}
	out := make(map[string]string, len(env))
	for k, v := range env {
		if envAllowed(k) {
			out[k] = v
		}
	}
	return out
}

// Collect returns a manifest describing this process: Code (git state of
// the checkout containing dir, build-info VCS stamp, binary hash), Toolchain,
// Host (except Device) and Env; World.Size is set to 1 and Outcome to
// running, starting now. Outside a git checkout it succeeds and Code.Note
// says so. It fails if ctx ends or the git checkout's state cannot be read.
func Collect(ctx context.Context, dir string) (*Manifest, error) {
	m := &Manifest{
		SchemaVersion: SchemaVersion,
		World:         World{Size: 1},
		Outcome:       Outcome{Start: time.Now().UTC(), Status: StatusRunning},
	}
	environ := os.Environ()
	m.Env = filterEnv(environ)

	bi, biOK := debug.ReadBuildInfo()
	m.Toolchain = collectToolchain(bi, biOK)
	if biOK {
		for _, s := range bi.Settings {
			switch s.Key {
			case "vcs":
				m.Code.VCS = s.Value
			case "vcs.revision":
				m.Code.VCSRevision = s.Value
			case "vcs.time":
				m.Code.VCSTime = s.Value
			case "vcs.modified":
				m.Code.VCSModified = s.Value
			}
		}
	}

	diff, err := collectGit(ctx, dir, &m.Code, secretEnvValues(environ))
	if err != nil {
		return nil, fmt.Errorf("manifest: collecting code state of %s: %w", dir, err)
	}
	m.codeDiff = diff
	if m.Code.Commit == "" && m.Code.VCSRevision != "" && m.Code.Note != "" {
		m.Code.Note += "; revision from the binary's build info"
	}

	if exe, err := os.Executable(); err == nil {
		m.Code.Binary = exe
		if sum, err := HashFile(exe); err == nil {
			m.Code.BinarySHA256 = sum
		}
	}

	m.Host = collectHost()
	return m, nil
}

// collectToolchain describes the build from its build info.
func collectToolchain(bi *debug.BuildInfo, ok bool) Toolchain {
	t := Toolchain{GoVersion: runtime.Version(), Compiler: runtime.Compiler}
	if !ok {
		t.Note = "no build info in binary"
		return t
	}
	if bi.GoVersion != "" {
		t.GoVersion = bi.GoVersion
	}
	t.Path = bi.Path
	t.Main = toModule(&bi.Main)
	for _, d := range bi.Deps {
		t.Modules = append(t.Modules, toModule(d))
	}
	for _, s := range bi.Settings {
		if strings.HasPrefix(s.Key, "vcs") {
			continue // recorded in Code
		}
		if t.Settings == nil {
			t.Settings = make(map[string]string)
		}
		t.Settings[s.Key] = s.Value
	}
	return t
}

func toModule(m *debug.Module) Module {
	out := Module{Path: m.Path, Version: m.Version, Sum: m.Sum}
	if m.Replace != nil {
		r := toModule(m.Replace)
		out.Replace = &r
	}
	return out
}

// collectHost describes this machine. Fields it cannot read (e.g. /proc on
// non-Linux systems) are left empty.
func collectHost() Host {
	h := Host{
		OS:         runtime.GOOS,
		Arch:       runtime.GOARCH,
		NumCPU:     runtime.NumCPU(),
		GOMAXPROCS: runtime.GOMAXPROCS(0),
	}
	h.Hostname, _ = os.Hostname()
	if b, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		h.Kernel = strings.TrimSpace(string(b))
	}
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		h.CPUModel = procfile.Field(b, "model name")
		if h.CPUModel == "" { // arm64 kernels
			h.CPUModel = procfile.Field(b, "Hardware")
		}
	}
	if b, err := os.ReadFile("/proc/meminfo"); err == nil {
		h.MemTotalBytes = parseMemTotal(procfile.Field(b, "MemTotal"))
	}
	return h
}

// parseMemTotal parses a /proc/meminfo value such as "24684100 kB" into
// bytes; it returns 0 if it cannot.
func parseMemTotal(v string) uint64 {
	num, unit, _ := strings.Cut(v, " ")
	n, err := strconv.ParseUint(num, 10, 64)
	if err != nil {
		return 0
	}
	switch strings.TrimSpace(unit) {
	case "kB":
		return n << 10
	case "":
		return n
	}
	return 0
}

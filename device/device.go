// Package device chooses the compute backend a run uses: GoMLX's pure-Go
// backend on the CPU, or XLA through a PJRT plugin on GPUs, which it finds
// itself.
package device

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/gallop-dev/gallop/internal/gocpu"
	"github.com/gomlx/compute"
	"github.com/gomlx/go-xla/compute/xla"
)

// Spec is a parsed --device value.
type Spec struct {
	Kind string // "cpu" or "gpu"
	IDs  []int  // GPU ordinals; empty means device 0
}

// String formats the spec as Parse accepts it.
func (s Spec) String() string {
	if s.Kind != "gpu" || len(s.IDs) == 0 {
		return s.Kind
	}
	ids := make([]string, len(s.IDs))
	for i, id := range s.IDs {
		ids[i] = strconv.Itoa(id)
	}
	return "gpu:" + strings.Join(ids, ",")
}

// Parse reads "cpu", "gpu" or "gpu:0,1,...".
func Parse(s string) (Spec, error) {
	kind, list, hasList := strings.Cut(strings.TrimSpace(s), ":")
	switch kind {
	case "cpu":
		if hasList {
			return Spec{}, fmt.Errorf("device: %q: cpu takes no device list", s)
		}
		return Spec{Kind: "cpu"}, nil
	case "gpu", "cuda":
		sp := Spec{Kind: "gpu"}
		if hasList {
			seen := map[int]bool{}
			for _, f := range strings.Split(list, ",") {
				id, err := strconv.Atoi(strings.TrimSpace(f))
				if err != nil || id < 0 {
					return Spec{}, fmt.Errorf("device: %q: %q is not a GPU ordinal", s, f)
				}
				if seen[id] {
					return Spec{}, fmt.Errorf("device: %q: GPU %d listed twice", s, id)
				}
				seen[id] = true
				sp.IDs = append(sp.IDs, id)
			}
		}
		return sp, nil
	}
	return Spec{}, fmt.Errorf("device: %q: want cpu, gpu or gpu:0,1,...", s)
}

// Info describes the opened backend, for the run manifest.
type Info struct {
	Backend string `json:"backend"`
	Spec    string `json:"spec"`
	Plugin  string `json:"plugin,omitempty"`
	Devices int    `json:"devices"`
	Desc    string `json:"description"`
	GPUs    []GPU  `json:"gpus,omitempty"`
}

// GPU is one accelerator as nvidia-smi reports it.
type GPU struct {
	Name        string `json:"name"`
	MemoryBytes uint64 `json:"memory_bytes"`
	Driver      string `json:"driver"`
}

// PeakFLOPs returns the card's dense peak for fp32 matmuls on tensor cores
// (TF32, which XLA uses for fp32 dots by default) and for bf16, from the
// vendor's data sheets, or zeros for a card it does not know.
func (g GPU) PeakFLOPs() (tf32, bf16 float64) {
	n := strings.ToUpper(g.Name)
	switch {
	case strings.Contains(n, "H200"), strings.Contains(n, "H100") && !strings.Contains(n, "PCIE"):
		return 494.7e12, 989.4e12 // SXM
	case strings.Contains(n, "H100"):
		return 378e12, 756e12 // PCIe
	case strings.Contains(n, "A100"):
		return 156e12, 312e12
	}
	return 0, 0
}

// QueryGPUs asks nvidia-smi for the visible GPUs; it returns nil when
// nvidia-smi is not there.
func QueryGPUs() []GPU {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, "nvidia-smi", "--query-gpu=name,memory.total,driver_version", "--format=csv,noheader,nounits").Output()
	if err != nil {
		return nil
	}
	var gs []GPU
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		f := strings.Split(line, ",")
		if len(f) != 3 {
			continue
		}
		mib, _ := strconv.ParseUint(strings.TrimSpace(f[1]), 10, 64)
		gs = append(gs, GPU{Name: strings.TrimSpace(f[0]), MemoryBytes: mib << 20, Driver: strings.TrimSpace(f[2])})
	}
	return gs
}

// Options configures Open.
type Options struct {
	// Plugin is an explicit path to a PJRT plugin (.so); it wins over
	// $GALLOP_PJRT_PLUGIN and the search.
	Plugin string
	// NoTF32 makes XLA compute float32 matmuls in full float32 instead of
	// TF32 on the tensor cores (its default on Ampere and later).
	NoTF32 bool
}

// Open returns the backend for spec.
func Open(spec Spec, opt Options) (compute.Backend, Info, error) {
	info := Info{Spec: spec.String()}
	switch spec.Kind {
	case "cpu":
		be, err := gocpu.New()
		if err != nil {
			return nil, info, fmt.Errorf("device: go backend: %w", err)
		}
		info.Backend, info.Devices, info.Desc = "go", be.NumDevices(), be.Description()
		return be, info, nil
	case "gpu":
		plugin, searched, err := FindPlugin(opt.Plugin)
		if err != nil {
			return nil, info, fmt.Errorf("device: no XLA CUDA PJRT plugin found (%w).\nSearched:\n  %s\n"+
				"Fix: pass --pjrt-plugin /path/to/xla_cuda_plugin.so or set GALLOP_PJRT_PLUGIN; "+
				"`pip install jax[cuda13]` installs one under site-packages/jax_plugins/", err, strings.Join(searched, "\n  "))
		}
		// The plugin is already on disk: never download one, and keep
		// go-xla from rewriting XLA_FLAGS with a guessed CUDA path.
		os.Setenv("GOMLX_NO_AUTO_INSTALL", "1")
		if os.Getenv("GOPJRT_CUDA_CHECKS") == "" {
			os.Setenv("GOPJRT_CUDA_CHECKS", "0")
		}
		cfg := plugin
		if opt.NoTF32 {
			cfg += ",tf32=false"
		}
		if len(spec.IDs) > 0 {
			ids := make([]string, len(spec.IDs))
			for i, id := range spec.IDs {
				ids[i] = strconv.Itoa(id)
			}
			cfg += ",visible_devices=" + strings.Join(ids, ";")
		}
		be, err := xla.New(cfg)
		if err != nil {
			return nil, info, fmt.Errorf("device: loading PJRT plugin %s: %w", plugin, err)
		}
		info.Backend, info.Plugin, info.Devices, info.Desc = "xla", plugin, be.NumDevices(), be.Description()
		info.GPUs = QueryGPUs()
		return be, info, nil
	}
	return nil, info, fmt.Errorf("device: unknown kind %q", spec.Kind)
}

// ErrNoPlugin is returned by FindPlugin when nothing was found.
var ErrNoPlugin = errors.New("no plugin")

// FindPlugin locates the XLA CUDA PJRT plugin: explicit, then
// $GALLOP_PJRT_PLUGIN, then $GOMLX_BACKEND when it names a file
// ("xla:/path/plugin.so"), then the jax_plugins directories of Python
// installations (the JAX CUDA plugin). It returns the path and every place
// it looked.
func FindPlugin(explicit string) (string, []string, error) {
	var searched []string
	try := func(p, why string) bool {
		searched = append(searched, fmt.Sprintf("%s (%s)", p, why))
		st, err := os.Stat(p)
		return err == nil && !st.IsDir()
	}
	if explicit != "" {
		if try(explicit, "--pjrt-plugin") {
			return explicit, searched, nil
		}
		return "", searched, fmt.Errorf("--pjrt-plugin %s: not a file", explicit)
	}
	if p := os.Getenv("GALLOP_PJRT_PLUGIN"); p != "" {
		if try(p, "$GALLOP_PJRT_PLUGIN") {
			return p, searched, nil
		}
		return "", searched, fmt.Errorf("$GALLOP_PJRT_PLUGIN=%s: not a file", p)
	}
	if gb := os.Getenv("GOMLX_BACKEND"); strings.HasPrefix(gb, "xla:") {
		p, _, _ := strings.Cut(strings.TrimPrefix(gb, "xla:"), ",")
		if strings.Contains(p, "/") && try(p, "$GOMLX_BACKEND") {
			return p, searched, nil
		}
	}
	var roots []string
	for _, pat := range []string{
		"/usr/local/lib/python3*/dist-packages", "/usr/local/lib/python3*/site-packages",
		"/usr/lib/python3*/dist-packages", "/usr/lib/python3/dist-packages",
		filepath.Join(os.Getenv("HOME"), ".local/lib/python3*/site-packages"),
		"/opt/conda/lib/python3*/site-packages",
	} {
		m, _ := filepath.Glob(pat)
		roots = append(roots, m...)
	}
	if v := os.Getenv("VIRTUAL_ENV"); v != "" {
		m, _ := filepath.Glob(filepath.Join(v, "lib/python3*/site-packages"))
		roots = append(roots, m...)
	}
	if sp := pythonSitePackages(); sp != "" {
		roots = append([]string{sp}, roots...)
	}
	for _, r := range roots {
		for _, sub := range []string{"xla_cuda13", "xla_cuda12", "xla_cuda"} {
			if p := filepath.Join(r, "jax_plugins", sub, "xla_cuda_plugin.so"); try(p, "JAX CUDA plugin") {
				return p, searched, nil
			}
		}
	}
	return "", searched, ErrNoPlugin
}

// pythonSitePackages asks python3 where jax_plugins lives, if it can.
func pythonSitePackages() string {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, "python3", "-c",
		"import jax_plugins,os;print(os.path.dirname(list(jax_plugins.__path__)[0]))").Output()
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(out))
}

package device

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestParse(t *testing.T) {
	for in, want := range map[string]string{"cpu": "cpu", "gpu": "gpu", "gpu:0,1": "gpu:0,1", " gpu:3 ": "gpu:3"} {
		s, err := Parse(in)
		if err != nil || s.String() != want {
			t.Errorf("Parse(%q) = %v, %v; want %s", in, s, err, want)
		}
	}
	for _, bad := range []string{"", "tpu", "gpu:a", "gpu:0,0", "cpu:1", "gpu:-1"} {
		if _, err := Parse(bad); err == nil {
			t.Errorf("Parse(%q) accepted", bad)
		}
	}
}

func TestFindPluginOrder(t *testing.T) {
	dir := t.TempDir()
	a := filepath.Join(dir, "a.so")
	b := filepath.Join(dir, "b.so")
	os.WriteFile(a, nil, 0o644)
	os.WriteFile(b, nil, 0o644)
	t.Setenv("GALLOP_PJRT_PLUGIN", b)
	if p, _, err := FindPlugin(a); err != nil || p != a {
		t.Fatalf("explicit: %s %v", p, err)
	}
	if p, _, err := FindPlugin(""); err != nil || p != b {
		t.Fatalf("env: %s %v", p, err)
	}
	t.Setenv("GALLOP_PJRT_PLUGIN", filepath.Join(dir, "missing.so"))
	if _, s, err := FindPlugin(""); err == nil || !strings.Contains(strings.Join(s, " "), "missing.so") {
		t.Fatalf("missing env plugin: %v %v", s, err)
	}
}

func TestOpenGPUWithoutPluginExplains(t *testing.T) {
	t.Setenv("GALLOP_PJRT_PLUGIN", "")
	t.Setenv("GOMLX_BACKEND", "")
	t.Setenv("HOME", t.TempDir())
	t.Setenv("PATH", t.TempDir()) // no python3
	_, _, err := Open(Spec{Kind: "gpu"}, Options{Plugin: "/nonexistent/xla_cuda_plugin.so"})
	if err == nil || !strings.Contains(err.Error(), "--pjrt-plugin") || !strings.Contains(err.Error(), "Searched") {
		t.Fatalf("want an explanation, got %v", err)
	}
}

func TestOpenCPU(t *testing.T) {
	be, info, err := Open(Spec{Kind: "cpu"}, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if info.Backend != "go" || be.NumDevices() < 1 {
		t.Fatalf("%+v", info)
	}
}

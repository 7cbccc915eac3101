package train

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"

	"github.com/gomlx/gomlx/core/tensors"

	"github.com/gallop-dev/gallop/batch"
	"github.com/gallop-dev/gallop/internal/safetensors"
	"github.com/gallop-dev/gallop/model"
)

// Checkpoint is the resumable state of a run besides the tensors.
type Checkpoint struct {
	Step    int64              `json:"step"`
	Sampler batch.SamplerState `json:"sampler"`
	Seed    uint64             `json:"seed"`
	Arch    string             `json:"arch"`
	Extra   map[string]string  `json:"extra,omitempty"`
}

const ckptPrefix, ckptExt = "ckpt-", ".safetensors"

// CheckpointPath is the file name of the checkpoint of step in dir.
func CheckpointPath(dir string, step int64) string {
	return filepath.Join(dir, fmt.Sprintf("%s%09d%s", ckptPrefix, step, ckptExt))
}

// SaveCheckpoint writes st and c to dir atomically (a crash during the save
// leaves the previous checkpoints intact) and keeps only the newest keep
// checkpoints (keep <= 0 keeps all). It returns the file's path.
func SaveCheckpoint(dir string, m model.Model, st *State, c Checkpoint, keep int) (string, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", fmt.Errorf("train: checkpoint: %w", err)
	}
	c.Step = st.Step
	c.Arch = m.Arch()
	meta, err := json.Marshal(c)
	if err != nil {
		return "", err
	}
	var ts []safetensors.Tensor
	for i, p := range m.Params() {
		for _, g := range []struct {
			prefix string
			t      *tensors.Tensor
		}{{"param.", st.Params[i]}, {"adam.m.", st.M[i]}, {"adam.v.", st.V[i]}} {
			data, err := tensors.CopyFlatData[float32](g.t)
			if err != nil {
				return "", fmt.Errorf("train: checkpoint %s%s: %w", g.prefix, p.Name, err)
			}
			ts = append(ts, safetensors.Tensor{Name: g.prefix + p.Name, Shape: p.Shape, Data: data})
		}
	}
	if st.Amp != nil {
		amp, err := tensors.CopyFlatData[float32](st.Amp)
		if err != nil {
			return "", fmt.Errorf("train: checkpoint amp.state: %w", err)
		}
		ts = append(ts, safetensors.Tensor{Name: "amp.state", Shape: []int{2}, Data: amp})
	}
	path := CheckpointPath(dir, st.Step)
	if err := safetensors.WriteFile(path, ts, map[string]string{"gallop.checkpoint": string(meta)}); err != nil {
		return "", fmt.Errorf("train: checkpoint: %w", err)
	}
	if keep > 0 {
		all, _ := ListCheckpoints(dir)
		for i := 0; i+keep < len(all); i++ {
			os.Remove(all[i])
		}
	}
	return path, nil
}

// ListCheckpoints returns the checkpoint files in dir, oldest first.
func ListCheckpoints(dir string) ([]string, error) {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	type ck struct {
		step int64
		path string
	}
	var cks []ck
	for _, e := range ents {
		n := e.Name()
		if !strings.HasPrefix(n, ckptPrefix) || !strings.HasSuffix(n, ckptExt) {
			continue
		}
		s, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimPrefix(n, ckptPrefix), ckptExt), 10, 64)
		if err != nil {
			continue
		}
		cks = append(cks, ck{s, filepath.Join(dir, n)})
	}
	sort.Slice(cks, func(i, j int) bool { return cks[i].step < cks[j].step })
	out := make([]string, len(cks))
	for i, c := range cks {
		out[i] = c.path
	}
	return out, nil
}

// LatestCheckpoint returns the newest checkpoint in dir, or "" if none.
func LatestCheckpoint(dir string) (string, error) {
	all, err := ListCheckpoints(dir)
	if err != nil || len(all) == 0 {
		return "", err
	}
	return all[len(all)-1], nil
}

// LoadCheckpoint reads a checkpoint written by SaveCheckpoint for model m.
func LoadCheckpoint(path string, m model.Model) (*State, Checkpoint, error) {
	var c Checkpoint
	f, err := safetensors.ReadFile(path)
	if err != nil {
		return nil, c, fmt.Errorf("train: %w", err)
	}
	if err := json.Unmarshal([]byte(f.Metadata["gallop.checkpoint"]), &c); err != nil {
		return nil, c, fmt.Errorf("train: %s: checkpoint metadata: %w", path, err)
	}
	if c.Arch != m.Arch() {
		return nil, c, fmt.Errorf("train: %s: checkpoint of a %q model, want %q", path, c.Arch, m.Arch())
	}
	st := &State{Step: c.Step}
	for _, p := range m.Params() {
		for _, g := range []struct {
			prefix string
			dst    *[]*tensors.Tensor
		}{{"param.", &st.Params}, {"adam.m.", &st.M}, {"adam.v.", &st.V}} {
			t := f.Tensor(g.prefix + p.Name)
			if t == nil {
				return nil, c, fmt.Errorf("train: %s: missing tensor %s%s", path, g.prefix, p.Name)
			}
			if fmt.Sprint(t.Shape) != fmt.Sprint(p.Shape) {
				return nil, c, fmt.Errorf("train: %s: tensor %s%s has shape %v, model wants %v", path, g.prefix, p.Name, t.Shape, p.Shape)
			}
			*g.dst = append(*g.dst, tensors.FromFlatDataAndDimensions(t.Data, p.Shape...))
		}
	}
	if t := f.Tensor("amp.state"); t != nil && len(t.Data) == 2 {
		st.Amp = tensors.FromFlatDataAndDimensions(t.Data, 2)
	}
	return st, c, nil
}

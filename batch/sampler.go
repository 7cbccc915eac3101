package batch

import (
	"fmt"
	"math/rand/v2"
)

// SamplerState is everything needed to resume a Sampler exactly: the
// permutation of an epoch is a pure function of (Seed, Epoch), so the state
// is three numbers and nothing is replayed on resume.
type SamplerState struct {
	Seed  uint64 `json:"seed"`
	Epoch int    `json:"epoch"`
	Pos   int    `json:"pos"` // samples of this epoch already handed out
}

// Sampler hands out sample indices in a fresh random order each epoch.
// With Shuffle false it keeps the original (time) order.
type Sampler struct {
	n       int
	shuffle bool
	st      SamplerState
	perm    []int32
}

// NewSampler returns a sampler over n samples.
func NewSampler(n int, seed uint64, shuffle bool) *Sampler {
	s := &Sampler{n: n, shuffle: shuffle, perm: make([]int32, n)}
	s.st.Seed = seed
	s.permute()
	return s
}

func (s *Sampler) permute() {
	for i := range s.perm {
		s.perm[i] = int32(i)
	}
	if s.shuffle {
		r := rand.New(rand.NewPCG(s.st.Seed, uint64(s.st.Epoch)))
		r.Shuffle(len(s.perm), func(i, j int) { s.perm[i], s.perm[j] = s.perm[j], s.perm[i] })
	}
}

// Next writes the next len(dst) sample indices into dst. An epoch's last
// incomplete batch is dropped and the next epoch begins.
func (s *Sampler) Next(dst []int32) {
	if s.st.Pos+len(dst) > s.n {
		s.st.Epoch++
		s.st.Pos = 0
		s.permute()
	}
	copy(dst, s.perm[s.st.Pos:s.st.Pos+len(dst)])
	s.st.Pos += len(dst)
}

// State returns the sampler's resumable state.
func (s *Sampler) State() SamplerState { return s.st }

// Restore sets the sampler to a state returned by State.
func (s *Sampler) Restore(st SamplerState) error {
	if st.Pos < 0 || st.Pos > s.n || st.Epoch < 0 {
		return fmt.Errorf("batch: sampler state %+v out of range for %d samples", st, s.n)
	}
	s.st = st
	s.permute()
	return nil
}

// Epoch returns the current epoch (0-based).
func (s *Sampler) Epoch() int { return s.st.Epoch }

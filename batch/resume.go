package batch

import "fmt"

// State returns the sampler's resumable state: the state after the last
// step planned (StepPlan.State of that step).
func (s *SeqSampler) State() SamplerState { return s.st }

// Restore sets the sampler to a state returned by State (or carried by a
// StepPlan or SeqBatch), possibly saved by a sampler with a different
// number of ranks. The state's Seed replaces the config's.
//
// The state of a SeqSampler is a SamplerState: Seed, Epoch and Pos, the
// number of sequences of the epoch's global order that the steps so far
// have placed (over all ranks together). The global order is a pure
// function of the sequences, the Order, Bucket, MegaBatch and (Seed, Epoch),
// and each step is cut from the rest of the order, order[Pos:], alone. So:
//
//   - Restoring a state into a sampler with the same config reproduces the
//     following steps bit for bit, with nothing replayed: the order is
//     recomputed (O(n log n) at most) and planning continues at Pos.
//   - Restoring into a sampler with a different Ranks keeps the epoch's
//     global order and its position: the sequences already placed in this
//     epoch are not placed again, and the remaining ones, order[Pos:], are
//     cut into steps for the new number of ranks and split across them.
//     Every sequence is thus placed exactly once in the epoch, as if the
//     run had used the new rank count from Pos on. The global batch
//     (Ranks×Rows sequences, or tokens for Packed) changes with the rank
//     count; the learning rate schedule is the caller's business.
//   - Rows, Len, Layout and Balance may change too, with the same
//     guarantee: the order does not depend on them. It does depend on
//     Order, and for OrderBucketed on Bucket and MegaBatch (whose default
//     Bucket is Rows): keep those, or the remaining sequences are not the
//     rest of the same order.
//
// The next epochs are the same whatever the rank count: they depend only
// on (Seed, Epoch).
func (s *SeqSampler) Restore(st SamplerState) error {
	if st.Pos < 0 || st.Pos > len(s.seqs) || st.Epoch < 0 {
		return fmt.Errorf("batch: sequence sampler state %+v out of range for %d sequences", st, len(s.seqs))
	}
	s.st = st
	s.cfg.Seed = st.Seed
	s.makeOrder()
	return nil
}

// Remaining is the number of sequences of the current epoch not yet placed.
func (s *SeqSampler) Remaining() int { return len(s.seqs) - s.st.Pos }

// MeasureEpoch plans a whole epoch of a sampler with this config (without
// reading any data) and returns its statistics: padding fraction, tokens
// per batch and rank imbalance.
func MeasureEpoch(seqs []Seq, cfg SeqSamplerConfig, epoch int) (EpochStats, error) {
	s, err := NewSeqSampler(seqs, cfg)
	if err != nil {
		return EpochStats{}, err
	}
	if err := s.Restore(SamplerState{Seed: cfg.Seed, Epoch: epoch}); err != nil {
		return EpochStats{}, err
	}
	var e EpochStats
	var p StepPlan
	for s.Remaining() > 0 {
		s.Next(&p)
		e.Add(&p)
	}
	return e, nil
}

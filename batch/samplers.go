package batch

import (
	"cmp"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
)

// Order is how a SeqSampler orders the sequences of an epoch. The result is
// the epoch's global order, a pure function of (seed, epoch); global steps
// are cut from it front to back.
type Order uint8

const (
	// OrderRandom is a fresh uniform permutation each epoch (the one
	// NewSampler gives for the same seed and epoch).
	OrderRandom Order = iota
	// OrderBucketed is a length-bucketed pseudo-shuffle, for the Padded
	// layout: shuffle, cut into mega-batches of MegaBatch×Bucket sequences,
	// sort each by length, cut those into buckets of Bucket sequences,
	// shuffle the full buckets (a last partial one stays at the end). A
	// bucket then holds sequences of similar length, so little of a batch
	// drawn from it is padding, while the contents and order of the buckets
	// still change every epoch.
	OrderBucketed
	// OrderTime keeps the sequences in the order given, every epoch: for
	// walk-forward training and evaluation (pass the sequences in time
	// order, as Select(seqs, fold.Train) does).
	OrderTime
)

func (o Order) String() string {
	switch o {
	case OrderRandom:
		return "random"
	case OrderBucketed:
		return "bucketed"
	case OrderTime:
		return "time"
	}
	return fmt.Sprintf("order(%d)", uint8(o))
}

// Balance is how a global step's sequences are split across the
// data-parallel ranks. Balancing evens the tokens of the ranks' batches,
// hence their share of the gradient and, for Packed, their real work. For
// Padded it cannot shorten a synchronous step, whose cost is the largest
// B×T of the step (EpochStats.SyncPaddingFraction); bucketing does that.
// BalanceKK came out best on the LOBSTER samples and the simulator
// (BENCHMARKS.md, "Batching").
type Balance uint8

const (
	// BalanceNone gives rank r the r-th of Ranks equal-count contiguous
	// shares of the step's sequences in global order (what a distributed
	// sampler without length information does).
	BalanceNone Balance = iota
	// BalanceLPT is greedy longest-processing-time: longest sequence first,
	// each onto the rank with the fewest tokens so far (that still has a
	// free row, for Padded).
	BalanceLPT
	// BalanceKK is Karmarkar–Karp largest differencing for Ranks-way
	// partitioning: partial partitions are merged two at a time, the two
	// with the largest spread first, largest subset with smallest. For
	// Padded it starts from groups of Ranks sequences of similar length
	// (the balanced largest differencing method), so every rank gets at
	// most Rows sequences.
	BalanceKK
)

func (b Balance) String() string {
	switch b {
	case BalanceNone:
		return "none"
	case BalanceLPT:
		return "lpt"
	case BalanceKK:
		return "kk"
	}
	return fmt.Sprintf("balance(%d)", uint8(b))
}

// SeqSamplerConfig configures NewSeqSampler.
type SeqSamplerConfig struct {
	Layout Layout
	Rows   int // B: rows of each rank's batch
	// Len is T for Packed (every row has Len positions) and the largest T
	// for Padded. No sequence may be longer.
	Len int
	// PadMultiple (Padded): a batch's T is its longest sequence rounded up
	// to a multiple of PadMultiple, at most Len. 1 (the default) pads least;
	// Len gives every batch the same shape.
	PadMultiple int
	Ranks       int // data-parallel ranks (default 1)
	Order       Order
	// Bucket (OrderBucketed) is the number of sequences of similar length
	// cut together; default Rows. With several ranks and a Balance, set it
	// to Ranks×Rows so that a whole global step is one bucket: balancing
	// then mixes only similar lengths. The order depends on Bucket, not on
	// Ranks: keep Bucket when the rank count changes (see Restore).
	Bucket    int
	MegaBatch int // OrderBucketed: mega-batches of MegaBatch×Bucket sequences (default 50)
	Balance   Balance
	Seed      uint64
}

// SeqSampler plans the global steps of training over sequences: which
// sequences each rank's batch holds and where each sits. It is
// deterministic: the plan is a pure function of the sequences, the config
// and (Seed, Epoch), and its state (SamplerState: Seed, Epoch, Pos) resumes
// it exactly; see Restore for what happens when the number of ranks
// changes.
//
// A global step takes the next sequences of the epoch's global order:
// Ranks×Rows of them for Padded; for Packed, the longest prefix whose
// tokens fit Ranks×Rows×Len, shortened (by 1/256 of that capacity, then
// 1/128, 1/64, ...) until, split across the ranks, each rank's share packs
// first-fit decreasing into its Rows rows. The step's sequences are split
// across ranks as Balance says. Every sequence is placed exactly once per
// epoch; the last step of an epoch may be partial, never dropped: it has
// rows of padding only, and a rank may get no sequence at all (a batch
// without labels, so divide a loss by max(labelled, 1)).
//
// A SeqSampler is not safe for concurrent use; with several data-parallel
// ranks, each rank runs its own (they plan the same steps).
type SeqSampler struct {
	cfg       SeqSamplerConfig
	seqs      []Seq
	lens      []int64
	minLen    int
	maxPlaces int // most sequences in one rank batch
	st        SamplerState
	order     []int32

	pcg rand.PCG
	rng *rand.Rand

	// Scratch, reused from step to step.
	tmp     []int32   // order: the bucketed reorder
	bperm   []int32   // order: batch permutation
	byLen   []int32   // chunk positions by length, longest first
	members [][]int32 // chunk positions of each rank
	load    []int64   // tokens of each rank
	rowUsed []int32   // pack: positions used in each row
	rowOf   []int32   // pack: row of each chunk position
	offOf   []int32   // pack: offset of each chunk position
	rowCnt  []int32   // pack: sequences in each row
	kk      kkScratch
}

// NewSeqSampler returns a sampler over seqs, at epoch 0 position 0.
func NewSeqSampler(seqs []Seq, cfg SeqSamplerConfig) (*SeqSampler, error) {
	if cfg.Ranks == 0 {
		cfg.Ranks = 1
	}
	if cfg.PadMultiple == 0 {
		cfg.PadMultiple = 1
	}
	if cfg.MegaBatch == 0 {
		cfg.MegaBatch = 50
	}
	if cfg.Bucket == 0 {
		cfg.Bucket = cfg.Rows
	}
	switch {
	case len(seqs) == 0 || len(seqs) > math.MaxInt32:
		return nil, fmt.Errorf("batch: sequence sampler over %d sequences", len(seqs))
	case cfg.Rows < 1 || cfg.Len < 1 || cfg.Ranks < 1 || cfg.Rows > math.MaxInt32/cfg.Len:
		return nil, fmt.Errorf("batch: sequence sampler with %d rows of %d positions, %d ranks", cfg.Rows, cfg.Len, cfg.Ranks)
	case cfg.PadMultiple < 1 || cfg.PadMultiple > cfg.Len || cfg.MegaBatch < 1 || cfg.Bucket < 1:
		return nil, fmt.Errorf("batch: pad multiple %d (length %d), bucket %d, mega-batch %d", cfg.PadMultiple, cfg.Len, cfg.Bucket, cfg.MegaBatch)
	case cfg.Layout > Packed || cfg.Order > OrderTime || cfg.Balance > BalanceKK:
		return nil, fmt.Errorf("batch: layout %v, order %v, balance %v", cfg.Layout, cfg.Order, cfg.Balance)
	}
	s := &SeqSampler{cfg: cfg, seqs: seqs, lens: make([]int64, len(seqs)), minLen: cfg.Len}
	s.st.Seed = cfg.Seed
	for i, q := range seqs {
		n := q.Len()
		if n < 1 || n > cfg.Len {
			return nil, fmt.Errorf("batch: sequence %d %+v has %d rows, want 1 to %d (cut long runs with maxLen)", i, q, n, cfg.Len)
		}
		s.lens[i] = int64(n)
		s.minLen = min(s.minLen, n)
	}
	n, nr := len(seqs), cfg.Ranks
	chunk := min(n, nr*cfg.Rows) // most sequences in one step
	s.maxPlaces = cfg.Rows
	est := chunk // usual sequences in one step, to size the scratch
	if cfg.Layout == Packed {
		// A row holds at most Len/minLen sequences; a step's prefix holds at
		// most Ranks×Rows×Len tokens.
		s.maxPlaces = min(n, cfg.Rows*(cfg.Len/s.minLen))
		slots := int64(nr) * int64(cfg.Rows) * int64(cfg.Len)
		chunk = int(min(int64(n), slots/int64(s.minLen)))
		var total int64
		for _, l := range s.lens {
			total += l
		}
		est = int(min(int64(chunk), 2*slots*int64(n)/total+1))
	}
	s.order = make([]int32, n)
	s.tmp = make([]int32, n)
	s.bperm = make([]int32, n/cfg.Bucket)
	s.byLen = make([]int32, 0, est)
	s.members = make([][]int32, nr)
	for r := range s.members {
		s.members[r] = make([]int32, 0, min(est, 2*est/nr+s.maxPlaces))
	}
	s.load = make([]int64, nr)
	s.rowUsed = make([]int32, cfg.Rows)
	s.rowCnt = make([]int32, cfg.Rows+1)
	if cfg.Layout == Packed {
		s.rowOf = make([]int32, chunk)
		s.offOf = make([]int32, chunk)
	}
	if cfg.Balance == BalanceKK {
		s.kk.sum = make([]int64, 0, (est+nr)*nr)
		s.kk.head = make([]int32, 0, (est+nr)*nr)
		s.kk.tail = make([]int32, 0, (est+nr)*nr)
		s.kk.next = make([]int32, 0, est)
		s.kk.heap = make([]int32, 0, est)
	}
	s.rng = rand.New(&s.pcg)
	s.makeOrder()
	return s, nil
}

// Seqs returns the sequences the sampler draws from.
func (s *SeqSampler) Seqs() []Seq { return s.seqs }

// Config returns the sampler's configuration, defaults filled in.
func (s *SeqSampler) Config() SeqSamplerConfig { return s.cfg }

// Next plans the next global step into p, reusing p's storage, and
// advances the sampler. Once an epoch's sequences are all placed, the next
// call starts the next epoch.
func (s *SeqSampler) Next(p *StepPlan) {
	if s.st.Pos >= len(s.order) {
		s.st.Epoch++
		s.st.Pos = 0
		s.makeOrder()
	}
	if len(p.Ranks) != s.cfg.Ranks {
		p.Ranks = make([]RankPlan, s.cfg.Ranks)
		for r := range p.Ranks {
			p.Ranks[r].Places = make([]Place, 0, s.maxPlaces)
		}
	}
	p.Epoch = s.st.Epoch
	s.st.Pos += s.plan(p, s.order[s.st.Pos:])
	p.State = s.st
}

// makeOrder computes the global order of the current epoch.
func (s *SeqSampler) makeOrder() {
	o := s.order
	for i := range o {
		o[i] = int32(i)
	}
	if s.cfg.Order == OrderTime {
		return
	}
	s.pcg.Seed(s.st.Seed, uint64(s.st.Epoch))
	s.rng.Shuffle(len(o), func(i, j int) { o[i], o[j] = o[j], o[i] })
	if s.cfg.Order != OrderBucketed {
		return
	}
	b := s.cfg.Bucket
	mb := s.cfg.MegaBatch * b
	for i := 0; i < len(o); i += mb {
		slices.SortFunc(o[i:min(i+mb, len(o))], func(x, y int32) int {
			return cmp.Or(cmp.Compare(s.lens[x], s.lens[y]), cmp.Compare(x, y))
		})
	}
	bp := s.bperm
	for i := range bp {
		bp[i] = int32(i)
	}
	s.rng.Shuffle(len(bp), func(i, j int) { bp[i], bp[j] = bp[j], bp[i] })
	for j, k := range bp {
		copy(s.tmp[j*b:(j+1)*b], o[int(k)*b:(int(k)+1)*b])
	}
	copy(s.tmp[len(bp)*b:], o[len(bp)*b:])
	s.order, s.tmp = s.tmp, s.order
}

// plan fills p with the next global step drawn from rem, the rest of the
// epoch's order, and returns how many sequences it took. It depends only on
// rem and the config, which is what makes resuming exact.
func (s *SeqSampler) plan(p *StepPlan, rem []int32) int {
	nr, rows := s.cfg.Ranks, s.cfg.Rows
	if s.cfg.Layout == Padded {
		k := min(nr*rows, len(rem))
		s.partition(rem[:k], rows)
		for r := range p.Ranks {
			s.padRank(&p.Ranks[r], rem, s.members[r])
		}
		return k
	}
	capTokens := int64(nr) * int64(rows) * int64(s.cfg.Len)
	k := s.prefix(rem, capTokens)
	for try := 0; ; try++ {
		s.partition(rem[:k], math.MaxInt)
		ok := true
		for r := range p.Ranks {
			if !s.packRank(&p.Ranks[r], rem, s.members[r]) {
				ok = false
				break
			}
		}
		if ok {
			return k
		}
		// Shrink the step: 0.4%, 0.8%, 1.6%, ... of the capacity, and at
		// least one sequence, so this ends (one sequence always fits).
		target := capTokens - capTokens>>max(0, 8-try)
		if try >= 8 {
			target = 0
		}
		k = max(1, min(k-1, s.prefix(rem, target)))
	}
}

// prefix is the length of the longest prefix of rem with at most capTokens
// tokens, at least 1.
func (s *SeqSampler) prefix(rem []int32, capTokens int64) int {
	var acc int64
	for i, j := range rem {
		acc += s.lens[j]
		if acc > capTokens {
			return max(i, 1)
		}
	}
	return len(rem)
}

// partition splits the chunk (positions 0..len(chunk)-1) across the ranks
// into s.members, each list sorted by position; no rank gets more than
// maxCount positions (maxCount × ranks >= len(chunk)).
func (s *SeqSampler) partition(chunk []int32, maxCount int) {
	nr, k := s.cfg.Ranks, len(chunk)
	for r := range s.members {
		s.members[r] = s.members[r][:0]
		s.load[r] = 0
	}
	if s.cfg.Balance == BalanceNone || nr == 1 {
		for r := range s.members {
			for c := r * k / nr; c < (r+1)*k/nr; c++ {
				s.members[r] = append(s.members[r], int32(c))
			}
		}
		return
	}
	s.byLen = s.byLen[:0]
	for c := range chunk {
		s.byLen = append(s.byLen, int32(c))
	}
	slices.SortFunc(s.byLen, func(a, b int32) int {
		return cmp.Or(cmp.Compare(s.lens[chunk[b]], s.lens[chunk[a]]), cmp.Compare(a, b))
	})
	if s.cfg.Balance == BalanceLPT {
		for _, c := range s.byLen {
			best := -1
			for r := range s.members {
				if len(s.members[r]) < maxCount && (best < 0 || s.load[r] < s.load[best]) {
					best = r
				}
			}
			s.members[best] = append(s.members[best], c)
			s.load[best] += s.lens[chunk[c]]
		}
	} else {
		group := 1
		if maxCount < k {
			group = nr // balanced: every rank gets one sequence of each group
		}
		s.kk.run(s.byLen, func(c int32) int64 { return s.lens[chunk[c]] }, nr, group, s.members)
	}
	for r := range s.members {
		slices.Sort(s.members[r])
	}
}

// padRank lays out one rank's sequences (chunk positions of rem), one per
// row.
func (s *SeqSampler) padRank(rp *RankPlan, rem []int32, members []int32) {
	rp.Rows = s.cfg.Rows
	rp.Tokens = 0
	rp.Places = rp.Places[:0]
	longest := 0
	for i, c := range members {
		n := int(s.lens[rem[c]])
		rp.Places = append(rp.Places, Place{Seq: rem[c], Row: int32(i), Len: int32(n), Segment: 1})
		rp.Tokens += n
		longest = max(longest, n)
	}
	rp.T = min(roundUp(longest, s.cfg.PadMultiple), s.cfg.Len)
}

// packRank lays out one rank's sequences first-fit decreasing into Rows
// rows of Len positions, or reports that they do not fit.
func (s *SeqSampler) packRank(rp *RankPlan, rem []int32, members []int32) bool {
	rows, l := s.cfg.Rows, int32(s.cfg.Len)
	var tokens int64
	for _, c := range members {
		tokens += s.lens[rem[c]]
	}
	if tokens > int64(rows)*int64(l) {
		return false
	}
	s.byLen = append(s.byLen[:0], members...)
	slices.SortFunc(s.byLen, func(a, b int32) int {
		return cmp.Or(cmp.Compare(s.lens[rem[b]], s.lens[rem[a]]), cmp.Compare(a, b))
	})
	clear(s.rowUsed)
	clear(s.rowCnt)
	full := 0 // rows before this one are full
	for _, c := range s.byLen {
		n := int32(s.lens[rem[c]])
		r := full
		for r < rows && s.rowUsed[r]+n > l {
			r++
		}
		if r == rows {
			return false
		}
		s.rowOf[c], s.offOf[c] = int32(r), s.rowUsed[r]
		s.rowUsed[r] += n
		s.rowCnt[r+1]++
		for full < rows && s.rowUsed[full] == l {
			full++
		}
	}
	// Counting sort by row; within a row, placement order is offset order.
	for r := 1; r <= rows; r++ {
		s.rowCnt[r] += s.rowCnt[r-1]
	}
	m := len(members)
	rp.Rows, rp.T, rp.Tokens = rows, int(l), int(tokens)
	rp.Places = slices.Grow(rp.Places[:0], m)[:m]
	for _, c := range s.byLen {
		r := s.rowOf[c]
		i := s.rowCnt[r]
		s.rowCnt[r]++
		rp.Places[i] = Place{Seq: rem[c], Row: r, Offset: s.offOf[c], Len: int32(s.lens[rem[c]])}
	}
	// Segment ids: 1 + index within the row.
	for i := range rp.Places {
		if i > 0 && rp.Places[i].Row == rp.Places[i-1].Row {
			rp.Places[i].Segment = rp.Places[i-1].Segment + 1
		} else {
			rp.Places[i].Segment = 1
		}
	}
	return true
}

// kkScratch is the storage of the Karmarkar–Karp partitioner: partial
// partitions ("solutions") of nr subsets each, a subset being a linked list
// of items with a sum.
type kkScratch struct {
	sum        []int64 // [solution*nr + subset], subsets of a solution sorted by sum, largest first
	head, tail []int32 // first and last item of each subset, -1 if empty
	next       []int32 // next item in its subset's list, -1 at the end
	heap       []int32 // solutions, largest spread first
}

// run partitions items (sorted by weight, heaviest first; at most
// len(next) of them) into nr subsets written to out. Each initial solution
// holds group consecutive items, one per subset (group = nr: every subset
// gets exactly one item of each group, which bounds the subset sizes; group
// = 1: plain largest differencing).
func (kk *kkScratch) run(items []int32, w func(int32) int64, nr, group int, out [][]int32) {
	ns := (len(items) + group - 1) / group
	grow := func(v []int32, n int) []int32 { return slices.Grow(v[:0], n)[:n] }
	kk.sum = slices.Grow(kk.sum[:0], ns*nr)[:ns*nr]
	kk.head, kk.tail = grow(kk.head, ns*nr), grow(kk.tail, ns*nr)
	maxItem := int32(0)
	for _, it := range items {
		maxItem = max(maxItem, it)
	}
	kk.next = grow(kk.next, int(maxItem)+1)
	kk.heap = kk.heap[:0]
	for sol := 0; sol < ns; sol++ {
		for j := 0; j < nr; j++ {
			x := sol*nr + j
			kk.sum[x], kk.head[x], kk.tail[x] = 0, -1, -1
			if i := sol*group + j; j < group && i < len(items) {
				it := items[i]
				kk.sum[x], kk.head[x], kk.tail[x] = w(it), it, it
				kk.next[it] = -1
			}
		}
		kk.push(int32(sol), nr)
	}
	for len(kk.heap) > 1 {
		a := kk.pop(nr)
		b := kk.pop(nr)
		kk.merge(a, b, nr)
		kk.push(a, nr)
	}
	root := int(kk.heap[0]) * nr
	for j := 0; j < nr; j++ {
		for it := kk.head[root+j]; it >= 0; it = kk.next[it] {
			out[j] = append(out[j], it)
		}
	}
}

func (kk *kkScratch) spread(sol int32, nr int) int64 {
	return kk.sum[int(sol)*nr] - kk.sum[int(sol)*nr+nr-1]
}

// before orders the heap: larger spread first, then lower solution.
func (kk *kkScratch) before(a, b int32, nr int) bool {
	sa, sb := kk.spread(a, nr), kk.spread(b, nr)
	return sa > sb || (sa == sb && a < b)
}

func (kk *kkScratch) push(sol int32, nr int) {
	h := append(kk.heap, sol)
	for i := len(h) - 1; i > 0; {
		p := (i - 1) / 2
		if !kk.before(h[i], h[p], nr) {
			break
		}
		h[i], h[p] = h[p], h[i]
		i = p
	}
	kk.heap = h
}

func (kk *kkScratch) pop(nr int) int32 {
	h := kk.heap
	top := h[0]
	n := len(h) - 1
	h[0] = h[n]
	h = h[:n]
	for i := 0; ; {
		l, m := 2*i+1, i
		if l < n && kk.before(h[l], h[m], nr) {
			m = l
		}
		if l+1 < n && kk.before(h[l+1], h[m], nr) {
			m = l + 1
		}
		if m == i {
			break
		}
		h[i], h[m] = h[m], h[i]
		i = m
	}
	kk.heap = h
	return top
}

// merge joins solution b into a: a's j-th largest subset with b's j-th
// smallest, then re-sorts a's subsets.
func (kk *kkScratch) merge(a, b int32, nr int) {
	pa, pb := int(a)*nr, int(b)*nr
	for j := 0; j < nr; j++ {
		x, y := pa+j, pb+nr-1-j
		kk.sum[x] += kk.sum[y]
		switch {
		case kk.head[y] < 0:
		case kk.head[x] < 0:
			kk.head[x], kk.tail[x] = kk.head[y], kk.tail[y]
		default:
			kk.next[kk.tail[x]] = kk.head[y]
			kk.tail[x] = kk.tail[y]
		}
	}
	// Insertion sort, largest sum first (stable, so deterministic).
	for j := 1; j < nr; j++ {
		for i := pa + j; i > pa && kk.sum[i] > kk.sum[i-1]; i-- {
			kk.sum[i], kk.sum[i-1] = kk.sum[i-1], kk.sum[i]
			kk.head[i], kk.head[i-1] = kk.head[i-1], kk.head[i]
			kk.tail[i], kk.tail[i-1] = kk.tail[i-1], kk.tail[i]
		}
	}
}

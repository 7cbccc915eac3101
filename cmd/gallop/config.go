package main

import (
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/BurntSushi/toml"

	"github.com/gallop-dev/gallop/data/sim"
	"github.com/gallop-dev/gallop/manifest"
	"github.com/gallop-dev/gallop/train"
)

// Config is the fully resolved configuration of a training run. It is
// recorded in run.json; `gallop train --config run.toml` reads the same keys.
type Config struct {
	Seed    uint64 `toml:"seed" json:"seed"`
	Device  string `toml:"device" json:"device"`
	RunsDir string `toml:"runs_dir" json:"runs_dir"`
	// Deterministic asks for bitwise-reproducible runs: on GPU it sets
	// XLA's deterministic-ops flags; the CPU path is deterministic anyway
	// (see docs in README).
	Deterministic bool `toml:"deterministic" json:"deterministic"`

	Data  DataConfig  `toml:"data" json:"data"`
	Model ModelConfig `toml:"model" json:"model"`
	Train TrainConfig `toml:"train" json:"train"`
}

// DataConfig chooses and labels the data.
type DataConfig struct {
	Source    string     `toml:"source" json:"source"` // "sim": the embedded simulator; "shards": a dataset from gallop data ingest
	Path      string     `toml:"path" json:"path"`     // the dataset directory, for source "shards"
	Sim       sim.Config `toml:"sim" json:"sim"`
	Window    int        `toml:"window" json:"window"`         // events per sample
	Horizon   int        `toml:"horizon" json:"horizon"`       // label horizon k, events
	Theta     float64    `toml:"theta" json:"theta"`           // label threshold, ticks
	TrainFrac float64    `toml:"train_frac" json:"train_frac"` // time split
	// ValFrac > 0 adds a test block: train_frac trains, the next val_frac
	// validates (and selects, with train.select_best), the rest tests.
	ValFrac float64 `toml:"val_frac" json:"val_frac"`
	Embargo int     `toml:"embargo" json:"embargo"` // rows skipped after the cut
	// Sequences (model.layout padded or packed): events are cut at time
	// buckets of SeqBucketMs, into sequences of at most SeqLen events.
	SeqLen      int     `toml:"seq_len" json:"seq_len"`
	SeqBucketMs float64 `toml:"seq_bucket_ms" json:"seq_bucket_ms"`
	// SeqBalance is how several GPUs split a step's sequences: "kk"
	// (Karmarkar-Karp, the ranks' tokens evened), "lpt" (greedy, longest
	// first) or "none" (equal counts in order, as a sampler that ignores
	// lengths).
	SeqBalance string `toml:"seq_balance" json:"seq_balance"`
}

// ModelConfig chooses the model.
type ModelConfig struct {
	Arch string `toml:"arch" json:"arch"`
	// Layout: "" trains on fixed windows; "padded" or "packed" trains on
	// variable-length sequences (data.seq_len, data.seq_bucket_ms) in that
	// layout, every labelled position of a sequence predicted from its
	// events up to there (the MLP and DeepLOB from a window of them ending
	// there, the GRU and the transformer from all of them).
	Layout string `toml:"layout" json:"layout"`
	Hidden []int  `toml:"hidden" json:"hidden"`
	// Inputs, for the mlp: "all" feeds every feature of each event; "book"
	// only the 10 levels' distances and sizes that DeepLOB sees (40
	// columns), for like-for-like comparisons.
	Inputs string `toml:"inputs" json:"inputs"`
}

// TrainConfig sets the loop.
type TrainConfig struct {
	Steps     int             `toml:"steps" json:"steps"`
	BatchSize int             `toml:"batch_size" json:"batch_size"`
	LR        float64         `toml:"lr" json:"lr"`
	Schedule  string          `toml:"schedule" json:"schedule"`
	Optimizer train.Optimizer `toml:"optimizer" json:"optimizer"`
	// Precision is the compute precision: fp32, bf16 or fp16 (fp32 master
	// weights; fp16 with dynamic loss scaling).
	Precision string `toml:"precision" json:"precision"`
	// Accumulate is the number of micro-batches of BatchSize per optimizer
	// step (gradient accumulation).
	Accumulate int `toml:"accumulate" json:"accumulate"`
	// StepsPerCall runs that many optimizer steps per call of one compiled
	// graph (the steps unrolled, the same updates), to amortise the host's
	// per-call cost on small models. Needs accumulate = 1;
	// steps, eval_every and checkpoint_every must be multiples of it.
	StepsPerCall int `toml:"steps_per_call" json:"steps_per_call"`
	// DPStrategy is how several GPUs share a step: "replicas" (each
	// device's gradients averaged by one all-reduce, as PyTorch's DDP) or
	// "sharding" (XLA's SPMD partitioner splits the step and places the
	// all-reduces).
	DPStrategy string `toml:"dp_strategy" json:"dp_strategy"`
	// DPReduce is the dtype of the replicas strategy's gradient
	// all-reduce: fp32 or bf16 (half the bytes).
	DPReduce string `toml:"dp_reduce" json:"dp_reduce"`
	// DPBucketMB groups the replicas strategy's gradients into all-reduces
	// of about this many MB, last layer first, so the collectives can run
	// while the backward pass goes on (PyTorch DDP's bucket_cap_mb); 0:
	// one all-reduce after the whole backward pass.
	DPBucketMB float64 `toml:"dp_bucket_mb" json:"dp_bucket_mb"`
	// DPWeightGradsFirst orders an MLP's backward pass layer by layer on
	// several GPUs (each layer's weight gradient before the gradient goes
	// on to the layer below), so each weight gradient's all-reduce can run
	// under the rest of the backward pass (XLA's own order computes every
	// weight gradient last). Same values; off by default: on 2×H200 XLA
	// still waited for each all-reduce after one gemm and the step got
	// slower (BENCHMARKS.md).
	DPWeightGradsFirst bool `toml:"dp_weight_grads_first" json:"dp_weight_grads_first"`
	EvalEvery          int  `toml:"eval_every" json:"eval_every"`
	CheckpointEvery    int  `toml:"checkpoint_every" json:"checkpoint_every"`
	KeepCheckpoints    int  `toml:"keep_checkpoints" json:"keep_checkpoints"`
	Prefetch           int  `toml:"prefetch" json:"prefetch"`
	GuardLag           int  `toml:"guard_lag" json:"guard_lag"`
	// OnNonFinite is what a NaN/Inf in the loss or gradients does: "stop"
	// the run, "skip" the update and go on, or "rollback" to the last
	// checkpoint with the learning rate times RollbackLRFactor.
	OnNonFinite      string  `toml:"on_nonfinite" json:"on_nonfinite"`
	RollbackLRFactor float64 `toml:"rollback_lr_factor" json:"rollback_lr_factor"`
	SpikeZ           float64 `toml:"spike_z" json:"spike_z"` // loss spike warning threshold (z-score)
	Profile          bool    `toml:"profile" json:"profile"`
	// DeviceProbeEvery times each GPU's share of a data-parallel step on
	// its own every this many steps (and once early in the run) when
	// profiling, so the profile can show per-device step times and name a
	// straggler; 0: never. Each probe costs about 6 steps' time and waits
	// for the devices once.
	DeviceProbeEvery int `toml:"device_probe_every" json:"device_probe_every"`
	// SelectBest keeps the state with the best validation macro-F1 (checked
	// every eval_every steps) and reports and exports it (early stopping).
	SelectBest bool `toml:"select_best" json:"select_best"`
}

// DefaultConfig is the main job: the embedded market, an MLP, about a
// minute and a half on two cores.
func DefaultConfig() Config {
	return Config{
		Seed:    1,
		Device:  "cpu",
		RunsDir: "runs",
		Data: DataConfig{
			Source:      "sim",
			Sim:         sim.DefaultConfig(),
			Window:      10,
			Horizon:     100,
			Theta:       0.1,
			TrainFrac:   0.8,
			Embargo:     100,
			SeqLen:      64,
			SeqBucketMs: 250,
			SeqBalance:  "kk",
		},
		Model: ModelConfig{Arch: "mlp", Hidden: []int{128, 64}, Inputs: "all"},
		Train: TrainConfig{
			Steps:            8000,
			BatchSize:        256,
			LR:               2e-3,
			Schedule:         "onecycle",
			Optimizer:        train.DefaultOptimizer(),
			Precision:        "fp32",
			Accumulate:       1,
			StepsPerCall:     1,
			DPStrategy:       "sharding",
			DPReduce:         "fp32",
			DPBucketMB:       25,
			EvalEvery:        2000,
			CheckpointEvery:  2000,
			KeepCheckpoints:  2,
			Prefetch:         4,
			GuardLag:         4,
			OnNonFinite:      "stop",
			RollbackLRFactor: 0.5,
			SpikeZ:           6,
			Profile:          true,
			DeviceProbeEvery: 1000,
		},
	}
}

// Validate reports the first value that cannot run, naming its key.
func (c *Config) Validate() error {
	d, t := c.Data, c.Train
	// The sequence path parses these again where it uses them.
	_, layoutErr := parseLayout(c.Model.Layout)
	_, balanceErr := parseBalance(d.SeqBalance)
	switch {
	case d.Source != "sim" && d.Source != "shards":
		return fmt.Errorf("config: data.source = %q: want sim or shards", d.Source)
	case d.Source == "shards" && d.Path == "":
		return fmt.Errorf("config: data.source = shards needs data.path (or --data DIR)")
	case d.Window < 1:
		return fmt.Errorf("config: data.window = %d, want >= 1", d.Window)
	case d.Horizon < 1:
		return fmt.Errorf("config: data.horizon = %d, want >= 1", d.Horizon)
	case d.Theta < 0:
		return fmt.Errorf("config: data.theta = %g, want >= 0", d.Theta)
	case d.TrainFrac <= 0 || d.TrainFrac >= 1:
		return fmt.Errorf("config: data.train_frac = %g, want in (0, 1)", d.TrainFrac)
	case d.ValFrac < 0 || d.TrainFrac+d.ValFrac >= 1:
		return fmt.Errorf("config: data.val_frac = %g: want >= 0 with train_frac + val_frac < 1", d.ValFrac)
	case t.SelectBest && t.EvalEvery <= 0:
		return fmt.Errorf("config: train.select_best needs train.eval_every > 0")
	case c.Model.Arch != "mlp" && c.Model.Arch != "deeplob" && c.Model.Arch != "gru" && c.Model.Arch != "transformer":
		return fmt.Errorf("config: model.arch = %q: want mlp, deeplob, gru or transformer", c.Model.Arch)
	case t.Steps < 1:
		return fmt.Errorf("config: train.steps = %d, want >= 1", t.Steps)
	case t.BatchSize < 1:
		return fmt.Errorf("config: train.batch_size = %d, want >= 1", t.BatchSize)
	case t.LR <= 0:
		return fmt.Errorf("config: train.lr = %g, want > 0", t.LR)
	case c.Model.Layout != "" && layoutErr != nil:
		return layoutErr
	case balanceErr != nil:
		return balanceErr
	case c.Model.Layout != "" && (d.SeqLen < 2 || d.SeqBucketMs <= 0):
		return fmt.Errorf("config: data.seq_len = %d, data.seq_bucket_ms = %g: want >= 2 and > 0", d.SeqLen, d.SeqBucketMs)
	case t.Accumulate < 1:
		return fmt.Errorf("config: train.accumulate = %d, want >= 1", t.Accumulate)
	case t.DeviceProbeEvery < 0:
		return fmt.Errorf("config: train.device_probe_every = %d, want >= 0", t.DeviceProbeEvery)
	case t.StepsPerCall < 1:
		return fmt.Errorf("config: train.steps_per_call = %d, want >= 1", t.StepsPerCall)
	case t.StepsPerCall > 1 && t.Accumulate != 1:
		return fmt.Errorf("config: train.steps_per_call = %d needs accumulate = 1", t.StepsPerCall)
	case t.StepsPerCall > 1 && (t.Steps%t.StepsPerCall != 0 || t.EvalEvery%t.StepsPerCall != 0 || t.CheckpointEvery%t.StepsPerCall != 0):
		return fmt.Errorf("config: train.steps_per_call = %d must divide train.steps (%d), eval_every (%d) and checkpoint_every (%d)",
			t.StepsPerCall, t.Steps, t.EvalEvery, t.CheckpointEvery)
	case t.DPStrategy != "replicas" && t.DPStrategy != "sharding":
		return fmt.Errorf("config: train.dp_strategy = %q: want replicas or sharding", t.DPStrategy)
	case t.DPReduce != "fp32" && t.DPReduce != "bf16":
		return fmt.Errorf("config: train.dp_reduce = %q: want fp32 or bf16", t.DPReduce)
	case t.DPReduce == "bf16" && t.DPStrategy != "replicas":
		return fmt.Errorf("config: train.dp_reduce = bf16 needs dp_strategy = replicas (XLA reduces sharding's gradients in fp32)")
	case t.DPBucketMB < 0:
		return fmt.Errorf("config: train.dp_bucket_mb = %g, want >= 0", t.DPBucketMB)
	case t.OnNonFinite != "stop" && t.OnNonFinite != "skip" && t.OnNonFinite != "rollback":
		return fmt.Errorf("config: train.on_nonfinite = %q: want stop, skip or rollback", t.OnNonFinite)
	case t.OnNonFinite == "rollback" && (t.RollbackLRFactor <= 0 || t.RollbackLRFactor > 1):
		return fmt.Errorf("config: train.rollback_lr_factor = %g: want in (0, 1]", t.RollbackLRFactor)
	case d.Sim.Events < 1000:
		return fmt.Errorf("config: data.sim.events = %d, want >= 1000", d.Sim.Events)
	}
	switch {
	case c.Model.Inputs != "all" && c.Model.Inputs != "book":
		return fmt.Errorf("config: model.inputs = %q: want all or book", c.Model.Inputs)
	case c.Model.Inputs == "book" && c.Model.Arch != "mlp":
		return fmt.Errorf("config: model.inputs = book is for the mlp (deeplob always sees the book; gru and transformer see all features)")
	}
	for _, h := range c.Model.Hidden {
		if h < 1 {
			return fmt.Errorf("config: model.hidden = %v: sizes must be >= 1", c.Model.Hidden)
		}
	}
	if _, err := train.ParsePrecision(t.Precision); err != nil {
		return fmt.Errorf("config: train.precision: %w", err)
	}
	if err := t.Optimizer.Validate(); err != nil {
		return fmt.Errorf("config: train.optimizer: %w", err)
	}
	if _, err := train.ParseSchedule(t.Schedule, t.LR, int64(t.Steps)); err != nil {
		return fmt.Errorf("config: train.schedule: %w", err)
	}
	return d.Sim.Validate()
}

// resolve fills the simulator's defaults and ties its seed to the run's,
// giving the config a run records and replays.
func (c *Config) resolve() {
	c.Data.Sim = sim.Resolved(c.Data.Sim)
	c.Data.Sim.Seed = c.Seed
}

// loadRun reads the manifest of the run in dir and the resolved config it
// recorded, refusing keys this gallop does not know.
func loadRun(dir string) (*manifest.Manifest, Config, error) {
	man, err := manifest.Load(dir)
	if err != nil {
		return nil, Config{}, err
	}
	cfg, err := recordedConfig(dir, man)
	return man, cfg, err
}

// recordedConfig reads the resolved config a run recorded in its manifest,
// refusing keys this gallop does not know.
func recordedConfig(dir string, man *manifest.Manifest) (Config, error) {
	cfg := DefaultConfig()
	if len(man.Config) == 0 {
		return cfg, fmt.Errorf("%s: run.json has no config", dir)
	}
	dec := json.NewDecoder(bytes.NewReader(man.Config))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&cfg); err != nil {
		return cfg, fmt.Errorf("%s: config in run.json: %w", filepath.Join(dir, manifest.FileName), err)
	}
	return cfg, nil
}

// loadTOML overlays a TOML file on c, refusing unknown keys.
func loadTOML(path string, c *Config) error {
	md, err := toml.DecodeFile(path, c)
	if err != nil {
		return fmt.Errorf("config %s: %w", path, err)
	}
	if und := md.Undecoded(); len(und) > 0 {
		keys := make([]string, len(und))
		for i, k := range und {
			keys[i] = k.String()
		}
		return fmt.Errorf("config %s: unknown keys: %s", path, strings.Join(keys, ", "))
	}
	return nil
}

// intList is a flag.Value for "256,128".
type intList struct{ p *[]int }

func (l intList) String() string {
	if l.p == nil {
		return ""
	}
	s := make([]string, len(*l.p))
	for i, v := range *l.p {
		s[i] = strconv.Itoa(v)
	}
	return strings.Join(s, ",")
}

func (l intList) Set(v string) error {
	var out []int
	for _, f := range strings.Split(v, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil {
			return fmt.Errorf("%q is not a list of integers", v)
		}
		out = append(out, n)
	}
	*l.p = out
	return nil
}

// trainFlags binds the flags of `gallop train` to c. Flags win over the
// config file: main parses twice (see parseTrainFlags).
func trainFlags(fs *flag.FlagSet, c *Config) {
	fs.Uint64Var(&c.Seed, "seed", c.Seed, "seed of everything random (simulator, init, shuffle)")
	fs.StringVar(&c.Device, "device", c.Device, "cpu, gpu or gpu:0,1,...")
	fs.StringVar(&c.RunsDir, "runs-dir", c.RunsDir, "where run directories are created")
	fs.Func("data", "train on a dataset made by 'gallop data ingest' (sets data.source = shards)", func(v string) error {
		c.Data.Source, c.Data.Path = "shards", v
		return nil
	})
	fs.IntVar(&c.Data.Sim.Events, "events", c.Data.Sim.Events, "simulated events per instrument")
	fs.IntVar(&c.Data.Window, "window", c.Data.Window, "events per sample window")
	fs.IntVar(&c.Data.Horizon, "horizon", c.Data.Horizon, "label horizon k in events")
	fs.Float64Var(&c.Data.Theta, "theta", c.Data.Theta, "label threshold in ticks")
	fs.Float64Var(&c.Data.TrainFrac, "train-frac", c.Data.TrainFrac, "share of each instrument's rows (the earliest) that trains")
	fs.Float64Var(&c.Data.ValFrac, "val-frac", c.Data.ValFrac, "with > 0: a validation block of this share after the training rows, then a test block")
	fs.BoolVar(&c.Train.SelectBest, "select-best", c.Train.SelectBest, "keep and report the state with the best validation macro-F1 (early stopping)")
	fs.IntVar(&c.Data.Embargo, "embargo", c.Data.Embargo, "rows skipped after the train/validation cut")
	fs.StringVar(&c.Model.Layout, "layout", c.Model.Layout, "train on variable-length sequences, padded or packed (default: fixed windows); DeepLOB and the MLP run a window per position")
	fs.IntVar(&c.Data.SeqLen, "seq-len", c.Data.SeqLen, "longest sequence (events) with --layout; the transformer needs <= --window")
	fs.StringVar(&c.Data.SeqBalance, "seq-balance", c.Data.SeqBalance, "with --layout on several GPUs, how a step's sequences are split over them: kk, lpt or none")
	fs.StringVar(&c.Model.Arch, "arch", c.Model.Arch, "model: mlp, deeplob (Zhang et al. 2019), gru or transformer")
	fs.Var(intList{&c.Model.Hidden}, "hidden", "hidden layer sizes, e.g. 256,128")
	fs.StringVar(&c.Model.Inputs, "inputs", c.Model.Inputs, "mlp inputs: all (every feature) or book (the 40 book columns DeepLOB sees)")
	fs.IntVar(&c.Train.Steps, "steps", c.Train.Steps, "optimizer steps")
	fs.IntVar(&c.Train.BatchSize, "batch-size", c.Train.BatchSize, "samples per step")
	fs.Float64Var(&c.Train.LR, "lr", c.Train.LR, "peak learning rate")
	fs.StringVar(&c.Train.Precision, "precision", c.Train.Precision, "compute precision: fp32, bf16 or fp16 (fp32 master weights)")
	fs.IntVar(&c.Train.Accumulate, "accumulate", c.Train.Accumulate, "micro-batches per optimizer step (gradient accumulation; on several GPUs each sums its own and the sums are all-reduced once per step)")
	fs.IntVar(&c.Train.StepsPerCall, "steps-per-call", c.Train.StepsPerCall, "optimizer steps per call of the compiled graph (unrolled; for small models on a GPU)")
	fs.StringVar(&c.Train.DPStrategy, "dp-strategy", c.Train.DPStrategy, "several GPUs: sharding (XLA's SPMD partitioner places the all-reduces) or replicas (each device's gradients averaged by gallop's all-reduces, as PyTorch DDP)")
	fs.StringVar(&c.Train.DPReduce, "dp-reduce", c.Train.DPReduce, "several GPUs, replicas: gradient all-reduce in fp32 or bf16")
	fs.BoolVar(&c.Train.DPWeightGradsFirst, "dp-weight-grads-first", c.Train.DPWeightGradsFirst, "several GPUs, mlp: compute each layer's weight gradient before the layer below's backward pass, so its all-reduce can overlap the rest (same values; 0.3-0.4 ms slower on 2×H200 with XLA's scheduler, see BENCHMARKS.md)")
	fs.Float64Var(&c.Train.DPBucketMB, "dp-bucket-mb", c.Train.DPBucketMB, "several GPUs, replicas: gradients all-reduced in buckets of this many MB as the backward pass makes them (0: one all-reduce)")
	fs.StringVar(&c.Train.Optimizer.Name, "optimizer", c.Train.Optimizer.Name, "adam, adamw or sgd")
	fs.Float64Var(&c.Train.Optimizer.WeightDecay, "weight-decay", c.Train.Optimizer.WeightDecay, "decoupled weight decay")
	fs.Float64Var(&c.Train.Optimizer.ClipNorm, "clip-norm", c.Train.Optimizer.ClipNorm, "global gradient-norm clip (0: off)")
	fs.StringVar(&c.Train.Schedule, "schedule", c.Train.Schedule, "onecycle, cosine or constant")
	fs.IntVar(&c.Train.EvalEvery, "eval-every", c.Train.EvalEvery, "steps between validation passes (0: only at the end)")
	fs.IntVar(&c.Train.CheckpointEvery, "checkpoint-every", c.Train.CheckpointEvery, "steps between checkpoints (0: only at the end)")
	fs.IntVar(&c.Train.Prefetch, "prefetch", c.Train.Prefetch, "batches prepared ahead of the step")
	fs.Var(onOff{&c.Train.Profile}, "profile", "profile every step: on or off")
	fs.IntVar(&c.Train.DeviceProbeEvery, "device-probe-every", c.Train.DeviceProbeEvery, "on several GPUs, time each GPU's share of a step alone every N steps (per-device times, stragglers; 0: never)")
	fs.StringVar(&c.Train.OnNonFinite, "on-nonfinite", c.Train.OnNonFinite, "on NaN/Inf: stop, skip (the update) or rollback (to the last checkpoint, lower LR)")
	fs.Float64Var(&c.Train.SpikeZ, "spike-z", c.Train.SpikeZ, "warn when the loss jumps this many standard deviations above its running mean (negative: off)")
	fs.BoolVar(&c.Deterministic, "deterministic", c.Deterministic, "bitwise-reproducible run (sets XLA's deterministic ops on GPU)")
}

// onOff is a boolean flag that also reads on/off.
type onOff struct{ p *bool }

func (o onOff) String() string {
	if o.p != nil && *o.p {
		return "on"
	}
	return "off"
}

func (o onOff) Set(v string) error {
	switch strings.ToLower(v) {
	case "on", "true", "1", "yes":
		*o.p = true
	case "off", "false", "0", "no":
		*o.p = false
	default:
		return fmt.Errorf("%q: want on or off", v)
	}
	return nil
}

func (o onOff) IsBoolFlag() bool { return true }

func fileExists(p string) bool {
	_, err := os.Stat(p)
	return err == nil
}

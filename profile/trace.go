package profile

import (
	"bufio"
	"cmp"
	"io"
	"slices"
	"strconv"
	"unicode/utf8"
)

// Thread ids of the loop's tracks; Span tracks follow from tidStage.
const (
	tidSteps = 1 + iota
	tidHost
	tidDevice
	tidCompile
	tidSummary
	tidStage = 10
)

// WriteTrace writes the recording as Chrome trace-event JSON, loadable by
// Perfetto (ui.perfetto.dev) and chrome://tracing. Timestamps are
// microseconds since New. Tracks: "loop: steps" (one event per detailed step,
// args: step number, samples, events, syncs, marks, slow), "loop: host" (the
// host phases), "device 0" (Device), "loop: compile", "loop: summary" (every
// step folded into Config.Buckets events with per-phase totals, plus counters
// for throughput, RSS and goroutines) and one track per Span track. See the
// package documentation for what is kept in detail.
func (p *Recorder) WriteTrace(w io.Writer) error {
	t := &traceWriter{w: bufio.NewWriterSize(w, 64<<10)}
	t.raw(`{"displayTimeUnit":"ms","otherData":{"generator":"gallop/profile","steps":`)
	t.raw(strconv.FormatInt(p.n, 10))
	t.raw(`,"detail_steps_dropped":`)
	t.raw(strconv.FormatInt(p.winDrop, 10))
	t.raw(`},"traceEvents":[`)

	t.meta("process_name", 0, "gallop")
	for i, name := range []string{"loop: steps", "loop: host", "device 0", "loop: compile", "loop: summary"} {
		t.meta("thread_name", i+1, name)
		t.sortIndex(i+1, i+1)
	}

	// Detailed steps: the first ones, those around slow steps, and recent
	// ones not yet committed.
	for i := range p.first {
		t.step(&p.first[i])
	}
	for i := range len(p.win) {
		t.step(&p.win[(p.winPos+i)%len(p.win)])
	}
	pending := make([]*stepRec, 0, len(p.ring))
	for i := range p.ring {
		if r := &p.ring[i]; r.closed && r.detail {
			pending = append(pending, r)
		}
	}
	slices.SortFunc(pending, func(x, y *stepRec) int { return cmp.Compare(x.idx, y.idx) })
	for _, r := range pending {
		t.step(r)
	}

	if p.warm.steps > 0 {
		t.bucket(&p.warm, "warm-up ")
	}
	for i := range p.tl.b {
		t.bucket(&p.tl.b[i], "")
	}

	for _, c := range p.compiles {
		name := c.what
		if name == "" {
			name = "compile"
		}
		t.event('i', name, "compile", tidCompile, c.end, -1, func(b []byte) []byte {
			b = argInt(b, "step", c.step)
			return argMs(b, "ms", c.dur)
		})
	}

	p.mu.Lock()
	tids := map[string]int{}
	for i := range len(p.spans) {
		s := &p.spans[(p.spanPos+i)%len(p.spans)]
		tid, ok := tids[s.track]
		if !ok {
			tid = tidStage + len(tids)
			tids[s.track] = tid
			t.meta("thread_name", tid, "stage: "+s.track)
			t.sortIndex(tid, tid)
		}
		t.event('X', s.name, "stage", tid, s.start, s.dur, nil)
	}
	p.mu.Unlock()

	t.raw("\n]}\n")
	if t.err != nil {
		return t.err
	}
	return t.w.Flush()
}

func (t *traceWriter) step(r *stepRec) {
	var traced [numPhases]int64
	for _, s := range r.spans[:r.nspans] {
		traced[s.phase] += s.dur
	}
	name := "step " + strconv.FormatInt(r.step, 10)
	if r.slow {
		name += " (slow)"
	}
	t.event('X', name, "step", tidSteps, r.begin, int64(r.end-r.begin), func(b []byte) []byte {
		b = argInt(b, "step", r.step)
		b = argInt(b, "samples", r.samples)
		b = argInt(b, "events", r.events)
		b = argInt(b, "syncs", int64(r.syncs))
		if r.slow {
			b = argMs(b, "median_ms", r.median)
		}
		var co [maxMarks + 4]string
		if n := r.coincident(&co); n > 0 {
			b = append(b, `,"marks":[`...)
			for i, m := range co[:n] {
				if i > 0 {
					b = append(b, ',')
				}
				b = appendString(b, m)
			}
			b = append(b, ']')
		}
		for ph, d := range r.phase {
			if d != traced[ph] {
				b = argMs(b, "untraced_"+Phase(ph).String()+"_ms", d-traced[ph])
			}
		}
		return b
	})
	for _, s := range r.spans[:r.nspans] {
		tid := tidHost
		switch s.phase {
		case Device:
			tid = tidDevice
		case Compile:
			tid = tidCompile
		}
		t.event('X', s.phase.String(), "phase", tid, s.start, s.dur, func(b []byte) []byte {
			return argInt(b, "step", r.step)
		})
	}
	if r.gc > 0 {
		t.event('i', "gc", "runtime", tidSteps, r.end, -1, func(b []byte) []byte {
			b = argInt(b, "cycles", int64(r.gc))
			return argMs(b, "pause_ms", r.gcPause)
		})
	}
}

func (t *traceWriter) bucket(k *bucket, prefix string) {
	name := prefix + "steps " + strconv.FormatInt(k.firstStep, 10) + "-" + strconv.FormatInt(k.lastStep, 10)
	el := int64(k.end - k.start)
	t.event('X', name, "summary", tidSummary, k.start, el, func(b []byte) []byte {
		b = argInt(b, "steps", k.steps)
		b = argInt(b, "first", k.firstStep)
		b = argInt(b, "last", k.lastStep)
		b = argMs(b, "wall_ms", k.wall)
		b = argMs(b, "max_step_ms", k.maxWall)
		b = argInt(b, "samples", k.samples)
		b = argInt(b, "events", k.events)
		b = argInt(b, "syncs", k.syncs)
		b = argInt(b, "gc", k.gc)
		b = argInt(b, "compiles", k.compiles)
		b = argInt(b, "slow", k.slow)
		b = append(b, `,"phase_ms":{`...)
		first := true
		for ph, d := range k.phase {
			if d == 0 {
				continue
			}
			if !first {
				b = append(b, ',')
			}
			first = false
			b = appendString(b, Phase(ph).String())
			b = append(b, ':')
			b = appendMs(b, d)
		}
		return append(b, '}')
	})
	if el > 0 {
		t.event('C', "throughput", "summary", tidSummary, k.start, -1, func(b []byte) []byte {
			b = argFloat(b, "steps_per_s", float64(k.steps)/float64(el)*1e9)
			return argFloat(b, "samples_per_s", float64(k.samples)/float64(el)*1e9)
		})
	}
	if k.rss > 0 {
		t.event('C', "rss_mib", "runtime", tidSummary, k.start, -1, func(b []byte) []byte {
			return argFloat(b, "rss_mib", float64(k.rss)/(1<<20))
		})
	}
	if k.goroutines > 0 {
		t.event('C', "goroutines", "runtime", tidSummary, k.start, -1, func(b []byte) []byte {
			return argInt(b, "goroutines", k.goroutines)
		})
	}
}

type traceWriter struct {
	w   *bufio.Writer
	b   []byte
	n   int
	err error
}

func (t *traceWriter) raw(s string) {
	if t.err == nil {
		_, t.err = t.w.WriteString(s)
	}
}

// event writes one trace event; dur < 0 omits it, args appends ,"key":value
// pairs (or is nil).
func (t *traceWriter) event(ph byte, name, cat string, tid int, ts Stamp, dur int64, args func([]byte) []byte) {
	b := t.b[:0]
	if t.n > 0 {
		b = append(b, ',')
	}
	t.n++
	b = append(b, "\n{\"name\":"...)
	b = appendString(b, name)
	if cat != "" {
		b = append(b, `,"cat":`...)
		b = appendString(b, cat)
	}
	b = append(b, `,"ph":"`...)
	b = append(b, ph, '"')
	b = append(b, `,"pid":1,"tid":`...)
	b = strconv.AppendInt(b, int64(tid), 10)
	b = append(b, `,"ts":`...)
	b = appendMicros(b, int64(ts))
	if dur >= 0 {
		b = append(b, `,"dur":`...)
		b = appendMicros(b, dur)
	}
	if ph == 'i' {
		b = append(b, `,"s":"t"`...)
	}
	if args != nil {
		b = append(b, `,"args":{`...)
		n := len(b)
		b = args(b)
		if len(b) > n && b[n] == ',' {
			b = append(b[:n], b[n+1:]...)
		}
		b = append(b, '}')
	}
	b = append(b, '}')
	t.b = b
	if t.err == nil {
		_, t.err = t.w.Write(b)
	}
}

func (t *traceWriter) meta(name string, tid int, value string) {
	b := t.b[:0]
	if t.n > 0 {
		b = append(b, ',')
	}
	t.n++
	b = append(b, "\n{\"name\":"...)
	b = appendString(b, name)
	b = append(b, `,"ph":"M","pid":1,"tid":`...)
	b = strconv.AppendInt(b, int64(tid), 10)
	b = append(b, `,"args":{"name":`...)
	b = appendString(b, value)
	b = append(b, "}}"...)
	t.b = b
	if t.err == nil {
		_, t.err = t.w.Write(b)
	}
}

func (t *traceWriter) sortIndex(tid, index int) {
	b := t.b[:0]
	b = append(b, ",\n{\"name\":\"thread_sort_index\",\"ph\":\"M\",\"pid\":1,\"tid\":"...)
	b = strconv.AppendInt(b, int64(tid), 10)
	b = append(b, `,"args":{"sort_index":`...)
	b = strconv.AppendInt(b, int64(index), 10)
	b = append(b, "}}"...)
	t.n++
	t.b = b
	if t.err == nil {
		_, t.err = t.w.Write(b)
	}
}

// appendMicros appends ns as exact decimal microseconds.
func appendMicros(b []byte, ns int64) []byte {
	if ns < 0 {
		b = append(b, '-')
		ns = -ns
	}
	b = strconv.AppendInt(b, ns/1000, 10)
	if f := ns % 1000; f != 0 {
		b = append(b, '.', byte('0'+f/100), byte('0'+f/10%10), byte('0'+f%10))
	}
	return b
}

func appendMs(b []byte, ns int64) []byte {
	return strconv.AppendFloat(b, float64(ns)/1e6, 'f', -1, 64)
}

func argInt(b []byte, k string, v int64) []byte {
	b = append(b, ',')
	b = appendString(b, k)
	b = append(b, ':')
	return strconv.AppendInt(b, v, 10)
}

func argMs(b []byte, k string, ns int64) []byte {
	b = append(b, ',')
	b = appendString(b, k)
	b = append(b, ':')
	return appendMs(b, ns)
}

func argFloat(b []byte, k string, v float64) []byte {
	b = append(b, ',')
	b = appendString(b, k)
	b = append(b, ':')
	return strconv.AppendFloat(b, v, 'g', 6, 64)
}

// appendString appends s as a JSON string.
func appendString(b []byte, s string) []byte {
	const hex = "0123456789abcdef"
	b = append(b, '"')
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			switch {
			case c == '"' || c == '\\':
				b = append(b, '\\', c)
			case c < 0x20:
				b = append(b, '\\', 'u', '0', '0', hex[c>>4], hex[c&15])
			default:
				b = append(b, c)
			}
			i++
			continue
		}
		r, n := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && n == 1 {
			b = append(b, `\ufffd`...)
		} else {
			b = append(b, s[i:i+n]...)
		}
		i += n
	}
	return append(b, '"')
}

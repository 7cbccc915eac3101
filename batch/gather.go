package batch

import "sync"

// gatherPool splits Windows.Gather of a batch over persistent worker
// goroutines, so a large batch (thousands of windows, megabytes) is
// assembled at memory bandwidth without allocating per batch.
type gatherPool struct {
	tasks chan gatherTask
	wg    sync.WaitGroup
}

type gatherTask struct {
	w    *Windows
	refs []Ref
	x    []float32
	y    []int32
	done *sync.WaitGroup
}

func newGatherPool(workers int) *gatherPool {
	p := &gatherPool{tasks: make(chan gatherTask, workers)}
	for i := 0; i < workers; i++ {
		p.wg.Add(1)
		go func() {
			defer p.wg.Done()
			for t := range p.tasks {
				t.w.Gather(t.refs, t.x, t.y)
				t.done.Done()
			}
		}()
	}
	return p
}

// gather fills x and y for refs using all workers; done is the caller's
// reusable WaitGroup.
func (p *gatherPool) gather(w *Windows, refs []Ref, x []float32, y []int32, parts int, done *sync.WaitGroup) {
	n := w.SampleSize()
	chunk := (len(refs) + parts - 1) / parts
	for lo := 0; lo < len(refs); lo += chunk {
		hi := min(lo+chunk, len(refs))
		done.Add(1)
		p.tasks <- gatherTask{w: w, refs: refs[lo:hi], x: x[lo*n : hi*n], y: y[lo:hi], done: done}
	}
	done.Wait()
}

func (p *gatherPool) close() {
	close(p.tasks)
	p.wg.Wait()
}

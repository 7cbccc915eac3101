package serve

import (
	"context"
	"sync"
)

// queue is a bounded FIFO for the pipeline's stages: any number of
// producers, one consumer. Unlike a channel it can report its depth and
// show its oldest element, which the lag reports need.
type queue[T any] struct {
	mu       sync.Mutex
	notEmpty sync.Cond
	notFull  sync.Cond
	buf      []T
	head, n  int
	maxDepth int
	closed   bool // no more pushes; pops drain what is left
	stopped  bool // abandoned: pushes fail and pops end at once
}

func newQueue[T any](capacity int) *queue[T] {
	q := &queue[T]{buf: make([]T, capacity)}
	q.notEmpty.L = &q.mu
	q.notFull.L = &q.mu
	return q
}

// wakeOn makes producers waiting in push re-check ctx when it is done.
func (q *queue[T]) wakeOn(ctx context.Context) (stop func() bool) {
	return context.AfterFunc(ctx, func() {
		q.mu.Lock()
		q.notFull.Broadcast()
		q.mu.Unlock()
	})
}

// push appends *v, waiting while the queue is full. It returns false
// without appending when the queue is closed or stopped, or ctx is done
// (ctx must have been passed to wakeOn, or never be done while pushing).
func (q *queue[T]) push(ctx context.Context, v *T) bool {
	q.mu.Lock()
	for q.n == len(q.buf) && !q.stopped && !q.closed && ctx.Err() == nil {
		q.notFull.Wait()
	}
	if q.stopped || q.closed || ctx.Err() != nil {
		q.mu.Unlock()
		return false
	}
	q.put(v)
	q.mu.Unlock()
	return true
}

// tryPush appends *v unless the queue is full, closed or stopped, and
// reports whether it did.
func (q *queue[T]) tryPush(v *T) bool {
	q.mu.Lock()
	ok := q.n < len(q.buf) && !q.stopped && !q.closed
	if ok {
		q.put(v)
	}
	q.mu.Unlock()
	return ok
}

func (q *queue[T]) put(v *T) {
	i := q.head + q.n
	if i >= len(q.buf) {
		i -= len(q.buf)
	}
	q.buf[i] = *v
	q.n++
	q.maxDepth = max(q.maxDepth, q.n)
	if q.n == 1 {
		q.notEmpty.Signal() // the one consumer waits only on an empty queue
	}
}

// pop moves up to len(dst) of the oldest elements into dst, waiting while
// the queue is empty, and returns how many it moved: 0 once the queue is
// closed and drained, or stopped.
func (q *queue[T]) pop(dst []T) int {
	q.mu.Lock()
	for q.n == 0 && !q.closed && !q.stopped {
		q.notEmpty.Wait()
	}
	if q.stopped || q.n == 0 {
		q.mu.Unlock()
		return 0
	}
	k := min(len(dst), q.n)
	for i := range k {
		dst[i] = q.buf[q.head]
		if q.head++; q.head == len(q.buf) {
			q.head = 0
		}
	}
	if q.n == len(q.buf) {
		q.notFull.Broadcast()
	}
	q.n -= k
	q.mu.Unlock()
	return k
}

// depth returns the number of queued elements.
func (q *queue[T]) depth() int {
	q.mu.Lock()
	n := q.n
	q.mu.Unlock()
	return n
}

// front calls f with the oldest element, if any, under the queue's lock
// (so that an element that is a pointer cannot be taken and reused while f
// reads it), and returns the depth.
func (q *queue[T]) front(f func(*T)) int {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.n > 0 {
		f(&q.buf[q.head])
	}
	return q.n
}

// peakDepth returns the largest depth the queue has had.
func (q *queue[T]) peakDepth() int {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.maxDepth
}

// close ends the queue: pushes fail, pops drain what is queued.
func (q *queue[T]) close() {
	q.mu.Lock()
	q.closed = true
	q.notEmpty.Broadcast()
	q.notFull.Broadcast()
	q.mu.Unlock()
}

// stop abandons the queue: pushes fail, pops return 0 at once.
func (q *queue[T]) stop() {
	q.mu.Lock()
	q.stopped = true
	q.notEmpty.Broadcast()
	q.notFull.Broadcast()
	q.mu.Unlock()
}

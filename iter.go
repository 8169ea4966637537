package bigqueue

import (
	"context"
	"errors"
	"fmt"
	"iter"
)

// All returns an iterator over the default consumer's messages, for
// range-over-func:
//
//	for msg, err := range q.All(ctx) {
//		if err != nil {
//			return err // ctx.Err() when ctx ends
//		}
//		process(msg)
//	}
//
// It reads with PeekWait, so it blocks for new messages, and it commits
// each message when the loop body asks for the next one: a break, a
// return, a panic or a crash inside the body leaves the message the body
// got uncommitted, and it is delivered again (at-least-once by
// construction). A message is committed only if the consumer is still
// where it was read: when another goroutine moved it in between (a
// Dequeue on the same consumer, a Seek), nothing is committed.
//
// Errors are yielded with a nil message. After an error wrapping
// ErrDropped or ErrCorrupt the consumer has already moved on, and the
// iteration goes on if the body continues. Any other error ends it once
// yielded: ctx.Err() when ctx is done, ErrClosed, ErrNoConsumer,
// ErrNilContext for a nil ctx, the sticky error of a failed queue, an I/O
// error of reading. The slices are those Peek returns; do not modify
// them.
func (q *Queue) All(ctx context.Context) iter.Seq2[[]byte, error] {
	return func(yield func([]byte, error) bool) {
		if q.invalid() {
			yield(nil, ErrClosed)
			return
		}
		q.iterate(ctx, nil, yield)
	}
}

// All returns an iterator over the consumer's messages; see Queue.All.
func (c *Consumer) All(ctx context.Context) iter.Seq2[[]byte, error] {
	return func(yield func([]byte, error) bool) {
		if c == nil || c.q == nil {
			yield(nil, fmt.Errorf("zero Consumer: %w", ErrNoConsumer))
			return
		}
		c.q.iterate(ctx, c.st, yield)
	}
}

// peeked marks the message an iterator handed out: the consumer and the
// position it was read at.
type peeked struct {
	st       *consumerState
	off, seq uint64
	size     uint64 // bytes of the record
}

// iterate implements All for c, or for the default consumer when c is
// nil.
func (q *Queue) iterate(ctx context.Context, c *consumerState, yield func([]byte, error) bool) {
	if ctx == nil {
		yield(nil, ErrNilContext)
		return
	}
	for {
		var at peeked
		msg, err := q.waitRead(ctx, c, func(st *consumerState) ([]byte, error) {
			msg, err := q.peek(st)
			if err == nil {
				at = peeked{st: st, off: st.off, seq: st.seq, size: recordHeaderSize + uint64(len(msg))}
			}
			return msg, err
		})
		if err != nil {
			if !yield(nil, err) || !q.readsOn(err) {
				return
			}
			continue
		}
		if !yield(msg, nil) {
			return
		}
		q.commit(at)
	}
}

// readsOn reports whether an iterator goes on after yielding err: the
// reading call moved the consumer past what err reports, and the queue
// is still usable.
func (q *Queue) readsOn(err error) bool {
	if !errors.Is(err, ErrDropped) && !errors.Is(err, ErrCorrupt) {
		return false
	}
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.usable() == nil
}

// commit consumes the message at, which an iterator handed out, when its
// consumer is still where it was read.
func (q *Queue) commit(at peeked) {
	q.mu.Lock()
	defer q.mu.Unlock()
	st := at.st
	if q.usable() != nil || st.deleted || st.off != at.off || st.seq != at.seq {
		return
	}
	q.moveConsumer(st, at.off+at.size, at.seq+1)
	q.mutated(1)
}

package bigqueue

import (
	"context"
	"errors"
	"fmt"
)

// PeekWait is Peek that blocks while the default consumer has nothing to
// read, until an enqueue makes a message readable, ctx is done (it
// returns ctx.Err()) or the queue is closed (ErrClosed). It commits
// nothing: process the message, then Dequeue to commit it, and a crash
// in between delivers it again (at-least-once without polling). It does
// not poll: it sleeps until an enqueue, a Seek, FromConsumer or
// DeleteConsumer wakes it. Every goroutine waiting on one consumer gets
// the same message. A nil ctx returns ErrNilContext; the other errors are
// those of Peek.
func (q *Queue) PeekWait(ctx context.Context) ([]byte, error) {
	if q.invalid() {
		return nil, ErrClosed
	}
	return q.waitRead(ctx, nil, q.peek)
}

// PeekWait is Peek that blocks while the consumer has nothing to read;
// see Queue.PeekWait. A waiter on a consumer that DeleteConsumer removes
// returns ErrNoConsumer.
func (c *Consumer) PeekWait(ctx context.Context) ([]byte, error) {
	if c == nil || c.q == nil {
		return nil, fmt.Errorf("zero Consumer: %w", ErrNoConsumer)
	}
	return c.q.waitRead(ctx, c.st, c.q.peek)
}

// waitRead calls read, with mu held, on c, or on the default consumer
// when c is nil (re-created when it was deleted), until it returns
// anything but ErrEmptyQueue; in between it sleeps until something wakes
// the waiters (wakeWaiters: an enqueue, a consumer change, a failure),
// ctx is done or the queue closes. It never polls.
func (q *Queue) waitRead(ctx context.Context, c *consumerState, read func(*consumerState) ([]byte, error)) ([]byte, error) {
	if ctx == nil {
		return nil, ErrNilContext
	}
	for {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		q.mu.Lock()
		st, err := c, q.usable()
		if st == nil && err == nil {
			st, err = q.defaultConsumer()
		}
		var msg []byte
		if err == nil {
			msg, err = read(st)
		}
		if !errors.Is(err, ErrEmptyQueue) {
			q.mu.Unlock()
			return msg, err
		}
		if q.dataReady == nil {
			q.dataReady = make(chan struct{})
		}
		ready := q.dataReady
		q.mu.Unlock()
		select {
		case <-ready:
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-q.quit:
			return nil, ErrClosed
		}
	}
}

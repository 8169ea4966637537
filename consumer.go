package bigqueue

import (
	"context"
	"fmt"
	"runtime/debug"
	"slices"
)

// Consumer reads the queue independently of every other consumer, from its
// own persisted position, Kafka-style: each consumer sees every message.
// A Consumer is safe for concurrent use; goroutines sharing one consumer
// share its position, so each message goes to one of them.
type Consumer struct {
	q  *Queue
	st *consumerState
}

// NewConsumer returns the consumer called name, creating it when it does
// not exist. A new consumer starts at the oldest message still stored. Its
// position is persisted in the index and survives Close and crashes.
//
// Errors: ErrInvalidName for an empty name or one longer than
// MaxConsumerNameLen bytes; ErrClosed; file system errors of growing the
// index, wrapped.
func (q *Queue) NewConsumer(name string) (*Consumer, error) {
	if q.invalid() {
		return nil, ErrClosed
	}
	q.mu.Lock()
	defer q.mu.Unlock()
	if err := q.usable(); err != nil {
		return nil, err
	}
	st, err := q.consumerLocked(name)
	if err != nil {
		return nil, err
	}
	return &Consumer{q: q, st: st}, nil
}

// FromConsumer returns the consumer called name, creating it when needed,
// and moves it to the position of from. It returns ErrDifferentQueues,
// bare as in the original, when from belongs to another Queue;
// ErrNoConsumer when from is nil or was deleted (the original panicked on
// nil); and the errors of NewConsumer.
func (q *Queue) FromConsumer(name string, from *Consumer) (*Consumer, error) {
	if q.invalid() {
		return nil, ErrClosed
	}
	if from == nil || from.q == nil {
		return nil, fmt.Errorf("copy consumer %q from nil: %w", name, ErrNoConsumer)
	}
	if from.q != q {
		return nil, ErrDifferentQueues
	}
	q.mu.Lock()
	defer q.mu.Unlock()
	if err := q.usable(); err != nil {
		return nil, err
	}
	if from.st.deleted {
		return nil, fmt.Errorf("copy consumer %q from %q: %w", name, from.st.name, ErrNoConsumer)
	}
	st, err := q.consumerAt(name, from.st.off, from.st.seq)
	if err != nil {
		return nil, err
	}
	if st != from.st {
		q.moveConsumer(st, from.st.off, from.st.seq)
		q.wakeWaiters() // the move may have made messages readable
	}
	return &Consumer{q: q, st: st}, nil
}

// DeleteConsumer removes the consumer called name, the default consumer
// included, so that it no longer pins data on disk. Handles to it then
// return ErrNoConsumer; after deleting the default consumer, the next
// queue-level read creates it anew at the oldest stored message. When the
// last consumer is deleted the data stays until a new consumer reads it
// (but what every consumer had read when a running flush started goes
// with that flush, when it succeeds).
// Errors: ErrNoConsumer for an unknown name, ErrClosed.
func (q *Queue) DeleteConsumer(name string) (err error) {
	if q.invalid() {
		return ErrClosed
	}
	q.mu.Lock()
	defer q.mu.Unlock()
	defer q.endGuard(&err, debug.SetPanicOnFault(true))
	if err := q.usable(); err != nil {
		return err
	}
	st := q.consumers[name]
	if st == nil {
		return fmt.Errorf("delete consumer %q: %w", name, ErrNoConsumer)
	}
	q.idx.removeConsumer(st.slot)
	q.changed = true
	delete(q.consumers, name)
	st.deleted = true
	if st.off == q.head {
		q.advanceHead()
	}
	// Waiters on it return ErrNoConsumer; waiters on the default consumer
	// it was re-create it at the oldest message.
	q.wakeWaiters()
	return nil
}

// Consumers returns the names of the persisted consumers, sorted, the
// default consumer ("__default__") included while it exists. It returns nil
// after Close.
func (q *Queue) Consumers() []string {
	if q.invalid() {
		return nil
	}
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.closed {
		return nil
	}
	names := make([]string, 0, len(q.consumers))
	for name := range q.consumers {
		names = append(names, name)
	}
	slices.Sort(names)
	return names
}

// consumerLocked returns the consumer called name, creating it at the
// oldest stored message when it does not exist. Needs mu.
func (q *Queue) consumerLocked(name string) (*consumerState, error) {
	return q.consumerAt(name, q.oldest, q.oldestSeq)
}

// consumerAt returns the consumer called name, creating it at (off, seq),
// a record boundary in [oldest, tail], when it does not exist: a crash
// leaves it there or not at all. Needs mu.
func (q *Queue) consumerAt(name string, off, seq uint64) (_ *consumerState, err error) {
	defer q.endGuard(&err, debug.SetPanicOnFault(true))
	if st := q.consumers[name]; st != nil {
		return st, nil
	}
	if len(name) == 0 || len(name) > MaxConsumerNameLen {
		return nil, fmt.Errorf("consumer name of %d bytes (1 to %d allowed): %w", len(name), MaxConsumerNameLen, ErrInvalidName)
	}
	slot, lost := q.claimDamaged(name), true
	if slot < 0 {
		slot, lost = q.idx.freeSlot(), false
	}
	if slot < 0 {
		if err := q.idx.grow(); err != nil {
			return nil, fmt.Errorf("add consumer %q: %w", name, err)
		}
		slot = q.idx.freeSlot()
	}
	st := &consumerState{name: name, slot: slot, off: off, seq: seq, lost: lost}
	if lost {
		st.lostWhy = "its slot in the index was damaged and its position lost; it starts at the oldest message"
	}
	q.idx.addConsumer(slot, name, st.off, st.seq, lost)
	q.changed = true
	q.consumers[name] = st
	if len(q.consumers) == 1 || st.off < q.head {
		q.head, q.headSeq = st.off, st.seq
	}
	return st, nil
}

// claimDamaged returns the number of a damaged consumer slot for a new
// consumer called name to take, or -1 when there is none. The consumer the
// slot held lost its position; since its name may be damaged too, the
// slot whose readable name is name is taken first, else the oldest. The
// consumer that takes it starts at the head like any new one, and its
// first read returns ErrCorrupt, so that a consumer which existed does not
// restart at the oldest message without a word. Needs mu.
func (q *Queue) claimDamaged(name string) int {
	if len(q.damaged) == 0 {
		return -1
	}
	i := slices.IndexFunc(q.damaged, func(d damagedSlot) bool { return slices.Contains(d.names, name) })
	i = max(i, 0)
	slot := q.damaged[i].slot
	q.damaged = slices.Delete(q.damaged, i, i+1)
	return slot
}

// IsEmpty reports whether the consumer has read every message. It reports
// true after Close or DeleteConsumer.
func (c *Consumer) IsEmpty() bool {
	if c == nil || c.q == nil {
		return true
	}
	c.q.mu.Lock()
	defer c.q.mu.Unlock()
	return c.q.closed || c.st.deleted || c.st.off >= c.q.tail
}

// Dequeue removes the consumer's next message and returns it; see
// Queue.Dequeue. It also returns ErrNoConsumer after DeleteConsumer.
func (c *Consumer) Dequeue() ([]byte, error) {
	if c == nil || c.q == nil {
		return nil, fmt.Errorf("zero Consumer: %w", ErrNoConsumer)
	}
	if msg, done, err := c.q.tryDequeueFast(c.st, nil, false); done {
		return msg, err
	}
	c.q.mu.Lock()
	defer c.q.mu.Unlock()
	return c.q.dequeue(c.st, nil, false)
}

// DequeueString is Dequeue returning a string.
func (c *Consumer) DequeueString() (string, error) {
	if c == nil || c.q == nil {
		return "", fmt.Errorf("zero Consumer: %w", ErrNoConsumer)
	}
	c.q.mu.Lock()
	defer c.q.mu.Unlock()
	return c.q.dequeueString(c.st)
}

// Name returns the consumer's name.
func (c *Consumer) Name() string {
	if c == nil || c.st == nil {
		return ""
	}
	return c.st.name
}

// Len returns how many messages the consumer has not read, in O(1). It
// returns 0 after Close or DeleteConsumer.
func (c *Consumer) Len() int64 {
	if c == nil || c.q == nil {
		return 0
	}
	c.q.mu.Lock()
	defer c.q.mu.Unlock()
	if c.q.closed {
		return 0
	}
	return c.q.lag(c.st)
}

// Peek returns the consumer's next message without consuming it; see
// Queue.Peek for the at-least-once pattern and sharing a consumer.
func (c *Consumer) Peek() ([]byte, error) {
	if c == nil || c.q == nil {
		return nil, fmt.Errorf("zero Consumer: %w", ErrNoConsumer)
	}
	c.q.mu.Lock()
	defer c.q.mu.Unlock()
	return c.q.peek(c.st)
}

// PeekString is Peek returning a string. The string is a copy.
func (c *Consumer) PeekString() (string, error) {
	b, err := c.Peek()
	return string(b), err
}

// DequeueAppend consumes the consumer's next message and appends it to
// dst; see Queue.DequeueAppend.
func (c *Consumer) DequeueAppend(dst []byte) ([]byte, error) {
	if c == nil || c.q == nil {
		return dst, fmt.Errorf("zero Consumer: %w", ErrNoConsumer)
	}
	if out, done, err := c.q.tryDequeueFast(c.st, dst, true); done {
		if err != nil {
			return dst, err
		}
		return out, nil
	}
	c.q.mu.Lock()
	defer c.q.mu.Unlock()
	return c.q.dequeue(c.st, dst, true)
}

// DequeueWait is Dequeue that blocks while the consumer has nothing to
// read; see Queue.DequeueWait.
func (c *Consumer) DequeueWait(ctx context.Context) ([]byte, error) {
	if c == nil || c.q == nil {
		return nil, fmt.Errorf("zero Consumer: %w", ErrNoConsumer)
	}
	return c.q.dequeueWait(ctx, c.st)
}

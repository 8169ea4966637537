package bigqueue

import "fmt"

// Message positions. Every message has a sequence number: the first
// message ever enqueued in a queue has 1, each next one the number after,
// and a number is never given to another message, across Close, crashes,
// recovery and reclaiming. (In the records it is stored less one; see
// format.go.) The one exception is a power loss: messages no Flush
// covered may be lost, and the next messages enqueued then get their
// numbers. With Stats.QueueID, a sequence number names a message across
// machines.

// publicSeq turns a record's sequence number into a message's: one more,
// so that the first message has 1. A position recovery could not prove
// (unknownSeq) gives 0.
func publicSeq(seq uint64) uint64 { return seq + 1 }

// Position returns the sequence number of the message the default
// consumer reads next: the one Peek returns, or, when the consumer has
// read everything, the number the next message enqueued gets. Before the
// first queue-level read, and after DeleteConsumer removed the default
// consumer, it is the oldest stored message's, where that read starts.
// It returns 0 after Close, and when the consumer's position is one
// recovery after a crash could not prove (its next read reports
// ErrCorrupt and moves on).
func (q *Queue) Position() uint64 {
	if q.invalid() {
		return 0
	}
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.closed {
		return 0
	}
	if st := q.consumers[defaultConsumerKey]; st != nil {
		return publicSeq(st.seq)
	}
	return publicSeq(q.oldestSeq)
}

// Position returns the sequence number of the message the consumer reads
// next; see Queue.Position. It returns 0 after Close or DeleteConsumer.
func (c *Consumer) Position() uint64 {
	if c == nil || c.q == nil {
		return 0
	}
	c.q.mu.Lock()
	defer c.q.mu.Unlock()
	if c.q.closed || c.st.deleted {
		return 0
	}
	return publicSeq(c.st.seq)
}

// Seek moves the default consumer to the message with sequence number
// seq, which its next read returns, or, when seq is Stats().NextSeq, past
// the newest message (as SeekNewest does). The new position is persisted
// like any other: it survives Close, and a crash once Seek returned. It
// may move the consumer back, to a message it read already, as long as
// that message is still stored.
//
// It finds the message through the arena headers (a binary search, each
// step mapping an arena) and then walks record headers within one arena.
// Seek discards a pending ErrDropped notice (see SetMaxBytes) and wakes
// the goroutines blocked in DequeueWait and PeekWait.
//
// Errors: an error wrapping ErrOutOfRange, with the range stored, when seq
// is not stored (below Stats().OldestSeq or above Stats().NextSeq); an
// error wrapping ErrCorrupt when damaged data lies in the way; ErrClosed.
// On error the consumer does not move.
func (q *Queue) Seek(seq uint64) error {
	if q.invalid() {
		return ErrClosed
	}
	q.mu.Lock()
	defer q.mu.Unlock()
	st, err := q.defaultConsumer()
	if err != nil {
		return err
	}
	return q.seek(st, seq)
}

// SeekOldest moves the default consumer to the oldest stored message, as
// if it were new. See Seek; it returns ErrClosed only.
func (q *Queue) SeekOldest() error {
	if q.invalid() {
		return ErrClosed
	}
	q.mu.Lock()
	defer q.mu.Unlock()
	st, err := q.defaultConsumer()
	if err != nil {
		return err
	}
	return q.seekTo(st, q.oldest, q.oldestSeq)
}

// SeekNewest moves the default consumer past the newest message: it reads
// only messages enqueued later. See Seek; it returns ErrClosed only.
func (q *Queue) SeekNewest() error {
	if q.invalid() {
		return ErrClosed
	}
	q.mu.Lock()
	defer q.mu.Unlock()
	st, err := q.defaultConsumer()
	if err != nil {
		return err
	}
	return q.seekTo(st, q.tail, q.tailSeq)
}

// Seek moves the consumer to the message with sequence number seq; see
// Queue.Seek. It also returns ErrNoConsumer after DeleteConsumer.
func (c *Consumer) Seek(seq uint64) error {
	if c == nil || c.q == nil {
		return fmt.Errorf("zero Consumer: %w", ErrNoConsumer)
	}
	c.q.mu.Lock()
	defer c.q.mu.Unlock()
	return c.q.seek(c.st, seq)
}

// SeekOldest moves the consumer to the oldest stored message; see
// Queue.SeekOldest. It also returns ErrNoConsumer after DeleteConsumer.
func (c *Consumer) SeekOldest() error {
	if c == nil || c.q == nil {
		return fmt.Errorf("zero Consumer: %w", ErrNoConsumer)
	}
	c.q.mu.Lock()
	defer c.q.mu.Unlock()
	return c.q.seekTo(c.st, c.q.oldest, c.q.oldestSeq)
}

// SeekNewest moves the consumer past the newest message; see
// Queue.SeekNewest. It also returns ErrNoConsumer after DeleteConsumer.
func (c *Consumer) SeekNewest() error {
	if c == nil || c.q == nil {
		return fmt.Errorf("zero Consumer: %w", ErrNoConsumer)
	}
	c.q.mu.Lock()
	defer c.q.mu.Unlock()
	return c.q.seekTo(c.st, c.q.tail, c.q.tailSeq)
}

// seek moves st to the record whose public sequence number is seq. Needs
// mu.
func (q *Queue) seek(st *consumerState, seq uint64) error {
	if err := q.readable(st); err != nil {
		return err
	}
	lo, hi := publicSeq(q.oldestSeq), publicSeq(q.tailSeq)
	if q.oldestSeq > q.tailSeq || seq < lo || seq > hi {
		return fmt.Errorf("seek consumer %q to message %d: stored are %d to %d: %w", st.name, seq, lo, hi-1, ErrOutOfRange)
	}
	off, err := q.locate(seq - 1)
	if err != nil {
		return fmt.Errorf("seek consumer %q to message %d: %w", st.name, seq, err)
	}
	return q.seekTo(st, off, seq-1)
}

// seekTo moves st to the record boundary (off, seq) in [oldest, tail],
// persisting it, and wakes waiters: the move may make messages readable.
// Needs mu.
func (q *Queue) seekTo(st *consumerState, off, seq uint64) error {
	if err := q.readable(st); err != nil {
		return err
	}
	if st.off != off || st.seq != seq || st.drop.pending {
		q.moveConsumer(st, off, seq)
		q.mutated(1)
	}
	q.wakeWaiters()
	return nil
}

// locate returns the offset of the record with sequence number seq, in
// [oldestSeq, tailSeq]. It starts from the closest known boundary at or
// below it (the oldest record, a consumer position, or the first record
// an arena header names, found by binary search) and walks record headers
// from there; damage on the way returns an error wrapping ErrCorrupt.
// Needs mu.
func (q *Queue) locate(seq uint64) (uint64, error) {
	if seq == q.tailSeq {
		return q.tail, nil
	}
	off, at := q.oldest, q.oldestSeq
	for _, c := range q.consumers {
		if c.seq <= seq && c.seq > at && c.off >= q.oldest && c.off <= q.tail {
			off, at = c.off, c.seq
		}
	}
	if h, ok, err := q.arenaBefore(seq); err != nil {
		return 0, err
	} else if ok && h.firstSeq > at && h.first >= off {
		off, at = h.first, h.firstSeq
	}
	for at < seq {
		n, ok, err := q.am.checkRecord(off, at, q.tail, false)
		if err != nil {
			return 0, err
		}
		if !ok {
			return 0, fmt.Errorf("record %d at offset %d is damaged or missing: %w", publicSeq(at), off, ErrCorrupt)
		}
		off += recordHeaderSize + n
		at++
	}
	return off, nil
}

// arenaBefore returns the header of the last arena whose first record has
// a sequence number at most seq, found by a binary search over the arena
// headers; a damaged or missing one counts as past seq. Needs mu.
func (q *Queue) arenaBefore(seq uint64) (arenaHeader, bool, error) {
	m := q.am
	var best arenaHeader
	found := false
	lo, hi := m.first, m.next
	for lo < hi {
		mid := lo + (hi-lo)/2
		h, err := m.header(mid)
		if err != nil && !isDamage(err) {
			return best, false, err
		}
		if err == nil && h.firstSeq <= seq && h.first >= mid*m.dataSize && h.first <= q.tail {
			best, found = h, true
			lo = mid + 1
		} else {
			hi = mid
		}
	}
	return best, found, nil
}

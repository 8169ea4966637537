package bigqueue

import (
	"fmt"
	"time"
)

// Retention: SetMaxBytes and SetMaxAge remove the oldest arenas even when
// some consumer has not read them, so that a consumer that stopped
// reading cannot pin the disk forever. Removal goes through the same
// steps as reclaiming (Queue.reclaimTo): the new oldest record is stored
// in the index as the reclaim watermark and msynced before any file goes,
// so recovery after a power loss tells removed arenas from damage.
//
// A consumer whose unread messages went is moved, in memory, to the
// oldest message left, and its next read returns ErrDropped. Until that
// read its slot in the index keeps the position it had, below the
// watermark: a NewQueue in between finds it there and reports the same
// drop, counted from the sequence number stored with the position. To
// tell that from damage, dropTo also stores the watermark as the index's
// retention mark, in the same sector: reclaiming never passes a consumer
// position, so a consumer below both the watermark and the mark lost
// messages to retention, and one below the watermark only (a damaged
// index) moves on as it did before retention existed.

// SetMaxBytes bounds the data a queue keeps: when the stored messages
// (Stats.Bytes, record headers included) take more than n bytes, a flush
// removes the oldest arenas until they do not, even when some consumer
// has not read them; that consumer's next read returns an error wrapping
// ErrDropped that says how many messages it lost, and the reads after it
// go on from the oldest message left. n <= 0 means no limit (the
// default).
//
// Data goes whole arenas at a time, and the arena holding the newest
// message, and every arena a flush has not yet covered, always stays, so
// the stored data may exceed n by up to an arena (more when n is smaller
// than an arena, or between flushes). Retention runs at every flush
// (periodic, explicit or Close), also on an idle queue, and an enqueue
// that starts a new arena asks the background flusher for one. The limit
// is not stored: each NewQueue sets its own.
func SetMaxBytes(n int64) Option {
	return func(o *options) error {
		o.maxBytes = n
		return nil
	}
}

// SetMaxAge bounds how long a queue keeps a message: a flush removes the
// oldest arenas whose messages were all enqueued more than d ago, even
// when some consumer has not read them; that consumer's next read returns
// an error wrapping ErrDropped, as with SetMaxBytes. d <= 0 means no
// limit (the default).
//
// Ages are per arena, not per message: an arena is older than d when the
// next arena was started more than d ago (every message in an arena was
// enqueued before the next one was started; arena headers store their
// start time, by the wall clock). So a message may stay longer than d,
// until its arena fills up and the next one is older than d, and the
// arena holding the newest message always stays. Arenas written by a
// build without retention have no start time: arenas go oldest first, so
// SetMaxAge removes none from there on until they were read and
// reclaimed (SetMaxBytes still applies). Retention runs at flushes, as
// described at SetMaxBytes.
func SetMaxAge(d time.Duration) Option {
	return func(o *options) error {
		o.maxAge = d
		return nil
	}
}

// retentionState is the queue's retention bookkeeping. Guarded by
// Queue.mu.
type retentionState struct {
	// started caches the start time (Unix nanoseconds, 0 = unknown) of
	// arenas whose header was read: only arenas holding flushed records,
	// whose headers no longer change. Entries below the oldest arena are
	// pruned.
	started map[uint64]int64
	removed uint64 // messages removed by retention since open, read or not
}

// dropState is what retention removed of one consumer's unread messages.
// Guarded by Queue.mu.
type dropState struct {
	// pending: the next read returns ErrDropped. While it is set, the
	// consumer's slot in the index keeps its position from before the
	// removal (below the reclaim watermark), so that NewQueue reports the
	// drop too if the process stops before that read.
	pending bool
	count   uint64 // messages to report
	unknown bool   // count is a lower bound: a position recovery could not prove was dropped
	total   uint64 // messages dropped since open (Stats.Dropped)
}

// clear forgets the pending notice; total stays.
func (d *dropState) clear() { d.pending, d.count, d.unknown = false, 0, false }

// add records that n messages the consumer at seq had not read were
// removed, the oldest left having sequence number to.
func (d *dropState) add(seq, to uint64) {
	d.pending = true
	if seq > to {
		d.unknown = true // an unproven position (unknownSeq)
		return
	}
	d.count += to - seq
	d.total += to - seq
}

// reportDrop returns the ErrDropped notice of st, once, and stores its
// position in the index, which the removal left as it was. Needs mu.
func (q *Queue) reportDrop(st *consumerState) error {
	d := st.drop
	st.drop.clear()
	q.idx.setConsumerPosition(st.slot, st.off, st.seq)
	q.changed = true
	what := fmt.Sprintf("%d messages", d.count)
	switch {
	case d.unknown:
		what = fmt.Sprintf("at least %d messages", d.count)
	case d.count == 1:
		what = "1 message"
	}
	return fmt.Errorf("consumer %q: retention removed %s it had not read; it reads on from message %d: %w",
		st.name, what, st.seq+1, ErrDropped)
}

// startTime returns the start time for a new arena's header.
func (m *arenaManager) startTime() int64 {
	if m.now == nil {
		return time.Now().UnixNano()
	}
	return m.now().UnixNano()
}

// applyRetention enforces SetMaxBytes and SetMaxAge on the arenas that
// hold records below flushed, the offset the last durable checkpoint
// covers: every consumer standing in the arenas to remove is moved to the
// oldest record left, with a pending ErrDropped, and oldest and the
// watermark follow. It returns the arena number below which arenas are to
// go, which the caller passes on to reclaimTo (through detachBelow, at
// Close), or m.first when none. Needs mu.
//
// Only arenas wholly below flushed's last byte can go: their records and
// the creation of every later arena that holds flushed bytes are durable,
// so after a power loss the oldest arena left names its first record.
// The arena holding the newest record never goes, nor the arena where
// that record starts: at least one message stays.
func (q *Queue) applyRetention(flushed uint64) uint64 {
	m, o := q.am, &q.opts
	if (o.maxBytes <= 0 && o.maxAge <= 0) || flushed == 0 || m.first >= m.next {
		return m.first
	}
	for id := range q.retention.started {
		if id < m.first {
			delete(q.retention.started, id)
		}
	}
	top := (min(flushed, q.tail) - 1) / m.dataSize
	if top <= m.first {
		return m.first
	}
	limit := m.first
	if o.maxBytes > 0 && q.tail-q.oldest > uint64(o.maxBytes) {
		// The arenas kept must start at or after need, so that what they
		// hold is at most maxBytes.
		need := q.tail - uint64(o.maxBytes)
		limit = max(limit, (need+m.dataSize-1)/m.dataSize)
	}
	if o.maxAge > 0 {
		cutoff := o.now().Add(-o.maxAge).UnixNano()
		for id := limit; id < top; id++ {
			// Arena id's records were enqueued before arena id+1 was
			// started.
			t := q.arenaStarted(id + 1)
			if t == 0 || t > cutoff {
				break
			}
			limit = id + 1
		}
	}
	for limit = min(limit, top); limit > m.first; limit-- {
		b, ok, err := m.oldestBoundary(limit, q.tail)
		if err != nil {
			q.noteChoreErr(fmt.Errorf("retention: %w", err))
			return m.first
		}
		if ok && b.first < q.tail && b.firstSeq < q.tailSeq {
			if b.first <= q.oldest {
				return m.first
			}
			q.dropTo(b.first, b.firstSeq)
			return limit
		}
		// The first record at or after the arena is the tail: removing
		// it would remove the newest message. Keep one more arena.
	}
	return m.first
}

// arenaStarted returns the start time stored in the header of arena id,
// in Unix nanoseconds, or 0 when it is unknown or cannot be read. id must
// hold flushed records. Needs mu.
func (q *Queue) arenaStarted(id uint64) int64 {
	if t, ok := q.retention.started[id]; ok {
		return t
	}
	h, err := q.am.header(id)
	if err != nil {
		if !isDamage(err) {
			q.noteChoreErr(fmt.Errorf("retention: %w", err))
			return 0 // not cached: the next flush tries again
		}
		h.started = 0
	}
	if q.retention.started == nil {
		q.retention.started = make(map[uint64]int64)
	}
	q.retention.started[id] = h.started
	return h.started
}

// dropTo makes (off, seq), the first record of an arena that stays, the
// oldest stored record: consumers below it move there with a pending
// ErrDropped, and the watermark is stored in the index (reclaimTo msyncs
// it before a file goes). The consumers' slots keep their old positions
// until their next read (see dropState). Needs mu.
func (q *Queue) dropTo(off, seq uint64) {
	if q.oldestSeq <= seq {
		q.retention.removed += seq - q.oldestSeq
	}
	for _, st := range q.consumers {
		if st.off >= off {
			continue
		}
		st.drop.add(st.seq, seq)
		st.off, st.seq = off, seq
		st.peeked, st.peekedValid = nil, false
	}
	q.oldest, q.oldestSeq = off, seq
	q.idx.setRetained(off) // the same sector as the watermark: one msync
	q.idx.setHead(off)
	q.advanceHead()
}

// retained returns the retention mark: the highest watermark a removal by
// retention stored, 0 when none did.
func (x *index) retained() uint64 { return le64(x.data[idxRetainedOff:]) }

func (x *index) setRetained(v uint64) { storeCommit(x.data[idxRetainedOff:], v) }

// noteDrop records, at recovery, that retention removed the messages of
// st, a consumer whose stored position lies below the reclaim watermark;
// st.seq holds the sequence number stored with that position.
func (r *recovered) noteDrop(st *consumerState) {
	st.drop.add(st.seq, r.oldestSeq)
}

// retaining reports whether SetMaxBytes or SetMaxAge set a limit.
func (q *Queue) retaining() bool { return q.opts.maxBytes > 0 || q.opts.maxAge > 0 }

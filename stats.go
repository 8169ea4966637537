package bigqueue

import "time"

// Stats is a snapshot of a queue, returned by Queue.Stats. Counters start
// at zero when the queue is opened.
type Stats struct {
	// QueueID identifies the queue: a random number chosen when its
	// directory was created and kept for its life. With a message's
	// sequence number (Position) it names the message across machines.
	QueueID uint64
	// OldestSeq is the sequence number of the oldest stored message, and
	// NextSeq the one the next message enqueued gets: the messages stored
	// are numbered [OldestSeq, NextSeq), and Seek accepts that range and
	// NextSeq itself. Both are 1 in a new queue.
	OldestSeq, NextSeq uint64
	// Messages is the number of messages stored: from the oldest one still
	// kept for some consumer (or, with no consumer, for the next one) to
	// the newest.
	Messages int64
	// Bytes is the logical size of those messages in the arenas, record
	// headers (16 bytes each) included.
	Bytes int64
	// ArenaSize is the size of each arena file in bytes.
	ArenaSize int
	// ArenasOnDisk is the number of arena files holding queue data. Spare
	// files are not counted.
	ArenasOnDisk int
	// SpareArenas is the number of spare files: consumed arena files kept
	// for reuse as future tail arenas (at most 64, within 64 MiB, none
	// once the queue was idle for a flush), and the next arena when it
	// was prepared ahead of the writer (arenas of 1 MiB and more; an idle
	// flush keeps it).
	SpareArenas int
	// ArenasMapped is the number of arenas memory-mapped right now; at
	// most SetMaxInMemArenas when that is not 0. Arenas every consumer
	// has read that kept their mappings for reuse are not counted (see
	// SetMaxInMemArenas).
	ArenasMapped int
	// Lag maps the name of every consumer to the number of messages it
	// has not read (its Len).
	Lag map[string]int64
	// Flushes counts the successful flushes, explicit and periodic. A
	// flush that found nothing to write is not counted.
	Flushes uint64
	// LastFlushError is the error of the latest flush or its
	// housekeeping (reclaiming arenas, removing spares), or of a failed
	// msync when an arena was unmapped; nil when the latest flush
	// succeeded. A failed msync or fsync fails the queue closed (see
	// Flush); a housekeeping error does not, and the next explicit Flush
	// or Close returns it once.
	LastFlushError error
	// ArenasReclaimed counts the arenas removed or kept as spares because
	// every consumer had read past them and a flush had made those
	// positions durable.
	ArenasReclaimed uint64
	// Dropped maps the name of every consumer to the number of messages
	// retention (SetMaxBytes, SetMaxAge) removed before it read them,
	// since the queue was opened; a NewQueue that finds such a removal
	// not yet reported counts it too.
	Dropped map[string]uint64
	// RetentionRemoved counts the messages retention removed since the
	// queue was opened, read or not.
	RetentionRemoved uint64
	// LastFlushAt is when the latest successful flush ended; zero before
	// the first one.
	LastFlushAt time.Time
}

// Stats returns a snapshot of the queue. It costs O(number of consumers)
// and allocates the Lag and Dropped maps. After Close it returns the zero
// Stats.
func (q *Queue) Stats() Stats {
	if q.invalid() {
		return Stats{}
	}
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.closed {
		return Stats{}
	}
	s := Stats{
		Bytes:            int64(q.tail - q.oldest),
		ArenaSize:        q.opts.arenaSize,
		ArenasOnDisk:     len(q.am.present),
		SpareArenas:      q.am.spareCount(),
		ArenasMapped:     len(q.am.mapped),
		Lag:              make(map[string]int64, len(q.consumers)),
		Flushes:          q.flushes,
		LastFlushError:   q.lastFlushErr,
		ArenasReclaimed:  q.am.reclaimed,
		QueueID:          q.idx.queueID(),
		OldestSeq:        q.oldestSeq + 1,
		NextSeq:          q.tailSeq + 1,
		Dropped:          make(map[string]uint64, len(q.consumers)),
		RetentionRemoved: q.retention.removed,
		LastFlushAt:      q.lastFlushAt,
	}
	s.Messages = q.lag(&consumerState{off: q.oldest, seq: q.oldestSeq})
	for name, st := range q.consumers {
		s.Lag[name] = q.lag(st)
		s.Dropped[name] = st.drop.total
	}
	return s
}

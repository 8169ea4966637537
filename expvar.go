package bigqueue

import (
	"expvar"
	"fmt"
	"sync"
	"time"
)

// expvarMu serializes PublishExpvar's check and publish, so that two
// calls with one name return an error instead of making expvar panic.
var expvarMu sync.Mutex

// PublishExpvar publishes the queue's Stats under name in the expvar
// package, so that /debug/vars shows them: a JSON object with the fields
// of Stats, QueueID as 16 hexadecimal digits, LastFlushError as its text
// ("" for none) and LastFlushAt in RFC 3339 ("" before the first flush).
// Each read of the variable calls Stats. After Close it shows the zero
// Stats; expvar offers no way to remove a variable, so it keeps a
// reference to the Queue for the life of the process.
//
// Errors: an error wrapping ErrInvalidName for an empty name or one
// expvar already has (expvar.Publish would panic); ErrClosed.
func (q *Queue) PublishExpvar(name string) error {
	if q.invalid() {
		return ErrClosed
	}
	q.mu.Lock()
	closed := q.closed
	q.mu.Unlock()
	if closed {
		return ErrClosed
	}
	if name == "" {
		return fmt.Errorf("publish expvar: empty name: %w", ErrInvalidName)
	}
	expvarMu.Lock()
	defer expvarMu.Unlock()
	if expvar.Get(name) != nil {
		return fmt.Errorf("publish expvar %q: the name is in use: %w", name, ErrInvalidName)
	}
	expvar.Publish(name, expvar.Func(func() any { return q.Stats().expvarValue() }))
	return nil
}

// expvarStats is Stats as PublishExpvar shows it in JSON.
type expvarStats struct {
	QueueID          string
	OldestSeq        uint64
	NextSeq          uint64
	Messages         int64
	Bytes            int64
	ArenaSize        int
	ArenasOnDisk     int
	SpareArenas      int
	ArenasMapped     int
	Lag              map[string]int64
	Dropped          map[string]uint64
	Flushes          uint64
	LastFlushError   string
	LastFlushAt      string
	ArenasReclaimed  uint64
	RetentionRemoved uint64
}

func (s Stats) expvarValue() expvarStats {
	v := expvarStats{
		QueueID:          fmt.Sprintf("%016x", s.QueueID),
		OldestSeq:        s.OldestSeq,
		NextSeq:          s.NextSeq,
		Messages:         s.Messages,
		Bytes:            s.Bytes,
		ArenaSize:        s.ArenaSize,
		ArenasOnDisk:     s.ArenasOnDisk,
		SpareArenas:      s.SpareArenas,
		ArenasMapped:     s.ArenasMapped,
		Lag:              s.Lag,
		Dropped:          s.Dropped,
		Flushes:          s.Flushes,
		ArenasReclaimed:  s.ArenasReclaimed,
		RetentionRemoved: s.RetentionRemoved,
	}
	if s.LastFlushError != nil {
		v.LastFlushError = s.LastFlushError.Error()
	}
	if !s.LastFlushAt.IsZero() {
		v.LastFlushAt = s.LastFlushAt.Format(time.RFC3339Nano)
	}
	return v
}

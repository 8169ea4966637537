package bigqueue

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"testing"

	"github.com/stretchr/testify/require"
)

// Tests of message positions: Position, Seek, SeekOldest, SeekNewest and
// the queue's ID.

// numbered returns the message with sequence number n in the tests
// below, of size bytes (at least messageHeadSize, which names it).
func numbered(n uint64, size int) []byte { return message(0, n, max(size, messageHeadSize)) }

// numberOf returns the number numbered put into msg.
func numberOf(t *testing.T, msg []byte) uint64 {
	t.Helper()
	n, whole := messageID(0, msg)
	require.True(t, whole, "message %s", describeMessage(0, msg))
	return n
}

// lastNumber reads c until ErrEmptyQueue, with no other error, and
// returns the number of the last message it read.
func lastNumber(t *testing.T, c *Consumer) uint64 {
	t.Helper()
	var last uint64
	for {
		msg, err := c.Dequeue()
		if errors.Is(err, ErrEmptyQueue) {
			return last
		}
		require.NoError(t, err)
		last = numberOf(t, msg)
	}
}

// enqueueNumbered enqueues the messages numbered from..to, of size bytes.
func enqueueNumbered(t *testing.T, q *Queue, from, to uint64, size int) {
	t.Helper()
	for n := from; n <= to; n++ {
		require.NoError(t, q.Enqueue(numbered(n, size)))
	}
}

// positioned is the part of the API common to Queue and Consumer that
// this file tests.
type positioned interface {
	Position() uint64
	Seek(uint64) error
	SeekOldest() error
	SeekNewest() error
	Peek() ([]byte, error)
	Dequeue() ([]byte, error)
	Len() int64
}

// The first message ever has 1, each next +1, and Position names the
// message the next read returns: the one Peek returned.
func TestPositionNumbersMessages(t *testing.T) {
	q, _ := openTestQueue(t, SetArenaSize(4096))
	for name, r := range views[positioned](t, q) {
		t.Run(name, func(t *testing.T) {
			require.EqualValues(t, 1, r.Position(), "empty new queue: the first message gets 1")
		})
	}
	s := q.Stats()
	require.EqualValues(t, 1, s.OldestSeq)
	require.EqualValues(t, 1, s.NextSeq)
	enqueueNumbered(t, q, 1, 50, 300)
	for name, r := range views[positioned](t, q) {
		t.Run(name, func(t *testing.T) {
			for want := uint64(1); want <= 50; want++ {
				require.Equal(t, want, r.Position())
				msg, err := r.Peek()
				require.NoError(t, err)
				require.Equal(t, want, numberOf(t, msg))
				require.Equal(t, want, r.Position(), "Peek does not move it")
				_, err = r.Dequeue()
				require.NoError(t, err)
			}
			require.EqualValues(t, 51, r.Position(), "at the end: the number the next message gets")
		})
	}
	require.EqualValues(t, 51, q.Stats().NextSeq)
}

// Numbers survive Close, reclaiming (the arenas holding 1.. are gone),
// and recovery after a crash, and are never given again.
func TestPositionAcrossReopenReclaimAndCrash(t *testing.T) {
	opts := []Option{SetArenaSize(4096), SetPeriodicFlushOps(0), SetPeriodicFlushDuration(0)}
	q, dir := openTestQueue(t, opts...)
	id := q.Stats().QueueID
	require.NotZero(t, id)
	enqueueNumbered(t, q, 1, 100, 200)
	for i := 0; i < 60; i++ {
		_, err := q.Dequeue()
		require.NoError(t, err)
	}
	require.NoError(t, q.Flush()) // reclaims the arenas below message 61
	require.Positive(t, q.Stats().ArenasReclaimed)
	require.EqualValues(t, 61, q.Position())
	c, err := q.NewConsumer("late")
	require.NoError(t, err)
	oldest := c.Position()
	require.Greater(t, oldest, uint64(1), "the oldest stored message is past the reclaimed ones")
	require.Equal(t, oldest, q.Stats().OldestSeq)
	msg, err := c.Peek()
	require.NoError(t, err)
	require.Equal(t, oldest, numberOf(t, msg))

	require.NoError(t, q.Close())
	q = openTestQueueIn(t, dir, opts...)
	require.Equal(t, id, q.Stats().QueueID, "the queue's ID is kept")
	require.EqualValues(t, 61, q.Position())
	enqueueNumbered(t, q, 101, 110, 200)
	require.EqualValues(t, 111, q.Stats().NextSeq)

	// A crash: nothing synced, positions and messages committed survive.
	_, err = q.Dequeue()
	require.NoError(t, err)
	abandonQueue(t, q)
	q = openTestQueueIn(t, dir, opts...)
	require.EqualValues(t, 62, q.Position())
	require.EqualValues(t, 111, q.Stats().NextSeq, "no number is given twice")
	require.NoError(t, q.Enqueue(numbered(111, 10)))
	require.NoError(t, q.SeekNewest())
	require.EqualValues(t, 112, q.Position())
	require.NoError(t, q.Seek(111))
	msg, err = q.Dequeue()
	require.NoError(t, err)
	require.EqualValues(t, 111, numberOf(t, msg))
}

// Seek to every stored message, both ends, and past either end, over
// messages of random sizes spanning arenas, with few arenas mapped.
func TestSeekSweep(t *testing.T) {
	seed := testSeed(t)
	t.Logf("seed %d", seed)
	rng := rand.New(rand.NewPCG(seed, 1))
	q, _ := openTestQueue(t, SetArenaSize(4096), SetMaxInMemArenas(3), SetPeriodicFlushOps(0), SetPeriodicFlushDuration(0))
	const n = 300
	for i := uint64(1); i <= n; i++ {
		size := rng.IntN(200)
		if rng.IntN(20) == 0 {
			size = rng.IntN(12000) // spans several arenas
		}
		require.NoError(t, q.Enqueue(numbered(i, size)))
	}
	for name, r := range views[positioned](t, q) {
		t.Run(name, func(t *testing.T) {
			for _, seq := range rng.Perm(n) {
				want := uint64(seq) + 1
				require.NoError(t, r.Seek(want))
				require.Equal(t, want, r.Position())
				msg, err := r.Peek()
				require.NoError(t, err)
				require.Equal(t, want, numberOf(t, msg))
				require.EqualValues(t, n-seq, r.Len())
			}
			require.NoError(t, r.Seek(n+1)) // past the newest: SeekNewest
			require.EqualValues(t, n+1, r.Position())
			_, err := r.Peek()
			require.ErrorIs(t, err, ErrEmptyQueue)
			for _, bad := range []uint64{0, n + 2, n + 1000, ^uint64(0)} {
				require.NoError(t, r.Seek(7))
				err := r.Seek(bad)
				require.ErrorIs(t, err, ErrOutOfRange, "seek %d", bad)
				require.EqualValues(t, 7, r.Position(), "a failed seek moves nothing")
			}
			require.NoError(t, r.SeekOldest())
			require.EqualValues(t, 1, r.Position())
			require.NoError(t, r.SeekNewest())
			require.EqualValues(t, n+1, r.Position())
			require.Zero(t, r.Len())
		})
	}
}

// Below the oldest stored message is out of range once it was reclaimed;
// the seek does not move the consumer, and Seek back to a message read
// already works while it is stored.
func TestSeekAfterReclaim(t *testing.T) {
	q, _ := openTestQueue(t, SetArenaSize(4096), SetPeriodicFlushOps(0), SetPeriodicFlushDuration(0))
	enqueueNumbered(t, q, 1, 100, 200)
	for i := 0; i < 80; i++ {
		_, err := q.Dequeue()
		require.NoError(t, err)
	}
	require.NoError(t, q.Seek(5), "message 5 is read, but still stored")
	require.EqualValues(t, 5, q.Position())
	require.NoError(t, q.Seek(81))
	require.NoError(t, q.Flush())
	oldest := q.Stats().OldestSeq
	require.Greater(t, oldest, uint64(5))
	err := q.Seek(5)
	require.ErrorIs(t, err, ErrOutOfRange)
	require.Contains(t, err.Error(), fmt.Sprintf("stored are %d to 100", oldest))
	require.EqualValues(t, 81, q.Position())
	require.NoError(t, q.Seek(oldest))
	msg, err := q.Peek()
	require.NoError(t, err)
	require.Equal(t, oldest, numberOf(t, msg))
}

// A seek is persisted like any other position: across Close and a crash.
func TestSeekPersisted(t *testing.T) {
	for _, crash := range []bool{false, true} {
		t.Run(fmt.Sprintf("crash=%v", crash), func(t *testing.T) {
			q, dir := openTestQueue(t, SetArenaSize(4096))
			enqueueNumbered(t, q, 1, 40, 100)
			c, err := q.NewConsumer("c")
			require.NoError(t, err)
			require.NoError(t, c.Seek(33))
			require.NoError(t, q.Seek(12))
			q = reopen(t, q, dir, crash)
			c, err = q.NewConsumer("c")
			require.NoError(t, err)
			require.EqualValues(t, 33, c.Position())
			require.EqualValues(t, 12, q.Position())
			msg, err := c.Dequeue()
			require.NoError(t, err)
			require.EqualValues(t, 33, numberOf(t, msg))
		})
	}
}

// An empty queue: only its next number can be sought; a queue whose
// messages were all reclaimed likewise.
func TestSeekEmpty(t *testing.T) {
	q, _ := openTestQueue(t, SetArenaSize(4096))
	require.ErrorIs(t, q.Seek(0), ErrOutOfRange)
	require.ErrorIs(t, q.Seek(2), ErrOutOfRange)
	require.NoError(t, q.Seek(1))
	require.NoError(t, q.SeekOldest())
	require.NoError(t, q.SeekNewest())
	require.NoError(t, q.EnqueueString("a"))
	got, err := q.DequeueString()
	require.NoError(t, err)
	require.Equal(t, "a", got)
	require.EqualValues(t, 2, q.Position())
}

// Seeking back wakes a waiter on the consumer; a waiter on a deleted
// consumer gets ErrNoConsumer, and so does seeking it.
func TestSeekWakesWaiters(t *testing.T) {
	q, _ := openTestQueue(t, SetArenaSize(4096))
	enqueueNumbered(t, q, 1, 3, 10)
	c, err := q.NewConsumer("c")
	require.NoError(t, err)
	require.NoError(t, c.SeekNewest())
	done := startWait(t, q, c.PeekWait)
	require.NoError(t, c.Seek(2))
	r := <-done
	require.NoError(t, r.err)
	require.EqualValues(t, 2, numberOf(t, r.msg))
	require.NoError(t, q.DeleteConsumer("c"))
	require.ErrorIs(t, c.Seek(1), ErrNoConsumer)
	require.ErrorIs(t, c.SeekOldest(), ErrNoConsumer)
	require.ErrorIs(t, c.SeekNewest(), ErrNoConsumer)
	require.Zero(t, c.Position())
}

// Misuse: closed, nil and zero values return errors and zeros.
func TestPositionMisuse(t *testing.T) {
	q, _ := openTestQueue(t)
	c, err := q.NewConsumer("c")
	require.NoError(t, err)
	require.NoError(t, q.Close())
	require.Zero(t, q.Position())
	require.Zero(t, c.Position())
	require.ErrorIs(t, q.Seek(1), ErrClosed)
	require.ErrorIs(t, q.SeekOldest(), ErrClosed)
	require.ErrorIs(t, q.SeekNewest(), ErrClosed)
	require.ErrorIs(t, c.Seek(1), ErrClosed)
	require.ErrorIs(t, c.SeekOldest(), ErrClosed)
	require.ErrorIs(t, c.SeekNewest(), ErrClosed)
	require.Zero(t, q.Stats().QueueID)

	for _, q := range []*Queue{nil, {}} {
		require.Zero(t, q.Position())
		require.ErrorIs(t, q.Seek(1), ErrClosed)
		require.ErrorIs(t, q.SeekOldest(), ErrClosed)
		require.ErrorIs(t, q.SeekNewest(), ErrClosed)
	}
	for _, c := range []*Consumer{nil, {}} {
		require.Zero(t, c.Position())
		require.ErrorIs(t, c.Seek(1), ErrNoConsumer)
		require.ErrorIs(t, c.SeekOldest(), ErrNoConsumer)
		require.ErrorIs(t, c.SeekNewest(), ErrNoConsumer)
	}
}

// Damage in the way of a seek is reported, and the consumer stays.
func TestSeekThroughDamage(t *testing.T) {
	q, _ := openTestQueue(t, SetArenaSize(4096), SetMaxInMemArenas(0))
	enqueueNumbered(t, q, 1, 10, 100)
	// Break the sequence number of message 3's record.
	q.mu.Lock()
	off := q.oldest
	for i := 0; i < 2; i++ {
		n, ok, err := q.am.checkRecord(off, uint64(i), q.tail, false)
		require.NoError(t, err)
		require.True(t, ok)
		off += recordHeaderSize + n
	}
	a, err := q.am.get(off / q.am.dataSize)
	require.NoError(t, err)
	a.data[arenaHeaderSize+off%q.am.dataSize+recordSeqOff] ^= 0xff
	q.mu.Unlock()
	err = q.Seek(5)
	require.ErrorIs(t, err, ErrCorrupt)
	require.False(t, errors.Is(err, ErrOutOfRange))
	require.EqualValues(t, 1, q.Position())
	require.NoError(t, q.Seek(2))
}

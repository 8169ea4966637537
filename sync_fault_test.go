package bigqueue

import (
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// errSyncTest is the error failSyncs injects.
var errSyncTest = syscall.EIO

// openSyncFaultQueue opens a queue whose syncs fail when the returned
// function is called with true, and work again when it is called with
// false.
func openSyncFaultQueue(t *testing.T, opts ...Option) (*Queue, string, func(bool)) {
	fs := newFaultFS()
	q, dir := openTestQueue(t, append(opts, withFS(fs))...)
	return q, dir, func(fail bool) {
		if !fail {
			fs.heal()
			return
		}
		fs.failNth(callMsync, 1, true, errSyncTest)
	}
}

// TestFailedFlushIsSticky: a failed msync is reported, never retried into a
// false success; the queue fails closed until reopened, and reopening
// finds everything a process crash would have kept.
func TestFailedFlushIsSticky(t *testing.T) {
	opts := []Option{SetArenaSize(4096), SetPeriodicFlushOps(0), SetPeriodicFlushDuration(0)}
	q, dir, failSyncs := openSyncFaultQueue(t, opts...)
	require.NoError(t, q.EnqueueString("before"))
	require.NoError(t, q.Flush())
	require.NoError(t, q.EnqueueString("unflushed"))

	failSyncs(true)
	require.ErrorIs(t, q.Flush(), syscall.EIO)
	failSyncs(false)
	require.ErrorIs(t, q.Flush(), syscall.EIO, "a later Flush fails too")
	require.ErrorIs(t, q.EnqueueString("after"), syscall.EIO)
	_, err := q.Dequeue()
	require.ErrorIs(t, err, syscall.EIO)
	_, err = q.NewConsumer("x")
	require.ErrorIs(t, err, syscall.EIO)
	require.ErrorIs(t, q.Close(), syscall.EIO, "Close reports the failure")
	require.NoError(t, q.Close())

	q = openTestQueueIn(t, dir, opts...)
	for _, want := range []string{"before", "unflushed"} {
		s, err := q.DequeueString()
		require.NoError(t, err)
		require.Equal(t, want, s)
	}
	require.True(t, q.IsEmpty())
	require.NoError(t, q.Flush())
}

// TestFailedPeriodicFlush: the background flusher's error is kept and the
// next call returns it.
func TestFailedPeriodicFlush(t *testing.T) {
	q, _, failSyncs := openSyncFaultQueue(t, SetArenaSize(4096), SetPeriodicFlushOps(1), SetPeriodicFlushDuration(0))
	failSyncs(true)
	require.NoError(t, q.EnqueueString("x"))
	// The flush runs in the background: wait for its outcome.
	require.Eventually(t, func() bool {
		q.mu.Lock()
		defer q.mu.Unlock()
		return q.failed != nil
	}, 10*time.Second, time.Millisecond)
	require.ErrorIs(t, q.EnqueueString("y"), syscall.EIO)
	require.ErrorIs(t, q.Flush(), syscall.EIO)
	require.ErrorIs(t, q.Close(), syscall.EIO)
}

// TestFailedEvictionSync: an arena unmapped unsynced is fsynced by the
// next Flush, and one unmapped with maxUnsynced others waiting is msynced
// first. Either failure fails the call that synced, and the queue with it.
func TestFailedEvictionSync(t *testing.T) {
	for _, c := range []struct {
		name     string
		call     fsCall
		msgs     int  // at most; of 3000 bytes, about 3 per 4 arenas
		enqueues bool // the Enqueue that needed the room fails
	}{
		{"by the next flush", callSyncFile, 8, false},
		{"at eviction", callMsync, 2 * (3 + maxUnsynced), true},
	} {
		t.Run(c.name, func(t *testing.T) {
			fs := newFaultFS()
			q, _ := openTestQueue(t, SetArenaSize(4096), SetMaxInMemArenas(3),
				SetPeriodicFlushOps(0), SetPeriodicFlushDuration(0), withFS(fs))
			msg := make([]byte, 3000)
			require.NoError(t, q.Enqueue(msg)) // takes the clean mark off, which msyncs
			fs.failNth(c.call, 1, true, errSyncTest)
			var err error
			for i := 1; i < c.msgs && err == nil; i++ {
				err = q.Enqueue(msg)
			}
			q.mu.Lock()
			waiting, arenas := len(q.am.unsynced), int(q.am.next)
			q.mu.Unlock()
			if c.enqueues {
				require.ErrorIs(t, err, syscall.EIO)
				require.Equal(t, maxUnsynced, waiting)
				require.ErrorIs(t, q.Enqueue(msg), syscall.EIO)
			} else {
				require.NoError(t, err)
				require.Positive(t, waiting)
				require.Equal(t, arenas-3, waiting, "the evicted arenas wait for the flush")
			}
			require.ErrorIs(t, q.Flush(), syscall.EIO)
			require.ErrorIs(t, q.Enqueue(msg), syscall.EIO)
			require.ErrorIs(t, q.Close(), syscall.EIO)
		})
	}
}

// TestIdleFlushWritesNothing: a flush with nothing new does not sync.
func TestIdleFlushWritesNothing(t *testing.T) {
	q, _, failSyncs := openSyncFaultQueue(t, SetArenaSize(4096), SetPeriodicFlushOps(0), SetPeriodicFlushDuration(0))
	require.NoError(t, q.EnqueueString("x"))
	require.NoError(t, q.Flush())
	failSyncs(true) // any msync now would fail the Flush
	require.NoError(t, q.Flush())
	failSyncs(false)
}

func TestZeroConsumer(t *testing.T) {
	q, _ := openTestQueue(t, SetArenaSize(4096))
	var c Consumer
	require.True(t, c.IsEmpty())
	_, err := c.Dequeue()
	require.ErrorIs(t, err, ErrNoConsumer)
	_, err = c.DequeueString()
	require.ErrorIs(t, err, ErrNoConsumer)
	_, err = q.FromConsumer("x", &c)
	require.ErrorIs(t, err, ErrNoConsumer)
}

// TestSpareReuseSyncsDirectory: a spare is durable under its spare name
// before anything is written into it as a new arena, so a power loss
// cannot leave the new records under the old arena's name, where readers
// of the durable index would take them for damage. A Flush since the spare
// was made settles it; else reusing it fsyncs the directory first. A failed
// fsync there fails the queue and loses nothing.
func TestSpareReuseSyncsDirectory(t *testing.T) {
	opts := []Option{SetArenaSize(4096), SetPeriodicFlushOps(0), SetPeriodicFlushDuration(0)}
	fs := newFaultFS()
	q, dir := openTestQueue(t, append(opts, withFS(fs))...)
	msg := make([]byte, 1000)
	drain := func() {
		for !q.IsEmpty() {
			_, err := q.Dequeue()
			require.NoError(t, err)
		}
	}
	acked := 0 // enqueued since the last drain
	// untilNewArena enqueues until a new arena file is made and returns
	// the renames and directory fsyncs that took.
	untilNewArena := func() (renames, syncs int) {
		fs.failNth(callSyncDir, 0, false, nil) // restart the counts
		for before := q.Stats().ArenasOnDisk; q.Stats().ArenasOnDisk == before; acked++ {
			require.NoError(t, q.Enqueue(msg))
		}
		fs.mu.Lock()
		defer fs.mu.Unlock()
		return fs.calls[callRename], fs.calls[callSyncDir]
	}

	for range 12 { // three arenas
		require.NoError(t, q.Enqueue(msg))
	}
	drain()
	require.Zero(t, q.Stats().SpareArenas, "reads do not reclaim")
	// The flush reclaims after its directory fsync: the spares it makes
	// are not settled by it.
	require.NoError(t, q.Flush())
	require.EqualValues(t, min(q.Stats().ArenasReclaimed, maxSpareArenas), q.Stats().SpareArenas)
	require.Positive(t, q.Stats().SpareArenas)
	renames, syncs := untilNewArena()
	require.Equal(t, 1, renames, "a spare is reused")
	require.Equal(t, 1, syncs, "made with no Flush since, it is settled first")

	require.NoError(t, q.Flush())
	renames, syncs = untilNewArena()
	require.Equal(t, 1, renames, "the other spare is reused")
	require.Zero(t, syncs, "the Flush settled it")
	for q.Stats().SpareArenas > 0 {
		untilNewArena() // use up the settled spares left
	}

	drain()
	require.NoError(t, q.Flush()) // makes spares, unsettled
	acked = 0
	require.Positive(t, q.Stats().SpareArenas)
	fs.failNth(callSyncDir, 1, false, errSyncTest)
	for {
		err := q.Enqueue(msg)
		if err != nil {
			require.ErrorIs(t, err, errSyncTest, "the enqueue that reused the spare")
			break
		}
		acked++
	}
	fs.mu.Lock()
	renames = fs.calls[callRename]
	fs.mu.Unlock()
	require.Zero(t, renames, "the spare was not touched")
	fs.heal()
	require.ErrorIs(t, q.Flush(), errSyncTest, "the queue failed closed")
	require.ErrorIs(t, q.Close(), errSyncTest)

	q = openTestQueueIn(t, dir, opts...)
	for i := range acked {
		got, err := q.Dequeue()
		require.NoError(t, err, "message %d of %d", i, acked)
		require.Equal(t, msg, got)
	}
	require.True(t, q.IsEmpty(), "nothing unacknowledged appears")
}

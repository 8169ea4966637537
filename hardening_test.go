package bigqueue

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// Misuse and races outside the crash model: waiters woken by consumer
// changes, concurrent Close, nil and zero values.

// waitForWaiter returns once a goroutine has registered in DequeueWait's
// wait list of q (it may still be on its way into the select, which then
// sees the wake-up).
func waitForWaiter(t *testing.T, q *Queue) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		q.mu.Lock()
		waiting := q.dataReady != nil
		q.mu.Unlock()
		if waiting {
			return
		}
		require.True(t, time.Now().Before(deadline), "no goroutine started waiting")
		runtime.Gosched()
	}
}

type waitResult struct {
	msg []byte
	err error
}

func TestWaitersWokenByConsumerChanges(t *testing.T) {
	t.Run("deleted consumer", func(t *testing.T) {
		q, _ := openTestQueue(t)
		c, err := q.NewConsumer("c")
		require.NoError(t, err)
		done := make(chan waitResult)
		go func() {
			msg, err := c.DequeueWait(context.Background())
			done <- waitResult{msg, err}
		}()
		waitForWaiter(t, q)
		require.NoError(t, q.DeleteConsumer("c"))
		r := <-done
		require.ErrorIs(t, r.err, ErrNoConsumer)
	})
	t.Run("FromConsumer", func(t *testing.T) {
		q, _ := openTestQueue(t)
		behind, err := q.NewConsumer("behind")
		require.NoError(t, err)
		require.NoError(t, q.EnqueueString("m"))
		ahead, err := q.NewConsumer("ahead")
		require.NoError(t, err)
		_, err = ahead.Dequeue()
		require.NoError(t, err)
		done := make(chan waitResult)
		go func() {
			msg, err := ahead.DequeueWait(context.Background())
			done <- waitResult{msg, err}
		}()
		waitForWaiter(t, q)
		_, err = q.FromConsumer("ahead", behind)
		require.NoError(t, err)
		r := <-done
		require.NoError(t, r.err)
		require.Equal(t, "m", string(r.msg))
	})
	t.Run("default consumer deleted", func(t *testing.T) {
		q, _ := openTestQueue(t)
		_, err := q.NewConsumer("pin") // keeps the message stored
		require.NoError(t, err)
		require.NoError(t, q.EnqueueString("m"))
		got, err := q.DequeueString()
		require.NoError(t, err)
		require.Equal(t, "m", got)
		done := make(chan waitResult)
		go func() {
			msg, err := q.DequeueWait(context.Background())
			done <- waitResult{msg, err}
		}()
		waitForWaiter(t, q)
		// The next queue-level read re-creates the default consumer at
		// the oldest stored message, which the waiter then gets.
		require.NoError(t, q.DeleteConsumer(defaultConsumerKey))
		r := <-done
		require.NoError(t, r.err)
		require.Equal(t, "m", string(r.msg))
	})
}

// A second Close returns only once the first has released the directory.
func TestConcurrentClose(t *testing.T) {
	dir := t.TempDir()
	for i := 0; i < 20; i++ {
		q, err := NewQueue(dir, SetArenaSize(4096))
		require.NoError(t, err)
		require.NoError(t, q.EnqueueString("x"))
		errs := make(chan error, 2)
		for range 2 {
			go func() { errs <- q.Close() }()
		}
		require.NoError(t, <-errs)
		// Whichever returned first, the lock is released now.
		q2, err := NewQueue(dir)
		require.NoError(t, err, "round %d", i)
		require.NoError(t, <-errs)
		require.NoError(t, q2.Close())
	}
}

func TestMisuseReturnsErrors(t *testing.T) {
	q, _ := openTestQueue(t)
	//lint:ignore SA1012 a nil context is the misuse under test
	_, err := q.DequeueWait(nil) //nolint:staticcheck
	require.ErrorIs(t, err, ErrNilContext)
	c, err := q.NewConsumer("c")
	require.NoError(t, err)
	//lint:ignore SA1012 a nil context is the misuse under test
	_, err = c.DequeueWait(nil) //nolint:staticcheck
	require.ErrorIs(t, err, ErrNilContext)

	for name, q := range map[string]*Queue{"nil": nil, "zero": {}} {
		t.Run(name, func(t *testing.T) {
			closed := func(err error) { t.Helper(); require.ErrorIs(t, err, ErrClosed) }
			closed(q.Enqueue([]byte("x")))
			closed(q.EnqueueString("x"))
			closed(q.EnqueueBatch([][]byte{[]byte("x")}))
			_, err := q.Dequeue()
			closed(err)
			_, err = q.DequeueString()
			closed(err)
			_, err = q.DequeueAppend(nil)
			closed(err)
			_, err = q.DequeueWait(context.Background())
			closed(err)
			_, err = q.Peek()
			closed(err)
			_, err = q.PeekString()
			closed(err)
			_, err = q.NewConsumer("c")
			closed(err)
			_, err = q.FromConsumer("c", nil)
			closed(err)
			closed(q.DeleteConsumer("c"))
			closed(q.Flush())
			require.True(t, q.IsEmpty())
			require.Zero(t, q.Len())
			require.Nil(t, q.Consumers())
			require.Equal(t, Stats{}, q.Stats())
			closed(q.Close())
			closed(q.Close())
			require.False(t, errors.Is(q.Close(), ErrLocked))
		})
	}
}

// Arena files without an index are damage: NewQueue refuses them and
// deletes nothing, instead of starting a fresh queue over them.
func TestMissingIndexRefused(t *testing.T) {
	q, dir := openTestQueue(t, SetArenaSize(4096))
	for i := 0; i < 20; i++ {
		require.NoError(t, q.EnqueueString("message"))
	}
	_, err := q.NewConsumer("pin")
	require.NoError(t, err)
	require.NoError(t, q.Close())
	before := lifecycleFiles(t, dir)
	require.NotEmpty(t, before)
	require.NoError(t, os.Remove(filepath.Join(dir, indexFileName)))

	_, err = NewQueue(dir, SetArenaSize(4096))
	require.ErrorIs(t, err, ErrCorrupt)
	require.Contains(t, err.Error(), "no index.bq")
	require.Equal(t, before, lifecycleFiles(t, dir), "an arena file was touched")
	_, err = os.Stat(filepath.Join(dir, indexFileName))
	require.ErrorIs(t, err, os.ErrNotExist, "an index was created")
}

// An index removed or replaced under a live queue: Flush and Close must
// not report success for state that is in no file the next NewQueue reads.
func TestIndexRemovedUnderQueue(t *testing.T) {
	for _, how := range []string{"removed", "replaced"} {
		t.Run(how, func(t *testing.T) {
			dir := t.TempDir()
			q, err := NewQueue(dir)
			require.NoError(t, err)
			require.NoError(t, q.Flush(), "a flush with the index in place")
			require.NoError(t, q.EnqueueString("m"))
			path := filepath.Join(dir, indexFileName)
			if how == "removed" {
				require.NoError(t, os.Remove(path))
			} else {
				raw, err := os.ReadFile(path)
				require.NoError(t, err)
				require.NoError(t, os.WriteFile(path+".new", raw, 0o644))
				require.NoError(t, os.Rename(path+".new", path))
			}
			require.ErrorIs(t, q.Flush(), ErrCorrupt)
			require.ErrorIs(t, q.Flush(), ErrCorrupt, "an idle flush does not report success either")
			require.ErrorIs(t, q.EnqueueString("n"), ErrCorrupt, "the queue failed closed")
			require.ErrorIs(t, q.Close(), ErrCorrupt)
		})
	}
	t.Run("idle", func(t *testing.T) {
		dir := t.TempDir()
		q, err := NewQueue(dir, SetPeriodicFlushOps(0), SetPeriodicFlushDuration(0))
		require.NoError(t, err)
		require.NoError(t, q.EnqueueString("m"))
		require.NoError(t, q.Flush())
		require.NoError(t, os.Remove(filepath.Join(dir, indexFileName)))
		require.ErrorIs(t, q.Flush(), ErrCorrupt, "a flush with nothing to write")
		require.ErrorIs(t, q.Close(), ErrCorrupt)
	})
	t.Run("close", func(t *testing.T) {
		dir := t.TempDir()
		q, err := NewQueue(dir)
		require.NoError(t, err)
		require.NoError(t, q.EnqueueString("m"))
		require.NoError(t, os.Remove(filepath.Join(dir, indexFileName)))
		require.ErrorIs(t, q.Close(), ErrCorrupt)
	})
}

// notStartedDirSync is osFS whose directory syncs fail as when the
// directory cannot be opened (EMFILE), while fail is set.
type notStartedDirSync struct {
	osFS
	fail *atomic.Bool
}

func (f notStartedDirSync) syncDir(dir string) error {
	if f.fail.Load() {
		return fmt.Errorf("open directory for fsync: %w: %w", errSyncNotStarted, syscall.EMFILE)
	}
	return f.osFS.syncDir(dir)
}

// A directory sync that could not start (no file descriptor) fails the
// flush, not the queue: nothing was synced, so nothing was lost, and the
// next flush does the work.
func TestDirSyncNotStartedDoesNotFailQueue(t *testing.T) {
	fail := new(atomic.Bool)
	q, _ := openTestQueue(t, SetArenaSize(4096), withFS(notStartedDirSync{fail: fail}),
		SetPeriodicFlushOps(0), SetPeriodicFlushDuration(0))
	msg := make([]byte, 1000)
	for i := 0; i < 10; i++ { // new arenas: the directory changed
		require.NoError(t, q.Enqueue(msg))
	}
	fail.Store(true)
	err := q.Flush()
	require.ErrorIs(t, err, syscall.EMFILE)
	require.ErrorIs(t, q.Stats().LastFlushError, syscall.EMFILE)
	require.NoError(t, q.Enqueue(msg), "the queue did not fail closed")
	fail.Store(false)
	require.NoError(t, q.Flush(), "the next flush does the work")
	q.mu.Lock()
	ck := q.idx.checkpoint()
	tail := q.tail
	q.mu.Unlock()
	require.Equal(t, tail, ck.offset, "the checkpoint covers everything")
	require.NoError(t, q.Stats().LastFlushError)
}

// The index never grows past what opening accepts: a consumer beyond that
// is refused, and the queue still opens with the others.
func TestTooManyConsumers(t *testing.T) {
	old := maxIndexSize
	maxIndexSize = 16 << 10 // 62 slots
	t.Cleanup(func() { maxIndexSize = old })
	q, dir := openTestQueue(t)
	var made int
	for {
		_, err := q.NewConsumer(fmt.Sprintf("c%d", made))
		if err != nil {
			require.ErrorIs(t, err, ErrTooManyConsumers)
			break
		}
		made++
		require.Less(t, made, 1000, "never refused")
	}
	require.Positive(t, made)
	require.NoError(t, q.Close())
	q = openTestQueueIn(t, dir)
	require.Len(t, q.Consumers(), made)
}

package bigqueue

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
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

// startWait calls wait (a blocking read of q) in a new goroutine and
// returns once it waits; its result arrives on the channel.
func startWait(t *testing.T, q *Queue, wait func(context.Context) ([]byte, error)) <-chan waitResult {
	t.Helper()
	done := make(chan waitResult, 1)
	go func() {
		msg, err := wait(context.Background())
		done <- waitResult{msg, err}
	}()
	waitForWaiter(t, q)
	return done
}

func TestWaitersWokenByConsumerChanges(t *testing.T) {
	for _, peek := range []bool{false, true} {
		t.Run(fmt.Sprintf("deleted consumer/peek=%v", peek), func(t *testing.T) {
			q, _ := openTestQueue(t)
			c, err := q.NewConsumer("c")
			require.NoError(t, err)
			wait := c.DequeueWait
			if peek {
				wait = c.PeekWait
			}
			done := startWait(t, q, wait)
			require.NoError(t, q.DeleteConsumer("c"))
			require.ErrorIs(t, (<-done).err, ErrNoConsumer)
		})
	}
	t.Run("FromConsumer", func(t *testing.T) {
		q, _ := openTestQueue(t)
		behind, err := q.NewConsumer("behind")
		require.NoError(t, err)
		require.NoError(t, q.EnqueueString("m"))
		ahead, err := q.NewConsumer("ahead")
		require.NoError(t, err)
		_, err = ahead.Dequeue()
		require.NoError(t, err)
		done := startWait(t, q, ahead.DequeueWait)
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
		done := startWait(t, q, q.DequeueWait)
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

// A flush needs no new file descriptor: the directory is fsynced through
// the one the queue holds. With every descriptor of the process taken, a
// Flush still succeeds, an Enqueue that needs a new arena file fails
// without failing the queue, and everything is there once descriptors
// are free again.
func TestFlushNeedsNoNewDescriptor(t *testing.T) {
	q, dir := openTestQueue(t, SetArenaSize(4096), SetPeriodicFlushOps(0), SetPeriodicFlushDuration(0))
	msg := make([]byte, 1000)
	const before = 10 // new arenas: the directory changed
	for i := 0; i < before; i++ {
		require.NoError(t, q.Enqueue(msg))
	}

	var lim syscall.Rlimit
	require.NoError(t, syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim))
	var filler []*os.File
	release := func() {
		for _, f := range filler {
			require.NoError(t, f.Close())
		}
		filler = nil
		require.NoError(t, syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim))
	}
	// Lower the soft limit a little above the highest descriptor open
	// now, then take what is left.
	fds, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Skipf("no /proc/self/fd: %v", err)
	}
	low := lim
	low.Cur = uint64(len(fds)) + 64
	for _, e := range fds {
		var n uint64
		if _, err := fmt.Sscan(e.Name(), &n); err == nil && n+64 > low.Cur {
			low.Cur = n + 64
		}
	}
	require.NoError(t, syscall.Setrlimit(syscall.RLIMIT_NOFILE, &low))
	defer release()
	for {
		f, err := os.Open(os.DevNull)
		if err != nil {
			require.ErrorIs(t, err, syscall.EMFILE)
			break
		}
		filler = append(filler, f)
		require.Less(t, len(filler), 1<<16, "never ran out of descriptors")
	}

	require.NoError(t, q.Flush(), "a flush opens nothing")
	var enqErr error
	for i := 0; i < 10 && enqErr == nil; i++ { // reach a new arena
		enqErr = q.Enqueue(msg)
	}
	require.ErrorIs(t, enqErr, syscall.EMFILE, "a new arena file needs a descriptor")
	release()

	require.NoError(t, q.Enqueue(msg), "the queue did not fail closed")
	require.NoError(t, q.Flush())
	n := q.Len()
	require.NoError(t, q.Close())
	q = openTestQueueIn(t, dir, SetArenaSize(4096))
	require.Equal(t, n, q.Len())
	require.GreaterOrEqual(t, n, int64(before+1))
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

// readerQueue makes a closed queue of 4 KiB arenas in a new directory,
// holding the 400 messages "A-<i>", with a consumer "reader" that read the
// first read of them, and returns the directory.
func readerQueue(t *testing.T, read int) string {
	t.Helper()
	dir := t.TempDir()
	q, err := NewQueue(dir, SetArenaSize(4096))
	require.NoError(t, err)
	r, err := q.NewConsumer("reader")
	require.NoError(t, err)
	enqueueN(t, q, "A", 0, 400)
	for range read {
		_, err := r.Dequeue()
		require.NoError(t, err)
	}
	require.NoError(t, q.Close())
	return dir
}

// Records a checkpoint covered and that are gone are reported, never cut
// silently: with the two newest arena files of a cleanly closed queue
// deleted, the queue opens, and the first read of every consumer that
// had not read them (the default one included) returns ErrCorrupt saying
// how many messages were lost, also after a reopen before that read;
// then the intact prefix follows.
func TestCheckpointedArenasMissingReported(t *testing.T) {
	dir := readerQueue(t, 10)

	ids := arenaIDs(t, dir)
	require.GreaterOrEqual(t, len(ids), 3)
	for _, id := range ids[len(ids)-2:] {
		require.NoError(t, os.Remove(filepath.Join(dir, arenaName(uint64(id)))))
	}

	q, err := NewQueue(dir, SetArenaSize(4096))
	require.NoError(t, err)
	require.NoError(t, q.Close()) // a reopen before any read keeps the report
	q = openTestQueueIn(t, dir, SetArenaSize(4096))
	r, err := q.NewConsumer("reader")
	require.NoError(t, err)
	for _, c := range []struct {
		name string
		read func() ([]byte, error)
		from int
	}{{"default", q.Dequeue, 0}, {"reader", r.Dequeue, 10}} {
		_, err := c.read()
		require.ErrorIs(t, err, ErrCorrupt, "%s: the loss is reported first", c.name)
		require.Regexp(t, `recovery found \d+ messages`, err.Error())
		n := c.from
		for {
			msg, err := c.read()
			if err == ErrEmptyQueue {
				break
			}
			require.NoError(t, err, "%s: one report only", c.name)
			require.Equal(t, string(tagged("A", n)), string(msg), "%s: an exact prefix", c.name)
			n++
		}
		require.Less(t, n, 400, "%s: the deleted arenas held messages", c.name)
		require.Greater(t, n, c.from, "%s: the intact prefix is read", c.name)
	}
	require.NoError(t, q.EnqueueString("after"))
	msg, err := q.DequeueString()
	require.NoError(t, err)
	require.Equal(t, "after", msg)
}

// A file truncated under a live queue makes the next access to its
// mapping fault (SIGBUS). The process survives: the call returns
// ErrFault, the queue fails closed, Close returns and unlocks, and the
// next NewQueue reports the damage instead of delivering garbage.
func TestTruncatedUnderLiveQueue(t *testing.T) {
	for _, c := range []struct {
		name string
		file string
		op   func(q *Queue) error
	}{
		{"arena read", arenaName(0), func(q *Queue) error { _, err := q.Dequeue(); return err }},
		{"arena write", arenaName(1), func(q *Queue) error {
			for i := 0; i < 20; i++ {
				if err := q.Enqueue(tagged("B", i)); err != nil {
					return err
				}
			}
			return nil
		}},
		{"index write", indexFileName, func(q *Queue) error { _, err := q.NewConsumer("late"); return err }},
		{"arena read into a buffer", arenaName(0), dequeueAppendKept},
		// The same after a first read: the default consumer exists and
		// arena 0 is mapped, so the read is dequeueFast's, which holds
		// only the consumers' half of the lock when it faults.
		{"fast arena read", arenaName(0), func(q *Queue) error { _, err := q.Dequeue(); return err }},
		{"fast arena read into a buffer", arenaName(0), dequeueAppendKept},
	} {
		t.Run(c.name, func(t *testing.T) {
			dir := t.TempDir()
			q, err := NewQueue(dir, SetArenaSize(4096), SetPeriodicFlushDuration(0), SetPeriodicFlushOps(0))
			require.NoError(t, err)
			_, err = q.NewConsumer("reader")
			require.NoError(t, err)
			enqueueN(t, q, "A", 0, 15) // arenas 0 and 1
			if strings.HasPrefix(c.name, "fast ") {
				_, err := q.Dequeue()
				require.NoError(t, err)
				q.mu.Lock()
				require.NotNil(t, q.defaultSt, "the default consumer")
				require.NotNil(t, q.am.mapped[0], "arena 0 mapped")
				q.mu.Unlock()
			}
			require.NoError(t, os.Truncate(filepath.Join(dir, c.file), 0))
			err = c.op(q)
			require.ErrorIs(t, err, ErrFault)
			require.ErrorIs(t, q.Enqueue([]byte("x")), ErrFault, "the queue failed closed")
			require.ErrorIs(t, q.Close(), ErrFault)

			q, err = NewQueue(dir, SetArenaSize(4096))
			if err != nil {
				require.ErrorIs(t, err, ErrCorrupt)
				return
			}
			defer func() { require.NoError(t, q.Close()) }()
			readTagged(t, q, "A", 100) // only intact messages of the queue
			require.NoError(t, q.EnqueueString("after"))
		})
	}
}

// dequeueAppendKept is DequeueAppend into a buffer that must come back
// unchanged with the error.
func dequeueAppendKept(q *Queue) error {
	got, err := q.DequeueAppend([]byte("kept"))
	if string(got) != "kept" {
		return fmt.Errorf("DequeueAppend returned %q, not dst unchanged (error %v)", got, err)
	}
	return err
}

// Slots freed by DeleteConsumer are reused, lowest first, and the free
// slot search resumes where it stopped instead of scanning every slot.
func TestFreeSlotReuse(t *testing.T) {
	q, dir := openTestQueue(t)
	for i := 0; i < 40; i++ {
		_, err := q.NewConsumer(fmt.Sprintf("c%d", i))
		require.NoError(t, err)
	}
	q.mu.Lock()
	from := q.idx.freeFrom
	slot := q.consumers["c7"].slot
	q.mu.Unlock()
	require.GreaterOrEqual(t, from, 39, "the search resumes at the last slot it gave out")
	require.NoError(t, q.DeleteConsumer("c7"))
	c, err := q.NewConsumer("new")
	require.NoError(t, err)
	q.mu.Lock()
	require.Equal(t, slot, q.consumers[c.Name()].slot, "the freed slot is reused")
	q.mu.Unlock()
	require.NoError(t, q.Close())
	q = openTestQueueIn(t, dir)
	require.Len(t, q.Consumers(), 40)
}

// Arena files removed under a live queue: the queue keeps writing into
// the unlinked files, which no later NewQueue finds. What a flush covered
// and is gone is reported at the next open, never skipped silently: every
// gap in what a reader gets comes right after an ErrCorrupt. An arena
// removed after it was unmapped unsynced (arenaManager.evict) cannot be
// synced by the flush, which says so (ErrCorrupt); the mapped ones are
// synced through their mappings.
func TestArenaRemovedUnderLiveQueue(t *testing.T) {
	for _, c := range []struct {
		name     string
		removed  []uint64
		flushErr string // "" = Flush returns nil
	}{{"in the middle", []uint64{2}, "sync arena 2: "}, {"the newest two", []uint64{3, 4}, ""}} {
		t.Run(c.name, func(t *testing.T) {
			dir := t.TempDir()
			// No periodic flush: one could sync arena 2 before it goes.
			q, err := NewQueue(dir, SetArenaSize(4096), SetPeriodicFlushOps(0), SetPeriodicFlushDuration(0))
			require.NoError(t, err)
			enqueueN(t, q, "A", 0, 60) // arenas 0 to 4
			for _, id := range c.removed {
				require.NoError(t, os.Remove(filepath.Join(dir, arenaName(id))))
			}
			enqueueN(t, q, "A", 60, 3)
			if err := q.Flush(); c.flushErr == "" {
				require.NoError(t, err)
			} else {
				require.ErrorIs(t, err, ErrCorrupt)
				require.ErrorContains(t, err, c.flushErr)
			}
			require.NoError(t, q.Close())

			q = openTestQueueIn(t, dir, SetArenaSize(4096))
			next, reports, got := 0, 0, 0
			reported := false
			for i := 0; i < 200; i++ {
				msg, err := q.Dequeue()
				if err == ErrEmptyQueue {
					break
				}
				if err != nil {
					require.ErrorIs(t, err, ErrCorrupt)
					reports++
					reported = true
					continue
				}
				var n int
				_, err = fmt.Sscanf(string(msg), "A-%d-", &n)
				require.NoError(t, err)
				require.GreaterOrEqual(t, n, next, "out of order")
				if n > next {
					require.True(t, reported, "messages %d to %d skipped without an ErrCorrupt", next, n-1)
				}
				reported = false
				next = n + 1
				got++
			}
			require.Positive(t, reports, "the loss was not reported")
			require.Less(t, got, 63)
		})
	}
}

// The oldest arena file removed by hand is a loss, not a reclaim: a
// consumer's stored position lies in it, and a flush made that position
// durable before anything could reclaim the arena. Every consumer that
// stood in it gets one ErrCorrupt, then reads on from the oldest arena
// left; so does it after a reopen before that read.
func TestOldestArenaMissingReported(t *testing.T) {
	dir := readerQueue(t, 5)
	q, err := NewQueue(dir, SetArenaSize(4096))
	require.NoError(t, err)
	_, err = q.Peek() // makes the default consumer, at message 0
	require.NoError(t, err)
	require.NoError(t, q.Close())
	require.NoError(t, os.Remove(filepath.Join(dir, arenaName(0))))

	q, err = NewQueue(dir, SetArenaSize(4096))
	require.NoError(t, err)
	require.NoError(t, q.Close()) // a reopen before any read keeps the report
	q = openTestQueueIn(t, dir, SetArenaSize(4096))
	r, err := q.NewConsumer("reader")
	require.NoError(t, err)
	first := -1
	for _, c := range []struct {
		name string
		read func() ([]byte, error)
		from int
	}{{"default", q.Dequeue, 0}, {"reader", r.Dequeue, 5}} {
		_, err := c.read()
		require.ErrorIs(t, err, ErrCorrupt, "%s: the loss is reported first", c.name)
		require.Regexp(t, `\d+ messages`, err.Error())
		msg, err := c.read()
		require.NoError(t, err, "%s: one report only", c.name)
		var n int
		_, err = fmt.Sscanf(string(msg), "A-%d-", &n)
		require.NoError(t, err)
		require.Greater(t, n, c.from, "%s: arena 0 held messages it had not read", c.name)
		if first >= 0 {
			require.Equal(t, first, n, "both read on from the oldest arena left")
		}
		first = n
	}
	require.NoError(t, q.EnqueueString("after"))
}

// A damaged retention mark is damage, not a drop: with the watermark
// moved up two arenas (as a scribble over the index can) and the mark
// past it, a consumer stood in the arenas recovery then removes gets
// ErrCorrupt, never ErrDropped, which only a mark retention itself
// stored (in the watermark's arena or below it) gives.
func TestRetentionMarkDamageIsCorrupt(t *testing.T) {
	const ds = 4096 - arenaHeaderSize
	for _, c := range []struct {
		name     string
		retained uint64
		want     error
	}{
		{"mark past the watermark", 1 << 60, ErrCorrupt},
		{"mark with the watermark", 2*ds + 8, ErrDropped},
	} {
		t.Run(c.name, func(t *testing.T) {
			dir := readerQueue(t, 5)
			path := filepath.Join(dir, indexFileName)
			b, err := os.ReadFile(path)
			require.NoError(t, err)
			binary.LittleEndian.PutUint64(b[idxHeadOff:], 2*ds)
			binary.LittleEndian.PutUint64(b[idxRetainedOff:], c.retained)
			require.NoError(t, os.WriteFile(path, b, 0o644))
			q := openTestQueueIn(t, dir, SetArenaSize(4096))
			r, err := q.NewConsumer("reader")
			require.NoError(t, err)
			_, err = r.Dequeue()
			require.ErrorIs(t, err, c.want)
			msg, err := r.Dequeue()
			require.NoError(t, err)
			require.True(t, strings.HasPrefix(string(msg), "A-"))
		})
	}
}

// A consumer that lost the oldest arenas and the newest ones a
// checkpoint covered gets one report naming both losses, with their sum.
func TestMissingAndCutReportedTogether(t *testing.T) {
	dir := readerQueue(t, 5)
	ids := arenaIDs(t, dir)
	for _, id := range []int{ids[0], ids[len(ids)-1], ids[len(ids)-2]} {
		require.NoError(t, os.Remove(filepath.Join(dir, arenaName(uint64(id)))))
	}
	q := openTestQueueIn(t, dir, SetArenaSize(4096))
	r, err := q.NewConsumer("reader")
	require.NoError(t, err)
	_, err = r.Dequeue()
	require.ErrorIs(t, err, ErrCorrupt)
	require.Contains(t, err.Error(), "below the oldest arena left", "the bottom loss")
	require.Contains(t, err.Error(), "cut the queue back", "the top loss")
	msg, err := r.Dequeue()
	require.NoError(t, err, "one report")
	require.True(t, strings.HasPrefix(string(msg), "A-"))
}

// arenaIDs returns the numbers of the arena files in dir, in order.
func arenaIDs(t *testing.T, dir string) []int {
	t.Helper()
	var ids []int
	entries, err := os.ReadDir(dir)
	require.NoError(t, err)
	for _, e := range entries {
		var id int
		if _, err := fmt.Sscanf(e.Name(), "arena-%d.bq", &id); err == nil {
			ids = append(ids, id)
		}
	}
	slices.Sort(ids)
	return ids
}

// forgeTail rewrites the index of the closed, empty queue in dir so that
// its tail (and checkpoint) is at the logical offset off with sequence
// number seq, checksums fixed: the index a forger or bit rot could leave.
func forgeTail(t *testing.T, dir string, off, seq uint64) {
	t.Helper()
	path := filepath.Join(dir, indexFileName)
	idx, err := os.ReadFile(path)
	require.NoError(t, err)
	binary.LittleEndian.PutUint64(idx[idxTailOff:], off)
	binary.LittleEndian.PutUint64(idx[idxHeadOff:], off)
	for i := range 2 {
		s := idx[idxCkptOff+i*ckptSize:][:ckptSize]
		binary.LittleEndian.PutUint64(s[ckptOffsetOff:], off)
		binary.LittleEndian.PutUint64(s[ckptSeqOff:], seq)
		binary.LittleEndian.PutUint64(s[ckptGenOff:], uint64(10+i))
	}
	fuzzFixIndex(idx)
	require.NoError(t, os.WriteFile(path, idx, 0o600))
}

// openForged creates a queue in a new directory, closes it, forges its
// tail at off and seq (forgeTail) and opens it again.
func openForged(t *testing.T, off, seq uint64) (*Queue, string) {
	t.Helper()
	dir := t.TempDir()
	q, err := NewQueue(dir, SetArenaSize(os.Getpagesize()))
	require.NoError(t, err)
	require.NoError(t, q.Close())
	forgeTail(t, dir, off, seq)
	q, err = NewQueue(dir, SetArenaSize(os.Getpagesize()))
	require.NoError(t, err)
	require.Equal(t, off, q.tail, "the forged tail was not accepted")
	require.Equal(t, seq, q.tailSeq, "the forged sequence number was not accepted")
	return q, dir
}

// requireReopenReads reopens the queue in dir and requires that its
// default consumer reads exactly want, then closes it.
func requireReopenReads(t *testing.T, dir string, want ...string) {
	t.Helper()
	q, err := NewQueue(dir, SetArenaSize(os.Getpagesize()))
	require.NoError(t, err)
	defer func() { require.NoError(t, q.Close()) }()
	msgs := make([][]byte, len(want))
	for i, w := range want {
		msgs[i] = []byte(w)
	}
	requireReads(t, q.Dequeue, msgs)
	_, err = q.Dequeue()
	require.ErrorIs(t, err, ErrEmptyQueue)
}

// TestEnqueueRefusedPastMaxOffset puts a queue's tail just below maxOffset
// (2^62), the largest offset recovery accepts, with a forged index: a
// record that ends exactly at 2^62, with sequence number 2^62-1, is taken
// and kept (after a clean close, and in a copy taken before Close, as a
// crash leaves it); the next one is refused with ErrExhausted, and so is
// a batch, which then stores nothing. Writing past 2^62 would have made
// the next NewQueue take the messages for damage.
func TestEnqueueRefusedPastMaxOffset(t *testing.T) {
	const msg = "0123456789"
	q, dir := openForged(t, uint64(maxOffset-recordHeaderSize-len(msg)), maxOffset-1)
	require.True(t, q.cleanOnDisk)
	require.ErrorIs(t, q.EnqueueBatch([][]byte{[]byte(msg), nil}), ErrExhausted)
	require.True(t, q.cleanOnDisk, "the refused batch wrote its first record (and cleared the clean mark)")
	require.NoError(t, q.EnqueueString(msg))
	require.Equal(t, uint64(maxOffset), q.tail)
	require.Equal(t, uint64(maxOffset), q.tailSeq)
	require.ErrorIs(t, q.EnqueueString(""), ErrExhausted)
	require.ErrorIs(t, q.EnqueueBatch([][]byte{nil}), ErrExhausted)
	require.Equal(t, uint64(maxOffset), q.tail, "a refused write moved the tail")
	crashed := t.TempDir()
	copyDir(t, dir, crashed)
	require.NoError(t, q.Close())
	requireReopenReads(t, dir, msg)
	requireReopenReads(t, dir) // the read was committed by Close
	requireReopenReads(t, crashed, msg)
}

// TestEnqueueRefusedAtMaxSeq is TestEnqueueRefusedPastMaxOffset for the
// sequence number alone, with offsets to spare: a batch that would reach
// 2^62 stores nothing, one that stops below is taken.
func TestEnqueueRefusedAtMaxSeq(t *testing.T) {
	q, dir := openForged(t, 1<<40, maxOffset-2)
	err := q.EnqueueBatch([][]byte{[]byte("a"), []byte("b"), []byte("c")})
	require.ErrorIs(t, err, ErrExhausted)
	require.Equal(t, uint64(maxOffset-2), q.tailSeq, "a refused batch moved the sequence number")
	require.NoError(t, q.EnqueueBatch([][]byte{[]byte("a"), []byte("b")}))
	require.ErrorIs(t, q.EnqueueString("c"), ErrExhausted)
	require.NoError(t, q.Close())
	requireReopenReads(t, dir, "a", "b")
}

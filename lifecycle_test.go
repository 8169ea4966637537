package bigqueue

import (
	"bytes"
	"errors"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// Tests of the disk lifecycle: how arena files are allocated, reclaimed
// and given back, and where a new consumer starts.

// diskUsed returns the bytes of disk blocks the files of dir hold.
func diskUsed(tb testing.TB, dir string) int64 {
	tb.Helper()
	entries, err := os.ReadDir(dir)
	require.NoError(tb, err)
	var n int64
	for _, e := range entries {
		var st syscall.Stat_t
		require.NoError(tb, syscall.Stat(filepath.Join(dir, e.Name()), &st))
		n += st.Blocks * 512
	}
	return n
}

// arenaFiles returns the names of the arena and spare files in dir.
func lifecycleFiles(tb testing.TB, dir string) []string {
	tb.Helper()
	var names []string
	for _, pattern := range []string{"arena-*.bq", "spare-*.bq"} {
		m, err := filepath.Glob(filepath.Join(dir, pattern))
		require.NoError(tb, err)
		for _, p := range m {
			names = append(names, filepath.Base(p))
		}
	}
	return names
}

// The original's examples/consumer: a consumer created after the default
// consumer read everything starts at the oldest message still stored.
func TestNewConsumerStartsAtOldestStored(t *testing.T) {
	q, dir := openTestQueue(t)
	require.NoError(t, q.EnqueueString("1"))
	require.NoError(t, q.EnqueueString("2"))
	for _, want := range []string{"1", "2"} {
		got, err := q.DequeueString()
		require.NoError(t, err)
		require.Equal(t, want, got)
	}
	require.True(t, q.IsEmpty())
	c, err := q.NewConsumer("late")
	require.NoError(t, err)
	require.False(t, c.IsEmpty())
	require.EqualValues(t, 2, c.Len())
	got, err := c.DequeueString()
	require.NoError(t, err)
	require.Equal(t, "1", got)

	// After a reopen too.
	require.NoError(t, q.Close())
	q = openTestQueueIn(t, dir)
	c2, err := q.NewConsumer("later")
	require.NoError(t, err)
	got, err = c2.DequeueString()
	require.NoError(t, err)
	require.Equal(t, "1", got)
}

// A new queue has no consumer; the default one comes with the first
// queue-level read, so that a program reading only through named
// consumers does not pin every arena.
func TestDefaultConsumerComesWithFirstRead(t *testing.T) {
	q, _ := openTestQueue(t, SetArenaSize(4096))
	require.Empty(t, q.Consumers())
	require.True(t, q.IsEmpty())
	require.Zero(t, q.Len())
	c, err := q.NewConsumer("only")
	require.NoError(t, err)
	msg := make([]byte, 1000)
	for i := 0; i < 40; i++ {
		require.NoError(t, q.Enqueue(msg))
	}
	require.EqualValues(t, 40, q.Len(), "Len before the default consumer exists counts as a new consumer would")
	require.False(t, q.IsEmpty())
	require.Equal(t, []string{"only"}, q.Consumers(), "IsEmpty and Len create nothing")
	for i := 0; i < 40; i++ {
		_, err := c.Dequeue()
		require.NoError(t, err)
	}
	require.NoError(t, q.Flush())
	st := q.Stats()
	require.Greater(t, st.ArenasReclaimed, uint64(5), "the named consumer alone releases the arenas")

	_, err = q.Peek()
	require.ErrorIs(t, err, ErrEmptyQueue, "reclaimed messages are gone for the default consumer too")
	require.Equal(t, []string{"__default__", "only"}, q.Consumers())
}

// Reads never reclaim: an arena goes only after a flush made the positions
// that passed it durable.
func TestReclaimWaitsForFlush(t *testing.T) {
	q, dir := openTestQueue(t, SetArenaSize(4096), SetPeriodicFlushOps(0), SetPeriodicFlushDuration(0))
	msg := make([]byte, 1000)
	n := 4 * (maxSpareArenas + 2) // arenas of four messages: more than the spares kept
	for i := 0; i < n; i++ {
		require.NoError(t, q.Enqueue(msg))
	}
	require.NoError(t, q.Flush())
	before := lifecycleFiles(t, dir)
	for i := 0; i < n; i++ {
		_, err := q.Dequeue()
		require.NoError(t, err)
	}
	require.Equal(t, before, lifecycleFiles(t, dir), "a read removed or renamed an arena file")
	require.Zero(t, q.Stats().ArenasReclaimed)
	require.NoError(t, q.Flush())
	reclaimed := len(before) - 1
	require.EqualValues(t, reclaimed, q.Stats().ArenasReclaimed)
	spares := min(reclaimed, maxSpareArenas)
	require.Less(t, spares, reclaimed, "the test reclaims more arenas than are kept")
	require.Len(t, lifecycleFiles(t, dir), 1+spares, "the tail's arena and the spares")
}

// sparesOfEarlierProcess returns a queue of 4 KiB arenas, flushing off,
// on fs, with more than one spare made of arenas written before it was
// reopened: not known reserved in full, they are reserved again when
// reused.
func sparesOfEarlierProcess(t *testing.T, fs fileSystem) (*Queue, string) {
	t.Helper()
	opts := []Option{SetArenaSize(4096), SetPeriodicFlushOps(0), SetPeriodicFlushDuration(0), withFS(fs)}
	q, dir := openTestQueue(t, opts...)
	msg := make([]byte, 1000)
	for range 40 {
		require.NoError(t, q.Enqueue(msg))
	}
	require.NoError(t, q.Close())
	q = openTestQueueIn(t, dir, opts...)
	for range 40 {
		_, err := q.Dequeue()
		require.NoError(t, err)
	}
	require.NoError(t, q.Flush())
	require.NoError(t, q.Flush()) // settles the spares' renames
	require.Greater(t, q.Stats().SpareArenas, 1)
	return q, dir
}

// A full disk meets the queue's own spares first: when reserving blocks
// fails with ENOSPC, the queue removes its spares and tries again, so the
// write goes through, and a full disk is reported only when the queue
// has no space of its own left to give back.
func TestFullDiskTakesSparesBack(t *testing.T) {
	fs := newFaultFS()
	q, dir := sparesOfEarlierProcess(t, fs)
	msg := make([]byte, 1000)

	// The next reservation (the reopened tail arena's, its blocks not
	// known reserved) finds the disk full once: the spares go first.
	fs.failNth(callAllocate, 1, false, syscall.ENOSPC)
	for before := q.Stats().ArenasOnDisk; q.Stats().ArenasOnDisk == before; {
		require.NoError(t, q.Enqueue(msg))
	}
	require.Zero(t, q.Stats().SpareArenas, "the spares were given back")
	for _, name := range lifecycleFiles(t, dir) {
		require.False(t, strings.HasPrefix(name, "spare-"), "%s is still there", name)
	}
	fs.mu.Lock()
	failed := fs.failed
	fs.mu.Unlock()
	require.Equal(t, 1, failed, "the failure was injected")
	require.NoError(t, q.Flush(), "nothing failed that a caller must hear of")

	// With no spares left, a full disk is reported.
	fs.failNth(callAllocate, 1, true, syscall.ENOSPC)
	var err error
	for before := q.Stats().ArenasOnDisk; err == nil && q.Stats().ArenasOnDisk == before; {
		err = q.Enqueue(msg)
	}
	require.ErrorIs(t, err, syscall.ENOSPC)
	fs.heal()
	require.NoError(t, q.Enqueue(msg), "and writes go on once there is space")
}

// A spare made of an arena this process reserved in full keeps its
// blocks: reusing it reserves nothing, so a full disk cannot fail it, and
// the writer makes no fallocate call per arena.
func TestKnownReservedSpareSkipsReserving(t *testing.T) {
	fs := newFaultFS()
	q, _ := openTestQueue(t, SetArenaSize(4096), SetPeriodicFlushOps(0), SetPeriodicFlushDuration(0), withFS(fs))
	msg := make([]byte, 1000)
	for range 40 {
		require.NoError(t, q.Enqueue(msg))
	}
	for range 40 {
		_, err := q.Dequeue()
		require.NoError(t, err)
	}
	require.NoError(t, q.Flush())
	require.NoError(t, q.Flush()) // settles the spares' renames
	spares := q.Stats().SpareArenas
	require.Greater(t, spares, 2)

	fs.failNth(callAllocate, 1, true, syscall.ENOSPC)
	for q.Stats().SpareArenas > 0 {
		require.NoError(t, q.Enqueue(msg), "a spare known reserved needs no new block")
	}
	require.Zero(t, fs.count(callAllocate), "reserving was tried")
	// Past the spares, a new arena needs blocks: the full disk shows.
	var err error
	for before := q.Stats().ArenasOnDisk; err == nil && q.Stats().ArenasOnDisk == before; {
		err = q.Enqueue(msg)
	}
	require.ErrorIs(t, err, syscall.ENOSPC)
	require.Positive(t, fs.count(callAllocate))
	fs.heal()
	require.NoError(t, q.Enqueue(msg))
}

// A spare made of an arena an earlier process wrote is not known reserved
// (a crash may have left it anything): reusing it reserves its blocks,
// and a full disk then shows as ENOSPC, never as a write into blocks
// that are not there.
func TestUnknownSpareIsReservedAgain(t *testing.T) {
	fs := newFaultFS()
	q, _ := sparesOfEarlierProcess(t, fs)
	msg := make([]byte, 1000)
	// Into the next arena (a spare) with space to spare: the tail's arena
	// and that one are then reserved in full (4 KiB is one step).
	for before := q.Stats().ArenasOnDisk; q.Stats().ArenasOnDisk == before; {
		require.NoError(t, q.Enqueue(msg))
	}
	q.mu.Lock()
	spares := slices.Clone(q.am.spares)
	q.mu.Unlock()
	require.NotEmpty(t, spares)
	for _, sp := range spares {
		require.Zero(t, sp.reserved, "spare %s, an earlier process's arena, is taken for reserved", sp.name)
	}
	fs.failNth(callAllocate, 1, true, syscall.ENOSPC)
	var err error
	for before := q.Stats().ArenasOnDisk; err == nil && q.Stats().ArenasOnDisk == before; {
		err = q.Enqueue(msg)
	}
	require.ErrorIs(t, err, syscall.ENOSPC, "a spare not known reserved was used without reserving it")
	fs.heal()
	require.NoError(t, q.Enqueue(msg))
}

// Disk follows the data: blocks are reserved in steps, spares are capped in
// bytes and given back at Close.
func TestDiskFollowsData(t *testing.T) {
	q, dir := openTestQueue(t)
	require.NoError(t, q.EnqueueString("one small message"))
	require.NoError(t, q.Flush())
	used := diskUsed(t, dir)
	t.Logf("one message, default options: %d bytes on disk", used)
	require.LessOrEqual(t, used, int64(256<<10))
	require.NoError(t, q.Close())

	// Spares are given back at Close.
	q2, dir2 := openTestQueue(t, SetArenaSize(4096))
	msg := make([]byte, 1000)
	for i := 0; i < 4*(maxSpareArenas+1); i++ {
		require.NoError(t, q2.Enqueue(msg))
	}
	for i := 0; i < 4*(maxSpareArenas+1); i++ {
		_, err := q2.Dequeue()
		require.NoError(t, err)
	}
	require.NoError(t, q2.Flush())
	require.Equal(t, maxSpareArenas, q2.Stats().SpareArenas, "1000 arenas reclaimed, the most kept")
	require.NoError(t, q2.Flush()) // the directory changes of the reclaim
	require.NoError(t, q2.Flush()) // idle: nothing to write
	require.Zero(t, q2.Stats().SpareArenas, "an idle queue gives its spares back")
	require.NoError(t, q2.Enqueue(msg), "and takes writes after")
	_, err := q2.Dequeue()
	require.NoError(t, err)
	require.NoError(t, q2.Close())
	require.Len(t, lifecycleFiles(t, dir2), 1, fmt.Sprint("only the tail's arena stays: ", lifecycleFiles(t, dir2)))
}

// After enqueuing and draining 1M × 128 B with default options and
// closing, what stays is the index and the tail's arena, which holds the
// newest records (about 9.3 MiB of them): at most 20 MiB.
func TestDiskAfterDrain(t *testing.T) {
	n := 1_000_000
	if testRaceEnabled || testing.Short() {
		n = 100_000
	}
	q, dir := openTestQueue(t)
	msg := make([]byte, 128)
	for i := 0; i < n; i++ {
		require.NoError(t, q.Enqueue(msg))
	}
	buf := make([]byte, 0, 128)
	for i := 0; i < n; i++ {
		var err error
		buf, err = q.DequeueAppend(buf[:0])
		require.NoError(t, err)
	}
	peak := diskUsed(t, dir)
	require.NoError(t, q.Close())
	used := diskUsed(t, dir)
	t.Logf("drained %d x 128 B, default options: %.1f MiB on disk before Close, %.1f MiB after", n, float64(peak)/(1<<20), float64(used)/(1<<20))
	require.LessOrEqual(t, used, int64(20<<20))
	require.Len(t, lifecycleFiles(t, dir), 1, "only the tail's arena stays")
}

// abandonQueue leaves q as a kill -9 would: nothing more is synced or
// unmapped by Close, and the directory lock is released.
func abandonQueue(t *testing.T, q *Queue) {
	t.Helper()
	q.mu.Lock()
	q.closed = true
	close(q.quit)
	q.mu.Unlock()
	<-q.flusherDone
	close(q.closeDone)
	require.NoError(t, q.dir.close())
}

// failedBatch opens a queue in dir on fs, enqueues "x…", then a batch that
// fails with ENOSPC after its first record was written into the tail's
// arena.
func failedBatch(t *testing.T, dir string, fs *faultFS) *Queue {
	t.Helper()
	q, err := NewQueue(dir, SetArenaSize(64<<10), withFS(fs), SetPeriodicFlushOps(0), SetPeriodicFlushDuration(0))
	require.NoError(t, err)
	require.NoError(t, q.Enqueue(bytes.Repeat([]byte("x"), 100)))
	fs.failNth(callAllocate, 1, false, syscall.ENOSPC)
	err = q.EnqueueBatch([][]byte{bytes.Repeat([]byte("A"), 100), bytes.Repeat([]byte("B"), 5000)})
	require.ErrorIs(t, err, syscall.ENOSPC)
	fs.heal()
	return q
}

// A record of a failed append, complete and valid in the tail's arena,
// must not come back: here a clean Close, another Enqueue and a power loss
// that keeps the new index page but the old arena page.
func TestFailedAppendLeavesNoRecord(t *testing.T) {
	dir := t.TempDir()
	q := failedBatch(t, dir, newFaultFS())
	require.NoError(t, q.Close())
	oldArena, err := os.ReadFile(filepath.Join(dir, "arena-0.bq"))
	require.NoError(t, err)
	q2, err := NewQueue(dir)
	require.NoError(t, err)
	require.NoError(t, q2.Enqueue(bytes.Repeat([]byte("C"), 100)))
	newIndex, err := os.ReadFile(filepath.Join(dir, indexFileName))
	require.NoError(t, err)
	abandonQueue(t, q2)

	img := t.TempDir()
	require.NoError(t, os.WriteFile(filepath.Join(img, indexFileName), newIndex, 0o644))
	require.NoError(t, os.WriteFile(filepath.Join(img, "arena-0.bq"), oldArena, 0o644))
	q3 := openTestQueueIn(t, img)
	var got []string
	for {
		m, err := q3.Dequeue()
		if errors.Is(err, ErrEmptyQueue) {
			break
		}
		if errors.Is(err, ErrCorrupt) {
			continue // the lost "C" page is reported, which is right
		}
		require.NoError(t, err)
		got = append(got, string(m[:1]))
	}
	require.Equal(t, []string{"x"}, got, "a message whose enqueue failed was delivered")
}

// Recovery clears junk past the tail without writing into pages that were
// never reserved: on a full disk that would be a SIGBUS.
func TestZeroPastKeepsToReservedPages(t *testing.T) {
	dir := t.TempDir()
	q := failedBatch(t, dir, newFaultFS())
	arena := filepath.Join(dir, "arena-0.bq")
	f, err := os.Open(arena)
	require.NoError(t, err)
	hole, err := f.Seek(0, 4) // SEEK_HOLE: the end of the allocated part
	require.NoError(t, err)
	require.NoError(t, f.Close())
	// Put junk just below the first hole, as a kill in the middle of an
	// append leaves it.
	q.mu.Lock()
	tailPos := arenaHeaderSize + int(q.tail%q.am.dataSize)
	require.Less(t, tailPos, int(hole)-100)
	a, err := q.am.get(0)
	require.NoError(t, err)
	for i := int(hole) - 100; i < int(hole); i++ {
		a.data[i] = 0xa5
	}
	q.mu.Unlock()
	abandonQueue(t, q)
	var st syscall.Stat_t
	require.NoError(t, syscall.Stat(arena, &st))
	before := st.Blocks * 512
	q2 := openTestQueueIn(t, dir)
	raw, err := os.ReadFile(arena)
	require.NoError(t, err)
	require.True(t, allZero(raw[tailPos:]), "junk past the tail is still there")
	require.NoError(t, syscall.Stat(arena, &st))
	require.LessOrEqual(t, st.Blocks*512, before, "recovery wrote into a hole")
	got, err := q2.Dequeue()
	require.NoError(t, err)
	require.Equal(t, byte('x'), got[0])
	_, err = q2.Dequeue()
	require.ErrorIs(t, err, ErrEmptyQueue)
}

// With arenas of readyMinArena and more, the next arena is prepared in the
// background while the writer is in the second half of the current one,
// and becomes the next arena. A prepared arena counts as a spare; an idle
// flush keeps it (one block), Close and a full disk remove it.
func TestNextArenaPrepared(t *testing.T) {
	q, dir := openTestQueue(t, SetArenaSize(readyMinArena), SetPeriodicFlushOps(0), SetPeriodicFlushDuration(0))
	msg := make([]byte, 4096)
	var msgs [][]byte
	enqueue := func() {
		m := append([]byte(nil), msg...)
		copy(m, fmt.Sprint(len(msgs)))
		require.NoError(t, q.Enqueue(m))
		msgs = append(msgs, m)
	}
	spareFiles := func() []string {
		var out []string
		for _, name := range lifecycleFiles(t, dir) {
			if strings.HasPrefix(name, "spare-") {
				out = append(out, name)
			}
		}
		return out
	}
	record, data := recordHeaderSize+len(msg), readyMinArena-arenaHeaderSize
	// past moves the writer past the middle of arena n.
	past := func(n int) {
		for len(msgs)*record < n*data+data/2+record {
			enqueue()
		}
	}
	past(0)
	require.Eventually(t, func() bool { return q.Stats().SpareArenas == 1 }, 10*time.Second, time.Millisecond,
		"the writer is past the middle of the arena: the next one is prepared")
	prepared := spareFiles()
	require.Len(t, prepared, 1)

	for q.Stats().ArenasOnDisk == 1 {
		enqueue()
	}
	require.Empty(t, spareFiles(), "the prepared file became arena 1")
	require.Zero(t, q.Stats().SpareArenas)
	require.Equal(t, []string{"arena-0.bq", "arena-1.bq"}, lifecycleFiles(t, dir))

	// Past the middle of arena 1: prepared again; an idle flush keeps it,
	// so that a slow producer does not have it made again each time.
	past(1)
	require.Eventually(t, func() bool { return q.Stats().SpareArenas == 1 }, 10*time.Second, time.Millisecond)
	prepared = spareFiles()
	require.NoError(t, q.Flush()) // the enqueues
	require.NoError(t, q.Flush()) // idle
	require.Equal(t, 1, q.Stats().SpareArenas)
	require.Equal(t, prepared, spareFiles(), "the same file")
	enqueue()
	require.Equal(t, prepared, spareFiles(), "not prepared again")

	require.NoError(t, q.Close())
	require.Empty(t, spareFiles(), "Close removes the prepared arena")

	q = openTestQueueIn(t, dir, SetArenaSize(readyMinArena))
	requireReads(t, q.Dequeue, msgs)
	_, err := q.Dequeue()
	require.ErrorIs(t, err, ErrEmptyQueue)
}

// A full disk removes a prepared next arena too, even when it is the only
// spare, before Enqueue reports ENOSPC.
func TestFullDiskTakesPreparedArenaBack(t *testing.T) {
	fs := newFaultFS()
	q, dir := openTestQueue(t, SetArenaSize(readyMinArena), SetPeriodicFlushOps(0), SetPeriodicFlushDuration(0), withFS(fs))
	msg := make([]byte, 4096)
	record, data := recordHeaderSize+len(msg), readyMinArena-arenaHeaderSize
	for n := 0; n*record < data/2+record; n++ {
		require.NoError(t, q.Enqueue(msg))
	}
	require.Eventually(t, func() bool { return q.Stats().SpareArenas == 1 }, 10*time.Second, time.Millisecond)
	fs.failNth(callAllocate, 1, true, syscall.ENOSPC)
	var err error
	for i := 0; err == nil; i++ {
		require.Less(t, i, data/record, "no ENOSPC within an arena")
		err = q.Enqueue(msg)
	}
	require.ErrorIs(t, err, syscall.ENOSPC)
	require.Zero(t, q.Stats().SpareArenas)
	for _, name := range lifecycleFiles(t, dir) {
		require.False(t, strings.HasPrefix(name, "spare-"), "%s is still there", name)
	}
	fs.heal()
	require.NoError(t, q.Enqueue(msg), "writes go on once there is space")
}

// TestFlushSkipsWhatItReclaims: a flush neither msyncs nor fsyncs the
// arenas below every consumer, which it reclaims; from its start no Seek
// and no new consumer reaches them. It syncs every other arena written,
// mapped or evicted.
func TestFlushSkipsWhatItReclaims(t *testing.T) {
	fs := newFaultFS()
	q, dir := openTestQueue(t, SetArenaSize(4096), SetMaxInMemArenas(3),
		SetPeriodicFlushOps(0), SetPeriodicFlushDuration(0), withFS(fs))
	msg := make([]byte, 1000)
	for i := 0; i < 4*8; i++ { // eight arenas of four messages
		require.NoError(t, q.Enqueue(msg))
	}
	for i := 0; i < 4*5+1; i++ { // arenas 0 to 4, and one of arena 5
		_, err := q.Dequeue()
		require.NoError(t, err)
	}
	q.mu.Lock()
	unsynced := slices.Sorted(maps.Keys(q.am.unsynced))
	q.mu.Unlock()
	// Written, evicted, and the reads mapped arenas 0 to 5 again, which
	// evicted the newest ones too.
	require.Equal(t, []uint64{0, 1, 2, 3, 4, 5, 6, 7}, unsynced, "the arenas evicted wait for the flush")

	// What the flush does first: the arenas it reclaims are out of reach.
	q.mu.Lock()
	below := q.passOldest(q.reclaimLimit())
	q.mu.Unlock()
	require.EqualValues(t, 5, below)
	q.mu.Lock()
	oldest := publicSeq(q.oldestSeq)
	q.mu.Unlock()
	require.EqualValues(t, 4*5+1, oldest, "the first message of arena 5")
	require.ErrorIs(t, q.Seek(oldest-1), ErrOutOfRange)
	late, err := q.NewConsumer("late")
	require.NoError(t, err)
	require.Equal(t, oldest, late.Position())
	require.NoError(t, q.DeleteConsumer("late"))

	before := fs.count(callSyncFile)
	require.NoError(t, q.Flush())
	require.Equal(t, 3, fs.count(callSyncFile)-before, "the flush syncs arenas 5 to 7, not the ones it reclaims")
	require.EqualValues(t, 5, q.Stats().ArenasReclaimed)
	for id := uint64(0); id < 5; id++ {
		require.NoFileExists(t, arenaPath(dir, id))
	}
	q.mu.Lock()
	require.Empty(t, q.am.unsynced)
	q.mu.Unlock()
	requireInvariants(t, q)

	// The next arenas written and evicted unread are synced.
	for i := 0; i < 4*4; i++ {
		require.NoError(t, q.Enqueue(msg))
	}
	q.mu.Lock()
	unsynced = slices.Sorted(maps.Keys(q.am.unsynced))
	q.mu.Unlock()
	require.NotEmpty(t, unsynced)
	before = fs.count(callSyncFile)
	require.NoError(t, q.Flush())
	require.Equal(t, len(unsynced), fs.count(callSyncFile)-before)
	requireInvariants(t, q)
}

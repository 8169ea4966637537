package bigqueue

import (
	"fmt"
	"os"
	"path/filepath"
	"syscall"
	"testing"

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
	for i := 0; i < 100; i++ {
		require.NoError(t, q.Enqueue(msg))
	}
	require.NoError(t, q.Flush())
	before := lifecycleFiles(t, dir)
	for i := 0; i < 100; i++ {
		_, err := q.Dequeue()
		require.NoError(t, err)
	}
	require.Equal(t, before, lifecycleFiles(t, dir), "a read removed or renamed an arena file")
	require.Zero(t, q.Stats().ArenasReclaimed)
	require.NoError(t, q.Flush())
	require.Len(t, lifecycleFiles(t, dir), 1+2, "the tail's arena and two spares")
	require.EqualValues(t, len(before)-1, q.Stats().ArenasReclaimed)
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
	q2, dir2 := openTestQueue(t, SetArenaSize(64<<10))
	msg := make([]byte, 1000)
	for i := 0; i < 1000; i++ {
		require.NoError(t, q2.Enqueue(msg))
	}
	for i := 0; i < 1000; i++ {
		_, err := q2.Dequeue()
		require.NoError(t, err)
	}
	require.NoError(t, q2.Flush())
	require.Equal(t, 2, q2.Stats().SpareArenas)
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

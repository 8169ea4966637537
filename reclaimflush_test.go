package bigqueue

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// Tests of Queue.reclaimFlush, the background flusher's reclaim between
// flushes. The power-loss simulator runs it too (plReclaim, in the
// explicit and the long workloads, and the planted reclaim-early).

// logFS is osFS that logs its sync, rename and remove calls in order:
// "msync index", "fsync arena-3.bq", "syncdir", "rename arena-0.bq
// spare-1.bq", "remove arena-0.bq".
type logFS struct {
	osFS
	mu  sync.Mutex
	log []string
}

func (l *logFS) add(s string) {
	l.mu.Lock()
	l.log = append(l.log, s)
	l.mu.Unlock()
}

// take returns the calls logged since the last take.
func (l *logFS) take() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := l.log
	l.log = nil
	return out
}

func (l *logFS) syncFile(f *os.File) error {
	l.add("fsync " + filepath.Base(f.Name()))
	return l.osFS.syncFile(f)
}

func (l *logFS) syncMapping(d *queueDir, name string, b []byte) error {
	l.add("msync " + name)
	return l.osFS.syncMapping(d, name, b)
}

func (l *logFS) syncDir(d *queueDir) error {
	l.add("syncdir")
	return l.osFS.syncDir(d)
}

func (l *logFS) rename(d *queueDir, from, to string) error {
	l.add("rename " + from + " " + to)
	return l.osFS.rename(d, from, to)
}

func (l *logFS) remove(d *queueDir, name string) error {
	l.add("remove " + name)
	return l.osFS.remove(d, name)
}

// eightArenas opens a queue of 4 KiB arenas with flushing off, fills
// eight arenas of four messages, flushes, and reads arenas 0 to 4 and the
// first message of arena 5.
func eightArenas(t *testing.T, fs fileSystem) (*Queue, string) {
	t.Helper()
	q, dir := openTestQueue(t, SetArenaSize(4096), SetMaxInMemArenas(3),
		SetPeriodicFlushOps(0), SetPeriodicFlushDuration(0), withFS(fs))
	for i := range 4 * 8 {
		require.NoError(t, q.Enqueue(message(9, uint64(i), 1000)))
	}
	require.NoError(t, q.Flush())
	for i := range 4*5 + 1 {
		msg, err := q.Dequeue()
		require.NoError(t, err)
		require.Equal(t, message(9, uint64(i), 1000), msg)
	}
	return q, dir
}

// A reclaim makes the consumer positions durable, then the watermark,
// then renames or removes the files of the arenas every consumer has
// read, and fsyncs the directory. It syncs no arena, moves no checkpoint
// and leaves what was not read where it was.
func TestReclaimFlush(t *testing.T) {
	fs := &logFS{}
	q, dir := eightArenas(t, fs)
	for i := range 4 { // arena 8, created since the last directory fsync
		require.NoError(t, q.Enqueue(message(9, uint64(4*8+i), 1000)))
	}
	fs.take()
	q.mu.Lock()
	ckpt := q.ckpt
	q.mu.Unlock()
	flushes := q.Stats().Flushes

	require.NoError(t, q.reclaimFlush())
	log := fs.take()
	for _, c := range log {
		require.False(t, strings.HasPrefix(c, "fsync ") || strings.HasPrefix(c, "msync arena-"), "it synced an arena: %q", log)
	}
	require.Len(t, log, 1+2+5+1)
	require.Equal(t, []string{"syncdir", "msync " + indexFileName, "msync " + indexFileName}, log[:3],
		"the arenas' creations, the positions, then the watermark, are durable before any file goes: %q", log)
	for i, c := range log[3 : len(log)-1] {
		require.True(t, strings.HasPrefix(c, "rename arena-") || strings.HasPrefix(c, "remove arena-"), "call %d: %q", i+3, log)
	}
	require.Equal(t, "syncdir", log[len(log)-1], "the spares are settled: %q", log)

	require.EqualValues(t, 5, q.Stats().ArenasReclaimed)
	for id := range uint64(5) {
		require.NoFileExists(t, arenaPath(dir, id))
	}
	for id := uint64(5); id <= 8; id++ {
		require.FileExists(t, arenaPath(dir, id))
	}
	q.mu.Lock()
	require.Equal(t, ckpt, q.ckpt, "the checkpoint moved")
	require.EqualValues(t, 5*q.am.dataSize, q.idx.head()/q.am.dataSize*q.am.dataSize, "the stored watermark is in arena 5")
	require.False(t, q.passed)
	q.mu.Unlock()
	require.Equal(t, flushes, q.Stats().Flushes, "a reclaim is no flush")
	requireInvariants(t, q)

	// Nothing left to reclaim: no call at all.
	require.NoError(t, q.reclaimFlush())
	require.Empty(t, fs.take())

	// What was not read is all there, and the spares take new messages.
	for i := 4*5 + 1; i < 4*9; i++ {
		msg, err := q.Dequeue()
		require.NoError(t, err)
		require.Equal(t, message(9, uint64(i), 1000), msg)
	}
	for i := range 8 {
		require.NoError(t, q.Enqueue(message(10, uint64(i), 1000)))
	}
	for i := range 8 {
		msg, err := q.Dequeue()
		require.NoError(t, err)
		require.Equal(t, message(10, uint64(i), 1000), msg)
	}
	requireInvariants(t, q)
}

// A failed fsync of the directory, before or after, or a failed msync of
// the positions or of the watermark fails the queue as a flush's would;
// before the watermark is durable no file goes.
func TestReclaimFlushFailures(t *testing.T) {
	for _, tc := range []struct {
		name   string
		kind   fsCall
		n      int
		remove bool // the files are renamed or removed before the failure
	}{
		{"directory first", callSyncDir, 1, false},
		{"positions", callMsync, 1, false},
		{"watermark", callMsync, 2, false},
		{"directory last", callSyncDir, 2, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			fs := newFaultFS()
			q, dir := eightArenas(t, fs)
			for range 4 { // a new arena: the directory changed
				require.NoError(t, q.Enqueue(make([]byte, 1000)))
			}
			fs.failNth(tc.kind, tc.n, false, syscall.EIO)
			err := q.reclaimFlush()
			require.ErrorIs(t, err, syscall.EIO)
			require.ErrorIs(t, q.Enqueue([]byte("x")), syscall.EIO, "the queue failed closed")
			for id := range uint64(5) {
				if tc.remove {
					require.NoFileExists(t, arenaPath(dir, id))
				} else {
					require.FileExists(t, arenaPath(dir, id))
				}
			}
			require.ErrorIs(t, q.reclaimFlush(), syscall.EIO, "the error is sticky")
			require.ErrorIs(t, q.Close(), syscall.EIO)
		})
	}
}

// Closed, a queue has nothing to reclaim: the flusher stops on ErrClosed.
func TestReclaimFlushClosed(t *testing.T) {
	q, _ := openTestQueue(t)
	require.NoError(t, q.Close())
	require.ErrorIs(t, q.reclaimFlush(), ErrClosed)
}

// With background flushing on and arenas evicted, the writer has the
// flusher reclaim what every consumer has read, a batch at a time, with
// no flush in between: disk space comes back between periodic flushes.
func TestReclaimInBackground(t *testing.T) {
	q, dir := openTestQueue(t, SetArenaSize(4096), SetMaxInMemArenas(3),
		SetPeriodicFlushOps(0), SetPeriodicFlushDuration(time.Hour))
	q.mu.Lock()
	batch := q.am.reclaimBatch()
	q.mu.Unlock()
	require.Greater(t, batch, uint64(1))
	arenas := 3 * int(batch)
	for i := range 4 * arenas { // four messages an arena, read as they come
		require.NoError(t, q.Enqueue(message(11, uint64(i), 1000)))
		msg, err := q.Dequeue()
		require.NoError(t, err)
		require.Equal(t, message(11, uint64(i), 1000), msg)
		// Every four arenas, wait for the flusher to be at most a batch
		// and four arenas behind: a flusher starved by a loaded machine
		// would otherwise let maxUnsynced/2 evicted arenas pile up, and
		// the writer then rightly asks for a full flush.
		if written := i/4 + 1; i%16 == 15 && written > int(batch)+4 {
			want := uint64(written) - batch - 4
			require.Eventually(t, func() bool {
				return q.Stats().ArenasReclaimed >= want
			}, 10*time.Second, time.Millisecond, "the flusher did not reclaim %d arenas of %d", want, written)
		}
	}
	require.Eventually(t, func() bool {
		return q.Stats().ArenasReclaimed >= batch
	}, 10*time.Second, time.Millisecond, "the flusher reclaimed nothing")
	require.Zero(t, q.Stats().Flushes, "a full flush ran")
	q.mu.Lock()
	first := q.am.first
	q.mu.Unlock()
	require.Positive(t, first)
	names, err := os.ReadDir(dir)
	require.NoError(t, err)
	var arenaFiles []string
	for _, e := range names {
		if strings.HasPrefix(e.Name(), "arena-") {
			arenaFiles = append(arenaFiles, e.Name())
		}
	}
	require.False(t, slices.Contains(arenaFiles, arenaName(0)), "arena 0 is still there: %q", arenaFiles)
	requireInvariants(t, q)
}

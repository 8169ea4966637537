package bigqueue

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/stretchr/testify/require"
)

// Tests of a flush that skips the arenas it reclaims (Queue.passOldest):
// power-loss images taken at each msync of the index during such a flush,
// with the skipped arenas' unsynced pages made stale, must recover to a
// prefix that keeps every message an earlier flush covered. They were
// written from a hostile review of the first version, which relied on
// recovery deleting what every consumer had read, and lost to a torn
// index, a two-page index, a consumer deleted during the flush and an
// arena boundary.

// hookFS is osFS with hooks: beforeArenaSync runs once, before the first
// msync or fsync of an arena file; afterIndexSync after each msync of the
// index.
type hookFS struct {
	osFS
	beforeArenaSync func()
	afterIndexSync  func()
}

func (h *hookFS) arenaSync() {
	if f := h.beforeArenaSync; f != nil {
		h.beforeArenaSync = nil
		f()
	}
}

func (h *hookFS) syncFile(f *os.File) error {
	if strings.Contains(filepath.Base(f.Name()), "arena-") {
		h.arenaSync()
	}
	return h.osFS.syncFile(f)
}

func (h *hookFS) syncMapping(d *queueDir, name string, b []byte) error {
	if strings.HasPrefix(name, "arena-") {
		h.arenaSync()
	}
	err := h.osFS.syncMapping(d, name, b)
	if name == indexFileName && h.afterIndexSync != nil {
		h.afterIndexSync()
	}
	return err
}

// staleArenas inverts the record bytes of the arenas below arena upto
// still in the image img, from the logical offset from on: pages a power
// loss left stale, their headers intact.
func staleArenas(t *testing.T, img string, from, upto uint64) {
	t.Helper()
	for id := from / smallDataSize; id < upto; id++ {
		if _, err := os.Stat(arenaPath(img, id)); err == nil {
			rewriteRecords(t, img, max(from, id*smallDataSize), (id+1)*smallDataSize, func(b byte) byte { return ^b })
		}
	}
}

// skipMessages returns n messages of 1000 bytes with their record header:
// 64 records fill an arena of smallOptions but its header's share.
func skipMessages(n int) [][]byte {
	msgs := make([][]byte, n)
	for i := range msgs {
		msgs[i] = message(7, uint64(i), 1000-recordHeaderSize)
	}
	return msgs
}

// drainChecked reads next until ErrEmptyQueue and returns the indexes in
// msgs of what it got; any other error fails the test.
func drainChecked(t *testing.T, what string, next func() ([]byte, error), msgs [][]byte) []int {
	t.Helper()
	byContent := messageIndex(msgs)
	var got []int
	for range len(msgs) + 1 {
		m, err := next()
		if errors.Is(err, ErrEmptyQueue) {
			return got
		}
		require.NoError(t, err, "%s: after %v", what, got)
		i, ok := byContent[string(m)]
		require.True(t, ok, "%s: a message never enqueued", what)
		got = append(got, i)
	}
	t.Fatalf("%s: no end", what)
	return nil
}

// requireRun fails unless got is a gapless run of message indexes that
// starts at one of starts and reaches at least keep.
func requireRun(t *testing.T, what string, got []int, starts []int, keep int) {
	t.Helper()
	if len(got) == 0 {
		return // the position stands at the tail, checked by the caller
	}
	require.Contains(t, starts, got[0], "%s: first message read", what)
	for i := 1; i < len(got); i++ {
		require.Equal(t, got[i-1]+1, got[i], "%s: a hole after message %d", what, got[i-1])
	}
	require.GreaterOrEqual(t, got[len(got)-1]+1, keep, "%s: lost messages a flush covered", what)
}

// TestFlushSkipPowerLoss: flush N covers messages 0 to 9 with every
// consumer at message 3; then messages up to arena 3 are enqueued and
// every consumer reads into arena 2, and flush N+1 skips arenas 0 and 1.
// A power loss at any msync of the index during flush N+1, with the
// skipped arenas' records past flush N's checkpoint stale, and with the
// consumer slots as flush N left them (a torn sector, or the second page
// of a two-page index) or as written, must leave a prefix holding
// messages 0 to 9 past each consumer's durable position: no ErrCorrupt,
// no hole, for the consumers, a new one and SeekOldest alike.
func TestFlushSkipPowerLoss(t *testing.T) {
	for _, c := range []struct {
		name      string
		consumers int // named ones, besides the default consumer
		oldFrom   int // byte offset of the index from which the image keeps flush N's content; 0 = none
		// midHeader: the header as the kernel may write it back between
		// the flush's store of the watermark and its store of the
		// checkpoint: the watermark new, the checkpoint as before.
		midHeader bool
	}{
		{"as written", 1, 0, false},
		{"slot sector as flush N left it", 1, 512, false},
		{"second index page as flush N left it", 15, 4096, false},
		{"header between the watermark and the checkpoint", 1, 0, true},
	} {
		t.Run(c.name, func(t *testing.T) {
			hfs := &hookFS{}
			q, dir := openTestQueue(t, append(smallOptions(), withFS(hfs))...)
			readers := []func() ([]byte, error){q.Dequeue}
			var names []string
			for i := range c.consumers {
				cons, err := q.NewConsumer(fmt.Sprintf("c%02d", i))
				require.NoError(t, err)
				readers = append(readers, cons.Dequeue)
				names = append(names, cons.Name())
			}
			readAll := func(n int) {
				for _, r := range readers {
					for range n {
						_, err := r()
						require.NoError(t, err)
					}
				}
			}
			msgs := skipMessages(3 * smallDataSize / 1000)
			const flushedN, posN = 10, 3
			enqueueAll(t, q, msgs[:flushedN])
			readAll(posN)
			require.NoError(t, q.Flush()) // flush N
			idxN, err := os.ReadFile(filepath.Join(dir, indexFileName))
			require.NoError(t, err)
			if c.oldFrom > 0 {
				require.Greater(t, len(idxN), c.oldFrom, "the index reaches the part kept old")
			}

			enqueueAll(t, q, msgs[flushedN:])
			read := 2*smallDataSize/1000 + 2 // into arena 2
			readAll(read - posN)
			var images []string
			hfs.afterIndexSync = func() { images = append(images, copyQueueDir(t, dir)) }
			require.NoError(t, q.Flush()) // flush N+1
			hfs.afterIndexSync = nil
			require.GreaterOrEqual(t, len(images), 2, "the positions' msync, then the checkpoint's")
			require.NoError(t, q.Close())

			spans := layoutOf(msgs)
			// The index as each msync found it durable: flush N's, then
			// what each msync of flush N+1 wrote.
			durable := [][]byte{idxN}
			for _, img := range images {
				b, err := os.ReadFile(filepath.Join(img, indexFileName))
				require.NoError(t, err)
				durable = append(durable, b)
			}
			for i, img := range images {
				what := fmt.Sprintf("image after index msync %d", i+1)
				if c.oldFrom > 0 {
					// That msync was torn: from oldFrom on, the index
					// keeps what the msync before it made durable.
					f, err := os.OpenFile(filepath.Join(img, indexFileName), os.O_RDWR, 0)
					require.NoError(t, err)
					_, err = f.WriteAt(durable[i][c.oldFrom:], int64(c.oldFrom))
					require.NoError(t, err)
					require.NoError(t, f.Close())
				}
				if c.midHeader {
					f, err := os.OpenFile(filepath.Join(img, indexFileName), os.O_RDWR, 0)
					require.NoError(t, err)
					_, err = f.WriteAt(durable[i][idxCkptOff:idxCkptOff+2*ckptSize], idxCkptOff)
					require.NoError(t, err)
					require.NoError(t, f.Close())
				}
				// What flush N+1 did not sync: arenas 0 and 1 past flush
				// N's checkpoint, where they are still there.
				staleArenas(t, img, spans[flushedN].start, 2)
				q := openTestQueueIn(t, img, smallOptions()...)
				requireInvariants(t, q)
				rd := []func() ([]byte, error){q.Dequeue}
				for _, name := range names {
					cons, err := q.NewConsumer(name)
					require.NoError(t, err)
					rd = append(rd, cons.Dequeue)
				}
				for j, r := range rd {
					got := drainChecked(t, fmt.Sprintf("%s, reader %d", what, j), r, msgs)
					requireRun(t, fmt.Sprintf("%s, reader %d", what, j), got, []int{posN, read}, flushedN)
				}
				late, err := q.NewConsumer("late")
				require.NoError(t, err)
				drainChecked(t, what+", a new consumer", late.Dequeue, msgs)
				require.NoError(t, q.SeekOldest())
				drainChecked(t, what+", after SeekOldest", q.Dequeue, msgs)
				require.GreaterOrEqual(t, q.Stats().NextSeq, uint64(flushedN+1), "%s: the tail lost flushed messages", what)
				require.NoError(t, q.Close())
			}
		})
	}
}

// TestFlushSkipArenaBoundary: every consumer stands exactly at the start
// of arena 2, so the flush skips arenas 0 and 1 (the head's arena is 2).
// The checkpoint's image must not name them: a new consumer and
// SeekOldest start past them.
func TestFlushSkipArenaBoundary(t *testing.T) {
	hfs := &hookFS{}
	q, dir := openTestQueue(t, append(smallOptions(), withFS(hfs))...)
	reader, err := q.NewConsumer("reader")
	require.NoError(t, err)
	// Records of smallDataSize/64 bytes: 64 per arena, none crossing.
	msgs := make([][]byte, 3*64)
	for i := range msgs {
		msgs[i] = message(7, uint64(i), int(smallDataSize/64)-recordHeaderSize)
	}
	enqueueAll(t, q, msgs)
	for range 2 * 64 {
		_, err := q.Dequeue()
		require.NoError(t, err)
		_, err = reader.Dequeue()
		require.NoError(t, err)
	}
	var images []string
	hfs.afterIndexSync = func() { images = append(images, copyQueueDir(t, dir)) }
	require.NoError(t, q.Flush())
	hfs.afterIndexSync = nil
	require.NoError(t, q.Close())
	require.GreaterOrEqual(t, len(images), 2)
	for i, img := range images {
		what := fmt.Sprintf("image after index msync %d", i+1)
		staleArenas(t, img, 0, 2) // nothing was flushed before
		q := openTestQueueIn(t, img, smallOptions()...)
		late, err := q.NewConsumer("late")
		require.NoError(t, err)
		drainChecked(t, what+", a new consumer", late.Dequeue, msgs)
		require.NoError(t, q.SeekOldest())
		drainChecked(t, what+", after SeekOldest", q.Dequeue, msgs)
		require.NoError(t, q.Close())
	}
}

// TestDeleteLastConsumerDuringFlush: the last consumer is deleted while
// a flush that skips what it had read syncs. The flush reclaims what
// every consumer had read when it started (the package doc, Disk space),
// and no image of the index taken during it names those arenas' stale
// pages: the default consumer made at the oldest message reads no
// ErrCorrupt.
func TestDeleteLastConsumerDuringFlush(t *testing.T) {
	hfs := &hookFS{}
	q, dir := openTestQueue(t, append(smallOptions(), withFS(hfs))...)
	msgs := skipMessages(3 * smallDataSize / 1000)
	enqueueAll(t, q, msgs) // no flush: arenas 0 and 1 are never synced
	read := 2*smallDataSize/1000 + 2
	for range read {
		_, err := q.Dequeue()
		require.NoError(t, err)
	}
	var images []string
	hfs.beforeArenaSync = func() {
		require.NoError(t, q.DeleteConsumer(defaultConsumerKey))
		hfs.afterIndexSync = func() { images = append(images, copyQueueDir(t, dir)) }
	}
	require.NoError(t, q.Flush())
	hfs.afterIndexSync = nil
	require.NotEmpty(t, images)
	require.EqualValues(t, 2, q.Stats().ArenasReclaimed, "what the consumer had read when the flush began")
	first, err := q.Dequeue()
	require.NoError(t, err)
	want := layoutOf(msgs)
	i := 0
	for want[i].start < 2*smallDataSize {
		i++
	}
	require.Equal(t, i, messageIndex(msgs)[string(first)], "the default consumer starts at the first message of arena 2")
	require.NoError(t, q.Close())

	for i, img := range images {
		what := fmt.Sprintf("image after index msync %d", i+1)
		staleArenas(t, img, 0, 2)
		q := openTestQueueIn(t, img, smallOptions()...)
		drainChecked(t, what+", the default consumer", q.Dequeue, msgs)
		require.NoError(t, q.Close())
	}
}

// TestMissingArenaReportedAfterCrash: an arena holding flushed messages a
// consumer had not read goes missing after a process crash, while the
// arenas below it, which every consumer read, are still there: the loss
// is reported, never skipped silently.
func TestMissingArenaReportedAfterCrash(t *testing.T) {
	q, dir := openTestQueue(t, smallOptions()...)
	msgs := skipMessages(2*smallDataSize/1000 + 20) // into arena 2
	enqueueAll(t, q, msgs)
	require.NoError(t, q.Flush()) // covers every message; nothing to reclaim
	read := 2*smallDataSize/1000 + 5
	for range read {
		_, err := q.Dequeue()
		require.NoError(t, err)
	}
	abandonQueue(t, q) // a process crash: the index holds the position
	require.NoError(t, os.Remove(arenaPath(dir, 2)))

	q = openTestQueueIn(t, dir, smallOptions()...)
	_, err := q.Dequeue()
	require.ErrorIs(t, err, ErrCorrupt, "flushed messages %d to %d the consumer had not read are gone", read, len(msgs)-1)
}

// TestCrashLeavesArenasToSync: after a process crash, what it wrote since
// its last flush may be in the page cache only, unmapped: the first flush
// of the next process syncs those arenas before its checkpoint covers
// them.
func TestCrashLeavesArenasToSync(t *testing.T) {
	opts := []Option{SetArenaSize(4096), SetMaxInMemArenas(3), SetPeriodicFlushOps(0), SetPeriodicFlushDuration(0)}
	q, dir := openTestQueue(t, opts...)
	msg := make([]byte, 1000)
	for range 4 * 8 { // eight arenas of four messages
		require.NoError(t, q.Enqueue(msg))
	}
	abandonQueue(t, q)

	fs := newFaultFS()
	q = openTestQueueIn(t, dir, append(opts, withFS(fs))...)
	q.mu.Lock()
	waiting, arenas := len(q.am.unsynced), int(q.am.next-q.am.first)
	q.mu.Unlock()
	require.GreaterOrEqual(t, arenas, 8)
	require.Equal(t, arenas, waiting, "every arena written since the last flush")
	before := fs.count(callSyncFile)
	require.NoError(t, q.Flush())
	require.Equal(t, arenas, fs.count(callSyncFile)-before)
	q.mu.Lock()
	require.Empty(t, q.am.unsynced)
	q.mu.Unlock()
}

// failOpenFS is osFS whose next open of an arena file fails once, when
// armed.
type failOpenFS struct {
	osFS
	fail bool
}

func (f *failOpenFS) open(d *queueDir, name string) (*os.File, error) {
	if f.fail && strings.HasPrefix(name, "arena-") {
		f.fail = false
		return nil, &os.PathError{Op: "open", Path: name, Err: syscall.EACCES}
	}
	return f.osFS.open(d, name)
}

// TestFlushOpenFailureReclaimsNothing: a flush that cannot open an
// evicted arena's file to sync it fails, for the next flush to try
// again, and leaves the queue as it found it: the oldest message stays
// within reach, also after the last consumer is deleted, and a reopen
// finds the same oldest message.
func TestFlushOpenFailureReclaimsNothing(t *testing.T) {
	ffs := &failOpenFS{}
	opts := append(smallOptions(), SetMaxInMemArenas(3))
	q, dir := openTestQueue(t, append(opts, withFS(ffs))...)
	msgs := skipMessages(6 * smallDataSize / 1000)
	enqueueAll(t, q, msgs)             // arenas 0 to 5, the first ones evicted dirty
	for range smallDataSize/1000 + 2 { // into arena 1
		_, err := q.Dequeue()
		require.NoError(t, err)
	}
	before := q.Stats().OldestSeq
	ffs.fail = true
	err := q.Flush()
	require.ErrorIs(t, err, syscall.EACCES)
	requireInvariants(t, q)
	require.Equal(t, before, q.Stats().OldestSeq, "a failed flush moved the oldest message")
	q.mu.Lock()
	require.False(t, q.passed)
	q.mu.Unlock()

	require.NoError(t, q.DeleteConsumer(defaultConsumerKey))
	require.NoError(t, q.Flush())
	requireInvariants(t, q)
	require.Equal(t, before, q.Stats().OldestSeq)
	require.NoError(t, q.Close())
	q = openTestQueueIn(t, dir, opts...)
	require.Equal(t, before, q.Stats().OldestSeq, "the oldest stored message after a reopen")
	got := drainChecked(t, "the default consumer", q.Dequeue, msgs)
	requireRun(t, "the default consumer", got, []int{0}, len(msgs))
}

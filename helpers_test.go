package bigqueue

import (
	"errors"
	"io"
	"os"
	"os/exec"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// openTestQueue opens a queue in a new temporary directory. At cleanup it
// checks the queue's invariants and closes it; tests may close it earlier.
func openTestQueue(tb testing.TB, opts ...Option) (*Queue, string) {
	tb.Helper()
	dir := tb.TempDir()
	return openTestQueueIn(tb, dir, opts...), dir
}

// openTestQueueIn is openTestQueue on an existing directory, for reopening.
func openTestQueueIn(tb testing.TB, dir string, opts ...Option) *Queue {
	tb.Helper()
	q, err := NewQueue(dir, opts...)
	require.NoError(tb, err)
	checkInvariants(tb, q)
	tb.Cleanup(func() {
		checkInvariants(tb, q)
		require.NoError(tb, q.Close())
	})
	return q
}

// checkInvariants asserts what must hold between any two operations on an
// open queue; it does nothing on a closed one.
func checkInvariants(tb testing.TB, q *Queue) {
	tb.Helper()
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.closed {
		return
	}
	m := q.am
	require.Equal(tb, q.tail, q.idx.tail(), "index tail")
	require.Equal(tb, q.oldest, q.idx.head(), "index head: the oldest stored record")
	require.LessOrEqual(tb, q.oldest, q.head, "oldest <= head")
	require.LessOrEqual(tb, q.head, q.tail, "head <= tail")
	// unknownSeq marks a position recovery could not prove; its first read
	// reports ErrCorrupt and moves on.
	require.True(tb, q.headSeq <= q.tailSeq || q.headSeq == unknownSeq, "head seq %d > tail seq %d", q.headSeq, q.tailSeq)
	// oldest is unproven when a consumer recovery could not prove stands
	// below the oldest intact arena header: it may not pass that consumer.
	require.True(tb, q.oldestSeq <= q.headSeq || q.headSeq == unknownSeq || q.oldestSeq == unknownSeq,
		"oldest seq %d > head seq %d", q.oldestSeq, q.headSeq)
	if len(q.consumers) == 0 {
		require.Equal(tb, q.oldest, q.head, "with no consumer the head is the oldest record")
	}
	lowest := q.tail
	for _, c := range q.consumers {
		lowest = min(lowest, c.off)
	}
	if len(q.consumers) > 0 {
		require.Equal(tb, lowest, q.head, "head is the lowest consumer position")
	}
	for name, c := range q.consumers {
		require.Equal(tb, name, c.name)
		require.GreaterOrEqual(tb, c.off, q.head, "consumer %q before head", name)
		require.LessOrEqual(tb, c.off, q.tail, "consumer %q past tail", name)
		require.True(tb, c.seq <= q.tailSeq || c.seq == unknownSeq, "consumer %q seq %d > tail seq %d", name, c.seq, q.tailSeq)
		if c.drop.pending {
			// Retention removed what it had not read: its slot keeps the
			// position from before, below the watermark, until its next
			// read reports the drop.
			require.Less(tb, le64(q.idx.slot(c.slot)[slotOffsetOff:]), q.oldest, "dropped consumer %q slot offset", name)
		} else {
			require.Equal(tb, c.off, le64(q.idx.slot(c.slot)[slotOffsetOff:]), "consumer %q slot offset", name)
		}
	}
	if m.maxMapped > 0 {
		require.LessOrEqual(tb, len(m.mapped), m.maxMapped, "mapped arenas")
	}
	require.LessOrEqual(tb, m.first, m.next)
	if q.tail > m.first*m.dataSize {
		require.LessOrEqual(tb, m.first, q.oldest/m.dataSize, "the oldest record lies below the oldest arena")
		// Arena files end with the tail's, or just before it when
		// recovery left the tail inside an arena whose file is gone (the
		// next Enqueue creates it).
		if !(q.tail%m.dataSize != 0 && m.next == q.tail/m.dataSize) {
			require.Equal(tb, (q.tail-1)/m.dataSize+1, m.next, "arena files end with the tail's")
		}
	}
	for id := range m.present {
		require.True(tb, id >= m.first && id < m.next, "present arena %d outside [%d,%d)", id, m.first, m.next)
		f, err := m.dir.openRead(arenaName(id))
		require.NoError(tb, err, "arena %d", id)
		st, err := f.Stat()
		require.NoError(tb, errors.Join(err, f.Close()), "arena %d", id)
		if _, mapped := m.mapped[id]; mapped {
			// A file of the wrong size is found, and set aside, when it
			// is first mapped; a mapped one must be whole.
			require.EqualValues(tb, q.opts.arenaSize, st.Size(), "arena %d size", id)
		}
	}
	require.LessOrEqual(tb, len(m.spares), maxSpareArenas)
	require.LessOrEqual(tb, len(m.spares)*q.opts.arenaSize, maxSpareBytes, "spare bytes")
	for id := range m.mapped {
		require.True(tb, id >= m.first && id < m.next, "mapped arena %d outside [%d,%d)", id, m.first, m.next)
	}
}

// testSeed returns the seed of a random test: flagSeed when it is set, else
// BIGQUEUE_SEED, else the clock. The caller logs it.
func testSeed(t *testing.T, flagSeed uint64) uint64 {
	t.Helper()
	seed := flagSeed
	if s := os.Getenv("BIGQUEUE_SEED"); seed == 0 && s != "" {
		v, err := strconv.ParseUint(s, 10, 64)
		require.NoError(t, err, "BIGQUEUE_SEED")
		seed = v
	}
	if seed == 0 {
		seed = uint64(time.Now().UnixNano())
	}
	return seed
}

// startHolder starts cmd, a child that holds something until it is
// killed, with its stdin a pipe whose write end only this process holds
// (so that a child blocked reading it never sees it end), and returns the
// child's stdout and a function that SIGKILLs it and returns what Wait
// returned. A child not killed by then is killed at cleanup.
func startHolder(t *testing.T, cmd *exec.Cmd) (io.ReadCloser, func() error) {
	t.Helper()
	stdin, holdOpen, err := os.Pipe()
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, holdOpen.Close()) })
	cmd.Stdin = stdin
	stdout, err := cmd.StdoutPipe()
	require.NoError(t, err)
	require.NoError(t, cmd.Start())
	require.NoError(t, stdin.Close())
	killed := false
	kill := func() error {
		killed = true
		require.NoError(t, cmd.Process.Signal(syscall.SIGKILL))
		return cmd.Wait()
	}
	t.Cleanup(func() {
		if !killed {
			require.Error(t, kill())
		}
	})
	return stdout, kill
}

// unreadableMessage returns a message of MaxMessageSize+1 bytes that
// costs no memory: anonymous address space mapped PROT_NONE, so any read
// of it would crash the test. It stands in for a 4 GiB slice, which the
// runtime would have to zero when a freed span is reused.
func unreadableMessage(tb testing.TB) []byte {
	tb.Helper()
	b, err := syscall.Mmap(-1, 0, MaxMessageSize+1, syscall.PROT_NONE, syscall.MAP_ANON|syscall.MAP_PRIVATE|syscall.MAP_NORESERVE)
	require.NoError(tb, err)
	tb.Cleanup(func() { require.NoError(tb, syscall.Munmap(b)) })
	return b
}

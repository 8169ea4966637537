package bigqueue

import (
	"os"
	"strings"
	"syscall"
	"testing"

	"github.com/stretchr/testify/require"
)

// spareMappings returns the lines of /proc/self/maps that map a spare
// file of dir.
func spareMappings(t *testing.T, dir string) []string {
	t.Helper()
	var out []string
	for _, l := range queueMappings(t, dir) {
		if strings.Contains(l, "/spare-") {
			out = append(out, l)
		}
	}
	return out
}

// Review: Close of a queue that failed (or whose Close fails to sync)
// goes through arenaManager.close(false) without dropSpares, and close
// releases the parked mappings but not the spares' kept ones: every spare
// that kept its arena's mapping stays mapped after Close, forever.
func TestReviewFailedCloseLeaksSpareMappings(t *testing.T) {
	for _, tc := range []struct {
		name       string
		failBefore bool // the queue fails in a Flush before Close
	}{
		{name: "queue failed before Close", failBefore: true},
		{name: "msync fails inside Close"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			fs := newFaultFS()
			dir := t.TempDir()
			q, err := NewQueue(dir, SetArenaSize(4096), SetMaxInMemArenas(3),
				SetPeriodicFlushOps(0), SetPeriodicFlushDuration(0), withFS(fs))
			require.NoError(t, err)
			readAsWritten(t, q, 0, 4*10)
			require.NoError(t, q.Flush()) // reclaims: spares keep mappings
			kept, _ := keptSpares(q)
			require.Positive(t, kept)
			require.NotEmpty(t, spareMappings(t, dir))

			require.NoError(t, q.Enqueue([]byte("dirty"))) // something to msync
			fs.failNth(callMsync, 1, true, syscall.EIO)
			if tc.failBefore {
				require.ErrorIs(t, q.Flush(), syscall.EIO)
			}
			require.Error(t, q.Close())
			require.Empty(t, spareMappings(t, dir), "spares' kept mappings outlived Close")
		})
	}
}

// Review: reclaimTo returns early when updateOldest faults (noFault), after
// detachBelow has handed the parked and mapped arenas' mappings to the
// jobs: the jobs are dropped without releaseJobs, so those mappings are
// never unmapped, by that call or by Close.
func TestReviewFaultInReclaimLeaksJobMappings(t *testing.T) {
	dir := t.TempDir()
	q, err := NewQueue(dir, SetArenaSize(4096), SetMaxInMemArenas(3),
		SetPeriodicFlushOps(0), SetPeriodicFlushDuration(0))
	require.NoError(t, err)
	for i := range 4 * 10 {
		require.NoError(t, q.Enqueue(message(13, uint64(i), 1000)))
	}
	for i := range 4*5 + 1 { // arenas 0-4 read, arena 5 mapped
		msg, err := q.Dequeue()
		require.NoError(t, err)
		require.Equal(t, message(13, uint64(i), 1000), msg)
	}
	q.mu.Lock()
	_, mapped5 := q.am.mapped[5]
	parked := len(q.am.parked)
	q.mu.Unlock()
	require.True(t, mapped5)
	require.Positive(t, parked)

	// The arena holding the new oldest record faults when its header is
	// read (truncated under the queue; on a full btrfs the index's
	// watermark store faults the same way).
	require.NoError(t, os.Truncate(arenaPath(dir, 5), 0))
	q.mu.Lock()
	q.reclaimTo(5, false, false)
	failed := q.failed
	q.mu.Unlock()
	require.ErrorIs(t, failed, ErrFault)
	require.Error(t, q.Close())

	var left []string
	for _, l := range queueMappings(t, dir) {
		for id := range 5 {
			if strings.HasSuffix(l, "/"+arenaName(uint64(id))) {
				left = append(left, l)
			}
		}
	}
	require.Empty(t, left, "mappings of detached arenas outlived Close")
}

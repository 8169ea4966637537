package bigqueue

import (
	"bufio"
	"fmt"
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

// queueMappings returns the lines of /proc/self/maps that map a file of
// the directory dir, removed files included.
func queueMappings(t *testing.T, dir string) []string {
	t.Helper()
	real, err := filepath.EvalSymlinks(dir)
	require.NoError(t, err)
	f, err := os.Open("/proc/self/maps")
	if os.IsNotExist(err) {
		t.Skip("no /proc/self/maps")
	}
	require.NoError(t, err)
	defer f.Close()
	var lines []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if strings.Contains(sc.Text(), real+string(filepath.Separator)) {
			lines = append(lines, sc.Text())
		}
	}
	require.NoError(t, sc.Err())
	return lines
}

// keptSpares returns how many spares kept their mapping, and how many
// arenas are parked.
func keptSpares(q *Queue) (kept, parked int) {
	q.mu.Lock()
	defer q.mu.Unlock()
	for _, sp := range q.am.spares {
		if sp.data != nil {
			kept++
		}
	}
	return kept, len(q.am.parked)
}

// readAsWritten enqueues n messages of 1000 bytes, four to an arena of
// 4 KiB, each read back at once, and checks them.
func readAsWritten(t *testing.T, q *Queue, from, n int) {
	t.Helper()
	for i := from; i < from+n; i++ {
		require.NoError(t, q.Enqueue(message(13, uint64(i), 1000)))
		msg, err := q.Dequeue()
		require.NoError(t, err)
		require.Equal(t, message(13, uint64(i), 1000), msg)
	}
}

// keptQueue opens a queue of 4 KiB arenas, three mapped, without
// background flushes, and runs readAsWritten through ten arenas: the ones
// read are parked as they are evicted.
func keptQueue(t *testing.T, fs fileSystem) (*Queue, string) {
	t.Helper()
	q, dir := newKeptQueue(t, fs)
	t.Cleanup(func() {
		requireInvariants(t, q)
		require.NoError(t, q.Close())
	})
	return q, dir
}

// newKeptQueue is keptQueue for a test that closes the queue itself.
func newKeptQueue(t *testing.T, fs fileSystem) (*Queue, string) {
	t.Helper()
	dir := t.TempDir()
	q, err := NewQueue(dir, SetArenaSize(4096), SetMaxInMemArenas(3),
		SetPeriodicFlushOps(0), SetPeriodicFlushDuration(0), withFS(fs))
	require.NoError(t, err)
	requireInvariants(t, q)
	readAsWritten(t, q, 0, 4*10)
	return q, dir
}

// An arena every consumer has read is parked when it is evicted, its
// mapping kept, and the spare it becomes takes the mapping over: reusing
// that spare opens and maps nothing, and what is written there reads back.
func TestSpareKeepsItsMapping(t *testing.T) {
	fs := newFaultFS()
	q, dir := keptQueue(t, fs)
	kept, parked := keptSpares(q)
	require.Zero(t, kept)
	require.Positive(t, parked, "no arena every consumer had read was parked")
	require.NoError(t, q.Flush()) // reclaims them
	kept, parked = keptSpares(q)
	require.Zero(t, parked, "a parked arena outlived its reclaim")
	require.Positive(t, kept, "no spare kept a mapping")
	var spareMaps int
	for _, l := range queueMappings(t, dir) {
		if strings.Contains(l, "/spare-") {
			spareMaps++
		}
	}
	require.Equal(t, kept, spareMaps, "the kept mappings are not those of the spare files")

	fs.failNth(callOpen, 0, false, nil) // counts from here, fails nothing
	q.mu.Lock()
	next := q.am.next
	q.mu.Unlock()
	for i := 0; ; i++ {
		require.NoError(t, q.Enqueue(message(14, uint64(i), 1000)))
		q.mu.Lock()
		created := q.am.next > next
		q.mu.Unlock()
		if created {
			break
		}
	}
	require.Zero(t, fs.count(callOpen), "the spare was opened again")
	require.Zero(t, fs.count(callMmap), "the spare was mapped again")
	require.Zero(t, fs.count(callCreate), "a new file was created")
	kept2, _ := keptSpares(q)
	require.Equal(t, kept-1, kept2)
	for i := 0; !q.IsEmpty(); i++ {
		msg, err := q.Dequeue()
		require.NoError(t, err)
		require.Equal(t, message(14, uint64(i), 1000), msg)
	}
}

// A parked arena that a consumer comes back to (a new consumer starts at
// the oldest message stored) is mapped again from the parked mapping and
// reads as it was written.
func TestParkedArenaReadAgain(t *testing.T) {
	fs := newFaultFS()
	q, _ := keptQueue(t, fs)
	q.mu.Lock()
	_, parked0 := q.am.parked[0]
	q.mu.Unlock()
	require.True(t, parked0, "arena 0 is not parked")

	fs.failNth(callOpen, 0, false, nil)
	c, err := q.NewConsumer("late")
	require.NoError(t, err)
	msg, err := c.Dequeue()
	require.NoError(t, err)
	require.Equal(t, message(13, 0, 1000), msg)
	require.Zero(t, fs.count(callOpen), "arena 0 was opened again instead of taken back")
	q.mu.Lock()
	_, parked0 = q.am.parked[0]
	q.mu.Unlock()
	require.False(t, parked0, "arena 0 is mapped and parked")
	requireInvariants(t, q)
	for i := 1; i < 4*10; i++ {
		msg, err := c.Dequeue()
		require.NoError(t, err)
		require.Equal(t, message(13, uint64(i), 1000), msg)
	}
	require.True(t, c.IsEmpty())

	// Read by every consumer now, arena 0 is parked again, reclaimed, and
	// its spare (the oldest, reused first) takes its mapping over: the
	// identity of its file went with the mapping, so the spare is reused,
	// not given up as changed under the queue.
	readAsWritten(t, q, 4*10, 4) // evicts arena 0 again
	require.NoError(t, q.Flush())
	q.mu.Lock()
	require.NotEmpty(t, q.am.spares)
	first := q.am.spares[0]
	q.mu.Unlock()
	require.NotNil(t, first.data, "the oldest spare kept no mapping")
	fs.failNth(callCreate, 0, false, nil)
	_, err = writeUntilCreated(t, q)
	require.NoError(t, err)
	require.Zero(t, fs.count(callCreate), "a fresh file replaced the spare")
	require.NoError(t, q.Flush(), "the spare was given up")
}

// Close unmaps the parked arenas and the spares' kept mappings, with
// background flushing on or off, and after failures that leave a reclaim
// half done: no mapping of the queue's files outlives the queue.
func TestKeptMappingsGoAtClose(t *testing.T) {
	for _, tc := range []struct {
		name string
		fail fsCall // "": none
		n    int
		late bool // a new consumer keeps every arena from reclaim
		// atClose fails Close's first call of fail, which leaves the
		// spares' files for the next NewQueue.
		atClose bool
	}{
		{name: "clean"},
		{name: "parked arenas not reclaimed", late: true},
		{name: "rename to spare fails", fail: callRename, n: 1},
		{name: "positions msync fails", fail: callMsync, n: 1},
		{name: "close fails", fail: callMsync, n: 1, atClose: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			fs := newFaultFS()
			q, dir := newKeptQueue(t, fs)
			require.NoError(t, q.Flush())
			readAsWritten(t, q, 4*10, 4*10) // parks again, with kept spares about
			kept, parked := keptSpares(q)
			require.Positive(t, kept+parked)
			if tc.late {
				_, err := q.NewConsumer("late")
				require.NoError(t, err)
			}
			if tc.atClose {
				require.NoError(t, q.Flush()) // the parked arenas become spares
				kept, _ := keptSpares(q)
				require.Positive(t, kept)
				fs.failNth(tc.fail, tc.n, false, os.ErrPermission)
			} else if tc.fail != "" {
				fs.failNth(tc.fail, tc.n, false, os.ErrPermission)
				q.mu.Lock()
				q.reclaimTo(q.reclaimLimit(), false, tc.fail == callMsync)
				q.mu.Unlock()
				for _, l := range queueMappings(t, dir) {
					require.NotContains(t, l, "(deleted)", "a removed file is still mapped")
				}
			}
			closeErr := q.Close()
			if tc.fail != "" {
				// Failed closed, or a housekeeping error kept for the
				// next Flush or Close.
				require.ErrorIs(t, closeErr, os.ErrPermission)
			} else {
				require.NoError(t, closeErr)
			}
			require.Empty(t, queueMappings(t, dir), "mappings outlived Close")
		})
	}
}

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

// Close of a queue that failed, or whose Close fails to sync, keeps the
// spare files (for the next NewQueue to delete) but not their mappings.
// (Found by a hostile review.)
func TestFailedCloseUnmapsSpares(t *testing.T) {
	for _, tc := range []struct {
		name       string
		failBefore bool // the queue fails in a Flush before Close
	}{
		{name: "queue failed before Close", failBefore: true},
		{name: "msync fails inside Close"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			fs := newFaultFS()
			q, dir := newKeptQueue(t, fs)
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

// A reclaim that faults after detachBelow handed the parked and mapped
// arenas' mappings to its jobs (updateOldest reading a truncated arena's
// header) fails the queue and unmaps them. (Found by a hostile review.)
func TestFaultInReclaimUnmapsItsJobs(t *testing.T) {
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

// gateFS blocks the first rename of an arena to a spare, once armed,
// until gate is closed: a reclaim then stays under way (mu released).
type gateFS struct {
	osFS
	mu    sync.Mutex
	armed bool
	hit   chan struct{}
	gate  chan struct{}
}

func (g *gateFS) rename(d *queueDir, from, to string) error {
	g.mu.Lock()
	block := g.armed && strings.HasPrefix(from, "arena-") && strings.HasPrefix(to, "spare-")
	if block {
		g.armed = false
	}
	g.mu.Unlock()
	if block {
		close(g.hit)
		<-g.gate
	}
	return g.osFS.rename(d, from, to)
}

// Arenas parked while a reclaim is under way (mu released, its jobs
// holding kept mappings) count those mappings: once the reclaim is done,
// the spares' and parked mappings together stay within the spare limit.
// (Found by a hostile review: they reached twice the limit.)
func TestKeptMappingsBoundedDuringReclaim(t *testing.T) {
	g := &gateFS{hit: make(chan struct{}), gate: make(chan struct{})}
	q, _ := openTestQueue(t, SetArenaSize(4096), SetMaxInMemArenas(3),
		SetPeriodicFlushOps(0), SetPeriodicFlushDuration(0), withFS(g))
	q.mu.Lock()
	limit := q.am.spareLimit()
	q.mu.Unlock()
	readAsWritten(t, q, 0, 4*(limit+8))
	_, parked := keptSpares(q)
	require.Equal(t, limit, parked)

	g.mu.Lock()
	g.armed = true
	g.mu.Unlock()
	done := make(chan error, 1)
	go func() { done <- q.Flush() }()
	<-g.hit // the reclaim is under way, its jobs holding the parked mappings
	readAsWritten(t, q, 4*(limit+8), 4*(limit+8))
	close(g.gate)
	require.NoError(t, <-done)

	kept, parked := keptSpares(q)
	requireInvariants(t, q)
	require.LessOrEqual(t, kept+parked, limit,
		"%d spares' and %d parked mappings kept after the reclaim ended, bound %d", kept, parked, limit)
}

// spareFiles returns the names of dir's spare files.
func spareFiles(t *testing.T, dir string) []string {
	t.Helper()
	names, err := filepath.Glob(filepath.Join(dir, "spare-*.bq"))
	require.NoError(t, err)
	return names
}

// writeUntilCreated enqueues messages of series 14 until the queue
// creates an arena or an enqueue fails, and returns how many it took and
// the error.
func writeUntilCreated(t *testing.T, q *Queue) (int, error) {
	t.Helper()
	q.mu.Lock()
	next := q.am.next
	q.mu.Unlock()
	for i := 0; i < 8; i++ { // four to an arena
		if err := q.Enqueue(message(14, uint64(i), 1000)); err != nil {
			return i, err
		}
		q.mu.Lock()
		created := q.am.next > next
		q.mu.Unlock()
		if created {
			return i + 1, nil
		}
	}
	t.Fatal("no arena created in 8 enqueues of 1000 bytes into arenas of 4 KiB")
	return 0, nil
}

// Spare files changed under the live queue: reuseSpare renames each to
// the arena's name, then checks that the name names the file a kept
// mapping maps (a kept spare is not opened again), at the arena's size,
// and gives up any that fails, or that it cannot rename; the queue then
// creates a fresh file, loses nothing, and reports the change once, at
// the next Flush. Only a file it cannot remove from the arena's name
// fails the write, since the arena cannot be created while it is there;
// once it is gone the queue writes on.
func TestKeptSpareChangedUnderQueue(t *testing.T) {
	for _, tc := range []struct {
		name   string
		change func(t *testing.T, fs *faultFS, spare string)
		want   string // in the next Flush's error, or in the write's
		is     error  // and that error wraps it, when not nil
		unkept bool   // the spares' mappings are dropped first: they are opened by name
		// stuck: a file the queue cannot remove stays under the arena's
		// name and the write fails; unstick then heals the fault and
		// removes what the test made.
		stuck bool
	}{
		{name: "truncated", want: "changed under the queue", change: func(t *testing.T, _ *faultFS, spare string) {
			require.NoError(t, os.Truncate(spare, 0))
		}},
		{name: "truncated, not kept", want: "changed under the queue", unkept: true, change: func(t *testing.T, _ *faultFS, spare string) {
			require.NoError(t, os.Truncate(spare, 0))
		}},
		{name: "removed", is: os.ErrNotExist, change: func(t *testing.T, _ *faultFS, spare string) {
			require.NoError(t, os.Remove(spare))
		}},
		{name: "renamed away", is: os.ErrNotExist, change: func(t *testing.T, _ *faultFS, spare string) {
			require.NoError(t, os.Rename(spare, spare+".moved"))
		}},
		{name: "replaced by a file of the arena size", want: "replaced under the queue", change: func(t *testing.T, _ *faultFS, spare string) {
			require.NoError(t, os.Remove(spare))
			require.NoError(t, os.WriteFile(spare, make([]byte, 4096), 0o600))
		}},
		{name: "rename fails", is: os.ErrPermission, change: func(t *testing.T, fs *faultFS, _ string) {
			fs.failNth(callRename, 1, true, os.ErrPermission)
		}},
		{name: "replaced by a directory", want: "replaced under the queue", stuck: true, change: func(t *testing.T, _ *faultFS, spare string) {
			require.NoError(t, os.Remove(spare))
			require.NoError(t, os.Mkdir(spare, 0o700))
			require.NoError(t, os.WriteFile(filepath.Join(spare, "x"), nil, 0o600))
		}},
		{name: "truncated, removing it fails", want: "changed under the queue", is: os.ErrPermission, stuck: true, change: func(t *testing.T, fs *faultFS, spare string) {
			require.NoError(t, os.Truncate(spare, 0))
			fs.failNth(callRemove, 1, true, os.ErrPermission)
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			fs := newFaultFS()
			q, dir := newKeptQueue(t, fs)
			require.NoError(t, q.Flush()) // the read arenas become spares, mapped
			kept, _ := keptSpares(q)
			require.Positive(t, kept)
			spares := spareFiles(t, dir)
			require.Len(t, spares, kept)
			if tc.unkept {
				q.mu.Lock()
				for i := range q.am.spares {
					require.NoError(t, q.am.spares[i].release())
				}
				q.mu.Unlock()
			}
			fs.failNth(callCreate, 0, false, nil) // counts from here, fails nothing
			for _, spare := range spares {
				tc.change(t, fs, spare)
			}

			n, err := writeUntilCreated(t, q)
			if tc.stuck {
				require.ErrorContains(t, err, "reuse spare")
				require.ErrorContains(t, err, tc.want)
				if tc.is != nil {
					require.ErrorIs(t, err, tc.is)
				}
				require.Zero(t, fs.count(callCreate))
				fs.heal()
				removeDirs(t, dir)
				require.NoError(t, q.Enqueue(message(14, uint64(n), 1000)), "the queue did not write on")
				n++
			} else {
				require.NoError(t, err)
				require.Equal(t, 1, fs.count(callCreate), "no fresh file replaced the changed spares")
			}
			fs.heal()
			requireNoKeptSpares(t, q, dir)
			require.Empty(t, spareFiles(t, dir), "a spare given up was kept")
			err = q.Flush()
			require.ErrorContains(t, err, "reuse spare")
			if !tc.stuck && tc.want != "" {
				require.ErrorContains(t, err, tc.want)
			}
			if !tc.stuck && tc.is != nil {
				require.ErrorIs(t, err, tc.is)
			}
			require.NoError(t, q.Flush(), "the change is reported once")
			requireInvariants(t, q)
			require.NoError(t, q.Close())
			requireReadsSeries14(t, dir, n)
		})
	}
}

// removeDirs removes the directories the test made in the queue
// directory dir, under the name of a spare or of an arena.
func removeDirs(t *testing.T, dir string) {
	t.Helper()
	entries, err := os.ReadDir(dir)
	require.NoError(t, err)
	for _, e := range entries {
		if e.IsDir() {
			require.NoError(t, os.RemoveAll(filepath.Join(dir, e.Name())))
		}
	}
}

// requireNoKeptSpares checks that q keeps no spare's mapping, and that
// no removed file of dir is still mapped.
func requireNoKeptSpares(t *testing.T, q *Queue, dir string) {
	t.Helper()
	kept, _ := keptSpares(q)
	require.Zero(t, kept, "a spare given up kept its mapping")
	require.Empty(t, spareMappings(t, dir))
	for _, l := range queueMappings(t, dir) {
		require.NotContains(t, l, "(deleted)", "a removed spare is still mapped")
	}
}

// requireReadsSeries14 reopens the queue in dir and reads the n messages
// writeUntilCreated enqueued, and nothing else.
func requireReadsSeries14(t *testing.T, dir string, n int) {
	t.Helper()
	q := openTestQueueIn(t, dir, SetArenaSize(4096))
	for i := 0; i < n; i++ {
		msg, err := q.Dequeue()
		require.NoError(t, err, "message %d of %d acknowledged", i, n)
		require.Equal(t, message(14, uint64(i), 1000), msg)
	}
	require.True(t, q.IsEmpty())
}

// truncFS truncates the next arena file it maps, once armed, right after
// mapping it: after create checked it, before its header is written.
type truncFS struct {
	osFS
	armed bool // set and read with the queue's mu held
}

func (f *truncFS) mmap(file *os.File, size int) ([]byte, error) {
	data, err := f.osFS.mmap(file, size)
	if err == nil && f.armed && strings.HasPrefix(filepath.Base(file.Name()), "arena-") {
		f.armed = false
		err = file.Truncate(0)
	}
	return data, err
}

// A new arena file truncated after create checked it, before its header
// is written: the write faults, the queue fails closed with ErrFault,
// Close unmaps every mapping (the arena is in mapped before its header is
// written), and every message acknowledged before reads back after a
// reopen.
func TestArenaTruncatedBeforeItsHeader(t *testing.T) {
	fs := &truncFS{}
	q, dir := newKeptQueue(t, fs) // no flush: no spares, the next arena is a new file
	q.mu.Lock()
	require.Empty(t, q.am.spares)
	fs.armed = true
	q.mu.Unlock()

	n, err := writeUntilCreated(t, q)
	require.ErrorIs(t, err, ErrFault)
	q.mu.Lock()
	require.False(t, fs.armed, "the new arena was not mapped through the file system")
	q.mu.Unlock()
	require.ErrorIs(t, q.Enqueue([]byte("x")), ErrFault, "the queue failed closed")
	_, err = q.Dequeue()
	require.ErrorIs(t, err, ErrFault)
	require.ErrorIs(t, q.Close(), ErrFault)
	require.Empty(t, queueMappings(t, dir), "mappings outlived Close")
	requireReadsSeries14(t, dir, n)
}

// Close while the flusher's reclaim is under way (mu released, its jobs
// holding kept mappings, an arena half renamed to a spare): Close waits
// for it, then removes the spares and unmaps every mapping; nothing
// written and unread is lost, and the queue reopens clean.
func TestCloseDuringBackgroundReclaim(t *testing.T) {
	g := &gateFS{armed: true, hit: make(chan struct{}), gate: make(chan struct{})}
	dir := t.TempDir()
	// Background flushes on (a long period), so that filling an arena
	// while others are evicted asks the flusher for a reclaim.
	q, err := NewQueue(dir, SetArenaSize(4096), SetMaxInMemArenas(3),
		SetPeriodicFlushOps(0), SetPeriodicFlushDuration(time.Hour), withFS(g))
	require.NoError(t, err)
	q.mu.Lock()
	batch := int(q.am.reclaimBatch())
	q.mu.Unlock()
	read := 0
	for ; read < 4*(batch+8); read += 4 {
		readAsWritten(t, q, read, 4)
		select {
		case <-g.hit:
		default:
			continue
		}
		break
	}
	if read == 4*(batch+8) {
		select { // the request was made; the flusher is on its way
		case <-g.hit:
		case <-time.After(time.Minute):
			t.Fatal("the flusher never reclaimed")
		}
	}
	// The reclaim waits in its first rename, mu released: the queue
	// still takes writes, and Close must wait for the reclaim.
	for i := 0; i < 6; i++ {
		require.NoError(t, q.Enqueue(message(15, uint64(i), 1000)))
	}
	closed := make(chan error, 1)
	go func() { closed <- q.Close() }()
	<-q.quit // Close has begun, and waits for the flusher
	require.ErrorIs(t, q.Enqueue([]byte("late")), ErrClosed)
	select {
	case err := <-closed:
		t.Fatalf("Close returned (%v) while the reclaim was under way", err)
	default:
	}
	close(g.gate)
	require.NoError(t, <-closed)
	// Close returned; the flusher, whose reclaim it waited for, has
	// returned too (checked, so that a Close that did not wait cannot
	// pass by checking before the reclaim adopts its spares).
	<-q.flusherDone
	require.Empty(t, queueMappings(t, dir), "mappings outlived Close")
	require.Empty(t, spareFiles(t, dir), "spares outlived Close")

	q = openTestQueueIn(t, dir, SetArenaSize(4096))
	for i := 0; i < 6; i++ {
		msg, err := q.Dequeue()
		require.NoError(t, err)
		require.Equal(t, message(15, uint64(i), 1000), msg)
	}
	require.True(t, q.IsEmpty())
}

// adviceOf returns the mappings of the file path in /proc/self/smaps, as
// their lengths and whether each carries the random-access advice ("rr"
// in VmFlags), in address order.
func adviceOf(t *testing.T, path string) (sizes []uint64, random []bool) {
	t.Helper()
	real, err := filepath.EvalSymlinks(path)
	require.NoError(t, err)
	b, err := os.ReadFile("/proc/self/smaps")
	if os.IsNotExist(err) {
		t.Skip("no /proc/self/smaps")
	}
	require.NoError(t, err)
	in := false
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) >= 5 && strings.Contains(f[0], "-") && !strings.HasSuffix(f[0], ":") {
			in = len(f) >= 6 && f[5] == real
			if in {
				var lo, hi uint64
				_, err := fmt.Sscanf(f[0], "%x-%x", &lo, &hi)
				require.NoError(t, err)
				sizes, random = append(sizes, hi-lo), append(random, false)
			}
			continue
		}
		if in && len(f) > 0 && f[0] == "VmFlags:" {
			random[len(random)-1] = slices.Contains(f[1:], "rr")
		}
	}
	return sizes, random
}

// TestNewArenaReadsNoWindowAhead checks that a new arena file's first
// freshPrefix bytes are mapped with the random-access advice, so that
// the first write into a new queue faults one page instead of having the
// kernel fill a whole read-ahead window first, and that the rest of the
// mapping keeps the default, under which the prefaulter's populate calls
// fill a window at a time.
func TestNewArenaReadsNoWindowAhead(t *testing.T) {
	dir := t.TempDir()
	q, err := NewQueue(dir, SetArenaSize(4*freshPrefix))
	require.NoError(t, err)
	defer func() { require.NoError(t, q.Close()) }()
	require.NoError(t, q.Enqueue([]byte("first")))

	sizes, random := adviceOf(t, arenaPath(dir, 0))
	if len(sizes) == 0 {
		t.Skip("arena-0.bq not in /proc/self/smaps")
	}
	require.Equal(t, []uint64{freshPrefix, 3 * freshPrefix}, sizes, "the advice splits the mapping in two")
	require.Equal(t, []bool{true, false}, random)
}

package bigqueue

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// The queue directory is resolved once, by NewQueue: what happens to its
// path later (a working-directory change, a symlink switched by a deploy)
// does not send files into another directory, and files that are not
// this queue's are never read as its records.

// enqueueN enqueues n messages "<tag>-<i>" of about 300 bytes, so that a
// 4 KiB arena holds a dozen and new arena files are made along the way.
func enqueueN(t *testing.T, q *Queue, tag string, from, n int) {
	t.Helper()
	for i := from; i < from+n; i++ {
		require.NoError(t, q.Enqueue(tagged(tag, i)))
	}
}

func tagged(tag string, i int) []byte {
	return fmt.Appendf(nil, "%s-%d-%0300d", tag, i, i)
}

// requireHolds opens dir and reads exactly the n messages "<tag>-<i>".
func requireHolds(t *testing.T, dir, tag string, n int) {
	t.Helper()
	q, err := NewQueue(dir, SetArenaSize(4096))
	require.NoError(t, err)
	defer func() { require.NoError(t, q.Close()) }()
	for i := 0; i < n; i++ {
		msg, err := q.Dequeue()
		require.NoError(t, err, "message %d of %s", i, tag)
		require.Equal(t, string(tagged(tag, i)), string(msg))
	}
	_, err = q.Dequeue()
	require.ErrorIs(t, err, ErrEmptyQueue, "%s holds more than its own %d messages", dir, n)
}

// chdir changes the working directory for the rest of the test.
func chdir(t *testing.T, dir string) {
	t.Helper()
	old, err := os.Getwd()
	require.NoError(t, err)
	require.NoError(t, os.Chdir(dir))
	t.Cleanup(func() { require.NoError(t, os.Chdir(old)) })
}

// A queue opened with a relative path keeps its directory when the
// process changes its working directory, even when the new one holds a
// queue of the same relative name.
func TestRelativePathSurvivesChdir(t *testing.T) {
	root1, root2 := t.TempDir(), t.TempDir()
	chdir(t, root1)
	a, err := NewQueue("q", SetArenaSize(4096))
	require.NoError(t, err)
	enqueueN(t, a, "A", 0, 200)

	chdir(t, root2)
	b, err := NewQueue("q", SetArenaSize(4096))
	require.NoError(t, err)
	enqueueN(t, b, "B", 0, 100)
	enqueueN(t, a, "A", 200, 200) // new arenas of A, made after the chdir
	require.NoError(t, a.Flush())
	for i := 0; i < 50; i++ { // A's reads and reclaims stay in root1 too
		msg, err := a.Dequeue()
		require.NoError(t, err)
		require.Equal(t, string(tagged("A", i)), string(msg))
	}
	require.NoError(t, a.Flush())
	require.NoError(t, a.Close())
	require.NoError(t, b.Close())

	requireHolds(t, filepath.Join(root2, "q"), "B", 100)
	qa, err := NewQueue(filepath.Join(root1, "q"), SetArenaSize(4096))
	require.NoError(t, err)
	defer func() { require.NoError(t, qa.Close()) }()
	for i := 50; i < 400; i++ {
		msg, err := qa.Dequeue()
		require.NoError(t, err, "message %d", i)
		require.Equal(t, string(tagged("A", i)), string(msg))
	}
	require.True(t, qa.IsEmpty())
}

// A queue opened through a symlink keeps the directory the link named at
// NewQueue when a deploy switches the link: nothing goes into the new
// target.
func TestSymlinkSwitchedUnderQueue(t *testing.T) {
	root := t.TempDir()
	v1, v2 := filepath.Join(root, "v1"), filepath.Join(root, "v2")
	require.NoError(t, os.Mkdir(v1, 0o755))
	require.NoError(t, os.Mkdir(v2, 0o755))
	link := filepath.Join(root, "current")
	require.NoError(t, os.Symlink(v1, link))

	q, err := NewQueue(link, SetArenaSize(4096))
	require.NoError(t, err)
	enqueueN(t, q, "A", 0, 200)
	// The deploy: a new link renamed over the old one.
	require.NoError(t, os.Symlink(v2, link+".new"))
	require.NoError(t, os.Rename(link+".new", link))
	enqueueN(t, q, "A", 200, 200)
	require.NoError(t, q.Flush())
	require.NoError(t, q.Close())

	entries, err := os.ReadDir(v2)
	require.NoError(t, err)
	require.Empty(t, entries, "the queue wrote into the link's new target")
	requireHolds(t, v1, "A", 400)
}

// An arena file of another queue, copied in under the name of one of
// this queue's arenas, is refused (ErrCorrupt), never delivered as this
// queue's records, although its records pass their checksums.
func TestArenaOfAnotherQueueRefused(t *testing.T) {
	dirA, dirB := t.TempDir(), t.TempDir()
	for _, d := range []struct{ dir, tag string }{{dirA, "A"}, {dirB, "B"}} {
		q, err := NewQueue(d.dir, SetArenaSize(4096))
		require.NoError(t, err)
		enqueueN(t, q, d.tag, 0, 100)
		require.NoError(t, q.Close())
	}
	data, err := os.ReadFile(filepath.Join(dirB, arenaName(2)))
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(filepath.Join(dirA, arenaName(2)), data, 0o644))

	q, err := NewQueue(dirA, SetArenaSize(4096))
	require.NoError(t, err)
	defer func() { require.NoError(t, q.Close()) }()
	require.Positive(t, readTagged(t, q, "A", 200), "the foreign arena was not reported")
}

// The tail's own arena replaced by another queue's file of the same
// name. Drained: every message was read and the older arenas reclaimed,
// so the foreign file is the only arena and holds the checkpoint; before,
// recovery kept it as the tail's arena and every Enqueue failed on it
// with ErrCorrupt (FuzzIndexDecode found it with a forged index:
// regress-tail-in-foreign-arena). Now it is set aside as
// damaged-<n>.bq and the arena made anew. Not drained: the lost messages
// are reported (ErrCorrupt). Either way the queue never delivers the
// other queue's messages, takes new ones at once, and a reopen keeps
// them.
func TestTailArenaOfAnotherQueue(t *testing.T) {
	for _, drained := range []bool{true, false} {
		t.Run(fmt.Sprintf("drained=%v", drained), func(t *testing.T) {
			dirA, dirB := t.TempDir(), t.TempDir()
			for _, d := range []struct{ dir, tag string }{{dirA, "A"}, {dirB, "B"}} {
				q, err := NewQueue(d.dir, SetArenaSize(4096))
				require.NoError(t, err)
				enqueueN(t, q, d.tag, 0, 100)
				if drained {
					require.Zero(t, readTagged(t, q, d.tag, 200))
					require.NoError(t, q.Flush()) // reclaims the arenas read
				}
				require.NoError(t, q.Close())
			}
			last := lastArena(t, dirA)
			data, err := os.ReadFile(filepath.Join(dirB, arenaName(last)))
			require.NoError(t, err, "queue B has no arena %d", last)
			require.NoError(t, os.WriteFile(filepath.Join(dirA, arenaName(last)), data, 0o644))

			q, err := NewQueue(dirA, SetArenaSize(4096))
			require.NoError(t, err)
			require.NoError(t, q.EnqueueString("A-new"), "the queue refuses writes")
			corrupt := readTagged(t, q, "A", 200)
			if drained {
				require.Zero(t, corrupt, "nothing unread was lost")
				_, err = os.Stat(filepath.Join(dirA, fmt.Sprintf("damaged-%d.bq", last)))
				require.NoError(t, err, "the foreign file was not set aside")
			} else {
				require.Positive(t, corrupt, "the lost messages were not reported")
			}
			require.NoError(t, q.EnqueueString("A-newer"))
			require.NoError(t, q.Close())

			q, err = NewQueue(dirA, SetArenaSize(4096))
			require.NoError(t, err)
			defer func() { require.NoError(t, q.Close()) }()
			msg, err := q.DequeueString()
			require.NoError(t, err)
			require.Equal(t, "A-newer", msg)
		})
	}
}

// The tail's arena set aside twice under one number: the second file
// does not replace the first (damaged-<n>-1.bq), both stay for
// inspection, Inspect lists them, and the queue takes writes after each.
func TestSetAsideTwiceKeepsBoth(t *testing.T) {
	dirA, dirB := t.TempDir(), taggedQueue(t, "B")
	q, err := NewQueue(dirA, SetArenaSize(4096))
	require.NoError(t, err)
	enqueueN(t, q, "A", 0, 100)
	require.Zero(t, readTagged(t, q, "A", 200))
	require.NoError(t, q.Flush()) // reclaims the arenas read
	require.NoError(t, q.Close())
	last := lastArena(t, dirA)
	foreign, err := os.ReadFile(filepath.Join(dirB, arenaName(last)))
	require.NoError(t, err, "queue B has no arena %d", last)

	var kept [][]byte
	for round := range 2 {
		// Another copy of B's file each round, told apart by a byte
		// past B's records, which no read looks at.
		planted := slices.Clone(foreign)
		planted[len(planted)-1] = byte(round + 1)
		kept = append(kept, planted)
		require.NoError(t, os.WriteFile(filepath.Join(dirA, arenaName(last)), planted, 0o644))

		q, err := NewQueue(dirA, SetArenaSize(4096))
		require.NoError(t, err)
		require.NoError(t, q.EnqueueString(fmt.Sprintf("A-round-%d", round)), "round %d: the queue refuses writes", round)
		require.Zero(t, readTagged(t, q, "A", 10), "round %d", round)
		require.NoError(t, q.Flush())
		require.NoError(t, q.Close())
		require.Equal(t, last, lastArena(t, dirA), "round %d: the tail left arena %d; the test needs it there", round, last)
	}

	for k, want := range kept {
		got, err := os.ReadFile(filepath.Join(dirA, setAsideName(last, k)))
		require.NoError(t, err, "set-aside file %d", k)
		require.Equal(t, want, got, "set-aside file %d was replaced", k)
	}
	in, err := Inspect(dirA)
	require.NoError(t, err)
	require.ElementsMatch(t, []string{setAsideName(last, 0), setAsideName(last, 1)}, in.Info().SetAside)
	require.NoError(t, in.Close())

	q, err = NewQueue(dirA, SetArenaSize(4096))
	require.NoError(t, err, "set-aside files of both forms must not stop an open")
	require.NoError(t, q.Close())
}

// Recovery deletes arena files where no committed record of the queue
// can be: below the reclaim watermark (an interrupted reclaim) and past
// the tail (an interrupted write). A file there whose intact header
// names another queue, copied in by mistake, is set aside instead, with
// its content; one of this queue's own arenas under another number (a
// spare renamed into place just before a crash) is still deleted.
func TestRecoveryNeverDeletesAnotherQueuesArena(t *testing.T) {
	dirB := taggedQueue(t, "B")
	foreign, err := os.ReadFile(filepath.Join(dirB, arenaName(0)))
	require.NoError(t, err)

	for _, tc := range []struct {
		name    string
		drained bool   // A read everything and reclaimed its arenas
		at      uint64 // the arena name the file is planted under; past the tail when not drained
		own     bool   // plant A's own arena 0 instead of B's
		newest  bool   // plant over A's newest arena, whose flushed records are then lost
	}{
		{name: "past the tail"},
		{name: "over the newest arena", newest: true},
		{name: "below the watermark", drained: true, at: 0},
		{name: "own arena past the tail", own: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dirA := t.TempDir()
			q, err := NewQueue(dirA, SetArenaSize(4096))
			require.NoError(t, err)
			enqueueN(t, q, "A", 0, 100) // arenas 0 to 3
			if tc.drained {
				require.Zero(t, readTagged(t, q, "A", 200))
				require.NoError(t, q.Flush()) // reclaims the arenas read
			}
			require.NoError(t, q.Close())
			switch {
			case tc.newest:
				// Recovery's tail then ends in the arena before it,
				// and the planted file lies past it, below the
				// tail the index recorded.
				tc.at = lastArena(t, dirA)
			case !tc.drained:
				tc.at = lastArena(t, dirA) + 2 // past the tail, and past what the index recorded
			}
			_, err = os.Stat(filepath.Join(dirA, arenaName(tc.at)))
			require.Equal(t, tc.newest, err == nil, "the test plants a file where the queue has none, or over its newest arena: %v", err)
			planted := foreign
			if tc.own {
				planted, err = os.ReadFile(filepath.Join(dirA, arenaName(0)))
				require.NoError(t, err)
			}
			require.NoError(t, os.WriteFile(filepath.Join(dirA, arenaName(tc.at)), planted, 0o644))

			q, err = NewQueue(dirA, SetArenaSize(4096))
			require.NoError(t, err)
			corrupt := readTagged(t, q, "A", 200) // the queue's own messages, and never B's
			if tc.newest {
				require.Positive(t, corrupt, "the flushed messages of the replaced arena were lost silently")
			} else {
				require.Zero(t, corrupt)
			}
			require.NoError(t, q.EnqueueString("A-new"))
			msg, err := q.DequeueString()
			require.NoError(t, err)
			require.Equal(t, "A-new", msg)
			require.NoError(t, q.Close())

			_, err = os.Stat(filepath.Join(dirA, arenaName(tc.at)))
			require.ErrorIs(t, err, os.ErrNotExist, "the planted file is still under the arena's name")
			kept, err := os.ReadFile(filepath.Join(dirA, setAsideName(tc.at, 0)))
			if tc.own {
				require.ErrorIs(t, err, os.ErrNotExist, "the queue's own leftover arena was set aside, not deleted")
				return
			}
			require.NoError(t, err, "another queue's file was deleted")
			require.Equal(t, foreign, kept)
		})
	}
}

// When the bottom of the arenas was lost (cutLostBottom), another queue's
// file among them is set aside too: a crash image taken before the first
// flush, whose arena 0 is gone, with another queue's file at arena 1.
func TestLostBottomKeepsAnotherQueuesArena(t *testing.T) {
	dirB := taggedQueue(t, "B")
	foreign, err := os.ReadFile(filepath.Join(dirB, arenaName(1)))
	require.NoError(t, err)

	live, img := t.TempDir(), t.TempDir()
	q, err := NewQueue(live, manualFlush...)
	require.NoError(t, err)
	enqueueN(t, q, "A", 0, 40) // arenas 0 to 3, nothing flushed
	copyDir(t, live, img)
	require.NoError(t, q.Close())

	require.NoError(t, os.Remove(filepath.Join(img, arenaName(0))))
	require.NoError(t, os.WriteFile(filepath.Join(img, arenaName(1)), foreign, 0o644))
	q, err = NewQueue(img, SetArenaSize(4096))
	require.NoError(t, err)
	require.NoError(t, q.EnqueueString("A-new"))
	require.NoError(t, q.Close())
	kept, err := os.ReadFile(filepath.Join(img, setAsideName(1, 0)))
	require.NoError(t, err, "cutting the lost bottom deleted another queue's file")
	require.Equal(t, foreign, kept)
}

// A FIFO at an arena name recovery removes does not block NewQueue: the
// look at its header opens it without waiting for a writer.
func TestFIFOAtLeftoverArenaName(t *testing.T) {
	dir := t.TempDir()
	q, err := NewQueue(dir, SetArenaSize(4096))
	require.NoError(t, err)
	enqueueN(t, q, "A", 0, 100)
	require.NoError(t, q.Close())
	fifo := filepath.Join(dir, arenaName(lastArena(t, dir)+2))
	require.NoError(t, syscall.Mkfifo(fifo, 0o644))

	err = runPastFIFO(t, fifo, func() error {
		q, err := NewQueue(dir, SetArenaSize(4096))
		if err == nil {
			err = errors.Join(q.EnqueueString("A-new"), q.Close())
		}
		return err
	})
	require.NoError(t, err)
}

// runPastFIFO runs f, which must not block on the FIFO at fifo (an open
// for reading waits for a writer unless O_NONBLOCK), and returns what f
// returned. When f has not returned within a minute the test fails,
// after a writer has unblocked f so that its goroutine ends.
func runPastFIFO[T any](t *testing.T, fifo string, f func() T) T {
	t.Helper()
	done := make(chan T, 1)
	go func() { done <- f() }()
	select {
	case v := <-done:
		return v
	case <-time.After(time.Minute):
		w, err := os.OpenFile(fifo, os.O_WRONLY, 0)
		require.NoError(t, err)
		require.NoError(t, w.Close())
		<-done
		t.Fatalf("blocked opening the FIFO %s", fifo)
		panic("unreachable")
	}
}

// A set-aside whose rename fails (ENOSPC: a new directory entry may need
// a block where an unlink does not) fails NewQueue, with the file left
// where it was and its content kept; the next open sets it aside. Left
// in place under a live queue, the file would be replaced by the first
// spare or prepared arena renamed to its name.
func TestSetAsideRenameFails(t *testing.T) {
	dirA, dirB := taggedQueue(t, "A"), taggedQueue(t, "B")
	foreign, err := os.ReadFile(filepath.Join(dirB, arenaName(0)))
	require.NoError(t, err)
	at := lastArena(t, dirA) + 2
	planted := filepath.Join(dirA, arenaName(at))
	require.NoError(t, os.WriteFile(planted, foreign, 0o644))

	fs := newFaultFS()
	fs.failNth(callRename, 1, false, syscall.ENOSPC)
	_, err = NewQueue(dirA, append(manualFlush, withFS(fs))...)
	require.ErrorIs(t, err, syscall.ENOSPC)
	require.Equal(t, 1, fs.count(callRename), "the set-aside was not tried")
	kept, err := os.ReadFile(planted)
	require.NoError(t, err, "the file is not where it was")
	require.Equal(t, foreign, kept)

	q, err := NewQueue(dirA, manualFlush...)
	require.NoError(t, err)
	require.Zero(t, readTagged(t, q, "A", 200))
	require.NoError(t, q.Close())
	kept, err = os.ReadFile(filepath.Join(dirA, setAsideName(at, 0)))
	require.NoError(t, err, "the next open did not set the file aside")
	require.Equal(t, foreign, kept)
}

// createLogFS is logFS that logs creates too: "create arena-3.bq".
type createLogFS struct{ *logFS }

func (c createLogFS) create(d *queueDir, name string) (*os.File, error) {
	c.add("create " + name)
	return c.logFS.create(d, name)
}

// The tail's next arena name held another queue's file, which recovery
// set aside: a directory fsync covers that rename before a new file
// takes the name, or a power loss could keep the new file and lose the
// rename, and with it the other queue's file.
func TestSetAsideDurableBeforeNameReused(t *testing.T) {
	dirA, dirB := taggedQueue(t, "A"), taggedQueue(t, "B")
	foreign, err := os.ReadFile(filepath.Join(dirB, arenaName(0)))
	require.NoError(t, err)
	at := lastArena(t, dirA) + 1 // the next arena the writer makes
	name := arenaName(at)
	require.NoError(t, os.WriteFile(filepath.Join(dirA, name), foreign, 0o644))

	fs := createLogFS{&logFS{}}
	q, err := NewQueue(dirA, append(manualFlush, withFS(fs))...)
	require.NoError(t, err)
	enqueueN(t, q, "A", 100, 60) // reaches arena at
	require.NoError(t, q.Close())

	log := fs.take()
	aside := slices.Index(log, "rename "+name+" "+setAsideName(at, 0))
	require.NotEqual(t, -1, aside, "the file was not set aside: %q", log)
	reuse := slices.IndexFunc(log[aside+1:], func(s string) bool {
		return s == "create "+name || (strings.HasPrefix(s, "rename ") && strings.HasSuffix(s, " "+name))
	})
	require.NotEqual(t, -1, reuse, "arena %d was not made anew: %q", at, log)
	require.Contains(t, log[aside+1:aside+1+reuse], "syncdir", "no directory fsync between the set-aside and the new file: %q", log)
	kept, err := os.ReadFile(filepath.Join(dirA, setAsideName(at, 0)))
	require.NoError(t, err)
	require.Equal(t, foreign, kept)
}

// taggedQueue makes a closed queue of 4 KiB arenas holding 100 messages
// tagged tag (arenas 0 to 3) and returns its directory.
func taggedQueue(t *testing.T, tag string) string {
	t.Helper()
	dir := t.TempDir()
	q, err := NewQueue(dir, SetArenaSize(4096))
	require.NoError(t, err)
	enqueueN(t, q, tag, 0, 100)
	require.NoError(t, q.Close())
	return dir
}

// lastArena returns the highest arena number in dir.
func lastArena(t *testing.T, dir string) uint64 {
	t.Helper()
	last, found := uint64(0), false
	entries, err := os.ReadDir(dir)
	require.NoError(t, err)
	for _, e := range entries {
		if id, ok := parseFileNumber(e.Name(), "arena-"); ok {
			last, found = max(last, id), true
		}
	}
	require.True(t, found, "no arena in %s", dir)
	return last
}

// drainedQueue makes a queue of 100 messages in 4 KiB arenas in a new
// directory, reads them all (a consumer "slow" created first reads
// nothing when withSlow), flushes and closes it, and returns the
// directory and its last arena's number.
func drainedQueue(t *testing.T, tag string, withSlow bool) (string, uint64) {
	t.Helper()
	dir := t.TempDir()
	q, err := NewQueue(dir, SetArenaSize(4096))
	require.NoError(t, err)
	if withSlow {
		_, err := q.NewConsumer("slow")
		require.NoError(t, err)
	}
	enqueueN(t, q, tag, 0, 100)
	require.Zero(t, readTagged(t, q, tag, 200))
	require.NoError(t, q.Flush())
	require.NoError(t, q.Close())
	return dir, lastArena(t, dir)
}

// Setting the only arena aside must not hide another loss: a consumer
// that had read nothing, whose arenas were deleted, is told (ErrCorrupt),
// and Inspect shows the same as the queue reads (FuzzInspect's check).
// A review found the consumer moved to the tail silently: no arena left
// had meant "everything was reclaimed".
func TestTailArenaSetAsideKeepsLossReport(t *testing.T) {
	dirA, last := drainedQueue(t, "A", true)
	dirB, lastB := drainedQueue(t, "B", false)
	require.Equal(t, last, lastB)
	for id := range last {
		require.NoError(t, os.Remove(filepath.Join(dirA, arenaName(id))))
	}
	data, err := os.ReadFile(filepath.Join(dirB, arenaName(last)))
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(filepath.Join(dirA, arenaName(last)), data, 0o644))

	in, err := Inspect(dirA)
	require.NoError(t, err)
	inspected := inspectMessages(t, in, "slow")
	require.NoError(t, in.Close())
	got, ok := fuzzQueueRead(t, inspectCopy(t, dirA), "slow")
	require.True(t, ok)
	require.Equal(t, inspected, got, "Inspect and the queue disagree")
	require.Contains(t, got, inspectCorrupt, "the slow consumer's loss was not reported")
}

// A tail arena that must be set aside (another queue's, or of the wrong
// size) whose rename fails: NewQueue fails with the error rather than
// open a queue whose every Enqueue fails on the file left at the arena's
// name (a review found that for the wrong size: get's failed rename still
// read as damage); once the fault is gone the queue opens and takes
// messages.
func TestTailArenaSetAsideRenameFails(t *testing.T) {
	for _, damage := range []string{"foreign", "size"} {
		t.Run(damage, func(t *testing.T) {
			dir, last := drainedQueue(t, "A", false)
			path := filepath.Join(dir, arenaName(last))
			if damage == "size" {
				require.NoError(t, os.Truncate(path, 1000))
			} else {
				other, _ := drainedQueue(t, "B", false)
				data, err := os.ReadFile(filepath.Join(other, arenaName(last)))
				require.NoError(t, err)
				require.NoError(t, os.WriteFile(path, data, 0o644))
			}
			fs := newFaultFS()
			fs.failNth(callRename, 1, true, syscall.EIO)
			_, err := NewQueue(dir, SetArenaSize(4096), withFS(fs))
			require.ErrorIs(t, err, syscall.EIO)
			fs.heal()
			q, err := NewQueue(dir, SetArenaSize(4096), withFS(fs))
			require.NoError(t, err)
			require.NoError(t, q.EnqueueString("A-new"))
			msg, err := q.DequeueString()
			require.NoError(t, err)
			require.Equal(t, "A-new", msg)
			require.NoError(t, q.Close())
		})
	}
}

// readTagged reads q until ErrEmptyQueue, at most bound times, requires
// every message it returns to be one of tag's, and returns how many reads
// reported ErrCorrupt.
func readTagged(t *testing.T, q *Queue, tag string, bound int) (corrupt int) {
	t.Helper()
	for range bound {
		msg, err := q.Dequeue()
		if errors.Is(err, ErrEmptyQueue) {
			return corrupt
		}
		if err != nil {
			require.ErrorIs(t, err, ErrCorrupt)
			corrupt++
			continue
		}
		require.True(t, strings.HasPrefix(string(msg), tag+"-"), "read %q, not a message of %s", msg, tag)
	}
	require.FailNow(t, "consumer stuck", "no ErrEmptyQueue after %d reads", bound)
	return corrupt
}

// A file at the name of the next arena, which this queue did not make,
// is not truncated: the Enqueue that would create the arena fails, the
// file keeps its content, and the queue keeps working once it is gone.
func TestArenaCreateNeverTruncates(t *testing.T) {
	q, dir := openTestQueue(t, SetArenaSize(4096))
	enqueueN(t, q, "A", 0, 5) // arena 0
	planted := filepath.Join(dir, arenaName(1))
	require.NoError(t, os.WriteFile(planted, []byte("someone else's"), 0o644))
	var err error
	for i := 5; i < 40 && err == nil; i++ {
		err = q.Enqueue(tagged("A", i))
	}
	require.ErrorIs(t, err, os.ErrExist)
	got, rerr := os.ReadFile(planted)
	require.NoError(t, rerr)
	require.Equal(t, "someone else's", string(got))
	require.NoError(t, os.Remove(planted))
	require.NoError(t, q.Enqueue([]byte("after")))
}

// The lock is on the directory itself: there is no file whose removal
// lets a second owner in, and a directory renamed under its owner stays
// locked under its new name.
func TestLockIsOnTheDirectory(t *testing.T) {
	q, dir := openTestQueue(t, SetArenaSize(4096))
	require.NoError(t, q.EnqueueString("x"))
	entries, err := os.ReadDir(dir)
	require.NoError(t, err)
	for _, e := range entries {
		require.NotEqual(t, legacyLockFileName, e.Name(), "a lock file was made")
	}
	_, err = NewQueue(dir)
	require.ErrorIs(t, err, ErrLocked)

	moved := dir + "-moved"
	require.NoError(t, os.Rename(dir, moved))
	_, err = NewQueue(moved)
	require.ErrorIs(t, err, ErrLocked, "the renamed directory is still the locked one")
	// The queue follows its directory: it keeps working in the new place.
	require.NoError(t, q.EnqueueString("y"))
	require.NoError(t, q.Flush())
}

// A lock file left by an earlier version is ignored: the queue opens.
func TestLegacyLockFileIgnored(t *testing.T) {
	q, dir := openTestQueue(t)
	require.NoError(t, q.EnqueueString("x"))
	require.NoError(t, q.Close())
	require.NoError(t, os.WriteFile(filepath.Join(dir, legacyLockFileName), nil, 0o644))
	q = openTestQueueIn(t, dir)
	msg, err := q.DequeueString()
	require.NoError(t, err)
	require.Equal(t, "x", msg)
}

// NewQueue refuses a path that is not a directory, and an empty path,
// with an error and without touching anything.
func TestNewQueueOnNonDirectory(t *testing.T) {
	file := filepath.Join(t.TempDir(), "file")
	require.NoError(t, os.WriteFile(file, []byte("data"), 0o644))
	_, err := NewQueue(file)
	require.ErrorIs(t, err, syscall.ENOTDIR)
	got, err := os.ReadFile(file)
	require.NoError(t, err)
	require.Equal(t, "data", string(got))

	_, err = NewQueue("")
	require.ErrorIs(t, err, os.ErrInvalid)
}

// A file system without fallocate (ramfs here; ext2 in TestDiskFull)
// holds a queue: blocks are reserved by writing the range.
func TestQueueOnRamfs(t *testing.T) {
	dir := t.TempDir()
	out, err := exec.Command("mount", "-t", "ramfs", "ramfs", dir).CombinedOutput()
	if err != nil {
		t.Skipf("cannot mount a ramfs (needs root and mount(8)): %v: %s", err, out)
	}
	t.Cleanup(func() {
		out, err := exec.Command("umount", dir).CombinedOutput()
		require.NoError(t, err, "umount %s: %s", dir, out)
	})
	q, err := NewQueue(filepath.Join(dir, "q"), SetArenaSize(4096))
	require.NoError(t, err)
	enqueueN(t, q, "A", 0, 100)
	require.NoError(t, q.Close())
	requireHolds(t, filepath.Join(dir, "q"), "A", 100)
}

// A NewQueue whose index cannot be made leaves no temporary file behind,
// and the next one makes the queue.
func TestFailedIndexCreateLeavesNothing(t *testing.T) {
	dir := t.TempDir()
	fs := newFaultFS()
	fs.failNth(callAllocate, 1, false, syscall.EOPNOTSUPP)
	_, err := NewQueue(dir, withFS(fs))
	require.ErrorIs(t, err, syscall.EOPNOTSUPP)
	entries, err := os.ReadDir(dir)
	require.NoError(t, err)
	require.Empty(t, entries, "a failed NewQueue left files")
	q := openTestQueueIn(t, dir)
	require.NoError(t, q.EnqueueString("x"))
}

// TestListingsAgree checks that listAt (getdents on Linux) and listAtFile
// (package os, what darwin uses) list the same names, "." and ".." left
// out, in an empty directory (a listing, not nil: queueDir.listed) and
// in one of more entries than one getdents call returns.
func TestListingsAgree(t *testing.T) {
	dir := t.TempDir()
	d, err := openQueueDir(dir)
	require.NoError(t, err)
	defer func() { require.NoError(t, d.close()) }()
	for _, n := range []int{0, 3, 600} {
		for i := range n {
			name := fmt.Sprintf("%s-%04d", strings.Repeat("x", 100), i)
			if _, err := os.Stat(filepath.Join(dir, name)); err == nil {
				continue
			}
			require.NoError(t, os.WriteFile(filepath.Join(dir, name), nil, 0o644))
		}
		got, err := listAt(d.f)
		require.NoError(t, err)
		want, err := listAtFile(d.f)
		require.NoError(t, err)
		require.NotNil(t, got)
		require.NotNil(t, want)
		slices.Sort(got)
		slices.Sort(want)
		require.Equal(t, want, got)
		require.Len(t, got, n)
	}
}

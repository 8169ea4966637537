package bigqueue

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// Tests of retention: SetMaxBytes, SetMaxAge and ErrDropped.

// fakeClock is a wall clock that tests move by hand.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func newFakeClock() *fakeClock { return &fakeClock{t: time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)} }

func (c *fakeClock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// withClock makes a queue read the wall clock from c.
func withClock(c *fakeClock) Option {
	return func(o *options) error {
		o.now = c.now
		return nil
	}
}

// manualFlush are the options of a queue that syncs only when told.
var manualFlush = []Option{SetArenaSize(4096), SetPeriodicFlushOps(0), SetPeriodicFlushDuration(0)}

var droppedCount = regexp.MustCompile(`retention removed (at least )?(\d+) messages?`)

// requireDropped reads r once and checks that it reports n dropped
// messages.
func requireDropped(t *testing.T, r interface{ Dequeue() ([]byte, error) }, n uint64) {
	t.Helper()
	_, err := r.Dequeue()
	require.ErrorIs(t, err, ErrDropped)
	m := droppedCount.FindStringSubmatch(err.Error())
	require.NotNil(t, m, "%v", err)
	require.Equal(t, strconv.FormatUint(n, 10), m[2], "%v", err)
}

// A consumer that stopped reading loses the oldest arenas once the stored
// data passes MaxBytes; its next read says how many, the reads after it go
// on from the oldest message left, and a consumer that had read them
// loses nothing.
func TestRetentionMaxBytes(t *testing.T) {
	const maxBytes = 10000
	q, _ := openTestQueue(t, append(manualFlush, SetMaxBytes(maxBytes))...)
	slow, err := q.NewConsumer("slow")
	require.NoError(t, err)
	first, err := slow.Dequeue()
	require.ErrorIs(t, err, ErrEmptyQueue)
	require.Nil(t, first)
	// The default consumer keeps up; slow reads one message, then stops.
	// Enqueues that start an arena have the background flusher apply
	// retention; the Flush below finishes it.
	for i := uint64(1); i <= 100; i++ {
		enqueueNumbered(t, q, i, i, 200)
		_, err := q.Dequeue()
		require.NoError(t, err)
		if i == 1 {
			msg, err := slow.Dequeue()
			require.NoError(t, err)
			require.EqualValues(t, 1, numberOf(t, msg))
		}
	}
	require.NoError(t, q.Flush())
	s := q.Stats()
	require.LessOrEqual(t, s.Bytes, int64(maxBytes))
	require.Greater(t, s.OldestSeq, uint64(2))
	lost := s.OldestSeq - 2
	require.Equal(t, map[string]uint64{"slow": lost, defaultConsumerKey: 0}, s.Dropped)
	require.Equal(t, s.OldestSeq-1, s.RetentionRemoved)
	require.Equal(t, s.OldestSeq, slow.Position(), "Position names the next message it will read")
	require.EqualValues(t, 101-s.OldestSeq, slow.Len())
	require.True(t, q.IsEmpty())

	requireDropped(t, slow, lost)
	for want := s.OldestSeq; want <= 100; want++ {
		msg, err := slow.Dequeue()
		require.NoError(t, err)
		require.Equal(t, want, numberOf(t, msg))
	}
	_, err = slow.Dequeue()
	require.ErrorIs(t, err, ErrEmptyQueue)
	require.Equal(t, lost, q.Stats().Dropped["slow"], "the count stays")
}

// The arena holding the newest message always stays, whatever the limit,
// and so does every arena the last flush did not cover.
func TestRetentionKeepsNewest(t *testing.T) {
	for _, size := range []int{100, 3000, 9000} { // records spanning arenas too
		t.Run(fmt.Sprintf("size=%d", size), func(t *testing.T) {
			q, _ := openTestQueue(t, append(manualFlush, SetMaxBytes(1))...)
			c, err := q.NewConsumer("c")
			require.NoError(t, err)
			enqueueNumbered(t, q, 1, 60, size)
			require.NoError(t, q.Flush())
			s := q.Stats()
			require.Positive(t, s.Messages, "the newest message stays")
			require.EqualValues(t, 61, s.NextSeq)
			require.LessOrEqual(t, s.ArenasOnDisk, 1+(size+recordHeaderSize)/(4096-arenaHeaderSize)+1)
			requireDropped(t, c, s.OldestSeq-1)
			require.EqualValues(t, 60, lastNumber(t, c))

			// Arenas a flush covers go: each new arena also asks the
			// background flusher for one under retention, so the explicit
			// Flush may find that done already; either way the oldest
			// message moves past the first round's.
			enqueueNumbered(t, q, 61, 120, size)
			require.NoError(t, q.Flush())
			after := q.Stats()
			require.Greater(t, after.OldestSeq, s.OldestSeq)
			require.Positive(t, after.Messages, "the newest message stays")
			require.Greater(t, after.OldestSeq, uint64(61), "c, at 61, lost messages to retention")
			requireDropped(t, c, after.OldestSeq-61)
			require.EqualValues(t, 120, lastNumber(t, c))
		})
	}
}

// The drop is reported once, also by a NewQueue after a Close or a crash
// overflow enqueues messages 1 to 100 of 200 bytes into q, opened with
// SetMaxBytes(6000), flushes, and returns the oldest message retention
// left, which is past the first.
func overflow(t *testing.T, q *Queue) uint64 {
	t.Helper()
	enqueueNumbered(t, q, 1, 100, 200)
	require.NoError(t, q.Flush())
	oldest := q.Stats().OldestSeq
	require.Greater(t, oldest, uint64(1))
	return oldest
}

// in between, and not again after it was reported.
func TestRetentionNoticeSurvivesReopen(t *testing.T) {
	for _, crash := range []bool{false, true} {
		t.Run(fmt.Sprintf("crash=%v", crash), func(t *testing.T) {
			opts := append(manualFlush, SetMaxBytes(6000))
			q, dir := openTestQueue(t, opts...)
			slow, err := q.NewConsumer("slow")
			require.NoError(t, err)
			oldest := overflow(t, q)
			require.True(t, slow.st.drop.pending)
			q = reopen(t, q, dir, crash, opts...)
			slow, err = q.NewConsumer("slow")
			require.NoError(t, err)
			require.Equal(t, oldest, slow.Position())
			require.Equal(t, map[string]uint64{"slow": oldest - 1}, q.Stats().Dropped, "counted at open")
			// A second reopen before the read still knows.
			require.NoError(t, q.Close())
			q = openTestQueueIn(t, dir, opts...)
			slow, err = q.NewConsumer("slow")
			require.NoError(t, err)
			requireDropped(t, slow, oldest-1)
			msg, err := slow.Dequeue()
			require.NoError(t, err)
			require.Equal(t, oldest, numberOf(t, msg))
			require.NoError(t, q.Close())
			q = openTestQueueIn(t, dir, opts...)
			slow, err = q.NewConsumer("slow")
			require.NoError(t, err)
			msg, err = slow.Dequeue()
			require.NoError(t, err, "reported once")
			require.Equal(t, oldest+1, numberOf(t, msg))
			require.Equal(t, map[string]uint64{"slow": 0}, q.Stats().Dropped)
		})
	}
}

// Drops add up until the consumer reads; Seek and FromConsumer discard
// the notice (the consumer was moved on purpose), DeleteConsumer with it.
func TestRetentionNoticeAccumulatesAndClears(t *testing.T) {
	q, _ := openTestQueue(t, append(manualFlush, SetMaxBytes(6000))...)
	slow, err := q.NewConsumer("slow")
	require.NoError(t, err)
	seeker, err := q.NewConsumer("seeker")
	require.NoError(t, err)
	copied, err := q.NewConsumer("copied")
	require.NoError(t, err)
	enqueueNumbered(t, q, 1, 60, 200)
	require.NoError(t, q.Flush())
	enqueueNumbered(t, q, 61, 120, 200)
	require.NoError(t, q.Flush())
	oldest := q.Stats().OldestSeq
	require.Equal(t, oldest-1, q.Stats().Dropped["slow"])
	require.NoError(t, seeker.Seek(oldest+1))
	_, err = q.FromConsumer("copied", slow)
	require.NoError(t, err)
	requireDropped(t, slow, oldest-1)
	msg, err := seeker.Dequeue()
	require.NoError(t, err)
	require.Equal(t, oldest+1, numberOf(t, msg))
	msg, err = copied.Dequeue()
	require.NoError(t, err)
	require.Equal(t, oldest, numberOf(t, msg))
	require.Equal(t, oldest-1, q.Stats().Dropped["seeker"], "Stats keeps the count")
}

// With no consumer, retention moves the oldest message, where a new
// consumer starts.
func TestRetentionWithoutConsumers(t *testing.T) {
	q, _ := openTestQueue(t, append(manualFlush, SetMaxBytes(6000))...)
	enqueueNumbered(t, q, 1, 100, 200)
	require.NoError(t, q.Flush())
	s := q.Stats()
	require.Greater(t, s.OldestSeq, uint64(1))
	require.Equal(t, s.OldestSeq-1, s.RetentionRemoved)
	require.Empty(t, s.Dropped)
	c, err := q.NewConsumer("new")
	require.NoError(t, err)
	msg, err := c.Dequeue()
	require.NoError(t, err, "a new consumer lost nothing")
	require.Equal(t, s.OldestSeq, numberOf(t, msg))
}

// MaxAge: an arena goes when the next one was started more than MaxAge
// ago, by the flush after that, an idle one included; arena start times
// are stored, so a reopen keeps them.
func TestRetentionMaxAge(t *testing.T) {
	clock := newFakeClock()
	opts := append(manualFlush, SetMaxAge(time.Hour), withClock(clock))
	q, dir := openTestQueue(t, opts...)
	_, err := q.NewConsumer("c")
	require.NoError(t, err)
	// Arena 0 at 0:00, arena 1 at 0:10, arena 2 at 0:20 (4032 data bytes
	// each: 18 records of 216 bytes fill one and spill into the next).
	enqueueNumbered(t, q, 1, 18, 200)
	clock.add(10 * time.Minute)
	enqueueNumbered(t, q, 19, 37, 200)
	clock.add(10 * time.Minute)
	enqueueNumbered(t, q, 38, 56, 200)
	require.Equal(t, 3, q.Stats().ArenasOnDisk)
	require.NoError(t, q.Flush())
	require.EqualValues(t, 1, q.Stats().OldestSeq, "nothing is an hour old")

	require.NoError(t, q.Close())
	q = openTestQueueIn(t, dir, opts...)
	clock.add(55 * time.Minute) // 1:15: arena 1 started 65 minutes ago
	require.NoError(t, q.Flush(), "an idle flush applies retention too")
	s := q.Stats()
	require.Equal(t, 2, s.ArenasOnDisk, "arena 0 went, arena 1 stays")
	require.Greater(t, s.OldestSeq, uint64(18))
	c, err := q.NewConsumer("c")
	require.NoError(t, err)
	requireDropped(t, c, s.OldestSeq-1)

	clock.add(10 * time.Hour)
	require.NoError(t, q.Flush())
	s = q.Stats()
	require.Equal(t, 1, s.ArenasOnDisk, "the arena holding the newest message stays")
	msg, err := c.Dequeue()
	require.ErrorIs(t, err, ErrDropped)
	require.Nil(t, msg)
	require.EqualValues(t, 56, lastNumber(t, c))
}

// Close applies retention too.
func TestRetentionAtClose(t *testing.T) {
	opts := append(manualFlush, SetMaxBytes(6000))
	q, dir := openTestQueue(t, opts...)
	slow, err := q.NewConsumer("slow")
	require.NoError(t, err)
	enqueueNumbered(t, q, 1, 1, 200)
	_, err = slow.Dequeue()
	require.NoError(t, err)
	enqueueNumbered(t, q, 2, 100, 200)
	require.NoError(t, q.Close())
	require.Empty(t, q.am.mapped, "Close unmaps the arenas retention read")
	q = openTestQueueIn(t, dir, opts...)
	s := q.Stats()
	require.Greater(t, s.OldestSeq, uint64(2))
	slow, err = q.NewConsumer("slow")
	require.NoError(t, err)
	requireDropped(t, slow, s.OldestSeq-2)
}

// Retention racing readers, producers and flushes: every message a reader
// gets is the next one, or the first after an ErrDropped whose count is
// the gap; nothing is skipped silently, and the newest message always
// arrives.
func TestRetentionRacesReaders(t *testing.T) {
	seed := testSeed(t)
	t.Logf("seed %d", seed)
	const n = 3000
	q, _ := openTestQueue(t, SetArenaSize(4096), SetMaxBytes(8000), SetPeriodicFlushOps(50), SetPeriodicFlushDuration(time.Millisecond))
	names := []string{"a", "b", "c"}
	cons := make([]*Consumer, len(names))
	for i, name := range names {
		var err error
		cons[i], err = q.NewConsumer(name)
		require.NoError(t, err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	var wg sync.WaitGroup
	errs := make(chan error, len(names)+2)
	wg.Add(1)
	go func() { // the producer
		defer wg.Done()
		rng := rand.New(rand.NewPCG(seed, 1))
		for i := uint64(1); i <= n; i++ {
			if err := q.Enqueue(numbered(i, rng.IntN(400))); err != nil {
				errs <- err
				return
			}
		}
	}()
	stop := make(chan struct{})
	wg.Add(1)
	go func() { // explicit flushes besides the periodic ones
		defer wg.Done()
		for {
			select {
			case <-stop:
				return
			default:
			}
			if err := q.Flush(); err != nil {
				errs <- err
				return
			}
		}
	}()
	gaps := make([]uint64, len(names))
	var readers sync.WaitGroup
	for i, c := range cons {
		readers.Add(1)
		go func() {
			defer readers.Done()
			rng := rand.New(rand.NewPCG(seed, uint64(i)+2))
			want := uint64(1)
			for want <= n {
				var msg []byte
				var err error
				if rng.IntN(2) == 0 {
					msg, err = c.DequeueWait(ctx)
				} else {
					if msg, err = c.PeekWait(ctx); err == nil {
						_, err = c.Dequeue()
					}
				}
				if errors.Is(err, ErrDropped) {
					m := droppedCount.FindStringSubmatch(err.Error())
					k, _ := strconv.ParseUint(m[2], 10, 64)
					gaps[i] += k
					want += k
					continue
				}
				if err != nil {
					errs <- fmt.Errorf("consumer %s at %d: %w", c.Name(), want, err)
					return
				}
				if got := numberOfMsg(msg); got != want {
					errs <- fmt.Errorf("consumer %s: got message %d, want %d", c.Name(), got, want)
					return
				}
				want++
				if rng.IntN(50) == 0 {
					runtime.Gosched()
				}
			}
		}()
	}
	readers.Wait()
	close(stop)
	wg.Wait()
	close(errs)
	for err := range errs {
		require.NoError(t, err)
	}
	s := q.Stats()
	for i, name := range names {
		require.Equal(t, gaps[i], s.Dropped[name], "consumer %s: Stats counts what the errors said", name)
	}
	t.Logf("dropped per consumer %v, removed %d", s.Dropped, s.RetentionRemoved)
}

// numberOfMsg is numberOf for goroutines: 0 for a malformed message.
func numberOfMsg(msg []byte) uint64 {
	n, _ := messageID(0, msg)
	return n
}

// snapFS copies the queue directory when the first arena file is renamed
// or removed, while the watermark is durable and every file is still
// there: a power loss from then on keeps any subset of the removals.
type snapFS struct {
	fileSystem
	dir, to string
	taken   bool
	removed []string // arena files the reclaim renamed or removed
}

func (f *snapFS) snap(path string) {
	if !strings.HasPrefix(filepath.Base(path), "arena-") {
		return
	}
	if !f.taken {
		f.taken = true
		entries, err := os.ReadDir(f.dir)
		if err != nil {
			panic(err)
		}
		for _, e := range entries {
			b, err := os.ReadFile(filepath.Join(f.dir, e.Name()))
			if err != nil {
				panic(err)
			}
			if err := os.WriteFile(filepath.Join(f.to, e.Name()), b, 0o644); err != nil {
				panic(err)
			}
		}
	}
	f.removed = append(f.removed, filepath.Base(path))
}

func (f *snapFS) rename(d *queueDir, from, to string) error {
	f.snap(from)
	return f.fileSystem.rename(d, from, to)
}

func (f *snapFS) remove(d *queueDir, name string) error {
	f.snap(name)
	return f.fileSystem.remove(d, name)
}

// A power loss during a retention removal, with any subset of the
// removals surviving: the queue opens, the consumers whose messages went
// report how many, and everything else is read as it was, up to the
// newest message. A power loss before the watermark was durable drops
// nothing (the files are all there).
func TestRetentionPowerLoss(t *testing.T) {
	dir, snapDir := t.TempDir(), t.TempDir()
	fs := &snapFS{fileSystem: osFS{}, dir: dir, to: snapDir}
	q, err := NewQueue(dir, append(manualFlush, withFS(fs))...)
	require.NoError(t, err)
	_, err = q.NewConsumer("slow")
	require.NoError(t, err)
	fast, err := q.NewConsumer("fast")
	require.NoError(t, err)
	enqueueNumbered(t, q, 1, 120, 200)
	for i := 0; i < 110; i++ {
		_, err := fast.Dequeue()
		require.NoError(t, err)
	}
	require.NoError(t, q.Flush())
	require.NoError(t, q.Close())
	require.False(t, fs.taken, "no retention: nothing reclaimed (slow pins it)")
	before := t.TempDir()
	copyDir(t, dir, before)

	q, err = NewQueue(dir, append(manualFlush, withFS(fs), SetMaxBytes(8000))...)
	require.NoError(t, err)
	require.NoError(t, q.Flush())
	oldest := q.Stats().OldestSeq
	require.NoError(t, q.Close())
	require.True(t, fs.taken)
	require.GreaterOrEqual(t, len(fs.removed), 3)
	t.Logf("removed %v, oldest left %d", fs.removed, oldest)

	check := func(t *testing.T, img string, dropped bool) {
		q := openTestQueueIn(t, img, manualFlush...)
		slow, err := q.NewConsumer("slow")
		require.NoError(t, err)
		fast, err := q.NewConsumer("fast")
		require.NoError(t, err)
		from := uint64(1)
		if dropped {
			requireDropped(t, slow, oldest-1)
			from = oldest
		}
		for want := from; want <= 120; want++ {
			msg, err := slow.Dequeue()
			require.NoError(t, err, "message %d", want)
			require.Equal(t, want, numberOf(t, msg))
		}
		for want := uint64(111); want <= 120; want++ {
			msg, err := fast.Dequeue()
			require.NoError(t, err)
			require.Equal(t, want, numberOf(t, msg))
		}
		require.NoError(t, q.Enqueue(numbered(121, 10)), "the queue takes writes at once")
	}
	t.Run("before the watermark", func(t *testing.T) { check(t, before, false) })
	// Every subset of the removals, by bit mask.
	for mask := 0; mask < 1<<len(fs.removed); mask++ {
		t.Run(fmt.Sprintf("removed=%b", mask), func(t *testing.T) {
			img := t.TempDir()
			copyDir(t, snapDir, img)
			for i, name := range fs.removed {
				if mask&(1<<i) != 0 {
					require.NoError(t, os.Remove(filepath.Join(img, name)))
				}
			}
			check(t, img, true)
		})
	}
}

// copyDir copies the files of from into to.
func copyDir(t *testing.T, from, to string) {
	t.Helper()
	entries, err := os.ReadDir(from)
	require.NoError(t, err)
	for _, e := range entries {
		b, err := os.ReadFile(filepath.Join(from, e.Name()))
		require.NoError(t, err)
		require.NoError(t, os.WriteFile(filepath.Join(to, e.Name()), b, 0o644))
	}
}

// Arenas written before arena headers had a start time (0) are kept by
// MaxAge: their age is unknown.
func TestRetentionMaxAgeUnknownStart(t *testing.T) {
	clock := newFakeClock()
	opts := append(manualFlush, withClock(clock))
	q, dir := openTestQueue(t, opts...)
	enqueueNumbered(t, q, 1, 60, 200)
	require.NoError(t, q.Close())
	paths, err := filepath.Glob(filepath.Join(dir, "arena-*.bq"))
	require.NoError(t, err)
	require.Len(t, paths, 4)
	for _, p := range paths {
		b, err := os.ReadFile(p)
		require.NoError(t, err)
		h, err := decodeArenaHeader(b)
		require.NoError(t, err)
		require.Equal(t, clock.now().UnixNano(), h.started)
		h.started = 0 // as an older build wrote it
		h.encode(b)
		require.NoError(t, os.WriteFile(p, b, 0o644))
	}
	clock.add(100 * time.Hour)
	q = openTestQueueIn(t, dir, append(opts, SetMaxAge(time.Hour))...)
	require.NoError(t, q.Flush())
	require.EqualValues(t, 1, q.Stats().OldestSeq, "nothing removed")
	require.NoError(t, q.Enqueue(numbered(61, 5000))) // a new arena, with a start time
	clock.add(2 * time.Hour)
	require.NoError(t, q.Flush())
	require.EqualValues(t, 1, q.Stats().OldestSeq, "arenas go oldest first: one of unknown age keeps the ones after it")
}

// Retention applied by Close when one message spans whole arenas: the
// mark lies past the detached arenas, and the watermark Close stores may
// not stay below its arena, or the next open would take the drop for
// damage (ErrCorrupt instead of ErrDropped). Inspect agrees.
func TestRetentionAtCloseSpanningMessage(t *testing.T) {
	opts := append(append([]Option(nil), manualFlush...), SetMaxBytes(13000))
	q, dir := openTestQueue(t, opts...)
	_, err := q.NewConsumer("slow")
	require.NoError(t, err)
	require.NoError(t, q.EnqueueString("m0"))                      // arena 0
	require.NoError(t, q.Enqueue(bytes.Repeat([]byte{'x'}, 9000))) // arenas 0 to 2
	for range 40 {
		require.NoError(t, q.Enqueue(bytes.Repeat([]byte{'y'}, 100)))
	}
	require.NoError(t, q.Close())

	in, err := Inspect(dir)
	require.NoError(t, err)
	for _, c := range in.Info().Consumers {
		require.False(t, c.Lost, "Inspect: %q was dropped by retention, not lost", c.Name)
	}
	require.NoError(t, in.Close())
	q = openTestQueueIn(t, dir, opts...)
	slow, err := q.NewConsumer("slow")
	require.NoError(t, err)
	_, err = slow.Dequeue()
	require.ErrorIs(t, err, ErrDropped)
	require.NotErrorIs(t, err, ErrCorrupt)
	msg, err := slow.Dequeue()
	require.NoError(t, err)
	require.Equal(t, bytes.Repeat([]byte{'y'}, 100), msg)
}

package bigqueue

import (
	"bytes"
	"errors"
	"fmt"
	"hash/crc32"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// sweepSizes are message sizes around every boundary of an arena of size
// arenaSize: the header sizes, the data area per arena ± 16 bytes, and
// multiples of the arena, some larger than three arenas.
func sweepSizes(arenaSize int) []int {
	ds := arenaSize - arenaHeaderSize
	sizes := []int{0, 1, 2, 7, recordHeaderSize - 1, recordHeaderSize, recordHeaderSize + 1,
		arenaHeaderSize - 1, arenaHeaderSize, arenaHeaderSize + 1}
	for d := -16; d <= 16; d++ {
		sizes = append(sizes, ds-recordHeaderSize+d, arenaSize+d)
	}
	for _, k := range []int{2, 3, 5} {
		sizes = append(sizes, k*arenaSize-1, k*arenaSize, k*arenaSize+1, k*ds-recordHeaderSize)
	}
	return sizes
}

func TestRoundTripSweep(t *testing.T) {
	for _, arenaSize := range []int{os.Getpagesize(), 2 * os.Getpagesize(), 64 << 10} {
		t.Run(fmt.Sprintf("arena=%d", arenaSize), func(t *testing.T) {
			opts := []Option{SetArenaSize(arenaSize), SetMaxInMemArenas(3)}
			q, _ := openTestQueue(t, opts...)
			sizes := sweepSizes(arenaSize)
			// One message at a time, so each size starts at a new offset.
			for i, n := range sizes {
				msg := message(0, uint64(i), n)
				require.NoError(t, q.Enqueue(msg))
				got, err := q.Dequeue()
				require.NoError(t, err, "size %d", n)
				require.Equal(t, msg, got, "size %d", n)
				require.True(t, q.IsEmpty())
				requireInvariants(t, q)
			}
			// All at once, through the string API.
			for i, n := range sizes {
				require.NoError(t, q.EnqueueString(string(message(0, uint64(i), n))))
			}
			for i, n := range sizes {
				got, err := q.DequeueString()
				require.NoError(t, err, "size %d", n)
				require.Equal(t, string(message(0, uint64(i), n)), got, "size %d", n)
			}
			_, err := q.Dequeue()
			require.ErrorIs(t, err, ErrEmptyQueue)
		})
	}
}

// TestReopenSweep closes and reopens the queue after every step: messages
// written before the reopen are read after it, at every boundary.
func TestReopenSweep(t *testing.T) {
	arenaSize := os.Getpagesize()
	opts := []Option{SetArenaSize(arenaSize), SetMaxInMemArenas(3)}
	dir := t.TempDir()
	sizes := sweepSizes(arenaSize)
	for i, n := range sizes {
		q, err := NewQueue(dir, opts...)
		require.NoError(t, err)
		require.NoError(t, q.Enqueue(message(0, uint64(i), n)))
		require.NoError(t, q.Enqueue(message(0, uint64(i)+1000, 3)))
		require.NoError(t, q.Close())

		q, err = NewQueue(dir, opts...)
		require.NoError(t, err)
		requireInvariants(t, q)
		got, err := q.Dequeue()
		require.NoError(t, err, "size %d", n)
		require.Equal(t, message(0, uint64(i), n), got, "size %d", n)
		require.NoError(t, q.Close())

		q, err = NewQueue(dir, opts...)
		require.NoError(t, err)
		got, err = q.Dequeue()
		require.NoError(t, err)
		require.Equal(t, message(0, uint64(i)+1000, 3), got)
		require.True(t, q.IsEmpty())
		requireInvariants(t, q)
		require.NoError(t, q.Close())
	}
}

// TestBacklogAcrossReopen keeps a backlog of many arenas across reopens
// with a small mapping limit, mixing producers and readers.
func TestBacklogAcrossReopen(t *testing.T) {
	seed := uint64(time.Now().UnixNano())
	t.Logf("seed %d", seed)
	r := rand.New(rand.NewPCG(seed, 0))
	opts := []Option{SetArenaSize(8192), SetMaxInMemArenas(3)}
	q, dir := openTestQueue(t, opts...)
	var wrote, read uint64
	for round := 0; round < 20; round++ {
		for i := r.IntN(50); i > 0; i-- {
			require.NoError(t, q.Enqueue(message(0, wrote, r.IntN(20000))))
			wrote++
		}
		for i := r.IntN(50); i > 0 && read < wrote; i-- {
			got, err := q.Dequeue()
			require.NoError(t, err)
			require.Equal(t, message(0, read, len(got)), got)
			read++
		}
		requireInvariants(t, q)
		require.NoError(t, q.Close())
		q = openTestQueueIn(t, dir, opts...)
	}
	for ; read < wrote; read++ {
		got, err := q.Dequeue()
		require.NoError(t, err)
		require.Equal(t, message(0, read, len(got)), got)
	}
	require.True(t, q.IsEmpty())
}

func TestMappedArenasBounded(t *testing.T) {
	for _, limit := range []int{3, 5, 0} {
		t.Run(fmt.Sprintf("mem=%d", limit), func(t *testing.T) {
			q, _ := openTestQueue(t, SetArenaSize(4096), SetMaxInMemArenas(limit))
			big := message(0, 1, 10*4096) // spans more arenas than the limit
			for i := 0; i < 3; i++ {
				require.NoError(t, q.Enqueue(big))
				q.mu.Lock()
				n := len(q.am.mapped)
				q.mu.Unlock()
				if limit > 0 {
					require.LessOrEqual(t, n, limit)
				} else {
					require.Greater(t, n, 3, "no limit keeps arenas mapped")
				}
			}
			for i := 0; i < 3; i++ {
				got, err := q.Dequeue()
				require.NoError(t, err)
				require.Equal(t, big, got)
			}
		})
	}
}

// TestEvictionSyncsDirtyArena checks that an arena unmapped to make room
// was msynced first: it is clean and its bytes are in the file.
func TestEvictionSyncsDirtyArena(t *testing.T) {
	q, dir := openTestQueue(t, SetArenaSize(4096), SetMaxInMemArenas(3),
		SetPeriodicFlushDuration(0), SetPeriodicFlushOps(0))
	msg := message(0, 7, 4000)
	for i := 0; i < 8; i++ {
		require.NoError(t, q.Enqueue(msg))
	}
	q.mu.Lock()
	_, mapped := q.am.mapped[0]
	q.mu.Unlock()
	require.False(t, mapped, "arena 0 was evicted")
	raw, err := os.ReadFile(filepath.Join(dir, "arena-0.bq"))
	require.NoError(t, err)
	require.True(t, bytes.Contains(raw, msg[:3000]), "evicted arena's data is in its file")
}

func TestReclaimsConsumedArenas(t *testing.T) {
	const arenaSize = 4096
	q, dir := openTestQueue(t, SetArenaSize(arenaSize))
	msg := message(0, 3, 100)
	// 1,000 arenas' worth of messages, read as they are written.
	total := 1000*(arenaSize-arenaHeaderSize)/(recordHeaderSize+len(msg)) + 1
	for i := 0; i < total; i++ {
		require.NoError(t, q.Enqueue(msg))
		if i%7 == 6 {
			for !q.IsEmpty() {
				_, err := q.Dequeue()
				require.NoError(t, err)
			}
		}
	}
	for !q.IsEmpty() {
		_, err := q.Dequeue()
		require.NoError(t, err)
	}
	// A background flush may still pin arenas the last reads passed;
	// reclaiming skips those and the flush reclaims them when it ends.
	// Flush waits for any such flush, then reclaims what it left.
	require.NoError(t, q.Flush())
	arenas, spares, bytes := arenaFiles(t, dir)
	t.Logf("after 1000 arenas: %d arena files, %d spares, %d bytes", arenas, spares, bytes)
	require.Equal(t, 1, arenas, "only the tail's arena is left")
	require.LessOrEqual(t, spares, maxSpareArenas)
	require.LessOrEqual(t, bytes, int64(arenaSize*(1+maxSpareArenas)))
	q.mu.Lock()
	reclaimed := q.am.reclaimed
	q.mu.Unlock()
	require.GreaterOrEqual(t, reclaimed, uint64(999))
}

func arenaFiles(t *testing.T, dir string) (arenas, spares int, size int64) {
	entries, err := os.ReadDir(dir)
	require.NoError(t, err)
	for _, e := range entries {
		info, err := e.Info()
		if errors.Is(err, os.ErrNotExist) {
			continue // a spare that an idle background flush removed since the listing
		}
		require.NoError(t, err)
		switch {
		case strings.HasPrefix(e.Name(), "arena-"):
			arenas++
		case strings.HasPrefix(e.Name(), "spare-"):
			spares++
		default:
			continue
		}
		size += info.Size()
	}
	return arenas, spares, size
}

func TestConsumerPinsData(t *testing.T) {
	q, dir := openTestQueue(t, SetArenaSize(4096))
	slow, err := q.NewConsumer("slow")
	require.NoError(t, err)
	msg := message(0, 4, 1000)
	for i := 0; i < 100; i++ {
		require.NoError(t, q.Enqueue(msg))
	}
	for !q.IsEmpty() {
		_, err := q.Dequeue()
		require.NoError(t, err)
	}
	arenas, _, _ := arenaFiles(t, dir)
	require.Greater(t, arenas, 20, "the unread consumer pins every arena")

	got, err := slow.Dequeue()
	require.NoError(t, err)
	require.Equal(t, msg, got)

	require.NoError(t, q.DeleteConsumer("slow"))
	// Flush finishes any reclaiming a background flush's pins held back.
	require.NoError(t, q.Flush())
	arenas, _, _ = arenaFiles(t, dir)
	require.LessOrEqual(t, arenas, 1, "deleting the consumer frees its data")
	_, err = slow.Dequeue()
	require.ErrorIs(t, err, ErrNoConsumer)
	require.True(t, slow.IsEmpty())
}

func TestConsumersIndependentAndPersisted(t *testing.T) {
	opts := []Option{SetArenaSize(4096)}
	q, dir := openTestQueue(t, opts...)
	for i := 0; i < 50; i++ {
		require.NoError(t, q.EnqueueString(fmt.Sprint("m", i)))
	}
	a, err := q.NewConsumer("a")
	require.NoError(t, err)
	b, err := q.NewConsumer("b")
	require.NoError(t, err)
	again, err := q.NewConsumer("a")
	require.NoError(t, err)
	for i := 0; i < 10; i++ {
		s, err := a.DequeueString()
		require.NoError(t, err)
		require.Equal(t, fmt.Sprint("m", i), s)
	}
	s, err := again.DequeueString()
	require.NoError(t, err)
	require.Equal(t, "m10", s, "handles of one name share its position")
	for i := 0; i < 3; i++ {
		s, err := b.DequeueString()
		require.NoError(t, err)
		require.Equal(t, fmt.Sprint("m", i), s)
	}
	s, err = q.DequeueString()
	require.NoError(t, err)
	require.Equal(t, "m0", s, "the default consumer is independent")

	c, err := q.FromConsumer("c", a)
	require.NoError(t, err)
	s, err = c.DequeueString()
	require.NoError(t, err)
	require.Equal(t, "m11", s, "FromConsumer copies the position")
	require.Equal(t, []string{"__default__", "a", "b", "c"}, q.Consumers())

	require.NoError(t, q.Close())
	q = openTestQueueIn(t, dir, opts...)
	require.Equal(t, []string{"__default__", "a", "b", "c"}, q.Consumers())
	for name, want := range map[string]string{"a": "m11", "b": "m3", "c": "m12", "__default__": "m1"} {
		c, err := q.NewConsumer(name)
		require.NoError(t, err)
		s, err := c.DequeueString()
		require.NoError(t, err)
		require.Equal(t, want, s, "consumer %s after reopen", name)
	}
}

func TestConsumerErrors(t *testing.T) {
	q, _ := openTestQueue(t, SetArenaSize(4096))
	other, _ := openTestQueue(t, SetArenaSize(4096))
	oc, err := other.NewConsumer("x")
	require.NoError(t, err)

	_, err = q.FromConsumer("y", oc)
	require.ErrorIs(t, err, ErrDifferentQueues)
	_, err = q.FromConsumer("y", nil)
	require.ErrorIs(t, err, ErrNoConsumer)
	_, err = q.NewConsumer("")
	require.ErrorIs(t, err, ErrInvalidName)
	_, err = q.NewConsumer(strings.Repeat("n", MaxConsumerNameLen+1))
	require.ErrorIs(t, err, ErrInvalidName)
	long, err := q.NewConsumer(strings.Repeat("n", MaxConsumerNameLen))
	require.NoError(t, err)
	require.True(t, long.IsEmpty())
	require.ErrorIs(t, q.DeleteConsumer("nobody"), ErrNoConsumer)

	x, err := q.NewConsumer("x")
	require.NoError(t, err)
	require.NoError(t, q.DeleteConsumer("x"))
	_, err = q.FromConsumer("z", x)
	require.ErrorIs(t, err, ErrNoConsumer)
	_, err = x.DequeueString()
	require.ErrorIs(t, err, ErrNoConsumer)
}

func TestManyConsumersGrowIndex(t *testing.T) {
	opts := []Option{SetArenaSize(4096)}
	q, dir := openTestQueue(t, opts...)
	require.NoError(t, q.EnqueueString("hello"))
	const n = 100 // several times what the first index page holds
	for i := 0; i < n; i++ {
		_, err := q.NewConsumer(fmt.Sprint("c", i))
		require.NoError(t, err)
	}
	require.NoError(t, q.Flush())
	require.NoError(t, q.Close())
	q = openTestQueueIn(t, dir, opts...)
	require.Len(t, q.Consumers(), n, "no default consumer: no queue-level read happened")
	for i := 0; i < n; i++ {
		c, err := q.NewConsumer(fmt.Sprint("c", i))
		require.NoError(t, err)
		s, err := c.DequeueString()
		require.NoError(t, err)
		require.Equal(t, "hello", s)
	}
}

func TestDeleteDefaultConsumer(t *testing.T) {
	q, dir := openTestQueue(t, SetArenaSize(4096))
	for i := 0; i < 3; i++ {
		require.NoError(t, q.EnqueueString(fmt.Sprint(i)))
	}
	s, err := q.DequeueString()
	require.NoError(t, err)
	require.Equal(t, "0", s)
	require.NoError(t, q.DeleteConsumer(defaultConsumerKey))
	require.Empty(t, q.Consumers())
	require.False(t, q.IsEmpty(), "with no consumer the data stays")
	require.EqualValues(t, 3, q.Len(), "Len answers as a new consumer would")

	// The next queue-level read re-creates the default consumer at the
	// oldest stored message, which is still "0": nothing was reclaimed.
	for _, want := range []string{"0", "1"} {
		s, err = q.DequeueString()
		require.NoError(t, err)
		require.Equal(t, want, s)
	}
	require.Equal(t, []string{"__default__"}, q.Consumers())

	require.NoError(t, q.DeleteConsumer(defaultConsumerKey))
	require.NoError(t, q.Close())
	q = openTestQueueIn(t, dir, SetArenaSize(4096))
	require.Empty(t, q.Consumers(), "a deleted default consumer stays deleted across reopen")
	require.EqualValues(t, 3, q.Len())
	s, err = q.DequeueString()
	require.NoError(t, err)
	require.Equal(t, "0", s, "with no consumer, Close reclaims nothing")
}

// TestNewConsumerAfterReclaim: a consumer starts at the oldest message
// still stored: before a flush that is the first message ever written
// (reads do not reclaim); after a flush reclaimed the arenas the default
// consumer passed, the first message that starts in the oldest arena left.
func TestNewConsumerAfterReclaim(t *testing.T) {
	q, _ := openTestQueue(t, SetArenaSize(4096), SetPeriodicFlushOps(0), SetPeriodicFlushDuration(0))
	msg := make([]byte, 500)
	const size = recordHeaderSize + 500
	for i := 0; i < 40; i++ {
		copy(msg, fmt.Sprint(i, "|"))
		require.NoError(t, q.Enqueue(msg))
	}
	for i := 0; i < 30; i++ {
		_, err := q.Dequeue()
		require.NoError(t, err)
	}
	early, err := q.NewConsumer("early")
	require.NoError(t, err)
	got, err := early.Dequeue()
	require.NoError(t, err)
	require.True(t, bytes.HasPrefix(got, []byte("0|")), "got %q", got[:4])
	require.NoError(t, q.DeleteConsumer("early"))

	require.NoError(t, q.Flush())
	const ds = 4096 - arenaHeaderSize
	firstArena := 30 * size / ds // the default consumer's
	require.Positive(t, firstArena)
	require.EqualValues(t, firstArena, q.Stats().ArenasReclaimed)
	oldest := (firstArena*ds + size - 1) / size // the first record starting in it
	require.Less(t, oldest, 30)
	late, err := q.NewConsumer("late")
	require.NoError(t, err)
	require.EqualValues(t, 40-oldest, late.Len())
	got, err = late.Dequeue()
	require.NoError(t, err)
	require.True(t, bytes.HasPrefix(got, []byte(fmt.Sprint(oldest, "|"))), "got %q, want message %d", got[:4], oldest)
}

func TestOptionErrors(t *testing.T) {
	dir := t.TempDir()
	for _, tc := range []struct {
		opt  Option
		want error
	}{
		{SetArenaSize(os.Getpagesize() - 1), ErrTooSmallArenaSize},
		{SetArenaSize(0), ErrTooSmallArenaSize},
		{SetArenaSize(-5), ErrTooSmallArenaSize},
		{SetMaxInMemArenas(1), ErrTooFewInMemArenas},
		{SetMaxInMemArenas(2), ErrTooFewInMemArenas},
		{SetMaxInMemArenas(-1), ErrTooFewInMemArenas},
	} {
		_, err := NewQueue(dir, tc.opt)
		require.ErrorIs(t, err, tc.want)
	}
	for _, opt := range []Option{SetMaxInMemArenas(0), SetMaxInMemArenas(3), SetPeriodicFlushOps(0),
		SetPeriodicFlushOps(-1), SetPeriodicFlushDuration(0), SetPeriodicFlushDuration(-time.Second)} {
		q, err := NewQueue(t.TempDir(), opt)
		require.NoError(t, err)
		require.NoError(t, q.Close())
	}
}

func TestArenaSizeIsStored(t *testing.T) {
	q, dir := openTestQueue(t, SetArenaSize(8192))
	require.NoError(t, q.EnqueueString("x"))
	require.NoError(t, q.Close())
	_, err := NewQueue(dir, SetArenaSize(4096))
	require.ErrorIs(t, err, ErrInvalidArenaSize)
	q = openTestQueueIn(t, dir) // no SetArenaSize: the stored size is used
	s, err := q.DequeueString()
	require.NoError(t, err)
	require.Equal(t, "x", s)
}

func TestIncompatibleVersion(t *testing.T) {
	q, dir := openTestQueue(t, SetArenaSize(4096))
	require.NoError(t, q.Close())
	path := filepath.Join(dir, indexFileName)
	raw, err := os.ReadFile(path)
	require.NoError(t, err)
	raw[idxVersionOff] = formatVersion + 1
	require.NoError(t, os.WriteFile(path, raw, 0o644))
	_, err = NewQueue(dir)
	require.ErrorIs(t, err, ErrIncompatibleVersion)

	raw[idxVersionOff] = formatVersion
	raw[idxMagicOff] ^= 0xff
	require.NoError(t, os.WriteFile(path, raw, 0o644))
	_, err = NewQueue(dir)
	require.ErrorIs(t, err, ErrCorrupt)
}

func TestTooLarge(t *testing.T) {
	q, _ := openTestQueue(t, SetArenaSize(4096))
	// The length is checked before anything is read: reading it would
	// crash the test.
	big := unreadableMessage(t)
	require.ErrorIs(t, q.Enqueue(big), ErrTooLarge)
	require.True(t, q.IsEmpty())
}

func TestFlushAndPeriodicFlush(t *testing.T) {
	q, _ := openTestQueue(t, SetArenaSize(4096), SetPeriodicFlushOps(10), SetPeriodicFlushDuration(0))
	require.NoError(t, q.Flush())
	q.mu.Lock()
	base := q.flushes
	q.mu.Unlock()
	for i := 0; i < 100; i++ {
		require.NoError(t, q.EnqueueString("x"))
	}
	// The ops trigger is asynchronous: wait for the flusher to report, by
	// polling its counter, with a generous deadline.
	require.Eventually(t, func() bool {
		q.mu.Lock()
		defer q.mu.Unlock()
		return q.flushes > base
	}, 10*time.Second, time.Millisecond)
	q.mu.Lock()
	ck := q.idx.checkpoint()
	q.mu.Unlock()
	require.Positive(t, ck.offset)
}

func TestAllocations(t *testing.T) {
	q, _ := openTestQueue(t, SetArenaSize(64<<10))
	msg := message(0, 1, 128)
	s := string(msg)
	require.Zero(t, testing.AllocsPerRun(1000, func() { _ = q.Enqueue(msg) }), "Enqueue")
	require.Zero(t, testing.AllocsPerRun(1000, func() { _ = q.EnqueueString(s) }), "EnqueueString")
	require.Equal(t, 1.0, testing.AllocsPerRun(1000, func() { _, _ = q.Dequeue() }), "Dequeue")
}

// TestConcurrentProducersConsumers: every message reaches every consumer
// exactly once, in per-producer order.
// The readers of a consumer take turns at DequeueString (always under the
// whole lock), Dequeue and DequeueAppend (dequeueFast when they can), and
// the producers' Enqueue (enqueueFast) runs beside them.
func TestConcurrentProducersConsumers(t *testing.T) {
	t.Run("created", func(t *testing.T) { concurrentProducersConsumers(t, []string{"a", "b"}) })
	// Every next arena prepared in the background (ready.go), racing
	// the writer, the flusher and the reclaims.
	// Whether the prefaulter prepares an arena before the writer needs
	// it, and finds no spare to reuse instead, depends on the scheduling:
	// on a loaded machine a run may use none (seen once on tmpfs beside
	// the power-loss long tier). The run is repeated until one does, a
	// few times at most.
	t.Run("prepared", func(t *testing.T) {
		const attempts = 5
		for i := range attempts {
			q := concurrentProducersConsumers(t, []string{"a", "b"}, withReadyMin(0))
			q.mu.Lock()
			used := q.am.readyUsed
			q.mu.Unlock()
			if used > 0 {
				return
			}
			t.Logf("run %d used no prepared arena", i+1)
		}
		require.Fail(t, "no prepared arena was used", "in %d runs", attempts)
	})
	// One consumer: its reads move the head without the whole lock.
	t.Run("default", func(t *testing.T) { concurrentProducersConsumers(t, []string{""}) })
	t.Run("one-named", func(t *testing.T) { concurrentProducersConsumers(t, []string{"a"}) })
}

// readerAPI is the read calls of one consumer: the queue's for the
// default consumer, a Consumer's otherwise.
type readerAPI struct {
	dequeueString func() (string, error)
	dequeue       func() ([]byte, error)
	dequeueAppend func([]byte) ([]byte, error)
}

// concurrentProducersConsumers runs producers and, for each name (""
// is the default consumer), readers of that consumer, and checks that
// every consumer gets every message once, in per-producer order.
func concurrentProducersConsumers(t *testing.T, names []string, extra ...Option) *Queue {
	const producers, perProducer, readersPerConsumer = 4, 2000, 3
	q, _ := openTestQueue(t, append([]Option{SetArenaSize(4096), SetMaxInMemArenas(4), SetPeriodicFlushOps(500)}, extra...)...)
	var consumers []readerAPI
	for _, n := range names {
		if n == "" {
			consumers = append(consumers, readerAPI{q.DequeueString, q.Dequeue, q.DequeueAppend})
			continue
		}
		c, err := q.NewConsumer(n)
		require.NoError(t, err)
		consumers = append(consumers, readerAPI{c.DequeueString, c.Dequeue, c.DequeueAppend})
	}
	var wg sync.WaitGroup
	errs := make(chan error, 64)
	for p := 0; p < producers; p++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < perProducer; i++ {
				msg := fmt.Sprintf("%d:%d:%s", p, i, strings.Repeat("x", i%300))
				if err := q.EnqueueString(msg); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	type seen struct {
		mu   sync.Mutex
		last map[int]int
		n    int
	}
	var readers sync.WaitGroup
	results := make([]*seen, len(consumers))
	total := producers * perProducer
	for ci, c := range consumers {
		s := &seen{last: map[int]int{}}
		results[ci] = s
		for r := 0; r < readersPerConsumer; r++ {
			readers.Add(1)
			go func() {
				defer readers.Done()
				var buf []byte
				read := func() (string, error) {
					switch r {
					case 0:
						return c.dequeueString()
					case 1:
						b, err := c.dequeue()
						return string(b), err
					}
					var err error
					buf, err = c.dequeueAppend(buf[:0])
					return string(buf), err
				}
				for {
					s.mu.Lock()
					done := s.n == total
					s.mu.Unlock()
					if done {
						return
					}
					// Hold s.mu across the dequeue so that the order
					// check sees messages in the order they left the queue.
					s.mu.Lock()
					msg, err := read()
					if errors.Is(err, ErrEmptyQueue) {
						s.mu.Unlock()
						continue
					}
					if err != nil {
						s.mu.Unlock()
						errs <- err
						return
					}
					var p, i int
					_, err = fmt.Sscanf(msg, "%d:%d:", &p, &i)
					if err == nil && msg != fmt.Sprintf("%d:%d:%s", p, i, strings.Repeat("x", i%300)) {
						err = fmt.Errorf("garbled message %q", msg)
					}
					if last, ok := s.last[p]; err == nil && ok && i != last+1 {
						err = fmt.Errorf("producer %d: got %d after %d", p, i, last)
					}
					if _, ok := s.last[p]; err == nil && !ok && i != 0 {
						err = fmt.Errorf("producer %d: first message %d", p, i)
					}
					s.last[p] = i
					s.n++
					s.mu.Unlock()
					if err != nil {
						errs <- err
						return
					}
				}
			}()
		}
	}
	wg.Wait()
	readers.Wait()
	close(errs)
	for err := range errs {
		require.NoError(t, err)
	}
	for ci, s := range results {
		require.Equal(t, total, s.n, "consumer %s", names[ci])
		for p := 0; p < producers; p++ {
			require.Equal(t, perProducer-1, s.last[p], "consumer %s producer %d", names[ci], p)
		}
	}
	return q
}

// TestEncodeRecordMatchesHeader checks that encodeRecord, which the
// append fast path uses (one checksum pass over the stored bytes), lays
// out the same bytes as encodeRecordHeader followed by the payload, and
// that the record decodes and verifies as readRecord checks it.
func TestEncodeRecordMatchesHeader(t *testing.T) {
	rng := rand.New(rand.NewPCG(29, 29)) // fixed seed: 29
	for _, n := range []int{0, 1, 7, 8, 12, 128, 1000, 4096} {
		msg := make([]byte, n)
		for i := range msg {
			msg[i] = byte(rng.Uint32())
		}
		seq := rng.Uint64() >> 2
		want := make([]byte, recordHeaderSize+n)
		encodeRecordHeader(want, seq, msg)
		copy(want[recordHeaderSize:], msg)
		got := make([]byte, recordHeaderSize+n)
		encodeRecord(got, seq, msg)
		require.Equal(t, want, got, "%d-byte message", n)
		h := decodeRecordHeader(got)
		require.Equal(t, seq, h.seq)
		require.Equal(t, uint32(n), h.length)
		require.Equal(t, h.crc, crc32.Update(recordHeaderSum(got), castagnoli, got[recordHeaderSize:]))
	}
}

// TestFastPathsHoldHalfTheLock checks that the common Enqueue and Dequeue
// hold only their half of the queue's lock (lock.go): each completes while
// the test holds the other half, as an enqueue or dequeue in progress on
// another goroutine would. A fast path that took the whole lock would
// wait for the test's half forever; the deadline turns that into a
// failure.
func TestFastPathsHoldHalfTheLock(t *testing.T) {
	q, _ := openTestQueue(t, SetPeriodicFlushOps(0), SetPeriodicFlushDuration(0))
	// No background goroutine may take the whole lock meanwhile: it would
	// hold mu.prod while it waits for the test's mu.cons. The flusher has
	// nothing to do (no periodic flush); the prefaulter is turned off
	// before it is ever asked.
	q.mu.Lock()
	q.am.prefaultOff = true
	q.mu.Unlock()
	for _, m := range []string{"a", "b", "c", "d"} {
		require.NoError(t, q.EnqueueString(m))
	}
	first, err := q.DequeueString() // makes the default consumer
	require.NoError(t, err)
	require.Equal(t, "a", first)
	c, err := q.NewConsumer("named") // at "a": the head
	require.NoError(t, err)

	// Holding the producer's half: reads go on, the head's too.
	var got []string
	q.mu.prod.Lock()
	unlock := sync.OnceFunc(q.mu.prod.Unlock) // also when the deadline fails the test
	defer unlock()
	withinDeadline(t, "reads while an enqueue holds its half", func() error {
		for _, read := range []func() ([]byte, error){
			q.Dequeue,
			func() ([]byte, error) { return q.DequeueAppend(nil) },
			c.Dequeue,
			func() ([]byte, error) { return c.DequeueAppend([]byte("x")) },
			q.Dequeue,
		} {
			msg, err := read()
			if err != nil {
				return err
			}
			got = append(got, string(msg))
		}
		if _, err := q.Dequeue(); !errors.Is(err, ErrEmptyQueue) {
			return fmt.Errorf("Dequeue of an empty queue: %v, want ErrEmptyQueue", err)
		}
		if buf, err := q.DequeueAppend([]byte("kept")); !errors.Is(err, ErrEmptyQueue) || string(buf) != "kept" {
			return fmt.Errorf("DequeueAppend of an empty queue: %q, %v; want dst unchanged, ErrEmptyQueue", buf, err)
		}
		return nil
	})
	unlock()
	require.Equal(t, []string{"b", "c", "a", "xb", "d"}, got)

	// Holding the consumers' half: writes go on.
	q.mu.cons.Lock()
	unlock = sync.OnceFunc(q.mu.cons.Unlock)
	defer unlock()
	withinDeadline(t, "writes while a dequeue holds its half", func() error {
		return errors.Join(q.EnqueueString("e"), q.Enqueue([]byte("f")))
	})
	unlock()
	for _, want := range []string{"e", "f"} {
		msg, err := q.DequeueString()
		require.NoError(t, err)
		require.Equal(t, want, msg)
	}
	require.Equal(t, int64(4), c.Len(), "c, d, e, f")
	q.mu.Lock()
	defer q.mu.Unlock()
	require.Equal(t, c.st.off, q.head, "the named consumer is the head")
}

// withinDeadline runs f on another goroutine and fails the test with its
// error, or when it has not returned within a minute: a deadlock guard,
// not a wait for anything f does.
func withinDeadline(t *testing.T, what string, f func() error) {
	t.Helper()
	done := make(chan error, 1)
	go func() { done <- f() }()
	select {
	case err := <-done:
		require.NoError(t, err, what)
	case <-time.After(time.Minute):
		t.Fatalf("%s: still blocked after a minute", what)
	}
}

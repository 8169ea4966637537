package bigqueue

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// reader is the read side of the API, common to Queue and Consumer, so
// that every test below runs against both.
type reader interface {
	Len() int64
	IsEmpty() bool
	Peek() ([]byte, error)
	PeekString() (string, error)
	Dequeue() ([]byte, error)
	DequeueString() (string, error)
	DequeueAppend([]byte) ([]byte, error)
	DequeueWait(context.Context) ([]byte, error)
}

func TestEverydayOnEmpty(t *testing.T) {
	q, _ := openTestQueue(t, SetArenaSize(4096))
	for name, r := range views[reader](t, q) {
		t.Run(name, func(t *testing.T) {
			require.Zero(t, r.Len())
			_, err := r.Peek()
			require.ErrorIs(t, err, ErrEmptyQueue)
			_, err = r.PeekString()
			require.ErrorIs(t, err, ErrEmptyQueue)
			buf := []byte("keep")
			got, err := r.DequeueAppend(buf)
			require.ErrorIs(t, err, ErrEmptyQueue)
			require.Equal(t, buf, got, "dst comes back unchanged")
			ctx, cancel := context.WithCancel(context.Background())
			cancel()
			_, err = r.DequeueWait(ctx)
			require.ErrorIs(t, err, context.Canceled)
		})
	}
	require.NoError(t, q.EnqueueBatch(nil))
	require.NoError(t, q.EnqueueBatch([][]byte{}))
	require.True(t, q.IsEmpty())
	s := q.Stats()
	require.Zero(t, s.Messages)
	require.Equal(t, map[string]int64{"__default__": 0, "named": 0}, s.Lag)
}

func TestEverydayOnClosed(t *testing.T) {
	q, _ := openTestQueue(t, SetArenaSize(4096))
	rs := views[reader](t, q)
	require.NoError(t, q.EnqueueString("x"))
	require.NoError(t, q.Close())
	for name, r := range rs {
		t.Run(name, func(t *testing.T) {
			require.Zero(t, r.Len())
			_, err := r.Peek()
			require.ErrorIs(t, err, ErrClosed)
			_, err = r.PeekString()
			require.ErrorIs(t, err, ErrClosed)
			_, err = r.DequeueAppend(nil)
			require.ErrorIs(t, err, ErrClosed)
			_, err = r.DequeueWait(context.Background())
			require.ErrorIs(t, err, ErrClosed)
		})
	}
	require.ErrorIs(t, q.EnqueueBatch([][]byte{[]byte("y")}), ErrClosed)
	require.ErrorIs(t, q.EnqueueBatch(nil), ErrClosed)
	require.Equal(t, Stats{}, q.Stats())
}

// TestEverydayAcrossBoundaries drives every read method over messages that
// end at, straddle and span arena boundaries, reopening between rounds,
// and checks Len against a model after every step.
func TestEverydayAcrossBoundaries(t *testing.T) {
	arenaSize := 4096
	opts := []Option{SetArenaSize(arenaSize), SetMaxInMemArenas(3)}
	q, dir := openTestQueue(t, opts...)
	sizes := sweepSizes(arenaSize)
	var msgs [][]byte
	for i, n := range sizes {
		msgs = append(msgs, message(0, uint64(i)+500, n))
	}
	// Half as single messages, half as batches of 7.
	half := len(msgs) / 2
	enqueueAll(t, q, msgs[:half])
	for i := half; i < len(msgs); i += 7 {
		require.NoError(t, q.EnqueueBatch(msgs[i:min(i+7, len(msgs))]))
	}
	c, err := q.NewConsumer("named")
	require.NoError(t, err)
	require.EqualValues(t, len(msgs), q.Len())
	require.EqualValues(t, len(msgs), c.Len())

	buf := make([]byte, 0, 16)
	for i, want := range msgs {
		for _, r := range []reader{q, c} {
			require.EqualValues(t, len(msgs)-i, r.Len())
			got, err := r.Peek()
			require.NoError(t, err, "message %d", i)
			require.Equal(t, want, got)
			again, err := r.Peek()
			require.NoError(t, err)
			require.Equal(t, want, again, "a second Peek returns the same message")
			switch i % 4 {
			case 0:
				got, err = r.Dequeue()
			case 1:
				buf, err = r.DequeueAppend(buf[:0])
				got = buf
			case 2:
				var s string
				s, err = r.DequeueString()
				got = []byte(s)
			case 3:
				got, err = r.DequeueWait(context.Background())
			}
			require.NoError(t, err, "message %d", i)
			require.Equal(t, want, got, "message %d", i)
			require.EqualValues(t, len(msgs)-i-1, r.Len())
		}
		if i%9 == 8 {
			require.NoError(t, q.Close())
			q = openTestQueueIn(t, dir, opts...)
			c, err = q.NewConsumer("named")
			require.NoError(t, err)
			require.EqualValues(t, len(msgs)-i-1, q.Len(), "Len after reopen")
			require.EqualValues(t, len(msgs)-i-1, c.Len(), "Len after reopen")
		}
	}
	require.True(t, q.IsEmpty())
	require.True(t, c.IsEmpty())
}

// TestPeekDoesNotConsume: a peeked message survives Close and reopen, and
// a crash-like reopen without Dequeue delivers it again.
func TestPeekDoesNotConsume(t *testing.T) {
	q, dir := openTestQueue(t, SetArenaSize(4096))
	require.NoError(t, q.EnqueueString("job"))
	s, err := q.PeekString()
	require.NoError(t, err)
	require.Equal(t, "job", s)
	require.EqualValues(t, 1, q.Len())
	require.NoError(t, q.Close())
	q = openTestQueueIn(t, dir)
	s, err = q.DequeueString()
	require.NoError(t, err)
	require.Equal(t, "job", s)
}

// TestPeekStringIsACopy: the string PeekString returns cannot be changed
// through the slice the following Dequeue returns.
func TestPeekStringIsACopy(t *testing.T) {
	q, _ := openTestQueue(t, SetArenaSize(4096))
	require.NoError(t, q.EnqueueString("abc"))
	s, err := q.PeekString()
	require.NoError(t, err)
	b, err := q.Dequeue()
	require.NoError(t, err)
	b[0] = 'X'
	require.Equal(t, "abc", s)
}

// TestLenModel checks Len, IsEmpty's count and Stats against a model of
// where every record lies. The default consumer comes with the first
// queue-level read and starts, like any new consumer, at the oldest record
// still stored; arenas go only at Close (no periodic flush), below the
// lowest consumer position and the tail's arena, and the oldest stored
// record is then the first one starting in the oldest arena left.
func TestLenModel(t *testing.T) {
	seed := testSeed(t)
	t.Logf("seed %d", seed)
	r := rand.New(rand.NewPCG(seed, 1))
	opts := []Option{SetArenaSize(4096), SetPeriodicFlushOps(0), SetPeriodicFlushDuration(0)}
	q, dir := openTestQueue(t, opts...)
	const ds = 4096 - arenaHeaderSize
	var (
		stored, readDefault, readNamed int64
		starts                         []uint64 // logical offset of each record
		tail                           uint64
		firstArena                     uint64 // the oldest arena file left
		gone                           int64  // records below the oldest stored one
		hasDefault                     bool
	)
	add := func(msg []byte) {
		starts = append(starts, tail)
		tail += recordHeaderSize + uint64(len(msg))
		stored++
	}
	offset := func(i int64) uint64 {
		if i == stored {
			return tail
		}
		return starts[i]
	}
	c, err := q.NewConsumer("n")
	require.NoError(t, err)
	for step := 0; step < 2000; step++ {
		switch op := r.IntN(10); {
		case op < 4:
			msg := message(0, uint64(stored), r.IntN(3000))
			require.NoError(t, q.Enqueue(msg))
			add(msg)
		case op < 5:
			k := r.IntN(5)
			batch := make([][]byte, k)
			for j := range batch {
				batch[j] = message(0, uint64(stored)+uint64(j), r.IntN(500))
			}
			require.NoError(t, q.EnqueueBatch(batch))
			for _, msg := range batch {
				add(msg)
			}
		case op < 7:
			if !hasDefault {
				hasDefault, readDefault = true, gone
			}
			_, err := q.Dequeue()
			if readDefault == stored {
				require.ErrorIs(t, err, ErrEmptyQueue)
			} else {
				require.NoError(t, err)
				readDefault++
			}
		case op < 9:
			_, err := c.Dequeue()
			if readNamed == stored {
				require.ErrorIs(t, err, ErrEmptyQueue)
			} else {
				require.NoError(t, err)
				readNamed++
			}
		default:
			require.NoError(t, q.Close())
			// Close reclaims the arenas below the lowest consumer
			// position's and the tail's.
			head := readNamed
			if hasDefault {
				head = min(head, readDefault)
			}
			keep := offset(head) / ds
			if tail > 0 {
				keep = min(keep, (tail-1)/ds)
			}
			if keep > firstArena {
				firstArena = keep
				g := gone
				for g < stored && offset(g) < firstArena*ds {
					g++
				}
				gone = min(g, head)
			}
			q = openTestQueueIn(t, dir, opts...)
			c, err = q.NewConsumer("n")
			require.NoError(t, err)
		}
		lag := map[string]int64{"n": stored - readNamed}
		wantLen := stored - gone
		if hasDefault {
			lag["__default__"] = stored - readDefault
			wantLen = stored - readDefault
		}
		require.Equal(t, wantLen, q.Len(), "step %d", step)
		require.Equal(t, wantLen == 0, q.IsEmpty(), "step %d", step)
		require.Equal(t, stored-readNamed, c.Len(), "step %d", step)
		st := q.Stats()
		require.Equal(t, stored-gone, st.Messages, "step %d", step)
		require.Equal(t, int64(tail-offset(gone)), st.Bytes, "step %d", step)
		require.Equal(t, lag, st.Lag, "step %d", step)
	}
}

func TestDequeueWaitManyWaiters(t *testing.T) {
	for _, name := range []string{"queue", "consumer"} {
		t.Run(name, func(t *testing.T) {
			q, _ := openTestQueue(t, SetArenaSize(4096))
			r := views[reader](t, q)[name]
			const waiters = 8
			got := make(chan string, waiters)
			errs := make(chan error, waiters)
			var started sync.WaitGroup
			for i := 0; i < waiters; i++ {
				started.Add(1)
				go func() {
					started.Done()
					b, err := r.DequeueWait(context.Background())
					if err != nil {
						errs <- err
						return
					}
					got <- string(b)
				}()
			}
			started.Wait()
			want := map[string]bool{}
			for i := 0; i < waiters; i++ {
				msg := fmt.Sprint(name, i)
				want[msg] = true
				require.NoError(t, q.EnqueueString(msg))
			}
			seen := map[string]bool{}
			for i := 0; i < waiters; i++ {
				select {
				case s := <-got:
					require.False(t, seen[s], "%q delivered twice", s)
					seen[s] = true
				case err := <-errs:
					require.NoError(t, err)
				}
			}
			require.Equal(t, want, seen)
		})
	}
}

func TestDequeueWaitCancel(t *testing.T) {
	q, _ := openTestQueue(t, SetArenaSize(4096))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		_, err := q.DequeueWait(ctx)
		done <- err
	}()
	cancel()
	require.ErrorIs(t, <-done, context.Canceled)
	require.NoError(t, q.EnqueueString("still here"))
	s, err := q.DequeueString()
	require.NoError(t, err)
	require.Equal(t, "still here", s, "the cancelled waiter consumed nothing")

	ctx, cancel = context.WithTimeout(context.Background(), time.Millisecond)
	defer cancel()
	_, err = q.DequeueWait(ctx)
	require.ErrorIs(t, err, context.DeadlineExceeded)
}

func TestDequeueWaitClose(t *testing.T) {
	q, _ := openTestQueue(t, SetArenaSize(4096))
	c, err := q.NewConsumer("c")
	require.NoError(t, err)
	const waiters = 6
	errs := make(chan error, waiters)
	var started sync.WaitGroup
	for i := 0; i < waiters; i++ {
		started.Add(1)
		var r reader = q
		if i%2 == 1 {
			r = c
		}
		go func() {
			started.Done()
			_, err := r.DequeueWait(context.Background())
			errs <- err
		}()
	}
	started.Wait()
	require.NoError(t, q.Close())
	for i := 0; i < waiters; i++ {
		require.ErrorIs(t, <-errs, ErrClosed)
	}
}

// TestBatchAtomicForReaders: a reader running beside batch producers sees
// every batch whole and uninterleaved: once it has a batch's first message
// the others follow at once, never ErrEmptyQueue in between, and the count
// of stored messages is always a whole number of batches.
func TestBatchAtomicForReaders(t *testing.T) {
	const producers, batches, size = 3, 200, 16
	q, _ := openTestQueue(t, SetArenaSize(4096), SetMaxInMemArenas(3))
	_, err := q.NewConsumer("observer") // never reads: its lag counts every message stored
	require.NoError(t, err)
	var wg sync.WaitGroup
	for p := 0; p < producers; p++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for b := 0; b < batches; b++ {
				batch := make([][]byte, size)
				for i := range batch {
					batch[i] = []byte(fmt.Sprintf("%d/%d/%d/%s", p, b, i, make([]byte, (b*i)%700)))
				}
				if err := q.EnqueueBatch(batch); err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	lenErr := make(chan error, 1)
	stop := make(chan struct{})
	go func() {
		defer close(lenErr)
		for {
			select {
			case <-stop:
				return
			default:
			}
			if n := q.Stats().Lag["observer"]; n%size != 0 {
				lenErr <- fmt.Errorf("%d messages stored, not a whole number of batches", n)
				return
			}
		}
	}()
	for read := 0; read < producers*batches*size; {
		b, err := q.DequeueWait(context.Background())
		require.NoError(t, err)
		var p, bn, i int
		_, err = fmt.Sscanf(string(b), "%d/%d/%d/", &p, &bn, &i)
		require.NoError(t, err)
		require.Zero(t, i, "a batch starts with its first message")
		for j := 1; j < size; j++ {
			b, err := q.Dequeue() // never ErrEmptyQueue inside a batch
			require.NoError(t, err, "batch %d/%d message %d", p, bn, j)
			require.Equal(t, fmt.Sprintf("%d/%d/%d/%s", p, bn, j, make([]byte, (bn*j)%700)), string(b))
		}
		read += size
	}
	wg.Wait()
	close(stop)
	require.NoError(t, <-lenErr)
}

// TestBatchAllOrNothing: a batch that cannot be stored whole stores none.
func TestBatchAllOrNothing(t *testing.T) {
	q, _ := openTestQueue(t, SetArenaSize(4096))
	require.NoError(t, q.EnqueueString("before"))
	err := q.EnqueueBatch([][]byte{[]byte("a"), unreadableMessage(t), []byte("c")})
	require.ErrorIs(t, err, ErrTooLarge)
	require.EqualValues(t, 1, q.Len())
	s, err := q.DequeueString()
	require.NoError(t, err)
	require.Equal(t, "before", s)
	require.True(t, q.IsEmpty())
}

func TestStats(t *testing.T) {
	q, _, failSyncs := openSyncFaultQueue(t, SetArenaSize(4096), SetMaxInMemArenas(3),
		SetPeriodicFlushOps(0), SetPeriodicFlushDuration(0))
	msg := make([]byte, 1000)
	for i := 0; i < 20; i++ {
		require.NoError(t, q.Enqueue(msg))
	}
	require.NoError(t, q.Flush())
	s := q.Stats()
	require.EqualValues(t, 20, s.Messages)
	require.EqualValues(t, 20*(1000+recordHeaderSize), s.Bytes)
	require.Equal(t, 4096, s.ArenaSize)
	require.Equal(t, (20*(1000+recordHeaderSize)+4095-arenaHeaderSize)/(4096-arenaHeaderSize), s.ArenasOnDisk)
	require.LessOrEqual(t, s.ArenasMapped, 3)
	require.Positive(t, s.ArenasMapped)
	require.EqualValues(t, 1, s.Flushes)
	require.NoError(t, s.LastFlushError)
	require.Zero(t, s.ArenasReclaimed)
	require.Zero(t, s.SpareArenas)

	for i := 0; i < 20; i++ {
		_, err := q.Dequeue()
		require.NoError(t, err)
	}
	// Reads never reclaim: the messages read are still stored until a
	// flush has made the position that passed them durable.
	s = q.Stats()
	require.EqualValues(t, 20, s.Messages)
	require.EqualValues(t, 20*(1000+recordHeaderSize), s.Bytes)
	require.Zero(t, s.ArenasReclaimed)
	require.Zero(t, s.SpareArenas)
	require.NoError(t, q.Flush())
	s = q.Stats()
	require.Zero(t, s.Messages)
	require.Zero(t, s.Bytes)
	require.Equal(t, 1, s.ArenasOnDisk)
	require.Positive(t, s.ArenasReclaimed)
	require.EqualValues(t, min(s.ArenasReclaimed, maxSpareArenas), s.SpareArenas, "every arena reclaimed is kept as a spare, up to the limit")
	require.EqualValues(t, 2, s.Flushes)

	failSyncs(true)
	require.NoError(t, q.Enqueue(msg))
	require.Error(t, q.Flush())
	require.True(t, errors.Is(q.Stats().LastFlushError, errSyncTest))
	require.ErrorIs(t, q.Close(), errSyncTest)
}

func TestConsumerName(t *testing.T) {
	q, _ := openTestQueue(t, SetArenaSize(4096))
	c, err := q.NewConsumer("billing")
	require.NoError(t, err)
	require.Equal(t, "billing", c.Name())
	var zero Consumer
	require.Empty(t, zero.Name())
}

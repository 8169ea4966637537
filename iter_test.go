package bigqueue

import (
	"context"
	"testing"

	"github.com/stretchr/testify/require"
)

// Tests of PeekWait and All.

type waiter interface {
	PeekWait(context.Context) ([]byte, error)
	Position() uint64
	Len() int64
}

// PeekWait blocks until an enqueue, returns the message without
// consuming it, to every waiter.
func TestPeekWait(t *testing.T) {
	q, _ := openTestQueue(t, SetArenaSize(4096))
	for name, r := range map[string]func() waiter{
		"queue": func() waiter { return q },
		"consumer": func() waiter {
			c, err := q.NewConsumer("c")
			require.NoError(t, err)
			return c
		},
	} {
		t.Run(name, func(t *testing.T) {
			w := r()
			require.NoError(t, q.SeekNewest())
			if c, ok := w.(*Consumer); ok {
				require.NoError(t, c.SeekNewest())
			}
			const waiters = 3
			done := make(chan waitResult, waiters)
			for range waiters {
				go func() {
					msg, err := w.PeekWait(context.Background())
					done <- waitResult{msg, err}
				}()
			}
			waitForWaiter(t, q)
			require.NoError(t, q.EnqueueString("m-"+name))
			for range waiters {
				r := <-done
				require.NoError(t, r.err)
				require.Equal(t, "m-"+name, string(r.msg), "every waiter sees the message")
			}
			require.EqualValues(t, 1, w.Len(), "nothing was consumed")
			msg, err := w.PeekWait(context.Background())
			require.NoError(t, err, "a readable message returns at once")
			require.Equal(t, "m-"+name, string(msg))
		})
	}
}

func TestPeekWaitEnds(t *testing.T) {
	t.Run("context", func(t *testing.T) {
		q, _ := openTestQueue(t)
		ctx, cancel := context.WithCancel(context.Background())
		done := startWait(t, q, func(context.Context) ([]byte, error) { return q.PeekWait(ctx) })
		cancel()
		r := <-done
		require.ErrorIs(t, r.err, context.Canceled)
		_, err := q.PeekWait(ctx)
		require.ErrorIs(t, err, context.Canceled, "a done context returns at once")
	})
	t.Run("close", func(t *testing.T) {
		q, _ := openTestQueue(t)
		c, err := q.NewConsumer("c")
		require.NoError(t, err)
		done := make(chan waitResult, 2)
		go func() {
			msg, err := q.PeekWait(context.Background())
			done <- waitResult{msg, err}
		}()
		go func() {
			msg, err := c.PeekWait(context.Background())
			done <- waitResult{msg, err}
		}()
		waitForWaiter(t, q)
		require.NoError(t, q.Close())
		for range 2 {
			require.ErrorIs(t, (<-done).err, ErrClosed)
		}
	})
	t.Run("default consumer deleted while waiting", func(t *testing.T) {
		q, _ := openTestQueue(t)
		_, err := q.NewConsumer("pin")
		require.NoError(t, err)
		require.NoError(t, q.EnqueueString("m"))
		require.NoError(t, q.SeekNewest())
		done := startWait(t, q, q.PeekWait)
		// Re-created at the oldest stored message, which the waiter gets.
		require.NoError(t, q.DeleteConsumer(defaultConsumerKey))
		r := <-done
		require.NoError(t, r.err)
		require.Equal(t, "m", string(r.msg))
	})
	t.Run("misuse", func(t *testing.T) {
		q, _ := openTestQueue(t)
		c, err := q.NewConsumer("c")
		require.NoError(t, err)
		//lint:ignore SA1012 a nil context is the misuse under test
		_, err = q.PeekWait(nil) //nolint:staticcheck
		require.ErrorIs(t, err, ErrNilContext)
		//lint:ignore SA1012 a nil context is the misuse under test
		_, err = c.PeekWait(nil) //nolint:staticcheck
		require.ErrorIs(t, err, ErrNilContext)
		for _, q := range []*Queue{nil, {}} {
			_, err := q.PeekWait(context.Background())
			require.ErrorIs(t, err, ErrClosed)
		}
		for _, c := range []*Consumer{nil, {}} {
			_, err := c.PeekWait(context.Background())
			require.ErrorIs(t, err, ErrNoConsumer)
		}
	})
}

// collect ranges over seq until it has n messages or an error, and
// returns what it got.
func collect(seq func(func([]byte, error) bool), n int) ([]string, error) {
	var got []string
	var last error
	for msg, err := range seq {
		if err != nil {
			last = err
			break
		}
		got = append(got, string(msg))
		if len(got) == n {
			break
		}
	}
	return got, last
}

// All commits a message when the body asks for the next one: a break
// leaves the last one uncommitted, also across a reopen; it blocks for new
// messages and ends with the context.
func TestAllBreakThenReopen(t *testing.T) {
	q, dir := openTestQueue(t, SetArenaSize(4096))
	for _, s := range []string{"a", "b", "c", "d"} {
		require.NoError(t, q.EnqueueString(s))
	}
	c, err := q.NewConsumer("c")
	require.NoError(t, err)
	got, err := collect(q.All(context.Background()), 2)
	require.NoError(t, err)
	require.Equal(t, []string{"a", "b"}, got)
	require.EqualValues(t, 2, q.Position(), "b, where the loop broke, is not committed")
	got, err = collect(c.All(context.Background()), 3)
	require.NoError(t, err)
	require.Equal(t, []string{"a", "b", "c"}, got)
	require.NoError(t, q.Close())

	q = openTestQueueIn(t, dir)
	c, err = q.NewConsumer("c")
	require.NoError(t, err)
	require.EqualValues(t, 2, q.Position())
	require.EqualValues(t, 3, c.Position())

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var seen []string
	var end error
	for msg, err := range c.All(ctx) {
		if err != nil {
			end = err
			break
		}
		seen = append(seen, string(msg))
		switch len(seen) {
		case 2: // "d": the next one blocks until it is enqueued
			require.NoError(t, q.EnqueueString("e"))
		case 3:
			cancel()
		}
	}
	require.ErrorIs(t, end, context.Canceled)
	require.Equal(t, []string{"c", "d", "e"}, seen)
	require.EqualValues(t, 6, c.Position(), "e was committed when the body asked for more")
}

// A panic in the body leaves the message uncommitted.
func TestAllPanicLeavesMessage(t *testing.T) {
	q, _ := openTestQueue(t)
	require.NoError(t, q.EnqueueString("job"))
	func() {
		defer func() { require.Equal(t, "boom", recover()) }()
		for range q.All(context.Background()) {
			panic("boom")
		}
	}()
	msg, err := q.Dequeue()
	require.NoError(t, err)
	require.Equal(t, "job", string(msg))
}

// A message another reader of the consumer took in between is not
// committed twice: the iterator commits only where it read.
func TestAllCommitsOnlyWhereItRead(t *testing.T) {
	q, _ := openTestQueue(t)
	for _, s := range []string{"a", "b", "c"} {
		require.NoError(t, q.EnqueueString(s))
	}
	var got []string
	for msg, err := range q.All(context.Background()) {
		require.NoError(t, err)
		got = append(got, string(msg))
		if len(got) == 1 {
			other, err := q.Dequeue() // the same consumer: takes "a"
			require.NoError(t, err)
			require.Equal(t, "a", string(other))
		}
		if len(got) == 2 {
			break
		}
	}
	require.Equal(t, []string{"a", "b"}, got, "b was not skipped")
	require.EqualValues(t, 2, q.Position())
}

// Errors: ErrDropped is yielded and the iteration goes on from the oldest
// message left; ErrClosed, a deleted consumer, a nil context and misuse
// end it.
func TestAllErrors(t *testing.T) {
	t.Run("dropped", func(t *testing.T) {
		q, _ := openTestQueue(t, append(manualFlush, SetMaxBytes(6000))...)
		c, err := q.NewConsumer("c")
		require.NoError(t, err)
		oldest := overflow(t, q)
		var errs []error
		var first uint64
		for msg, err := range c.All(context.Background()) {
			if err != nil {
				errs = append(errs, err)
				continue
			}
			first = numberOf(t, msg)
			break
		}
		require.Len(t, errs, 1)
		require.ErrorIs(t, errs[0], ErrDropped)
		require.Equal(t, oldest, first)
	})
	t.Run("closed while waiting", func(t *testing.T) {
		q, _ := openTestQueue(t)
		done := make(chan error)
		go func() {
			var last error
			for _, err := range q.All(context.Background()) {
				last = err // continue: the iterator ends by itself
			}
			done <- last
		}()
		waitForWaiter(t, q)
		require.NoError(t, q.Close())
		require.ErrorIs(t, <-done, ErrClosed)
	})
	t.Run("consumer deleted while waiting", func(t *testing.T) {
		q, _ := openTestQueue(t)
		c, err := q.NewConsumer("c")
		require.NoError(t, err)
		done := make(chan error)
		go func() {
			var last error
			for _, err := range c.All(context.Background()) {
				last = err
			}
			done <- last
		}()
		waitForWaiter(t, q)
		require.NoError(t, q.DeleteConsumer("c"))
		require.ErrorIs(t, <-done, ErrNoConsumer)
	})
	t.Run("misuse", func(t *testing.T) {
		q, _ := openTestQueue(t)
		c, err := q.NewConsumer("c")
		require.NoError(t, err)
		count := func(seq func(func([]byte, error) bool)) (n int, last error) {
			for _, err := range seq {
				n++
				last = err
			}
			return n, last
		}
		//lint:ignore SA1012 a nil context is the misuse under test
		n, err := count(q.All(nil)) //nolint:staticcheck
		require.Equal(t, 1, n)
		require.ErrorIs(t, err, ErrNilContext)
		//lint:ignore SA1012 a nil context is the misuse under test
		n, err = count(c.All(nil)) //nolint:staticcheck
		require.Equal(t, 1, n)
		require.ErrorIs(t, err, ErrNilContext)
		for _, q := range []*Queue{nil, {}} {
			n, err := count(q.All(context.Background()))
			require.Equal(t, 1, n)
			require.ErrorIs(t, err, ErrClosed)
		}
		for _, c := range []*Consumer{nil, {}} {
			n, err := count(c.All(context.Background()))
			require.Equal(t, 1, n)
			require.ErrorIs(t, err, ErrNoConsumer)
		}
	})
	t.Run("corrupt then on", func(t *testing.T) {
		q, _ := openTestQueue(t, SetArenaSize(4096), SetMaxInMemArenas(0))
		enqueueNumbered(t, q, 1, 40, 200) // two arenas
		q.mu.Lock()
		a, err := q.am.get(0)
		require.NoError(t, err)
		a.data[arenaHeaderSize+recordHeaderSize] ^= 0xff // message 1's payload
		q.mu.Unlock()
		var errs int
		var first uint64
		for msg, err := range q.All(context.Background()) {
			if err != nil {
				require.ErrorIs(t, err, ErrCorrupt)
				errs++
				continue
			}
			first = numberOf(t, msg)
			break
		}
		require.Equal(t, 1, errs)
		require.Greater(t, first, uint64(1), "skipped to the next arena")
	})
}

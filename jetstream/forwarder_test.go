package jetstream

import (
	"context"
	"errors"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/bigqueue-go/bigqueue"
	"github.com/nats-io/nats.go"
	natsjs "github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/require"
)

// enqueue adds the payloads numbered from..to-1 to q.
func enqueue(tb testing.TB, q *bigqueue.Queue, from, to uint64) {
	tb.Helper()
	for n := from; n < to; n++ {
		require.NoError(tb, q.Enqueue(payload(n)))
	}
}

// requireExactlyOnce asserts that the stream holds the payloads 1..n
// once each, in order, under the forwarder's message IDs.
func requireExactlyOnce(tb testing.TB, f *Forwarder, st natsjs.Stream, n uint64) {
	tb.Helper()
	nums, ids := streamContent(tb, st)
	require.Len(tb, nums, int(n))
	for i, got := range nums {
		require.Equal(tb, uint64(i+1), got, "stream message %d", i+1)
		require.Equal(tb, f.MsgID(uint64(i+1), payload(uint64(i+1))), ids[i])
	}
}

func TestForwardInOrder(t *testing.T) {
	srv := startServer(t)
	_, js := connect(t, srv.url())
	st := createStream(t, js, "EV", 0)
	q, c := openQueue(t)
	const n = 10000
	enqueue(t, q, 1, n/2+1)
	f, err := New(q, c, js, "EV.a", Config{Window: 64})
	require.NoError(t, err)
	stop := runForwarder(t, f)
	// The second half arrives while the forwarder waits in PeekWait.
	waitForwarded(t, f, n/2+1, 30*time.Second)
	enqueue(t, q, n/2+1, n+1)
	waitForwarded(t, f, n+1, 30*time.Second)
	require.ErrorIs(t, stop(), context.Canceled, "Run returns ctx.Err() after a clean stop")

	requireExactlyOnce(t, f, st, n)
	s := f.Stats()
	require.Equal(t, uint64(n), s.Forwarded)
	require.Zero(t, s.Pending)
	require.Zero(t, s.InFlight)
	require.Zero(t, s.Retries)
	require.NoError(t, s.LastError)
	require.Equal(t, uint64(n+1), s.NextSeq)
	require.Equal(t, []string{"fwd"}, q.Consumers(), "the cursor is removed when Run returns")
}

func TestNewRejects(t *testing.T) {
	srv := startServer(t)
	_, js := connect(t, srv.url())
	q, c := openQueue(t)
	other, _ := openQueue(t)
	otherC, err := other.NewConsumer("x")
	require.NoError(t, err)
	long := make([]byte, bigqueue.MaxConsumerNameLen)
	for i := range long {
		long[i] = 'n'
	}
	longC, err := q.NewConsumer(string(long))
	require.NoError(t, err)
	for name, tc := range map[string]struct {
		q   *bigqueue.Queue
		c   *bigqueue.Consumer
		js  natsjs.JetStream
		sub string
		cfg Config
	}{
		"nil queue":               {nil, c, js, "s", Config{}},
		"nil consumer":            {q, nil, js, "s", Config{}},
		"nil JetStream":           {q, c, nil, "s", Config{}},
		"empty subject":           {q, c, js, "", Config{}},
		"negative window":         {q, c, js, "s", Config{Window: -1}},
		"negative timeout":        {q, c, js, "s", Config{AckTimeout: -1}},
		"negative backoff":        {q, c, js, "s", Config{MinBackoff: -1}},
		"consumer of other queue": {q, otherC, js, "s", Config{}},
		"name too long":           {q, longC, js, "s", Config{}},
	} {
		t.Run(name, func(t *testing.T) {
			_, err := New(tc.q, tc.c, tc.js, tc.sub, tc.cfg)
			require.ErrorIs(t, err, ErrInvalidConfig)
		})
	}
}

func TestRunTwiceAndAgain(t *testing.T) {
	srv := startServer(t)
	_, js := connect(t, srv.url())
	st := createStream(t, js, "EV", 0)
	q, c := openQueue(t)
	f, err := New(q, c, js, "EV.a", Config{})
	require.NoError(t, err)
	enqueue(t, q, 1, 101)
	stop := runForwarder(t, f)
	waitForwarded(t, f, 101, 10*time.Second)
	require.ErrorIs(t, f.Run(context.Background()), ErrRunning)
	require.ErrorIs(t, stop(), context.Canceled)

	// A stopped forwarder runs again and goes on where it stopped.
	enqueue(t, q, 101, 201)
	stop = runForwarder(t, f)
	waitForwarded(t, f, 201, 10*time.Second)
	require.ErrorIs(t, stop(), context.Canceled)
	requireExactlyOnce(t, f, st, 200)
}

func TestNoStreamRetriesThenDrains(t *testing.T) {
	srv := startServer(t)
	_, js := connect(t, srv.url())
	q, c := openQueue(t)
	enqueue(t, q, 1, 1001)
	f, err := New(q, c, js, "EV.a", Config{MinBackoff: time.Millisecond, MaxBackoff: 10 * time.Millisecond})
	require.NoError(t, err)
	runForwarder(t, f)
	// No stream listens on the subject: failures, no commit.
	for f.Stats().Retries < 3 {
		<-f.changed()
	}
	s := f.Stats()
	require.ErrorIs(t, s.LastError, natsjs.ErrNoStreamResponse)
	require.False(t, s.LastErrorAt.IsZero())
	require.Zero(t, s.Forwarded)
	require.Equal(t, int64(1000), s.Pending, "nothing is committed that the stream did not acknowledge")
	require.Equal(t, uint64(1), s.NextSeq)

	st := createStream(t, js, "EV", 0)
	waitForwarded(t, f, 1001, 30*time.Second)
	requireExactlyOnce(t, f, st, 1000)
}

// publishAsForwarded publishes messages 1 to n to "EV.a", message i with
// the bytes data(i), under the IDs f gives them: what an earlier
// forwarder of the same queue left in the stream.
func publishAsForwarded(t *testing.T, js natsjs.JetStream, f *Forwarder, n uint64, data func(uint64) []byte) {
	t.Helper()
	for i := uint64(1); i <= n; i++ {
		b := data(i)
		_, err := js.PublishMsg(context.Background(), &nats.Msg{Subject: "EV.a", Data: b,
			Header: nats.Header{nats.MsgIdHdr: []string{f.MsgID(i, b)}}})
		require.NoError(t, err)
	}
}

func TestResendIsDeduplicated(t *testing.T) {
	srv := startServer(t)
	_, js := connect(t, srv.url())
	st := createStream(t, js, "EV", 0)
	q, c := openQueue(t)
	enqueue(t, q, 1, 501)
	f, err := New(q, c, js, "EV.a", Config{})
	require.NoError(t, err)
	// As if an earlier forwarder crashed after the stream stored the
	// first 300 messages and before it committed them.
	publishAsForwarded(t, js, f, 300, payload)
	runForwarder(t, f)
	waitForwarded(t, f, 501, 10*time.Second)
	requireExactlyOnce(t, f, st, 500)
	require.Equal(t, uint64(300), f.Stats().Duplicates)
}

// A power loss on the producing machine can lose messages the forwarder
// had already sent, and give their sequence numbers to new messages. The
// checksum in the message ID keeps the new ones apart: the stream stores
// them, after the lost ones, instead of dropping them as duplicates.
func TestReissuedSequenceNumbersAreNotDuplicates(t *testing.T) {
	srv := startServer(t)
	_, js := connect(t, srv.url())
	st := createStream(t, js, "EV", 0)
	q, c := openQueue(t)
	enqueue(t, q, 1, 11)
	f, err := New(q, c, js, "EV.a", Config{})
	require.NoError(t, err)
	// Messages 1 to 10 with other bytes reached the stream before a power
	// loss took them from the queue.
	publishAsForwarded(t, js, f, 10, func(n uint64) []byte { return []byte("lost-" + strconv.FormatUint(n, 10)) })
	runForwarder(t, f)
	waitForwarded(t, f, 11, 10*time.Second)
	require.Zero(t, f.Stats().Duplicates, "the new messages are not taken for the lost ones")
	info, err := st.Info(context.Background())
	require.NoError(t, err)
	require.EqualValues(t, 20, info.State.Msgs, "the lost ten and the new ten")
}

func TestForeignPublisherKeepsOrder(t *testing.T) {
	srv := startServer(t)
	_, js := connect(t, srv.url())
	st := createStream(t, js, "EV", 0)
	q, c := openQueue(t)
	const n = 5000
	enqueue(t, q, 1, n+1)
	f, err := New(q, c, js, "EV.a", Config{Window: 128})
	require.NoError(t, err)

	// Another publisher writes into the same stream meanwhile: the
	// server refuses our messages whose predecessor is not the last
	// one, and the forwarder re-sends from there.
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := uint64(0); ctx.Err() == nil; i++ {
			_, err := js.Publish(ctx, "EV.other", []byte("m0"))
			if err != nil && ctx.Err() == nil {
				t.Errorf("foreign publish: %v", err)
				return
			}
		}
	}()
	runForwarder(t, f)
	waitForwarded(t, f, n+1, 60*time.Second)
	cancel()
	wg.Wait()

	nums, _ := streamContent(t, st)
	var ours []uint64
	for _, x := range nums {
		if x != 0 {
			ours = append(ours, x)
		}
	}
	require.Len(t, ours, n)
	for i, x := range ours {
		require.Equal(t, uint64(i+1), x, "our message %d", i+1)
	}
	require.Greater(t, len(nums), n, "the foreign publisher wrote in between")
	t.Logf("foreign messages %d, retries %d", len(nums)-n, f.Stats().Retries)
}

func TestStopCommitsAcknowledged(t *testing.T) {
	srv := startServer(t)
	_, js := connect(t, srv.url())
	st := createStream(t, js, "EV", 0)
	q, c := openQueue(t)
	const n = 20000
	enqueue(t, q, 1, n+1)
	f, err := New(q, c, js, "EV.a", Config{Window: 4096})
	require.NoError(t, err)
	stop := runForwarder(t, f)
	waitForwarded(t, f, 1000, 10*time.Second)
	require.ErrorIs(t, stop(), context.Canceled)

	// Every message the stream holds was acknowledged before Run
	// returned (nothing was in flight after it), so all are committed.
	next := c.Position()
	require.Less(t, next, uint64(n+1), "stopped in the middle")
	info, err := st.Info(context.Background())
	require.NoError(t, err)
	require.Equal(t, next-1, info.State.Msgs, "stream holds exactly the committed messages")
	require.Equal(t, next-1, f.Stats().Forwarded)
	t.Logf("after stop: %+v", f.Stats())

	runForwarder(t, f)
	waitForwarded(t, f, n+1, 60*time.Second)
	t.Logf("after drain: %+v", f.Stats())
	requireExactlyOnce(t, f, st, n)
	require.Zero(t, f.Stats().Duplicates)
}

func TestQueueClosedEndsRun(t *testing.T) {
	srv := startServer(t)
	_, js := connect(t, srv.url())
	createStream(t, js, "EV", 0)
	q, err := bigqueue.NewQueue(t.TempDir())
	require.NoError(t, err)
	c, err := q.NewConsumer("fwd")
	require.NoError(t, err)
	f, err := New(q, c, js, "EV.a", Config{})
	require.NoError(t, err)
	done := make(chan error, 1)
	go func() { done <- f.Run(context.Background()) }()
	require.NoError(t, q.Enqueue(payload(1)))
	waitForwarded(t, f, 2, 10*time.Second)
	require.NoError(t, q.Close())
	err = <-done
	require.ErrorIs(t, err, bigqueue.ErrClosed)
	require.ErrorIs(t, err, ErrQueue)
	require.ErrorIs(t, f.Stats().LastError, bigqueue.ErrClosed)
}

func TestAckTimeout(t *testing.T) {
	// A subscriber that never answers stands in for a stream that lost
	// the message: the forwarder times out and retries.
	srv := startServer(t)
	nc, js := connect(t, srv.url())
	sub, err := nc.SubscribeSync("EV.a")
	require.NoError(t, err)
	defer func() { require.NoError(t, sub.Unsubscribe()) }()
	q, c := openQueue(t)
	enqueue(t, q, 1, 11)
	f, err := New(q, c, js, "EV.a", Config{AckTimeout: 50 * time.Millisecond, MinBackoff: time.Millisecond, MaxBackoff: 2 * time.Millisecond})
	require.NoError(t, err)
	runForwarder(t, f)
	for f.Stats().Retries < 2 {
		<-f.changed()
	}
	require.True(t, errors.Is(f.Stats().LastError, ErrAckTimeout), "last error %v", f.Stats().LastError)
	require.Equal(t, uint64(1), f.Stats().NextSeq)
}

func TestOrderWhenAMessageInTheMiddleFails(t *testing.T) {
	// The stream refuses message 5 (too large) and would store 6..10,
	// sent in the same window; the forwarder must leave the stream in
	// the queue's order once message 5 goes through.
	srv := startServer(t)
	_, js := connect(t, srv.url())
	ctx := context.Background()
	cfg := natsjs.StreamConfig{Name: "EV", Subjects: []string{"EV.>"}, Storage: natsjs.FileStorage, MaxMsgSize: 256}
	st, err := js.CreateStream(ctx, cfg)
	require.NoError(t, err)
	q, c := openQueue(t)
	for n := uint64(1); n <= 10; n++ {
		msg := payload(n)
		if n == 5 {
			msg = append(msg, make([]byte, 300)...)
			for i := len(payload(n)); i < len(msg); i++ {
				msg[i] = ' '
			}
		}
		require.NoError(t, q.Enqueue(msg))
	}
	f, err := New(q, c, js, "EV.a", Config{MinBackoff: time.Millisecond, MaxBackoff: 5 * time.Millisecond})
	require.NoError(t, err)
	runForwarder(t, f)
	for f.Stats().Retries < 3 {
		<-f.changed()
	}
	s := f.Stats()
	require.Equal(t, uint64(5), s.NextSeq, "committed up to the refused message")
	var apiErr *natsjs.APIError
	require.ErrorAs(t, s.LastError, &apiErr, "the stream's refusal is the last error")
	info, err := st.Info(ctx)
	require.NoError(t, err)
	require.Equal(t, uint64(4), info.State.Msgs, "6..10 were refused too: their predecessor is missing")

	cfg.MaxMsgSize = 0
	_, err = js.UpdateStream(ctx, cfg)
	require.NoError(t, err)
	waitForwarded(t, f, 11, 10*time.Second)
	nums, _ := streamContent(t, st)
	require.Equal(t, []uint64{1, 2, 3, 4, 5, 6, 7, 8, 9, 10}, nums)
}

func TestDrain(t *testing.T) {
	srv := startServer(t)
	_, js := connect(t, srv.url())
	q, c := openQueue(t)
	enqueue(t, q, 1, 1001)
	f, err := New(q, c, js, "EV.a", Config{Window: 100})
	require.NoError(t, err)

	// No stream yet: Drain reports the first failure and commits nothing.
	err = f.Drain(context.Background())
	require.ErrorIs(t, err, natsjs.ErrNoStreamResponse)
	require.Equal(t, uint64(1), f.Stats().NextSeq)
	require.Zero(t, f.Stats().Retries, "Drain does not retry")

	st := createStream(t, js, "EV", 0)
	require.NoError(t, f.Drain(context.Background()))
	require.Equal(t, uint64(1001), f.Stats().NextSeq, "Drain returns once everything is committed")
	require.NoError(t, f.Drain(context.Background()), "nothing to do")
	requireExactlyOnce(t, f, st, 1000)
	require.Equal(t, []string{"fwd"}, q.Consumers())
}

func TestRunRefusesBadStarts(t *testing.T) {
	srv := startServer(t)
	_, js := connect(t, srv.url())
	q, err := bigqueue.NewQueue(t.TempDir())
	require.NoError(t, err)
	c, err := q.NewConsumer("fwd")
	require.NoError(t, err)
	f, err := New(q, c, js, "EV.a", Config{})
	require.NoError(t, err)
	//lint:ignore SA1012 a nil context is the case under test
	require.ErrorIs(t, f.Run(nil), bigqueue.ErrNilContext)
	require.NoError(t, q.Close())
	err = f.Run(context.Background())
	require.ErrorIs(t, err, ErrQueue)
	require.ErrorIs(t, err, bigqueue.ErrClosed)
}

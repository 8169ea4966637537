package jetstream

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/stretchr/testify/require"
)

// TestOutage stops the server for 60 s while a producer enqueues at a
// steady rate: the producer never waits for the network, the queue
// absorbs the backlog, and once the server is back the forwarder drains
// it; the test prints the catch-up rate. It runs unless -short (about 80
// s, in parallel with the other tests).
func TestOutage(t *testing.T) {
	if testing.Short() {
		t.Skip("-short")
	}
	t.Parallel()
	const (
		rate   = 2000 // messages per second offered
		warmup = 5 * time.Second
		outage = 60 * time.Second
		tick   = 10 * time.Millisecond
	)
	srv := startServer(t)
	_, js := connect(t, srv.url(), nats.ReconnectBufSize(-1))
	st := createStream(t, js, "EV", 0)
	q, c := openQueue(t)
	f, err := New(q, c, js, "EV.a", Config{})
	require.NoError(t, err)
	stopForwarder := runForwarder(t, f)

	// The producer enqueues at rate: every tick it catches up with the
	// number due since it started, so a late tick (a loaded machine, the
	// race detector) does not lower the offered rate. It records the
	// slowest Enqueue; it knows nothing of the network.
	var produced atomic.Uint64
	var slowest atomic.Int64
	ctx, stopProducer := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		tk := time.NewTicker(tick)
		defer tk.Stop()
		begin := time.Now()
		for n := uint64(1); ; {
			select {
			case <-ctx.Done():
				return
			case <-tk.C:
			}
			for due := uint64(time.Since(begin).Seconds() * rate); n <= due; n++ {
				start := time.Now()
				if err := q.Enqueue(payload(n)); err != nil {
					t.Errorf("enqueue %d: %v", n, err)
					return
				}
				if d := int64(time.Since(start)); d > slowest.Load() {
					slowest.Store(d)
				}
				produced.Store(n)
			}
		}
	}()

	time.Sleep(warmup) // the schedule: traffic before the outage
	srv.stop()
	down := time.Now()
	time.Sleep(outage) // the schedule: the outage itself
	backlog := c.Len()
	srv.start()
	up := time.Now()
	forwardedAtUp := f.Stats().Forwarded

	// Caught up: the backlog is below what 100 ms of traffic adds. The
	// first commit after the restart waits for the forwarder's backoff.
	var resumed time.Duration
	for {
		changed := f.changed()
		if resumed == 0 && f.Stats().Forwarded > forwardedAtUp {
			resumed = time.Since(up)
		}
		if c.Len() < rate/10 {
			break
		}
		select {
		case <-changed:
		case <-time.After(5 * time.Minute):
			require.FailNow(t, "no catch-up after 5 minutes", "stats %+v", f.Stats())
		}
	}
	catchUp := time.Since(up)
	forwardedCatchUp := f.Stats().Forwarded - forwardedAtUp
	stopProducer()
	wg.Wait()
	total := produced.Load()
	waitForwarded(t, f, total+1, time.Minute)
	require.ErrorIs(t, stopForwarder(), context.Canceled)
	s := f.Stats()

	nums, _ := streamContent(t, st)
	require.Len(t, nums, int(total), "every message enqueued is in the stream")
	for i, n := range nums {
		require.Equal(t, uint64(i+1), n, "stream order at %d", i+1)
	}
	// The catch-up rate counts from the first commit after the restart;
	// the wait before it (the backoff, the reconnect) is shown apart.
	report(t, "outage=%s offered=%d/s backlog_max=%d catch_up=%.0f/s (%d messages in %.1fs, resumed %.1fs after the restart; %.0f/s counting that) slowest_enqueue=%s retries=%d dropped=%d",
		outage.Round(time.Second), rate, backlog, float64(forwardedCatchUp)/(catchUp-resumed).Seconds(), forwardedCatchUp,
		(catchUp - resumed).Seconds(), resumed.Seconds(), float64(forwardedCatchUp)/catchUp.Seconds(),
		time.Duration(slowest.Load()).Round(time.Microsecond), s.Retries, int(total)-len(nums))
	require.GreaterOrEqual(t, backlog, int64(rate*outage.Seconds()*8/10), "the queue absorbed the outage's traffic (down since %s)", down.Format(time.TimeOnly))
	require.Less(t, time.Duration(slowest.Load()), time.Second, "producers never wait for the network")
	require.Positive(t, s.Retries, "the forwarder retried during the outage")
	require.Error(t, s.LastError)
}

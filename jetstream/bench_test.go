package jetstream

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/bigqueue-go/bigqueue"
	"github.com/nats-io/nats.go"
	natsjs "github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/require"
)

// benchSize is the payload size of the throughput comparison.
const benchSize = 128

// benchPayload returns a message of benchSize bytes.
func benchPayload() []byte {
	b := make([]byte, benchSize)
	for i := range b {
		b[i] = byte('a' + i%26)
	}
	return b
}

// publishDirect publishes n messages of benchSize bytes to subject with
// nats.go's asynchronous publish, each with a Nats-Msg-Id as the
// forwarder sets one, and waits until the stream acknowledged all. It
// returns how long that took.
func publishDirect(tb testing.TB, js natsjs.JetStream, subject string, n int) time.Duration {
	tb.Helper()
	data := benchPayload()
	start := time.Now()
	for i := range n {
		_, err := js.PublishMsgAsync(&nats.Msg{Subject: subject, Data: data,
			Header: nats.Header{nats.MsgIdHdr: []string{fmt.Sprintf("direct-%d", i)}}},
			// Wait for a free slot as long as the forwarder does.
			natsjs.WithStallWait(DefaultAckTimeout))
		require.NoError(tb, err)
	}
	select {
	case <-js.PublishAsyncComplete():
	case <-time.After(time.Minute):
		require.FailNow(tb, "direct publish: acknowledgements missing after a minute")
	}
	return time.Since(start)
}

// forwardBacklog enqueues n messages of benchSize bytes into a new queue
// (not timed), then forwards them to subject and returns how long the
// forwarding took.
func forwardBacklog(tb testing.TB, js natsjs.JetStream, subject string, n int) time.Duration {
	tb.Helper()
	q, err := bigqueue.NewQueue(tb.TempDir())
	require.NoError(tb, err)
	tb.Cleanup(func() { require.NoError(tb, q.Close()) })
	c, err := q.NewConsumer("fwd")
	require.NoError(tb, err)
	data := benchPayload()
	for range n {
		require.NoError(tb, q.Enqueue(data))
	}
	require.NoError(tb, q.Flush())
	f, err := New(q, c, js, subject, Config{})
	require.NoError(tb, err)
	start := time.Now()
	stop := runForwarder(tb, f)
	waitForwarded(tb, f, uint64(n)+1, 10*time.Minute)
	elapsed := time.Since(start)
	require.ErrorIs(tb, stop(), context.Canceled)
	require.Zero(tb, f.Stats().Retries, "last error %v", f.Stats().LastError)
	return elapsed
}

// BenchmarkPublish compares forwarding b.N messages of 128 B from a
// queue's backlog with publishing them directly, both asynchronous, to a
// stream of the same embedded server; one op is one message. Run with
// -benchtime=1000000x for the README's figure.
func BenchmarkPublish(b *testing.B) {
	for _, mode := range []string{"direct", "forward"} {
		b.Run(fmt.Sprintf("%s/msg=%dB", mode, benchSize), func(b *testing.B) {
			srv := startServer(b)
			_, js := connect(b, srv.url())
			st := createStream(b, js, "B", 0)
			b.SetBytes(benchSize)
			b.ReportAllocs()
			b.ResetTimer()
			var d time.Duration
			if mode == "direct" {
				d = publishDirect(b, js, "B.x", b.N)
			} else {
				b.StopTimer() // forwardBacklog times itself, without the enqueues
				d = forwardBacklog(b, js, "B.x", b.N)
			}
			b.ReportMetric(float64(b.N)/d.Seconds(), "msgs/s")
			info, err := st.Info(context.Background())
			require.NoError(b, err)
			require.Equal(b, uint64(b.N), info.State.Msgs)
		})
	}
}

// TestThroughputRatio measures both sides of BenchmarkPublish in one run
// and prints the ratio; it runs in the long tier (BIGQUEUE_LONG=1), with
// 1,000,000 messages (BIGQUEUE_MSGS overrides). The machine is shared,
// so the two run in five back-to-back pairs, each on a new server, and
// the median of the five pairs' ratios is the figure: a burst of load on
// the machine moves one pair, not the result.
func TestThroughputRatio(t *testing.T) {
	if !long() {
		t.Skip("BIGQUEUE_LONG=1 measures the forwarding/direct ratio")
	}
	n := 1_000_000
	if s := envInt(t, "BIGQUEUE_MSGS"); s > 0 {
		n = s
	}
	run := func(mode string) float64 {
		srv := startServer(t)
		_, js := connect(t, srv.url())
		createStream(t, js, "B", 0)
		var d time.Duration
		if mode == "direct" {
			d = publishDirect(t, js, "B.x", n)
		} else {
			d = forwardBacklog(t, js, "B.x", n)
		}
		srv.stop()
		return float64(n) / d.Seconds()
	}
	const pairs = 5
	var direct, forward, ratios []float64
	for range pairs {
		d, f := run("direct"), run("forward")
		direct, forward, ratios = append(direct, d), append(forward, f), append(ratios, f/d)
	}
	pairsText := make([]string, pairs)
	for i := range pairs {
		pairsText[i] = fmt.Sprintf("%.0f/%.0f", forward[i], direct[i])
	}
	slices.Sort(ratios)
	slices.Sort(direct)
	slices.Sort(forward)
	report(t, "msgs=%d size=%dB ratio=%.2f (median of %d pairs; forward/direct msgs/s per pair: %s) direct_median=%.0f/s forward_median=%.0f/s",
		n, benchSize, ratios[pairs/2], pairs, strings.Join(pairsText, " "), direct[pairs/2], forward[pairs/2])
}

package jetstream

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/bigqueue-go/bigqueue"
	"github.com/nats-io/nats.go"
	natsjs "github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/require"
)

// The child process of TestExactlyOnceUnderKills reads its job from
// these environment variables.
const (
	childModeEnv = "BQJS_CHILD"    // "produce" (enqueue and forward) or "drain" (forward until empty)
	childDirEnv  = "BQJS_DIR"      // the queue directory
	childURLEnv  = "BQJS_URL"      // the server
	childRateEnv = "BQJS_RATE"     // messages per second to enqueue
	childSubject = "X.fwd"         // the subject the child forwards to
	childStream  = "X"             // the stream of childSubject
	durableLine  = "durable "      // + the highest sequence number enqueued and flushed
	drainedLine  = "drained next=" // + the consumer's position after draining
)

// TestHelperForwarderChild is the child process of
// TestExactlyOnceUnderKills; it does nothing in a normal test run. It
// owns the queue (a queue has one owner at a time), enqueues at a steady
// rate, flushes every batch and reports the highest flushed sequence
// number on stdout, and runs the forwarder; or, in drain mode, forwards
// until the consumer has nothing left and exits.
func TestHelperForwarderChild(t *testing.T) {
	mode := os.Getenv(childModeEnv)
	if mode == "" {
		t.Skip("the child process of TestExactlyOnceUnderKills")
	}
	q, err := bigqueue.NewQueue(os.Getenv(childDirEnv), bigqueue.SetArenaSize(1<<20))
	require.NoError(t, err)
	defer func() { require.NoError(t, q.Close()) }()
	c, err := q.NewConsumer("fwd")
	require.NoError(t, err)
	// The server may be down when the child starts: try again until it
	// is up (not nats.RetryOnFailedConnect; see the package doc). nats.go's
	// reconnect buffer stays on, which is the harder case for the order.
	var nc *nats.Conn
	for {
		nc, err = nats.Connect(os.Getenv(childURLEnv), nats.MaxReconnects(-1), nats.ReconnectWait(20*time.Millisecond))
		if err == nil {
			break
		}
		time.Sleep(20 * time.Millisecond) // the child's own connect backoff
	}
	defer nc.Close()
	js, err := natsjs.New(nc)
	require.NoError(t, err)
	f, err := New(q, c, js, childSubject, Config{Window: 1024, AckTimeout: time.Second,
		MinBackoff: 10 * time.Millisecond, MaxBackoff: 500 * time.Millisecond})
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	runErr := make(chan error, 1)
	go func() { runErr <- f.Run(ctx) }()

	if mode == "drain" {
		for {
			changed := f.changed()
			if c.Len() == 0 {
				break
			}
			<-changed
		}
		cancel()
		require.ErrorIs(t, <-runErr, context.Canceled)
		s := f.Stats()
		fmt.Printf("%s%d forwarded=%d duplicates=%d retries=%d\n", drainedLine, c.Position(), s.Forwarded, s.Duplicates, s.Retries)
		return
	}

	// Produce until killed: a batch every 10 ms, each message numbered
	// with the sequence number it gets (this is the only producer).
	rate, err := strconv.Atoi(os.Getenv(childRateEnv))
	require.NoError(t, err)
	per := max(1, rate/100)
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	batch := make([][]byte, per)
	for {
		select {
		case err := <-runErr:
			require.NoError(t, err, "the forwarder stopped")
		case <-tick.C:
		}
		next := q.Stats().NextSeq
		for i := range batch {
			batch[i] = payload(next + uint64(i))
		}
		require.NoError(t, q.EnqueueBatch(batch))
		require.NoError(t, q.Flush())
		fmt.Printf("%s%d\n", durableLine, next+uint64(per)-1)
	}
}

// child is a running child process of TestExactlyOnceUnderKills.
type child struct {
	cmd    *exec.Cmd
	stderr bytes.Buffer
	lines  chan string // stdout lines other than durable reports; closed at EOF
}

// startChild starts the test binary as a child in mode; durable reports
// raise *durable.
func startChild(t *testing.T, mode, dir, url string, rate int, durable *atomic.Uint64) *child {
	t.Helper()
	ch := &child{lines: make(chan string, 16)}
	ch.cmd = exec.Command(os.Args[0], "-test.run=^TestHelperForwarderChild$", "-test.count=1")
	ch.cmd.Env = append(os.Environ(), childModeEnv+"="+mode, childDirEnv+"="+dir, childURLEnv+"="+url,
		childRateEnv+"="+strconv.Itoa(rate))
	ch.cmd.Stderr = &ch.stderr
	out, err := ch.cmd.StdoutPipe()
	require.NoError(t, err)
	require.NoError(t, ch.cmd.Start())
	go func() {
		defer close(ch.lines)
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			line := sc.Text()
			if s, ok := strings.CutPrefix(line, durableLine); ok {
				n, err := strconv.ParseUint(s, 10, 64)
				if err == nil && n > durable.Load() {
					durable.Store(n)
				}
				continue
			}
			ch.lines <- line
		}
	}()
	return ch
}

// kill ends the child with SIGKILL and reaps it.
func (ch *child) kill(t *testing.T) {
	t.Helper()
	require.NoError(t, ch.cmd.Process.Kill())
	for range ch.lines {
	}
	err := ch.cmd.Wait()
	require.Error(t, err, "killed")
	require.False(t, ch.cmd.ProcessState.Exited(), "the child died of the signal, not of a failure: %s", ch.stderr.String())
}

// TestExactlyOnceUnderKills runs the forwarder in a child process that
// also enqueues at a steady rate, kills it with SIGKILL at random points
// and starts it again, and stops and restarts the server at random
// points; then it drains the queue and checks that the stream holds
// every message enqueued exactly once, in order. 30 s by default, 10
// minutes with BIGQUEUE_LONG=1; BIGQUEUE_SEED replays the schedule.
func TestExactlyOnceUnderKills(t *testing.T) {
	if testing.Short() {
		t.Skip("-short")
	}
	t.Parallel() // mostly waiting, like TestOutage
	seed := testSeed(t)
	rng := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	duration, rate := 30*time.Second, 5000
	if long() {
		duration = 10 * time.Minute
	}
	srv := startServer(t)
	_, js := connect(t, srv.url())
	// The duplicate window must outlast the test: it is how long the
	// stream recognises a message sent again.
	st := createStream(t, js, childStream, duration+5*time.Minute)
	dir := t.TempDir()

	var durable atomic.Uint64
	kills, serverRestarts := 0, 0
	ch := startChild(t, "produce", dir, srv.url(), rate, &durable)
	for end := time.Now().Add(duration); time.Now().Before(end); {
		// The pause between faults is the schedule, not a wait for an
		// outcome.
		time.Sleep(time.Duration(100+rng.IntN(1400)) * time.Millisecond)
		if rng.IntN(10) < 6 {
			ch.kill(t)
			kills++
			ch = startChild(t, "produce", dir, srv.url(), rate, &durable)
		} else {
			srv.stop()
			time.Sleep(time.Duration(rng.IntN(500)) * time.Millisecond)
			srv.start()
			serverRestarts++
		}
	}
	ch.kill(t)
	kills++

	drain := startChild(t, "drain", dir, srv.url(), 0, &durable)
	var drained string
	for line := range drain.lines {
		if strings.HasPrefix(line, drainedLine) {
			drained = line
		}
	}
	require.NoError(t, drain.cmd.Wait(), "drain child: %s", drain.stderr.String())
	require.NotEmpty(t, drained, "drain child reports")
	next, err := strconv.ParseUint(strings.Fields(strings.TrimPrefix(drained, drainedLine))[0], 10, 64)
	require.NoError(t, err)

	nums, _ := streamContent(t, st)
	seen := make(map[uint64]int, len(nums))
	duplicates := 0
	for _, n := range nums {
		seen[n]++
		if seen[n] > 1 {
			duplicates++
		}
	}
	lost := 0
	for n := uint64(1); n <= durable.Load(); n++ {
		if seen[n] == 0 {
			lost++
		}
	}
	report(t, "seed=%d duration=%s forwarded=%d duplicates_in_stream=%d lost=%d restarts=%d (forwarder kills=%d, server restarts=%d) durable=%d queue_next=%d",
		seed, duration, len(seen), duplicates, lost, kills+serverRestarts, kills, serverRestarts, durable.Load(), next)
	require.Zero(t, duplicates, "duplicates in the stream")
	require.Zero(t, lost, "durably enqueued messages missing from the stream")
	require.Equal(t, int(next-1), len(nums), "the stream holds every message the queue holds")
	for i, n := range nums {
		require.Equal(t, uint64(i+1), n, "stream order is queue order at stream message %d", i+1)
	}
	require.Greater(t, durable.Load(), uint64(rate), "the producers made progress")
}

package jetstream

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/bigqueue-go/bigqueue"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	natsjs "github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/require"
)

// testServer is a NATS server with JetStream embedded in the test
// process, on a store directory and port that survive a restart.
type testServer struct {
	tb       testing.TB
	storeDir string
	port     int
	srv      *server.Server
}

// startServer starts an embedded server with JetStream on a new store
// directory and a free port; cleanup shuts it down.
func startServer(tb testing.TB) *testServer {
	tb.Helper()
	s := &testServer{tb: tb, storeDir: tb.TempDir(), port: -1}
	s.start()
	tb.Cleanup(s.stop)
	return s
}

// start starts the server (again), on the same port and store.
func (s *testServer) start() {
	s.tb.Helper()
	srv, err := server.NewServer(&server.Options{
		Host: "127.0.0.1", Port: s.port, JetStream: true, StoreDir: s.storeDir,
		NoLog: true, NoSigs: true,
	})
	require.NoError(s.tb, err)
	srv.Start()
	require.True(s.tb, srv.ReadyForConnections(10*time.Second), "server ready")
	if s.port == -1 {
		s.port = srv.Addr().(*net.TCPAddr).Port
	}
	s.srv = srv
}

// stop shuts the server down and waits until it has; it does nothing
// when the server is not running.
func (s *testServer) stop() {
	if s.srv == nil {
		return
	}
	s.srv.Shutdown()
	s.srv.WaitForShutdown()
	s.srv = nil
}

// url is the server's client URL, the same across restarts.
func (s *testServer) url() string { return fmt.Sprintf("nats://127.0.0.1:%d", s.port) }

// connect returns a JetStream on a connection to url that reconnects for
// ever; cleanup closes the connection.
func connect(tb testing.TB, url string, opts ...nats.Option) (*nats.Conn, natsjs.JetStream) {
	tb.Helper()
	opts = append([]nats.Option{nats.MaxReconnects(-1), nats.ReconnectWait(20 * time.Millisecond)}, opts...)
	nc, err := nats.Connect(url, opts...)
	require.NoError(tb, err)
	tb.Cleanup(nc.Close)
	js, err := natsjs.New(nc)
	require.NoError(tb, err)
	return nc, js
}

// createStream creates a file-backed stream name on subject "name.>".
func createStream(tb testing.TB, js natsjs.JetStream, name string, dupWindow time.Duration) natsjs.Stream {
	tb.Helper()
	st, err := js.CreateStream(context.Background(), natsjs.StreamConfig{
		Name: name, Subjects: []string{name + ".>"}, Storage: natsjs.FileStorage, Duplicates: dupWindow,
	})
	require.NoError(tb, err)
	return st
}

// openQueue opens a queue in a new temporary directory with small arenas
// and a consumer called "fwd"; cleanup closes it.
func openQueue(tb testing.TB) (*bigqueue.Queue, *bigqueue.Consumer) {
	tb.Helper()
	q, err := bigqueue.NewQueue(tb.TempDir(), bigqueue.SetArenaSize(1<<20))
	require.NoError(tb, err)
	tb.Cleanup(func() { require.NoError(tb, q.Close()) })
	c, err := q.NewConsumer("fwd")
	require.NoError(tb, err)
	return q, c
}

// payload is the message a test enqueues as its n-th: the number, so
// that the stream's content can be checked against the queue's.
func payload(n uint64) []byte { return []byte("m" + strconv.FormatUint(n, 10)) }

// parsePayload returns n of payload(n).
func parsePayload(tb testing.TB, b []byte) uint64 {
	b = bytes.TrimRight(b, " ")
	tb.Helper()
	n, err := strconv.ParseUint(strings.TrimPrefix(string(b), "m"), 10, 64)
	require.NoError(tb, err, "payload %q", b)
	return n
}

// streamContent returns the payload numbers stored in st, in stream
// order, and the Nats-Msg-Id of each, read with an ordered consumer.
func streamContent(tb testing.TB, st natsjs.Stream) (nums []uint64, ids []string) {
	tb.Helper()
	ctx := context.Background()
	info, err := st.Info(ctx)
	require.NoError(tb, err)
	total := info.State.Msgs
	if total == 0 {
		return nil, nil
	}
	cons, err := st.OrderedConsumer(ctx, natsjs.OrderedConsumerConfig{})
	require.NoError(tb, err)
	var last uint64
	for uint64(len(nums)) < total {
		batch, err := cons.Fetch(min(int(total)-len(nums), 10000), natsjs.FetchMaxWait(10*time.Second))
		require.NoError(tb, err)
		got := 0
		for m := range batch.Messages() {
			md, err := m.Metadata()
			require.NoError(tb, err)
			require.Greater(tb, md.Sequence.Stream, last, "stream order")
			last = md.Sequence.Stream
			nums = append(nums, parsePayload(tb, m.Data()))
			ids = append(ids, m.Headers().Get(nats.MsgIdHdr))
			got++
		}
		require.NoError(tb, batch.Error())
		require.NotZero(tb, got, "fetch returned nothing; have %d of %d", len(nums), total)
	}
	return nums, ids
}

// testSeed returns BIGQUEUE_SEED when set, else the clock, and logs it.
func testSeed(tb testing.TB) uint64 {
	tb.Helper()
	seed := uint64(time.Now().UnixNano())
	if s := os.Getenv("BIGQUEUE_SEED"); s != "" {
		var err error
		seed, err = strconv.ParseUint(s, 10, 64)
		require.NoError(tb, err, "BIGQUEUE_SEED")
	}
	tb.Logf("seed=%d (BIGQUEUE_SEED=%d reproduces)", seed, seed)
	return seed
}

// long reports whether the long tier runs (BIGQUEUE_LONG=1).
func long() bool { return os.Getenv("BIGQUEUE_LONG") == "1" }

// runForwarder runs f in a goroutine; the returned function cancels it
// and returns Run's error.
func runForwarder(tb testing.TB, f *Forwarder) (stop func() error) {
	tb.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- f.Run(ctx) }()
	var err error
	stopped := false
	stop = func() error {
		if !stopped {
			cancel()
			err = <-done
			stopped = true
		}
		return err
	}
	tb.Cleanup(func() { _ = stop() })
	return stop
}

// waitForwarded waits until f has committed every message before next,
// or fails the test after timeout.
func waitForwarded(tb testing.TB, f *Forwarder, next uint64, timeout time.Duration) {
	tb.Helper()
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	for {
		changed := f.changed()
		if f.Stats().NextSeq >= next {
			return
		}
		select {
		case <-changed:
		case <-deadline.C:
			require.FailNow(tb, "forwarder did not catch up", "want next %d; stats %+v", next, f.Stats())
		}
	}
}

// envInt returns the integer in environment variable name, 0 when unset.
func envInt(tb testing.TB, name string) int {
	tb.Helper()
	s := os.Getenv(name)
	if s == "" {
		return 0
	}
	n, err := strconv.Atoi(s)
	require.NoError(tb, err, name)
	return n
}

// report logs a test's summary line and, when go test runs without -v
// (which hides t.Log and the output of passing packages), also writes it
// to the go command's standard output, where it shows next to the
// package's ok line; the library's test kit does the same.
func report(tb testing.TB, format string, args ...any) {
	tb.Helper()
	line := fmt.Sprintf(format, args...)
	tb.Log(line)
	if w := reportOut(); w != nil {
		fmt.Fprintf(w, "    %s: %s\n", tb.Name(), line)
	}
}

// reportOut is the go command's standard output, when this test binary
// is its child, -v is off and that output is a pipe or a terminal;
// nil otherwise (t.Log shows the line with -v). Linux only. The same
// rules as the library's test kit.
var reportOut = sync.OnceValue(func() io.Writer {
	if testing.Verbose() {
		return nil
	}
	parent := os.Getppid()
	comm, err := os.ReadFile(fmt.Sprintf("/proc/%d/comm", parent))
	if err != nil || strings.TrimSpace(string(comm)) != "go" {
		return nil
	}
	// Only a pipe or a terminal: a regular file opened again has an
	// offset of its own, and the go command's next write would land on
	// top of the line.
	out := fmt.Sprintf("/proc/%d/fd/1", parent)
	if fi, err := os.Stat(out); err != nil || fi.Mode()&(os.ModeNamedPipe|os.ModeCharDevice) == 0 {
		return nil
	}
	f, err := os.OpenFile(out, os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		return nil
	}
	return f
})

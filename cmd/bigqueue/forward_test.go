package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"hash/crc32"
	"net"
	"os/exec"
	"syscall"
	"testing"
	"time"

	"github.com/bigqueue-go/bigqueue"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	natsjs "github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/require"
)

// natsServer starts a NATS server with JetStream embedded in the test
// process and returns its URL and a JetStream on it; cleanup stops it.
func natsServer(t *testing.T) (string, natsjs.JetStream) {
	t.Helper()
	return natsServerAt(t, -1)
}

// natsServerAt is natsServer on a given port (-1: any free one).
func natsServerAt(t *testing.T, port int) (string, natsjs.JetStream) {
	t.Helper()
	srv, err := server.NewServer(&server.Options{Host: "127.0.0.1", Port: port, JetStream: true,
		StoreDir: t.TempDir(), NoLog: true, NoSigs: true})
	require.NoError(t, err)
	srv.Start()
	t.Cleanup(func() {
		srv.Shutdown()
		srv.WaitForShutdown()
	})
	require.True(t, srv.ReadyForConnections(10*time.Second))
	nc, err := nats.Connect(srv.ClientURL())
	require.NoError(t, err)
	t.Cleanup(nc.Close)
	js, err := natsjs.New(nc)
	require.NoError(t, err)
	return srv.ClientURL(), js
}

// nextMessages reads n messages of stream name from sequence from on,
// waiting up to 30 s for each, and returns their payloads and IDs.
func nextMessages(t *testing.T, js natsjs.JetStream, name string, from uint64, n int) (data, ids []string) {
	t.Helper()
	ctx := context.Background()
	cons, err := js.OrderedConsumer(ctx, name, natsjs.OrderedConsumerConfig{
		DeliverPolicy: natsjs.DeliverByStartSequencePolicy, OptStartSeq: from})
	require.NoError(t, err)
	for range n {
		ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		m, err := cons.Next(natsjs.FetchContext(ctx))
		cancel()
		require.NoError(t, err, "stream %s: message %d of %d", name, len(data)+1, n)
		data = append(data, string(m.Data()))
		ids = append(ids, m.Headers().Get(nats.MsgIdHdr))
	}
	return data, ids
}

func TestForwardOnce(t *testing.T) {
	url, js := natsServer(t)
	dir := t.TempDir()
	ok(t, lines("one", "two", "three"), "push", dir)
	out := ok(t, nil, "forward", dir, "--server", url, "--subject", "ev.host1", "--stream", "EV", "--once")
	require.Equal(t, "forwarded 3 messages to ev.host1 (0 in the stream already)\n", out)
	data, ids := nextMessages(t, js, "EV", 1, 3)
	require.Equal(t, []string{"one", "two", "three"}, data)
	q, err := bigqueue.NewQueue(dir)
	require.NoError(t, err)
	id := fmt.Sprintf("%016x", q.Stats().QueueID)
	require.Equal(t, []string{"jetstream"}, q.Consumers(), "the consumer stays, the cursor does not")
	require.NoError(t, q.Close())
	sum := func(s string) string {
		return fmt.Sprintf("%08x", crc32.Checksum([]byte(s), crc32.MakeTable(crc32.Castagnoli)))
	}
	require.Equal(t, []string{id + "-1-" + sum("one"), id + "-2-" + sum("two"), id + "-3-" + sum("three")}, ids)

	// Nothing new: nothing sent; the stream exists already.
	out = ok(t, nil, "forward", dir, "--server", url, "--subject", "ev.host1", "--stream", "EV", "--once")
	require.Equal(t, "forwarded 0 messages to ev.host1 (0 in the stream already)\n", out)
	info, err := js.Stream(context.Background(), "EV")
	require.NoError(t, err)
	require.Equal(t, uint64(3), info.CachedInfo().State.Msgs)

	// Another consumer forwards the same messages again: the stream knows
	// their IDs and keeps one copy.
	out = ok(t, nil, "forward", dir, "--server", url, "--subject", "ev.host1", "-c", "second", "--once")
	require.Equal(t, "forwarded 3 messages to ev.host1 (3 in the stream already)\n", out)
}

func TestForwardErrors(t *testing.T) {
	url, _ := natsServer(t)
	dir := t.TempDir()
	ok(t, lines("one"), "push", dir)
	r := bq(t, nil, "forward", dir, "--server", url)
	require.Equal(t, exitUsage, r.code, "no subject")
	require.Contains(t, r.stderr, "-subject")
	r = bq(t, nil, "forward", dir, "--server", url, "--subject", "nowhere", "--once")
	require.Equal(t, exitFailed, r.code, "no stream on the subject: %s", r.stderr)
	require.Contains(t, r.stderr, "no response from stream")
	r = bq(t, nil, "forward", t.TempDir(), "--server", url, "--subject", "s", "--once")
	require.Equal(t, exitCannotOpen, r.code, "no queue")
	// Nothing was committed by the failures.
	require.Equal(t, "one\n", ok(t, nil, "peek", dir, "-c", "jetstream"))
}

// TestForwardFollows runs forward until SIGINT: it forwards what a
// producer enqueues while it waits, and exits 130.
func TestForwardFollows(t *testing.T) {
	url, js := natsServer(t)
	dir := t.TempDir()
	ok(t, lines("first"), "push", dir)
	// The stream exists already: -stream leaves it as it is.
	_, err := js.CreateStream(context.Background(), natsjs.StreamConfig{Name: "EV", Subjects: []string{"ev.a"}})
	require.NoError(t, err)
	cmd := exec.Command(binaryPath, "forward", dir, "--server", url, "--subject", "ev.a", "--stream", "EV")
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	require.NoError(t, cmd.Start())
	t.Cleanup(func() {
		if cmd.ProcessState == nil {
			_ = cmd.Process.Kill()
			_ = cmd.Wait()
		}
	})
	data, _ := nextMessages(t, js, "EV", 1, 1)
	require.Equal(t, []string{"first"}, data)
	for {
		// The producer may find forward holding the queue: it retries,
		// as a producer must when a queue has one owner at a time.
		q, err := bigqueue.NewQueue(dir)
		if errors.Is(err, bigqueue.ErrLocked) {
			continue
		}
		require.NoError(t, err)
		require.NoError(t, q.EnqueueString("second"))
		require.NoError(t, q.Close())
		break
	}
	data, _ = nextMessages(t, js, "EV", 2, 1)
	require.Equal(t, []string{"second"}, data)

	require.NoError(t, cmd.Process.Signal(syscall.SIGINT))
	err = cmd.Wait()
	var exit *exec.ExitError
	require.ErrorAs(t, err, &exit)
	require.Equal(t, exitInterrupted, exit.ExitCode(), "stderr: %s", stderr.String())
	require.Equal(t, "forwarded 2 messages to ev.a (0 in the stream already)\n", stdout.String())
	ok(t, nil, "verify", dir)
}

// TestForwardServerDown starts forward while no server listens: it says
// once that it retries, keeps the messages, and forwards them once a
// server comes up on that address.
func TestForwardServerDown(t *testing.T) {
	// A free port: take one, then give it back.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	port := l.Addr().(*net.TCPAddr).Port
	require.NoError(t, l.Close())
	dir := t.TempDir()
	ok(t, lines("kept"), "push", dir)
	cmd := exec.Command(binaryPath, "forward", dir, "--server", fmt.Sprintf("nats://127.0.0.1:%d", port), "--subject", "ev.a")
	var stdout bytes.Buffer
	cmd.Stdout = &stdout
	stderr, err := cmd.StderrPipe()
	require.NoError(t, err)
	require.NoError(t, cmd.Start())
	t.Cleanup(func() {
		if cmd.ProcessState == nil {
			_ = cmd.Process.Kill()
			_ = cmd.Wait()
		}
	})
	errs := bufio.NewReader(stderr)
	line, err := errs.ReadString('\n')
	require.NoError(t, err)
	require.Contains(t, line, "retrying with backoff")

	_, js := natsServerAt(t, port)
	_, err = js.CreateStream(context.Background(), natsjs.StreamConfig{Name: "EV", Subjects: []string{"ev.a"}})
	require.NoError(t, err)
	data, _ := nextMessages(t, js, "EV", 1, 1)
	require.Equal(t, []string{"kept"}, data)
	line, err = errs.ReadString('\n')
	require.NoError(t, err)
	require.Equal(t, "bigqueue: forward: resumed\n", line)

	require.NoError(t, cmd.Process.Signal(syscall.SIGINT))
	err = cmd.Wait()
	var exit *exec.ExitError
	require.ErrorAs(t, err, &exit)
	require.Equal(t, exitInterrupted, exit.ExitCode())
	require.Equal(t, "forwarded 1 message to ev.a (0 in the stream already)\n", stdout.String())
}

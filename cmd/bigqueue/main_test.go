package main

import (
	"bufio"
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/bigqueue-go/bigqueue"
	orig "github.com/grandecola/bigqueue"
	"github.com/stretchr/testify/require"
)

// binaryPath is the bigqueue binary TestMain builds for the tests, with
// the race detector when the tests have it.
var binaryPath string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "bigqueue-cli-test-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	binaryPath = filepath.Join(dir, "bigqueue")
	args := []string{"build", "-o", binaryPath}
	if raceEnabled {
		args = append(args, "-race")
	}
	out, err := exec.Command("go", append(args, ".")...).CombinedOutput()
	if err != nil {
		fmt.Fprintf(os.Stderr, "go build: %v\n%s", err, out)
		os.Exit(1)
	}
	code := m.Run()
	if err := os.RemoveAll(dir); err != nil && code == 0 {
		fmt.Fprintln(os.Stderr, err)
		code = 1
	}
	os.Exit(code)
}

// result is what a run of the binary gave.
type result struct {
	code           int
	stdout, stderr string
}

// bq runs the binary with args and stdin and returns what it gave.
func bq(t *testing.T, stdin []byte, args ...string) result {
	t.Helper()
	cmd := exec.Command(binaryPath, args...)
	cmd.Stdin = bytes.NewReader(stdin)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	var exit *exec.ExitError
	if err != nil && !errors.As(err, &exit) {
		require.NoError(t, err)
	}
	return result{code: cmd.ProcessState.ExitCode(), stdout: stdout.String(), stderr: stderr.String()}
}

// ok runs the binary and requires exit status 0.
func ok(t *testing.T, stdin []byte, args ...string) string {
	t.Helper()
	r := bq(t, stdin, args...)
	require.Equal(t, 0, r.code, "bigqueue %v: stderr %s", args, r.stderr)
	return r.stdout
}

// files returns the content and modification time of every file of dir
// but the lock, to show that a command changed nothing.
func files(t *testing.T, dir string) map[string]string {
	t.Helper()
	entries, err := os.ReadDir(dir)
	require.NoError(t, err)
	out := make(map[string]string)
	for _, e := range entries {
		path := filepath.Join(dir, e.Name())
		b, err := os.ReadFile(path)
		require.NoError(t, err)
		fi, err := os.Stat(path)
		require.NoError(t, err)
		out[e.Name()] = fmt.Sprintf("%s@%d", b, fi.ModTime().UnixNano())
	}
	return out
}

// lines joins msgs as push reads them, one per line.
func lines(msgs ...string) []byte {
	var b bytes.Buffer
	for _, m := range msgs {
		b.WriteString(m + "\n")
	}
	return b.Bytes()
}

func TestPushPopLines(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "q")
	ok(t, []byte("one\ntwo\n\nfour\nno newline at the end"), "push", dir)
	require.Equal(t, "one\n", ok(t, nil, "pop", dir))
	require.Equal(t, "two\n\nfour\n", ok(t, nil, "pop", dir, "-n", "3"))
	require.Equal(t, "no newline at the end\n", ok(t, nil, "pop", "--count=0", dir))
	r := bq(t, nil, "pop", dir)
	require.Equal(t, exitEmpty, r.code, "an empty queue")
	require.Empty(t, r.stdout)

	// Long lines cross push's read buffer.
	long := strings.Repeat("x", 200<<10)
	ok(t, lines(long, "short"), "push", dir)
	require.Equal(t, string(lines(long, "short")), ok(t, nil, "pop", "-n", "0", dir))
}

func TestPushPopNullAndRaw(t *testing.T) {
	dir := t.TempDir()
	ok(t, []byte("with\nnewline\x00\x00last"), "push", "-0", dir)
	require.Equal(t, "with\nnewline\x00\x00last\x00", ok(t, nil, "pop", "-0", "-n", "0", dir))

	seed := uint64(time.Now().UnixNano())
	t.Logf("seed %d", seed)
	rng := rand.New(rand.NewPCG(seed, 0))
	raw := make([]byte, 100<<10)
	for i := range raw {
		raw[i] = byte(rng.IntN(256))
	}
	ok(t, raw, "push", "-raw", dir)
	ok(t, nil, "push", "--raw", dir) // an empty message
	var got jsonMessage
	require.NoError(t, json.Unmarshal([]byte(ok(t, nil, "peek", dir, "-json")), &got))
	require.Nil(t, got.Text, "random bytes are no UTF-8")
	require.Equal(t, len(raw), got.Bytes)
	decoded, err := base64.StdEncoding.DecodeString(*got.Base64)
	require.NoError(t, err)
	require.Equal(t, raw, decoded)
	require.Equal(t, string(raw), ok(t, nil, "pop", "-raw", dir))
	require.Equal(t, "\n", ok(t, nil, "peek", "-hex", dir), "the empty message")
	require.Equal(t, `{"bytes":0,"text":""}`+"\n", ok(t, nil, "pop", "-json", dir))

	r := bq(t, nil, "push", "-0", "-raw", dir)
	require.Equal(t, exitUsage, r.code, "-0 and -raw exclude each other")
}

// TestReadersMoveNothing runs every read-only command and requires the
// files unchanged and every consumer where it was, which a later pop
// shows.
func TestReadersMoveNothing(t *testing.T) {
	dir := t.TempDir()
	var msgs []string
	for i := range 10 {
		msgs = append(msgs, fmt.Sprintf("message %d <&>", i))
	}
	ok(t, lines(msgs...), "push", dir)
	require.Equal(t, string(lines(msgs[:3]...)), ok(t, nil, "pop", "-n", "3", dir))
	q, err := bigqueue.NewQueue(dir)
	require.NoError(t, err)
	audit, err := q.NewConsumer("audit")
	require.NoError(t, err)
	_, err = audit.Dequeue()
	require.NoError(t, err)
	require.NoError(t, q.Close())

	before := files(t, dir)
	require.Equal(t, string(lines(msgs[3:]...)), ok(t, nil, "peek", dir, "-n", "0"))
	require.Equal(t, string(lines(msgs[3:5]...)), ok(t, nil, "-n", "2", "peek", dir), "flags may come before the command's name too")
	require.Equal(t, string(lines(msgs[1:]...)), ok(t, nil, "peek", "-consumer", "audit", "-n", "0", dir))
	require.Equal(t, msgs[1]+"\n", ok(t, nil, "peek", "-c", "audit", dir))
	require.Equal(t, string(lines(msgs...)), ok(t, nil, "dump", dir))
	require.Equal(t, string(lines(msgs[:4]...)), ok(t, nil, "dump", "-n", "4", dir))
	var hexOut bytes.Buffer
	for _, m := range msgs {
		fmt.Fprintf(&hexOut, "%x\n", m)
	}
	require.Equal(t, hexOut.String(), ok(t, nil, "dump", "--hex", dir))
	var dumped []jsonMessage
	sc := bufio.NewScanner(strings.NewReader(ok(t, nil, "dump", "-json", dir)))
	for sc.Scan() {
		require.Contains(t, sc.Text(), "<&>", "no HTML escaping")
		var m jsonMessage
		require.NoError(t, json.Unmarshal(sc.Bytes(), &m))
		dumped = append(dumped, m)
	}
	require.Len(t, dumped, len(msgs))
	require.Equal(t, msgs[9], *dumped[9].Text)
	ok(t, nil, "stat", dir)
	ok(t, nil, "stat", "-json", dir)
	ok(t, nil, "consumers", dir)
	ok(t, nil, "verify", dir)
	r := bq(t, nil, "peek", "-consumer", "nobody", dir)
	require.Equal(t, exitFailed, r.code)
	require.Contains(t, r.stderr, "no such consumer")
	require.Equal(t, before, files(t, dir), "a read-only command changed the directory")

	require.Equal(t, string(lines(msgs[3:]...)), ok(t, nil, "pop", "-n", "0", dir), "the default consumer did not move")
	require.Equal(t, string(lines(msgs[1:]...)), ok(t, nil, "pop", "-c", "audit", "-n", "0", dir), "audit did not move")
	r = bq(t, nil, "pop", "-c", "nobody", dir)
	require.Equal(t, exitFailed, r.code, "pop creates no consumer")
	require.NotContains(t, ok(t, nil, "consumers", dir), "nobody")
	r = bq(t, nil, "peek", dir)
	require.Equal(t, exitEmpty, r.code)
}

func TestStatJSON(t *testing.T) {
	dir := t.TempDir()
	q, err := bigqueue.NewQueue(dir, bigqueue.SetArenaSize(os.Getpagesize()))
	require.NoError(t, err)
	for i := range 100 {
		require.NoError(t, q.EnqueueString(strings.Repeat("m", i)))
	}
	for range 40 {
		_, err := q.Dequeue()
		require.NoError(t, err)
	}
	c, err := q.NewConsumer("slow")
	require.NoError(t, err)
	_, err = c.Dequeue()
	require.NoError(t, err)
	want := q.Stats()
	require.NoError(t, q.Close())

	var s statJSON
	require.NoError(t, json.Unmarshal([]byte(ok(t, nil, "stat", dir, "--json")), &s))
	require.Equal(t, dir, s.Dir)
	require.Equal(t, 1, s.FormatVersion)
	require.Equal(t, os.Getpagesize(), s.ArenaSize)
	require.Len(t, s.Arenas, want.ArenasOnDisk)
	require.Equal(t, want.Messages, s.Messages)
	require.Equal(t, want.Bytes, s.Bytes)
	require.Equal(t, []consumerJSON{
		{Name: "__default__", Lag: want.Lag["__default__"], Offset: s.Consumers[0].Offset},
		{Name: "slow", Lag: 99, Offset: s.Consumers[1].Offset},
	}, s.Consumers)
	require.EqualValues(t, 60, s.Consumers[0].Lag)
	require.True(t, s.Clean)
	require.Positive(t, s.Flushes)
	require.Zero(t, s.UnflushedBytes)
	require.Positive(t, s.DiskBytes)
	require.LessOrEqual(t, s.DiskBytes, s.ArenaBytes+int64(len(s.Arenas))*4096)
	require.WithinDuration(t, time.Now(), s.IndexModified, time.Hour)

	out := ok(t, nil, "stat", dir)
	for _, want := range []string{"format", "version 1", "arena size", "messages", "slow", "lag 99", "last flush", "shutdown", "clean"} {
		require.Contains(t, out, want)
	}
	var list []consumerJSON
	require.NoError(t, json.Unmarshal([]byte(ok(t, nil, "consumers", "-json", dir)), &list))
	require.Equal(t, s.Consumers, list)
}

func TestConsumersDelete(t *testing.T) {
	dir := t.TempDir()
	ok(t, lines("a", "b"), "push", dir)
	q, err := bigqueue.NewQueue(dir)
	require.NoError(t, err)
	_, err = q.NewConsumer("keep")
	require.NoError(t, err)
	_, err = q.NewConsumer("drop")
	require.NoError(t, err)
	require.NoError(t, q.Close())
	require.Equal(t, "NAME  LAG  OFFSET\ndrop  2    0\nkeep  2    0\n", ok(t, nil, "consumers", dir))
	ok(t, nil, "consumers", "delete", dir, "drop")
	require.Equal(t, "NAME  LAG  OFFSET\nkeep  2    0\n", ok(t, nil, "consumers", dir))
	r := bq(t, nil, "consumers", "delete", dir, "drop")
	require.Equal(t, exitFailed, r.code)
	require.Contains(t, r.stderr, "no such consumer")
	r = bq(t, nil, "consumers", "delete", dir)
	require.Equal(t, exitUsage, r.code)
	require.Contains(t, r.stderr, "Usage:")
	r = bq(t, nil, "consumers", "delete", filepath.Join(t.TempDir(), "none"), "keep")
	require.Equal(t, exitCannotOpen, r.code)
}

// corruptQueue writes 50 messages of 100 bytes into dir with arenas of a
// page, then flips a payload byte of record 3, which starts at byte
// 64+3*116 of arena 0, and returns that offset.
func corruptQueue(t *testing.T, dir string) int {
	t.Helper()
	q, err := bigqueue.NewQueue(dir, bigqueue.SetArenaSize(os.Getpagesize()))
	require.NoError(t, err)
	for i := range 50 {
		require.NoError(t, q.EnqueueString(fmt.Sprintf("%03d%s", i, strings.Repeat(".", 97))))
	}
	require.NoError(t, q.Close())
	off := 64 + 3*116
	path := filepath.Join(dir, "arena-0.bq")
	b, err := os.ReadFile(path)
	require.NoError(t, err)
	b[off+16+50] ^= 0x40
	require.NoError(t, os.WriteFile(path, b, 0o644))
	return off
}

func TestVerify(t *testing.T) {
	clean := t.TempDir()
	ok(t, lines("a", "b", "c"), "push", clean)
	out := ok(t, nil, "verify", clean)
	require.Contains(t, out, "3 records")
	require.Contains(t, out, ": ok")

	dir := t.TempDir()
	off := corruptQueue(t, dir)
	before := files(t, dir)
	r := bq(t, nil, "verify", dir)
	require.Equal(t, exitFailed, r.code, "damage: %s", r.stdout)
	require.Contains(t, r.stdout, fmt.Sprintf("damage: arena 0 (arena-0.bq) offset %d: ", off))
	require.Contains(t, r.stdout, "checksum")
	require.Contains(t, r.stdout, "DAMAGED in 1 places")

	// peek and dump report the damage on stderr, print the rest, and
	// exit 1; nothing changed.
	r = bq(t, nil, "dump", dir)
	require.Equal(t, exitFailed, r.code)
	require.Contains(t, r.stderr, fmt.Sprintf("arena 0 (arena-0.bq) offset %d", off))
	require.True(t, strings.HasPrefix(r.stdout, "000"))
	require.NotContains(t, r.stdout, "003")
	require.Contains(t, r.stdout, "049")
	require.Equal(t, before, files(t, dir))

	// pop goes past it, as the consumer does.
	r = bq(t, nil, "pop", "-n", "0", dir)
	require.Equal(t, exitFailed, r.code)
	require.Contains(t, r.stderr, "damage")
	require.Contains(t, r.stdout, "049")

	// A damaged index: the queue cannot be opened, and that is damage.
	idx := filepath.Join(clean, "index.bq")
	b, err := os.ReadFile(idx)
	require.NoError(t, err)
	b[20] ^= 1 // the arena size, under the header checksum
	require.NoError(t, os.WriteFile(idx, b, 0o644))
	r = bq(t, nil, "verify", clean)
	require.Equal(t, exitFailed, r.code)
	require.Contains(t, r.stderr, "header checksum")
	require.Contains(t, r.stderr, "corrupt data")

	r = bq(t, nil, "verify", filepath.Join(t.TempDir(), "none"))
	require.Equal(t, exitCannotOpen, r.code)
	require.Contains(t, r.stderr, "no queue there")
}

// TestLocked holds a queue open in this process: every command must
// refuse it with exit status 2 and say why.
func TestLocked(t *testing.T) {
	dir := t.TempDir()
	ok(t, lines("a"), "push", dir)
	q, err := bigqueue.NewQueue(dir)
	require.NoError(t, err)
	defer func() { require.NoError(t, q.Close()) }()
	for _, args := range [][]string{
		{"stat", dir}, {"consumers", dir}, {"verify", dir}, {"peek", dir}, {"dump", dir},
		{"push", dir}, {"pop", dir}, {"consumers", "delete", dir, "x"},
	} {
		r := bq(t, lines("b"), args...)
		require.Equal(t, exitCannotOpen, r.code, "%v", args)
		require.Contains(t, r.stderr, "locked by another owner", "%v", args)
		require.Contains(t, r.stderr, "another process has the queue open", "%v", args)
	}
	require.EqualValues(t, 1, q.Len(), "nothing was pushed or popped")
}

func TestUsage(t *testing.T) {
	dir := t.TempDir()
	for _, args := range [][]string{
		{"stat", "-nope", dir}, {"stat"}, {"stat", dir, dir}, {"frobnicate"}, {"peek", "-n", "x", dir},
		{"peek", "-n", "-1", dir}, {"pop", "--json", "--hex", dir}, {"bench", "-n", "0"}, {"import", dir},
	} {
		r := bq(t, nil, args...)
		require.Equal(t, exitUsage, r.code, "%v", args)
		require.Contains(t, r.stderr, "Usage:", "%v", args)
		require.Empty(t, r.stdout, "%v", args)
	}
	r := bq(t, nil, "stat", "-bogus", dir)
	require.Contains(t, r.stderr, "unknown flag: --bogus", "a single-dash word is named whole")

	require.Contains(t, ok(t, nil, "-h"), "Exit status")
	require.Contains(t, ok(t, nil, "verify", "--help"), "0 clean, 1 damaged, 2 could not open")
	require.Contains(t, ok(t, nil, "help", "pop"), "-wait")
	require.Regexp(t, `^bigqueue \S+.* \(go1\.`, ok(t, nil, "--version"))
}

// writeOriginal writes a queue with grandecola/bigqueue v0.6.0 into dir:
// 30 messages, the default consumer read to 10, consumer "late" to 25.
func writeOriginal(t *testing.T, dir string) {
	t.Helper()
	q, err := orig.NewMmapQueue(dir, orig.SetArenaSize(4096))
	require.NoError(t, err)
	for i := range 30 {
		require.NoError(t, q.EnqueueString(fmt.Sprintf("original %d %s", i, strings.Repeat("-", 300))))
	}
	for range 10 {
		_, err := q.Dequeue()
		require.NoError(t, err)
	}
	c, err := q.NewConsumer("late")
	require.NoError(t, err)
	for range 25 {
		_, err := c.Dequeue()
		require.NoError(t, err)
	}
	require.NoError(t, q.Close())
}

func TestImport(t *testing.T) {
	src := t.TempDir()
	writeOriginal(t, src)
	r := bq(t, nil, "stat", src)
	require.Equal(t, exitCannotOpen, r.code)
	require.Contains(t, r.stderr, "bigqueue import SRC NEWDIR")

	dst := filepath.Join(t.TempDir(), "new")
	out := ok(t, nil, "import", src, dst)
	require.Contains(t, out, "imported 20 messages")
	require.Contains(t, out, "consumer __default__: 20 unread")
	require.Contains(t, out, "consumer late: 5 unread")
	require.Regexp(t, `^NAME +LAG +OFFSET\n__default__ +20 +0\nlate +5 +\d+\n$`, ok(t, nil, "consumers", dst))
	var want []string
	for i := 25; i < 30; i++ {
		want = append(want, fmt.Sprintf("original %d %s", i, strings.Repeat("-", 300)))
	}
	require.Equal(t, string(lines(want...)), ok(t, nil, "pop", "-c", "late", "-n", "0", dst))
	require.Contains(t, ok(t, nil, "pop", dst), "original 10 ")

	r = bq(t, nil, "import", src, dst)
	require.Equal(t, exitCannotOpen, r.code, "the destination is not empty")
	require.Contains(t, r.stderr, "not empty")
}

func TestBench(t *testing.T) {
	parent := t.TempDir()
	out := ok(t, nil, "bench", "-n", "2000", "-size", "64", parent)
	require.Regexp(t, `(?m)^enqueue +\d+ msgs/s +[\d.]+ MB/s`, out)
	require.Regexp(t, `(?m)^dequeue +\d+ msgs/s +[\d.]+ MB/s`, out)
	require.Contains(t, out, "2000 messages of 64 bytes")
	entries, err := os.ReadDir(parent)
	require.NoError(t, err)
	require.Empty(t, entries, "bench removed its queue")
}

// startPop starts pop with args and returns its stdout, a reader of its
// stderr lines, and a function that waits for its exit status.
func startPop(t *testing.T, args ...string) (*bytes.Buffer, *bufio.Reader, func() int) {
	t.Helper()
	cmd := exec.Command(binaryPath, append([]string{"pop"}, args...)...)
	var stdout bytes.Buffer
	cmd.Stdout = &stdout
	stderr, err := cmd.StderrPipe()
	require.NoError(t, err)
	require.NoError(t, cmd.Start())
	waited := false
	wait := func() int {
		waited = true
		err := cmd.Wait()
		var exit *exec.ExitError
		if err != nil && !errors.As(err, &exit) {
			require.NoError(t, err)
		}
		return cmd.ProcessState.ExitCode()
	}
	t.Cleanup(func() {
		if !waited {
			require.NoError(t, cmd.Process.Kill())
			wait()
		}
	})
	return &stdout, bufio.NewReader(stderr), wait
}

// TestPopWait starts pop -wait on a queue this process holds: pop says it
// waits, and gets the messages enqueued meanwhile once the queue is
// closed; then on a queue nobody holds, where a producer comes in between
// its polls.
func TestPopWait(t *testing.T) {
	dir := t.TempDir()
	ok(t, nil, "push", "-raw", dir)
	ok(t, nil, "pop", dir)
	q, err := bigqueue.NewQueue(dir)
	require.NoError(t, err)
	stdout, stderr, wait := startPop(t, "-wait", "-n", "2", dir)
	line, err := stderr.ReadString('\n')
	require.NoError(t, err)
	require.Contains(t, line, "held by another process; waiting")
	require.NoError(t, q.EnqueueString("first"))
	require.NoError(t, q.EnqueueString("second"))
	require.NoError(t, q.Close())
	require.Equal(t, 0, wait())
	require.Equal(t, "first\nsecond\n", stdout.String())

	stdout, _, wait = startPop(t, "-wait", dir)
	for {
		// The producer may find pop looking at the queue: it retries,
		// as a producer must when a queue has one owner at a time.
		q, err = bigqueue.NewQueue(dir)
		if !errors.Is(err, bigqueue.ErrLocked) {
			break
		}
	}
	require.NoError(t, err)
	require.NoError(t, q.EnqueueString("third"))
	require.NoError(t, q.Close())
	require.Equal(t, 0, wait())
	require.Equal(t, "third\n", stdout.String())
}

// TestPopInterrupted stops a waiting pop with SIGINT: it exits 130 and
// leaves the queue closed.
func TestPopInterrupted(t *testing.T) {
	dir := t.TempDir()
	ok(t, lines("only"), "push", dir)
	q, err := bigqueue.NewQueue(dir)
	require.NoError(t, err)
	cmd := exec.Command(binaryPath, "pop", "-wait", "-n", "2", dir)
	var stdout bytes.Buffer
	cmd.Stdout = &stdout
	stderr, err := cmd.StderrPipe()
	require.NoError(t, err)
	require.NoError(t, cmd.Start())
	line, err := bufio.NewReader(stderr).ReadString('\n')
	require.NoError(t, err)
	require.Contains(t, line, "waiting")
	require.NoError(t, q.Close())
	// Wait until pop took "only" and waits for the second message: it
	// polls without the lock then, and its stdout holds the first.
	for {
		if q, err = bigqueue.NewQueue(dir); err == nil {
			if q.Len() == 0 {
				require.NoError(t, q.Close())
				break
			}
			require.NoError(t, q.Close())
		}
	}
	require.NoError(t, cmd.Process.Signal(syscall.SIGINT))
	err = cmd.Wait()
	var exit *exec.ExitError
	require.ErrorAs(t, err, &exit)
	require.Equal(t, exitInterrupted, exit.ExitCode())
	require.Equal(t, "only\n", stdout.String())
	ok(t, nil, "verify", dir)
}

// TestPopKeepsUnwritten runs pop with a stdout nobody reads: the write
// fails (SIGPIPE kills it) and the message stays in the queue.
func TestPopKeepsUnwritten(t *testing.T) {
	dir := t.TempDir()
	ok(t, lines("keep me"), "push", dir)
	r, w, err := os.Pipe()
	require.NoError(t, err)
	require.NoError(t, r.Close())
	cmd := exec.Command(binaryPath, "pop", dir)
	cmd.Stdout = w
	err = cmd.Run()
	require.NoError(t, w.Close())
	require.Error(t, err)
	require.Equal(t, "keep me\n", ok(t, nil, "pop", dir))
}

// TestProgressBar runs verify under script(1), on a pseudo-terminal, and
// requires the progress bar; without a terminal there is none.
func TestProgressBar(t *testing.T) {
	script, err := exec.LookPath("script")
	if err != nil {
		t.Skip("script(1) is not installed")
	}
	dir := t.TempDir()
	q, err := bigqueue.NewQueue(dir, bigqueue.SetArenaSize(1<<20))
	require.NoError(t, err)
	msg := make([]byte, 64<<10)
	for range 200 {
		require.NoError(t, q.Enqueue(msg))
	}
	require.NoError(t, q.Close())
	out, err := exec.Command(script, "-qec", binaryPath+" verify "+dir, "/dev/null").CombinedOutput()
	require.NoError(t, err, "%s", out)
	require.Regexp(t, `verify +\d+% `, string(out), "a progress bar")
	require.Contains(t, string(out), "200 records")

	r := bq(t, nil, "verify", dir)
	require.Empty(t, r.stderr, "no bar without a terminal")
	require.Equal(t, 0, r.code)
}

// TestNormalizeArgs covers the rewriting of single-dash long flags.
func TestNormalizeArgs(t *testing.T) {
	root := newRoot(&env{})
	for _, tt := range []struct{ in, want string }{
		{"stat -json d", "stat --json d"},
		{"stat --json d", "stat --json d"},
		{"peek -consumer -json d", "peek --consumer -json d"},
		{"peek -consumer=x -n 5 d", "peek --consumer=x -n 5 d"},
		{"peek -n5 -c x d", "peek -n5 -c x d"},
		{"push -0 d", "push -0 d"},
		{"stat -bogus d", "stat --bogus d"},
		{"stat -nope d", "stat -nope d"}, // -n ope, as the flag parser takes it
		{"pop -wait -- -json", "pop --wait -- -json"},
		{"bench -size 1 -n -1", "bench --size 1 -n -1"},
		{"-version", "--version"},
	} {
		got := normalizeArgs(root, strings.Fields(tt.in))
		require.Equal(t, tt.want, strings.Join(got, " "), tt.in)
	}
}

// TestExitCodesDocumented keeps the help text and the constants in step.
func TestExitCodesDocumented(t *testing.T) {
	long := newRoot(&env{}).Long
	for _, code := range []int{exitOK, exitFailed, exitCannotOpen, exitEmpty, exitUsage, exitInterrupted} {
		require.Regexp(t, `\s`+strconv.Itoa(code)+`\s`, long)
	}
}

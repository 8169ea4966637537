package bigqueue

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// The concurrent kill test: a child process runs producers and consumers
// on one queue at the same time, each on its own goroutine, so that
// Enqueue and Dequeue hold their own halves of the lock (lock.go) while
// the parent kills the child at a random moment. The crash loop's child
// runs one operation at a time; this one checks what the split lock
// leaves behind when a process dies with both halves busy.
//
// The child reports through a pipe, one line per operation that
// returned: "E p i" for message i of producer p, "D p i" for one a
// consumer got. After the kill the parent reopens the queue and reads
// what is left. A process kill keeps the page cache, so:
//   - the queue opens, and every message left is intact and one that
//     some producer enqueued (or was enqueueing when killed);
//   - what is left of each producer's messages is a suffix of them, in
//     order, with no gap: every acknowledged message from the first one
//     left on is still there;
//   - no message a consumer reported is left (a dequeue is not undone).
// Then the parent drains the queue and starts the next child on it.

const (
	concurrentKillDirEnv = "BIGQUEUE_CONCURRENT_KILL_DIR"
	concurrentKillRunEnv = "BIGQUEUE_CONCURRENT_KILL_RUN"
	concurrentProducers  = 2
)

// concurrentKillMsg is message i of producer p in run r: its length and
// bytes follow from the three, so that the parent can check every byte.
func concurrentKillMsg(r, p, i int) []byte {
	head := fmt.Sprintf("%d:%d:%d:", r, p, i)
	n := (r*7 + p*13 + i*31) % 300
	b := make([]byte, len(head)+n)
	copy(b, head)
	for k := range n {
		b[len(head)+k] = byte('a' + (r+p+i+k)%26)
	}
	return b
}

// parseConcurrentKillMsg returns the run, producer and number a message
// names, and whether it is exactly the message they make.
func parseConcurrentKillMsg(b []byte) (r, p, i int, ok bool) {
	f := strings.SplitN(string(b), ":", 4)
	if len(f) != 4 {
		return 0, 0, 0, false
	}
	var err error
	if r, err = strconv.Atoi(f[0]); err != nil {
		return 0, 0, 0, false
	}
	if p, err = strconv.Atoi(f[1]); err != nil {
		return 0, 0, 0, false
	}
	if i, err = strconv.Atoi(f[2]); err != nil {
		return 0, 0, 0, false
	}
	return r, p, i, string(concurrentKillMsg(r, p, i)) == string(b)
}

func concurrentKillOptions() []Option {
	return []Option{SetArenaSize(64 << 10), SetMaxInMemArenas(3), SetPeriodicFlushOps(500)}
}

// TestConcurrentKillChild is the child; it runs only when the parent
// starts it, and is killed.
func TestConcurrentKillChild(t *testing.T) {
	dir := os.Getenv(concurrentKillDirEnv)
	if dir == "" {
		t.Skip("run by TestConcurrentKill")
	}
	run, err := strconv.Atoi(os.Getenv(concurrentKillRunEnv))
	require.NoError(t, err)
	reports := os.NewFile(3, "reports")
	q, err := NewQueue(dir, concurrentKillOptions()...)
	require.NoError(t, err)
	say := func(format string, args ...any) {
		// One write per line: a pipe keeps short writes whole.
		if _, err := fmt.Fprintf(reports, format+"\n", args...); err != nil {
			os.Exit(3)
		}
	}
	fatal := func(err error) {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	say("ready")
	for p := range concurrentProducers {
		go func() {
			for i := 0; ; i++ {
				if err := q.Enqueue(concurrentKillMsg(run, p, i)); err != nil {
					fatal(fmt.Errorf("producer %d, message %d: %w", p, i, err))
				}
				say("E %d %d", p, i)
			}
		}()
	}
	got := func(msg []byte) {
		r, p, i, ok := parseConcurrentKillMsg(msg)
		if !ok || r != run {
			fatal(fmt.Errorf("a consumer got %q", msg))
		}
		say("D %d %d", p, i)
	}
	go func() { // the blocking reader
		for {
			msg, err := q.DequeueWait(context.Background())
			if err != nil {
				fatal(err)
			}
			got(msg)
		}
	}()
	var buf []byte
	for { // the polling reader, into a reused buffer
		buf, err = q.DequeueAppend(buf[:0])
		if errors.Is(err, ErrEmptyQueue) {
			runtime.Gosched()
			continue
		}
		if err != nil {
			fatal(err)
		}
		got(buf)
	}
}

func TestConcurrentKill(t *testing.T) {
	runs := 10
	switch {
	case longTier():
		runs = 300
	case testing.Short():
		runs = 4
	}
	seed := testSeed(t)
	rng := rand.New(rand.NewPCG(seed, 47))
	dir := t.TempDir()
	var acked, dequeued, left int
	for run := range runs {
		rep := concurrentKillRun(t, dir, run, time.Duration(2+rng.IntN(60))*time.Millisecond)
		a, d, l := concurrentKillCheck(t, dir, run, rep)
		acked, dequeued, left = acked+a, dequeued+d, left+l
	}
	report(t, "concurrent kill: runs=%d acked=%d dequeued=%d left=%d lost=0 redelivered=0 garbage=0 seed=%d",
		runs, acked, dequeued, left, seed)
}

// concurrentKillReport is what one child said before it died.
type concurrentKillReport struct {
	lastAcked [concurrentProducers]int          // highest message each producer had enqueued; -1 for none
	dequeued  [concurrentProducers]map[int]bool // the messages consumers reported
}

// concurrentKillRun starts a child on dir, kills it after it said ready
// and delay passed, and returns its reports.
func concurrentKillRun(t *testing.T, dir string, run int, delay time.Duration) *concurrentKillReport {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^TestConcurrentKillChild$", "-test.count=1")
	cmd.Env = append(os.Environ(), concurrentKillDirEnv+"="+dir, concurrentKillRunEnv+"="+strconv.Itoa(run))
	reports, reportsW, err := os.Pipe()
	require.NoError(t, err)
	defer reports.Close()
	cmd.ExtraFiles = []*os.File{reportsW}
	var out strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &out
	require.NoError(t, cmd.Start())
	require.NoError(t, reportsW.Close())

	rep := &concurrentKillReport{}
	for p := range rep.lastAcked {
		rep.lastAcked[p] = -1
		rep.dequeued[p] = map[int]bool{}
	}
	br := bufio.NewReader(reports)
	line, err := br.ReadString('\n')
	if err != nil || line != "ready\n" {
		werr := cmd.Wait()
		t.Fatalf("run %d: the child did not start (%q, %v; exit: %v): %s", run, line, err, werr, out.String())
	}
	// The delay picks the moment of the kill; nothing waits on it.
	killErr := make(chan error, 1)
	killer := time.AfterFunc(delay, func() { killErr <- cmd.Process.Kill() })
	defer killer.Stop()
	for {
		line, err := br.ReadString('\n')
		if err != nil {
			break // the child died; a line cut short by the kill is no report
		}
		var kind string
		var p, i int
		if _, err := fmt.Sscanf(line, "%s %d %d\n", &kind, &p, &i); err != nil || p < 0 || p >= concurrentProducers {
			t.Fatalf("run %d: a bad report %q", run, line)
		}
		switch kind {
		case "E":
			require.Equal(t, rep.lastAcked[p]+1, i, "run %d: producer %d acknowledged out of order", run, p)
			rep.lastAcked[p] = i
		case "D":
			rep.dequeued[p][i] = true
		default:
			t.Fatalf("run %d: a bad report %q", run, line)
		}
	}
	err = cmd.Wait()
	if kerr := <-killErr; kerr != nil && !errors.Is(kerr, os.ErrProcessDone) {
		t.Fatalf("run %d: kill the child: %v: %s", run, kerr, out.String())
	}
	var exit *exec.ExitError
	require.ErrorAs(t, err, &exit, "run %d: the child was to be killed: %s", run, out.String())
	require.False(t, exit.Exited(), "run %d: the child exited (status %d) instead of being killed: %s", run, exit.ExitCode(), out.String())
	return rep
}

// concurrentKillCheck reopens the queue the child of run left, checks
// what is in it against the child's reports, and drains it. It returns
// the messages acknowledged, reported dequeued and left.
func concurrentKillCheck(t *testing.T, dir string, run int, rep *concurrentKillReport) (acked, dequeued, left int) {
	t.Helper()
	q, err := NewQueue(dir, concurrentKillOptions()...)
	require.NoError(t, err, "run %d: reopen after the kill", run)
	requireInvariants(t, q)
	var leftOf [concurrentProducers][]int
	var buf []byte
	for {
		buf, err = q.DequeueAppend(buf[:0])
		if errors.Is(err, ErrEmptyQueue) {
			break
		}
		require.NoError(t, err, "run %d: read after the kill", run)
		r, p, i, ok := parseConcurrentKillMsg(buf)
		require.True(t, ok && r == run && p < concurrentProducers, "run %d: garbage left in the queue: %q", run, buf)
		leftOf[p] = append(leftOf[p], i)
	}
	for p := range concurrentProducers {
		got, last := leftOf[p], rep.lastAcked[p]
		for k, i := range got {
			require.False(t, rep.dequeued[p][i], "run %d: producer %d message %d was dequeued and is there again", run, p, i)
			if k > 0 {
				require.Equal(t, got[k-1]+1, i, "run %d: producer %d: a gap or reorder in what was left: %v", run, p, got)
			}
		}
		switch {
		case len(got) > 0:
			// From the first message left on, every acknowledged one is
			// there, and at most the one in flight after them.
			require.GreaterOrEqual(t, got[len(got)-1], last, "run %d: producer %d: acknowledged message %d lost (left: %v)", run, p, last, got)
			require.LessOrEqual(t, got[len(got)-1], last+1, "run %d: producer %d: more than the message in flight past the acknowledged ones", run, p)
			// First in, first out: what consumers got came before.
			for i := range rep.dequeued[p] {
				require.Less(t, i, got[0], "run %d: producer %d: message %d dequeued before %d, which is still there", run, p, i, got[0])
			}
		default:
			// Nothing left: every acknowledged message was dequeued. The
			// reports may miss the last ones (cut by the kill), not more
			// than were acknowledged.
			for i := range rep.dequeued[p] {
				require.LessOrEqual(t, i, last+1, "run %d: producer %d: message %d dequeued, never enqueued", run, p, i)
			}
		}
		acked += last + 1
		dequeued += len(rep.dequeued[p])
		left += len(got)
	}
	requireInvariants(t, q)
	require.NoError(t, q.Close())
	return acked, dequeued, left
}

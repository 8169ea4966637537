package bigqueue

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// Environment of TestLockRaceHelperProcess, set by TestLockRace when it
// runs the test binary again as the process that holds the queue.
const lockRaceDirEnv = "BIGQUEUE_LOCKRACE_DIR"

const (
	lockRaceTries    = 1000
	lockRaceMessages = 100_000 // the holder enqueues at most this many, then waits
	// lockRaceMaxOpen bounds the slowest failing open. One takes ~10 µs;
	// the bound leaves room for a loaded machine's scheduling (a lock
	// taken with waiting would block until the holder dies).
	lockRaceMaxOpen = 2 * time.Second
)

// lockRaceMessage is message i of the holder.
func lockRaceMessage(i int) string {
	return fmt.Sprintf("lockrace/%06d/%s", i, strings.Repeat("x", i%37))
}

// TestLockRaceHelperProcess is not a test: TestLockRace runs the test
// binary again with only it selected, as the process holding the queue.
// It opens the queue, prints "locked", then enqueues lockRaceMessage(0),
// (1), ... and prints "ack i" after Enqueue of message i returned nil,
// until lockRaceMessages, and then waits until its standard input ends
// or it is killed.
func TestLockRaceHelperProcess(t *testing.T) {
	dir := os.Getenv(lockRaceDirEnv)
	if dir == "" {
		t.Skip("helper process of TestLockRace")
	}
	q, err := NewQueue(dir, SetArenaSize(smallArenaSize))
	if err != nil {
		fmt.Fprintln(os.Stderr, "open:", err)
		os.Exit(exitFailed)
	}
	if _, err := fmt.Println("locked"); err != nil {
		os.Exit(exitFailed)
	}
	for i := range lockRaceMessages {
		if err := q.EnqueueString(lockRaceMessage(i)); err != nil {
			fmt.Fprintln(os.Stderr, "enqueue:", err)
			os.Exit(exitFailed)
		}
		// One write per acknowledgement, after Enqueue returned: a kill
		// may come between the two, never before.
		if _, err := fmt.Printf("ack %d\n", i); err != nil {
			os.Exit(exitFailed)
		}
	}
	if _, err := io.Copy(io.Discard, os.Stdin); err != nil {
		os.Exit(exitFailed)
	}
	if err := q.Close(); err != nil {
		fmt.Fprintln(os.Stderr, "close:", err)
		os.Exit(exitFailed)
	}
	os.Exit(0)
}

// TestLockRace: a child process holds the queue and enqueues as fast as it
// can; this process tries to open the queue lockRaceTries times meanwhile.
// Every try must fail at once with ErrLocked. After the holder is killed
// with SIGKILL, the next open succeeds and holds every message the holder
// acknowledged, in order, then at most the few it enqueued but had not
// acknowledged yet, and nothing else.
func TestLockRace(t *testing.T) {
	dir := t.TempDir()
	cmd := exec.Command(os.Args[0], "-test.run=^TestLockRaceHelperProcess$", "-test.count=1")
	cmd.Env = append(os.Environ(), lockRaceDirEnv+"="+dir)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	stdout, kill := startHolder(t, cmd)
	lines := bufio.NewScanner(stdout)
	require.True(t, lines.Scan(), "the holder did not start; stderr: %s", stderr.String())
	require.Equal(t, "locked", lines.Text())

	// Read the acknowledgements while the tries run; the last one read
	// when the holder dies is the newest message it acknowledged.
	acked := make(chan int, 1)
	go func() {
		last := -1
		for lines.Scan() {
			if n, ok := strings.CutPrefix(lines.Text(), "ack "); ok {
				if i, err := strconv.Atoi(n); err == nil {
					last = i
				}
			}
		}
		acked <- last
	}()

	locked := 0
	took := make([]time.Duration, lockRaceTries)
	for i := range lockRaceTries {
		start := time.Now()
		q, err := NewQueue(dir, SetArenaSize(smallArenaSize))
		took[i] = time.Since(start)
		if q != nil {
			require.NoError(t, q.Close())
		}
		require.ErrorIs(t, err, ErrLocked, "try %d", i)
		locked++
	}
	slices.Sort(took)
	worst := took[len(took)-1]
	require.Less(t, worst, lockRaceMaxOpen, "slowest failing open")

	err := kill()
	var exit *exec.ExitError
	require.ErrorAs(t, err, &exit, "stderr: %s", stderr.String())
	require.Equal(t, syscall.SIGKILL, exit.Sys().(syscall.WaitStatus).Signal(), "the holder died of something else; stderr: %s", stderr.String())
	last := <-acked
	require.GreaterOrEqual(t, last, 0, "the holder acknowledged nothing")

	q := openTestQueueIn(t, dir, SetArenaSize(smallArenaSize))
	n := 0
	for ; ; n++ {
		s, err := q.DequeueString()
		if errors.Is(err, ErrEmptyQueue) {
			break
		}
		require.NoError(t, err, "message %d of at least %d", n, last+1)
		require.Equal(t, lockRaceMessage(n), s)
	}
	require.Greater(t, n, last, "acknowledged messages lost")
	require.LessOrEqual(t, n, lockRaceMessages)
	ms := func(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }
	report(t, "tries=%d locked=%d max_ms=%.3f p50_ms=%.3f p99_ms=%.3f acked=%d recovered=%d reopened=ok",
		lockRaceTries, locked, ms(worst), ms(took[len(took)/2]), ms(took[len(took)*99/100]), last+1, n)
}

package bigqueue

import (
	"io"
	"os"
	"os/exec"
	"syscall"
	"testing"

	"github.com/stretchr/testify/require"
)

// openTestQueue opens a queue in a new temporary directory. At cleanup it
// checks the queue's invariants and closes it; tests may close it earlier.
func openTestQueue(tb testing.TB, opts ...Option) (*Queue, string) {
	tb.Helper()
	dir := tb.TempDir()
	return openTestQueueIn(tb, dir, opts...), dir
}

// openTestQueueIn is openTestQueue on an existing directory, for reopening.
func openTestQueueIn(tb testing.TB, dir string, opts ...Option) *Queue {
	tb.Helper()
	q, err := NewQueue(dir, opts...)
	require.NoError(tb, err)
	requireInvariants(tb, q)
	tb.Cleanup(func() {
		requireInvariants(tb, q)
		require.NoError(tb, q.Close())
	})
	return q
}

// startHolder starts cmd, a child that holds something until it is
// killed, with its stdin a pipe whose write end only this process holds
// (so that a child blocked reading it never sees it end), and returns the
// child's stdout and a function that SIGKILLs it and returns what Wait
// returned. A child not killed by then is killed at cleanup.
func startHolder(t *testing.T, cmd *exec.Cmd) (io.ReadCloser, func() error) {
	t.Helper()
	stdin, holdOpen, err := os.Pipe()
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, holdOpen.Close()) })
	cmd.Stdin = stdin
	stdout, err := cmd.StdoutPipe()
	require.NoError(t, err)
	require.NoError(t, cmd.Start())
	require.NoError(t, stdin.Close())
	killed := false
	kill := func() error {
		killed = true
		require.NoError(t, cmd.Process.Signal(syscall.SIGKILL))
		return cmd.Wait()
	}
	t.Cleanup(func() {
		if !killed {
			require.Error(t, kill())
		}
	})
	return stdout, kill
}

// unreadableMessage returns a message of MaxMessageSize+1 bytes that
// costs no memory: anonymous address space mapped PROT_NONE, so any read
// of it would crash the test. It stands in for a 4 GiB slice, which the
// runtime would have to zero when a freed span is reused.
func unreadableMessage(tb testing.TB) []byte {
	tb.Helper()
	b, err := syscall.Mmap(-1, 0, MaxMessageSize+1, syscall.PROT_NONE, syscall.MAP_ANON|syscall.MAP_PRIVATE|syscall.MAP_NORESERVE)
	require.NoError(tb, err)
	tb.Cleanup(func() { require.NoError(tb, syscall.Munmap(b)) })
	return b
}

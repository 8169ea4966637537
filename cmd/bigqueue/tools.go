package main

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"slices"
	"time"

	"github.com/bigqueue-go/bigqueue"
	"github.com/bigqueue-go/bigqueue/migrate"
	"github.com/spf13/cobra"
)

// This file holds import and bench.

func newImport(e *env) *cobra.Command {
	return &cobra.Command{
		Use:   "import SRC DST",
		Short: "Convert a queue written by grandecola/bigqueue into a new queue",
		Long: `import reads the queue that github.com/grandecola/bigqueue wrote in SRC,
read-only, and writes a new queue into DST, which must not exist or be
empty: every message some consumer has not read, in order, and every
consumer (the default one included) at its first unread message, with the
original's arena size. It uses the migrate package (migrate.Import). The
original takes no lock: stop its programs first. It shows a progress bar
on a terminal and prints what it imported.

Exit status 2 when SRC cannot be read as such a queue or DST is not empty;
1 for other errors, after which DST holds a partial queue to remove.`,
		Args: argsBetween(2, 2, "SRC and DST"),
		RunE: func(_ *cobra.Command, args []string) error {
			bar := newProgress(e.stderr, "import", false)
			rep, err := migrate.ImportWithProgress(args[0], args[1], bar.update)
			bar.finish()
			if err != nil {
				return e.fail(err)
			}
			w := bufio.NewWriter(e.stdout)
			fmt.Fprintf(w, "imported %d messages (%s) from %s into %s, arena size %s; skipped %d that every consumer had read\n",
				rep.Messages, humanBytes(rep.Bytes), args[0], args[1], humanBytes(int64(rep.ArenaSize)), rep.Skipped)
			names := make([]string, 0, len(rep.Unread))
			for name := range rep.Unread {
				names = append(names, name)
			}
			slices.Sort(names)
			for _, name := range names {
				fmt.Fprintf(w, "  consumer %s: %d unread\n", name, rep.Unread[name])
			}
			if err := w.Flush(); err != nil {
				return e.fail(err)
			}
			return nil
		},
	}
}

func newBench(e *env) *cobra.Command {
	var size, n int
	cmd := &cobra.Command{
		Use:   "bench [DIR]",
		Short: "Measure enqueue and dequeue throughput on this machine",
		Long: `bench enqueues -n messages of -size bytes into a new queue with the
default options, flushes, then dequeues them all, and prints messages/s
and MB/s (10^6 bytes of payload per second) for each phase. The queue
goes in a new temporary directory inside DIR (by default the system's
temporary directory), which is removed at the end, also when interrupted:
DIR chooses the file system to measure and is never used as a queue.`,
		Args: argsBetween(0, 1, "at most DIR"),
		RunE: func(_ *cobra.Command, args []string) error {
			if size < 0 || int64(size) > maxMessageSize {
				return usageError("-size must be 0 to %d, not %d", maxMessageSize, size)
			}
			if n <= 0 {
				return usageError("-n must be at least 1, not %d", n)
			}
			defer e.interruptible()()
			parent := ""
			if len(args) == 1 {
				parent = args[0]
			}
			dir, err := os.MkdirTemp(parent, "bigqueue-bench-")
			if err != nil {
				return e.fail(err)
			}
			err = e.bench(dir, size, n)
			if rerr := os.RemoveAll(dir); rerr != nil {
				err = errors.Join(err, rerr)
			}
			if err != nil {
				return e.fail(err)
			}
			return nil
		},
	}
	cmd.Flags().IntVar(&size, "size", 128, "message size in bytes")
	cmd.Flags().IntVarP(&n, "count", "n", 1000000, "number of messages")
	return cmd
}

// bench runs the benchmark in dir; see its help.
func (e *env) bench(dir string, size, n int) error {
	q, err := bigqueue.NewQueue(dir)
	if err != nil {
		return err
	}
	msg := make([]byte, size)
	for i := range msg {
		msg[i] = byte(i)
	}
	fmt.Fprintf(e.stdout, "bench: %d messages of %d bytes in %s (arena size %s)\n", n, size, dir, humanBytes(int64(q.Stats().ArenaSize)))
	start := time.Now()
	for i := range n {
		if i%4096 == 0 && e.ctx.Err() != nil {
			return closeQueue(q, e.ctx.Err())
		}
		if err := q.Enqueue(msg); err != nil {
			return closeQueue(q, fmt.Errorf("enqueue %d: %w", i, err))
		}
	}
	enqueued := time.Since(start)
	start = time.Now()
	if err := q.Flush(); err != nil {
		return closeQueue(q, err)
	}
	flushed := time.Since(start)
	buf := make([]byte, 0, size)
	start = time.Now()
	for i := range n {
		if i%4096 == 0 && e.ctx.Err() != nil {
			return closeQueue(q, e.ctx.Err())
		}
		if buf, err = q.DequeueAppend(buf[:0]); err != nil {
			return closeQueue(q, fmt.Errorf("dequeue %d: %w", i, err))
		}
		if len(buf) != size {
			return closeQueue(q, fmt.Errorf("dequeue %d: %d bytes, want %d", i, len(buf), size))
		}
	}
	dequeued := time.Since(start)
	if err := q.Close(); err != nil {
		return err
	}
	line := func(what string, d time.Duration) {
		secs := max(d.Seconds(), 1e-9)
		fmt.Fprintf(e.stdout, "%-8s %10.0f msgs/s  %8.1f MB/s  (%v)\n", what, float64(n)/secs, float64(n)*float64(size)/secs/1e6, d.Round(time.Microsecond))
	}
	line("enqueue", enqueued)
	line("dequeue", dequeued)
	fmt.Fprintf(e.stdout, "flush    %v\n", flushed.Round(time.Microsecond))
	return nil
}

package main

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"slices"
	"time"

	"github.com/bigqueue-go/bigqueue"
	"github.com/spf13/cobra"
)

// This file holds the commands that change a queue: push, pop and
// consumers delete. They open it with bigqueue.NewQueue and close it
// before they return, which makes what they did durable.

// maxMessageSize is bigqueue.MaxMessageSize as an int64, which holds it
// on 32-bit platforms too.
const maxMessageSize int64 = bigqueue.MaxMessageSize

// openExisting opens the queue in dir, which must exist: pop and
// consumers delete never create a queue. It checks with Inspect first,
// which refuses a missing queue without creating anything.
func openExisting(dir string) (*bigqueue.Queue, error) {
	in, err := bigqueue.Inspect(dir)
	if err != nil {
		return nil, err
	}
	if err := in.Close(); err != nil {
		return nil, err
	}
	return bigqueue.NewQueue(dir)
}

// closeQueue closes q and joins its error to err.
func closeQueue(q *bigqueue.Queue, err error) error {
	if cerr := q.Close(); cerr != nil {
		return errors.Join(err, cerr)
	}
	return err
}

func newPush(e *env) *cobra.Command {
	var null, raw bool
	cmd := &cobra.Command{
		Use:   "push DIR",
		Short: "Enqueue messages read from stdin",
		Long: `push enqueues what it reads on stdin: one message per line (without its
newline; an empty line is an empty message; a last line without a newline
counts), one per NUL-terminated record with -0, or all of stdin as one
message with -raw. It creates the queue when DIR holds none. Messages are
enqueued as they are read; push closes the queue at the end of its input,
which flushes them to disk. A push that fails or is killed keeps the
messages enqueued before (a process crash loses nothing enqueued).`,
		Args: argsBetween(1, 1, "DIR"),
		RunE: func(_ *cobra.Command, args []string) error {
			q, err := bigqueue.NewQueue(args[0])
			if err != nil {
				return e.fail(err)
			}
			var n int64
			switch {
			case raw:
				err = pushRaw(q, e.stdin)
				if err == nil {
					n = 1
				}
			default:
				delim := byte('\n')
				if null {
					delim = 0
				}
				n, err = pushDelimited(q, e.stdin, delim)
			}
			if err != nil {
				err = fmt.Errorf("after %d messages: %w", n, err)
			}
			if err = closeQueue(q, err); err != nil {
				return e.fail(err)
			}
			return nil
		},
	}
	cmd.Flags().BoolVarP(&null, "null", "0", false, "messages end with a NUL byte instead of a newline")
	cmd.Flags().BoolVar(&raw, "raw", false, "all of stdin is one message")
	cmd.MarkFlagsMutuallyExclusive("null", "raw")
	return cmd
}

// pushRaw enqueues all of r as one message.
func pushRaw(q *bigqueue.Queue, r io.Reader) error {
	msg, err := io.ReadAll(io.LimitReader(r, maxMessageSize+1))
	if err != nil {
		return fmt.Errorf("read stdin: %w", err)
	}
	if int64(len(msg)) > maxMessageSize {
		return fmt.Errorf("stdin holds more than %d bytes: %w", maxMessageSize, bigqueue.ErrTooLarge)
	}
	return q.Enqueue(msg)
}

// pushDelimited enqueues every delim-terminated message of r, and what
// follows the last delim when that is not empty. It returns how many it
// enqueued.
func pushDelimited(q *bigqueue.Queue, r io.Reader, delim byte) (int64, error) {
	br := bufio.NewReaderSize(r, 64<<10)
	var n int64
	var long []byte // a message longer than the buffer, gathered
	for {
		chunk, err := br.ReadSlice(delim)
		if errors.Is(err, bufio.ErrBufferFull) {
			if int64(len(long))+int64(len(chunk)) > maxMessageSize {
				return n, fmt.Errorf("message %d: longer than %d bytes: %w", n+1, maxMessageSize, bigqueue.ErrTooLarge)
			}
			long = append(long, chunk...)
			continue
		}
		if err != nil && !errors.Is(err, io.EOF) {
			return n, fmt.Errorf("read stdin: %w", err)
		}
		eof := err != nil
		msg := chunk
		if len(long) > 0 {
			msg = append(long, chunk...)
		}
		if !eof {
			msg = msg[:len(msg)-1] // the delimiter
		}
		if !eof || len(msg) > 0 {
			if int64(len(msg)) > maxMessageSize {
				return n, fmt.Errorf("message %d: longer than %d bytes: %w", n+1, maxMessageSize, bigqueue.ErrTooLarge)
			}
			if err := q.Enqueue(msg); err != nil {
				return n, err
			}
			n++
		}
		long = long[:0]
		if eof {
			return n, nil
		}
	}
}

// pollInterval is how often pop -wait looks for new messages.
const pollInterval = 100 * time.Millisecond

func newPop(e *env) *cobra.Command {
	var (
		consumer string
		n        int
		wait     bool
		f        format
	)
	cmd := &cobra.Command{
		Use:   "pop DIR",
		Short: "Dequeue messages to stdout",
		Long: `pop dequeues messages and prints them to stdout (formats as for peek): by
default one message, through the queue's default consumer. -consumer reads
through an existing consumer instead (pop creates none but the default
one); -n sets how many (0: all there are).

Each message is committed only once it was written to stdout: a message
pop could not write stays in the queue (at-least-once).

-wait waits for messages until -n of them were popped (with -n 0, until
interrupted). A queue has one owner at a time, so a producer can only
enqueue while pop does not hold the queue: while it waits, pop closes the
queue and polls its index every 100 ms without taking the lock, and opens
the queue again once new messages were enqueued and the producer closed
it. With -wait, a queue held by another process is waited for too;
without, it is refused (exit status 2).

Exit status 3 when no message was popped (without -wait); 1 when a
damaged record was met (reported on stderr; pop goes on past it, as the
consumer does); 130 when interrupted.`,
		Args: argsBetween(1, 1, "DIR"),
		RunE: func(_ *cobra.Command, args []string) error {
			if n < 0 {
				return usageError("-n must be 0 (all) or more, not %d", n)
			}
			if wait {
				defer e.interruptible()()
			}
			return e.pop(args[0], consumer, n, wait, f)
		},
	}
	cmd.Flags().StringVarP(&consumer, "consumer", "c", defaultConsumer, "the consumer to read through")
	cmd.Flags().IntVarP(&n, "count", "n", 1, "how many messages to pop; 0 for all")
	cmd.Flags().BoolVar(&wait, "wait", false, "wait for messages to arrive, polling while the queue is closed")
	addFormatFlags(cmd, &f)
	return cmd
}

// pop runs the pop command; see its help.
func (e *env) pop(dir, consumer string, n int, wait bool, f format) error {
	w := bufio.NewWriter(e.stdout)
	popped, damaged := 0, false
	var lastTail uint64
	known, announced := false, false
	for {
		if e.ctx.Err() != nil {
			return e.fail(e.ctx.Err())
		}
		if known {
			tail, err := bigqueue.ProbeTail(dir)
			if err != nil {
				return e.fail(err)
			}
			if tail == lastTail {
				if err := e.sleep(pollInterval); err != nil {
					return err
				}
				continue
			}
		}
		got, bad, tail, err := e.popOnce(dir, consumer, n-popped, n == 0, f, w)
		popped += got
		damaged = damaged || bad
		switch {
		case errors.Is(err, bigqueue.ErrLocked) && wait:
			if !announced {
				fmt.Fprintf(e.stderr, "bigqueue: pop: %s is held by another process; waiting\n", dir)
				announced = true
			}
			known = false
			if err := e.sleep(pollInterval); err != nil {
				return err
			}
			continue
		case err != nil:
			return e.fail(err)
		}
		if !wait || (n > 0 && popped >= n) {
			break
		}
		lastTail, known = tail, true
	}
	switch {
	case damaged:
		return &cmdError{code: exitFailed}
	case popped == 0:
		return &cmdError{code: exitEmpty}
	}
	return nil
}

// sleep waits for d, or returns the interruption.
func (e *env) sleep(d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-e.ctx.Done():
		return e.fail(e.ctx.Err())
	}
}

// popOnce opens the queue in dir, pops up to limit messages (all with
// all) through consumer to w, and closes the queue. It returns how many it
// popped, whether it met damage, and the queue's tail as ProbeTail reads
// it before closing.
func (e *env) popOnce(dir, consumer string, limit int, all bool, f format, w *bufio.Writer) (int, bool, uint64, error) {
	q, err := openExisting(dir)
	if err != nil {
		return 0, false, 0, err
	}
	peek, dequeue := q.Peek, q.Dequeue
	if consumer != defaultConsumer {
		if !slices.Contains(q.Consumers(), consumer) {
			return 0, false, 0, closeQueue(q, fmt.Errorf("consumer %q: %w (pop creates none; list them with: bigqueue consumers DIR)", consumer, bigqueue.ErrNoConsumer))
		}
		c, err := q.NewConsumer(consumer)
		if err != nil {
			return 0, false, 0, closeQueue(q, err)
		}
		peek, dequeue = c.Peek, c.Dequeue
	}
	popped, damaged := 0, false
	for all || popped < limit {
		if e.ctx.Err() != nil {
			return popped, damaged, 0, closeQueue(q, e.ctx.Err())
		}
		msg, err := peek()
		if errors.Is(err, bigqueue.ErrEmptyQueue) {
			break
		}
		if errors.Is(err, bigqueue.ErrCorrupt) {
			// The consumer has moved past the damage.
			fmt.Fprintf(e.stderr, "bigqueue: pop: damage: %v\n", err)
			damaged = true
			continue
		}
		if err != nil {
			return popped, damaged, 0, closeQueue(q, err)
		}
		if err := f.write(w, msg); err != nil {
			return popped, damaged, 0, closeQueue(q, fmt.Errorf("write stdout: %w", err))
		}
		if err := w.Flush(); err != nil {
			return popped, damaged, 0, closeQueue(q, fmt.Errorf("write stdout: %w", err))
		}
		if _, err := dequeue(); err != nil {
			return popped, damaged, 0, closeQueue(q, fmt.Errorf("commit: %w", err))
		}
		popped++
	}
	tail, err := bigqueue.ProbeTail(dir)
	return popped, damaged, tail, closeQueue(q, err)
}

func newConsumersDelete(e *env) *cobra.Command {
	return &cobra.Command{
		Use:   "delete DIR NAME",
		Short: "Delete a consumer, so that it no longer pins data on disk",
		Long: `delete removes the consumer NAME from the queue, the default consumer
(__default__) included: the data only it had not read can then be
reclaimed. Exit status 1 when there is no such consumer.`,
		Args: argsBetween(2, 2, "DIR and NAME"),
		RunE: func(_ *cobra.Command, args []string) error {
			q, err := openExisting(args[0])
			if err != nil {
				return e.fail(err)
			}
			if err := closeQueue(q, q.DeleteConsumer(args[1])); err != nil {
				return e.fail(err)
			}
			return nil
		},
	}
}

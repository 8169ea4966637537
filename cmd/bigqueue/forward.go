package main

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"time"

	"github.com/bigqueue-go/bigqueue"
	bqjs "github.com/bigqueue-go/bigqueue/jetstream"
	"github.com/nats-io/nats.go"
	natsjs "github.com/nats-io/nats.go/jetstream"
	"github.com/spf13/cobra"
)

// Bounds of forward's pause after a failure, doubling from the first.
const (
	forwardMinBackoff = 100 * time.Millisecond
	forwardMaxBackoff = 5 * time.Second
)

// forwardOptions are forward's flags.
type forwardOptions struct {
	server, subject, consumer, stream string
	once                              bool
	window                            int
}

func newForward(e *env) *cobra.Command {
	var o forwardOptions
	cmd := &cobra.Command{
		Use:   "forward DIR --subject S",
		Short: "Forward a consumer's messages into a NATS JetStream stream",
		Long: `forward publishes the messages of a consumer of the queue to a JetStream
subject, exactly once within the stream's duplicate window and in the
queue's order (github.com/bigqueue-go/bigqueue/jetstream): each message
carries a Nats-Msg-Id made of the queue's ID, its sequence number and its
checksum, and
is committed only after the stream acknowledged it.

-consumer names the consumer (default "jetstream"); forward creates it
when it does not exist, starting at the oldest stored message. -stream
creates a stream of that name on the subject (file storage, the
server's defaults otherwise) when no stream of that name exists; without
it the subject must already be bound to a stream.

A queue has one owner at a time, so a producer can only enqueue while
forward does not hold the queue. forward holds it while it forwards what
there is, then closes it and polls its index every 100 ms without taking
the lock, as pop -wait does, and opens it again once messages were
enqueued; a producer opening the queue in that moment gets ErrLocked and
must retry. A queue held by another process is waited for. After a
failure (server down, no stream, no acknowledgement) forward closes the
queue too, says so on stderr, and tries again after a pause that doubles
from 100 ms to 5 s, jittered: the queue keeps the backlog meanwhile.

-once forwards what there is and exits: 0 when all of it is in the
stream, 1 at the first failure.

On exit forward prints what it forwarded. Exit status 130 when
interrupted (SIGINT, SIGTERM), after committing what the stream
acknowledged.`,
		Args: argsBetween(1, 1, "DIR"),
		RunE: func(_ *cobra.Command, args []string) error {
			if o.subject == "" {
				return usageError("forward needs -subject")
			}
			if o.window < 0 {
				return usageError("-window must be 0 (the default) or more, not %d", o.window)
			}
			defer e.interruptible()()
			return e.forward(args[0], o)
		},
	}
	cmd.Flags().StringVar(&o.server, "server", nats.DefaultURL, "the NATS server URL (several separated by commas)")
	cmd.Flags().StringVar(&o.subject, "subject", "", "the subject to publish to (required)")
	cmd.Flags().StringVarP(&o.consumer, "consumer", "c", "jetstream", "the consumer to forward; created when missing")
	cmd.Flags().StringVar(&o.stream, "stream", "", "create a stream of this name on the subject when there is none")
	cmd.Flags().BoolVar(&o.once, "once", false, "forward what there is, then exit")
	cmd.Flags().IntVar(&o.window, "window", 0, "messages in flight at most (0: the package's default)")
	return cmd
}

// forward runs the forward command; see its help.
func (e *env) forward(dir string, o forwardOptions) error {
	// Once connected, the connection never gives up, and a publish while
	// it is down fails at once instead of filling a buffer: forward backs
	// off instead. Until the first connection, the loop below retries
	// with its backoff: with nats.RetryOnFailedConnect, a connection made
	// before the server was up went on refusing messages with headers
	// after it connected, in TestForwardServerDown (cause not found).
	var nc *nats.Conn
	var js natsjs.JetStream
	defer func() {
		if nc != nil {
			nc.Close()
		}
	}()
	var total bqjs.Stats
	defer func() {
		fmt.Fprintf(e.stdout, "forwarded %d %s to %s (%d in the stream already)\n",
			total.Forwarded, plural(total.Forwarded, "message", "messages"), o.subject, total.Duplicates)
	}()
	streamReady := o.stream == ""
	fails, announced := 0, false
	var lastTail uint64
	known := false
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
		var err error
		if nc == nil {
			nc, err = nats.Connect(o.server, nats.Name("bigqueue forward"), nats.MaxReconnects(-1),
				nats.ReconnectWait(250*time.Millisecond), nats.ReconnectBufSize(-1))
			if err == nil {
				js, err = natsjs.New(nc)
			}
			if err != nil {
				if nc != nil {
					nc.Close()
					nc = nil
				}
				err = fmt.Errorf("connect %s: %w", o.server, err)
			}
		}
		if err == nil && !streamReady {
			err = ensureStream(e.ctx, js, o.stream, o.subject)
			streamReady = err == nil
		}
		var s bqjs.Stats
		var tail uint64
		if err == nil {
			s, tail, err = e.forwardOnce(dir, js, o)
		}
		total.Forwarded += s.Forwarded
		total.Duplicates += s.Duplicates
		switch {
		case err == nil:
			if fails > 0 {
				fmt.Fprintf(e.stderr, "bigqueue: forward: resumed\n")
			}
			fails, announced = 0, false
			if o.once {
				return nil
			}
			lastTail, known = tail, true
			continue
		case e.ctx.Err() != nil && errors.Is(err, context.Canceled):
			return e.fail(err)
		case errors.Is(err, bigqueue.ErrLocked):
			if o.once {
				return e.fail(err)
			}
			if !announced {
				fmt.Fprintf(e.stderr, "bigqueue: forward: %s is held by another process; waiting\n", dir)
				announced = true
			}
			known = false
			if err := e.sleep(pollInterval); err != nil {
				return err
			}
			continue
		case o.once, errors.Is(err, bqjs.ErrQueue), isOpenError(err):
			return e.fail(err)
		}
		// A network or stream failure: try again after a backoff.
		d := min(forwardMaxBackoff, forwardMinBackoff<<min(fails, 16))
		d = d/2 + rand.N(d/2+1)
		if fails == 0 {
			fmt.Fprintf(e.stderr, "bigqueue: forward: %v; retrying with backoff\n", err)
		}
		fails++
		known = false
		if err := e.sleep(d); err != nil {
			return err
		}
	}
}

// isOpenError reports whether err says the queue could not be opened for
// good: no queue there, another format, no permission.
func isOpenError(err error) bool {
	var ce *cmdError
	return errors.As((&env{ctx: context.Background()}).fail(err), &ce) && ce.code == exitCannotOpen
}

// forwardOnce opens the queue, forwards what the consumer has to read,
// and closes the queue. It returns the forwarder's counters and the
// queue's tail as ProbeTail reads it before closing.
func (e *env) forwardOnce(dir string, js natsjs.JetStream, o forwardOptions) (bqjs.Stats, uint64, error) {
	q, err := openExisting(dir)
	if err != nil {
		return bqjs.Stats{}, 0, err
	}
	c, err := q.NewConsumer(o.consumer)
	if err != nil {
		return bqjs.Stats{}, 0, closeQueue(q, err)
	}
	f, err := bqjs.New(q, c, js, o.subject, bqjs.Config{Window: o.window})
	if err != nil {
		return bqjs.Stats{}, 0, closeQueue(q, err)
	}
	err = f.Drain(e.ctx)
	s := f.Stats()
	if err != nil {
		return s, 0, closeQueue(q, err)
	}
	tail, err := bigqueue.ProbeTail(dir)
	return s, tail, closeQueue(q, err)
}

// ensureStream creates stream name on subject unless a stream of that
// name exists.
func ensureStream(ctx context.Context, js natsjs.JetStream, name, subject string) error {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	_, err := js.Stream(ctx, name)
	if errors.Is(err, natsjs.ErrStreamNotFound) {
		_, err = js.CreateStream(ctx, natsjs.StreamConfig{Name: name, Subjects: []string{subject}, Storage: natsjs.FileStorage})
	}
	if err != nil {
		return fmt.Errorf("stream %s: %w", name, err)
	}
	return nil
}

// plural returns one when n is 1, else many.
func plural(n uint64, one, many string) string {
	if n == 1 {
		return one
	}
	return many
}

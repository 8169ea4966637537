package jetstream

import (
	"context"
	"errors"
	"fmt"
	"hash/crc32"
	"math/rand/v2"
	"strconv"
	"sync"
	"time"

	"github.com/bigqueue-go/bigqueue"
	"github.com/nats-io/nats.go"
	natsjs "github.com/nats-io/nats.go/jetstream"
)

// Defaults of Config's zero fields.
const (
	DefaultWindow     = 1024
	DefaultAckTimeout = 5 * time.Second
	DefaultMinBackoff = 50 * time.Millisecond
	DefaultMaxBackoff = 5 * time.Second
)

// CursorSuffix is appended to the consumer's name to name the helper
// consumer that marks how far the forwarder has read ahead of its
// commits. It is reset to the consumer's position whenever Run starts
// and after every failure, and removed when Run returns.
const CursorSuffix = ".fwd"

// codeWrongLastMsgID is the JetStream error code of a publish whose
// Nats-Expected-Last-Msg-Id is not the stream's last message ID.
const codeWrongLastMsgID natsjs.ErrorCode = 10070

// Errors of the forwarder; everything else is passed on wrapped.
var (
	// ErrAckTimeout is the LastError when the stream did not answer a
	// publish within Config.AckTimeout; the forwarder re-sends from there.
	ErrAckTimeout = errors.New("jetstream: no acknowledgement within the ack timeout")

	// ErrInvalidConfig is returned by New for a nil queue, consumer or
	// JetStream, an empty subject, a consumer of another queue, or
	// negative Config values.
	ErrInvalidConfig = errors.New("jetstream: invalid forwarder configuration")

	// ErrQueue is wrapped by the errors of the local queue that end Run
	// and Drain (the queue closed, the consumer deleted, an I/O error),
	// along with the queue's own error: errors.Is(err, ErrQueue) tells
	// them from network and stream errors, after which trying again
	// makes sense.
	ErrQueue = errors.New("jetstream: local queue failed")

	// ErrRunning is returned by Run while another Run of the same
	// Forwarder is active.
	ErrRunning = errors.New("jetstream: forwarder is already running")
)

// Config tunes a Forwarder. The zero value uses the defaults.
type Config struct {
	// Window bounds the messages published and not yet acknowledged
	// (DefaultWindow when 0).
	Window int
	// AckTimeout is how long the forwarder waits for the acknowledgement
	// of the oldest message in flight before it counts a failure and
	// re-sends from there (DefaultAckTimeout when 0).
	AckTimeout time.Duration
	// MinBackoff and MaxBackoff bound the pause after a failure: it
	// doubles with every failure in a row from MinBackoff up to
	// MaxBackoff, and each pause is drawn at random from [d/2, d].
	MinBackoff, MaxBackoff time.Duration
}

// Stats is a snapshot of a forwarder's counters.
type Stats struct {
	// Forwarded counts messages the stream acknowledged and the forwarder
	// then committed, since New.
	Forwarded uint64
	// Duplicates counts the acknowledgements among them that the stream
	// flagged as duplicates: re-sends of messages it had stored already.
	Duplicates uint64
	// Pending is the local backlog: messages of the consumer not
	// committed yet (Consumer.Len), in flight or not read yet.
	Pending int64
	// InFlight counts messages published whose acknowledgement is awaited.
	InFlight int
	// Retries counts failures after which the forwarder went back to the
	// first unacknowledged message (a publish error, a negative or
	// missing acknowledgement).
	Retries uint64
	// Skipped counts reads that reported lost messages instead of
	// returning one (retention, ErrDropped; damage, ErrCorrupt): those
	// messages can no longer be forwarded.
	Skipped uint64
	// NextSeq is the sequence number of the next message to forward: the
	// consumer's committed position.
	NextSeq uint64
	// LastError is the most recent failure, nil before the first, and
	// LastErrorAt when it happened.
	LastError   error
	LastErrorAt time.Time
}

// Forwarder moves messages of a bigqueue consumer into a JetStream stream;
// see the package documentation for its guarantees.
type Forwarder struct {
	q       *bigqueue.Queue
	c       *bigqueue.Consumer
	js      natsjs.JetStream
	subject string
	cfg     Config
	prefix  string // queue ID in hex and "-": the message ID is prefix + sequence number + "-" + checksum

	mu sync.Mutex // guards the fields below
	// running is true while Run is active.
	running bool
	stats   Stats
	// progress, when not nil, is closed and cleared at the next commit or
	// failure: the tests wait on it instead of polling.
	progress chan struct{}
}

// changed returns a channel closed at the forwarder's next commit or
// failure.
func (f *Forwarder) changed() <-chan struct{} {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.progress == nil {
		f.progress = make(chan struct{})
	}
	return f.progress
}

// notify closes the progress channel; needs mu.
func (f *Forwarder) notify() {
	if f.progress != nil {
		close(f.progress)
		f.progress = nil
	}
}

// New returns a forwarder that publishes the messages of consumer c of
// queue q to subject through js. It does not touch the queue or the
// network; Run does the work. The subject must be bound to a stream.
//
// One forwarder reads a consumer: nothing else should read c, and no
// other consumer may be named c.Name()+CursorSuffix.
func New(q *bigqueue.Queue, c *bigqueue.Consumer, js natsjs.JetStream, subject string, cfg Config) (*Forwarder, error) {
	switch {
	case q == nil, c == nil, js == nil:
		return nil, fmt.Errorf("nil queue, consumer or JetStream: %w", ErrInvalidConfig)
	case subject == "":
		return nil, fmt.Errorf("empty subject: %w", ErrInvalidConfig)
	case cfg.Window < 0, cfg.AckTimeout < 0, cfg.MinBackoff < 0, cfg.MaxBackoff < 0:
		return nil, fmt.Errorf("negative window, timeout or backoff: %w", ErrInvalidConfig)
	case len(c.Name())+len(CursorSuffix) > bigqueue.MaxConsumerNameLen:
		return nil, fmt.Errorf("consumer name %q leaves no room for the cursor's suffix: %w", c.Name(), ErrInvalidConfig)
	}
	if cfg.Window == 0 {
		cfg.Window = DefaultWindow
	}
	if cfg.AckTimeout == 0 {
		cfg.AckTimeout = DefaultAckTimeout
	}
	if cfg.MinBackoff == 0 {
		cfg.MinBackoff = DefaultMinBackoff
	}
	if cfg.MaxBackoff == 0 {
		cfg.MaxBackoff = DefaultMaxBackoff
	}
	cfg.MaxBackoff = max(cfg.MaxBackoff, cfg.MinBackoff)
	// FromConsumer refuses a consumer of another queue; with the
	// consumer's own name it moves nothing.
	if _, err := q.FromConsumer(c.Name(), c); err != nil {
		if errors.Is(err, bigqueue.ErrDifferentQueues) {
			return nil, fmt.Errorf("consumer %q: %w: %w", c.Name(), err, ErrInvalidConfig)
		}
		return nil, fmt.Errorf("consumer %q: %w", c.Name(), err)
	}
	return &Forwarder{
		q: q, c: c, js: js, subject: subject, cfg: cfg,
		prefix: fmt.Sprintf("%016x-", q.Stats().QueueID),
	}, nil
}

// MsgID returns the Nats-Msg-Id the forwarder gives the message msg with
// sequence number seq: the queue ID in 16 hex digits, a dash, seq in
// decimal, a dash, and the CRC-32C of msg in 8 hex digits. It names the
// message, not the route: forwarders of two consumers of one queue give
// a message the same ID. The checksum tells apart two messages a power
// loss made share a sequence number (the lost one, forwarded before,
// and the one enqueued after in its place), which the stream would
// otherwise take for a duplicate and drop.
func (f *Forwarder) MsgID(seq uint64, msg []byte) string {
	var b [48]byte
	id := append(b[:0], f.prefix...)
	id = strconv.AppendUint(id, seq, 10)
	id = append(id, '-')
	id = appendHex32(id, crc32.Checksum(msg, castagnoli))
	return string(id)
}

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// appendHex32 appends v as 8 lowercase hex digits.
func appendHex32(b []byte, v uint32) []byte {
	const digits = "0123456789abcdef"
	for shift := 28; shift >= 0; shift -= 4 {
		b = append(b, digits[v>>uint(shift)&0xf])
	}
	return b
}

// Stats returns the forwarder's counters. It is safe to call at any time,
// from any goroutine.
func (f *Forwarder) Stats() Stats {
	f.mu.Lock()
	s := f.stats
	f.mu.Unlock()
	s.Pending = f.c.Len()
	s.NextSeq = f.c.Position()
	return s
}

// inflight is a message published and not acknowledged yet.
type inflight struct {
	seq uint64
	ack natsjs.PubAckFuture
}

// run is the state of one Run: the cursor, the window, the backoff.
type run struct {
	*Forwarder
	ctx     context.Context
	drain   bool // Drain: return when nothing is left, and at the first failure
	cursor  *bigqueue.Consumer
	window  []inflight // oldest first; its sequence numbers increase
	prevID  string     // ID of the last message published since the last reset, "" after one
	next    uint64     // sequence number of the cursor's next message; 0 when to be asked (Position)
	buf     []byte     // reused read buffer: nats copies a message when it is published
	fails   int        // failures in a row, for the backoff
	timer   *time.Timer
	pubOpts []natsjs.PublishOpt
}

// Run forwards until ctx is done or a fatal error. It reads the
// consumer through a cursor (see CursorSuffix), publishes up to
// Config.Window messages ahead of the acknowledgements, and commits
// each message, in order, once the stream acknowledged it and all before
// it. On a failure it records the error, waits a backoff, and re-sends
// from the first unacknowledged message; network and server errors are
// never fatal.
//
// When ctx is done, Run stops reading, waits up to Config.AckTimeout
// for the acknowledgements in flight, commits those that arrived (in
// order, up to the first missing one), removes the cursor and returns
// ctx.Err(). A message acknowledged after that is sent again by the next
// Run and deduplicated by the stream within its duplicate window.
//
// Errors of the local queue end Run at once, returned wrapping ErrQueue
// and the queue's error: the queue closed (bigqueue.ErrClosed), the
// consumer deleted (bigqueue.ErrNoConsumer), an I/O error. Run returns
// ErrRunning while another Run or Drain of f is active (a Forwarder can
// run again after it returned), and bigqueue.ErrNilContext for a nil ctx.
func (f *Forwarder) Run(ctx context.Context) error {
	return f.start(ctx, false)
}

// Drain forwards what the consumer has to read and returns nil once the
// stream acknowledged all of it and it is committed, without waiting for
// more. It does not retry: on the first failure it commits what the
// stream acknowledged before it and returns the failure; the caller
// decides when to try again. When ctx is done it stops as Run does and
// returns ctx.Err(). Its other errors are Run's. Drain suits a program
// that holds the queue only for a while (the bigqueue command's forward).
func (f *Forwarder) Drain(ctx context.Context) error {
	return f.start(ctx, true)
}

// start runs the forwarder; drain selects Drain's behaviour.
func (f *Forwarder) start(ctx context.Context, drain bool) (err error) {
	if ctx == nil {
		return bigqueue.ErrNilContext
	}
	f.mu.Lock()
	if f.running {
		f.mu.Unlock()
		return ErrRunning
	}
	f.running = true
	f.mu.Unlock()
	defer func() {
		f.mu.Lock()
		f.running = false
		f.mu.Unlock()
	}()

	cursorName := f.c.Name() + CursorSuffix
	cursor, err := f.q.FromConsumer(cursorName, f.c)
	if err != nil {
		return fmt.Errorf("forward consumer %q: create cursor: %w: %w", f.c.Name(), ErrQueue, err)
	}
	defer func() {
		if derr := f.q.DeleteConsumer(cursorName); derr != nil && err == nil {
			err = fmt.Errorf("forward consumer %q: remove cursor: %w: %w", f.c.Name(), ErrQueue, derr)
		}
	}()
	r := &run{
		Forwarder: f, ctx: ctx, cursor: cursor, drain: drain,
		window: make([]inflight, 0, f.cfg.Window),
		timer:  time.NewTimer(time.Hour),
		// The forwarder re-sends by itself, in order; a retry inside
		// nats.go would re-send one message later, out of order.
		// A JetStream whose WithPublishAsyncMaxPending is below the
		// window makes a publish wait for a free slot up to AckTimeout.
		pubOpts: []natsjs.PublishOpt{natsjs.WithRetryAttempts(0), natsjs.WithStallWait(f.cfg.AckTimeout)},
	}
	defer r.timer.Stop()
	return r.loop()
}

// loop is Run's body.
func (r *run) loop() error {
	for {
		if r.ctx.Err() != nil {
			return r.stop()
		}
		if err := r.fill(); err != nil {
			if isFatal(err) {
				return r.fatal(err)
			}
			if r.drain {
				// Commit what was acknowledged before the failed publish.
				if err := r.settle(); err != nil {
					return err
				}
			}
			if err := r.fail(err); err != nil {
				return err
			}
			continue
		}
		if len(r.window) == 0 && r.drain {
			return nil
		}
		if len(r.window) == 0 {
			// Nothing to send: block until a message arrives.
			_, err := r.cursor.PeekWait(r.ctx)
			switch {
			case r.ctx.Err() != nil:
				return r.stop()
			case err != nil && !errors.Is(err, bigqueue.ErrDropped) && !errors.Is(err, bigqueue.ErrCorrupt):
				return r.fatal(&queueError{fmt.Errorf("wait for a message: %w", err)})
			}
			continue // a drop or damage notice is taken by the next read
		}
		if err := r.awaitOldest(r.ctx.Done()); err != nil {
			if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
				return r.stop()
			}
			if isFatal(err) {
				return r.fatal(err)
			}
			if err := r.fail(err); err != nil {
				return err
			}
		}
	}
}

// fill reads and publishes messages until the window is full or the
// consumer has nothing more to read. A read error that is a notice (lost
// messages) is counted and skipped; others are returned.
func (r *run) fill() error {
	for len(r.window) < r.cfg.Window {
		if r.next == 0 {
			r.next = r.cursor.Position()
		}
		seq := r.next
		var err error
		r.buf, err = r.cursor.DequeueAppend(r.buf[:0])
		switch {
		case errors.Is(err, bigqueue.ErrEmptyQueue):
			return nil
		case errors.Is(err, bigqueue.ErrDropped), errors.Is(err, bigqueue.ErrCorrupt):
			r.next = 0 // the cursor moved past lost messages
			r.note(err, func(s *Stats) { s.Skipped++ })
			continue
		case err != nil:
			return &queueError{fmt.Errorf("read message %d: %w", seq, err)}
		}
		r.next++
		id := r.MsgID(seq, r.buf)
		hdr := nats.Header{nats.MsgIdHdr: []string{id}}
		if r.prevID != "" {
			// The stream stores this message only right after its
			// predecessor: whatever fails in the window, the stream's
			// order is the queue's.
			hdr[nats.ExpectedLastMsgIdHdr] = []string{r.prevID}
		}
		ack, err := r.js.PublishMsgAsync(&nats.Msg{Subject: r.subject, Data: r.buf, Header: hdr}, r.pubOpts...)
		if err != nil {
			return fmt.Errorf("publish message %d: %w", seq, err)
		}
		r.prevID = id
		r.window = append(r.window, inflight{seq: seq, ack: ack})
		r.mu.Lock()
		r.stats.InFlight = len(r.window)
		r.mu.Unlock()
	}
	return nil
}

// awaitOldest waits for the acknowledgement of the oldest message in
// flight, takes every later one that has arrived too, and commits them.
// It returns the failure of the oldest, ErrAckTimeout, or
// context.Canceled when done closes first.
func (r *run) awaitOldest(done <-chan struct{}) error {
	r.timer.Reset(r.cfg.AckTimeout)
	defer r.timer.Stop()
	head := r.window[0]
	var ack *natsjs.PubAck
	select {
	case ack = <-head.ack.Ok():
	case err := <-head.ack.Err():
		return fmt.Errorf("publish message %d: %w", head.seq, err)
	case <-r.timer.C:
		return fmt.Errorf("publish message %d: %w", head.seq, ErrAckTimeout)
	case <-done:
		return context.Canceled
	}
	n, dups := 1, 0
	if ack.Duplicate {
		dups++
	}
	// Take the acknowledgements that are in already, in order.
	for n < len(r.window) {
		select {
		case ack := <-r.window[n].ack.Ok():
			n++
			if ack.Duplicate {
				dups++
			}
			continue
		default:
		}
		break
	}
	last := r.window[n-1].seq
	if err := r.commit(last); err != nil {
		return err
	}
	r.window = append(r.window[:0], r.window[n:]...)
	r.fails = 0
	r.mu.Lock()
	r.stats.Forwarded += uint64(n)
	r.stats.Duplicates += uint64(dups)
	r.stats.InFlight = len(r.window)
	r.notify()
	r.mu.Unlock()
	return nil
}

// commit moves the consumer past message seq, which the stream stored.
func (r *run) commit(seq uint64) error {
	err := r.c.Seek(seq + 1)
	if errors.Is(err, bigqueue.ErrOutOfRange) && r.q.Stats().OldestSeq > seq+1 {
		// Retention removed the messages after seq: the next one to
		// forward is the oldest left.
		err = r.c.SeekOldest()
	}
	if err != nil {
		return &queueError{fmt.Errorf("commit message %d: %w", seq, err)}
	}
	return nil
}

// fail records err, abandons the window, moves the cursor back to the
// first unacknowledged message and sleeps the backoff; it returns an
// error only when ctx ended meanwhile (after a clean stop) or the cursor
// could not be reset.
func (r *run) fail(err error) error {
	if r.drain {
		// The caller retries. What the window holds was abandoned (its
		// oldest failed) or settled (a publish failed).
		r.note(err, func(*Stats) {})
		r.window = r.window[:0]
		r.mu.Lock()
		r.stats.InFlight = 0
		r.mu.Unlock()
		return fmt.Errorf("forward consumer %q: %w", r.c.Name(), err)
	}
	r.note(err, func(s *Stats) { s.Retries++ })
	// The messages in flight are abandoned: each re-sent one is stored
	// once (the stream deduplicates by ID), and one of the abandoned
	// ones can land only right after its predecessor.
	clear(r.window)
	r.window = r.window[:0]
	r.prevID = ""
	r.next = 0
	r.mu.Lock()
	r.stats.InFlight = 0
	r.mu.Unlock()
	if _, err := r.q.FromConsumer(r.cursor.Name(), r.c); err != nil {
		return r.fatal(&queueError{fmt.Errorf("reset cursor: %w", err)})
	}
	var apiErr *natsjs.APIError
	if errors.As(err, &apiErr) && apiErr.ErrorCode == codeWrongLastMsgID {
		// Another publisher wrote to the stream, or an earlier message
		// of the window was refused: re-send at once, the first message
		// without an expectation.
		return nil
	}
	d := min(r.cfg.MaxBackoff, r.cfg.MinBackoff<<min(r.fails, 30))
	r.fails++
	d = d/2 + rand.N(d/2+1)
	r.timer.Reset(d)
	select {
	case <-r.timer.C:
		return nil
	case <-r.ctx.Done():
		r.timer.Stop()
		return r.stop()
	}
}

// stop ends a Run whose ctx is done: it waits up to AckTimeout for the
// acknowledgements in flight and commits the acknowledged prefix.
func (r *run) stop() error {
	if err := r.settle(); err != nil {
		return err
	}
	return r.ctx.Err()
}

// settle waits up to AckTimeout for the acknowledgements in flight,
// commits the acknowledged prefix and empties the window; it returns only
// fatal errors.
func (r *run) settle() error {
	deadline := time.Now().Add(r.cfg.AckTimeout)
	for len(r.window) > 0 && time.Now().Before(deadline) {
		if err := r.awaitOldest(nil); err != nil {
			if isFatal(err) {
				return r.fatal(err)
			}
			r.note(err, func(*Stats) {})
			break
		}
	}
	r.window = r.window[:0]
	r.mu.Lock()
	r.stats.InFlight = 0
	r.mu.Unlock()
	return nil
}

// fatal records err and returns it wrapped.
func (r *run) fatal(err error) error {
	r.note(err, func(*Stats) {})
	r.window = r.window[:0]
	r.mu.Lock()
	r.stats.InFlight = 0
	r.mu.Unlock()
	return fmt.Errorf("forward consumer %q: %w: %w", r.c.Name(), ErrQueue, err)
}

// note records err as the last error and applies count, under mu.
func (r *run) note(err error, count func(*Stats)) {
	r.mu.Lock()
	r.stats.LastError = err
	r.stats.LastErrorAt = time.Now()
	count(&r.stats)
	r.notify()
	r.mu.Unlock()
}

// queueError marks an error of the local queue, after which Run cannot
// go on; errors of the network and the stream are retried.
type queueError struct{ err error }

func (e *queueError) Error() string { return e.err.Error() }
func (e *queueError) Unwrap() error { return e.err }

// isFatal reports whether err came from the local queue.
func isFatal(err error) bool {
	var qe *queueError
	return errors.As(err, &qe)
}

package main

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// kind is what a workload does.
type kind string

const (
	kindEnqueue   kind = "enqueue"   // n enqueues into an empty queue
	kindDequeue   kind = "dequeue"   // n dequeues from a queue filled (and reopened) beforehand
	kindAlternate kind = "alternate" // n enqueue+dequeue pairs at a fixed depth
	kindSteady    kind = "steady"    // alternate, with small arenas: many arenas pass
	kindPC        kind = "pc"        // producers and consumers move n messages
	kindOpen      kind = "open"      // open a closed queue holding n messages
	kindLatency   kind = "latency"   // enqueue at a fixed offered rate
)

// workload is one measurement, done identically for every library.
type workload struct {
	name      string // built from numbers: enqueue/msg=128B
	kind      kind
	msg       int  // message size in bytes
	n         int  // messages (ops)
	depth     int  // alternate, steady: messages kept queued
	segment   int  // arena or segment size; 0 = library default
	producers int  // pc
	consumers int  // pc
	rate      int  // latency: offered messages per second
	flushOff  bool // background flushing off where a library has it (see library.flushOffNA)
	ref       string
}

// describe says in one sentence what the workload does, for the README.
func (w workload) describe() string {
	switch w.kind {
	case kindEnqueue:
		return fmt.Sprintf("%s enqueues of %s into an empty queue (closing it is not timed)", count(w.n), sizeName(w.msg))
	case kindDequeue:
		return fmt.Sprintf("%s dequeues of %s; the queue was filled, closed and reopened untimed, and is closed after draining to measure disk use", count(w.n), sizeName(w.msg))
	case kindAlternate:
		return fmt.Sprintf("%d messages queued first, then %s pairs of one enqueue and one dequeue of %s", w.depth, count(w.n), sizeName(w.msg))
	case kindSteady:
		return fmt.Sprintf("like alternate with %s messages at depth %d, %s arenas/segments: %s messages pass through about %s files", sizeName(w.msg), w.depth, sizeName(w.segment), count(w.n), count(w.n*w.msg/w.segment))
	case kindPC:
		return fmt.Sprintf("%d producer and %d consumer goroutines move %s messages of %s; time until the last is dequeued", w.producers, w.consumers, count(w.n), sizeName(w.msg))
	case kindOpen:
		return fmt.Sprintf("open a closed queue holding %s messages of %s and dequeue one (median of 3)", count(w.n), sizeName(w.msg))
	case kindLatency:
		d := fmt.Sprintf("one goroutine offers %s enqueues of %s at %s msg/s; latency from each message's scheduled send time to the return of Enqueue", count(w.n), sizeName(w.msg), count(w.rate))
		if w.flushOff {
			d += "; background flushing off (bigqueue and the original: `SetPeriodicFlushOps(0)`, `SetPeriodicFlushDuration(0)`), n/a for the libraries without such a setting"
		}
		return d
	}
	return ""
}

// workloads returns the suite; quick shrinks the counts.
func workloads(quick bool) []workload {
	pick := func(full, q int) int {
		if quick {
			return q
		}
		return full
	}
	var ws []workload
	sizes := []struct{ msg, full, quick int }{
		{128, 1_000_000, 20_000},
		{4 << 10, 64_000, 2_000},
		{128 << 10, 2_000, 100},
	}
	for _, k := range []kind{kindEnqueue, kindDequeue} {
		for _, s := range sizes {
			ws = append(ws, workload{
				name: fmt.Sprintf("%s/msg=%s", k, sizeName(s.msg)),
				kind: k, msg: s.msg, n: pick(s.full, s.quick), ref: "mmap-fresh",
			})
		}
	}
	ws = append(ws,
		workload{name: "alternate/msg=128B/depth=1000", kind: kindAlternate, msg: 128, depth: 1000, n: pick(1_000_000, 20_000), ref: "mmap-rewrite"},
		workload{name: "steady/msg=4KiB/arena=128KiB/depth=64", kind: kindSteady, msg: 4 << 10, depth: 64, segment: 128 << 10, n: pick(100_000, 5_000), ref: "mmap-rewrite"},
		workload{name: "pc/msg=128B/p=1/c=1", kind: kindPC, msg: 128, producers: 1, consumers: 1, n: pick(1_000_000, 20_000), ref: "memqueue"},
		workload{name: "pc/msg=128B/p=4/c=4", kind: kindPC, msg: 128, producers: 4, consumers: 4, n: pick(1_000_000, 20_000), ref: "memqueue"},
		workload{name: fmt.Sprintf("open/msgs=%s/msg=128B", count(pick(1_000_000, 20_000))), kind: kindOpen, msg: 128, n: pick(1_000_000, 20_000)},
		workload{name: "latency/msg=128B/rate=200k", kind: kindLatency, msg: 128, rate: 200_000, n: pick(1_000_000, 20_000), ref: "memqueue"},
		// The same with background flushing off: issue 12 bounds bigqueue's
		// default p99.9 at 2× this one's. No reference: memqueue has
		// nothing to flush.
		workload{name: "latency/msg=128B/rate=200k" + flushOffSuffix, kind: kindLatency, msg: 128, rate: 200_000, n: pick(1_000_000, 20_000), flushOff: true},
	)
	return ws
}

// flushOffSuffix ends the name of a workload run with background flushing
// off; without it, the name is that of the same workload at default
// durability (the report pairs them by name).
const flushOffSuffix = "/flush=off"

// result is one library's measurement of one workload. Durations are in
// nanoseconds, sizes in bytes; -1 means not measured.
type result struct {
	Workload    string  `json:"workload"`
	Lib         string  `json:"lib"`
	NA          string  `json:"na,omitempty"`  // why the library cannot do it
	Err         string  `json:"err,omitempty"` // a failure: the run exits non-zero
	Ops         int     `json:"ops"`
	Bytes       int64   `json:"bytes"` // payload bytes moved by the timed ops
	Seconds     float64 `json:"seconds"`
	NsPerOp     float64 `json:"ns_per_op"`
	MsgsPerSec  float64 `json:"msgs_per_sec"`
	AllocsPerOp float64 `json:"allocs_per_op"`

	DiskFull  int64 `json:"disk_full"`  // dequeue: du of the directory when full and closed
	DiskAfter int64 `json:"disk_after"` // dequeue, steady: du after draining and closing
	RSS       int64 `json:"rss"`        // enqueue 128 B: VmRSS with the queue full and open

	OpenNs  float64 `json:"open_ns"`  // open: NewQueue (or equivalent) alone
	FirstNs float64 `json:"first_ns"` // open: open plus the first dequeue

	Offered int     `json:"offered"` // latency: messages scheduled
	Sent    int     `json:"sent"`    // latency: messages sent before the deadline
	P50     float64 `json:"p50"`
	P99     float64 `json:"p99"`
	P999    float64 `json:"p999"`
	Max     float64 `json:"max"`
	// latency: the enqueue call's own duration, from its start to its
	// return, which leaves out the time the sender was late to call it
	// (descheduled, or behind after an earlier slow call).
	CallP999  float64 `json:"call_p999"`
	CallMax   float64 `json:"call_max"`
	SlowCalls int     `json:"slow_calls"` // calls that took over 1 ms
	// latency: CPU steal during the run (time the hypervisor ran
	// something else on this machine's CPUs), in percent of all CPUs'
	// time; -1 where /proc/stat does not tell.
	StealPct float64 `json:"steal_pct"`
}

func newResult(w workload, lib string) result {
	return result{Workload: w.name, Lib: lib, DiskFull: -1, DiskAfter: -1, RSS: -1}
}

// stamp writes the sequence number seq into the first 8 bytes of msg.
func stamp(msg []byte, seq uint64) { binary.LittleEndian.PutUint64(msg, seq) }

// check verifies that got is a message of size bytes carrying seq.
func check(got []byte, size int, seq uint64) error {
	if len(got) != size {
		return fmt.Errorf("message %d: got %d bytes, want %d", seq, len(got), size)
	}
	if s := binary.LittleEndian.Uint64(got); s != seq {
		return fmt.Errorf("message %d: got sequence %d (out of order or foreign)", seq, s)
	}
	return nil
}

// payload returns a message of n >= 8 pseudo-random bytes, the same for
// every library. Random, because a repeating pattern would let a library
// that compresses (goque's LevelDB uses snappy) store and move less.
func payload(n int) []byte {
	rng := rand.New(rand.NewPCG(1, uint64(n)))
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(rng.Uint32())
	}
	return b
}

// stallLimit is how long a dequeue loop waits for a message it knows was
// enqueued before it reports the library as stuck.
const stallLimit = 30 * time.Second

// dequeueWait dequeues, retrying errEmpty until stallLimit.
func dequeueWait(q queue, dst []byte) ([]byte, error) {
	var since time.Time
	for {
		m, err := q.Dequeue(dst)
		if !errors.Is(err, errEmpty) {
			return m, err
		}
		if since.IsZero() {
			since = time.Now()
		} else if time.Since(since) > stallLimit {
			return nil, fmt.Errorf("no message for %v although one was enqueued", stallLimit)
		}
		runtime.Gosched()
	}
}

// timer measures one timed region: wall time and allocations.
type timer struct {
	start   time.Time
	mallocs uint64
}

func startTimer() timer {
	runtime.GC() // the heap stays warm, as in a long-running process
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return timer{start: time.Now(), mallocs: ms.Mallocs}
}

// stop fills the throughput fields of r for ops operations moving bytes.
func (t timer) stop(r *result, ops int, bytes int64) {
	d := time.Since(t.start)
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	r.Ops = ops
	r.Bytes = bytes
	r.Seconds = d.Seconds()
	r.NsPerOp = float64(d.Nanoseconds()) / float64(ops)
	r.MsgsPerSec = float64(ops) / d.Seconds()
	r.AllocsPerOp = float64(ms.Mallocs-t.mallocs) / float64(ops)
}

// runQueueWorkload runs w against lib in a fresh directory under tmp and
// removes the directory afterwards.
func runQueueWorkload(lib library, w workload, tmp string) result {
	r := newResult(w, lib.name)
	if !lib.persistent && w.kind == kindOpen {
		r.NA = "not persistent"
		return r
	}
	if w.flushOff && lib.flushOffNA != "" {
		r.NA = lib.flushOffNA
		return r
	}
	dir, err := os.MkdirTemp(tmp, "bq-bench-"+lib.name+"-")
	if err != nil {
		r.Err = err.Error()
		return r
	}
	defer func() {
		if err := os.RemoveAll(dir); err != nil && r.Err == "" {
			r.Err = err.Error()
		}
	}()
	c := config{segment: w.segment, msg: w.msg, flushOff: w.flushOff}
	open := func() (queue, error) { return lib.open(dir, c) }
	switch w.kind {
	case kindEnqueue:
		err = runEnqueue(open, w, dir, &r)
	case kindDequeue:
		err = runDequeue(open, w, dir, &r, lib.persistent)
	case kindAlternate, kindSteady:
		err = runAlternate(open, w, dir, &r, lib.persistent)
	case kindPC:
		err = runPC(open, w, &r)
	case kindOpen:
		err = runOpen(open, w, &r)
	case kindLatency:
		err = runLatency(open, w, &r)
	default:
		err = fmt.Errorf("unknown workload kind %q", w.kind)
	}
	if err != nil {
		r.Err = err.Error()
	}
	return r
}

// fill enqueues n stamped messages starting at sequence from.
func fill(q queue, msg []byte, from, n int) error {
	for i := range n {
		stamp(msg, uint64(from+i))
		if err := q.Enqueue(msg); err != nil {
			return fmt.Errorf("enqueue %d: %w", from+i, err)
		}
	}
	return nil
}

// drain dequeues n messages expected to carry sequences from, from+1, ...
func drain(q queue, size, from, n int) error {
	buf := make([]byte, 0, size)
	for i := range n {
		m, err := dequeueWait(q, buf)
		if err != nil {
			return fmt.Errorf("dequeue %d: %w", from+i, err)
		}
		if err := check(m, size, uint64(from+i)); err != nil {
			return err
		}
	}
	return nil
}

func runEnqueue(open func() (queue, error), w workload, dir string, r *result) (err error) {
	q, err := open()
	if err != nil {
		return err
	}
	defer func() { err = errors.Join(err, q.Close()) }()
	msg := payload(w.msg)
	t := startTimer()
	if err := fill(q, msg, 0, w.n); err != nil {
		return err
	}
	t.stop(r, w.n, int64(w.n)*int64(w.msg))
	if w.msg == 128 {
		r.RSS = rss()
	}
	return nil
}

func runDequeue(open func() (queue, error), w workload, dir string, r *result, persistent bool) (err error) {
	q, err := open()
	if err != nil {
		return err
	}
	defer func() {
		if q != nil {
			err = errors.Join(err, q.Close())
		}
	}()
	if err := fill(q, payload(w.msg), 0, w.n); err != nil {
		return err
	}
	if persistent {
		// Data at rest: closed, measured and reopened, for every library.
		err := q.Close()
		q = nil
		if err != nil {
			return err
		}
		if r.DiskFull, err = diskUsage(dir); err != nil {
			return err
		}
		if q, err = open(); err != nil {
			return err
		}
	}
	t := startTimer()
	if err := drain(q, w.msg, 0, w.n); err != nil {
		return err
	}
	t.stop(r, w.n, int64(w.n)*int64(w.msg))
	if m, err := q.Dequeue(nil); !errors.Is(err, errEmpty) {
		return fmt.Errorf("queue not empty after draining: %d bytes, %v", len(m), err)
	}
	if persistent {
		err := q.Close()
		q = nil
		if err != nil {
			return err
		}
		if r.DiskAfter, err = diskUsage(dir); err != nil {
			return err
		}
	}
	return nil
}

// runAlternate keeps w.depth messages queued and times w.n pairs of one
// enqueue and one dequeue.
func runAlternate(open func() (queue, error), w workload, dir string, r *result, persistent bool) (err error) {
	q, err := open()
	if err != nil {
		return err
	}
	defer func() {
		if q != nil {
			err = errors.Join(err, q.Close())
		}
	}()
	msg := payload(w.msg)
	buf := make([]byte, 0, w.msg)
	if err := fill(q, msg, 0, w.depth); err != nil {
		return err
	}
	t := startTimer()
	for i := range w.n {
		stamp(msg, uint64(w.depth+i))
		if err := q.Enqueue(msg); err != nil {
			return fmt.Errorf("enqueue %d: %w", w.depth+i, err)
		}
		m, err := dequeueWait(q, buf)
		if err != nil {
			return fmt.Errorf("dequeue %d: %w", i, err)
		}
		if err := check(m, w.msg, uint64(i)); err != nil {
			return err
		}
	}
	t.stop(r, w.n, int64(w.n)*int64(w.msg))
	if err := drain(q, w.msg, w.n, w.depth); err != nil {
		return err
	}
	if persistent {
		err := q.Close()
		q = nil
		if err != nil {
			return err
		}
		if r.DiskAfter, err = diskUsage(dir); err != nil {
			return err
		}
	}
	return nil
}

// runPC moves w.n messages from w.producers to w.consumers goroutines.
// Producer p stamps p<<48 | i; consumers check that each producer's
// messages arrive in order (per consumer) and that all arrive once.
func runPC(open func() (queue, error), w workload, r *result) (err error) {
	q, err := open()
	if err != nil {
		return err
	}
	defer func() { err = errors.Join(err, q.Close()) }()
	per := w.n / w.producers
	total := per * w.producers
	var (
		consumed atomic.Int64
		wg       sync.WaitGroup
		errMu    sync.Mutex
		firstErr error
		failed   atomic.Bool
	)
	fail := func(err error) {
		errMu.Lock()
		defer errMu.Unlock()
		if firstErr == nil {
			firstErr = err
		}
		failed.Store(true)
	}
	counts := make([][]int, w.consumers) // per consumer, per producer: messages seen
	t := startTimer()
	for p := range w.producers {
		wg.Go(func() {
			msg := payload(w.msg)
			for i := range per {
				if failed.Load() {
					return
				}
				stamp(msg, uint64(p)<<48|uint64(i))
				if err := q.Enqueue(msg); err != nil {
					fail(fmt.Errorf("producer %d enqueue %d: %w", p, i, err))
					return
				}
			}
		})
	}
	for c := range w.consumers {
		counts[c] = make([]int, w.producers)
		wg.Go(func() {
			buf := make([]byte, 0, w.msg)
			last := make([]int64, w.producers)
			for i := range last {
				last[i] = -1
			}
			idle := time.Time{}
			for consumed.Load() < int64(total) && !failed.Load() {
				m, err := q.Dequeue(buf)
				if errors.Is(err, errEmpty) {
					if idle.IsZero() {
						idle = time.Now()
					} else if time.Since(idle) > stallLimit {
						fail(fmt.Errorf("consumer %d: no message for %v with %d of %d consumed", c, stallLimit, consumed.Load(), total))
						return
					}
					runtime.Gosched()
					continue
				}
				idle = time.Time{}
				if err != nil {
					fail(fmt.Errorf("consumer %d: %w", c, err))
					return
				}
				if len(m) != w.msg {
					fail(fmt.Errorf("consumer %d: got %d bytes, want %d", c, len(m), w.msg))
					return
				}
				s := binary.LittleEndian.Uint64(m)
				p, i := int(s>>48), int64(s&(1<<48-1))
				if p >= w.producers || i <= last[p] || i >= int64(per) {
					fail(fmt.Errorf("consumer %d: message %d of producer %d after %d (out of order or foreign)", c, i, p, last[p]))
					return
				}
				last[p] = i
				counts[c][p]++
				consumed.Add(1)
			}
		})
	}
	wg.Wait()
	if firstErr != nil {
		return firstErr
	}
	t.stop(r, total, int64(total)*int64(w.msg))
	for p := range w.producers {
		got := 0
		for c := range w.consumers {
			got += counts[c][p]
		}
		if got != per {
			return fmt.Errorf("producer %d: %d messages dequeued, want %d", p, got, per)
		}
	}
	return nil
}

// runOpen fills a queue, closes it, and three times opens it, dequeues
// one message and closes it again; it reports the medians.
func runOpen(open func() (queue, error), w workload, r *result) error {
	q, err := open()
	if err != nil {
		return err
	}
	if err := fill(q, payload(w.msg), 0, w.n); err != nil {
		return errors.Join(err, q.Close())
	}
	if err := q.Close(); err != nil {
		return err
	}
	const reps = 3
	var opens, firsts []float64
	buf := make([]byte, 0, w.msg)
	for i := range reps {
		runtime.GC()
		start := time.Now()
		q, err := open()
		if err != nil {
			return err
		}
		opened := time.Since(start)
		m, err := dequeueWait(q, buf)
		first := time.Since(start)
		if err == nil {
			err = check(m, w.msg, uint64(i))
		}
		if err := errors.Join(err, q.Close()); err != nil {
			return err
		}
		opens = append(opens, float64(opened.Nanoseconds()))
		firsts = append(firsts, float64(first.Nanoseconds()))
	}
	slices.Sort(opens)
	slices.Sort(firsts)
	r.OpenNs, r.FirstNs = opens[reps/2], firsts[reps/2]
	r.Ops = 1
	r.NsPerOp = r.OpenNs
	return nil
}

// runLatency offers w.n enqueues at w.rate per second from one goroutine.
// Message i is scheduled at start + i/rate; its latency runs from that
// time, not from when the call began, so a stall counts for every message
// it delays (no coordinated omission). A library that falls far behind
// is stopped at twice the schedule plus one second; the percentiles then
// cover the messages sent, and Sent says how many.
func runLatency(open func() (queue, error), w workload, r *result) (err error) {
	q, err := open()
	if err != nil {
		return err
	}
	defer func() { err = errors.Join(err, q.Close()) }()
	msg := payload(w.msg)
	interval := time.Second / time.Duration(w.rate)
	lat := make([]float64, 0, w.n)
	calls := make([]float64, 0, w.n)
	runtime.GC()
	steal0, _ := stealTicks()
	start := time.Now()
	deadline := 2*time.Duration(w.n)*interval + time.Second
	for i := range w.n {
		due := time.Duration(i) * interval
		for time.Since(start) < due {
			// Spin: the interval (5 µs at 200k/s) is below the timer
			// resolution, as in open-loop load generators.
		}
		stamp(msg, uint64(i))
		called := time.Since(start)
		if err := q.Enqueue(msg); err != nil {
			return fmt.Errorf("enqueue %d: %w", i, err)
		}
		done := time.Since(start)
		lat = append(lat, float64((done - due).Nanoseconds()))
		calls = append(calls, float64((done - called).Nanoseconds()))
		if done > deadline {
			break
		}
	}
	elapsed := time.Since(start)
	r.StealPct = -1
	if steal1, cpus := stealTicks(); steal0 >= 0 && steal1 >= steal0 {
		r.StealPct = 100 * float64(steal1-steal0) / (elapsed.Seconds() * clockTicks * float64(cpus))
	}
	r.Offered, r.Sent = w.n, len(lat)
	r.Ops = len(lat)
	r.Seconds = elapsed.Seconds()
	r.MsgsPerSec = float64(len(lat)) / elapsed.Seconds()
	slices.Sort(lat)
	at := func(p float64) float64 { return lat[min(len(lat)-1, int(p*float64(len(lat))))] }
	r.P50, r.P99, r.P999, r.Max = at(0.50), at(0.99), at(0.999), lat[len(lat)-1]
	for _, c := range calls {
		if c > float64(time.Millisecond) {
			r.SlowCalls++
		}
	}
	slices.Sort(calls)
	r.CallP999, r.CallMax = calls[min(len(calls)-1, int(0.999*float64(len(calls))))], calls[len(calls)-1]
	r.NsPerOp = r.P50
	return nil
}

// diskUsage is du for dir: the allocated blocks (st_blocks*512) of every
// file and directory below it, dir included.
func diskUsage(dir string) (int64, error) {
	var total int64
	err := filepath.WalkDir(dir, func(path string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		n, err := allocatedBytes(path)
		total += n
		return err
	})
	return total, err
}

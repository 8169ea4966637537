package main

import (
	"bytes"
	"errors"
	"fmt"
	"path/filepath"
	"sync"
	"time"

	"github.com/beeker1121/goque"
	bigqueue "github.com/bigqueue-go/bigqueue"
	original "github.com/grandecola/bigqueue"
	"github.com/joncrlsn/dque"
	diskqueue "github.com/nsqio/go-diskqueue"
	"github.com/tidwall/wal"
)

// queue is what the harness needs from a library: FIFO enqueue and
// dequeue through the API each library recommends, and Close. It is safe
// for concurrent use, as every library under test is.
type queue interface {
	Enqueue(msg []byte) error
	// Dequeue returns the next message. It may store it in dst (which the
	// caller reuses) or return a slice of its own; the caller does not keep
	// it. It returns errEmpty when nothing is available now.
	Dequeue(dst []byte) ([]byte, error)
	Close() error
}

// errEmpty is every adapter's "nothing to dequeue right now".
var errEmpty = errors.New("queue is empty")

// config is the sizing one workload asks for. Zero values mean "the
// library's default": durability settings are the same in every workload
// but the flushes-off latency one, which only libraries with a flushOffNA
// of "" run.
type config struct {
	segment  int  // arena or segment file size in bytes; 0 = default (128 MiB)
	msg      int  // message size in bytes, for libraries sized in items
	flushOff bool // turn background flushing off (only where flushOffNA is "")
}

// defaultSegment is the file size used where a library has no default of
// its own or a different one: the arena size of both bigqueues, so that
// every library rolls files at the same data volume.
const defaultSegment = 128 << 20

func (c config) segmentOr() int {
	if c.segment > 0 {
		return c.segment
	}
	return defaultSegment
}

// library is one implementation under test.
type library struct {
	name       string // short name used in flags, tables and benchmark names
	module     string // module path and version
	settings   string // the exact settings used, for the README
	persistent bool   // false: open time and disk use do not apply
	// flushOffNA is why the flushes-off workload does not apply: the
	// library has no background flush to turn off, or none that can be.
	// "" means open honours config.flushOff.
	flushOffNA string
	open       func(dir string, c config) (queue, error)
}

var libraries = []library{
	{
		name:       "bigqueue",
		module:     "github.com/bigqueue-go/bigqueue (this repository)",
		settings:   "defaults: `SetPeriodicFlushOps(1_000_000)`, `SetPeriodicFlushDuration(1s)` (background msync, never per operation; between flushes, when an arena fills while others are evicted, the flusher reclaims the arenas every consumer has read, about 1 MiB at a time, without syncing them), `SetMaxInMemArenas(3)`, arena 128 MiB unless the workload sets `SetArenaSize`; dequeue with `DequeueAppend` into a reused buffer. Flushes-off workload: `SetPeriodicFlushOps(0)`, `SetPeriodicFlushDuration(0)` (no background flush: none on a timer, after a count or when an arena fills; an arena evicted from memory keeps its pages in the page cache until the next `Flush` or `Close`, which fsyncs it, or, with 64 waiting, is msynced before it is unmapped; `Close` msyncs the arenas and the index)",
		persistent: true,
		open:       openBigqueue,
	},
	{
		name:       "original",
		module:     "github.com/grandecola/bigqueue v0.6.0",
		settings:   "defaults: `SetPeriodicFlushOps(1_000_000)`, `SetPeriodicFlushDuration(1s)` (msync), `SetMaxInMemArenas(3)`, arena 128 MiB unless the workload sets `SetArenaSize`; dequeue with `Dequeue` (allocates the message). Flushes-off workload: `SetPeriodicFlushOps(0)`, `SetPeriodicFlushDuration(0)` (its flush goroutine returns at once; `Close` msyncs the metadata file and unmaps the arenas without msync, as with the defaults)",
		persistent: true,
		open:       openOriginal,
	},
	{
		name:       "diskqueue",
		module:     "github.com/nsqio/go-diskqueue v1.1.0",
		settings:   "`syncEvery=1_000_000` operations, `syncTimeout=1s` (fsync of the write file and the metadata; it also fsyncs when it rolls or removes a file), `maxBytesPerFile` 128 MiB unless the workload sets a segment size, `maxMsgSize` 16 MiB; dequeue is a receive from `ReadChan()`",
		persistent: true,
		flushOffNA: "its fsync cannot be turned off: `syncTimeout` feeds `time.NewTicker`, which panics on 0, and it fsyncs whenever it rolls a file",
		open:       openDiskqueue,
	},
	{
		name:       "dque",
		module:     "github.com/joncrlsn/dque v0.0.0-20211108142734-c2ef48c5192a",
		settings:   "`TurboOn()` (no fsync per operation: the OS writes back; the default, turbo off, fsyncs every enqueue and dequeue), items per segment = segment size / message size (128 MiB unless the workload sets one), at most 1,000 (dque's examples use 50–100; it decodes a whole segment on open); messages are a `struct{ Data []byte }`, gob-encoded by dque, copied before `Enqueue` because dque keeps the caller's object in memory",
		persistent: true,
		flushOffNA: "no background flush to turn off: in turbo mode the OS writes back",
		open:       openDque,
	},
	{
		name:       "goque",
		module:     "github.com/beeker1121/goque v2.1.0+incompatible",
		settings:   "`OpenQueue` defaults: LevelDB (`syndtr/goleveldb` v1.0.0) with default options, writes not synced (`WriteOptions.Sync=false`); no segment size to set",
		persistent: true,
		flushOffNA: "no background flush to turn off: LevelDB writes unsynced, the OS writes back",
		open:       openGoque,
	},
	{
		name:       "wal",
		module:     "github.com/tidwall/wal v1.2.1",
		settings:   "`NoSync: true` (the default, false, fsyncs every write), `SegmentSize` 128 MiB unless the workload sets one, `SegmentCacheSize: 2`, `AllowEmpty: true`, binary format. A log, not a queue: the adapter keeps the read index in memory and calls `TruncateFront` (which copies the rest of a segment and fsyncs it) once a segment's worth of bytes has been read, and at `Close`",
		persistent: true,
		flushOffNA: "no background flush to turn off: with `NoSync` the OS writes back",
		open:       openWAL,
	},
}

// memqueueLib is the in-memory reference: a slice and a mutex. It runs in
// the reference process, through the same workloads as the libraries.
var memqueueLib = library{
	name:       "memqueue",
	module:     "reference: a slice of messages behind a sync.Mutex",
	settings:   "not persistent; enqueue copies the message into a new allocation (the queue owns it), dequeue copies it into the caller's buffer",
	flushOffNA: "not persistent: nothing to flush",
	open:       func(string, config) (queue, error) { return &memQueue{}, nil },
}

// ---- bigqueue (this repository)

type bigqueueAdapter struct{ q *bigqueue.Queue }

func openBigqueue(dir string, c config) (queue, error) {
	var opts []bigqueue.Option
	if c.segment > 0 {
		opts = append(opts, bigqueue.SetArenaSize(c.segment))
	}
	if c.flushOff {
		opts = append(opts, bigqueue.SetPeriodicFlushOps(0), bigqueue.SetPeriodicFlushDuration(0))
	}
	q, err := bigqueue.NewQueue(dir, opts...)
	if err != nil {
		return nil, err
	}
	return bigqueueAdapter{q}, nil
}

func (a bigqueueAdapter) Enqueue(msg []byte) error { return a.q.Enqueue(msg) }
func (a bigqueueAdapter) Close() error             { return a.q.Close() }

func (a bigqueueAdapter) Dequeue(dst []byte) ([]byte, error) {
	m, err := a.q.DequeueAppend(dst[:0])
	if errors.Is(err, bigqueue.ErrEmptyQueue) {
		return nil, errEmpty
	}
	return m, err
}

// ---- grandecola/bigqueue v0.6.0, the original

type originalAdapter struct{ q *original.MmapQueue }

func openOriginal(dir string, c config) (queue, error) {
	var opts []original.Option
	if c.segment > 0 {
		opts = append(opts, original.SetArenaSize(c.segment))
	}
	if c.flushOff {
		opts = append(opts, original.SetPeriodicFlushOps(0), original.SetPeriodicFlushDuration(0))
	}
	q, err := original.NewMmapQueue(dir, opts...)
	if err != nil {
		return nil, err
	}
	return originalAdapter{q}, nil
}

func (a originalAdapter) Enqueue(msg []byte) error { return a.q.Enqueue(msg) }
func (a originalAdapter) Close() error             { return a.q.Close() }

func (a originalAdapter) Dequeue([]byte) ([]byte, error) {
	m, err := a.q.Dequeue()
	if errors.Is(err, original.ErrEmptyQueue) {
		return nil, errEmpty
	}
	return m, err
}

// ---- nsqio/go-diskqueue

type diskqueueAdapter struct {
	q diskqueue.Interface

	mu  sync.Mutex
	err error // first ERROR or FATAL the library logged; returned by Close
}

func openDiskqueue(dir string, c config) (queue, error) {
	a := &diskqueueAdapter{}
	logf := func(lvl diskqueue.LogLevel, f string, args ...interface{}) {
		if lvl < diskqueue.ERROR {
			return
		}
		a.mu.Lock()
		defer a.mu.Unlock()
		if a.err == nil {
			a.err = fmt.Errorf("diskqueue logged %s: %s", lvl, fmt.Sprintf(f, args...))
		}
	}
	a.q = diskqueue.New("bench", dir, int64(c.segmentOr()), 0, 16<<20, 1_000_000, time.Second, logf)
	return a, nil
}

func (a *diskqueueAdapter) Enqueue(msg []byte) error { return a.q.Put(msg) }

// Dequeue receives from ReadChan. The library's reader goroutine offers
// one message at a time, so a message may exist while the channel is not
// ready yet: Dequeue then waits up to 10 ms before reporting errEmpty.
func (a *diskqueueAdapter) Dequeue([]byte) ([]byte, error) {
	select {
	case m := <-a.q.ReadChan():
		return m, nil
	default:
	}
	t := time.NewTimer(10 * time.Millisecond)
	defer t.Stop()
	select {
	case m := <-a.q.ReadChan():
		return m, nil
	case <-t.C:
		return nil, errEmpty
	}
}

func (a *diskqueueAdapter) Close() error {
	err := a.q.Close()
	a.mu.Lock()
	defer a.mu.Unlock()
	return errors.Join(err, a.err)
}

// ---- joncrlsn/dque

// dqueMaxPerSegment bounds dque's items per segment. dque holds its first
// and last segments in memory and decodes a whole segment (one gob decoder
// per item) when it opens or moves to it, so its examples use 50 to 100
// items; a segment of 128 MiB of 128 B messages would take a minute to
// open.
const dqueMaxPerSegment = 1000

// dqueItem is the object dque stores; it must be a registered gob type.
type dqueItem struct{ Data []byte }

type dqueAdapter struct{ q *dque.DQue }

func openDque(dir string, c config) (queue, error) {
	perSegment := min(dqueMaxPerSegment, max(1, c.segmentOr()/max(1, c.msg)))
	q, err := dque.NewOrOpen("bench", dir, perSegment, func() interface{} { return &dqueItem{} })
	if err != nil {
		return nil, err
	}
	if err := q.TurboOn(); err != nil {
		return nil, errors.Join(err, q.Close())
	}
	return dqueAdapter{q}, nil
}

func (a dqueAdapter) Enqueue(msg []byte) error {
	return a.q.Enqueue(&dqueItem{Data: bytes.Clone(msg)})
}

func (a dqueAdapter) Dequeue([]byte) ([]byte, error) {
	obj, err := a.q.Dequeue()
	if errors.Is(err, dque.ErrEmpty) {
		return nil, errEmpty
	}
	if err != nil {
		return nil, err
	}
	item, ok := obj.(*dqueItem)
	if !ok {
		return nil, fmt.Errorf("dque returned %T", obj)
	}
	return item.Data, nil
}

func (a dqueAdapter) Close() error {
	// TurboOff fsyncs the open segments, as a user would before exiting.
	return errors.Join(a.q.TurboOff(), a.q.Close())
}

// ---- beeker1121/goque

type goqueAdapter struct{ q *goque.Queue }

func openGoque(dir string, _ config) (queue, error) {
	q, err := goque.OpenQueue(dir)
	if err != nil {
		return nil, err
	}
	return goqueAdapter{q}, nil
}

func (a goqueAdapter) Enqueue(msg []byte) error {
	_, err := a.q.Enqueue(msg)
	return err
}

func (a goqueAdapter) Dequeue([]byte) ([]byte, error) {
	item, err := a.q.Dequeue()
	if errors.Is(err, goque.ErrEmpty) || errors.Is(err, goque.ErrOutOfBounds) {
		return nil, errEmpty
	}
	if err != nil {
		return nil, err
	}
	return item.Value, nil
}

func (a goqueAdapter) Close() error { return a.q.Close() }

// ---- tidwall/wal

// walAdapter turns the log into a queue: entries are written at
// LastIndex+1 and read at a read index kept in memory. The log is
// truncated to the read index once segment bytes have been read since the
// last truncation, and at Close.
type walAdapter struct {
	log     *wal.Log
	segment int

	mu        sync.Mutex
	next      uint64 // index the next Enqueue writes
	read      uint64 // index the next Dequeue reads
	sinceTrim int    // bytes read since the last TruncateFront
}

func openWAL(dir string, c config) (queue, error) {
	log, err := wal.Open(filepath.Join(dir, "wal"), &wal.Options{
		NoSync:           true,
		SegmentSize:      c.segmentOr(),
		LogFormat:        wal.Binary,
		SegmentCacheSize: 2,
		AllowEmpty:       true,
		DirPerms:         0o750,
		FilePerms:        0o640,
	})
	if err != nil {
		return nil, err
	}
	first, err1 := log.FirstIndex()
	last, err2 := log.LastIndex()
	if err := errors.Join(err1, err2); err != nil {
		return nil, errors.Join(err, log.Close())
	}
	return &walAdapter{log: log, segment: c.segmentOr(), next: last + 1, read: first}, nil
}

func (a *walAdapter) Enqueue(msg []byte) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	if err := a.log.Write(a.next, msg); err != nil {
		return err
	}
	a.next++
	return nil
}

func (a *walAdapter) Dequeue([]byte) ([]byte, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.read >= a.next {
		return nil, errEmpty
	}
	m, err := a.log.Read(a.read)
	if err != nil {
		return nil, err
	}
	a.read++
	a.sinceTrim += len(m)
	if a.sinceTrim >= a.segment {
		if err := a.log.TruncateFront(a.read); err != nil {
			return nil, err
		}
		a.sinceTrim = 0
	}
	return m, nil
}

func (a *walAdapter) Close() error {
	a.mu.Lock()
	defer a.mu.Unlock()
	var err error
	if a.sinceTrim > 0 {
		err = a.log.TruncateFront(a.read)
	}
	return errors.Join(err, a.log.Close())
}

// ---- the in-memory reference

type memQueue struct {
	mu   sync.Mutex
	msgs [][]byte
	head int // msgs[:head] were dequeued and are nil
}

func (q *memQueue) Enqueue(msg []byte) error {
	m := bytes.Clone(msg)
	if m == nil {
		m = []byte{}
	}
	q.mu.Lock()
	defer q.mu.Unlock()
	q.msgs = append(q.msgs, m)
	return nil
}

func (q *memQueue) Dequeue(dst []byte) ([]byte, error) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.head == len(q.msgs) {
		return nil, errEmpty
	}
	m := q.msgs[q.head]
	q.msgs[q.head] = nil
	q.head++
	if q.head >= 1024 && q.head*2 >= len(q.msgs) {
		n := copy(q.msgs, q.msgs[q.head:])
		clear(q.msgs[n:])
		q.msgs = q.msgs[:n]
		q.head = 0
	}
	return append(dst[:0], m...), nil
}

func (q *memQueue) Close() error { return nil }

// libraryByName finds a library or the memqueue reference.
func libraryByName(name string) (library, bool) {
	if name == memqueueLib.name {
		return memqueueLib, true
	}
	for _, l := range libraries {
		if l.name == name {
			return l, true
		}
	}
	return library{}, false
}

package bigqueue

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"os"
	"runtime/debug"
	"slices"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"

	"golang.org/x/sys/cpu"
)

// File names inside a queue directory.
const (
	indexFileName = "index.bq"
	// legacyLockFileName is the file earlier versions locked; the lock
	// is now on the directory itself. A left-over one is ignored.
	legacyLockFileName = "lock"
)

// Queue is a persistent FIFO queue stored in one directory. It is safe for
// concurrent use by many goroutines. Open it with NewQueue and Close it when
// done; a Queue holds an exclusive lock on its directory until then.
type Queue struct {
	dir  *queueDir // opened and locked by NewQueue; every file is reached through it
	opts options

	// flushMu serializes flushes with each other and with Close. It is
	// taken before mu, never while holding mu.
	flushMu sync.Mutex

	// mu guards every field below, and the mappings of the arenas and the
	// index. Every operation holds it from start to end, except the fast
	// paths of Enqueue and Dequeue, which hold one half (lock.go): fields
	// marked "prod" are written with only mu.prod held, and read only with
	// mu.prod held; fields marked "cons" likewise with mu.cons. The two
	// groups, and the fields written on every operation, sit on cache
	// lines of their own, so that a producer and a consumer on two cores
	// do not take each other's lines.
	mu           queueLock
	am           *arenaManager // arena files and mappings
	idx          *index        // the index mapping
	oldest       uint64        // first record still stored (named by the oldest arena's header): where a new consumer starts; oldest <= head
	oldestSeq    uint64        // sequence number of the record at oldest
	passed       bool          // oldest lies past the index's watermark: a flush moved it past the arenas it reclaims (passOldest); the watermark follows (updateOldest)
	ckpt         checkpoint    // the last checkpoint written to the index
	consumers    map[string]*consumerState
	defaultSt    *consumerState // cache of consumers[defaultConsumerKey]; may be deleted or nil
	damaged      []damagedSlot  // consumer slots that failed their checksum, not yet claimed
	cleanOnDisk  bool           // the index on disk carries the clean mark (see clearCleanMark)
	junkPastTail bool           // a failed append left bytes past the tail it could not clear: Close sets no clean mark, so the next NewQueue zeroes them
	closed       bool
	failed       error // sticky: a failed msync; every later call but Close returns it
	bgErr        error // an error of background housekeeping, returned once by the next Flush
	// openTail is the tail recovery found: the one offset where the
	// sequence number of the next record may differ from that of the
	// record before plus one (see moveConsumer), so dequeueFast leaves a
	// read that ends there to the whole lock.
	openTail     uint64
	flushes      uint64                 // successful flushes since open
	lastFlushErr error                  // the error of the latest failed flush or sync
	lastFlushAt  time.Time              // when the latest successful flush ended
	retention    retentionState         // SetMaxBytes, SetMaxAge (retention.go)
	scratch      [recordHeaderSize]byte // header of the record being read or written

	flushReq     chan struct{} // capacity 1: asks the flusher for a flush
	reclaimReq   chan struct{} // capacity 1: asks the flusher for a reclaim (reclaimFlush)
	quit         chan struct{} // closed by Close: the flusher returns
	flusherDone  chan struct{} // closed by the flusher when it returns
	prefaultDone chan struct{} // closed by the prefaulter when it returns
	closeDone    chan struct{} // closed when the first Close has finished; later ones wait for it

	_         cpu.CacheLinePad
	tail      uint64        // prod: logical end of the last committed record; equals idx.tail()
	tailSeq   uint64        // prod: sequence number the next record gets
	pops      int64         // prod: enqueued messages since the last flush started
	pchanged  bool          // prod: changed, by an enqueue
	dataReady chan struct{} // prod: closed and cleared by the next enqueue; DequeueWait sleeps on it

	// pubTail is tail, published for dequeueFast, which holds only
	// mu.cons: stored after the record below it was written.
	_       cpu.CacheLinePad
	pubTail atomic.Uint64

	_       cpu.CacheLinePad
	head    uint64 // cons: min of the consumer offsets; oldest when there is no consumer. Arenas below it may be reclaimed once a flush or reclaimFlush made the positions durable
	headSeq uint64 // cons: sequence number of the record at head
	ops     int64  // cons: dequeues and other mutations since the last flush started
	changed bool   // cons: the index or an arena changed since the last flush started
	_       cpu.CacheLinePad
}

// consumerState is the in-memory twin of a consumer slot of the index.
// Guarded by Queue.mu.
type consumerState struct {
	name      string
	slot      int    // slot number in the index
	off       uint64 // next record to read; head <= off <= tail; equals the slot's offset
	seq       uint64 // sequence number of the record at off
	deleted   bool   // removed by DeleteConsumer; handles then return ErrNoConsumer
	lost      bool   // made in place of a damaged slot, or data it had not read was lost: the next read reports ErrCorrupt
	lostWhy   string // what was lost, when this process found it; else the report is generic
	lostCount uint64 // the messages lost, when lostWhy says; 0 when unknown

	// peeked is the record at off when peekedValid: what Peek returned,
	// handed out again by the next Peek or Dequeue without a second read.
	peeked      []byte
	peekedValid bool

	// drop is what retention removed unread (retention.go): a pending
	// notice for the next read, and the count for Stats.
	drop dropState
}

// MmapQueue is the name the original bigqueue gave Queue; it lets a user of
// the original switch by changing the import path only.
type MmapQueue = Queue

// NewMmapQueue is NewQueue under the original bigqueue's name.
func NewMmapQueue(dir string, opts ...Option) (*Queue, error) {
	return NewQueue(dir, opts...)
}

// NewQueue opens the queue stored in dir, creating dir and an empty queue
// when there is none. It locks dir: while the Queue is open, another
// NewQueue on dir, from this process or another, fails with ErrLocked.
//
// Opening a queue that was not closed cleanly (crash, power loss) recovers
// it: the records written since the last flush are checked and the log is
// cut back to the last valid one. Opening reads only that unflushed part
// and one record header per consumer, not the whole queue.
//
// Errors: an option's own error (ErrTooSmallArenaSize,
// ErrTooLargeArenaSize, ErrTooFewInMemArenas, bare); ErrInvalidArenaSize
// when SetArenaSize asks for a size other than the stored one (without
// SetArenaSize the stored size is used) and ErrIncompatibleVersion for
// another format version, both bare as in the original; ErrForeignQueue
// for a directory written by github.com/grandecola/bigqueue (import it
// with the migrate package) or holding other files and no queue;
// ErrCorrupt for an index that cannot be read, or arena files without an
// index; ErrLocked; and file system errors, wrapped. A refused directory
// is left untouched.
func NewQueue(dir string, opts ...Option) (*Queue, error) {
	o := defaultOptions()
	for _, opt := range opts {
		if opt == nil {
			continue
		}
		if err := opt(&o); err != nil {
			return nil, err
		}
	}
	if dir == "" {
		return nil, fmt.Errorf("open queue: empty directory path: %w", os.ErrInvalid)
	}
	if err := makeDir(dir); err != nil {
		return nil, fmt.Errorf("open queue %s: %w", dir, err)
	}
	d, err := openQueueDir(dir)
	if err != nil {
		return nil, fmt.Errorf("open queue %s: %w", dir, err)
	}
	if err := d.lock(); err != nil {
		return nil, errors.Join(fmt.Errorf("lock queue %s: %w", dir, err), d.close())
	}
	if err := checkBeforeOpen(d, &o); err != nil {
		if cerr := d.close(); cerr != nil {
			return nil, errors.Join(err, cerr)
		}
		return nil, err // bare where the original returned it bare
	}
	q := &Queue{
		dir:          d,
		opts:         o,
		consumers:    make(map[string]*consumerState),
		flushReq:     make(chan struct{}, 1),
		reclaimReq:   make(chan struct{}, 1),
		quit:         make(chan struct{}),
		flusherDone:  make(chan struct{}),
		prefaultDone: make(chan struct{}),
		closeDone:    make(chan struct{}),
	}
	var openErr error
	if err := q.noFault(func() { openErr = q.open() }); err != nil {
		openErr = err
	}
	d.listed = nil // recovery took it; no later listing may see it
	if err := openErr; err != nil {
		errs := []error{fmt.Errorf("open queue %s: %w", dir, err)}
		if q.am != nil {
			errs = append(errs, q.am.close(false))
		}
		if q.idx != nil {
			errs = append(errs, q.idx.close())
		}
		errs = append(errs, d.close())
		return nil, errors.Join(errs...)
	}
	// The flusher and the prefaulter run until Close closes quit; Close
	// waits for both.
	go q.runFlusher()
	go q.runPrefaulter()
	return q, nil
}

// open maps or creates the index (a new one holds the default consumer)
// and recovers the queue state.
func (q *Queue) open() error {
	_, err := q.dir.stat(indexFileName)
	fresh := errors.Is(err, os.ErrNotExist)
	switch {
	case fresh:
		var id [8]byte
		if _, err := rand.Read(id[:]); err != nil {
			return fmt.Errorf("queue id: %w", err)
		}
		if q.idx, err = createIndex(q.opts.fs, q.dir, q.opts.arenaSize, binary.LittleEndian.Uint64(id[:])); err != nil {
			return err
		}
		if err := syncDir(q.opts.fs, q.dir); err != nil {
			return err
		}
	case err != nil:
		return fmt.Errorf("stat index: %w", err)
	default:
		if q.idx, err = openIndex(q.opts.fs, q.dir); err != nil {
			return err
		}
		stored := q.idx.arenaSize()
		if stored < arenaHeaderSize+recordHeaderSize || stored > 1<<40 {
			return fmt.Errorf("index: arena size %d: %w", stored, ErrCorrupt)
		}
		if q.opts.arenaSizeSet && stored != uint64(q.opts.arenaSize) {
			return fmt.Errorf("stored arena size %d, asked for %d: %w", stored, q.opts.arenaSize, ErrInvalidArenaSize)
		}
		q.opts.arenaSize = int(stored)
	}
	q.am = newArenaManager(q.opts.fs, q.dir, q.opts.arenaSize, q.idx.queueID(), q.opts.maxInMemArenas)
	q.am.readyMin = q.opts.readyMin
	q.am.readBelow = q.reclaimLimit
	q.am.now = q.opts.now
	q.am.noChecksum = q.opts.plant&plantNoChecksum != 0
	q.am.forgetEvicted = q.opts.plant&plantForgetEvicted != 0
	return q.recover()
}

// indexInPlace returns an error wrapping ErrCorrupt when the directory's
// index.bq is no longer the file the queue maps (removed, or replaced by
// a rename): what the queue synced is then in no file a NewQueue would
// read, and a flush or Close must not report it durable. The queue then
// fails closed. Needs no lock.
func (q *Queue) indexInPlace() error {
	st, err := q.dir.stat(indexFileName)
	if err == nil && st.id == q.idx.id {
		return nil
	}
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("check index %s: %w", q.idx.path, err)
	}
	return fmt.Errorf("index %s was removed or replaced while the queue was open: its state is in no file the next NewQueue reads: %w", q.idx.path, ErrCorrupt)
}

// invalid reports whether q is nil or a zero Queue, which no NewQueue
// opened: every method then behaves as on a closed queue (ErrClosed)
// instead of panicking.
func (q *Queue) invalid() bool { return q == nil || q.idx == nil }

// usable returns why the queue cannot be used, or nil. Needs mu.
func (q *Queue) usable() error {
	if q.closed {
		return ErrClosed
	}
	return q.failed
}

// fail makes err sticky: the queue fails closed until it is reopened.
// Needs mu.
func (q *Queue) fail(err error) error {
	if q.failed == nil {
		q.failed = fmt.Errorf("queue failed, reopen it: %w", err)
		q.lastFlushErr = q.failed
		q.wakeWaiters() // so that they return the error
	}
	return q.failed
}

// Enqueue appends msg to the queue. msg may be of any length up to
// MaxMessageSize, 0 included; the queue keeps its own copy. When Enqueue
// returns nil the message survives a crash of the process; it survives a
// power loss once a Flush (explicit or periodic) that started after it
// returned nil. It allocates nothing.
//
// Errors: ErrTooLarge; ErrClosed; ErrExhausted (only after a forged or
// damaged index put the tail at the end of the offset range); the sticky
// error of a failed msync; and file system errors of creating the next
// arena, wrapped: a full disk gives an error wrapping syscall.ENOSPC,
// after which the queue keeps working once space is freed.
func (q *Queue) Enqueue(msg []byte) error {
	if q.invalid() {
		return ErrClosed
	}
	return q.enqueue(msg)
}

// EnqueueString is Enqueue for a string. It neither converts nor allocates.
func (q *Queue) EnqueueString(msg string) error {
	if q.invalid() {
		return ErrClosed
	}
	return q.enqueue(unsafe.Slice(unsafe.StringData(msg), len(msg)))
}

func (q *Queue) enqueue(msg []byte) (err error) {
	if uint64(len(msg)) > MaxMessageSize {
		return fmt.Errorf("enqueue %d bytes: %w", len(msg), ErrTooLarge)
	}
	q.mu.prod.Lock()
	defer q.mu.prod.Unlock()
	if done, err := q.enqueueFast(msg); done {
		return err
	}
	q.mu.cons.Lock()
	defer q.mu.cons.Unlock()
	defer q.endGuard(&err, debug.SetPanicOnFault(true))
	if err := q.usable(); err != nil {
		return err
	}
	arenas := q.am.next
	end, err := q.appendRecord(q.tail, q.tailSeq, msg)
	if err != nil {
		return q.appendFailed(arenas, err)
	}
	q.committed(end, q.tailSeq+1, 1)
	return nil
}

// enqueueFast appends msg when nothing but the copy is needed: the queue
// is usable, the record fits the arena being written (appendSlot) and no
// bound or test hook applies. It holds only mu.prod, so a consumer's
// dequeueFast runs meanwhile; it reports false, having changed nothing,
// when the whole lock is needed. A fault fails the queue.
func (q *Queue) enqueueFast(msg []byte) (done bool, err error) {
	if q.closed || q.failed != nil || q.cleanOnDisk || q.opts.plant != 0 {
		return false, nil
	}
	off, seq := q.tail, q.tailSeq
	end := off + recordHeaderSize + uint64(len(msg))
	if end > maxOffset || seq >= maxOffset {
		return false, nil // appendRecord refuses it
	}
	a, pos, b := q.am.appendSlot(off, int(end-off))
	if b == nil {
		return false, nil
	}
	defer q.endProdGuard(&done, &err, debug.SetPanicOnFault(true))
	encodeRecord(b, seq, msg)
	q.am.appended(a, off, pos, len(b))
	q.committed(end, seq+1, 1)
	return true, nil
}

// committed makes the n records written up to end readers' to read: it
// moves the tail (in the index too, and published for dequeueFast),
// counts them toward the periodic flush and wakes waiters. Needs
// mu.prod.
func (q *Queue) committed(end, seq uint64, n int64) {
	q.tail, q.tailSeq = end, seq
	q.idx.setTail(end)
	q.pubTail.Store(end)
	q.pchanged = true
	if q.opts.flushOps > 0 {
		q.pops += n
		if q.pops >= q.opts.flushOps {
			q.pops = 0
			q.requestFlush()
		}
	}
	q.wakeWaiters()
}

// appendRecord writes the record of msg with sequence number seq at the
// logical offset off, and returns the offset just past it. It does not
// commit it. Needs mu.
func (q *Queue) appendRecord(off, seq uint64, msg []byte) (uint64, error) {
	span := recordSpan{start: off, end: off + recordHeaderSize + uint64(len(msg)), seq: seq}
	if span.end > maxOffset || seq >= maxOffset {
		// Recovery takes a larger offset or sequence number for damage:
		// writing it would lose the message at the next NewQueue.
		return 0, fmt.Errorf("enqueue at offset %d, sequence number %d: %w", off, seq, ErrExhausted)
	}
	if q.cleanOnDisk {
		if err := q.clearCleanMark(); err != nil {
			return 0, err
		}
	}
	if a, pos, b := q.am.appendSlot(off, int(span.end-off)); b != nil {
		// The common case: the record goes into the arena being written,
		// in one piece; it is encoded where it is stored.
		encodeRecord(b, seq, msg)
		q.am.appended(a, off, pos, len(b))
		return span.end, nil
	}
	h := q.scratch[:]
	encodeRecordHeader(h, seq, msg)
	arenas := q.am.next
	if err := q.am.writeAt(off, h, span); err != nil {
		return 0, err
	}
	if err := q.am.writeAt(off+recordHeaderSize, msg, span); err != nil {
		return 0, err
	}
	if q.am.next != arenas && ((q.evictionNear() && q.periodicFlush()) || q.retaining()) {
		// A new arena while others are evicted: have the flusher reclaim
		// what every consumer has read in the background, a batch of
		// arenas at a time (reclaimBatch), so that disk space and spares
		// keep up, and apply retention. A full flush only when many
		// evicted arenas wait for their sync (past maxUnsynced eviction
		// would msync while producers wait), or for retention; the
		// periodic flush syncs the rest.
		switch {
		case q.retaining() || len(q.am.unsynced) >= maxUnsynced/2:
			q.requestFlush()
		case q.reclaimLimit() >= q.am.first+q.am.reclaimBatch():
			q.requestReclaim()
		}
	}
	return span.end, nil
}

// evictionNear reports whether the next arena mapped will unmap one:
// only then is it worth syncing the filled arenas early. Before that,
// a burst of writes into the first few arenas leaves their write-back to
// the periodic flush instead of competing with it (a background msync of
// a whole arena write-protects each page it cleans, interrupting the
// writer). Needs mu.
func (q *Queue) evictionNear() bool {
	return q.am.maxMapped > 0 && len(q.am.mapped) >= q.am.maxMapped
}

// clearCleanMark takes the clean mark off the index, durably, before the
// first write into an arena since the queue was opened: from then on a
// crash may leave records past the tail, which the next NewQueue must
// zero. Opening and closing a queue without enqueuing syncs nothing. A
// failed msync fails the queue. Needs mu.
func (q *Queue) clearCleanMark() error {
	q.idx.setClean(false)
	if err := q.idx.sync(); err != nil {
		return q.fail(err)
	}
	q.cleanOnDisk = false
	return nil
}

// periodicFlush reports whether background flushing is enabled.
func (q *Queue) periodicFlush() bool {
	return q.opts.flushOps > 0 || q.opts.flushDuration > 0
}

// requestFlush asks the flusher for a flush without waiting. Needs mu.
func (q *Queue) requestFlush() {
	select {
	case q.flushReq <- struct{}{}:
	default:
	}
}

// requestReclaim asks the flusher for a reclaimFlush without waiting.
// Needs mu.
func (q *Queue) requestReclaim() {
	select {
	case q.reclaimReq <- struct{}{}:
	default:
	}
}

// appendFailed cleans up after an append that failed: the arenas it
// created from arenas on hold no committed record and go. Needs mu.
//
// The records it wrote into the tail's arena before failing are complete
// and valid, with the sequence numbers the next records get: they are
// zeroed (and msynced), so that neither a power loss that keeps an old
// page nor the clean mark of a later Close lets one pass for a new
// record. A failed msync fails the queue; when the clearing cannot even
// start (the arena cannot be mapped), Close leaves the clean mark off so
// that the next NewQueue clears them.
func (q *Queue) appendFailed(arenas uint64, err error) error {
	err = q.ioFailed(err)
	if rerr := q.am.rollback(arenas); rerr != nil {
		err = errors.Join(err, rerr)
	}
	if zerr := q.am.zeroPast(q.tail); zerr != nil {
		if q.am.syncErr != nil {
			zerr = q.fail(zerr) // the msync failed: data may be lost
		} else {
			q.junkPastTail = true // it could not start: the next open clears them
		}
		err = errors.Join(err, zerr)
	}
	return err
}

// ioFailed turns an error of the arena manager into the caller's error,
// failing the queue when it was a failed msync. Needs mu.
func (q *Queue) ioFailed(err error) error {
	if q.am.syncErr != nil {
		return q.fail(q.am.syncErr)
	}
	return err
}

// mutated counts n mutations toward the periodic flush: dequeues and
// others, not enqueues (committed counts those, in pops). Needs mu.cons.
func (q *Queue) mutated(n int64) {
	if q.opts.flushOps <= 0 {
		return
	}
	q.ops += n
	if q.ops >= q.opts.flushOps {
		q.ops = 0
		q.requestFlush()
	}
}

// Dequeue removes the next message of the default consumer and returns it.
// It allocates only the returned slice. It returns ErrEmptyQueue when there
// is nothing to read, ErrClosed after Close, and an error wrapping
// ErrCorrupt when it skipped damaged data (it says where and how much; the
// next call reads on after the damage).
func (q *Queue) Dequeue() ([]byte, error) {
	if q.invalid() {
		return nil, ErrClosed
	}
	if msg, done, err := q.tryDequeueFast(nil, nil, false); done {
		return msg, err
	}
	q.mu.Lock()
	defer q.mu.Unlock()
	st, err := q.defaultConsumer()
	if err != nil {
		return nil, err
	}
	return q.dequeue(st, nil, false)
}

// DequeueString is Dequeue returning a string.
func (q *Queue) DequeueString() (string, error) {
	if q.invalid() {
		return "", ErrClosed
	}
	q.mu.Lock()
	defer q.mu.Unlock()
	st, err := q.defaultConsumer()
	if err != nil {
		return "", err
	}
	return q.dequeueString(st)
}

// dequeueString is dequeue returning a string. It shares the bytes of a
// message read just for it, and copies one that Peek handed out before.
// Needs mu.
func (q *Queue) dequeueString(st *consumerState) (string, error) {
	shared := st.peekedValid
	b, err := q.dequeue(st, nil, false)
	if shared {
		return string(b), err
	}
	return bytesToString(b), err
}

// IsEmpty reports whether the default consumer has read every message. It
// reports true after Close.
func (q *Queue) IsEmpty() bool {
	if q.invalid() {
		return true
	}
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.closed {
		return true
	}
	if st := q.consumers[defaultConsumerKey]; st != nil {
		return st.off >= q.tail
	}
	return q.oldest >= q.tail
}

// defaultConsumer returns the default consumer, creating it at the oldest
// stored message when it does not exist: on the first queue-level read of
// a new queue, or after DeleteConsumer removed it. Needs mu.
func (q *Queue) defaultConsumer() (*consumerState, error) {
	if err := q.usable(); err != nil {
		return nil, err
	}
	if st := q.defaultSt; st != nil && !st.deleted {
		return st, nil
	}
	st, err := q.consumerLocked(defaultConsumerKey)
	q.defaultSt = st
	return st, err
}

// dequeue reads and consumes the next record of st. Without appendTo the
// message gets a slice of its own (or the one Peek returned); with it, it
// is appended to dst. Needs mu.
func (q *Queue) dequeue(st *consumerState, dst []byte, appendTo bool) (out []byte, err error) {
	defer func() {
		if err != nil && appendTo {
			out = dst // DequeueAppend returns dst unchanged on any error, a fault's too
		}
	}()
	defer q.endGuard(&err, debug.SetPanicOnFault(true))
	if err := q.readable(st); err != nil {
		return dst, err
	}
	var msg []byte
	var next uint64
	if st.peekedValid {
		next = st.off + recordHeaderSize + uint64(len(st.peeked))
		msg = st.peeked
		if appendTo {
			msg = append(dst, msg...)
		}
	} else {
		var err error
		if msg, next, err = q.readRecord(st, dst, !appendTo); err != nil {
			return msg, err
		}
	}
	q.moveConsumer(st, next, st.seq+1)
	q.mutated(1)
	return msg, nil
}

// tryDequeueFast runs dequeueFast holding only mu.cons, for st or, when
// st is nil, the default consumer. When it reports false the caller
// takes the whole lock and calls dequeue.
func (q *Queue) tryDequeueFast(st *consumerState, dst []byte, appendTo bool) ([]byte, bool, error) {
	q.mu.cons.Lock()
	defer q.mu.cons.Unlock()
	if st == nil {
		st = q.defaultSt
	}
	return q.dequeueFast(st, dst, appendTo)
}

// dequeueFast is dequeue for the common case, while an enqueueFast may
// run: an intact record of st below the published tail, lying in an
// arena already mapped, with nothing to report first (no peeked record,
// drop or loss). It reports false, having changed nothing, when any of
// that does not hold: dequeue, under the whole lock, then reads the same
// record, or reports the damage. ErrEmptyQueue is reported here. Needs
// mu.cons.
func (q *Queue) dequeueFast(st *consumerState, dst []byte, appendTo bool) (out []byte, done bool, err error) {
	if st == nil || st.deleted || st.peekedValid || st.drop.pending || st.lost ||
		q.closed || q.failed != nil || q.opts.plant != 0 {
		return dst, false, nil
	}
	tail := q.pubTail.Load()
	if st.off >= tail {
		return dst, true, ErrEmptyQueue
	}
	if tail-st.off < recordHeaderSize {
		return dst, false, nil
	}
	wasHead := st.off == q.head
	defer q.endConsGuard(&done, &err, debug.SetPanicOnFault(true))
	rest := q.am.mappedView(st.off)
	if len(rest) < recordHeaderSize {
		return dst, false, nil
	}
	rh := decodeRecordHeader(rest)
	size := rh.size()
	next := st.off + size
	// A record ending at openTail may be followed by one whose sequence
	// number is not rh.seq+1: moveConsumer, under the whole lock, knows.
	if rh.seq != st.seq || uint64(rh.length) > tail-st.off-recordHeaderSize ||
		uint64(len(rest)) < size || next == q.openTail {
		return dst, false, nil
	}
	// The new head, as moveConsumer and advanceHead compute it: the
	// lowest consumer position. Where it is the tail, their tailSeq is
	// st.seq+1 here: next is not openTail, so the record ending there
	// was written by this process, which numbered the next one after it.
	head, headSeq := next, st.seq+1
	if wasHead && len(q.consumers) > 1 { // one consumer is the head: no need to look
		for _, c := range q.consumers {
			if c != st && c.off < head {
				head, headSeq = c.off, c.seq
			}
		}
	}
	rec := rest[:size]
	if crc32Of(rec[recordLenOff:]) != rh.crc {
		return dst, false, nil
	}
	if appendTo {
		out = append(dst, rec[recordHeaderSize:]...)
	} else {
		out = make([]byte, rh.length)
		copy(out, rec[recordHeaderSize:])
	}
	q.am.readPast(st.off, size)
	// What moveConsumer does for this case.
	st.off, st.seq = next, st.seq+1
	st.peeked = nil
	st.drop.clear()
	q.idx.setConsumerPosition(st.slot, st.off, st.seq)
	if wasHead {
		q.head, q.headSeq = head, headSeq
	}
	q.changed = true
	q.mutated(1)
	return out, true, nil
}

// peek reads the next record of st without consuming it, and keeps it for
// the next peek or dequeue of st. Needs mu.
func (q *Queue) peek(st *consumerState) (_ []byte, err error) {
	defer q.endGuard(&err, debug.SetPanicOnFault(true))
	if err := q.readable(st); err != nil {
		return nil, err
	}
	if st.peekedValid {
		return st.peeked, nil
	}
	msg, _, err := q.readRecord(st, nil, true)
	if err != nil {
		return nil, err
	}
	st.peeked, st.peekedValid = msg, true
	return msg, nil
}

// readable returns why st cannot be read, or nil. Needs mu.
func (q *Queue) readable(st *consumerState) error {
	if err := q.usable(); err != nil {
		return err
	}
	if st.deleted {
		return fmt.Errorf("consumer %q: %w", st.name, ErrNoConsumer)
	}
	return nil
}

// lag returns how many messages st has not read. A position recovery
// could not prove counts as one message until its first read. Needs mu.
func (q *Queue) lag(st *consumerState) int64 {
	switch {
	case st.deleted || st.off >= q.tail:
		return 0
	case st.seq > q.tailSeq:
		return 1
	}
	return int64(q.tailSeq - st.seq)
}

// readRecord appends the payload of the record at st's position to dst
// and returns it with the offset of the following record. It checks the
// record's length against the tail, its sequence number and its checksum;
// on a failed check it moves st past the damage and returns an error
// wrapping ErrCorrupt. dst is reallocated only when its capacity is short;
// with exact, the payload gets a new slice of exactly its length instead.
// Needs mu.
func (q *Queue) readRecord(st *consumerState, dst []byte, exact bool) ([]byte, uint64, error) {
	if st.drop.pending {
		return dst, 0, q.reportDrop(st)
	}
	if st.lost {
		st.lost = false
		q.idx.markReported(st.slot)
		q.changed = true
		why := st.lostWhy
		if why == "" {
			why = "recovery found damage that lost messages it had not read (its slot in the index, or data a flush had made durable)"
		}
		st.lostWhy = ""
		return dst, 0, fmt.Errorf("consumer %q: %s; it reads on at offset %d: %w", st.name, why, st.off, ErrCorrupt)
	}
	if st.off >= q.tail {
		return dst, 0, ErrEmptyQueue
	}
	if q.tail-st.off < recordHeaderSize {
		return dst, 0, q.skipDamage(st, "position is inside the last record")
	}
	rest, err := q.am.readView(st.off)
	if err != nil {
		return dst, 0, q.readFailed(st, err)
	}
	h := rest
	if len(rest) < recordHeaderSize {
		// The header crosses into the next arena.
		h = q.scratch[:]
		if err := q.am.readAt(st.off, h); err != nil {
			return dst, 0, q.readFailed(st, err)
		}
	}
	rh := decodeRecordHeader(h)
	n := uint64(rh.length)
	if rh.seq != st.seq {
		return dst, 0, q.skipDamage(st, fmt.Sprintf("sequence number %d, want %d", rh.seq, st.seq))
	}
	if n > q.tail-st.off-recordHeaderSize {
		return dst, 0, q.skipDamage(st, fmt.Sprintf("length %d runs past the tail", n))
	}
	start := len(dst)
	if exact {
		dst, start = make([]byte, n), 0
	} else {
		dst = slices.Grow(dst, int(n))[:start+int(n)]
	}
	var crc uint32
	if uint64(len(rest)) >= rh.size() {
		// The common case: the record lies in one arena. Under mu
		// nothing writes its bytes, so its checksum is taken in one pass
		// over them where they are stored (the covered header bytes and
		// the payload are contiguous there), then the payload is copied.
		rec := rest[:rh.size()]
		crc = crc32Of(rec[recordLenOff:])
		copy(dst[start:], rec[recordHeaderSize:])
		q.am.readPast(st.off, rh.size())
	} else {
		// Keep the header: reading the payload may map the next arena
		// and unmap the one rest points into.
		h = q.scratch[:copy(q.scratch[:], h)]
		if err := q.am.readAt(st.off+recordHeaderSize, dst[start:]); err != nil {
			return dst[:start], 0, q.readFailed(st, err)
		}
		crc = crc32.Update(recordHeaderSum(h), castagnoli, dst[start:])
	}
	if crc != rh.crc && q.opts.plant&plantNoChecksum == 0 {
		return dst[:start], 0, q.skipDamage(st, fmt.Sprintf("checksum %#x, want %#x", crc, rh.crc))
	}
	return dst, st.off + rh.size(), nil
}

// readFailed handles an error of reading st's record: a missing or
// damaged arena is skipped like a damaged record, anything else (an I/O or
// mapping error) is returned with st left where it was. Needs mu.
func (q *Queue) readFailed(st *consumerState, err error) error {
	if errors.Is(err, ErrCorrupt) {
		return q.skipDamage(st, err.Error())
	}
	return q.ioFailed(fmt.Errorf("consumer %q: read at offset %d: %w", st.name, st.off, err))
}

// skipDamage moves st past a record at st.off that failed a check: to the
// first record of the next arena whose header is intact, or to the tail.
// It returns an error wrapping ErrCorrupt that says where and how far.
// Needs mu.
func (q *Queue) skipDamage(st *consumerState, reason string) error {
	from := st.off
	to, toSeq := q.tail, q.tailSeq
	ds := q.am.dataSize
	for id := q.am.nextPresent(from/ds + 1); id*ds < q.tail && id < q.am.next; id = q.am.nextPresent(id + 1) {
		h, err := q.am.header(id)
		if err == nil && h.first > from && h.first >= id*ds && h.first < q.tail && h.firstSeq < q.tailSeq {
			to, toSeq = h.first, h.firstSeq
			break
		}
	}
	q.moveConsumer(st, to, toSeq)
	return fmt.Errorf("consumer %q: record at offset %d: %s: skipped %d bytes to offset %d: %w",
		st.name, from, reason, to-from, to, ErrCorrupt)
}

// moveConsumer commits st's new position and keeps the head, the lowest
// consumer position, up to date. Arenas the head leaves behind are
// reclaimed by the next flush, once it has made the positions durable,
// not here. Needs mu.
func (q *Queue) moveConsumer(st *consumerState, off, seq uint64) {
	if off == q.tail {
		// The next record written gets the tail's number. Reading a
		// chain of valid records up to the tail can end with another
		// one only when a damaged index held a wrong checkpoint that no
		// proof at open contradicted; the consumer must not then skip
		// every new message as corrupt.
		seq = q.tailSeq
	}
	wasHead := st.off == q.head
	st.off, st.seq = off, seq
	st.peeked, st.peekedValid = nil, false
	st.drop.clear() // moved on purpose, or past what was reported
	q.changed = true
	q.idx.setConsumerPosition(st.slot, off, seq)
	switch {
	case off < q.head:
		q.head, q.headSeq = off, seq // moved back by FromConsumer
	case !wasHead:
	case len(q.consumers) == 1 && !st.deleted:
		q.head, q.headSeq = off, seq // the only consumer is the head: no need to look
	default:
		q.advanceHead()
	}
	if q.opts.plant&plantEarlyReclaim != 0 {
		// Deliberately wrong: the read reclaims before any flush made
		// the positions durable; see plant in options.go.
		q.reclaimTo(q.reclaimLimit(), false, false)
	}
}

// advanceHead sets head to the lowest consumer position, or to oldest
// when there is no consumer. Needs mu.
func (q *Queue) advanceHead() {
	head, seq := q.oldest, q.oldestSeq
	if len(q.consumers) > 0 {
		head, seq = q.tail, q.tailSeq
		for _, c := range q.consumers {
			if c.off < head {
				head, seq = c.off, c.seq
			}
		}
	}
	q.head, q.headSeq = head, seq
}

// reclaimLimit returns the arena number below which every arena may be
// reclaimed once the consumer positions of this moment are durable: the
// head's arena, but never the arena holding the last byte written, so
// that recovery always finds an arena header naming a record boundary.
// With no consumer nothing may go: the data waits for the next consumer.
// Needs mu.
func (q *Queue) reclaimLimit() uint64 {
	m := q.am
	if len(q.consumers) == 0 {
		return m.first
	}
	keep := q.head / m.dataSize
	if q.tail > 0 {
		keep = min(keep, (q.tail-1)/m.dataSize)
	}
	return keep
}

// reclaimTo removes, or keeps as spares, the arenas below limit, which
// the caller has checked against durable consumer positions. It first
// stores the new oldest record in the index and, with syncIndex, msyncs
// it: that watermark is durable before any file goes, so that after a
// power loss, whatever combination of the removals survived, an arena
// missing below it was reclaimed and one missing above it is damage. With
// unlock it releases mu while it syncs and the files are renamed and
// removed; the caller holds flushMu. A failed msync fails the queue and
// removes nothing; other errors are kept for the next Flush. Needs mu.
func (q *Queue) reclaimTo(limit uint64, unlock, syncIndex bool) {
	if limit <= q.am.first {
		return
	}
	jobs, err := q.am.detachBelow(limit)
	q.noteChoreErr(err)
	if q.noFault(q.updateOldest) != nil {
		// Failed closed: the files stay, the kept mappings go.
		q.noteChoreErr(releaseJobs(jobs))
		return
	}
	if len(jobs) == 0 {
		return
	}
	// The jobs' kept mappings count against the bound while mu is
	// released (keptMappings), so that park does not pass it meanwhile.
	inFlight := mappedJobs(jobs)
	q.am.inFlight += inFlight
	defer func() { q.am.inFlight -= inFlight }()
	idxData := q.idx.data // grow may replace the field once mu is released
	if unlock {
		q.mu.Unlock()
	}
	if syncIndex {
		err = q.idx.syncData(idxData)
	}
	var done []reclaimJob
	var rerr error
	if err == nil {
		done, rerr = q.am.runReclaim(jobs)
	}
	if unlock {
		q.mu.Lock()
	}
	if err != nil {
		// The files stay where they are; only the kept mappings go.
		q.noteChoreErr(releaseJobs(jobs))
		q.fail(err)
		return
	}
	q.am.adoptReclaim(done)
	q.noteChoreErr(rerr)
}

// updateOldest moves oldest up to the first record of the oldest arena
// left after reclaiming, and stores it in the index. Needs mu.
func (q *Queue) updateOldest() {
	m := q.am
	if q.oldest < m.first*m.dataSize {
		off, seq := q.head, q.headSeq
		b, ok, err := m.oldestBoundary(m.first, q.tail)
		q.noteChoreErr(err)
		if ok && b.first <= q.head && b.firstSeq <= q.headSeq {
			off, seq = b.first, b.firstSeq
		}
		q.oldest, q.oldestSeq = off, seq
	}
	// A flush moved oldest ahead (passOldest): the watermark follows.
	q.storeWatermark()
}

// noteChoreErr keeps err, an error of housekeeping no caller has seen,
// for the next Flush or Close, and for Stats.LastFlushError. Needs mu.
func (q *Queue) noteChoreErr(err error) {
	if err == nil {
		return
	}
	q.bgErr = errors.Join(q.bgErr, err)
	q.lastFlushErr = err
}

// Flush makes every message enqueued and every consumer position committed
// before it durable: it msyncs the arenas (fsyncs the files of those
// evicted from memory), but not those every consumer has read, which it
// reclaims; then fsyncs the directory when files changed, then records a
// checkpoint in the index and msyncs it. A power loss after Flush
// returned nil loses none of that. It holds the
// queue's lock only to collect what to sync, so producers and consumers go
// on while it waits for the disk.
//
// Once the checkpoint is durable, Flush reclaims the arenas wholly below
// the consumer positions it made durable (see the package doc, Disk
// space). A Flush that finds nothing to write removes the spare arenas.
//
// Errors: ErrClosed; the error of a failed msync or fsync, after which the
// queue has failed closed and every later call but Close returns it; the
// error of opening an evicted arena's file to sync it, after which the
// next Flush tries again; and an error of housekeeping (reclaiming
// arenas, removing spares, an evicted arena's file gone before it could
// be synced: ErrCorrupt), the background flusher's included, since the
// last Flush, returned once.
func (q *Queue) Flush() error {
	if q.invalid() {
		return ErrClosed
	}
	return q.flush(true)
}

// flush is Flush; the background flusher calls it without explicit, which
// leaves housekeeping errors for the next explicit Flush or Close to
// return.
//
// After the checkpoint is durable it reclaims the arenas below the head
// as it was when the flush started: the consumer positions of that moment
// are durable now, so after a power loss every message they had not
// passed is still there. Reads never reclaim.
func (q *Queue) flush(explicit bool) error {
	q.flushMu.Lock()
	defer q.flushMu.Unlock()

	q.mu.Lock()
	if err := q.usable(); err != nil {
		q.mu.Unlock()
		return err
	}
	q.ops, q.pops = 0, 0
	if !q.changed && !q.pchanged && !q.am.dirDirty && len(q.am.unsynced) == 0 {
		// Nothing to make durable: an idle queue costs no disk writes,
		// and its spare arenas give their disk space back. It still must
		// not report success for an index that is gone.
		if err := q.indexInPlace(); err != nil {
			err = q.fail(err)
			q.mu.Unlock()
			return err
		}
		// Retention still applies: arenas age without any change.
		q.reclaimTo(q.applyRetention(q.ckpt.offset), true, true)
		if q.failed != nil {
			err := q.failed // the watermark's msync failed
			q.mu.Unlock()
			return err
		}
		q.noteChoreErr(q.am.dropSpares(true))
		err := q.choreErrFor(explicit)
		q.mu.Unlock()
		return err
	}
	q.changed, q.pchanged = false, false
	limit := q.reclaimLimit()
	oldest, oldestSeq, passed := q.oldest, q.oldestSeq, q.passed
	below := q.passOldest(limit)
	// Skipping the arenas below below is sound only once the consumer
	// positions past them are durable, before the checkpoint covering
	// them is: the index is msynced first for them (posData), and the
	// watermark past them is stored before the checkpoint, so that no
	// durable state names their unsynced pages (see passOldest).
	skipping := below > q.am.first
	posData := q.idx.data
	target := checkpoint{offset: q.tail, seq: q.tailSeq, gen: q.ckpt.gen + 1}
	skip := below
	if q.opts.plant&plantSkipUnread != 0 && skip > q.am.first {
		skip = max(skip+1, q.tail/q.am.dataSize) // deliberately wrong: see plant in options.go
	}
	evicted := q.am.takeUnsynced(skip)
	pins := q.am.pinDirty(target.offset, skip)
	dirDirty, dirSeq := q.am.dirDirty, q.am.dirSeq
	q.am.dirDirty = false
	q.mu.Unlock()

	var err error
	if q.opts.plant&plantIndexBeforeData != 0 {
		// Deliberately wrong: the checkpoint is made durable before the
		// data it covers; see plant in options.go.
		q.mu.Lock()
		q.idx.setCheckpoint(target)
		idxData := q.idx.data
		q.mu.Unlock()
		err = q.idx.syncData(idxData)
	}
	for _, p := range pins {
		if e := q.opts.fs.syncMapping(q.am.dir, p.name, p.data); e != nil && err == nil {
			err = fmt.Errorf("msync arena %d: %w", p.a.id, e)
		}
	}
	q.am.unpin(pins)
	var ur unsyncedResult
	if err == nil {
		ur = q.am.syncUnsynced(evicted)
		err = ur.syncErr
	}
	if err == nil && ur.openErr != nil {
		// Nothing failed that a retry could hide: the next flush tries
		// again. Nothing is reclaimed, so what passOldest moved past is
		// within reach again.
		q.mu.Lock()
		defer q.mu.Unlock()
		for _, id := range ur.left {
			if q.am.present[id] {
				q.am.unsynced[id] = true
			}
		}
		q.oldest, q.oldestSeq, q.passed = oldest, oldestSeq, passed
		q.changed = true
		q.am.dirDirty = q.am.dirDirty || dirDirty
		q.am.choreErr = errors.Join(q.am.choreErr, ur.lost)
		q.noteChoreErr(ur.openErr)
		return q.choreErrFor(explicit)
	}
	if err == nil && dirDirty {
		err = q.am.syncDir()
	}
	if err == nil && skipping {
		err = q.idx.syncData(posData)
	}

	q.mu.Lock()
	if err != nil {
		err = q.fail(err)
		q.mu.Unlock()
		return err
	}
	if dirDirty {
		q.am.dirSynced(dirSeq)
	}
	q.am.choreErr = errors.Join(q.am.choreErr, ur.lost)
	if err := q.noFault(func() {
		// The watermark first: the kernel may write the index back
		// between the two stores, and a new watermark with the old
		// checkpoint is a state recovery keeps a prefix from (it
		// verifies from the consumer positions past the watermark),
		// where the new checkpoint with the old watermark would name
		// the skipped arenas' unsynced records as durable.
		if skipping {
			q.storeWatermark()
		}
		q.idx.setCheckpoint(target)
	}); err != nil {
		q.mu.Unlock()
		return err
	}
	q.ckpt = target
	idxData := q.idx.data
	q.mu.Unlock()

	if e := q.idx.syncData(idxData); e != nil {
		err = e
	}
	if err == nil {
		err = q.indexInPlace()
	}

	q.mu.Lock()
	defer q.mu.Unlock()
	if err != nil {
		return q.fail(err)
	}
	q.flushes++
	q.lastFlushErr = nil
	q.lastFlushAt = q.opts.now()
	q.reclaimTo(max(min(limit, q.reclaimLimit()), below, q.applyRetention(target.offset)), true, true)
	if q.failed != nil {
		return q.failed // the watermark's msync failed
	}
	return q.choreErrFor(explicit)
}

// passOldest moves oldest past the arenas below limit, which the flush
// starting now reclaims once it has made the consumer positions of this
// moment durable, and returns limit; or returns the first arena when
// there is nothing to reclaim or no boundary to move to. Needs mu.
//
// From then on no Seek and no new consumer goes back into those arenas,
// and every consumer is past them, so the flush does not sync them: it
// msyncs the index for the consumer positions first, then stores the
// watermark past them (storeWatermark) and only then the checkpoint, and
// msyncs the index again. After a power loss, whatever of the index's
// pages and sectors the msyncs or the kernel's own write-back left, the
// durable consumer positions are past them, and either the watermark is
// past them too, and recovery deletes them as reclaimed
// (arenaManager.inventory), or the old checkpoint stands, which never
// covered their unsynced records. In a steady state of small arenas
// read soon after they were written, most arena pages then never reach
// the disk.
func (q *Queue) passOldest(limit uint64) uint64 {
	m := q.am
	if limit <= m.first {
		return m.first
	}
	if q.oldest >= limit*m.dataSize {
		return limit
	}
	off, seq := q.head, q.headSeq
	b, ok, err := m.oldestBoundary(limit, q.tail)
	if err != nil {
		q.noteChoreErr(err)
		return m.first
	}
	if ok && b.first <= q.head && b.firstSeq <= q.headSeq {
		off, seq = b.first, b.firstSeq
	}
	if off < limit*m.dataSize {
		return m.first
	}
	q.oldest, q.oldestSeq, q.passed = off, seq, true
	return limit
}

// reclaimFlush reclaims the arenas wholly below every consumer's
// position without making any record durable: it is the first half of a
// flush that skips what it reclaims (see flush and passOldest), without
// syncing the arenas it keeps or moving the checkpoint. It fsyncs the
// directory, msyncs the index for the consumer positions of this moment,
// then stores the watermark past the arenas below them and msyncs the
// index again (reclaimTo), renames or removes their files and fsyncs the
// directory again, so that the spares it made can be reused at once. The background
// flusher runs it when an arena fills while others are evicted, in
// place of a full flush, which syncs the arenas consumers have not read
// yet: in a steady state read soon after it is written, most arena pages
// then never reach the disk, between periodic flushes too.
//
// The durable state it leaves is one a full flush passes through: a
// watermark past the checkpoint, with the consumer positions past the
// watermark durable (see flush); the checkpoint's promise is unchanged,
// since the arenas it removes hold only records every consumer had read.
// A failed msync or fsync fails the queue, as a flush's does; housekeeping
// errors are kept for the next Flush. It returns nil, or ErrClosed or the
// queue's sticky error.
func (q *Queue) reclaimFlush() error {
	q.flushMu.Lock()
	defer q.flushMu.Unlock()
	q.mu.Lock()
	defer q.mu.Unlock()
	if err := q.usable(); err != nil {
		return err
	}
	below := q.passOldest(q.reclaimLimit())
	if below <= q.am.first {
		return nil
	}
	if q.opts.plant&plantReclaimEarly != 0 {
		q.reclaimTo(below, true, false) // deliberately wrong: see plant in options.go
		return q.failed
	}
	// Every arena created so far, those holding the consumer positions
	// and the tail included, is in the directory durably before any
	// position or the watermark is: after a power loss an arena missing
	// between the watermark and the tail would be a hole in what
	// recovery keeps, not the end of it.
	if err := q.syncDirUnlocked(); err != nil {
		return err
	}
	posData := q.idx.data
	q.mu.Unlock()
	err := q.idx.syncData(posData)
	q.mu.Lock()
	if err != nil {
		return q.fail(err)
	}
	q.reclaimTo(below, true, true) // stores the watermark first
	if q.failed != nil {
		return q.failed // the watermark's msync failed
	}
	// The spares' renames, so that the writer can reuse them at once.
	return q.syncDirUnlocked()
}

// syncDirUnlocked fsyncs the directory when files changed since the last
// directory fsync, releasing mu meanwhile; the caller holds flushMu. A
// failed fsync fails the queue. Needs mu.
func (q *Queue) syncDirUnlocked() error {
	if !q.am.dirDirty {
		return nil
	}
	seq := q.am.dirSeq
	q.am.dirDirty = false
	q.mu.Unlock()
	err := q.am.syncDir()
	q.mu.Lock()
	if err != nil {
		return q.fail(err)
	}
	q.am.dirSynced(seq)
	return nil
}

// storeWatermark stores oldest as the reclaim watermark, when it is past
// it: the consumer positions past the arenas below oldest's must be
// durable already. Needs mu.
func (q *Queue) storeWatermark() {
	if q.idx.head() < q.oldest {
		q.idx.setHead(q.oldest)
	}
	q.passed = false
}

// choreErrFor returns, once, the errors of housekeeping that no caller has
// seen yet, to an explicit flush; the background flusher leaves them for
// the next one. Needs mu.
func (q *Queue) choreErrFor(explicit bool) error {
	if !explicit {
		return nil
	}
	return q.takeChoreErr()
}

// takeChoreErr returns, once, the errors of housekeeping that no caller
// has seen yet. Needs mu.
func (q *Queue) takeChoreErr() error {
	err := errors.Join(q.bgErr, q.am.choreErr)
	q.bgErr, q.am.choreErr = nil, nil
	return err
}

// runFlusher is the background flusher: it flushes every
// SetPeriodicFlushDuration and whenever mutated asks, until Close. Its
// errors are kept by flush (sticky, or in bgErr) for the next call.
func (q *Queue) runFlusher() {
	defer close(q.flusherDone)
	var tick <-chan time.Time
	if q.opts.flushDuration > 0 {
		t := time.NewTicker(q.opts.flushDuration)
		defer t.Stop()
		tick = t.C
	}
	for {
		select {
		case <-q.quit:
			return
		case <-tick:
		case <-q.flushReq:
		case <-q.reclaimReq:
			if err := q.reclaimFlush(); errors.Is(err, ErrClosed) {
				return
			}
			continue
		}
		if err := q.flush(false); errors.Is(err, ErrClosed) {
			return
		}
	}
}

// Close flushes the queue, reclaims the arenas every consumer has read
// past, removes the spare arenas, unmaps its files and releases the
// directory lock. It is idempotent: later calls return nil. Every other
// method then returns ErrClosed. It returns the errors of the final flush
// and of housekeeping no Flush returned yet, or the sticky error of an
// earlier failed flush.
func (q *Queue) Close() error {
	if q.invalid() {
		return ErrClosed
	}
	q.mu.Lock()
	if q.closed {
		q.mu.Unlock()
		// A concurrent Close returns once the first one is done, so that
		// the directory is unlocked when either returns.
		<-q.closeDone
		return nil
	}
	q.closed = true
	close(q.quit)
	q.mu.Unlock()
	defer close(q.closeDone)
	<-q.flusherDone
	<-q.prefaultDone

	q.flushMu.Lock()
	defer q.flushMu.Unlock()
	q.mu.Lock()
	defer q.mu.Unlock()

	var errs []error
	if err := q.noFault(func() { errs = q.closeFiles() }); err != nil {
		errs = append(errs, err, q.am.close(false))
	}
	errs = append(errs, q.takeChoreErr())
	errs = append(errs, q.idx.close(), q.dir.close())
	q.consumers = nil
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("close queue %s: %w", q.dir.path, err)
	}
	return nil
}

// closeFiles is the part of Close that syncs and unmaps the files and
// writes the clean mark. Needs mu and flushMu.
func (q *Queue) closeFiles() []error {
	var errs []error
	if q.failed != nil {
		errs = append(errs, q.failed, q.am.close(false))
	} else {
		changed := q.changed || q.pchanged || q.am.dirDirty || q.am.anyDirty()
		err := q.am.close(true)
		if err == nil && q.am.dirDirty {
			err = q.am.syncDir()
		}
		if err == nil && (changed || !q.cleanOnDisk) {
			if changed {
				q.ckpt = checkpoint{offset: q.tail, seq: q.tailSeq, gen: q.ckpt.gen + 1}
				q.idx.setCheckpoint(q.ckpt)
			}
			q.idx.setClean(!q.junkPastTail)
			err = q.idx.sync()
		}
		if err == nil {
			err = q.indexInPlace()
		}
		errs = append(errs, err)
		if err == nil {
			// Every position is durable: what they passed can go, and
			// the spares give their disk space back.
			if jobs, err := q.am.detachBelow(max(q.reclaimLimit(), q.applyRetention(q.ckpt.offset))); err != nil {
				errs = append(errs, err, releaseJobs(jobs))
			} else if len(jobs) > 0 {
				// Not below the retention mark, which lies past the
				// detached arenas when one message spans them.
				q.idx.setHead(max(q.am.first*q.am.dataSize, q.oldest))
				if err := q.idx.sync(); err != nil {
					errs = append(errs, err, releaseJobs(jobs))
				} else {
					done, err := q.am.runReclaim(jobs)
					q.am.adoptReclaim(done)
					errs = append(errs, err)
				}
			}
			errs = append(errs, q.am.dropSpares(false))
			// Retention read arena headers: unmap them again (clean).
			errs = append(errs, q.am.close(false))
		}
	}
	return errs
}

// EnqueueBatch appends msgs in order as one atomic step: readers see all
// of them or none, and a process crash keeps all or none (they share one
// commit of the tail). An empty batch does nothing. It allocates nothing.
// Errors are those of Enqueue; ErrTooLarge names the first oversized
// message, and on any error no message of the batch is stored.
func (q *Queue) EnqueueBatch(msgs [][]byte) (err error) {
	if q.invalid() {
		return ErrClosed
	}
	size := uint64(0) // bounded by memory: no overflow
	for i, m := range msgs {
		if uint64(len(m)) > MaxMessageSize {
			return fmt.Errorf("enqueue batch: message %d of %d bytes: %w", i, len(m), ErrTooLarge)
		}
		size += recordHeaderSize + uint64(len(m))
	}
	q.mu.Lock()
	defer q.mu.Unlock()
	defer q.endGuard(&err, debug.SetPanicOnFault(true))
	if err := q.usable(); err != nil {
		return err
	}
	if len(msgs) == 0 {
		return nil
	}
	if q.tail+size > maxOffset || q.tailSeq+uint64(len(msgs)) > maxOffset {
		// appendRecord would refuse one of them; refuse the batch before
		// anything is written.
		return fmt.Errorf("enqueue batch of %d messages at offset %d, sequence number %d: %w", len(msgs), q.tail, q.tailSeq, ErrExhausted)
	}
	off, seq, arenas := q.tail, q.tailSeq, q.am.next
	for _, m := range msgs {
		end, err := q.appendRecord(off, seq, m)
		if err != nil {
			return q.appendFailed(arenas, err)
		}
		off, seq = end, seq+1
	}
	q.committed(off, seq, int64(len(msgs)))
	return nil
}

// wakeWaiters wakes every goroutine blocked in DequeueWait, PeekWait or
// All. Needs mu.
func (q *Queue) wakeWaiters() {
	if q.dataReady != nil {
		close(q.dataReady)
		q.dataReady = nil
	}
}

// Len returns how many messages the default consumer has not read, in
// O(1). It returns 0 after Close. After DeleteConsumer removed the default
// consumer it counts from the oldest stored message, where the next
// queue-level read starts.
func (q *Queue) Len() int64 {
	if q.invalid() {
		return 0
	}
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.closed {
		return 0
	}
	if st := q.consumers[defaultConsumerKey]; st != nil {
		return q.lag(st)
	}
	return q.lag(&consumerState{off: q.oldest, seq: q.oldestSeq})
}

// Peek returns the default consumer's next message without consuming it:
// process it, then Dequeue to commit, and a crash in between delivers it
// again (at-least-once). Repeated Peeks of one message, and the Dequeue
// that consumes it, return the same slice, read and allocated once; do not
// modify it in between. Goroutines sharing a consumer may Peek the same
// message, and then one's Dequeue consumes what the other peeked: give
// each goroutine that needs Peek-then-Dequeue its own consumer, or
// serialize them. Errors are those of Dequeue.
func (q *Queue) Peek() ([]byte, error) {
	if q.invalid() {
		return nil, ErrClosed
	}
	q.mu.Lock()
	defer q.mu.Unlock()
	st, err := q.defaultConsumer()
	if err != nil {
		return nil, err
	}
	return q.peek(st)
}

// PeekString is Peek returning a string. The string is a copy.
func (q *Queue) PeekString() (string, error) {
	b, err := q.Peek()
	return string(b), err
}

// DequeueAppend consumes the default consumer's next message and appends
// it to dst, returning the extended slice. It allocates nothing when
// cap(dst)-len(dst) is enough. On error it returns dst unchanged. Errors
// are those of Dequeue.
func (q *Queue) DequeueAppend(dst []byte) ([]byte, error) {
	if q.invalid() {
		return dst, ErrClosed
	}
	if out, done, err := q.tryDequeueFast(nil, dst, true); done {
		if err != nil {
			return dst, err
		}
		return out, nil
	}
	q.mu.Lock()
	defer q.mu.Unlock()
	st, err := q.defaultConsumer()
	if err != nil {
		return dst, err
	}
	return q.dequeue(st, dst, true)
}

// DequeueWait is Dequeue that blocks while the queue is empty, until an
// enqueue makes a message available, ctx is done (it returns ctx.Err()) or
// the queue is closed (ErrClosed). It does not poll: it sleeps until an
// enqueue wakes it. Many goroutines may wait at once; each message goes to
// one of them. A waiter whose ctx is done returns at once and consumes
// nothing. DeleteConsumer and FromConsumer wake waiters too: a waiter on
// a deleted consumer returns ErrNoConsumer. A nil ctx returns
// ErrNilContext.
func (q *Queue) DequeueWait(ctx context.Context) ([]byte, error) {
	if q.invalid() {
		return nil, ErrClosed
	}
	return q.dequeueWait(ctx, nil)
}

// dequeueWait implements DequeueWait for c, or for the default consumer
// when c is nil.
func (q *Queue) dequeueWait(ctx context.Context, c *consumerState) ([]byte, error) {
	if ctx != nil && ctx.Err() == nil {
		// A message there already is read without the whole lock; an
		// empty queue, or anything dequeueFast leaves alone, goes on
		// to waitRead, which looks again under the whole lock before it
		// sleeps.
		if msg, done, err := q.tryDequeueFast(c, nil, false); done && err == nil {
			return msg, nil
		}
	}
	return q.waitRead(ctx, c, func(st *consumerState) ([]byte, error) { return q.dequeue(st, nil, false) })
}

// bytesToString returns b as a string without copying; b must not change
// afterwards, which holds for the slices Dequeue and Peek return.
func bytesToString(b []byte) string {
	return unsafe.String(unsafe.SliceData(b), len(b))
}

package bigqueue

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"slices"
	"sync"
	"syscall"
	"testing"

	"github.com/stretchr/testify/require"
)

// I/O error tests: a fixed workload runs once to count
// the file system calls of each kind; then, for every kind and every n up
// to that count, it runs again on a fresh directory with the n-th call of
// that kind failing, once and from then on. Every failure must reach the
// caller, a failed sync must fail the queue closed, any other failure
// must leave a queue that works once the file system heals, and a reopen
// with the real file system must find every acknowledged message, in
// order, for every consumer from its acknowledged position.

// ioErrKinds are the kinds of calls faultFS counts, in the order tested.
var ioErrKinds = []fsCall{callCreate, callOpen, callAllocate, callMmap, callSyncFile, callMsync, callSyncDir, callRename, callRemove}

// ioErrSticky reports whether a failure of kind (a sync) fails the queue
// closed until it is reopened.
func ioErrSticky(kind fsCall) bool {
	return kind == callMsync || kind == callSyncFile || kind == callSyncDir
}

// ioErrInjected returns the error a failure of kind carries: a full disk
// for allocate, an I/O error for the others.
func ioErrInjected(kind fsCall) error {
	if kind == callAllocate {
		return syscall.ENOSPC
	}
	return syscall.EIO
}

// ioErrHealAfter is how many workload steps a persistent failure lasts
// after its first injection before the file system heals.
const ioErrHealAfter = 6

// ioErrOpKind is a step of the workload; each is one API call.
type ioErrOpKind int

const (
	ioOpEnqueue ioErrOpKind = iota
	ioOpBatch
	ioOpDequeue
	ioOpFlush
	ioOpNewConsumer
	ioOpDeleteConsumer
	ioOpReopen
	ioOpDrain // dequeue every consumer until it is empty
)

type ioErrOp struct {
	kind ioErrOpKind
	msgs [][]byte // enqueue, batch
	name string   // dequeue, consumers
}

const ioErrC2, ioErrGrown = "c2", "g13"

// ioErrWorkload returns the steps of the workload for seed, a few hundred
// API calls. With arenas of one page, messages of up to 2.5 arenas and at
// most three arenas mapped, it enqueues (creating arenas, some messages and
// batches spanning several) with two consumers reading behind, grows the
// index past its first page with a 15th consumer, g13 (g01 to g12 fill the
// page and are deleted again), enqueues and reads with three consumers
// (reclaiming arenas, reusing spares, remapping evicted arenas), reopens,
// goes on, and drains every consumer; explicit Flushes come now and then.
// The caller closes the queue.
func ioErrWorkload(seed int64, arenaSize int) []ioErrOp {
	rng := rand.New(rand.NewPCG(uint64(seed), 6))
	var id uint64
	message := func() []byte {
		var n int
		switch r := rng.IntN(10); {
		case r < 7:
			n = 10 + rng.IntN(600)
		case r < 9:
			n = 600 + rng.IntN(2400)
		default:
			n = arenaSize + rng.IntN(3*arenaSize/2)
		}
		b := make([]byte, n)
		for i := range b {
			b[i] = byte(rng.Uint32())
		}
		binary.LittleEndian.PutUint64(b, id)
		id++
		return b
	}
	var ops []ioErrOp
	// phase appends n random steps; weights are of enqueue, batch, the
	// three readers and flush.
	phase := func(n int, w [6]int) {
		total := 0
		for _, x := range w {
			total += x
		}
		for range n {
			r := rng.IntN(total)
			switch {
			case r < w[0]:
				ops = append(ops, ioErrOp{kind: ioOpEnqueue, msgs: [][]byte{message()}})
			case r < w[0]+w[1]:
				batch := make([][]byte, 2+rng.IntN(4))
				for i := range batch {
					batch[i] = message()
				}
				ops = append(ops, ioErrOp{kind: ioOpBatch, msgs: batch})
			case r < w[0]+w[1]+w[2]:
				ops = append(ops, ioErrOp{kind: ioOpDequeue, name: defaultConsumerKey})
			case r < w[0]+w[1]+w[2]+w[3]:
				ops = append(ops, ioErrOp{kind: ioOpDequeue, name: ioErrC2})
			case r < w[0]+w[1]+w[2]+w[3]+w[4]:
				ops = append(ops, ioErrOp{kind: ioOpDequeue, name: ioErrGrown})
			default:
				ops = append(ops, ioErrOp{kind: ioOpFlush})
			}
		}
	}
	ops = append(ops, ioErrOp{kind: ioOpNewConsumer, name: ioErrC2})
	phase(60, [6]int{55, 15, 15, 10, 0, 5})
	// The index has room for 14 consumers in its first page; the 15th
	// (g13) grows it. The others are deleted so that they pin nothing.
	for i := 1; i <= 13; i++ {
		ops = append(ops, ioErrOp{kind: ioOpNewConsumer, name: fmt.Sprintf("g%02d", i)})
	}
	for i := 1; i <= 12; i++ {
		ops = append(ops, ioErrOp{kind: ioOpDeleteConsumer, name: fmt.Sprintf("g%02d", i)})
	}
	phase(80, [6]int{35, 10, 20, 20, 20, 5})
	phase(8, [6]int{0, 0, 1, 1, 1, 0}) // reads and no flush before Close
	ops = append(ops, ioErrOp{kind: ioOpReopen})
	phase(80, [6]int{20, 5, 30, 30, 10, 5})
	// Drained, a flush reclaims what the drain passed (spares, and
	// removes past two), the next syncs the directory that changed, and
	// the third, with nothing to write, gives the spares back: removes,
	// whatever the seed.
	return append(ops, ioErrOp{kind: ioOpDrain}, ioErrOp{kind: ioOpFlush}, ioErrOp{kind: ioOpFlush}, ioErrOp{kind: ioOpFlush})
}

// ioErrCase is one run of the workload: the n-th call of kind fails,
// once or from then on. The zero case injects nothing and counts.
type ioErrCase struct {
	kind       fsCall
	n          int
	persistent bool
}

func (c ioErrCase) String() string {
	mode := "once"
	if c.persistent {
		mode = "persistent"
	}
	return fmt.Sprintf("%s/%s/n=%d", c.kind, mode, c.n)
}

// ioErrStats sums up the cases, for the summary line.
type ioErrStats struct {
	mu                                                   sync.Mutex
	cases, injected, calls, surfaced, stickyOK, reopenOK int
	stickyKind, openFailures                             int
}

// ioErrRun drives the workload against a queue on a faultFS, keeping a
// model of what the queue must hold and checking every call's outcome.
type ioErrRun struct {
	t    *testing.T
	c    ioErrCase
	want error // the injected error
	fs   *faultFS
	dir  string
	opts []Option

	q       *Queue
	handles map[string]*Consumer
	msgs    [][]byte       // every acknowledged message, in order
	pos     map[string]int // live consumer -> index of its next message in msgs

	step    int    // steps run
	healed  bool   // no more failures will be injected
	healAt  int    // step at which a persistent failure heals; 0 = not yet known
	sticky  error  // the queue failed closed: every call but Close must fail
	pending string // the call that absorbed a failure the next Flush or Close must report
	// alsoNoted is a call that failed with an injected failure and may
	// have noted housekeeping failures of its own besides (a spare it
	// could not reuse, given up before the fresh file failed too): the
	// next Flush or Close may report them, and need not.
	alsoNoted  string
	firstInj   string // the call that met the first injected failure
	surfaced   bool   // the first injected failure reached a caller
	stickyOK   bool   // a Flush failed after the file system healed, as it must
	openFailed bool   // a NewQueue failed
}

// failedCalls returns how many calls faultFS has failed so far.
func (r *ioErrRun) failedCalls() int {
	r.fs.mu.Lock()
	defer r.fs.mu.Unlock()
	return r.fs.failed
}

// spares returns how many spare arenas the open queue holds.
func (r *ioErrRun) spares() int {
	if r.q == nil {
		return 0
	}
	return r.q.Stats().SpareArenas
}

// callsOf returns the counts of every kind of call so far.
func (r *ioErrRun) callsOf() map[fsCall]int {
	r.fs.mu.Lock()
	defer r.fs.mu.Unlock()
	m := make(map[fsCall]int, len(r.fs.calls))
	for k, v := range r.fs.calls {
		m[k] = v
	}
	return m
}

// heal stops injecting and checks that a queue that failed closed stays
// failed: its Flush still fails.
func (r *ioErrRun) heal() {
	r.t.Helper()
	if r.healed {
		return
	}
	r.fs.heal()
	r.healed = true
	r.checkSticky()
}

// checkSticky checks, once the file system has healed, that a queue that
// failed closed stays failed: its Flush still fails.
func (r *ioErrRun) checkSticky() {
	r.t.Helper()
	if r.q != nil && r.sticky != nil && r.healed {
		err := r.q.Flush()
		require.ErrorIs(r.t, err, r.want, "%s: Flush after healing a failed sync (%s)", r.c, r.firstInj)
		r.stickyOK = true
	}
}

// outcome checks the result of one API call, what, that may have made
// file system calls. isFlush marks Flush and Close, which must report
// failures absorbed earlier; freedSpares marks a call that removed files
// and after which the queue had no spares left. It returns err.
func (r *ioErrRun) outcome(what string, before int, isFlush, freedSpares bool, err error) error {
	r.t.Helper()
	injectedHere := r.failedCalls() > before
	if injectedHere && r.firstInj == "" {
		r.firstInj = what
		if !r.c.persistent {
			r.healed = true // failNth fails one call only
		}
		if r.c.persistent {
			r.healAt = r.step + ioErrHealAfter
		}
	}
	if err != nil {
		require.ErrorIs(r.t, err, r.want, "%s: %s", r.c, what)
		explained := injectedHere || r.sticky != nil || (isFlush && (r.pending != "" || r.alsoNoted != ""))
		require.True(r.t, explained, "%s: %s failed with no failure injected: %v", r.c, what, err)
		if r.healed && !injectedHere && r.sticky == nil {
			require.True(r.t, isFlush && (r.pending != "" || r.alsoNoted != ""), "%s: %s failed after the file system healed: %v", r.c, what, err)
		}
		if isFlush && r.pending != "" {
			r.surfaced = true
			r.pending = ""
		}
		if isFlush {
			r.alsoNoted = ""
		}
		if injectedHere {
			r.surfaced = true
			if !isFlush {
				r.alsoNoted = what
			}
			if ioErrSticky(r.c.kind) && r.q != nil {
				r.sticky = err
				r.checkSticky()
			}
		}
		return err
	}
	require.Nil(r.t, r.sticky, "%s: %s succeeded on a queue that failed closed (%s)", r.c, what, r.firstInj)
	if isFlush {
		require.False(r.t, injectedHere, "%s: %s returned nil although a call it made failed", r.c, what)
		require.Empty(r.t, r.pending, "%s: %s returned nil; the failure absorbed by %s was never reported", r.c, what, r.pending)
		r.alsoNoted = ""
	}
	if injectedHere && r.c.kind == callAllocate && freedSpares {
		// A full disk the queue got past by removing its own spares
		// (arenaManager.reserve) is no failure: the write went through,
		// and there is nothing for a caller to see.
		r.surfaced = true
		return nil
	}
	if injectedHere && r.pending == "" {
		// Housekeeping (reclaiming an arena) failed without failing the
		// call; the next Flush or Close must report it.
		r.pending = what
	}
	return nil
}

// do runs one API call through outcome.
func (r *ioErrRun) do(what string, isFlush bool, f func() error) error {
	r.t.Helper()
	before := r.failedCalls()
	spares, removes := r.spares(), r.callsOf()[callRemove]
	err := f()
	freed := spares > 0 && r.spares() == 0 && r.callsOf()[callRemove] > removes
	return r.outcome(what, before, isFlush, freed, err)
}

// open opens the queue on the faultFS. A NewQueue that fails must release
// the directory: after healing, the next one works.
func (r *ioErrRun) open() {
	r.t.Helper()
	err := r.do("NewQueue", false, func() error {
		q, err := NewQueue(r.dir, r.opts...)
		r.q = q
		return err
	})
	if err != nil {
		require.Nil(r.t, r.q)
		r.openFailed = true
		r.sticky = nil
		r.heal()
		q, err := NewQueue(r.dir, r.opts...)
		require.NoError(r.t, err, "%s: NewQueue after a failed NewQueue and healing", r.c)
		r.q = q
	}
	r.sticky = nil
	r.handles = make(map[string]*Consumer)
	names := r.q.Consumers()
	if !slices.Contains(names, defaultConsumerKey) {
		// A new queue has no default consumer: the first queue-level
		// read would add it. The model has it from the start, so it is
		// made here, on the first open, before anything is enqueued.
		require.Empty(r.t, r.msgs, "%s: the default consumer is gone", r.c)
		_, err := r.q.NewConsumer(defaultConsumerKey)
		require.NoError(r.t, err)
		names = r.q.Consumers()
	}
	require.Equal(r.t, r.modelNames(), names, "%s: consumers after NewQueue", r.c)
}

func (r *ioErrRun) modelNames() []string {
	var names []string
	for name := range r.pos {
		names = append(names, name)
	}
	slices.Sort(names)
	return names
}

// closeQueue closes the queue; errors are allowed when explained.
func (r *ioErrRun) closeQueue() {
	r.t.Helper()
	q := r.q
	r.q = nil // a failure of Close does not make a queue to check
	r.do("Close", true, q.Close)
	r.handles, r.sticky = nil, nil
	require.NoError(r.t, q.Close(), "%s: a second Close", r.c)
}

// lag returns how many messages consumer name has not read, as the queue
// says.
func (r *ioErrRun) lag(name string) int64 {
	if name == defaultConsumerKey {
		return r.q.Len()
	}
	if h := r.handles[name]; h != nil {
		return h.Len()
	}
	return r.q.Stats().Lag[name]
}

// enqueue runs an Enqueue or an EnqueueBatch. A failed one stores nothing.
func (r *ioErrRun) enqueue(what string, msgs [][]byte) {
	r.t.Helper()
	lenBefore, bytesBefore := r.q.Len(), r.q.Stats().Bytes
	err := r.do(what, false, func() error {
		if len(msgs) == 1 {
			return r.q.Enqueue(msgs[0])
		}
		return r.q.EnqueueBatch(msgs)
	})
	if err != nil {
		require.Equal(r.t, lenBefore, r.q.Len(), "%s: a failed %s stored messages", r.c, what)
		require.Equal(r.t, bytesBefore, r.q.Stats().Bytes, "%s: a failed %s stored bytes", r.c, what)
		require.Empty(r.t, staleArenaHeaders(r.t, r.q), "%s: a failed %s left arenas behind", r.c, what)
		return
	}
	r.msgs = append(r.msgs, msgs...)
}

// dequeue reads one message of consumer name and checks it against the
// model. It returns false when the consumer had nothing left.
func (r *ioErrRun) dequeue(name string) bool {
	r.t.Helper()
	p, live := r.pos[name]
	if !live {
		return false // its NewConsumer failed
	}
	what := "Dequeue " + name
	var got []byte
	empty := false
	err := r.do(what, false, func() error {
		var err error
		if name == defaultConsumerKey {
			got, err = r.q.Dequeue()
		} else {
			h := r.handles[name]
			if h == nil {
				if h, err = r.q.NewConsumer(name); err != nil {
					return err
				}
				r.handles[name] = h
			}
			if name == ioErrGrown {
				got, err = h.DequeueAppend(nil)
			} else {
				got, err = h.Dequeue()
			}
		}
		if errors.Is(err, ErrEmptyQueue) {
			empty = true
			return nil
		}
		return err
	})
	switch {
	case empty:
		require.Equal(r.t, len(r.msgs), p, "%s: %s: ErrEmptyQueue at message %d of %d: acknowledged messages lost", r.c, what, p, len(r.msgs))
		return false
	case err != nil:
		require.NotErrorIs(r.t, err, ErrCorrupt, "%s: %s", r.c, what)
	default:
		require.Less(r.t, p, len(r.msgs), "%s: %s read a message that was never acknowledged (%d bytes)", r.c, what, len(got))
		if !bytes.Equal(r.msgs[p], got) {
			require.FailNow(r.t, "wrong message", "%s: %s: message %d: got %d bytes, want %d", r.c, what, p, len(got), len(r.msgs[p]))
		}
		r.pos[name] = p + 1
	}
	require.EqualValues(r.t, len(r.msgs)-r.pos[name], r.lag(name), "%s: %s: Len", r.c, what)
	return err == nil
}

// offset returns the logical offset of message i.
func (r *ioErrRun) offset(i int) uint64 {
	var off uint64
	for _, m := range r.msgs[:i] {
		off += recordHeaderSize + uint64(len(m))
	}
	return off
}

// oldest returns the queue's oldest stored record, where a new consumer
// starts.
func (r *ioErrRun) oldest() uint64 {
	r.q.mu.Lock()
	defer r.q.mu.Unlock()
	return r.q.oldest
}

// head is the position of the slowest consumer: a new one starts at or
// below it.
func (r *ioErrRun) head() int {
	h := len(r.msgs)
	for _, p := range r.pos {
		h = min(h, p)
	}
	return h
}

func (r *ioErrRun) run(op ioErrOp) {
	r.t.Helper()
	r.step++
	if r.c.persistent && r.healAt > 0 && r.step >= r.healAt {
		r.heal()
	}
	switch op.kind {
	case ioOpEnqueue:
		r.enqueue("Enqueue", op.msgs)
	case ioOpBatch:
		r.enqueue("EnqueueBatch", op.msgs)
	case ioOpDequeue:
		r.dequeue(op.name)
	case ioOpFlush:
		r.do("Flush", true, r.q.Flush)
	case ioOpNewConsumer:
		var h *Consumer
		err := r.do("NewConsumer "+op.name, false, func() error {
			var err error
			h, err = r.q.NewConsumer(op.name)
			return err
		})
		if err != nil {
			require.NotContains(r.t, r.q.Consumers(), op.name, "%s: a failed NewConsumer added it", r.c)
			return
		}
		// A new consumer starts at the oldest message still stored: not
		// past the slowest consumer, and, as reads check, where the
		// messages it then reads are stored.
		p := len(r.msgs) - int(h.Len())
		require.True(r.t, p >= 0 && p <= r.head(), "%s: new consumer %s starts at message %d, the slowest consumer is at %d", r.c, op.name, p, r.head())
		require.Equal(r.t, r.offset(p), r.oldest(), "%s: new consumer %s: not at the oldest stored message", r.c, op.name)
		r.pos[op.name] = p
		r.handles[op.name] = h
	case ioOpDeleteConsumer:
		if _, ok := r.pos[op.name]; !ok {
			return
		}
		if r.do("DeleteConsumer "+op.name, false, func() error { return r.q.DeleteConsumer(op.name) }) == nil {
			delete(r.pos, op.name)
			delete(r.handles, op.name)
		}
	case ioOpReopen:
		r.closeQueue()
		r.open()
	case ioOpDrain:
		for _, name := range r.modelNames() {
			for i := 0; r.dequeue(name); i++ {
				require.Less(r.t, i, len(r.msgs)+1, "%s: consumer %s never ends", r.c, name)
			}
		}
	}
}

// verify closes the queue, heals the file system and reopens the queue
// with the real one: every consumer must read every acknowledged message
// from its acknowledged position, and the queue must work.
func (r *ioErrRun) verify() {
	r.t.Helper()
	r.heal()
	if r.q != nil {
		r.closeQueue()
	}
	require.Empty(r.t, r.pending, "%s: the failure absorbed by %s was never reported", r.c, r.pending)
	q, err := NewQueue(r.dir, SetPeriodicFlushOps(0), SetPeriodicFlushDuration(0))
	require.NoError(r.t, err, "%s: reopening with the real file system", r.c)
	defer func() { require.NoError(r.t, q.Close()) }()
	requireInvariants(r.t, q)
	require.Equal(r.t, r.modelNames(), q.Consumers(), "%s: consumers after reopening", r.c)
	for _, name := range r.modelNames() {
		c, err := q.NewConsumer(name)
		require.NoError(r.t, err)
		for i, want := range r.msgs[r.pos[name]:] {
			got, err := c.Dequeue()
			require.NoError(r.t, err, "%s: consumer %s, message %d of %d", r.c, name, r.pos[name]+i, len(r.msgs))
			if !bytes.Equal(want, got) {
				require.FailNow(r.t, "wrong message after reopening", "%s: consumer %s, message %d: got %d bytes, want %d",
					r.c, name, r.pos[name]+i, len(got), len(want))
			}
		}
		_, err = c.Dequeue()
		require.ErrorIs(r.t, err, ErrEmptyQueue, "%s: consumer %s after the last acknowledged message", r.c, name)
	}
	require.NoError(r.t, q.EnqueueString("after"))
	s, err := q.DequeueString()
	require.NoError(r.t, err)
	require.Equal(r.t, "after", s)
	require.NoError(r.t, q.Flush())
}

// runIOErrCase runs the workload for one case on a fresh directory under
// base and returns the run.
func runIOErrCase(t *testing.T, base string, c ioErrCase, ops []ioErrOp, opts []Option) *ioErrRun {
	t.Helper()
	dir, err := os.MkdirTemp(base, "case")
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, os.RemoveAll(dir)) })
	fs := newFaultFS()
	r := &ioErrRun{
		t:    t,
		c:    c,
		want: ioErrInjected(c.kind),
		fs:   fs,
		dir:  dir,
		opts: append(slices.Clip(opts), withFS(fs)),
		pos:  map[string]int{defaultConsumerKey: 0},
	}
	if c.kind == "" {
		r.healed = true
	} else {
		fs.failNth(c.kind, c.n, c.persistent, r.want)
	}
	t.Cleanup(func() {
		// A failed check left the queue open: close it so that its
		// directory can go.
		if r.q != nil {
			if err := r.q.Close(); err != nil {
				t.Logf("%s: closing after a failure: %v", c, err)
			}
		}
	})
	r.open()
	for _, op := range ops {
		r.run(op)
	}
	return r
}

// ioErrNumbers returns the call numbers to fail among count calls: all
// of them, or about 24 spread evenly, the first and last included, under
// the race detector, which makes every case several times slower.
func ioErrNumbers(count int) []int {
	step := 1
	if sampledTier() {
		step = max(1, count/24)
	}
	var ns []int
	for n := 1; n <= count; n += step {
		ns = append(ns, n)
	}
	if ns[len(ns)-1] != count {
		ns = append(ns, count)
	}
	return ns
}

// TestIOErrors fails every file system call of the workload in turn.
func TestIOErrors(t *testing.T) {
	seed := int64(testSeed(t))
	arenaSize := os.Getpagesize()
	opts := []Option{SetArenaSize(arenaSize), SetMaxInMemArenas(3), SetPeriodicFlushOps(0), SetPeriodicFlushDuration(0)}
	ops := ioErrWorkload(seed, arenaSize)
	base := memDir(t)

	// The counting run: nothing fails.
	var counts map[fsCall]int
	t.Run("count", func(t *testing.T) {
		r := runIOErrCase(t, base, ioErrCase{}, ops, opts)
		counts = r.callsOf()
		r.q.mu.Lock()
		slots := r.q.idx.slots()
		r.q.mu.Unlock()
		require.Greater(t, slots, initialIndexSlots, "the workload grows the index")
		r.verify()
	})
	require.NotNil(t, counts, "the counting run failed")
	t.Logf("workload of %d steps; calls: %v", len(ops), counts)

	var st ioErrStats
	t.Run("inject", func(t *testing.T) {
		for _, kind := range ioErrKinds {
			require.Positive(t, counts[kind], "the workload makes no %s call", kind)
			for _, n := range ioErrNumbers(counts[kind]) {
				for _, persistent := range []bool{false, true} {
					c := ioErrCase{kind: kind, n: n, persistent: persistent}
					t.Run(c.String(), func(t *testing.T) {
						t.Parallel()
						r := runIOErrCase(t, base, c, ops, opts)
						r.verify()
						calls := r.failedCalls()
						require.Positive(t, calls, "%s: the workload made fewer %s calls than when counted", c, kind)
						require.True(t, r.surfaced, "%s: the failure of %s never reached a caller", c, r.firstInj)
						st.mu.Lock()
						st.cases++
						st.injected++
						st.calls += calls
						if r.surfaced {
							st.surfaced++
						}
						if r.stickyOK {
							st.stickyOK++
						}
						if ioErrSticky(kind) {
							st.stickyKind++
						}
						st.reopenOK++
						if r.openFailed {
							st.openFailures++
						}
						st.mu.Unlock()
					})
				}
			}
		}
	})
	report(t, "kinds=%d cases=%d injected=%d surfaced=%d sticky_ok=%d reopen_ok=%d lost=0",
		len(ioErrKinds), st.cases, st.injected, st.surfaced, st.stickyOK, st.reopenOK)
	t.Logf("ioerrors: %d calls failed in all; %d of %d cases of failing syncs checked stickiness after healing; %d cases failed a NewQueue",
		st.calls, st.stickyOK, st.stickyKind, st.openFailures)
}

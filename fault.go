package bigqueue

import (
	"fmt"
	"runtime/debug"
)

// Memory faults. The queue reads and writes its files through shared
// mappings, and an access faults (SIGBUS) when the kernel cannot back the
// page: the file was truncated under the queue, or a copy-on-write file
// system (btrfs) has no free block for a rewritten page, although the
// range was reserved with fallocate. Go kills the process on such a fault
// unless the goroutine asked for a panic instead
// (debug.SetPanicOnFault). Every method that touches a mapping does so
// while it holds mu, and turns that panic into an error wrapping
// ErrFault, which fails the queue closed: what the faulting write left
// half done is never made durable, and the next NewQueue recovers.

// faultError returns the error for r, a value recovered from a panic, when
// it is a memory fault; any other panic (a bug) goes on.
func faultError(r any) error {
	e, ok := r.(interface{ Addr() uintptr })
	if !ok {
		panic(r)
	}
	return fmt.Errorf("access to a memory-mapped file of the queue faulted at %#x (SIGBUS): "+
		"the file was truncated, or its file system could not allocate a block for the write: %w", e.Addr(), ErrFault)
}

// endGuard ends a stretch of a function that holds mu and touches
// mappings, begun by debug.SetPanicOnFault(true), which returned old: it
// restores the goroutine's setting and turns a memory fault into *err,
// failing the queue. It is deferred directly (recover works only there),
// as one call: defer q.endGuard(&err, debug.SetPanicOnFault(true)).
func (q *Queue) endGuard(err *error, old bool) {
	debug.SetPanicOnFault(old)
	if r := recover(); r != nil {
		*err = q.fail(faultError(r))
	}
}

// endProdGuard is endGuard for enqueueFast, which holds only mu.prod: it
// takes mu.cons too (in lock order) to fail the queue, and reports the
// call done.
func (q *Queue) endProdGuard(done *bool, err *error, old bool) {
	debug.SetPanicOnFault(old)
	if r := recover(); r != nil {
		fe := faultError(r)
		q.mu.cons.Lock()
		*err = q.fail(fe)
		q.mu.cons.Unlock()
		*done = true
	}
}

// endConsGuard is endGuard for dequeueFast, which holds only mu.cons:
// to fail the queue it takes the whole lock (releasing mu.cons first, as
// the lock order wants), and it returns holding mu.cons again.
func (q *Queue) endConsGuard(done *bool, err *error, old bool) {
	debug.SetPanicOnFault(old)
	if r := recover(); r != nil {
		fe := faultError(r)
		q.mu.cons.Unlock()
		q.mu.Lock()
		*err = q.fail(fe)
		q.mu.prod.Unlock()
		*done = true
	}
}

// noFault runs f, which touches mappings and needs mu, and returns the
// queue's failure when f faulted.
func (q *Queue) noFault(f func()) (err error) {
	defer q.endGuard(&err, debug.SetPanicOnFault(true))
	f()
	return nil
}

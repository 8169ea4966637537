package bigqueue

import (
	"sync"

	"golang.org/x/sys/cpu"
)

// queueLock is the queue's lock in two halves, so that one producer and
// one consumer can work at the same time. Lock and Unlock take and
// release both: every operation but the two fast paths below holds the
// whole lock from start to end, as if it were one mutex.
//
//   - Enqueue of a record that fits the arena being written
//     (enqueueFast) holds only prod. It writes the bytes past the tail,
//     the tail and the fields marked "prod" on Queue and arenaManager.
//   - Dequeue of a record that lies in a mapped arena, below the
//     published tail (dequeueFast), holds only cons. It writes the
//     consumer's position, the head and the fields marked "cons".
//
// Anything else (a new arena, a record crossing arenas, damage, a fault,
// a waiter, Peek, a second consumer at the head) falls back to the whole
// lock. The two fast paths share no field: the consumer learns the tail
// from Queue.pubTail, which enqueueFast stores after the record is
// written. prod is always taken before cons, so a holder of cons must
// release it before it takes the whole lock, and a goroutine waiting for
// the whole lock (an operation off the fast paths, the flusher, the
// prefaulter) holds prod while it waits for cons: the halves are held
// for one operation at a time, never across a wait.
type queueLock struct {
	_    cpu.CacheLinePad
	prod sync.Mutex
	_    cpu.CacheLinePad // the halves are taken on two cores
	cons sync.Mutex
	_    cpu.CacheLinePad
}

// Lock takes both halves.
func (l *queueLock) Lock() {
	l.prod.Lock()
	l.cons.Lock()
}

// Unlock releases both halves.
func (l *queueLock) Unlock() {
	l.cons.Unlock()
	l.prod.Unlock()
}

package bigqueue

import "errors"

// These are the sentinel errors of the package.
//
// The errors that github.com/grandecola/bigqueue returned bare are returned
// bare here too, so that code written against it (err == ErrX) keeps
// working: ErrEmptyQueue, ErrInvalidArenaSize, ErrIncompatibleVersion,
// ErrTooSmallArenaSize, ErrTooFewInMemArenas and ErrDifferentQueues. So is
// ErrTooLargeArenaSize, an option error like the other two. Every other
// error is wrapped with the operation and its subject; compare those with
// errors.Is. errors.Is works for the bare ones as well, and is the safe
// habit for new code.
var (
	// ErrEmptyQueue is returned, bare, by Dequeue and DequeueString when
	// the consumer has read every stored message.
	ErrEmptyQueue = errors.New("bigqueue: queue is empty")

	// ErrInvalidArenaSize is returned, bare, by NewQueue when the directory
	// holds a queue that was created with a different arena size than the
	// one asked for with SetArenaSize.
	ErrInvalidArenaSize = errors.New("bigqueue: arena size differs from the stored queue")

	// ErrTooSmallArenaSize is returned, bare, by NewQueue when SetArenaSize
	// was given a size below the operating system's page size.
	ErrTooSmallArenaSize = errors.New("bigqueue: arena size is smaller than the page size")

	// ErrTooLargeArenaSize is returned, bare, by NewQueue when SetArenaSize
	// was given a size above MaxArenaSize (1 TiB). The original accepted
	// larger sizes as long as the file system could hold a file that big;
	// see MaxArenaSize.
	ErrTooLargeArenaSize = errors.New("bigqueue: arena size is larger than MaxArenaSize")

	// ErrTooFewInMemArenas is returned, bare, by NewQueue when
	// SetMaxInMemArenas was given a negative value or a value of 1 or 2
	// (0 means no limit).
	ErrTooFewInMemArenas = errors.New("bigqueue: too few arenas in memory (need 0 or at least 3)")

	// ErrDifferentQueues is returned, bare, by FromConsumer when the
	// consumer to copy from belongs to another Queue value.
	ErrDifferentQueues = errors.New("bigqueue: consumer belongs to a different queue")

	// ErrIncompatibleVersion is returned by NewQueue when the directory
	// holds files of another format version of this library: bare when the
	// index says so, wrapped when it is found later, in an arena.
	ErrIncompatibleVersion = errors.New("bigqueue: incompatible on-disk format version")

	// ErrClosed is returned by every method called after Close.
	ErrClosed = errors.New("bigqueue: queue is closed")

	// ErrLocked is returned by NewQueue when another Queue, in this process
	// or another one, holds the directory open.
	ErrLocked = errors.New("bigqueue: queue directory is locked by another owner")

	// ErrCorrupt is returned when stored bytes fail their checks: by NewQueue
	// for an index that cannot be read, and by a reading call that had to
	// skip a damaged record. The wrapping message says where and how many
	// bytes were skipped; the consumer has already moved past the damage.
	ErrCorrupt = errors.New("bigqueue: corrupt data")

	// ErrNoConsumer is returned when a consumer name is unknown, or a
	// Consumer is used after DeleteConsumer removed it.
	ErrNoConsumer = errors.New("bigqueue: no such consumer")

	// ErrInvalidName is returned by NewConsumer and FromConsumer for an
	// empty name or one longer than MaxConsumerNameLen bytes, and by
	// PublishExpvar for an empty name or one expvar already has.
	ErrInvalidName = errors.New("bigqueue: invalid consumer name")

	// ErrTooManyConsumers is returned, wrapped, by NewConsumer and
	// FromConsumer when the index holds as many consumer slots as a
	// queue can reopen (about four million).
	ErrTooManyConsumers = errors.New("bigqueue: too many consumers")

	// ErrNilContext is returned by DequeueWait and PeekWait, and yielded
	// by All, for a nil context.
	ErrNilContext = errors.New("bigqueue: nil context")

	// ErrForeignQueue is returned by NewQueue, wrapped with the reason, for
	// a directory it must not write into: one that holds a queue written by
	// github.com/grandecola/bigqueue (a metadata.dat file), or one that
	// holds files of neither library and no queue of this one. Nothing is
	// written into such a directory. Import the original's queue into a
	// new directory with the migrate sub-package (migrate.Import).
	ErrForeignQueue = errors.New("bigqueue: directory holds a foreign queue or files")

	// ErrFault is returned, wrapped, when an access to one of the queue's
	// memory-mapped files faulted (SIGBUS): the file was truncated under
	// the queue, or a copy-on-write file system (btrfs) had no block left
	// for a write although the range was reserved. The process survives;
	// the queue fails closed, and every later call but Close returns the
	// error. Reopen it: recovery checks what the fault left.
	ErrFault = errors.New("bigqueue: fault in a memory-mapped file")

	// ErrTooLarge is returned by Enqueue for a message longer than
	// MaxMessageSize bytes.
	ErrTooLarge = errors.New("bigqueue: message too large")

	// ErrExhausted is returned, wrapped, by Enqueue and EnqueueBatch when
	// the write would take the queue's logical offset or sequence number
	// past 2^62, the largest that recovery accepts: 4 EiB written over the
	// queue's life. Only a forged or damaged index can put a queue there.
	// Nothing is written (a batch is checked as a whole first); reading
	// goes on as before.
	ErrExhausted = errors.New("bigqueue: queue offsets exhausted")

	// ErrOutOfRange is returned, wrapped with the range stored, by Seek
	// for a sequence number that is not stored: below the oldest
	// message kept, or past the one the next message enqueued gets. The
	// consumer is not moved.
	ErrOutOfRange = errors.New("bigqueue: sequence number not stored")

	// ErrDropped is returned, wrapped, by the first read of a consumer
	// after retention (SetMaxBytes, SetMaxAge) removed messages it had
	// not read; the wrapping message says how many and where the
	// consumer goes on. Nothing is read by that call; the next one reads
	// the oldest message left. Stats.Dropped counts them.
	ErrDropped = errors.New("bigqueue: unread messages removed by retention")
)

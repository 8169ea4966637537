package bigqueue

import "errors"

// These are the sentinel errors of the package. Calls wrap them with the
// operation and its subject, so compare with errors.Is, never with ==.
var (
	// ErrEmptyQueue is returned by Dequeue and DequeueString when the
	// consumer has read every stored message.
	ErrEmptyQueue = errors.New("bigqueue: queue is empty")

	// ErrInvalidArenaSize is returned by NewQueue when the directory holds a
	// queue that was created with a different arena size than the one asked
	// for with SetArenaSize.
	ErrInvalidArenaSize = errors.New("bigqueue: arena size differs from the stored queue")

	// ErrTooSmallArenaSize is returned by SetArenaSize for a size below the
	// operating system's page size.
	ErrTooSmallArenaSize = errors.New("bigqueue: arena size is smaller than the page size")

	// ErrTooFewInMemArenas is returned by SetMaxInMemArenas for a negative
	// value or a value of 1 or 2 (0 means no limit).
	ErrTooFewInMemArenas = errors.New("bigqueue: too few arenas in memory (need 0 or at least 3)")

	// ErrDifferentQueues is returned by FromConsumer when the consumer to
	// copy from belongs to another Queue value.
	ErrDifferentQueues = errors.New("bigqueue: consumer belongs to a different queue")

	// ErrIncompatibleVersion is returned by NewQueue when the directory
	// holds files of another bigqueue format version.
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
	// empty name or one longer than MaxConsumerNameLen bytes.
	ErrInvalidName = errors.New("bigqueue: invalid consumer name")

	// ErrNilContext is returned by DequeueWait for a nil context.
	ErrNilContext = errors.New("bigqueue: nil context")

	// ErrTooLarge is returned by Enqueue for a message longer than
	// MaxMessageSize bytes.
	ErrTooLarge = errors.New("bigqueue: message too large")
)

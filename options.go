package bigqueue

import (
	"os"
	"time"
)

// Defaults of the options, as in the original bigqueue.
const (
	DefaultArenaSize      = 128 << 20
	DefaultMaxInMemArenas = 3
	DefaultFlushOps       = 1_000_000
	DefaultFlushDuration  = time.Second
	minInMemArenas        = 3
)

// MaxArenaSize is the largest arena size SetArenaSize accepts: 1 TiB. A
// queue stores its arena size in its index, and NewQueue takes a stored
// size above it for damage, so a larger one would make the directory
// unopenable. The original library accepted any size the file system
// could hold as one (sparse) file, up to 16 TiB on ext4; larger sizes are
// refused here, at open, before anything is written.
const MaxArenaSize = 1 << 40

// options holds the configuration of one Queue. It is filled once by
// NewQueue and never changes afterwards.
type options struct {
	arenaSize      int              // bytes per arena file; >= page size
	arenaSizeSet   bool             // SetArenaSize was given: a stored queue must match
	maxInMemArenas int              // 0 = no limit, else >= 3
	flushOps       int64            // mutations between background flushes; <= 0 disables
	flushDuration  time.Duration    // time between background flushes; <= 0 disables
	fs             fileSystem       // file and sync calls; osFS outside tests
	maxBytes       int64            // retention: stored bytes above which the oldest arenas go; <= 0 = no limit
	maxAge         time.Duration    // retention: age above which the oldest arenas go; <= 0 = no limit
	now            func() time.Time // wall clock (arena start times, MaxAge); time.Now outside tests
	plant          plant            // deliberately broken variants; zero outside tests
	readyMin       int              // smallest arena size whose next arena is prepared ahead (ready.go); readyMinArena outside tests
}

// plant selects deliberately broken variants of the queue. Only tests set
// it (through an option defined in a test file), to show that the
// power-loss simulator catches each kind of mistake; it is zero in every
// queue a user opens. The fifth planted mistake, a missing directory
// fsync, needs no switch here: the tests wrap the fileSystem.
type plant uint8

const (
	plantIndexBeforeData plant = 1 << iota // Flush msyncs the index before the arenas
	plantNoChecksum                        // reads and recovery do not verify checksums
	plantEarlyReclaim                      // a read that passes an arena reclaims it before a flush made the consumer positions durable
	plantForgetEvicted                     // an arena evicted dirty is neither msynced nor left to the next flush to sync
	plantSkipUnread                        // a flush that reclaims arenas syncs only the tail's, not those holding unread records
	plantReclaimEarly                      // reclaimFlush removes arenas without first msyncing the consumer positions past them
)

func defaultOptions() options {
	return options{
		arenaSize:      DefaultArenaSize,
		maxInMemArenas: DefaultMaxInMemArenas,
		flushOps:       DefaultFlushOps,
		flushDuration:  DefaultFlushDuration,
		fs:             osFS{},
		now:            time.Now,
		readyMin:       readyMinArena,
	}
}

// Option configures a Queue in NewQueue. An Option validates its argument
// and NewQueue returns the error it reports.
type Option func(*options) error

// SetArenaSize sets the size of each arena file in bytes (default 128 MiB).
// NewQueue returns ErrTooSmallArenaSize for a size below the page size and
// ErrTooLargeArenaSize for one above MaxArenaSize, both bare, as the
// original did, and writes nothing. The size is stored with the queue:
// reopening with another size returns ErrInvalidArenaSize.
func SetArenaSize(bytes int) Option {
	return func(o *options) error {
		if bytes < os.Getpagesize() {
			return ErrTooSmallArenaSize
		}
		if int64(bytes) > MaxArenaSize {
			return ErrTooLargeArenaSize
		}
		o.arenaSize = bytes
		o.arenaSizeSet = true
		return nil
	}
}

// SetMaxInMemArenas bounds how many arenas are memory-mapped at once
// (default 3). 0 means no limit; for 1, 2 and negative values NewQueue
// returns ErrTooFewInMemArenas, bare. The least recently used arena is
// unmapped first; its written pages stay in the page cache, and the next
// flush syncs them through the file, unless every consumer has read them
// by then (see Disk space in the package doc). With 64 arenas waiting so,
// an eviction msyncs the arena before unmapping it. With arenas of 1 MiB
// and more, one more mapping may exist: the next arena, prepared ahead of
// the writer. Arenas every consumer has read, and the spares they become,
// may keep their mappings beyond the bound, so that reusing them maps
// nothing: together at most as many as there may be spares (64, and
// 64 MiB), so none with arenas over 64 MiB (see Limits in the package
// doc).
//
// With 0, every arena a queue touches stays mapped until Close, and each
// mapping (two for a new arena of more than 8 MiB: see Limits in the
// package doc) counts against the kernel's per-process limit
// (vm.max_map_count, 65,530 by default on Linux): a queue of small arenas
// holding many of them can exhaust it, and then any later mapping, the Go
// runtime's own included, fails. Use a bound unless arenas are few.
func SetMaxInMemArenas(n int) Option {
	return func(o *options) error {
		if n < 0 || (n > 0 && n < minInMemArenas) {
			return ErrTooFewInMemArenas
		}
		o.maxInMemArenas = n
		return nil
	}
}

// SetPeriodicFlushOps makes the background flusher run after n mutations
// since the last flush (default 1,000,000): n enqueued messages, or n
// dequeued messages and other changes. Enqueues and dequeues are counted
// apart, so that a producer and a consumer need not share a counter: with
// both at work a flush comes after at most 2n-1 of them. n <= 0 disables
// the count trigger.
func SetPeriodicFlushOps(n int64) Option {
	return func(o *options) error {
		o.flushOps = n
		return nil
	}
}

// SetPeriodicFlushDuration makes the background flusher run every d
// (default 1 s). d <= 0 disables the timer trigger.
func SetPeriodicFlushDuration(d time.Duration) Option {
	return func(o *options) error {
		o.flushDuration = d
		return nil
	}
}

// Package bigqueue is an embedded, persistent FIFO queue stored in
// memory-mapped files. It keeps the API of github.com/grandecola/bigqueue
// (switch by changing the import path; MmapQueue and NewMmapQueue are
// aliases) and adds what users of disk queues ask for: disk space comes
// back, crashes never deliver garbage, a full disk is an error, and one
// process owns a queue directory at a time.
//
//	q, err := bigqueue.NewQueue(dir, bigqueue.SetArenaSize(64<<10))
//	if err != nil { ... }
//	defer q.Close()
//	err = q.EnqueueString("hello")
//	msg, err := q.DequeueString() // "hello"
//
// # Switching from the original
//
// Code written for github.com/grandecola/bigqueue compiles unchanged with
// the import path changed, and errors the original returned bare are bare
// here too (ErrEmptyQueue, ErrInvalidArenaSize, ErrIncompatibleVersion,
// ErrTooSmallArenaSize, ErrTooFewInMemArenas, ErrDifferentQueues), so
// comparing with == keeps working; all other errors are wrapped with
// context. The original's directories are in another format: NewQueue
// refuses them with ErrForeignQueue, and the migrate sub-package imports
// one into a new directory, every consumer at its position. The
// deliberate differences are listed in docs/SWITCHING.md of the
// repository.
//
// # Consumers
//
// Every consumer reads the whole stream independently, Kafka-style, from
// its own position, which is persisted. Queue.Dequeue reads through the
// default consumer, named "__default__", which comes into being with the
// first queue-level read (Dequeue, DequeueString, DequeueAppend,
// DequeueWait, Peek, PeekString); before that, Queue.IsEmpty and Queue.Len
// answer as a new consumer would. A program that reads only through named
// consumers therefore never has a default consumer pinning its data.
//
// A new consumer starts at the oldest message still stored: the first
// record of the oldest arena file on disk, which its header names. That
// holds after a reopen too, and it is where the original starts one ("at
// the start of the queue wherever the first non-deleted element is"); it
// is not the slowest consumer's position. FromConsumer copies another
// consumer's position. DeleteConsumer removes a consumer (the default one
// too) so that it stops pinning data; the next queue-level read re-creates
// the default consumer at the oldest stored message.
//
// # Everyday API
//
// Beyond the original: Len (exact, O(1)) per consumer; Peek and PeekString
// for at-least-once processing (Peek, process, Dequeue to commit; the
// Dequeue hands back the slice Peek read); DequeueAppend, which reads into
// a caller's buffer without allocating; DequeueWait and PeekWait, which
// block until a message arrives, their context ends or the queue closes,
// without polling (PeekWait commits nothing: at-least-once without a
// polling loop); All, an iterator for range-over-func that blocks for new
// messages and commits each one when the loop body asks for the next, so
// that a break, a panic or a crash in the body leaves it for redelivery;
// Position, Seek, SeekOldest and SeekNewest (see Positions); EnqueueBatch,
// which stores messages all or none with one commit; and Stats, which
// PublishExpvar shows in expvar (the prometheus sub-module has a
// Prometheus collector of it). Each reading call exists on Queue (default
// consumer) and Consumer alike.
//
// # Positions
//
// Every message has a sequence number: the first message ever enqueued in
// a queue has 1, each next one the number after. A number is never given
// to another message: Close, a process crash, recovery and reclaiming
// keep them. The one exception is a power loss, which may lose messages
// no Flush covered: the next messages enqueued then get their numbers.
// Stats.QueueID is random, chosen when the directory is created, so
// (queue ID, sequence number) names a message across machines: a
// forwarder that stores the last number a receiver got skips what it
// forwarded before a crash. Position returns the number of the message a
// consumer reads next (the one Peek returns; at the end, the number the
// next message gets). Seek moves a consumer to a stored message by its
// number (or to Stats().NextSeq, the end), SeekOldest to the oldest
// stored one, SeekNewest past the newest; a number not stored returns an
// error wrapping ErrOutOfRange and moves nothing. The new position is
// persisted like any other.
//
// # Retention
//
// By default a consumer that stops reading pins every message it has not
// read. SetMaxBytes and SetMaxAge bound that: a flush (periodic, explicit,
// Close, and one an enqueue that starts an arena asks for) removes the
// oldest arenas while the stored data is above the byte limit, or while
// the next arena was started longer ago than the age limit, even if some
// consumer has not read them. Never the arena holding the newest message,
// nor one the flush has not made durable. A consumer whose unread
// messages went gets, on its next read, an error wrapping ErrDropped that
// says how many; that read returns nothing and the next one reads the
// oldest message left. Stats.Dropped counts them per consumer. The notice
// survives Close and crashes until it is reported. Seek and FromConsumer
// discard the notice of the consumer they move (Stats keeps the count).
// Ages are per arena, by the wall clock (see SetMaxAge); arenas written
// by a build without retention have no start time, and SetMaxAge removes
// no arena from the first of them on.
//
// # Disk space
//
// The queue is a sequence of fixed-size arena files, and disk used follows
// the data, not the arena size. The lifecycle of an arena:
//
//  1. Created by the write that reaches it, with its full size but sparse:
//     only its first 4 KiB get disk blocks (fallocate). With arenas of
//     1 MiB and more on Linux, the file is prepared by a background
//     goroutine while the writer is in the second half of the arena
//     before (created under a spare's name, mapped, its first page
//     populated), and that write only renames it: the first access to a
//     new mapping can take milliseconds. The first 4 MiB of a new arena
//     of more than 8 MiB are mapped with MADV_RANDOM, so that a write
//     fault there maps one page instead of having the kernel zero a
//     whole read-ahead window first (read_ahead_kb, often megabytes):
//     the first Enqueue into a new queue takes a fraction of a
//     millisecond, not several.
//  2. Written, with blocks reserved ahead of the writer in steps of a
//     quarter of what is reserved (4 KiB to 16 MiB), once the writer is
//     within an eighth of the reserved range's end (at most 2 MiB: the
//     pages a background goroutine makes writable ahead of the writer,
//     so that Enqueue rarely takes a page fault). Nothing is written
//     past the reserved range, so a full disk makes Enqueue return an
//     error wrapping syscall.ENOSPC, never a SIGBUS, and the queue works
//     again once space is freed. (On darwin, which has no such
//     fallocate, arena files are allocated in full.)
//  3. Read by every consumer. Reads never touch files: they only move
//     positions.
//  4. Released by a flush (explicit, periodic, or Close): once the
//     flush has made durable the consumer positions of its start, the
//     arenas wholly below the lowest of them go, oldest first, renamed or
//     removed by the flusher while producers and consumers go on. From
//     the flush's start no Seek or new consumer reaches them, and it does
//     not sync them: in a steady state their pages may never reach the
//     disk. After a power loss the durable positions therefore always
//     find their messages. The arena holding the newest record is always
//     kept, and with no consumer nothing goes: the data waits for the
//     next one (what every consumer had read when a flush started goes
//     with that flush, when it succeeds, even if the last consumer is
//     deleted meanwhile). Between flushes, with background flushing
//     on, an enqueue that starts an arena while others are evicted from
//     memory has the flusher reclaim too, once about 1 MiB of arenas
//     (at least one) is wholly below every consumer: it fsyncs the
//     directory, makes the consumer positions durable, then the
//     watermark past those arenas, renames or removes them and fsyncs
//     the directory again. It syncs no
//     arena and moves no checkpoint, so it makes no promise and breaks
//     none; a queue read as fast as it is written then writes almost
//     nothing but the index to the disk.
//     Retention (SetMaxBytes, SetMaxAge) removes arenas the same way,
//     read or not (see Retention).
//  5. Kept as a spare, at most 64 and at most 64 MiB in all (so none
//     with arenas over 64 MiB), or removed. A spare is reused as the next
//     tail arena, where rewriting already allocated blocks is cheaper than
//     faulting in fresh ones; one this process reserved in full is
//     reused without reserving again (a crash leaves none: NewQueue
//     deletes spares). An arena every consumer has read keeps its
//     mapping when it is evicted from memory (it is "parked"), and the
//     spare it becomes takes the mapping over, so reusing it maps
//     nothing (and, when it is known reserved, opens nothing); one
//     fstatat, after the rename, still checks that the arena's name names
//     the file mapped, at the arena's size. A spare truncated, removed or
//     replaced under the live queue is given up for a fresh file, the
//     change reported by the next Flush; only one the queue cannot remove
//     from the arena's name (a directory put there) fails the write, until
//     it is gone. A new
//     arena of at most 256 KiB whose blocks are all reserved (a spare,
//     mostly) has all its pages made writable in one call when it is
//     created, instead of a page fault per page (Linux 5.14 and later,
//     MADV_POPULATE_WRITE). When reserving an arena's blocks finds
//     the disk full, the queue removes its spares and tries again before
//     it reports ENOSPC.
//  6. Given back: a flush that finds nothing to do (an idle queue) and
//     Close remove every spare (a Close after a failed sync leaves them;
//     the idle flush keeps a prepared next arena, one block),
//     and NewQueue deletes spares a crash or such a Close left, since
//     their records might pass for later ones.
//
// After draining a queue and closing it, what stays on disk is the index
// and the arena holding the newest records.
//
// # Concurrency
//
// Queue and Consumer are safe for concurrent use by many goroutines. The
// queue's lock has two halves: an Enqueue whose message fits the arena
// being written holds only the producers' half, and a Dequeue or
// DequeueAppend (of the queue or of a Consumer; DequeueWait when a
// message is there) of an intact message in a mapped arena holds only
// the consumers' half, so one producer and one consumer run at the same
// time. Every other operation, and those two when they need more (a new
// arena, a message crossing arenas, damage to report), holds both, as one
// mutex would. The background flusher holds the lock only to collect
// what to sync, never while msync runs. Goroutines sharing one Consumer
// share its position: each message goes to one of them.
// NewQueue locks the directory with flock: a second NewQueue on it, from
// this process or another, fails at once with ErrLocked until Close.
//
// # The directory, the lock and file systems
//
// NewQueue resolves the directory once: it creates it when missing
// (fsyncing the parent, so that the new directory survives a power loss),
// opens it, and does every later file operation relative to that
// descriptor (openat, renameat, unlinkat, fsync of the descriptor). A
// relative path followed by os.Chdir, or a symlink switched by a deploy,
// does not move a live queue into another directory; renaming the
// directory under a live queue moves the queue with it.
//
// The lock is an exclusive flock on the directory itself, not on a file
// in it: no file can be deleted to let a second owner in, and it holds
// across processes on one machine (not across NFS clients). A "lock" file
// left by earlier versions is ignored.
//
// Files are created with O_EXCL and opened with O_NOFOLLOW: the queue
// never truncates a file it did not make, nor follows a symlink planted
// in its directory. An arena file whose header names another queue or
// arena (copied or renamed in) is refused with ErrCorrupt before any of
// its records is read. Where recovery removes leftover arena files (below
// the reclaim watermark, past the tail, above a lost bottom), one whose
// intact header names another queue is renamed to damaged-<n>.bq instead
// (then damaged-<n>-<k>.bq; none replaces another), durably before a new
// file takes its name; when that rename fails, NewQueue fails and the
// file stays. A file of this queue under another number is removed as a
// leftover (a power loss can leave a spare renamed into place with its
// old header), and so is one whose header is not intact or of another
// format version. Another queue's file over the tail's arena is set aside
// and the arena made anew; over an older arena that holds records it is
// read as damage, and the reclaim later removes or reuses it like any
// arena read past. Index and arenas that leave the directory while the
// queue is open (removed, or replaced by a rename) make the next Flush or
// Close fail with ErrCorrupt instead of reporting success for data no
// later NewQueue would find. What a checkpoint covered and is missing at
// the next open is reported: when the newest arena files were deleted,
// truncated or damaged, every consumer that had not read them gets one
// ErrCorrupt saying how many messages were lost, also after a reopen; a
// gap or damage further down is reported by the read that reaches it.
// When the oldest arena files are missing, every consumer whose stored
// position lay in them gets one ErrCorrupt saying how many messages it
// had not read were lost, then reads on from the oldest message left
// (reclaiming removes an arena only once a flush, or the flusher's
// reclaim between flushes, made every position past it durable, and
// retention records what it removes).
//
// File systems: disk blocks are reserved with fallocate; where there is
// none (ext2, ext3, ramfs) the range is read and written back, which
// reserves it too. On btrfs the queue's files are created NOCOW
// (FS_NOCOW_FL), so that rewriting a reserved page needs no new block
// (btrfs then also skips its own data checksums for them; the queue has
// its own). Some file systems can still fail a write through a mapping
// when they are full: btrfs needs room for metadata on every page it
// dirties, and ext4 serving an ext2 image allocates at the fault. The
// access then faults (SIGBUS); the queue turns that into an error
// wrapping ErrFault, instead of the crash Go makes of it by default, and
// fails closed: nothing acknowledged is lost, and NewQueue recovers once
// space is free (on a btrfs with no space left at all, NewQueue itself
// fails with ErrFault). For the same reason a Flush on a full btrfs can
// fail with ENOSPC from msync; the queue then fails closed too, and a
// reopen recovers it. ext4, XFS and tmpfs report a full disk as ENOSPC
// from the reservation, before anything is written. Snapshots of a btrfs
// subvolume make its files copy-on-write again.
//
// Limits: every mapped arena is one mapping of the process (two for an
// arena of more than 8 MiB this process created, whose first 4 MiB
// carry their own read-ahead advice); with SetMaxInMemArenas(0) (no
// limit) a queue of tens of thousands of arenas
// can exhaust vm.max_map_count (65,530 by default on Linux) and make
// later mmaps, the Go runtime's included, fail. Keep the default limit,
// or a bound well below that, unless arenas are large. Parked arenas and
// spares that kept their mappings (see Disk space) are mappings beyond
// SetMaxInMemArenas: together at most as many as there may be spares (64,
// and 64 MiB), so none with arenas over 64 MiB. Consumers are
// bounded by the index size NewQueue accepts (ErrTooManyConsumers, about
// four million); adding one costs O(1).
//
// # Durability
//
// The contract, tested by the package's crash and corruption tests:
//
//  1. A process crash (kill -9, panic) loses nothing whose Enqueue returned
//     nil, and no consumer position that a Dequeue returned with. Commits
//     are single aligned 8-byte stores into the mapped index, so a crash at
//     any instant leaves the old or the new state.
//  2. A power loss or OS crash loses nothing that a successful Flush
//     covered, explicit or periodic (SetPeriodicFlushOps,
//     SetPeriodicFlushDuration), but what retention removed on purpose,
//     which the consumers that had not read it are told (ErrDropped). Flush msyncs the arenas, fsyncs the
//     directory when files changed, then writes a checkpoint into the index
//     and msyncs it. An arena evicted from memory keeps its written pages
//     in the page cache, and the next Flush fsyncs its file (with 64
//     such arenas waiting, eviction msyncs first); after a crash, the
//     first flush fsyncs the arenas written since the last checkpoint. A
//     flush does not sync the arenas it is about to reclaim, which every
//     consumer has read: they are out of reach of Seek and new consumers
//     from its start; it msyncs the index for the consumer positions
//     past them first, then stores the reclaim watermark past them
//     before its checkpoint, so that no durable state names their
//     unsynced pages (docs/FORMAT.md, Flushing). The background
//     flusher's reclaim between flushes (see Disk space) takes the same
//     steps without syncing any arena or storing a checkpoint.
//  3. After any crash the queue opens by itself and holds a prefix of what
//     was enqueued. Opening verifies the records written since the last
//     checkpoint (checksum, length, sequence number) and cuts the tail back
//     to the last valid one; consumer positions are clamped to it. Reads
//     check every record again, so a torn, zeroed or stale record is never
//     delivered: the reading call returns an error wrapping ErrCorrupt that
//     says where and how much it skipped, and the consumer moves on to the
//     first record of the next intact arena, or to the tail. The rules
//     recovery follows are in docs/FORMAT.md (see On-disk format).
//  4. A full disk, too many mappings, I/O errors and faults in the mapped
//     files (ErrFault, see above) are returned as errors.
//     A failed msync or fsync is never retried into a false success: the
//     queue fails closed, and every later call but Close returns that error
//     until the queue is reopened.
//
// # Choices where the original is silent
//
//   - Reopening without SetArenaSize uses the stored arena size; with a
//     different SetArenaSize it returns ErrInvalidArenaSize.
//   - Messages are at most MaxMessageSize (4 GiB - 1) bytes, consumer
//     names 1 to MaxConsumerNameLen bytes.
//   - A reclaim error (renaming or removing an arena file) fails nothing:
//     it shows in Stats.LastFlushError at once, and the next explicit
//     Flush or Close returns it once (the background flusher does not
//     consume it).
//   - A consumer whose stored position is damaged (its entry in the index
//     fails its checksum) loses that position. NewQueue opens anyway. The
//     next consumer created, preferably the one of that name (the default
//     consumer re-created by a queue-level read included), starts at the
//     oldest stored message like any new consumer, and its first read
//     returns an error wrapping ErrCorrupt that says so, so that a
//     restart at the oldest message (repeating or skipping messages)
//     never goes unreported.
//   - After a shutdown that was not a clean Close, opening reads the
//     records written since the last flush and the rest of the newest
//     arena file (at most the arena size), which it clears so that no
//     stale record can pass for a new one. Opening and closing a queue
//     that is only read syncs nothing.
//   - Arena files without an index are damage: NewQueue refuses them with
//     ErrCorrupt and deletes nothing. An index removed or replaced while
//     the queue is open makes the next Flush or Close fail with ErrCorrupt
//     (the queue fails closed): what they would sync is in no file the
//     next NewQueue reads.
//   - An arena file missing between two present ones is reported by the
//     read that reaches it (ErrCorrupt), which goes on with the next
//     arena. Missing oldest arena files are reported too, to every
//     consumer that stood in them (see The directory, the lock and file
//     systems).
//   - Messages removed by retention are reported as ErrDropped, never as
//     ErrCorrupt.
//   - Seek accepts the sequence numbers stored and Stats().NextSeq (the
//     end, where Position stands after the last message), so that
//     c.Seek(c.Position()) works while that message is stored.
//   - All ends after yielding an error other than ErrDropped and
//     ErrCorrupt (after those the consumer has moved on, and it goes on
//     if the body continues); when the context ends it yields ctx.Err()
//     and stops. It commits only where it read: if another goroutine
//     moved the consumer in between, nothing is committed.
//   - PublishExpvar refuses, with ErrInvalidName, a name expvar already
//     has, where expvar.Publish would panic.
//
// # Inspecting a queue
//
// Inspect opens a queue directory read-only, for tools: Info (sizes,
// arenas, messages, consumers and their lag, the last flush), Verify
// (every record's checksum, every arena file and consumer slot, damage
// reported by file and offset) and Messages (what a consumer would read,
// without moving it). It changes no file, and holds the directory's lock
// until Close. The command cmd/bigqueue of the repository is built on it.
//
// # On-disk format
//
// Every file starts with a magic number and the format version; every
// record carries a CRC32C, its length and a sequence number; lengths are
// bounded before anything is allocated. A directory of another format
// version is refused with ErrIncompatibleVersion. Retention added two
// fields in bytes version 1 kept zero (an arena's start time, the index's
// retention mark), which older builds of version 1 ignore.
//
// The byte layout, frozen at format version 1, is drawn in format.go next
// to its codecs; the order in which the queue writes and syncs it, and the
// rules recovery follows after a crash, are in docs/FORMAT.md:
// https://github.com/bigqueue-go/bigqueue/blob/main/docs/FORMAT.md
package bigqueue

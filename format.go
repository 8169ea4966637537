package bigqueue

// This file is the on-disk format: the byte layout of every file of a
// queue directory, the constants that name its offsets, and the codecs
// that write and check them. The layout is frozen: changing any constant
// is a format break that needs a new formatVersion. (Retention put two
// fields into bytes version 1 kept zero, which earlier builds neither
// check nor write: the arena start time and the retention mark. A
// directory written without them reads as one without retention.)
// Nothing else in the package hard-codes an offset. The order in which
// these fields are written and synced, and the rules by which NewQueue
// reads them back after a crash, are in docs/FORMAT.md of the repository.
//
// All integers are little-endian. The format version is 1. A queue
// directory holds:
//
//	index.bq        the index: header, then consumer slots
//	index.bq.tmp    an index being created, renamed to index.bq once
//	                synced; creating an index deletes one a crash left
//	arena-<n>.bq    arena number n, n in decimal, all of one size
//	spare-<n>.bq    a consumed arena kept for reuse as a later arena;
//	                NewQueue deletes the ones a crash left
//	damaged-<n>.bq  an arena of the wrong size, one under the tail's
//	                name whose header names another queue or arena, or
//	                another queue's file where recovery deletes
//	                leftovers, set aside for inspection; the queue never
//	                reads it again.
//	                A later set-aside of the same number gets
//	                damaged-<n>-<k>.bq, k = 1, 2, ...: none replaces another
//	lock            made by earlier versions, ignored; the owner now
//	                flocks the directory itself
//
// Records form one logical byte stream. Logical offset L lives in arena
// L / D at byte 64 + L % D of its file, where D is the arena size minus the
// 64-byte arena header; a record may span any number of arenas. Head, tail
// and consumer positions are logical offsets of record boundaries.
//
// Index header (the first 512 bytes of index.bq, one disk sector):
//
//	off  size  field
//	  0     8  magic "BQINDEX\x00"
//	  8     4  format version
//	 12     4  CRC32C of bytes 0-11 and 16-31
//	 16     8  arena size in bytes
//	 24     8  queue id, random, repeated in every arena header
//	 32     8  tail: end of the last committed record (commit word)
//	 40     8  reclaim watermark: an offset in the oldest arena kept (the
//	           oldest stored record while open), msynced before a flush
//	           removes arenas; arena files below its arena were reclaimed
//	           and NewQueue deletes them
//	 48    32  checkpoint slot 0
//	 80    32  checkpoint slot 1
//	112     8  clean mark: 1 after a clean Close; cleared, and the
//	           index msynced, before the first write into an arena after
//	           opening. Without it, NewQueue zeroes the tail arena's
//	           bytes past the tail (records of an interrupted run that
//	           could otherwise pass for later ones after another power
//	           loss)
//	120     8  retention mark: the highest watermark a removal by
//	           retention (SetMaxBytes, SetMaxAge) stored, 0 when none did.
//	           A consumer position below both it and the watermark lost
//	           messages to retention, and NewQueue reports that
//	           (ErrDropped); one below the watermark only (a damaged
//	           index) moves on to the oldest record silently.
//	           Written in the same sector, and msync, as the watermark.
//	           (Zero before retention existed: older readers ignore it.)
//	128   384  zero
//
// Checkpoint slot (the valid slot with the higher generation counts):
//
//	off  size  field
//	  0     8  offset flushed up to (a record boundary)
//	  8     8  sequence number of the record at that offset
//	 16     8  generation, +1 per flush; written to slot generation%2
//	 24     4  CRC32C of bytes 0-23
//	 28     4  zero
//
// Consumer slot (256 bytes each, from byte 512 on; the file grows by
// doubling the slot area):
//
//	off  size  field
//	  0     8  position: next record to read (commit word)
//	  8     4  state (written last when a slot is filled): 0 free,
//	           1 used, 2 used by a consumer that took the slot of a
//	           damaged one (its first read reports ErrCorrupt, then the
//	           state becomes 1), 3 damaged (failed its CRC; kept until a
//	           new consumer takes it)
//	 12     4  name length, 1 to 224
//	 16     4  CRC32C of bytes 12-15 and the name
//	 20     4  with state 2: how many messages recovery found lost that
//	           the consumer had not read (0: unknown); else zero
//	 24     8  sequence number of the record at the position, stored
//	           just before the position; opening accepts a position whose
//	           record carries it and passes its CRC, and otherwise walks
//	           the arena's record headers to prove it is a boundary
//	 32   224  name
//
// Arena header (the first 64 bytes of every arena file):
//
//	off  size  field
//	  0     8  magic "BQARENA\x00"
//	  8     4  format version
//	 12     4  CRC32C of bytes 0-11 and 16-63
//	 16     8  arena size in bytes
//	 24     8  queue id
//	 32     8  arena number
//	 40     8  logical offset of the first record boundary at or after
//	           the arena's start (may lie in a later arena)
//	 48     8  sequence number of that record
//	 56     8  time the arena was started: Unix nanoseconds when the
//	           write that reached it created it; 0 (unknown) in arenas
//	           written before retention existed. SetMaxAge reads it:
//	           an arena's records were all enqueued before the next
//	           arena was started
//
// Record frame (in the logical stream):
//
//	off  size  field
//	  0     4  CRC32C of bytes 4-15 and the payload
//	  4     4  payload length
//	  8     8  sequence number, one more than the previous record's
//	 16     n  payload
//
// The first record of a queue has sequence number 0. The public
// sequence number of a message (Position, Seek) is its record's plus
// one, so that the first message ever enqueued has 1 and 0 can mean
// "none" or "unknown".
//
// Offsets and sequence numbers above 2^62 cannot be written (that is 4 EiB
// of records); read from the index, they count as damage.
//
// A length is trusted only when the record fits below the tail; a record
// is delivered only when its sequence number is the one the consumer
// expects and its checksum matches.
//
// Disk blocks of an arena file are reserved ahead of the writer in steps
// (arena_manager.go), and no byte past the reserved range is written; the
// file has its full size from the start, sparse beyond the reserved part.

import (
	"encoding/binary"
	"fmt"
	"hash/crc32"
	"math/bits"
	"sync/atomic"
	"unsafe"
)

// Format constants, frozen; the layout they name is drawn above.
const (
	formatVersion = 1

	indexMagic = "BQINDEX\x00"
	arenaMagic = "BQARENA\x00"

	// Index header, one 512-byte sector, so that a torn write of the page
	// still leaves the commit words of one moment together.
	idxMagicOff     = 0   // [8]byte indexMagic
	idxVersionOff   = 8   // uint32 formatVersion
	idxHeaderCRCOff = 12  // uint32 CRC32C of bytes [0,12) and [16,32)
	idxArenaSizeOff = 16  // uint64 arena size in bytes
	idxQueueIDOff   = 24  // uint64 random id shared with every arena header
	idxTailOff      = 32  // uint64 commit word: logical end of the last record
	idxHeadOff      = 40  // uint64 reclaim watermark: an offset in the oldest arena kept
	idxCkptOff      = 48  // two checkpoint slots of ckptSize bytes
	idxCleanOff     = 112 // uint64 cleanMark after a clean Close; cleared, msynced, before the first arena write after opening
	idxRetainedOff  = 120 // uint64 the highest watermark retention stored; 0 = none
	indexHeaderSize = 512

	// Checkpoint slot: what the last successful flush made durable.
	ckptOffsetOff = 0  // uint64 logical offset of the flushed tail
	ckptSeqOff    = 8  // uint64 sequence number of the next record there
	ckptGenOff    = 16 // uint64 generation; the valid slot with the highest wins
	ckptCRCOff    = 24 // uint32 CRC32C of bytes [0,24)
	ckptSize      = 32

	// Consumer slots follow the header, slotSize bytes each.
	slotOffsetOff  = 0  // uint64 commit word: the consumer's next record
	slotStateOff   = 8  // uint32 slotFree, slotUsed, slotLost or slotDamaged; written last on create
	slotNameLenOff = 12 // uint32 length of the name
	slotCRCOff     = 16 // uint32 CRC32C of bytes [12,16) and the name
	slotLostOff    = 20 // uint32 with slotLost: messages lost, saturated; 0 when unknown
	slotSeqOff     = 24 // uint64 hint: sequence number of the record at the position, stored just before it
	slotNameOff    = 32 // name bytes, at most MaxConsumerNameLen
	slotSize       = 256

	cleanMark = 1

	slotFree    = 0
	slotUsed    = 1
	slotLost    = 2 // its consumer lost messages to damage (its own slot, or records recovery cut); its first read reports it
	slotDamaged = 3 // failed its checksum; kept until a consumer is created in its place

	// Arena header, at the start of every arena file.
	arenaMagicOff      = 0  // [8]byte arenaMagic
	arenaVersionOff    = 8  // uint32 formatVersion
	arenaCRCOff        = 12 // uint32 CRC32C of bytes [0,12) and [16,64)
	arenaSizeOff       = 16 // uint64 arena size in bytes
	arenaQueueIDOff    = 24 // uint64 the index's queue id
	arenaIDOff         = 32 // uint64 arena number
	arenaFirstOff      = 40 // uint64 logical offset of the first record boundary >= arena start
	arenaFirstSeqOff   = 48 // uint64 sequence number of that record
	arenaStartedOff    = 56 // int64 Unix nanoseconds the arena was started; 0 = unknown
	arenaHeaderSize    = 64
	recordCRCOff       = 0  // uint32 CRC32C of bytes [4,16) and the payload
	recordLenOff       = 4  // uint32 payload length
	recordSeqOff       = 8  // uint64 sequence number, +1 per record
	recordHeaderSize   = 16 // the payload follows
	initialIndexSize   = 4096
	initialIndexSlots  = (initialIndexSize - indexHeaderSize) / slotSize
	defaultConsumerKey = "__default__"
)

// maxIndexSize bounds the index file, which opening checks: it holds at
// most (maxIndexSize-indexHeaderSize)/slotSize consumers, about four
// million. A variable only so that a test can lower it.
var maxIndexSize int64 = 1 << 30

// maxOffset bounds logical offsets and sequence numbers: no queue writes
// 4 EiB. A larger one read from the index is damage, and is ignored, so
// that offset arithmetic never wraps around.
const maxOffset = 1 << 62

// MaxConsumerNameLen is the longest consumer name, in bytes.
const MaxConsumerNameLen = slotSize - slotNameOff

// MaxMessageSize is the longest message, in bytes.
const MaxMessageSize = 1<<32 - 1

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

var bigEndianHost = binary.NativeEndian.Uint16([]byte{1, 0}) != 1

// storeCommit writes v at b[0:8], little-endian, as one aligned
// word-sized store: a process killed at any instant leaves either the old
// or the new value in the page cache, never a mix. b must be 8-byte
// aligned, which every commit word is (mappings are page aligned, offsets
// multiples of 8).
//
// On 64-bit hosts that is a plain store of a machine word, which no CPU
// tears and the Go memory model does not split; an atomic store would add
// a full fence (XCHG on amd64), which waits for the record bytes just
// copied to leave the store buffer and was the most expensive instruction
// of Enqueue. The order of the stores needs no fence: a killed process
// leaves every store it executed in the page cache, and a power loss
// keeps only what msync made durable, which the flush orders. 32-bit
// hosts, where a uint64 store is two, keep the atomic store.
func storeCommit(b []byte, v uint64) {
	if bigEndianHost {
		v = bits.ReverseBytes64(v)
	}
	p := (*uint64)(unsafe.Pointer(&b[0]))
	if wordIs64 {
		*p = v
		return
	}
	atomic.StoreUint64(p, v)
}

// wordIs64 reports whether a uint64 is one machine word.
const wordIs64 = unsafe.Sizeof(uintptr(0)) == 8

func le64(b []byte) uint64 { return binary.LittleEndian.Uint64(b) }
func le32(b []byte) uint32 { return binary.LittleEndian.Uint32(b) }

func crc32Of(b []byte) uint32 { return crc32.Update(0, castagnoli, b) }

// arenaHeader is the decoded header of an arena file.
type arenaHeader struct {
	arenaSize uint64
	queueID   uint64
	id        uint64
	// first is the logical offset of the first record boundary at or after
	// the arena's start (it may lie in a later arena when a record spans
	// this one), and firstSeq the sequence number of that record. Recovery
	// uses them to find a record boundary without the index.
	first    uint64
	firstSeq uint64
	// started is when the arena was created, in Unix nanoseconds; 0 when
	// unknown (arenas of a build without retention). Every record of an
	// arena was enqueued before the next arena was started.
	started int64
}

func arenaHeaderCRC(b []byte) uint32 {
	c := crc32.Update(0, castagnoli, b[:arenaCRCOff])
	return crc32.Update(c, castagnoli, b[arenaSizeOff:arenaHeaderSize])
}

func (h arenaHeader) encode(b []byte) {
	clear(b[:arenaHeaderSize])
	copy(b[arenaMagicOff:], arenaMagic)
	binary.LittleEndian.PutUint32(b[arenaVersionOff:], formatVersion)
	binary.LittleEndian.PutUint64(b[arenaSizeOff:], h.arenaSize)
	binary.LittleEndian.PutUint64(b[arenaQueueIDOff:], h.queueID)
	binary.LittleEndian.PutUint64(b[arenaIDOff:], h.id)
	binary.LittleEndian.PutUint64(b[arenaFirstOff:], h.first)
	binary.LittleEndian.PutUint64(b[arenaFirstSeqOff:], h.firstSeq)
	binary.LittleEndian.PutUint64(b[arenaStartedOff:], uint64(h.started))
	binary.LittleEndian.PutUint32(b[arenaCRCOff:], arenaHeaderCRC(b))
}

// decodeArenaHeader checks and decodes the header at the start of b.
func decodeArenaHeader(b []byte) (arenaHeader, error) {
	if len(b) < arenaHeaderSize {
		return arenaHeader{}, fmt.Errorf("arena header: %d bytes: %w", len(b), ErrCorrupt)
	}
	if string(b[arenaMagicOff:arenaMagicOff+8]) != arenaMagic {
		return arenaHeader{}, fmt.Errorf("arena header: bad magic: %w", ErrCorrupt)
	}
	if v := le32(b[arenaVersionOff:]); v != formatVersion {
		return arenaHeader{}, fmt.Errorf("arena header: format version %d: %w", v, ErrIncompatibleVersion)
	}
	if got, want := le32(b[arenaCRCOff:]), arenaHeaderCRC(b); got != want {
		return arenaHeader{}, fmt.Errorf("arena header: checksum %#x, want %#x: %w", got, want, ErrCorrupt)
	}
	return arenaHeader{
		arenaSize: le64(b[arenaSizeOff:]),
		queueID:   le64(b[arenaQueueIDOff:]),
		id:        le64(b[arenaIDOff:]),
		first:     le64(b[arenaFirstOff:]),
		firstSeq:  le64(b[arenaFirstSeqOff:]),
		started:   int64(le64(b[arenaStartedOff:])),
	}, nil
}

// belongsTo returns an error wrapping ErrCorrupt unless h names arena id
// of the queue queueID with arenaSize bytes per arena: an intact header
// that names another arena or queue marks a file copied or renamed in,
// whose records are not this queue's, however valid their checksums.
func (h arenaHeader) belongsTo(id, queueID, arenaSize uint64) error {
	if h.id != id || h.queueID != queueID || h.arenaSize != arenaSize {
		return fmt.Errorf("arena %d: header names arena %d of queue %#x, size %d, not this queue's (%#x): %w",
			id, h.id, h.queueID, h.arenaSize, queueID, ErrCorrupt)
	}
	return nil
}

// encodeRecord writes the whole record of msg with sequence number seq
// into b, which is exactly recordHeaderSize+len(msg) bytes: the payload
// first, then the header, whose checksum is taken in one pass over the
// stored bytes (the covered header bytes and the payload are contiguous
// there; two passes, as encodeRecordHeader takes, cost a third more on
// a 128-byte message).
func encodeRecord(b []byte, seq uint64, msg []byte) {
	copy(b[recordHeaderSize:], msg)
	binary.LittleEndian.PutUint32(b[recordLenOff:], uint32(len(msg)))
	binary.LittleEndian.PutUint64(b[recordSeqOff:], seq)
	binary.LittleEndian.PutUint32(b[recordCRCOff:], crc32Of(b[recordLenOff:]))
}

// recordHeader is the decoded header of a record frame.
type recordHeader struct {
	crc    uint32 // CRC32C of the header's bytes [4,16) and the payload
	length uint32 // payload length
	seq    uint64 // sequence number, one more than the previous record's
}

// encodeRecordHeader writes into b the header of a record with sequence
// number seq whose payload is msg.
func encodeRecordHeader(b []byte, seq uint64, msg []byte) {
	binary.LittleEndian.PutUint32(b[recordLenOff:], uint32(len(msg)))
	binary.LittleEndian.PutUint64(b[recordSeqOff:], seq)
	binary.LittleEndian.PutUint32(b[recordCRCOff:], crc32.Update(crc32Of(b[recordLenOff:recordHeaderSize]), castagnoli, msg))
}

// decodeRecordHeader decodes the header at the start of b. The caller
// bounds the length (against the tail) before it reads the payload.
func decodeRecordHeader(b []byte) recordHeader {
	return recordHeader{crc: le32(b[recordCRCOff:]), length: le32(b[recordLenOff:]), seq: le64(b[recordSeqOff:])}
}

// recordHeaderSum returns the checksum of the covered bytes of the
// encoded header b, which crc32.Update extends over the payload; the
// record is intact when the result equals the header's crc. (It works on
// the caller's bytes: a copy here would escape to the heap on every read.)
func recordHeaderSum(b []byte) uint32 { return crc32Of(b[recordLenOff:recordHeaderSize]) }

// size returns the bytes the record takes in the stream.
func (h recordHeader) size() uint64 { return recordHeaderSize + uint64(h.length) }

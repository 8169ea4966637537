package bigqueue

import (
	"os"

	"golang.org/x/sys/cpu"
)

// arena is one fixed-size file of the queue. Arena number id holds the
// logical bytes [id*dataSize, (id+1)*dataSize) of the record stream after
// its arenaHeaderSize-byte header. All fields are guarded by the queue's mu.
type arena struct {
	id    uint64
	data  []byte // the mapping, len == arena size; nil when not mapped
	dirty bool   // written since its last msync was started
	pins  int    // > 0 while a flush msyncs it without mu; not unmapped then
	// reserved is how many bytes from the start of the file are known to
	// have disk blocks (0 when unknown: a file mapped after opening). No
	// byte at or past it is written before arenaManager.reserve moves it.
	reserved int
	// faulted is how many bytes from the start of the mapping the
	// prefaulter has populated (prefault.go); faulted <= reserved.
	faulted int
	// prefaultAt is the end of a write past which writeAt asks the
	// prefaulter for more pages.
	prefaultAt int
	// file is the arena's file, kept open while it is the one the writer
	// reserves blocks in (arenaManager.writing), so that reserving a step
	// is one fallocate; nil otherwise.
	file *os.File
	// fid identifies the file mapped: a mapping kept for a spare
	// (arenaManager.park) is reused only while the spare's name still
	// names that file.
	fid fileID

	// lastUse is arenaManager.clock at the last access: LRU order.
	// Readers (dequeueFast) write it while the writer uses the fields
	// above: a line of its own.
	_       cpu.CacheLinePad
	lastUse uint64
}

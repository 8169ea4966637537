package bigqueue

import (
	"encoding/binary"
	"fmt"
	"hash/crc32"
)

// arena is one fixed-size file of the queue. Arena number id holds the
// logical bytes [id*dataSize, (id+1)*dataSize) of the record stream after
// its arenaHeaderSize-byte header. All fields are guarded by the queue's mu.
type arena struct {
	id      uint64
	data    []byte // the mapping, len == arena size; nil when not mapped
	lastUse uint64 // arenaManager.clock at the last access; LRU order
	dirty   bool   // written since its last msync was started
	pins    int    // > 0 while a flush msyncs it without mu; not unmapped then
	// reserved is how many bytes from the start of the file are known to
	// have disk blocks (0 when unknown: a file mapped after opening). No
	// byte at or past it is written before arenaManager.reserve moves it.
	reserved int
}

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
	}, nil
}

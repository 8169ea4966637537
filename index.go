package bigqueue

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"os"
)

// checkpoint is what a successful flush made durable: every record below
// offset, and seq, the sequence number of the record at offset.
type checkpoint struct {
	offset uint64
	seq    uint64
	gen    uint64
}

// consumerSlot is a decoded consumer entry of the index.
type consumerSlot struct {
	slot      int
	name      string
	offset    uint64
	seqHint   uint64 // to be checked against the record at offset
	lost      bool   // slotLost: the consumer's first read reports ErrCorrupt
	lostCount uint32 // with lost: how many messages, when known
}

// damagedSlot is a consumer slot that failed its checksum, with the name
// it may have held: the name bytes up to the stored length or the first
// zero byte.
type damagedSlot struct {
	slot  int
	names []string
}

// index is the memory-mapped index file. All methods need the queue's mu.
// A flush that syncs it without mu takes data under mu and calls syncData:
// grow replaces data under mu only, but keeps the old mapping, which
// shares its pages, until close.
type index struct {
	fs   fileSystem
	dir  *queueDir
	path string // for messages
	id   fileID // the file mapped; the queue checks the directory still names it
	// freeFrom is a slot number below which no slot is free.
	freeFrom int
	data     []byte   // the mapping; len is the file size
	retired  [][]byte // mappings replaced by grow; unmapped by close, as a flush may still sync one
}

func headerCRC(b []byte) uint32 {
	c := crc32.Update(0, castagnoli, b[:12])
	return crc32.Update(c, castagnoli, b[16:32])
}

// createIndex writes a new index file in dir for a queue with the given
// arena size and id, and maps it. The file is written and synced under a
// temporary name and renamed into place, so that a crash leaves either no
// index or a complete one; the caller fsyncs the directory. On failure no
// temporary file is left behind.
func createIndex(fs fileSystem, dir *queueDir, arenaSize int, queueID uint64) (x *index, err error) {
	path := dir.join(indexFileName)
	const tmp = indexFileName + ".tmp"
	// One a crash left is garbage: it never got the index's name.
	if err := fs.remove(dir, tmp); err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("create index: %w", err)
	}
	f, err := fs.create(dir, tmp)
	if err != nil {
		return nil, fmt.Errorf("create index: %w", err)
	}
	defer f.Close()
	renamed := false
	defer func() {
		if err != nil && !renamed {
			if rerr := fs.remove(dir, tmp); rerr != nil && !errors.Is(rerr, os.ErrNotExist) {
				err = errors.Join(err, rerr)
			}
		}
	}()
	if err := fs.allocate(f, 0, initialIndexSize); err != nil {
		return nil, fmt.Errorf("allocate index %s: %w", path, err)
	}
	// The header is in place before the file gets its name, so that
	// every visible index has one. A new queue has no consumer: the
	// default one comes with the first queue-level read.
	init := &index{data: make([]byte, initialIndexSize)}
	hdr := init.data[:indexHeaderSize]
	copy(hdr[idxMagicOff:], indexMagic)
	binary.LittleEndian.PutUint32(hdr[idxVersionOff:], formatVersion)
	binary.LittleEndian.PutUint64(hdr[idxArenaSizeOff:], uint64(arenaSize))
	binary.LittleEndian.PutUint64(hdr[idxQueueIDOff:], queueID)
	binary.LittleEndian.PutUint32(hdr[idxHeaderCRCOff:], headerCRC(hdr))
	if _, err := f.WriteAt(init.data, 0); err != nil {
		return nil, fmt.Errorf("write index %s: %w", path, err)
	}
	if err := fs.syncFile(f); err != nil {
		return nil, fmt.Errorf("sync index %s: %w", path, err)
	}
	if err := fs.rename(dir, tmp, indexFileName); err != nil {
		return nil, fmt.Errorf("create index: %w", err)
	}
	renamed = true
	st, err := statFile(f)
	if err != nil {
		return nil, err
	}
	data, err := fs.mmap(f, initialIndexSize)
	if err != nil {
		return nil, err
	}
	return &index{fs: fs, dir: dir, path: path, id: st.id, data: data}, nil
}

// openIndex maps an existing index file and checks its header. It returns
// ErrIncompatibleVersion for another format version and ErrCorrupt for a
// file that is not a readable index.
func openIndex(fs fileSystem, dir *queueDir) (*index, error) {
	path := dir.join(indexFileName)
	f, err := fs.open(dir, indexFileName)
	if err != nil {
		return nil, fmt.Errorf("open index: %w", err)
	}
	defer f.Close()
	st, err := statFile(f)
	if err != nil {
		return nil, fmt.Errorf("stat index: %w", err)
	}
	size, id := st.size, st.id
	if size < initialIndexSize || (size-indexHeaderSize)%slotSize != 0 || size > maxIndexSize {
		return nil, fmt.Errorf("index %s: size %d is not a valid index size: %w", path, size, ErrCorrupt)
	}
	data, err := fs.mmap(f, int(size))
	if err != nil {
		return nil, err
	}
	if err := checkIndexHeader(data); err != nil {
		if uerr := unmap(data); uerr != nil {
			return nil, fmt.Errorf("index %s: %w (unmap: %v)", path, err, uerr)
		}
		return nil, fmt.Errorf("index %s: %w", path, err)
	}
	return &index{fs: fs, dir: dir, path: path, id: id, data: data}, nil
}

func checkIndexHeader(b []byte) error {
	if string(b[idxMagicOff:idxMagicOff+8]) != indexMagic {
		return fmt.Errorf("bad magic %q: %w", b[:8], ErrCorrupt)
	}
	if v := le32(b[idxVersionOff:]); v != formatVersion {
		return fmt.Errorf("format version %d, this library reads %d: %w", v, formatVersion, ErrIncompatibleVersion)
	}
	if got, want := le32(b[idxHeaderCRCOff:]), headerCRC(b); got != want {
		return fmt.Errorf("header checksum %#x, want %#x: %w", got, want, ErrCorrupt)
	}
	return nil
}

func (x *index) arenaSize() uint64 { return le64(x.data[idxArenaSizeOff:]) }
func (x *index) queueID() uint64   { return le64(x.data[idxQueueIDOff:]) }
func (x *index) tail() uint64      { return le64(x.data[idxTailOff:]) }
func (x *index) head() uint64      { return le64(x.data[idxHeadOff:]) }

func (x *index) setTail(v uint64) { storeCommit(x.data[idxTailOff:], v) }

// clean reports whether the queue was closed cleanly: every arena byte
// past the tail is zero (see arenaManager.zeroPast).
func (x *index) clean() bool { return le64(x.data[idxCleanOff:]) == cleanMark }
func (x *index) setClean(on bool) {
	v := uint64(0)
	if on {
		v = cleanMark
	}
	storeCommit(x.data[idxCleanOff:], v)
}
func (x *index) setHead(v uint64) { storeCommit(x.data[idxHeadOff:], v) }

// checkpoint returns the valid checkpoint slot with the highest generation,
// or the zero checkpoint when neither slot is valid.
func (x *index) checkpoint() checkpoint {
	var best checkpoint
	for i := 0; i < 2; i++ {
		s := x.data[idxCkptOff+i*ckptSize:][:ckptSize]
		if le32(s[ckptCRCOff:]) != crc32.Checksum(s[:ckptCRCOff], castagnoli) {
			continue
		}
		c := checkpoint{offset: le64(s[ckptOffsetOff:]), seq: le64(s[ckptSeqOff:]), gen: le64(s[ckptGenOff:])}
		if c.gen > best.gen {
			best = c
		}
	}
	if best.offset > maxOffset || best.seq > maxOffset {
		// Damage: nothing is known to be flushed. The generation stays,
		// so that the next flush's checkpoint wins over this one.
		return checkpoint{gen: best.gen}
	}
	return best
}

// setCheckpoint writes c into the slot the current checkpoint does not
// occupy, so a crash in the middle leaves the previous one intact.
func (x *index) setCheckpoint(c checkpoint) {
	s := x.data[idxCkptOff+int(c.gen%2)*ckptSize:][:ckptSize]
	binary.LittleEndian.PutUint64(s[ckptOffsetOff:], c.offset)
	binary.LittleEndian.PutUint64(s[ckptSeqOff:], c.seq)
	binary.LittleEndian.PutUint64(s[ckptGenOff:], c.gen)
	binary.LittleEndian.PutUint32(s[ckptCRCOff:], crc32.Checksum(s[:ckptCRCOff], castagnoli))
}

func (x *index) slots() int { return (len(x.data) - indexHeaderSize) / slotSize }

func (x *index) slot(i int) []byte {
	return x.data[indexHeaderSize+i*slotSize:][:slotSize]
}

func slotCRC(s []byte, nameLen int) uint32 {
	c := crc32.Update(0, castagnoli, s[slotNameLenOff:slotCRCOff])
	return crc32.Update(c, castagnoli, s[slotNameOff:slotNameOff+nameLen])
}

// consumers decodes every used slot. A slot that fails its checksum, or
// whose state word is none of the known ones, is marked slotDamaged and
// returned in damaged. A torn create cannot make one (the state word is
// written last), so it is damage, and the consumer it held has lost its
// position: the next consumer created claims the slot and reports that
// (see Queue.claimDamaged).
func (x *index) consumers() (list []consumerSlot, damaged []damagedSlot) {
	for i := 0; i < x.slots(); i++ {
		s := x.slot(i)
		state := le32(s[slotStateOff:])
		if state == slotFree {
			continue
		}
		n := int(le32(s[slotNameLenOff:]))
		if (state != slotUsed && state != slotLost) || n == 0 || n > MaxConsumerNameLen || le32(s[slotCRCOff:]) != slotCRC(s, n) {
			binary.LittleEndian.PutUint32(s[slotStateOff:], slotDamaged)
			name := s[slotNameOff:]
			var names []string
			if n > 0 && n <= MaxConsumerNameLen {
				names = append(names, string(name[:n]))
			}
			if z := bytes.IndexByte(name, 0); z > 0 {
				names = append(names, string(name[:z]))
			}
			damaged = append(damaged, damagedSlot{slot: i, names: names})
			continue
		}
		list = append(list, consumerSlot{slot: i, name: string(s[slotNameOff : slotNameOff+n]),
			offset: le64(s[slotOffsetOff:]), seqHint: le64(s[slotSeqOff:]), lost: state == slotLost, lostCount: le32(s[slotLostOff:])})
	}
	return list, damaged
}

// freeSlot returns the number of the lowest unused slot, or -1 when all
// are used. It scans from freeFrom, below which every slot is in use, so
// that adding consumers one after another costs O(1) each, not a scan of
// every slot.
func (x *index) freeSlot() int {
	for i := x.freeFrom; i < x.slots(); i++ {
		if le32(x.slot(i)[slotStateOff:]) == slotFree {
			x.freeFrom = i
			return i
		}
	}
	x.freeFrom = x.slots()
	return -1
}

// addConsumer fills slot i with name at (offset, seq). The state word,
// slotUsed or, with lost, slotLost, is written last, so a crash before it
// leaves the slot as it was.
func (x *index) addConsumer(i int, name string, offset, seq uint64, lost bool) {
	s := x.slot(i)
	clear(s[slotNameLenOff:])
	binary.LittleEndian.PutUint32(s[slotNameLenOff:], uint32(len(name)))
	copy(s[slotNameOff:], name)
	binary.LittleEndian.PutUint32(s[slotCRCOff:], slotCRC(s, len(name)))
	x.setConsumerPosition(i, offset, seq)
	state := uint32(slotUsed)
	if lost {
		state = slotLost
	}
	binary.LittleEndian.PutUint32(s[slotStateOff:], state)
}

// markReported turns slot i from slotLost into slotUsed.
func (x *index) markReported(i int) {
	s := x.slot(i)
	binary.LittleEndian.PutUint32(s[slotLostOff:], 0)
	binary.LittleEndian.PutUint32(s[slotStateOff:], slotUsed)
}

// markLost turns slot i into slotLost: its consumer's next read reports
// that n messages it had not read were lost (n = 0: an unknown number),
// also after a reopen.
func (x *index) markLost(i int, n uint64) {
	s := x.slot(i)
	binary.LittleEndian.PutUint32(s[slotLostOff:], uint32(min(n, 1<<32-1)))
	binary.LittleEndian.PutUint32(s[slotStateOff:], slotLost)
}

func (x *index) removeConsumer(i int) {
	binary.LittleEndian.PutUint32(x.slot(i)[slotStateOff:], slotFree)
	x.freeFrom = min(x.freeFrom, i)
}

// setConsumerPosition stores the sequence hint, then commits the offset.
// A crash between the two leaves a hint that does not match the record at
// the offset, which recovery detects and resolves by walking the arena.
func (x *index) setConsumerPosition(i int, off, seq uint64) {
	s := x.slot(i)
	binary.LittleEndian.PutUint64(s[slotSeqOff:], seq)
	storeCommit(s[slotOffsetOff:], off)
}

// grow doubles the number of slots: it extends the file and maps it anew.
// The old mapping is kept until close, since a flush may be syncing it
// without mu; it shares its pages with the new one. Needs mu.
func (x *index) grow() error {
	size := int64(len(x.data)-indexHeaderSize)*2 + indexHeaderSize
	if size > maxIndexSize {
		// Opening refuses a larger index: growing past it would make the
		// queue unopenable.
		return fmt.Errorf("grow index past %d bytes (%d consumers): %w", maxIndexSize, x.slots(), ErrTooManyConsumers)
	}
	f, err := x.fs.open(x.dir, indexFileName)
	if err != nil {
		return fmt.Errorf("grow index: %w", err)
	}
	defer f.Close()
	if err := x.fs.allocate(f, int64(len(x.data)), size); err != nil {
		return fmt.Errorf("grow index %s to %d bytes: %w", x.path, size, err)
	}
	data, err := x.fs.mmap(f, int(size))
	if err != nil {
		return fmt.Errorf("grow index: %w", err)
	}
	x.retired = append(x.retired, x.data)
	x.data = data
	return nil
}

// sync msyncs the index. Needs mu.
func (x *index) sync() error { return x.syncData(x.data) }

// syncData msyncs data, the index's mapping as taken under mu, or one
// grow retired since. Needs flushMu (close does not run then).
func (x *index) syncData(data []byte) error {
	if err := x.fs.syncMapping(x.dir, indexFileName, data); err != nil {
		return fmt.Errorf("msync index %s: %w", x.path, err)
	}
	return nil
}

func (x *index) close() error {
	var errs []error
	for _, b := range append(x.retired, x.data) {
		if err := unmap(b); err != nil {
			errs = append(errs, fmt.Errorf("unmap index %s: %w", x.path, err))
		}
	}
	x.data, x.retired = nil, nil
	return errors.Join(errs...)
}

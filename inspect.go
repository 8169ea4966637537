package bigqueue

import (
	"cmp"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"iter"
	"math"
	"os"
	"path/filepath"
	"slices"
	"syscall"
	"time"
)

// This file is the read-only view of a queue directory that tools such as
// cmd/bigqueue use to look inside a queue without opening it: Inspect,
// Inspection.Info, Inspection.Verify and Inspection.Messages. It reads the
// files with pread, through the codecs of format.go, and writes nothing:
// no consumer moves, no recovery runs, no file changes. It mirrors what
// NewQueue's recovery would find (recovery.go) without acting on it.

// Info describes a queue directory as Inspection.Info returns it.
type Info struct {
	// FormatVersion is the on-disk format version of the index.
	FormatVersion int
	// QueueID is the random number that ties the index and the arenas of
	// one queue together.
	QueueID uint64
	// ArenaSize is the size of every arena file, in bytes.
	ArenaSize int
	// Arenas lists the arena files that hold queue data, in order.
	Arenas []ArenaFile
	// Spares names the spare files (consumed arenas kept for reuse, or
	// the next arena prepared ahead of the writer) and
	// SetAside the arena files that the queue set aside for inspection
	// (damaged-N.bq or damaged-N-K.bq: of the wrong size, or another
	// queue's file); neither holds queue data.
	Spares, SetAside []string
	// Leftovers names arena files that NewQueue will delete (or set
	// aside, when the header names another queue): below the
	// reclaim watermark (a removal that was interrupted) or past the
	// tail (an interrupted write).
	Leftovers []string
	// Messages and Bytes count what is stored, from the oldest message
	// still kept to the newest, record headers (16 bytes each) included
	// in Bytes: what Stats reports for an open queue.
	Messages int64
	Bytes    int64
	// Consumers lists every consumer, sorted by name.
	Consumers []ConsumerInfo
	// DamagedSlots counts consumer slots of the index that fail their
	// checksum: those consumers' positions are lost (see doc.go).
	DamagedSlots int
	// Clean reports whether the queue was closed cleanly; when not, the
	// next NewQueue recovers it (after a crash, or while in use).
	Clean bool
	// Flushes is the number of flushes that wrote a checkpoint over the
	// queue's life (the checkpoint's generation), and Unflushed the bytes
	// of records past that checkpoint: what a power loss before the next
	// flush may take.
	Flushes   uint64
	Unflushed int64
	// Truncated is the number of bytes past the last intact record up to
	// the tail the index names: after a crash, what NewQueue will cut.
	Truncated int64
	// IndexModified is the modification time of the index file. The
	// format stores no time: this is when the queue last wrote to its
	// index (an enqueue, a read, a flush) as the file system saw it.
	IndexModified time.Time
}

// ArenaFile is an arena file of a queue directory.
type ArenaFile struct {
	ID   uint64 // the arena number
	Name string // the file name, arena-<ID>.bq
	Size int64  // the file size in bytes (the arena size, sparse)
}

// ConsumerInfo describes one consumer.
type ConsumerInfo struct {
	Name string
	// Lag is the number of messages the consumer has not read (its Len).
	Lag int64
	// Offset is the logical offset of the next record it reads, the
	// offsets Verify's damage reports use.
	Offset uint64
	// Unproven reports a position that is not a record boundary the
	// records confirm: its next read reports ErrCorrupt and skips ahead.
	// Lost reports a consumer whose next read reports ErrCorrupt once:
	// it took the slot of a damaged one, or arena files holding messages
	// it had not read are missing.
	Unproven, Lost bool
}

// Report is what Inspection.Verify found.
type Report struct {
	// Records and Bytes count the intact records checked, and the bytes
	// they take, record headers included.
	Records int64
	Bytes   int64
	// Damage lists every failed check: records, arena files, consumer
	// slots. Empty for an intact queue.
	Damage []Damage
	// Notes are findings that are not damage: an unclean shutdown that
	// the next NewQueue recovers from, leftover files it deletes.
	Notes []string
}

// Damage is one failed check of Inspection.Verify.
type Damage struct {
	// File is the name of the damaged file inside the queue directory.
	File string
	// Arena is the arena number, or -1 when File is the index.
	Arena int64
	// Offset is the byte offset of the damage inside File.
	Offset int64
	// Reason says what failed and what readers do about it.
	Reason string
}

func (d Damage) String() string {
	if d.Arena < 0 {
		return fmt.Sprintf("%s offset %d: %s", d.File, d.Offset, d.Reason)
	}
	return fmt.Sprintf("arena %d (%s) offset %d: %s", d.Arena, d.File, d.Offset, d.Reason)
}

// Inspection is a read-only view of a queue directory, made by Inspect. It
// holds the directory's lock until Close, so that no Queue changes the
// files under it. It is not safe for concurrent use.
type Inspection struct {
	dir    string
	d      *queueDir    // opened and locked by Inspect; every file is read through it
	unlock func() error // releases the directory lock; nil once closed
	r      *storeReader
	info   Info

	tail, tailSeq     uint64 // end of the last intact record, and the next sequence number
	oldest, oldestSeq uint64 // the oldest stored record
	consumers         map[string]inspectedConsumer
	damaged           []damagedSlot
	slots             []consumerSlot
	ckpt              checkpoint
	limit             uint64 // the tail the index names (or its checkpoint, when later)
	storedHead        uint64 // the index's reclaim watermark
	retained          uint64 // the index's retention mark (retention.go)
	clean             bool
}

// inspectedConsumer is where a consumer would read next, as recovery
// would place it.
type inspectedConsumer struct {
	off, seq uint64 // seq is unknownSeq for a position that is no proven boundary
	lost     bool   // it took the slot of a damaged one
	missing  bool   // it stood in arena files found missing (Queue.reportMissing)
}

// Inspect opens the queue in dir read-only, for Info, Verify and Messages.
// It takes the directory's lock, which it holds until Close: meanwhile
// NewQueue on dir fails with ErrLocked. It reads the index and the
// records written since the last flush (none after a clean Close), not
// the whole queue, and writes nothing.
//
// Errors: an error wrapping fs.ErrNotExist when dir holds no queue;
// ErrForeignQueue for a directory written by github.com/grandecola/bigqueue
// or holding other files; ErrLocked when a Queue, in this process or
// another, holds dir; ErrIncompatibleVersion; ErrCorrupt for an index that
// cannot be read or arena files without an index; and file system errors.
// Damage elsewhere is not an error: Verify reports it.
func Inspect(dir string) (*Inspection, error) {
	d, err := openQueueDir(dir)
	if errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("inspect queue %s: no queue there (no such directory): %w", dir, err)
	}
	if err != nil {
		return nil, fmt.Errorf("inspect queue %s: %w", dir, err)
	}
	fail := func(err error) (*Inspection, error) {
		return nil, errors.Join(fmt.Errorf("inspect queue %s: %w", dir, err), d.close())
	}
	// The lock NewQueue takes: an flock on the directory itself.
	if err := d.lock(); err != nil {
		return fail(err)
	}
	if err := checkBeforeOpen(d, &options{}); err != nil {
		return fail(err)
	}
	if _, err := d.stat(indexFileName); err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return fail(fmt.Errorf("no queue there (no %s): %w", indexFileName, err))
		}
		return fail(err)
	}
	in := &Inspection{dir: dir, d: d, unlock: d.close}
	if err := in.load(); err != nil {
		return nil, errors.Join(fmt.Errorf("inspect queue %s: %w", dir, err), in.Close())
	}
	return in, nil
}

// Close releases the directory lock and the files. It is idempotent.
func (in *Inspection) Close() error {
	if in == nil || in.unlock == nil {
		return nil
	}
	var errs []error
	if in.r != nil {
		errs = append(errs, in.r.close())
	}
	errs = append(errs, in.unlock())
	in.unlock = nil
	return errors.Join(errs...)
}

// ProbeTail returns the end of the queue's records as the index in dir
// stores it, read without the directory's lock: a cheap way for a program
// to notice, while another process holds the queue, that messages were
// enqueued (cmd/bigqueue's pop -wait polls it). The value is opaque and
// only worth comparing with an earlier one: it grows with every enqueue,
// and a writer may be changing it as it is read. Errors: an error wrapping
// fs.ErrNotExist when dir holds no queue; ErrCorrupt or
// ErrIncompatibleVersion for an index header that does not check out.
func ProbeTail(dir string) (uint64, error) {
	// O_NONBLOCK: a FIFO planted as the index must not block the probe
	// until a writer comes; it reads as an index shorter than its header.
	f, err := os.OpenFile(filepath.Join(dir, indexFileName), os.O_RDONLY|syscall.O_NONBLOCK, 0)
	if err != nil {
		return 0, fmt.Errorf("probe queue %s: %w", dir, err)
	}
	hdr := make([]byte, indexHeaderSize)
	_, err = io.ReadFull(f, hdr)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF) {
		err = fmt.Errorf("index shorter than its header: %w", ErrCorrupt)
	}
	if err == nil {
		err = checkIndexHeader(hdr)
	}
	if err != nil {
		return 0, fmt.Errorf("probe queue %s: %w", dir, err)
	}
	return le64(hdr[idxTailOff:]), nil
}

// load reads the index and lists the arenas, then finds the tail, the
// oldest record and every consumer's position as recovery would.
func (in *Inspection) load() error {
	raw, modified, err := readIndexFile(in.d)
	if err != nil {
		return err
	}
	if err := checkIndexHeader(raw); err != nil {
		return fmt.Errorf("index: %w", err)
	}
	x := &index{data: raw} // a private copy: consumers() may mark slots in it
	arenaSize := x.arenaSize()
	if arenaSize < arenaHeaderSize+recordHeaderSize || arenaSize > MaxArenaSize || arenaSize > math.MaxInt {
		return fmt.Errorf("index: arena size %d: %w", arenaSize, ErrCorrupt)
	}
	in.info = Info{
		FormatVersion: int(le32(raw[idxVersionOff:])),
		QueueID:       x.queueID(),
		ArenaSize:     int(arenaSize),
		IndexModified: modified,
		Clean:         x.clean(),
	}
	in.r = &storeReader{d: in.d, arenaSize: arenaSize, dataSize: arenaSize - arenaHeaderSize,
		queueID: x.queueID(), present: make(map[uint64]bool)}
	in.ckpt, in.clean = x.checkpoint(), x.clean()
	in.info.Flushes = in.ckpt.gen
	idxTail := x.tail()
	if idxTail > maxOffset {
		idxTail = in.ckpt.offset // damage: the checkpoint is all that is known
	}
	in.limit = max(idxTail, in.ckpt.offset)
	in.slots, in.damaged = x.consumers()
	in.info.DamagedSlots = len(in.damaged)
	in.storedHead, in.retained = x.head(), x.retained()
	if err := in.inventory(x.head()); err != nil {
		return err
	}
	if err := in.findTail(); err != nil {
		return err
	}
	if err := in.placeConsumers(); err != nil {
		return err
	}
	in.fillInfo()
	return nil
}

// readIndexFile reads the index file whole, after bounding its size as
// openIndex does, and returns it with its modification time.
func readIndexFile(d *queueDir) ([]byte, time.Time, error) {
	f, err := d.openRead(indexFileName)
	if err != nil {
		return nil, time.Time{}, fmt.Errorf("open index: %w", err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, time.Time{}, fmt.Errorf("stat index: %w", err)
	}
	size := st.Size()
	if size < initialIndexSize || (size-indexHeaderSize)%slotSize != 0 || size > maxIndexSize {
		return nil, time.Time{}, fmt.Errorf("index: size %d is not a valid index size: %w", size, ErrCorrupt)
	}
	raw := make([]byte, size)
	if _, err := io.ReadFull(f, raw); err != nil {
		return nil, time.Time{}, fmt.Errorf("read index: %w", err)
	}
	return raw, st.ModTime(), nil
}

// inventory lists the directory as arenaManager.inventory does, without
// deleting anything: arena files below the reclaim watermark's arena or
// past the tail are leftovers NewQueue deletes; the others are present.
func (in *Inspection) inventory(idxHead uint64) error {
	r, ds := in.r, in.r.dataSize
	names, err := in.d.names()
	if err != nil {
		return fmt.Errorf("list queue directory: %w", err)
	}
	floor := uint64(0)
	if idxHead <= in.limit {
		floor = idxHead / ds
	}
	limitArena := (in.limit + ds - 1) / ds
	for _, name := range names {
		if _, ok := parseFileNumber(name, "spare-"); ok {
			in.info.Spares = append(in.info.Spares, name)
			continue
		}
		if isSetAsideName(name) {
			in.info.SetAside = append(in.info.SetAside, name)
			continue
		}
		id, ok := parseFileNumber(name, "arena-")
		switch {
		case !ok:
		case id < floor || id >= limitArena:
			in.info.Leftovers = append(in.info.Leftovers, name)
		default:
			r.present[id] = true
		}
	}
	for id := range r.present {
		r.ids = append(r.ids, id)
	}
	slices.Sort(r.ids)
	if len(r.ids) > 0 {
		r.first, r.next = r.ids[0], r.ids[len(r.ids)-1]+1
	} else {
		r.first = max(in.ckpt.offset/ds, floor)
		r.next = r.first
	}
	// arenaManager.cutLostBottom: the oldest arenas missing above the
	// watermark while the checkpoint lies at the start of the oldest of
	// them were created after the last directory fsync, and the later
	// ones go too: the queue restarts at the checkpoint.
	if r.first > floor && r.first < r.next && in.ckpt.offset == floor*ds {
		for _, id := range r.ids {
			in.info.Leftovers = append(in.info.Leftovers, arenaName(id))
		}
		clear(r.present)
		r.ids = nil
		r.first, r.next = floor, floor
	}
	return nil
}

// findTail finds the end of the last intact record as recovery does
// (arenaManager.recoverTail): it walks the records from the boundary
// startPoint picks up to the tail the index names. Arena files past the
// tail's arena, which recovery deletes, become leftovers.
func (in *Inspection) findTail() error {
	r, ds := in.r, in.r.dataSize
	start, seq, err := in.startPoint()
	if err != nil {
		return err
	}
	in.tail, in.tailSeq = start, seq
	for in.tail < in.limit {
		n, reason, err := r.check(in.tail, in.tailSeq, in.limit, true)
		if err != nil {
			return err
		}
		if reason != "" {
			break
		}
		in.tail += recordHeaderSize + n
		in.tailSeq++
	}
	keepNext := (in.tail + ds - 1) / ds
	if in.tail%ds != 0 && !r.present[in.tail/ds] {
		keepNext = in.tail / ds
	}
	for len(r.ids) > 0 && r.ids[len(r.ids)-1] >= keepNext {
		id := r.ids[len(r.ids)-1]
		r.ids = r.ids[:len(r.ids)-1]
		delete(r.present, id)
		in.info.Leftovers = append(in.info.Leftovers, arenaName(id))
	}
	r.next = keepNext
	r.first = min(r.first, r.next)
	return nil
}

// startPoint is arenaManager.startPoint on the files as they are: the
// record boundary recovery verifies from, with its sequence number. The
// checkpoint, when its arena is there and no proven boundary contradicts
// it; else the lowest proven boundary (a consumer position whose record
// carries its stored sequence number, or the first record the oldest
// arena's header names) when no consumer stands below it; else the tail,
// when a consumer stands there; else the start of the oldest arena.
func (in *Inspection) startPoint() (uint64, uint64, error) {
	r, ds := in.r, in.r.dataSize
	lo, limit, ckpt := r.first*ds, in.limit, in.ckpt
	type boundary struct{ off, seq uint64 }
	var bounds []boundary
	for _, c := range in.slots {
		if c.offset < lo || c.offset >= limit || c.seqHint > maxOffset {
			continue
		}
		_, reason, err := r.check(c.offset, c.seqHint, limit, true)
		if err != nil {
			return 0, 0, err
		}
		if reason == "" {
			bounds = append(bounds, boundary{c.offset, c.seqHint})
		}
	}
	usable := lo <= ckpt.offset && (ckpt.offset <= r.next*ds || ckpt.offset/ds == r.next)
	if usable && ckpt.offset < r.next*ds {
		_, err := r.open(ckpt.offset / ds) // there and whole
		if err != nil && !isDamage(err) {
			return 0, 0, err
		}
		usable = err == nil
	}
	sane, err := in.ckptFitsHeaders()
	if err != nil {
		return 0, 0, err
	}
	for _, b := range bounds {
		if !seqFits(min(b.off, ckpt.offset), min(b.seq, ckpt.seq), max(b.off, ckpt.offset), max(b.seq, ckpt.seq)) ||
			(b.off < ckpt.offset) != (b.seq < ckpt.seq) {
			sane = false
		}
	}
	if usable && sane {
		return ckpt.offset, ckpt.seq, nil
	}
	if r.first < r.next {
		h, err := r.header(r.first)
		switch {
		case err == nil && h.first >= lo && h.first <= min(limit, r.next*ds) && h.firstSeq <= maxOffset:
			bounds = append(bounds, boundary{h.first, h.firstSeq})
		case err != nil && !isDamage(err):
			return 0, 0, err
		}
	}
	if len(bounds) > 0 {
		b := slices.MinFunc(bounds, func(a, b boundary) int { return cmp.Compare(a.off, b.off) })
		below := slices.ContainsFunc(in.slots, func(c consumerSlot) bool { return c.offset >= lo && c.offset < b.off })
		if !below {
			return b.off, b.seq, nil
		}
	}
	seq, atTail := ckpt.seq, false
	writable := limit == r.next*ds || (limit/ds >= r.first && limit/ds < r.next && r.present[limit/ds])
	writable = writable && !slices.ContainsFunc(in.slots, func(c consumerSlot) bool { return c.offset >= lo && c.offset < limit })
	for _, c := range in.slots {
		if c.offset == limit && c.offset >= lo && writable && c.seqHint <= maxOffset {
			if !atTail || c.seqHint > seq {
				seq = c.seqHint
			}
			atTail = true
		}
	}
	if atTail {
		return limit, seq, nil
	}
	if !sane {
		for _, c := range in.slots {
			if c.seqHint <= maxOffset {
				seq = max(seq, c.seqHint)
			}
		}
	}
	return lo, seq, nil
}

// ckptFitsHeaders is arenaManager.ckptFitsHeaders: whether the checkpoint
// agrees with the intact headers of the arenas holding the bytes just
// before and at its offset.
func (in *Inspection) ckptFitsHeaders() (bool, error) {
	r, ckpt := in.r, in.ckpt
	ids := []uint64{ckpt.offset / r.dataSize}
	if ckpt.offset > 0 {
		ids = append(ids, (ckpt.offset-1)/r.dataSize)
	}
	for _, id := range ids {
		if !r.present[id] {
			continue
		}
		h, err := r.header(id)
		if err != nil {
			if isDamage(err) {
				continue
			}
			return false, err
		}
		if h.first <= ckpt.offset && !seqFits(h.first, h.firstSeq, ckpt.offset, ckpt.seq) {
			return false, nil
		}
	}
	return true, nil
}

// placeConsumers places every consumer and the oldest stored record as
// recovery's placeConsumers does.
func (in *Inspection) placeConsumers() error {
	r, ds := in.r, in.r.dataSize
	in.consumers = make(map[string]inspectedConsumer, len(in.slots))
	var below []string
	for _, c := range in.slots {
		st := inspectedConsumer{off: c.offset, lost: c.lost}
		switch {
		case c.offset >= in.tail || r.first == r.next:
			st.off, st.seq = in.tail, in.tailSeq
		case c.offset < r.first*ds:
			below = append(below, c.name)
		default:
			_, reason, err := r.check(c.offset, c.seqHint, in.tail, true)
			if err != nil {
				return err
			}
			st.seq = c.seqHint
			if reason != "" {
				if st.seq, err = r.seqAt(c.offset, in.tail, in.tailSeq); err != nil {
					return err
				}
			}
		}
		in.consumers[c.name] = st
	}
	in.oldest, in.oldestSeq = in.tail, in.tailSeq
	if r.first < r.next {
		h, ok, err := r.oldestBoundary(r.first, in.tail)
		if err != nil {
			return err
		}
		if ok && h.firstSeq <= in.tailSeq {
			in.oldest, in.oldestSeq = h.first, h.firstSeq
		}
	}
	for _, st := range in.consumers {
		if st.off >= r.first*ds && st.off < in.oldest {
			in.oldest, in.oldestSeq = st.off, st.seq
		}
	}
	for _, name := range below {
		st := in.consumers[name]
		// Retention's removals are no loss; anything else is.
		dropped := st.off < in.storedHead && st.off < in.retained && in.retained/ds <= in.storedHead/ds && in.storedHead <= in.tail
		st.missing = !dropped
		st.off, st.seq = in.oldest, in.oldestSeq
		in.consumers[name] = st
	}
	return nil
}

// lag is Queue.lag for an inspected position.
func (in *Inspection) lag(off, seq uint64) int64 {
	switch {
	case off >= in.tail:
		return 0
	case seq > in.tailSeq:
		return 1
	}
	return int64(in.tailSeq - seq)
}

func (in *Inspection) fillInfo() {
	for _, id := range in.r.ids {
		name := arenaName(id)
		var size int64
		if f, err := in.d.openRead(name); err == nil {
			if st, err := f.Stat(); err == nil {
				size = st.Size()
			}
			if err := f.Close(); err != nil {
				size = 0 // as for a file that went away: shown as 0 bytes
			}
		}
		in.info.Arenas = append(in.info.Arenas, ArenaFile{ID: id, Name: name, Size: size})
	}
	in.info.Bytes = int64(in.tail - in.oldest)
	in.info.Messages = in.lag(in.oldest, in.oldestSeq)
	for name, st := range in.consumers {
		in.info.Consumers = append(in.info.Consumers, ConsumerInfo{Name: name, Lag: in.lag(st.off, st.seq),
			Offset: st.off, Unproven: st.seq == unknownSeq && st.off < in.tail, Lost: st.lost || st.missing})
	}
	slices.SortFunc(in.info.Consumers, func(a, b ConsumerInfo) int { return cmp.Compare(a.Name, b.Name) })
	if in.tail > in.ckpt.offset {
		in.info.Unflushed = int64(in.tail - in.ckpt.offset)
	}
	if in.limit > in.tail {
		in.info.Truncated = int64(in.limit - in.tail)
	}
}

// Info returns what Inspect found: sizes, files, messages and consumers.
// It costs nothing: Inspect computed it.
func (in *Inspection) Info() Info {
	info := in.info
	info.Arenas = slices.Clone(info.Arenas)
	info.Consumers = slices.Clone(info.Consumers)
	return info
}

// verifyProgressStep is how many bytes Verify walks between two calls of
// its progress function.
const verifyProgressStep = 4 << 20

// Verify walks every stored record from the oldest one to the tail and
// checks its length, sequence number and checksum; it checks every arena
// file (present between the oldest and the newest, of the arena size,
// with an intact header of this queue), every consumer slot and every
// consumer position. Each failed check is a Damage in the report, with the
// file and offset; after a damaged record it goes on where a reader would,
// at the first record of the next intact arena. progress, when not nil, is
// called now and then with the bytes walked and the bytes to walk.
//
// It reads the whole queue once, in order, holding one read buffer; it
// allocates nothing per record. The error is an I/O error that stopped
// it; damage is never an error.
func (in *Inspection) Verify(progress func(done, total int64)) (Report, error) {
	if in == nil || in.unlock == nil {
		return Report{}, ErrClosed
	}
	r, ds := in.r, in.r.dataSize
	var rep Report
	for _, d := range in.damaged {
		name := ""
		if len(d.names) > 0 {
			name = fmt.Sprintf(" (it held consumer %q)", d.names[0])
		}
		rep.Damage = append(rep.Damage, Damage{File: indexFileName, Arena: -1, Offset: int64(indexHeaderSize + d.slot*slotSize),
			Reason: fmt.Sprintf("consumer slot %d fails its checksum%s: that consumer's position is lost", d.slot, name)})
	}
	for _, c := range in.info.Consumers {
		if c.Lost {
			rep.Notes = append(rep.Notes, fmt.Sprintf("consumer %q took the slot of a damaged consumer: its next read reports that its position was lost", c.Name))
		}
	}

	// Arena files: holes, sizes and headers. (The numbers present may
	// be far apart: a range of missing ones is one damage.)
	for i, id := range r.ids {
		name := arenaName(id)
		if i > 0 && r.ids[i-1] < id-1 {
			gap := Damage{File: arenaName(r.ids[i-1] + 1), Arena: int64(r.ids[i-1] + 1),
				Reason: "arena file is missing between two present ones: readers skip its records"}
			if n := id - 1 - r.ids[i-1]; n > 1 {
				gap.Reason = fmt.Sprintf("arena files %d to %d (%d files) are missing between two present ones: readers skip their records", r.ids[i-1]+1, id-1, n)
			}
			rep.Damage = append(rep.Damage, gap)
		}
		if _, err := r.header(id); err != nil {
			if !isDamage(err) {
				return rep, err
			}
			rep.Damage = append(rep.Damage, Damage{File: name, Arena: int64(id), Reason: err.Error()})
		}
	}

	// Records, from the oldest to the tail.
	total := int64(in.tail - in.oldest)
	report := func(pos uint64) {
		if progress != nil {
			progress(int64(pos-in.oldest), total)
		}
	}
	report(in.oldest)
	next := in.oldest + verifyProgressStep
	pos, seq := in.oldest, in.oldestSeq
	for pos < in.tail {
		n, reason, err := r.check(pos, seq, in.tail, true)
		if err != nil {
			return rep, err
		}
		if reason != "" {
			to, toSeq := in.skipFrom(pos)
			rep.Damage = append(rep.Damage, in.recordDamage(pos, seq, reason, to, toSeq))
			pos, seq = to, toSeq
		} else {
			rep.Records++
			rep.Bytes += int64(recordHeaderSize + n)
			pos += recordHeaderSize + n
			seq++
		}
		if pos >= next {
			report(pos)
			next = pos + verifyProgressStep
		}
	}
	report(in.tail)

	// Consumer positions.
	for _, c := range in.info.Consumers {
		if c.Unproven {
			id := c.Offset / ds
			rep.Damage = append(rep.Damage, Damage{File: arenaName(id), Arena: int64(id), Offset: int64(arenaHeaderSize + c.Offset%ds),
				Reason: fmt.Sprintf("consumer %q stands at stream offset %d, which is no record boundary: its next read reports it and skips ahead", c.Name, c.Offset)})
		}
	}

	if !in.clean {
		rep.Notes = append(rep.Notes, "the queue was not closed cleanly: the next NewQueue recovers it")
	}
	if in.limit > in.tail {
		rep.Notes = append(rep.Notes, fmt.Sprintf("the index names records up to stream offset %d, the last intact one ends at %d: the next NewQueue cuts the tail there (%d bytes)",
			in.limit, in.tail, in.limit-in.tail))
		if in.tail < in.ckpt.offset {
			id := in.tail / ds
			rep.Damage = append(rep.Damage, Damage{File: arenaName(id), Arena: int64(id), Offset: int64(arenaHeaderSize + in.tail%ds),
				Reason: fmt.Sprintf("records a flush made durable are damaged from stream offset %d on (the checkpoint covers up to %d)", in.tail, in.ckpt.offset)})
		}
	}
	for _, name := range in.info.Leftovers {
		rep.Notes = append(rep.Notes, fmt.Sprintf("%s is left over from an interrupted reclaim or write: the next NewQueue deletes it (or sets it aside, when its header names another queue)", name))
	}
	for _, name := range in.info.SetAside {
		rep.Notes = append(rep.Notes, fmt.Sprintf("%s is an arena file that was set aside earlier (of the wrong size, or of another queue); the queue never reads it", name))
	}
	return rep, nil
}

// recordDamage describes the damaged record at pos, which a reader
// expecting sequence number seq skips to (to, toSeq).
func (in *Inspection) recordDamage(pos, seq uint64, reason string, to, toSeq uint64) Damage {
	ds := in.r.dataSize
	id := pos / ds
	lost := ""
	if toSeq >= seq && toSeq != unknownSeq {
		lost = fmt.Sprintf(", %d messages", toSeq-seq)
	}
	return Damage{File: arenaName(id), Arena: int64(id), Offset: int64(arenaHeaderSize + pos%ds),
		Reason: fmt.Sprintf("record at stream offset %d: %s: readers skip %d bytes%s, to stream offset %d", pos, reason, to-pos, lost, to)}
}

// skipFrom returns where a reader goes past a damaged record at pos, as
// Queue.skipDamage does: the first record of the next arena whose header
// is intact, or the tail.
func (in *Inspection) skipFrom(pos uint64) (uint64, uint64) {
	r, ds := in.r, in.r.dataSize
	for id := r.nextPresent(pos/ds + 1); id*ds < in.tail && id < r.next; id = r.nextPresent(id + 1) {
		h, err := r.header(id)
		if err == nil && h.first > pos && h.first >= id*ds && h.first < in.tail && h.firstSeq < in.tailSeq {
			return h.first, h.firstSeq
		}
	}
	return in.tail, in.tailSeq
}

// Messages returns the stored messages that the consumer called name
// would read next, in order, without moving it: from its position to the
// newest message. For the default consumer ("__default__") when it does
// not exist, and for name "", it starts at the oldest stored message.
//
// A damaged record is yielded as an error wrapping ErrCorrupt that says
// where it is and how much is skipped, and the iteration goes on where the
// consumer would; so is a consumer whose slot in the index is damaged
// (the default consumer then reads from the oldest message, as a queue
// would re-create it; a named one yields nothing more). Any other error
// ends the iteration. The slice is valid until the
// next iteration. Errors: ErrNoConsumer for an unknown name; ErrClosed.
func (in *Inspection) Messages(name string) iter.Seq2[[]byte, error] {
	return func(yield func([]byte, error) bool) {
		if in == nil || in.unlock == nil {
			yield(nil, ErrClosed)
			return
		}
		pos, seq := in.oldest, in.oldestSeq
		if name != "" {
			st, ok := in.consumers[name]
			switch {
			case ok:
				pos, seq = st.off, st.seq
				if st.missing && !yield(nil, fmt.Errorf("consumer %q: arena files holding messages it had not read are missing below the oldest arena left; it reads on from offset %d: %w", name, st.off, ErrCorrupt)) {
					return
				}
				if st.lost && !st.missing && !yield(nil, fmt.Errorf("consumer %q: its slot in the index was damaged and its position lost; it starts at the oldest message, offset %d: %w", name, st.off, ErrCorrupt)) {
					return
				}
			case in.damagedName(name):
				// A queue-level read re-creates the default consumer
				// in its damaged slot, at the oldest message, and
				// reports the lost position; a named one is gone.
				err := fmt.Errorf("consumer %q: its slot in the index is damaged and its position lost: %w", name, ErrCorrupt)
				if !yield(nil, err) || name != defaultConsumerKey {
					return
				}
			case name != defaultConsumerKey:
				yield(nil, fmt.Errorf("consumer %q: %w", name, ErrNoConsumer))
				return
			}
		}
		if in.cutReported(name) && !yield(nil, fmt.Errorf("consumer %q: recovery cuts %d bytes a flush had made durable (offsets %d to %d): %w",
			name, in.ckpt.offset-in.tail, in.tail, in.ckpt.offset, ErrCorrupt)) {
			return
		}
		var buf []byte
		for pos < in.tail {
			msg, n, reason, err := in.r.record(pos, seq, in.tail, buf[:0])
			if err != nil {
				yield(nil, err)
				return
			}
			if reason != "" {
				to, toSeq := in.skipFrom(pos)
				d := in.recordDamage(pos, seq, reason, to, toSeq)
				if !yield(nil, fmt.Errorf("%s: %w", d, ErrCorrupt)) {
					return
				}
				pos, seq = to, toSeq
				continue
			}
			buf = msg
			if !yield(msg, nil) {
				return
			}
			pos += recordHeaderSize + n
			seq++
		}
	}
}

// damagedName reports whether a damaged consumer slot may have held the
// consumer called name.
func (in *Inspection) damagedName(name string) bool {
	for _, d := range in.damaged {
		if slices.Contains(d.names, name) {
			return true
		}
	}
	return false
}

// storeReader reads the logical record stream of a queue directory with
// pread, through a buffer, without mapping or changing any file. Arena
// files [first, next) that are present are read; the others, and files of
// the wrong size, read as damage (ErrCorrupt).
type storeReader struct {
	d           *queueDir
	arenaSize   uint64
	dataSize    uint64
	queueID     uint64
	first, next uint64
	present     map[uint64]bool // the arena files of [first, next) that are there
	ids         []uint64        // the same, sorted

	file    *os.File // the arena file open now, or nil
	fileID  uint64
	chunk   []byte // bytes of arena chunkID's data from chunkPos on, while chunkOK
	chunkID uint64
	chunkAt uint64
	chunkOK bool
}

// readerChunk is the size of the read buffer; smaller reads go through it.
const readerChunk = 1 << 20

func (r *storeReader) close() error {
	if r.file == nil {
		return nil
	}
	err := r.file.Close()
	r.file = nil
	return err
}

// nextPresent returns the first present arena from id on, or next.
func (r *storeReader) nextPresent(id uint64) uint64 {
	i, _ := slices.BinarySearch(r.ids, id)
	if i == len(r.ids) {
		return r.next
	}
	return r.ids[i]
}

// open returns arena file id, open for reading. A missing file or one of
// the wrong size is damage.
func (r *storeReader) open(id uint64) (*os.File, error) {
	if r.file != nil && r.fileID == id {
		return r.file, nil
	}
	if id < r.first || id >= r.next || !r.present[id] {
		return nil, fmt.Errorf("arena %d is missing (have %d to %d): %w", id, r.first, r.next, ErrCorrupt)
	}
	if err := r.close(); err != nil {
		return nil, err
	}
	f, err := r.d.openRead(arenaName(id))
	if errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("open arena %d: %w: %w", id, err, ErrCorrupt)
	}
	if err != nil {
		return nil, fmt.Errorf("open arena %d: %w", id, err)
	}
	st, err := f.Stat()
	if err == nil && st.Size() != int64(r.arenaSize) {
		err = fmt.Errorf("arena %d: size %d, want %d: %w", id, st.Size(), r.arenaSize, ErrCorrupt)
	}
	if err == nil {
		// As arenaManager.get: an intact header that names another arena
		// or queue makes the whole file damage.
		var b [arenaHeaderSize]byte
		if _, err = f.ReadAt(b[:], 0); err == nil {
			if h, herr := decodeArenaHeader(b[:]); herr == nil {
				err = h.belongsTo(id, r.queueID, r.arenaSize)
			}
		}
	}
	if err != nil {
		return nil, errors.Join(err, f.Close())
	}
	r.file, r.fileID = f, id
	return f, nil
}

// readFile fills p from byte off of arena file id.
func (r *storeReader) readFile(id uint64, off int64, p []byte) error {
	f, err := r.open(id)
	if err != nil {
		return err
	}
	if _, err := f.ReadAt(p, off); err != nil {
		if errors.Is(err, io.EOF) {
			return fmt.Errorf("read arena %d at %d: %w: %w", id, off, err, ErrCorrupt)
		}
		return fmt.Errorf("read arena %d at %d: %w", id, off, err)
	}
	return nil
}

// readAt fills p from the logical offset off, across arenas.
func (r *storeReader) readAt(off uint64, p []byte) error {
	for len(p) > 0 {
		id, pos := off/r.dataSize, off%r.dataSize
		k := min(uint64(len(p)), r.dataSize-pos)
		if err := r.readData(id, pos, p[:k]); err != nil {
			return err
		}
		p, off = p[k:], off+k
	}
	return nil
}

// readData fills p from byte pos of arena id's data; p does not run past
// the arena. Reads shorter than half the buffer go through it.
func (r *storeReader) readData(id, pos uint64, p []byte) error {
	if len(p) >= readerChunk/2 {
		return r.readFile(id, int64(arenaHeaderSize+pos), p)
	}
	b, err := r.view(id, pos, uint64(len(p)))
	if err != nil {
		return err
	}
	copy(p, b)
	return nil
}

// view returns the n bytes at byte pos of arena id's data from the read
// buffer, filling it when they are not in it; n is at most half the
// buffer, and the bytes do not run past the arena. The slice is valid
// until the next read.
func (r *storeReader) view(id, pos, n uint64) ([]byte, error) {
	if !r.chunkOK || r.chunkID != id || pos < r.chunkAt || pos+n > r.chunkAt+uint64(len(r.chunk)) {
		// From the page of pos on: the buffer then covers the n bytes,
		// and reading on from there is buffered.
		at := pos &^ 4095
		if cap(r.chunk) < readerChunk {
			r.chunk = make([]byte, readerChunk)
		}
		r.chunkOK = false
		r.chunk = r.chunk[:min(readerChunk, r.dataSize-at)]
		if err := r.readFile(id, int64(arenaHeaderSize+at), r.chunk); err != nil {
			return nil, err
		}
		r.chunkID, r.chunkAt, r.chunkOK = id, at, true
	}
	return r.chunk[pos-r.chunkAt:][:n], nil
}

// header reads and checks the header of arena id, as arenaManager.header.
func (r *storeReader) header(id uint64) (arenaHeader, error) {
	var b [arenaHeaderSize]byte
	if err := r.readFile(id, 0, b[:]); err != nil {
		return arenaHeader{}, err
	}
	h, err := decodeArenaHeader(b[:])
	if err != nil {
		return h, fmt.Errorf("arena %d: %w", id, err)
	}
	return h, h.belongsTo(id, r.queueID, r.arenaSize)
}

// oldestBoundary is arenaManager.oldestBoundary: the first record named
// by the oldest intact arena header from arena from on.
func (r *storeReader) oldestBoundary(from, limit uint64) (arenaHeader, bool, error) {
	for id := r.nextPresent(from); id < r.next; id = r.nextPresent(id + 1) {
		h, err := r.header(id)
		if err != nil {
			if isDamage(err) {
				continue
			}
			return h, false, err
		}
		if h.first >= id*r.dataSize && h.first <= r.next*r.dataSize && h.first <= limit {
			return h, true, nil
		}
	}
	return arenaHeader{}, false, nil
}

// check reports why the record at off is not one with sequence number seq
// that ends at or below limit ("" when it is) and returns its payload
// length. With sum it also checks the checksum, reading the payload
// through the buffer. Only I/O errors are errors.
func (r *storeReader) check(off, seq, limit uint64, sum bool) (uint64, string, error) {
	var hb [recordHeaderSize]byte
	h, reason, err := r.recordHeader(off, seq, limit, hb[:])
	if err != nil || reason != "" || !sum {
		return uint64(h.length), reason, err
	}
	crc, err := r.checksum(off+recordHeaderSize, uint64(h.length), recordHeaderSum(hb[:]))
	if err != nil {
		if isDamage(err) {
			return 0, err.Error(), nil
		}
		return 0, "", err
	}
	if crc != h.crc {
		return 0, fmt.Sprintf("checksum %#x, want %#x", crc, h.crc), nil
	}
	return uint64(h.length), "", nil
}

// recordHeader reads the header of the record at off into b and checks
// its sequence number and that the record ends at or below limit.
func (r *storeReader) recordHeader(off, seq, limit uint64, b []byte) (recordHeader, string, error) {
	if off > limit || limit-off < recordHeaderSize {
		return recordHeader{}, fmt.Sprintf("a record header does not fit before offset %d", limit), nil
	}
	if err := r.readAt(off, b[:recordHeaderSize]); err != nil {
		if isDamage(err) {
			return recordHeader{}, err.Error(), nil
		}
		return recordHeader{}, "", err
	}
	h := decodeRecordHeader(b)
	if h.seq != seq {
		if seq == unknownSeq {
			return h, "the position is no proven record boundary", nil
		}
		return h, fmt.Sprintf("sequence number %d, want %d", h.seq, seq), nil
	}
	if uint64(h.length) > limit-off-recordHeaderSize {
		return h, fmt.Sprintf("length %d runs past offset %d", h.length, limit), nil
	}
	return h, "", nil
}

// checksum extends crc over the n logical bytes at off, reading them in
// the read buffer, allocating nothing.
func (r *storeReader) checksum(off, n uint64, crc uint32) (uint32, error) {
	for n > 0 {
		id, pos := off/r.dataSize, off%r.dataSize
		k := min(n, r.dataSize-pos, readerChunk/2)
		b, err := r.view(id, pos, k)
		if err != nil {
			return 0, err
		}
		crc = crc32.Update(crc, castagnoli, b)
		off, n = off+k, n-k
	}
	return crc, nil
}

// record appends to dst the payload of the record at off, which must have
// sequence number seq and end at or below limit, and returns it with its
// length, or why it is damaged. A payload larger than the read buffer is
// checksummed before it is allocated, so that a damaged length never
// makes it allocate.
func (r *storeReader) record(off, seq, limit uint64, dst []byte) ([]byte, uint64, string, error) {
	var hb [recordHeaderSize]byte
	h, reason, err := r.recordHeader(off, seq, limit, hb[:])
	if err != nil || reason != "" {
		return dst, 0, reason, err
	}
	n := uint64(h.length)
	if n > readerChunk {
		if _, reason, err := r.check(off, seq, limit, true); err != nil || reason != "" {
			return dst, 0, reason, err
		}
	}
	dst = slices.Grow(dst, int(n))[:n]
	if err := r.readAt(off+recordHeaderSize, dst); err != nil {
		if isDamage(err) {
			return dst[:0], 0, err.Error(), nil
		}
		return dst[:0], 0, "", err
	}
	if crc := crc32.Update(recordHeaderSum(hb[:]), castagnoli, dst); crc != h.crc {
		return dst[:0], 0, fmt.Sprintf("checksum %#x, want %#x", crc, h.crc), nil
	}
	return dst, n, "", nil
}

// seqAt is arenaManager.seqAt: the sequence number of the record at off,
// found by walking the record headers of off's arena from the first one
// its header names, or unknownSeq when off is no proven boundary.
func (r *storeReader) seqAt(off, tail, tailSeq uint64) (uint64, error) {
	h, err := r.header(off / r.dataSize)
	if err != nil {
		if isDamage(err) {
			return unknownSeq, nil
		}
		return 0, err
	}
	p, s := h.first, h.firstSeq
	for p < off {
		n, reason, err := r.check(p, s, tail, false)
		if err != nil {
			return 0, err
		}
		if reason != "" {
			return unknownSeq, nil
		}
		p += recordHeaderSize + n
		s++
	}
	if p != off || s > tailSeq {
		return unknownSeq, nil
	}
	return s, nil
}

// cutReported reports whether a Queue opened on this directory gives
// consumer name an ErrCorrupt for records a checkpoint covered that
// recovery cuts (Queue.reportCut): every consumer stored below the
// checkpoint, and the default consumer when there is none. One whose own
// slot was lost reports that instead.
func (in *Inspection) cutReported(name string) bool {
	if name == "" || in.tail >= in.ckpt.offset {
		return false
	}
	for _, c := range in.slots {
		if c.name == name {
			st := in.consumers[name]
			return c.offset < in.ckpt.offset && !st.lost && !st.missing
		}
	}
	return name == defaultConsumerKey && !in.damagedName(name)
}

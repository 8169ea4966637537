// Package migrate imports a queue written by github.com/grandecola/bigqueue
// (the original) into a new queue of github.com/bigqueue-go/bigqueue.
//
// The original's directories cannot be opened in place: bigqueue.NewQueue
// refuses them with bigqueue.ErrForeignQueue. Import reads one, read-only,
// and writes every message that some consumer has not read yet into a new
// directory, with every consumer, the default one included, positioned at
// its first unread message:
//
//	report, err := migrate.Import("old/queue", "new/queue")
//	...
//	q, err := bigqueue.NewQueue("new/queue")
//
// # The original's format (v0.6.0, format version 1)
//
// All integers are uint64, little-endian. The directory holds
// metadata.dat and one file per arena, named "<arena id>_arena.dat", each
// exactly the arena size long (sparse), ids counting up from 0.
//
//	metadata.dat
//	offset  size  field
//	0       8     format version, 1
//	8       16    head arena id, offset (never moved: always 0, 0)
//	24      8     tail arena id
//	32      8     tail offset in that arena
//	40      8     arena size in bytes (0 until the first open completed)
//	48      8     number of consumers
//	56      ...   consumer entries, back to back:
//	              8 name length n, 8 arena id, 8 offset, n bytes of name
//
// A record is an 8-byte length followed by the payload. The length is never
// split across arenas: when fewer than 8 bytes are left in an arena, the
// record starts at offset 0 of the next one. The payload runs on into as
// many following arenas as it needs. A position (arena id, offset) is
// where the next record starts, before that skip; an offset equal to the
// arena size is stored as offset 0 of the next arena. The default
// consumer is called "__default__", as here. Nothing is ever deleted: the
// records before every consumer's position stay on disk.
package migrate

import (
	"cmp"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strconv"

	"github.com/bigqueue-go/bigqueue"
)

// Constants of the original's format, see the package documentation.
const (
	metadataName   = "metadata.dat"
	arenaSuffix    = "_arena.dat"
	formatVersion  = 1
	versionOff     = 0
	tailArenaOff   = 24
	tailOffsetOff  = 32
	arenaSizeOff   = 40
	consumersOff   = 48
	metadataSize   = 56 // header; consumer entries follow
	entryHeader    = 24 // name length, arena id, offset
	lengthSize     = 8  // record length prefix
	maxMetadata    = 1 << 30
	minArenaSize   = 4096    // the smallest page size the original ran on
	maxArenaSize   = 1 << 44 // the largest file ext4 holds; the original could not make larger arenas there
	defaultName    = "__default__"
	maxLogicalSize = 1 << 62 // no queue holds 4 EiB; bounds offset arithmetic
)

// ErrNotEmpty is returned by Import when the destination directory exists
// and holds anything: Import never adds to or overwrites a queue.
var ErrNotEmpty = errors.New("migrate: destination directory is not empty")

// Report says what Import did.
type Report struct {
	// ArenaSize is the arena size of the original queue.
	ArenaSize int
	// Messages and Bytes count the messages written to the new queue
	// and their payload bytes: every message from the oldest position of
	// any consumer to the tail.
	Messages int64
	Bytes    int64
	// Skipped counts the messages before every consumer's position: all
	// consumers had read them, the original kept them on disk anyway, and
	// they are not copied.
	Skipped int64
	// Unread maps each consumer's name to the number of messages it had
	// not read, which is its Len in the new queue. The default consumer,
	// read by Queue.Dequeue, is "__default__" in both libraries.
	Unread map[string]int64
}

// consumer is a consumer entry of the original's metadata.
type consumer struct {
	name string
	pos  int64 // canonical logical position, see canonical
	read int64 // records between the oldest position and pos
}

// source reads an original queue directory. A logical position is
// arena id * arena size + offset.
type source struct {
	dir       string
	arenaSize int64
	tail      int64 // canonical
	consumers []consumer
	file      *os.File // the arena file last read, or nil
	fileID    int64
}

// Import reads the original queue in src, read-only, and writes a new
// queue into dst, which must not exist or be empty (else ErrNotEmpty).
// opts are passed to bigqueue.NewQueue after SetArenaSize with the
// original's arena size, so the new queue keeps that size unless opts
// set another (the original's size is not applied when this library would
// refuse it, e.g. below this machine's page size).
//
// Every message that at least one consumer has not read is copied, in
// order; each consumer of the original, "__default__" included, is
// created and moved to its first unread message, so that each one's next
// Dequeue returns what it would have returned from the original. A
// consumer created later in the new queue starts at the oldest imported
// message, not at the first message ever written as in the original.
//
// The original must not be in use while it is imported: it takes no lock
// that Import could check. src is checked whole before dst is created;
// errors: those of opening or reading src; bigqueue.ErrIncompatibleVersion
// for another format version; an error wrapping bigqueue.ErrCorrupt when
// src's positions or records are inconsistent; ErrNotEmpty; the errors of
// bigqueue.NewQueue and of writing the new queue (a consumer name the new
// queue cannot hold, empty or longer than bigqueue.MaxConsumerNameLen,
// returns bigqueue.ErrInvalidName). After a failure once dst was created,
// dst holds a partial queue: remove it before trying again.
func Import(src, dst string, opts ...bigqueue.Option) (Report, error) {
	return ImportWithProgress(src, dst, nil, opts...)
}

// ImportWithProgress is Import that calls progress, when it is not nil, as
// the import goes on, with done and total counting steps: the messages
// written to dst, then the messages read past while placing the consumers
// at their positions. It is called with (0, total) before the first step
// and with (total, total) after the last one; total is known once src was
// checked.
func ImportWithProgress(src, dst string, progress func(done, total int64), opts ...bigqueue.Option) (Report, error) {
	s, err := openSource(src)
	if err != nil {
		return Report{}, fmt.Errorf("import %s: %w", src, err)
	}
	defer s.closeFile()
	report := Report{ArenaSize: int(s.arenaSize), Unread: make(map[string]int64, len(s.consumers))}
	total, err := s.scan(&report)
	if err != nil {
		return Report{}, fmt.Errorf("import %s: %w", src, err)
	}
	if err := checkEmpty(dst); err != nil {
		return Report{}, fmt.Errorf("import %s into %s: %w", src, dst, err)
	}
	if s.arenaSize >= int64(os.Getpagesize()) && s.arenaSize <= bigqueue.MaxArenaSize {
		opts = append([]bigqueue.Option{bigqueue.SetArenaSize(int(s.arenaSize))}, opts...)
	}
	q, err := bigqueue.NewQueue(dst, opts...)
	if err != nil {
		return Report{}, fmt.Errorf("import %s into %s: %w", src, dst, err)
	}
	err = s.copyInto(q, &report, total, progress)
	if cerr := q.Close(); err == nil && cerr != nil {
		err = cerr
	}
	if err != nil {
		return Report{}, fmt.Errorf("import %s into %s: %w", src, dst, err)
	}
	return report, nil
}

// checkEmpty returns ErrNotEmpty when dir exists and holds anything.
func checkEmpty(dir string) error {
	entries, err := os.ReadDir(dir)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	if len(entries) > 0 {
		return ErrNotEmpty
	}
	return nil
}

// openSource reads and checks the metadata of the original queue in dir.
func openSource(dir string) (*source, error) {
	raw, err := readMetadata(filepath.Join(dir, metadataName))
	if err != nil {
		return nil, err
	}
	if v := le64(raw[versionOff:]); v != formatVersion {
		return nil, fmt.Errorf("%s: format version %d, this importer reads %d: %w",
			metadataName, v, formatVersion, bigqueue.ErrIncompatibleVersion)
	}
	s := &source{dir: dir}
	size := le64(raw[arenaSizeOff:])
	count := le64(raw[consumersOff:])
	if size == 0 {
		// The original's first open failed before it stored a size:
		// nothing was ever written.
		return s, nil
	}
	if size < minArenaSize || size > maxArenaSize {
		return nil, corrupt("%s: arena size %d", metadataName, size)
	}
	s.arenaSize = int64(size)
	if s.tail, err = s.position(le64(raw[tailArenaOff:]), le64(raw[tailOffsetOff:])); err != nil {
		return nil, fmt.Errorf("%s: tail: %w", metadataName, err)
	}
	if count > uint64(len(raw)-metadataSize)/entryHeader {
		return nil, corrupt("%s: %d consumers do not fit in %d bytes", metadataName, count, len(raw))
	}
	seen := make(map[string]int, count)
	base := metadataSize
	for i := range int(count) {
		if len(raw)-base < entryHeader {
			return nil, corrupt("%s: consumer %d runs past the end", metadataName, i)
		}
		n := le64(raw[base:])
		if n > uint64(len(raw)-base-entryHeader) {
			return nil, corrupt("%s: consumer %d: name of %d bytes runs past the end", metadataName, i, n)
		}
		name := string(raw[base+entryHeader : base+entryHeader+int(n)])
		pos, err := s.position(le64(raw[base+8:]), le64(raw[base+16:]))
		if err != nil {
			return nil, fmt.Errorf("%s: consumer %q: %w", metadataName, name, err)
		}
		if pos > s.tail {
			return nil, corrupt("%s: consumer %q is past the tail", metadataName, name)
		}
		// The original keeps the last entry of a name.
		if j, ok := seen[name]; ok {
			s.consumers[j].pos = pos
		} else {
			seen[name] = len(s.consumers)
			s.consumers = append(s.consumers, consumer{name: name, pos: pos})
		}
		base += entryHeader + int(n)
	}
	return s, nil
}

// readMetadata reads the metadata file, bounded in size.
func readMetadata(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if st.Size() < metadataSize || st.Size() > maxMetadata {
		return nil, corrupt("%s: size %d", metadataName, st.Size())
	}
	raw := make([]byte, st.Size())
	if _, err := io.ReadFull(f, raw); err != nil {
		return nil, fmt.Errorf("read %s: %w", metadataName, err)
	}
	return raw, nil
}

// position checks a stored (arena id, offset) and returns it as a
// canonical logical position.
func (s *source) position(id, off uint64) (int64, error) {
	if off > uint64(s.arenaSize) || id > uint64(maxLogicalSize/s.arenaSize)-1 {
		return 0, corrupt("position (arena %d, offset %d) with arenas of %d bytes", id, off, s.arenaSize)
	}
	return s.canonical(int64(id)*s.arenaSize + int64(off)), nil
}

// canonical moves a position where a record's length cannot fit before
// the end of its arena to the start of the next arena, where the record
// really starts, so that positions stored before and after the skip
// compare equal.
func (s *source) canonical(pos int64) int64 {
	if pos%s.arenaSize+lengthSize > s.arenaSize {
		return (pos/s.arenaSize + 1) * s.arenaSize
	}
	return pos
}

// scan walks the records from the oldest consumer position to the tail,
// checking each length, and counts for each consumer the records before
// its position. It returns the number of records to copy.
func (s *source) scan(report *Report) (int64, error) {
	if len(s.consumers) == 0 {
		return 0, nil
	}
	slices.SortStableFunc(s.consumers, func(a, b consumer) int { return cmp.Compare(a.pos, b.pos) })
	pos := s.consumers[0].pos
	var count int64
	next := 0 // first consumer not yet reached
	for {
		for next < len(s.consumers) && s.consumers[next].pos == pos {
			s.consumers[next].read = count
			next++
		}
		if next < len(s.consumers) && s.consumers[next].pos < pos {
			return 0, corrupt("consumer %q at logical offset %d is not at a record boundary",
				s.consumers[next].name, s.consumers[next].pos)
		}
		if pos >= s.tail {
			break
		}
		n, err := s.recordLength(pos)
		if err != nil {
			return 0, err
		}
		pos = s.canonical(pos + lengthSize + n)
		count++
	}
	if pos != s.tail {
		return 0, corrupt("the last record ends at logical offset %d, past the tail %d", pos, s.tail)
	}
	for _, c := range s.consumers {
		report.Unread[c.name] = count - c.read
	}
	return count, nil
}

// recordLength reads and bounds the length of the record at pos.
func (s *source) recordLength(pos int64) (int64, error) {
	var b [lengthSize]byte
	if err := s.readAt(pos, b[:]); err != nil {
		return 0, err
	}
	n := le64(b[:])
	if n > bigqueue.MaxMessageSize || int64(n) > s.tail-pos-lengthSize {
		return 0, corrupt("record at logical offset %d: length %d runs past the tail %d or the message size limit",
			pos, n, s.tail)
	}
	return int64(n), nil
}

// readAt fills b from the logical position pos, across arenas.
func (s *source) readAt(pos int64, b []byte) error {
	for len(b) > 0 {
		id, off := pos/s.arenaSize, pos%s.arenaSize
		f, err := s.arena(id)
		if err != nil {
			return err
		}
		n := min(int64(len(b)), s.arenaSize-off)
		if _, err := f.ReadAt(b[:n], off); err != nil {
			return fmt.Errorf("read arena %d at %d: %w", id, off, err)
		}
		b, pos = b[n:], pos+n
	}
	return nil
}

// arena returns the open arena file id, closing the one read before.
func (s *source) arena(id int64) (*os.File, error) {
	if s.file != nil && s.fileID == id {
		return s.file, nil
	}
	s.closeFile()
	f, err := os.Open(filepath.Join(s.dir, strconv.FormatInt(id, 10)+arenaSuffix))
	if err != nil {
		return nil, err
	}
	st, err := f.Stat()
	if err == nil && st.Size() < s.arenaSize {
		err = corrupt("arena %d: %d bytes, want %d", id, st.Size(), s.arenaSize)
	}
	if err != nil {
		f.Close()
		return nil, err
	}
	s.file, s.fileID = f, id
	return f, nil
}

// closeFile closes the open arena file. The file was only read, so an
// error of closing it cannot lose anything and is not reported.
func (s *source) closeFile() {
	if s.file != nil {
		s.file.Close()
		s.file = nil
	}
}

// copyInto enqueues the total records from the oldest consumer position
// into q, then creates every consumer and moves it to its position. All
// consumers are created before any is moved, so that each starts at the
// first imported message whatever rule q applies to a new consumer; they
// are then moved in order of position, each copied from the one before
// and advanced by the difference, so that the messages are read once in
// all. It checks each consumer's Len at the end.
func (s *source) copyInto(q *bigqueue.Queue, report *Report, total int64, progress func(done, total int64)) error {
	if progress == nil {
		progress = func(int64, int64) {}
	}
	if len(s.consumers) == 0 {
		progress(0, 0)
		return q.Flush()
	}
	steps := total + s.consumers[len(s.consumers)-1].read - s.consumers[0].read
	done := int64(0)
	progress(0, steps)
	var buf []byte
	pos := s.consumers[0].pos
	for i := range total {
		n, err := s.recordLength(pos)
		if err != nil {
			return err
		}
		buf = slices.Grow(buf[:0], int(n))[:n]
		if err := s.readAt(pos+lengthSize, buf); err != nil {
			return err
		}
		if err := q.Enqueue(buf); err != nil {
			return fmt.Errorf("enqueue message %d: %w", i, err)
		}
		report.Messages++
		report.Bytes += n
		done++
		progress(done, steps)
		pos = s.canonical(pos + lengthSize + n)
	}
	s.closeFile()
	report.Skipped = s.skipped()

	handles := make([]*bigqueue.Consumer, len(s.consumers))
	for i, c := range s.consumers {
		h, err := q.NewConsumer(c.name)
		if err != nil {
			return fmt.Errorf("consumer %q: %w", c.name, err)
		}
		handles[i] = h
	}
	for i := 1; i < len(s.consumers); i++ {
		h, err := q.FromConsumer(s.consumers[i].name, handles[i-1])
		if err != nil {
			return fmt.Errorf("consumer %q: %w", s.consumers[i].name, err)
		}
		handles[i] = h
		for range s.consumers[i].read - s.consumers[i-1].read {
			if buf, err = h.DequeueAppend(buf[:0]); err != nil {
				return fmt.Errorf("consumer %q: move to message %d: %w", s.consumers[i].name, s.consumers[i].read, err)
			}
			done++
			progress(done, steps)
		}
	}
	for i, c := range s.consumers {
		if got, want := handles[i].Len(), total-c.read; got != want {
			return fmt.Errorf("consumer %q: %d messages left to read after the import, want %d", c.name, got, want)
		}
	}
	return q.Flush()
}

// skipped counts the records before the oldest consumer position, which
// every consumer has read. It walks them from the start of arena 0 when
// their arenas are all still there, and returns 0 otherwise.
func (s *source) skipped() int64 {
	var count int64
	for pos := int64(0); pos < s.consumers[0].pos; count++ {
		n, err := s.recordLength(pos)
		if err != nil {
			return 0
		}
		pos = s.canonical(pos + lengthSize + n)
	}
	s.closeFile()
	return count
}

func le64(b []byte) uint64 { return binary.LittleEndian.Uint64(b) }

func corrupt(format string, args ...any) error {
	return fmt.Errorf(format+": %w", append(args, bigqueue.ErrCorrupt)...)
}

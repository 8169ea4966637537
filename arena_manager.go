package bigqueue

import (
	"bytes"
	"errors"
	"fmt"
	"hash/crc32"
	"os"
	"slices"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/cpu"
)

// Spares: consumed arena files kept, renamed, for reuse as future tail
// arenas. Their blocks are already allocated and written, which makes the
// first pass of writes over them several times cheaper than over a fresh
// file, and reusing one costs a rename instead of a create, a fallocate
// and, later, an unlink. They are bounded in number and in bytes, so that
// a queue with large arenas keeps none, and they are removed when the
// queue is idle or closed.
//
// The count is large enough for a queue with small arenas that a flush
// reclaims many at a time: one flush's reclaimed arenas then serve the
// writer until the next flush (with 128 KiB arenas and 4 KiB messages
// flowing through, keeping 64 instead of 2 halved the time per message in
// the benchmarks module's steady workload); the byte bound keeps what
// that costs on disk at 64 MiB.
//
// A spare keeps the mapping its arena had, when it had one: an arena
// every consumer has read is parked when it is evicted (park), mapping
// and all, and detachBelow hands the mapping to the spare. Reusing the
// spare then needs no open, no mmap and, later, no munmap, and its pages
// are still mapped. In that steady workload this halved the opens and
// unmaps and took 10-15% off the time per message; populating a small
// spare in one call when it is reused (create) took about as much again,
// since pages a consumer only read are mapped read-only and the writer
// faulted on each. The kept mappings are bounded like the spares
// (keptMappings), and are beyond SetMaxInMemArenas. Since nothing opens a
// kept spare again, every arena carries the identity of the file it maps
// (arena.fid), and reuseSpare checks, after the rename, that the arena's
// name still names that file at the arena's size: a spare truncated,
// removed or replaced under the queue is given up for a fresh file.
const (
	maxSpareArenas = 64
	maxSpareBytes  = 64 << 20
	// reclaimBatchBytes is about how much of what every consumer has read
	// the writer leaves on disk before it asks for a reclaim (reclaimBatch).
	reclaimBatchBytes = 1 << 20
)

// Disk blocks of an arena file are reserved ahead of the writer in steps:
// reserveStepMin bytes when the file is created, then a quarter of what is
// reserved (at least reserveStepMin, at most reserveStepMax) each time the
// writer comes within reserveLead of the end of the reserved range (an
// eighth of it, at most prefaultWindow: room for the prefaulter). The file itself has its
// full size from the start (sparse), so that the mapping covers it; no
// byte past the reserved range is ever written, so a full disk is an
// ENOSPC from the reservation, never a SIGBUS. Disk used grows with the
// data: a queue holding one small message uses one 4 KiB block of arena,
// and a queue of any size at most about 40% more than its data (a
// quarter ahead, plus the lead), and at most reserveStepMax plus
// prefaultWindow more per arena.
const (
	reserveStepMin = 4 << 10
	reserveStepMax = 16 << 20
)

// reserveAlign is the granularity of reservations: whole pages, so that
// a write fault, which allocates blocks for its whole page, never reaches
// past the reserved range (pages are 4 KiB on most systems, 16 or 64 KiB
// on some arm64 and ppc64 kernels).
var reserveAlign = max(reserveStepMin, os.Getpagesize())

// recordSpan describes the record a write belongs to: it occupies the
// logical bytes [start, end) and has sequence number seq. A write that has
// to create a new arena derives the arena header's first record from it.
type recordSpan struct {
	start, end, seq uint64
}

// firstFrom returns the first record boundary at or after arenaStart, and
// its sequence number, for a record being written across arenaStart.
func (s recordSpan) firstFrom(arenaStart uint64) (uint64, uint64) {
	if s.start >= arenaStart {
		return s.start, s.seq
	}
	return s.end, s.seq + 1
}

// pinnedArena is a mapping a flush syncs without holding the queue's mu.
type pinnedArena struct {
	a    *arena
	name string
	data []byte
}

// arenaManager owns the arena files of a queue directory and their
// mappings. Arena files [first, next) exist; no other arena file does.
// Every method needs the queue's mu, except where it says otherwise.
type arenaManager struct {
	dir       *queueDir
	fs        fileSystem
	arenaSize int
	dataSize  uint64 // arenaSize - arenaHeaderSize: record bytes per arena
	queueID   uint64
	maxMapped int              // 0 = no limit
	now       func() time.Time // wall clock for arena headers' start times (retention.go); nil = time.Now
	// noChecksum is a planted mistake (options.go): recovery takes
	// records without verifying their checksums. False outside tests.
	noChecksum bool
	// forgetEvicted is a planted mistake (options.go): an arena evicted
	// dirty is neither synced nor left to the next flush.
	forgetEvicted bool

	mapped map[uint64]*arena // the mapped arenas; len <= maxMapped when > 0
	// parked holds the mappings of arenas evicted after every consumer had
	// read them (park), kept for the spares they will become; with the
	// spares' own mappings, at most spareLimit.
	parked map[uint64]keptMap
	// readBelow returns the arena number below which every consumer has
	// read everything (Queue.reclaimLimit); nil parks nothing.
	readBelow func() uint64
	// inFlight counts the kept mappings of a reclaim under way, which
	// its jobs hold while mu is released (Queue.reclaimTo).
	inFlight int
	// writing is the arena whose file is open for reserving blocks; at
	// most one arena file is open at a time (and the prepared next one,
	// ready).
	writing *arena
	// written is where the last writeAt or append ended; enqueueFast
	// moves it on every record: a line of its own.
	_       cpu.CacheLinePad
	written cursor
	_       cpu.CacheLinePad

	first, next uint64          // arena numbers in use; a number in between may be absent
	present     map[uint64]bool // the arena files of [first, next) that exist; the others read as ErrCorrupt
	spares      []spareFile     // spare files ready for reuse, oldest first
	// full holds the arenas whose whole file this process reserved
	// (arena.reserved reached arenaSize), mapped or not: a spare made of
	// one needs no reserving when it is reused.
	full       map[uint64]bool
	spareSeq   uint64 // numbers spare file names
	dirDirty   bool   // a file was created, renamed or removed since the last directory fsync
	dirSeq     uint64 // counts changes of the directory
	dirDurable uint64 // the dirSeq the last successful directory fsync covered
	reclaimed  uint64 // arenas reclaimed since open
	// tailSetAside is set when recovery set the tail's arena aside
	// (recoverTail): no arena left below the tail then no longer means
	// that every consumer had read what was there.
	tailSetAside bool
	syncErr      error // first failed sync of an eviction or a spare's rename; the queue fails closed on it
	// unsynced holds the arenas unmapped with pages written since their
	// last sync (evict): their pages are in the page cache only. The next
	// flush fsyncs the files of those it still needs and forgets the ones
	// it reclaims unsynced (Queue.flush); Close fsyncs them all. Eviction
	// leaves at most maxUnsynced there (past that it msyncs before
	// unmapping); after a crash recovery puts every arena written since
	// the checkpoint there (inheritUnsynced).
	unsynced map[uint64]bool
	// prefaultReq (capacity 1) asks the prefaulter (prefault.go) for
	// pages ahead of the tail; prefaultOff is set when populating failed
	// once, and the writer then takes its own faults.
	prefaultReq chan struct{}
	prefaultOff bool
	// ready is the next arena, prepared by the prefaulter (ready.go);
	// readyPending asks for one, readyOff is set when preparing failed,
	// readyMin is the smallest arena size prepared (readyMinArena).
	ready        *readyArena
	readyPending bool
	readyOff     bool
	readyMin     int
	readySkip    uint64 // no preparing while next is this (a full disk failed it); 0 = none
	readyUsed    uint64 // prepared arenas that became arenas; for tests
	choreErr     error  // an error of housekeeping the caller did not see; the next Flush returns it
	// asideAt holds, per arena number whose file setAside renamed away,
	// the dirSeq after that rename: create fsyncs the directory before it
	// makes a new file under the name, unless a directory fsync since
	// covered the rename (see setAside).
	asideAt map[uint64]uint64

	// pinMu guards arena.pins. A flush pins the arenas it syncs without the
	// queue's mu; eviction waits on pinCond, still holding mu, for a pin to
	// drop, so that no other operation runs in the middle of its own.
	pinMu   sync.Mutex
	pinCond *sync.Cond

	// The readers' fields, which dequeueFast writes holding only the
	// queue's mu.cons while enqueueFast uses the writer's above: a line
	// of their own.
	_     cpu.CacheLinePad
	last  *arena // the arena get returned last; valid while its data is not nil
	clock uint64 // incremented on every access; LRU order
	read  cursor // where the last readAt or read ended
	_     cpu.CacheLinePad
}

func newArenaManager(fs fileSystem, dir *queueDir, arenaSize int, queueID uint64, maxMapped int) *arenaManager {
	m := &arenaManager{
		fs:        fs,
		dir:       dir,
		arenaSize: arenaSize,
		dataSize:  uint64(arenaSize - arenaHeaderSize),
		queueID:   queueID,
		maxMapped: maxMapped,
		mapped:    make(map[uint64]*arena),
		parked:    make(map[uint64]keptMap),
		present:   make(map[uint64]bool),
		unsynced:  make(map[uint64]bool),
		full:      make(map[uint64]bool),

		prefaultReq: make(chan struct{}, 1),
		readyMin:    readyMinArena,
	}
	m.pinCond = sync.NewCond(&m.pinMu)
	return m
}

func arenaName(id uint64) string { return fmt.Sprintf("arena-%d.bq", id) }

func spareName(n uint64) string { return fmt.Sprintf("spare-%d.bq", n) }

// spareFile is a spare and the directory change that made it.
type spareFile struct {
	name     string
	madeAt   uint64 // dirSeq after its rename; settled once dirDurable reaches it
	reserved int    // bytes from the start known reserved: arenaSize or 0 (arenaManager.full)
	// data is the mapping the arena had when it was reclaimed, kept so
	// that reusing the spare needs no open, mmap or fresh faults (its
	// pages stay mapped); nil when the arena was not mapped then.
	data []byte
	fid  fileID // the file data maps
}

// keptMap is the mapping of a parked arena and the identity of its file.
type keptMap struct {
	data []byte
	fid  fileID
}

// release unmaps the spare's kept mapping, if it has one.
func (sp *spareFile) release() error { return releaseKept(&sp.data, "spare "+sp.name) }

// releaseKept unmaps *data, a kept mapping of what, if it is not nil,
// and clears it.
func releaseKept(data *[]byte, what string) error {
	if *data == nil {
		return nil
	}
	err := unmap(*data)
	*data = nil
	if err != nil {
		return fmt.Errorf("unmap %s: %w", what, err)
	}
	return nil
}

// syncDir fsyncs the queue directory, so that the files created, renamed
// or removed in it survive a power loss. It needs no lock. The caller
// records what it covered with dirSynced.
func (m *arenaManager) syncDir() error { return syncDir(m.fs, m.dir) }

// syncDir is the one place the queue directory is fsynced.
func syncDir(fs fileSystem, dir *queueDir) error {
	return fs.syncDir(dir)
}

// dirChanged records a change of the directory (a file created, renamed
// or removed) that a directory fsync has yet to make durable.
func (m *arenaManager) dirChanged() {
	m.dirDirty = true
	m.dirSeq++
}

// dirSynced records that a directory fsync covered the changes up to seq.
func (m *arenaManager) dirSynced(seq uint64) {
	m.dirDurable = max(m.dirDurable, seq)
}

// settleDir fsyncs the directory when the directory change counted as
// seq (a dirSeq) is not known durable yet. A failed fsync is kept in
// syncErr, which fails the queue. Needs mu or exclusive access.
func (m *arenaManager) settleDir(seq uint64) error {
	if seq <= m.dirDurable {
		return nil
	}
	now := m.dirSeq
	if err := m.syncDir(); err != nil {
		if m.syncErr == nil {
			m.syncErr = fmt.Errorf("fsync directory: %w", err)
		}
		return fmt.Errorf("fsync directory: %w", err)
	}
	m.dirSynced(now)
	return nil
}

// get returns arena id mapped, mapping it when needed.
func (m *arenaManager) get(id uint64) (*arena, error) {
	m.clock++
	if a := m.last; a != nil && a.id == id && a.data != nil {
		a.lastUse = m.clock
		return a, nil
	}
	if a := m.mapped[id]; a != nil {
		a.lastUse = m.clock
		m.last = a
		return a, nil
	}
	if k, ok := m.parked[id]; ok {
		// Read again (a new consumer, a seek back): mapped once more.
		if err := m.makeRoom(); err != nil {
			return nil, err
		}
		delete(m.parked, id)
		a := &arena{id: id, data: k.data, fid: k.fid, lastUse: m.clock}
		m.mapped[id] = a
		m.last = a
		return a, nil
	}
	if id < m.first || id >= m.next || !m.present[id] {
		return nil, fmt.Errorf("arena %d is missing or damaged (have %d to %d): %w", id, m.first, m.next, ErrCorrupt)
	}
	if err := m.makeRoom(); err != nil {
		return nil, err
	}
	name := arenaName(id)
	f, err := m.fs.open(m.dir, name)
	if errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("open arena %d: %w: %w", id, err, ErrCorrupt)
	}
	if err != nil {
		return nil, fmt.Errorf("open arena %d: %w", id, err)
	}
	defer f.Close()
	st, err := statFile(f)
	if err != nil {
		return nil, fmt.Errorf("stat arena %d: %w", id, err)
	}
	if st.size != int64(m.arenaSize) {
		// Mapping past the end of a file faults on access: refuse it, set
		// it aside for inspection and leave a hole that reads as damage.
		err := fmt.Errorf("arena %d: size %d, want %d: %w", id, st.size, m.arenaSize, ErrCorrupt)
		if rerr := m.setAside(id); rerr != nil {
			return nil, fmt.Errorf("%w (set aside: %v)", err, rerr)
		}
		return nil, err
	}
	data, err := m.fs.mmap(f, m.arenaSize)
	if err != nil {
		return nil, fmt.Errorf("arena %d: %w", id, err)
	}
	// A file whose intact header names another arena or another queue
	// (copied or renamed in from elsewhere) holds records with valid
	// checksums that are not ours: none of them is read. A header that
	// fails its own checksum names nothing; recovery and the records'
	// checksums and sequence numbers judge such an arena.
	if h, err := decodeArenaHeader(data); err == nil {
		if err := h.belongsTo(id, m.queueID, uint64(m.arenaSize)); err != nil {
			err = fmt.Errorf("%s: %w", m.dir.join(name), err)
			if uerr := unmap(data); uerr != nil {
				err = errors.Join(err, uerr)
			}
			return nil, err
		}
	}
	a := &arena{id: id, data: data, fid: st.id, lastUse: m.clock}
	m.mapped[id] = a
	return a, nil
}

// create makes arena id, which must be next, with a header naming first and
// firstSeq as its first record. It reuses a spare file when there is one,
// else creates a sparse file and reserves its first blocks, so a full disk
// fails here with ENOSPC.
func (m *arenaManager) create(id, first, firstSeq uint64) (*arena, error) {
	if id != m.next {
		return nil, fmt.Errorf("create arena %d: next arena is %d: %w", id, m.next, ErrCorrupt)
	}
	if err := m.makeRoom(); err != nil {
		return nil, err
	}
	name := arenaName(id)
	// A spare first (its pages were written before), then the prepared
	// file, then a new one. A spare is known reserved in full when this
	// process reserved the whole arena it was (full): renaming keeps the
	// blocks. Else reserved stays 0: written in full before, it is still
	// not known reserved (a crash may have left it).
	if seq, ok := m.asideAt[id]; ok {
		// The file that held the name was set aside: that rename is
		// durable before anything new takes the name (setAside).
		if err := m.settleDir(seq); err != nil {
			return nil, fmt.Errorf("create arena %d: %w", id, err)
		}
		delete(m.asideAt, id)
	}
	sp, err := m.reuseSpare(name)
	if err != nil {
		return nil, err
	}
	f, data, reserved, fid := sp.file, sp.data, sp.reserved, sp.fid
	if f == nil && data == nil {
		f, data, reserved = m.takeReady(name)
	}
	fresh := false // a file created here: none of its pages was ever written
	if f == nil && data == nil {
		f, err = m.fs.create(m.dir, name)
		if err != nil {
			return nil, fmt.Errorf("create arena %d: %w", id, err)
		}
		fresh = true
		m.dirChanged()
		if reserved, err = m.allocateNew(f); err != nil {
			return nil, m.discard(f, name, fmt.Errorf("allocate arena %d: %w", id, err))
		}
	}
	if f != nil && fid == (fileID{}) {
		st, err := statFile(f)
		if err != nil {
			if data != nil {
				err = errors.Join(err, unmap(data))
			}
			return nil, m.discard(f, name, fmt.Errorf("arena %d: %w", id, err))
		}
		fid = st.id
	}
	if data == nil {
		if data, err = m.fs.mmap(f, m.arenaSize); err != nil {
			return nil, m.discard(f, name, fmt.Errorf("arena %d: %w", id, err))
		}
		if fresh {
			noReadAround(data)
		}
	}
	m.clock++
	a := &arena{id: id, data: data, fid: fid, lastUse: m.clock, dirty: true, reserved: reserved}
	if reserved == m.arenaSize && m.arenaSize <= prefaultChunk && !m.prefaultOff {
		// A small arena reserved in full (a spare, mostly; a new arena
		// of one step too) is populated here, in one call, with mu held:
		// at most prefaultChunk, of pages in the page cache when it is a
		// spare of this process. The writer fills it in a few dozen
		// messages, faster than the prefaulter gets to it, and a write
		// fault per page costs several times what populating that page
		// does. Pages a consumer only read were mapped read-only, so
		// even a spare that kept its mapping faults on each otherwise.
		if err := prefault(data); err != nil {
			m.prefaultOff = true // as in prefaultStep
		} else {
			a.faulted, a.prefaultAt = m.arenaSize, m.arenaSize+1
		}
	}
	m.setWriting(a, f)
	if err := m.reserve(a, arenaHeaderSize); err != nil {
		// Only a reused spare can get here: a new file has its first
		// step reserved.
		errs := []error{err, m.closeFile(a), unmap(data)}
		a.data = nil
		if m.writing == a { // a kept mapping's file may never have opened
			m.writing = nil
		}
		if rerr := m.fs.remove(m.dir, name); rerr != nil && !errors.Is(rerr, os.ErrNotExist) {
			errs = append(errs, rerr)
		}
		m.dirChanged()
		return nil, errors.Join(errs...)
	}
	// Mapped before the header is written: a write that faults (the
	// file truncated under the queue) fails the queue, whose Close then
	// finds the mapping to unmap.
	m.mapped[id] = a
	m.present[id] = true
	if reserved == m.arenaSize {
		m.full[id] = true
	}
	arenaHeader{arenaSize: uint64(m.arenaSize), queueID: m.queueID, id: id, first: first, firstSeq: firstSeq, started: m.startTime()}.encode(data)
	m.next++
	return a, nil
}

// allocateNew reserves the first blocks of a new, empty arena file and
// gives it its full size, sparse beyond them. It returns how many bytes
// from the start are reserved. Where step reservation cannot be had
// (fullAllocation), the whole file is allocated.
func (m *arenaManager) allocateNew(f *os.File) (int, error) {
	if fullAllocation {
		return m.arenaSize, m.fs.allocate(f, 0, int64(m.arenaSize))
	}
	n := min(reserveAlign, m.arenaSize)
	if err := m.fs.allocate(f, 0, int64(n)); err != nil {
		return 0, err
	}
	if n < m.arenaSize {
		if err := f.Truncate(int64(m.arenaSize)); err != nil {
			return 0, err
		}
	}
	return n, nil
}

// reserve makes sure that the first end bytes of arena a's file have disk
// blocks, reserving a step ahead when they do not. A full disk returns an
// error wrapping ENOSPC and writes nothing, after the queue's spares were
// removed and reserving was tried once more.
func (m *arenaManager) reserve(a *arena, end int) error { return m.reserveTo(a, end, true) }

// reserveTo is reserve; without dropSpares a full disk keeps the spares
// (for a reservation the write does not need: the prefaulter's lead).
func (m *arenaManager) reserveTo(a *arena, end int, dropSpares bool) error {
	if end <= a.reserved {
		return nil
	}
	step := min(max(a.reserved/4, reserveAlign), reserveStepMax)
	want := max(end, a.reserved+step)
	want = min((want+reserveAlign-1)/reserveAlign*reserveAlign, m.arenaSize)
	if a.file == nil {
		f, err := m.fs.open(m.dir, arenaName(a.id))
		if err != nil {
			return fmt.Errorf("reserve arena %d: %w", a.id, err)
		}
		m.setWriting(a, f)
	}
	err := m.fs.allocate(a.file, int64(a.reserved), int64(want))
	if dropSpares && errors.Is(err, syscall.ENOSPC) && m.spareCount() > 0 {
		// The queue's own spares hold blocks the writer needs now: give
		// them back before reporting a full disk.
		m.choreErr = errors.Join(m.choreErr, m.dropSpares(false))
		err = m.fs.allocate(a.file, int64(a.reserved), int64(want))
	}
	if err != nil {
		return fmt.Errorf("reserve %d bytes of arena %d: %w", want, a.id, err)
	}
	a.reserved = want
	if want == m.arenaSize {
		m.full[a.id] = true
	}
	return nil
}

// spareCount is how many spare files there are, a prepared next arena
// (ready.go) included.
func (m *arenaManager) spareCount() int {
	if m.ready != nil {
		return len(m.spares) + 1
	}
	return len(m.spares)
}

// reclaimBatch is how many arenas every consumer has read wait before
// the writer asks the flusher to reclaim them (Queue.reclaimFlush): about
// reclaimBatchBytes, at least one arena, and few enough that the spares
// can hold them and that, evicted unsynced, they stay well below the
// count that has the writer ask for a full flush (maxUnsynced/2). Each
// reclaim costs two index msyncs and a directory fsync, which a batch
// shares.
func (m *arenaManager) reclaimBatch() uint64 {
	return uint64(max(1, min(reclaimBatchBytes/m.arenaSize, m.spareLimit(), maxUnsynced/4)))
}

// spareLimit is how many spares the queue keeps: maxSpareArenas, fewer
// when maxSpareBytes does not hold that many arenas.
func (m *arenaManager) spareLimit() int {
	return min(maxSpareArenas, maxSpareBytes/m.arenaSize)
}

// setWriting makes a, whose file f is open, the arena the writer reserves
// blocks in, closing the file of the previous one. A failed close of that
// one loses nothing (its data is in the page cache and mapped); it is
// reported with the housekeeping errors.
func (m *arenaManager) setWriting(a *arena, f *os.File) {
	if w := m.writing; w != nil && w != a {
		if err := m.closeFile(w); err != nil {
			m.choreErr = errors.Join(m.choreErr, err)
		}
	}
	a.file, m.writing = f, a
}

// closeFile closes a's file, when it is open.
func (m *arenaManager) closeFile(a *arena) error {
	if a.file == nil {
		return nil
	}
	err := a.file.Close()
	a.file = nil
	if m.writing == a {
		m.writing = nil
	}
	if err != nil {
		return fmt.Errorf("close arena %d: %w", a.id, err)
	}
	return nil
}

// reuseSpare renames a spare file to name and returns it, with how many
// bytes from its start are known reserved; it returns neither a file nor
// a mapping, and no error, when there is no usable spare. A spare that
// kept its mapping (detachBelow) comes back as that mapping, with no
// file: its pages are mapped already, and reserveTo opens the file if it
// ever needs to reserve blocks. Any other spare is opened, for create to
// map.
//
// The spare's own rename (from the arena it was) must be durable before
// anything is written into the file. Otherwise a power loss could keep
// the new pages under the old arena's name, an arena consumers may still
// point at in the durable index, and their next read would report damage
// that never happened. A directory fsync since the spare was made (a
// Flush's) settled it; else the directory is fsynced here, with mu held.
// A failed fsync fails the queue.
func (m *arenaManager) reuseSpare(name string) (reused, error) {
	for len(m.spares) > 0 {
		// The oldest spare: the likeliest to be settled.
		sp := m.spares[0]
		m.spares = slices.Delete(m.spares, 0, 1)
		if err := m.settleDir(sp.madeAt); err != nil {
			m.spares = slices.Insert(m.spares, 0, sp)
			return reused{}, fmt.Errorf("reuse spare %s: %w", sp.name, err)
		}
		m.dirChanged()
		if err := m.fs.rename(m.dir, sp.name, name); err != nil {
			m.giveUpSpare(sp, err)
			continue
		}
		// Under the arena's name now: a file that is not reused must go,
		// or the arena cannot be created.
		var f *os.File
		var st fileStat
		var err error
		if sp.data != nil {
			// A kept mapping's file is not opened again; the name must
			// still name the file mapped, at the arena's size: a spare
			// truncated under the queue would make the writer's access
			// fault, and the writes into the mapping of one removed or
			// replaced would be in no file. Checked after the rename, so
			// that no change between the check and the rename is missed.
			st, err = m.dir.stat(name)
			if err == nil && st.id != sp.fid {
				err = errors.New("it is no longer the file the queue mapped: replaced under the queue")
			}
		} else if f, err = m.fs.open(m.dir, name); err == nil {
			if st, err = statFile(f); err != nil {
				err = errors.Join(err, f.Close())
			}
		}
		if err == nil && st.size != int64(m.arenaSize) {
			err = fmt.Errorf("its size is %d, not %d: changed under the queue", st.size, m.arenaSize)
			if f != nil {
				err = errors.Join(err, f.Close())
			}
		}
		if err == nil {
			return reused{file: f, data: sp.data, fid: st.id, reserved: sp.reserved}, nil
		}
		err = fmt.Errorf("reuse spare %s: %w", sp.name, errors.Join(err, sp.release()))
		if rerr := m.fs.remove(m.dir, name); rerr != nil && !errors.Is(rerr, os.ErrNotExist) {
			return reused{}, errors.Join(err, rerr)
		}
		m.dirChanged()
		m.choreErr = errors.Join(m.choreErr, err)
	}
	return reused{}, nil
}

// giveUpSpare unmaps sp, which reuseSpare could not rename for cause,
// and removes its file; a fresh file replaces it. The failure is
// housekeeping, kept for the next Flush: a file that could not be removed
// stays under its spare's name for the next NewQueue, which deletes
// spares.
func (m *arenaManager) giveUpSpare(sp spareFile, cause error) {
	err := errors.Join(cause, sp.release())
	if rerr := m.fs.remove(m.dir, sp.name); rerr != nil && !errors.Is(rerr, os.ErrNotExist) {
		err = errors.Join(err, rerr)
	}
	m.dirChanged()
	m.choreErr = errors.Join(m.choreErr, fmt.Errorf("reuse spare %s: %w", sp.name, err))
}

// reused is a spare reuseSpare made arena: its file, or its kept
// mapping, and what is known of it.
type reused struct {
	file     *os.File
	data     []byte
	fid      fileID // the file data maps
	reserved int    // bytes from the start known reserved
}

// discard closes and removes a file create could not finish, and returns
// cause joined with whatever that cleanup reported.
func (m *arenaManager) discard(f *os.File, name string, cause error) error {
	errs := []error{cause, f.Close()}
	if err := m.fs.remove(m.dir, name); err != nil && !errors.Is(err, os.ErrNotExist) {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// makeRoom unmaps least recently used arenas until one more can be mapped.
func (m *arenaManager) makeRoom() error {
	for m.maxMapped > 0 && len(m.mapped) >= m.maxMapped {
		// The least recently used arena goes, pinned or not: the pin (a
		// flush's msync, the prefaulter's populate) drops without mu.
		// Choosing another one instead would make which arenas stay
		// mapped, and so which files are opened again later, depend on
		// the timing of the background goroutines.
		// The writer's arena counts as just used: enqueueFast does not
		// tick the clock.
		if w := m.writing; w != nil && w.data != nil {
			m.clock++
			w.lastUse = m.clock
		}
		var victim *arena
		for _, a := range m.mapped {
			if victim == nil || a.lastUse < victim.lastUse {
				victim = a
			}
		}
		m.pinMu.Lock()
		for victim.pins > 0 {
			m.pinCond.Wait()
		}
		m.pinMu.Unlock()
		if ok, err := m.park(victim); ok || err != nil {
			if err != nil {
				return err
			}
			continue
		}
		if err := m.evict(victim, evictDefer); err != nil {
			return err
		}
	}
	return nil
}

// maxUnsynced bounds arenaManager.unsynced: how many arenas evict leaves
// to the next flush to sync. A queue without periodic flushes that evicts
// more arenas than this before a Flush syncs the rest as it unmaps them.
const maxUnsynced = 64

// evictMode says what evict does with the written pages of a dirty arena.
type evictMode uint8

const (
	evictDrop  evictMode = iota // nothing: the arena is going, or its data need not be durable
	evictSync                   // msync them before unmapping
	evictDefer                  // leave them to the next flush (unsynced), or msync them when maxUnsynced arenas wait already
)

// evict unmaps a, which must not be pinned. A dirty arena's pages stay in
// the page cache; unless mode is evictDrop they must reach the disk
// before a Flush, which can no longer reach the mapping, reports them
// durable. Leaving them to the flush (evictDefer) lets it skip the arenas
// it reclaims (Queue.flush): in a steady state of small arenas, most
// arenas evicted were read to the end before the next flush, and their
// pages then never reach the disk.
func (m *arenaManager) evict(a *arena, mode evictMode) error {
	if err := m.settle(a, mode); err != nil {
		return err
	}
	ferr := m.closeFile(a)
	if err := unmap(a.data); err != nil {
		return errors.Join(fmt.Errorf("unmap arena %d: %w", a.id, err), ferr)
	}
	a.data = nil
	delete(m.mapped, a.id)
	return ferr
}

// settle does what evict does with a's written pages before the mapping
// goes: leaves them to the next flush or msyncs them, as mode says.
func (m *arenaManager) settle(a *arena, mode evictMode) error {
	if mode == evictDefer && a.dirty && m.forgetEvicted {
		a.dirty = false // deliberately wrong: see plant in options.go
	}
	if mode == evictDefer && a.dirty && (len(m.unsynced) < maxUnsynced || m.unsynced[a.id]) {
		m.unsynced[a.id] = true
		a.dirty = false
	}
	if mode != evictDrop && a.dirty {
		if err := m.fs.syncMapping(m.dir, arenaName(a.id), a.data); err != nil {
			err = fmt.Errorf("msync arena %d before unmapping: %w", a.id, err)
			if m.syncErr == nil {
				m.syncErr = err
			}
			return err
		}
		a.dirty = false
	}
	return nil
}

// park evicts a, which must not be pinned, as evict(a, evictDefer) does,
// but keeps its mapping in parked instead of unmapping it: every consumer
// has read a, so it will most likely be reclaimed and become a spare,
// which then takes the mapping over (detachBelow). It returns false, and
// does nothing, when a cannot be parked: a consumer may still read it, it
// is the writer's, or the parked and spare mappings are at their limit.
func (m *arenaManager) park(a *arena) (bool, error) {
	if m.readBelow == nil || a.id >= m.readBelow() || a == m.writing || m.keptMappings() >= m.spareLimit() {
		return false, nil
	}
	if err := m.settle(a, evictDefer); err != nil {
		return false, err
	}
	if err := m.closeFile(a); err != nil {
		m.choreErr = errors.Join(m.choreErr, err)
	}
	m.parked[a.id] = keptMap{data: a.data, fid: a.fid}
	a.data = nil
	delete(m.mapped, a.id)
	return true, nil
}

// keptMappings is how many mappings are kept for spares: those of parked
// arenas, of a reclaim under way and of spares. park and detachBelow keep
// it at most spareLimit.
func (m *arenaManager) keptMappings() int {
	n := len(m.parked) + m.inFlight
	for _, sp := range m.spares {
		if sp.data != nil {
			n++
		}
	}
	return n
}

// unpark unmaps the parked mapping of arena id, if there is one.
func (m *arenaManager) unpark(id uint64) error {
	k, ok := m.parked[id]
	if !ok {
		return nil
	}
	delete(m.parked, id)
	return releaseKept(&k.data, fmt.Sprintf("arena %d", id))
}

// writeAt copies p to the logical offset off, creating the next arena when
// the write reaches it. span is the record p belongs to.
func (m *arenaManager) writeAt(off uint64, p []byte, span recordSpan) error {
	for len(p) > 0 {
		id, pos := m.written.split(off, m.dataSize)
		var a *arena
		var err error
		if id == m.next {
			first, seq := span.firstFrom(id * m.dataSize)
			a, err = m.create(id, first, seq)
		} else {
			a, err = m.get(id)
			if err == nil && pos == 0 {
				// The first write into an arena that already exists: it
				// was created by an append that failed later. Its header
				// must name this record, not that one.
				if err := m.reserve(a, arenaHeaderSize); err != nil {
					return err
				}
				first, seq := span.firstFrom(id * m.dataSize)
				arenaHeader{arenaSize: uint64(m.arenaSize), queueID: m.queueID, id: id, first: first, firstSeq: seq, started: m.startTime()}.encode(a.data)
			}
		}
		if err != nil {
			return err
		}
		n := min(uint64(len(p)), m.dataSize-pos)
		if end, lead := arenaHeaderSize+int(pos+n), m.reserveLead(a); end+lead > a.reserved {
			err := m.reserveTo(a, min(end+lead, m.arenaSize), lead == 0)
			if lead > 0 && errors.Is(err, syscall.ENOSPC) {
				// The lead only serves the prefaulter: a disk too full
				// for it may still hold this write, and a full disk is
				// reported by the write that needs the blocks.
				err = m.reserve(a, end)
			}
			if err != nil {
				return err
			}
		}
		copy(a.data[arenaHeaderSize+pos:], p[:n])
		a.dirty = true
		m.wantReady(a, pos+n)
		if arenaHeaderSize+int(pos+n) >= a.prefaultAt {
			m.askPrefault(a)
		}
		p = p[n:]
		off += uint64(n)
		m.written.moved(off, id, pos+n, m.dataSize)
	}
	return nil
}

// cursor remembers where the last sequential access ended, as a logical
// offset and as arena number and position, so that the next access,
// which usually starts there, needs no 64-bit division: it was a quarter
// of writeAt's own time in a profile of Enqueue of 128 B. The mapping
// from offset to arena and position never changes, so a cursor is never
// stale, only elsewhere.
type cursor struct{ end, id, pos uint64 }

// split returns the arena and position of the logical offset off.
func (c *cursor) split(off, dataSize uint64) (id, pos uint64) {
	if off == c.end {
		return c.id, c.pos
	}
	return off / dataSize, off % dataSize
}

// moved records that an access ended at off, position pos of arena id;
// pos == dataSize, the arena's end, is the start of the next one.
func (c *cursor) moved(off, id, pos, dataSize uint64) {
	if pos == dataSize {
		id, pos = id+1, 0
	}
	c.end, c.id, c.pos = off, id, pos
}

// appendSlot returns the mapped bytes for n bytes at the logical offset
// off, with the arena and the position they start at, when a write there
// needs nothing but the copy: off is where the last write ended, inside
// the arena the writer reserves blocks in (not at its start, where
// writeAt writes a header), the n bytes do not cross its end, and they
// and the prefaulter's lead are reserved. Otherwise it returns nil and
// the caller goes through writeAt. A record written into the slot is
// committed to the manager's state by appended. Needs mu.prod: it reads
// and writes only the writer's fields (written, writing and the writer's
// arena's reservation), which no holder of mu.cons alone touches.
func (m *arenaManager) appendSlot(off uint64, n int) (*arena, uint64, []byte) {
	c, a := &m.written, m.writing
	if off != c.end || c.pos == 0 || a == nil || a.id != c.id || a.data == nil || c.pos+uint64(n) > m.dataSize {
		return nil, 0, nil
	}
	start := arenaHeaderSize + int(c.pos)
	if min(start+n+m.reserveLead(a), m.arenaSize) > a.reserved {
		return nil, 0, nil
	}
	// No clock tick: enqueueFast holds only mu.prod, and the clock is the
	// readers'. makeRoom counts the writer's arena as just used instead.
	return a, c.pos, a.data[start : start+n]
}

// appended records that n bytes were written into the slot appendSlot
// returned for off, at position pos of a, as writeAt does after a copy.
// Needs mu.
func (m *arenaManager) appended(a *arena, off, pos uint64, n int) {
	end := pos + uint64(n)
	if !a.dirty {
		a.dirty = true // a store only when it changes: readers load a's other fields
	}
	m.wantReady(a, end)
	if arenaHeaderSize+int(end) >= a.prefaultAt {
		m.askPrefault(a)
	}
	m.written.moved(off+uint64(n), a.id, end, m.dataSize)
}

// reserveLead returns how far ahead of a write into a the reserved range
// must reach: an eighth of what is reserved (once that is 1 MiB), at
// most prefaultWindow, so
// that the prefaulter, which populates only reserved pages, can keep a
// window of pages ready ahead of the writer; nothing when it does not
// run.
func (m *arenaManager) reserveLead(a *arena) int {
	if m.prefaultOff || a.reserved < prefaultMinReserved {
		return 0
	}
	return min(a.reserved/8, prefaultWindow)
}

// prefaultMinReserved is the reserved range below which no lead is
// reserved: the first megabyte of an arena is reserved as the writer
// reaches it, and small arenas are never reserved ahead of it.
const prefaultMinReserved = 1 << 20

// askPrefault asks the prefaulter for the pages ahead of the writer in
// a, without waiting, and not again before the writer has passed the end
// of a's reserved range (or the prefaulter sets a nearer mark).
func (m *arenaManager) askPrefault(a *arena) {
	a.prefaultAt = a.reserved + 1
	if m.prefaultOff {
		return
	}
	select {
	case m.prefaultReq <- struct{}{}:
	default:
	}
}

// readView returns the mapped bytes from the logical offset off to the
// end of its arena, which it maps if needed; it moves no cursor. Valid
// until the next call that may map another arena (get, readAt, writeAt).
// Needs mu.
func (m *arenaManager) readView(off uint64) ([]byte, error) {
	id, pos := m.read.split(off, m.dataSize)
	a, err := m.get(id)
	if err != nil {
		return nil, err
	}
	return a.data[arenaHeaderSize+pos : arenaHeaderSize+m.dataSize], nil
}

// mappedView is readView for dequeueFast, which holds only mu.cons: it
// returns nil unless arena id is mapped already, and so never maps or
// unmaps one (which would need the whole lock). It touches only the
// readers' fields (read, last, clock and the arena's lastUse).
func (m *arenaManager) mappedView(off uint64) []byte {
	id, pos := m.read.split(off, m.dataSize)
	a := m.last
	if a == nil || a.id != id || a.data == nil {
		if a = m.mapped[id]; a == nil {
			return nil
		}
		m.last = a
	}
	m.clock++
	a.lastUse = m.clock
	return a.data[arenaHeaderSize+pos : arenaHeaderSize+m.dataSize]
}

// readPast records that the caller read n bytes at off out of readView's
// bytes, as readAt does after a copy, so that the next sequential read
// needs no division. Needs mu.
func (m *arenaManager) readPast(off, n uint64) {
	id, pos := m.read.split(off, m.dataSize)
	m.read.moved(off+n, id, pos+n, m.dataSize)
}

// readAt copies the logical bytes at off into p.
func (m *arenaManager) readAt(off uint64, p []byte) error {
	for len(p) > 0 {
		id, pos := m.read.split(off, m.dataSize)
		a, err := m.get(id)
		if err != nil {
			return err
		}
		n := copy(p, a.data[arenaHeaderSize+pos:])
		p = p[n:]
		off += uint64(n)
		m.read.moved(off, id, pos+uint64(n), m.dataSize)
	}
	return nil
}

// setAside takes arena id out of the queue and renames its file to
// damaged-<id>.bq for inspection: from then on it is a hole, which reads
// report as damage. A file already gone is no error. When an earlier
// set-aside of the same number (the arena made anew after it) holds that
// name, the file gets the first free damaged-<id>-<k>.bq instead: no
// set-aside file replaces another. A new file made under the arena's
// name later (the tail's arena made anew) waits for a directory fsync
// that covers the rename (create): else a power loss could keep the new
// file and lose the rename, and with it the file set aside. Needs mu or
// exclusive access.
func (m *arenaManager) setAside(id uint64) error {
	if err := m.unpark(id); err != nil {
		return err
	}
	to, err := m.setAsideName(id)
	if err != nil {
		return err
	}
	m.dirChanged()
	err = m.fs.rename(m.dir, arenaName(id), to)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return err // the file is still there under the arena's name
	}
	if err == nil {
		if m.asideAt == nil {
			m.asideAt = make(map[uint64]uint64)
		}
		m.asideAt[id] = m.dirSeq
	}
	delete(m.present, id)
	delete(m.unsynced, id)
	delete(m.full, id)
	return nil
}

// setAsideName returns the first name of damaged-<id>.bq,
// damaged-<id>-1.bq, damaged-<id>-2.bq, ... that names no file in the
// directory. The directory is locked, so no other queue takes it before
// the rename.
func (m *arenaManager) setAsideName(id uint64) (string, error) {
	for k := 0; ; k++ {
		name := setAsideName(id, k)
		_, err := m.dir.stat(name)
		if errors.Is(err, os.ErrNotExist) {
			return name, nil
		}
		if err != nil {
			return "", fmt.Errorf("look for a free name to set arena %d aside: %w", id, err)
		}
	}
}

// setAsideName is the name of the k-th file set aside for arena id.
func setAsideName(id uint64, k int) string {
	if k == 0 {
		return fmt.Sprintf("damaged-%d.bq", id)
	}
	return fmt.Sprintf("damaged-%d-%d.bq", id, k)
}

// header decodes the header of arena id and checks that it belongs here.
func (m *arenaManager) header(id uint64) (arenaHeader, error) {
	a, err := m.get(id)
	if err != nil {
		return arenaHeader{}, err
	}
	h, err := decodeArenaHeader(a.data)
	if err != nil {
		return h, fmt.Errorf("arena %d: %w", id, err)
	}
	return h, h.belongsTo(id, m.queueID, uint64(m.arenaSize))
}

// reclaimJob is an arena file taken out of the queue by detachBelow: its
// number is below first, and it is no longer mapped as an arena, but its
// mapping may be kept for the spare it is to become (data). runReclaim
// renames it to spare, or removes it (and unmaps data) when spare is
// empty or the rename fails.
type reclaimJob struct {
	id          uint64
	name, spare string
	reserved    int    // of its file: arenaSize or 0 (full)
	data        []byte // the arena's mapping, kept for the spare; nil when it was not mapped
	fid         fileID // the file data maps
}

// release unmaps the job's kept mapping, if it has one.
func (j *reclaimJob) release() error {
	if j.data == nil {
		return nil
	}
	return releaseKept(&j.data, fmt.Sprintf("arena %d", j.id))
}

// mappedJobs is how many of jobs hold a kept mapping.
func mappedJobs(jobs []reclaimJob) int {
	n := 0
	for _, j := range jobs {
		if j.data != nil {
			n++
		}
	}
	return n
}

// releaseJobs unmaps the kept mappings of jobs that will not become
// spares. It needs no lock.
func releaseJobs(jobs []reclaimJob) error {
	var errs []error
	for i := range jobs {
		errs = append(errs, jobs[i].release())
	}
	return errors.Join(errs...)
}

// detachMapping takes arena a, which must not be pinned, out of the
// mapped arenas without unmapping it, and returns its mapping. Its pages,
// dirty or not, need not reach the disk: every consumer has read them.
func (m *arenaManager) detachMapping(a *arena) []byte {
	if err := m.closeFile(a); err != nil {
		m.choreErr = errors.Join(m.choreErr, err)
	}
	data := a.data
	a.data, a.dirty = nil, false
	delete(m.mapped, a.id)
	return data
}

// detachBelow takes the arenas below id out of the queue and returns the
// work of getting rid of their files, which runReclaim does without mu.
// Up to spareLimit of them are to become spares. The caller has made
// durable every consumer position past them. Needs mu.
func (m *arenaManager) detachBelow(id uint64) ([]reclaimJob, error) {
	var jobs []reclaimJob
	spares := m.spareCount()
	kept := m.keptMappings() // a parked mapping taken over stays counted
	for m.first < id && m.first < m.next {
		if !m.present[m.first] {
			m.first = min(id, m.nextPresent(m.first))
			continue
		}
		job := reclaimJob{id: m.first, name: arenaName(m.first)}
		if m.full[m.first] {
			job.reserved = m.arenaSize
		}
		if spares < m.spareLimit() {
			m.spareSeq++
			job.spare = spareName(m.spareSeq)
			spares++
		}
		if a := m.mapped[m.first]; a != nil {
			// A flush syncing it, or the prefaulter populating it, drops
			// the pin without needing mu.
			m.pinMu.Lock()
			for a.pins > 0 {
				m.pinCond.Wait()
			}
			m.pinMu.Unlock()
			if job.spare != "" && kept < m.spareLimit() {
				// The spare keeps the mapping (spareFile.data).
				job.data, job.fid = m.detachMapping(a), a.fid
				kept++
			} else if err := m.evict(a, evictDrop); err != nil {
				return jobs, fmt.Errorf("reclaim: %w", err)
			}
		} else if k, ok := m.parked[m.first]; ok {
			if job.spare != "" {
				delete(m.parked, m.first)
				job.data, job.fid = k.data, k.fid
			} else if err := m.unpark(m.first); err != nil {
				return jobs, fmt.Errorf("reclaim: %w", err)
			}
		}
		delete(m.present, m.first)
		delete(m.unsynced, m.first)
		delete(m.full, m.first)
		jobs = append(jobs, job)
		m.first++
	}
	return jobs, nil
}

// runReclaim renames or removes the files of jobs and returns the jobs
// done, with spare cleared where the file was removed instead. It needs no
// lock: the files are no longer part of the queue.
func (m *arenaManager) runReclaim(jobs []reclaimJob) ([]reclaimJob, error) {
	var errs []error
	done := jobs[:0:0]
	for _, j := range jobs {
		if j.spare != "" {
			err := m.fs.rename(m.dir, j.name, j.spare)
			if err == nil {
				done = append(done, j)
				continue
			}
			// Removed instead, which frees the space all the same. On a
			// full disk (a rename may need a directory block) that is
			// the right thing to do and no error; any other failure is
			// reported once, like every error of housekeeping.
			if !errors.Is(err, syscall.ENOSPC) {
				errs = append(errs, fmt.Errorf("reclaim arena %d: keep as a spare: %w", j.id, err))
			}
			j.spare = ""
		}
		if err := j.release(); err != nil {
			errs = append(errs, err)
		}
		if err := m.fs.remove(m.dir, j.name); err != nil && !errors.Is(err, os.ErrNotExist) {
			errs = append(errs, fmt.Errorf("reclaim arena %d: %w", j.id, err))
			continue
		}
		done = append(done, j)
	}
	return done, errors.Join(errs...)
}

// adoptReclaim records what runReclaim did. Needs mu.
func (m *arenaManager) adoptReclaim(done []reclaimJob) {
	for _, j := range done {
		m.dirChanged()
		if j.spare != "" {
			m.spares = append(m.spares, spareFile{name: j.spare, madeAt: m.dirSeq, reserved: j.reserved, data: j.data, fid: j.fid})
		}
		m.reclaimed++
	}
}

// dropSpares removes every spare file: the queue is idle or closing, or
// the disk is full, and the disk space is worth more than the speed of the
// next arena. With keepReady the prepared next arena (ready.go), one
// block, stays: an idle flush keeps it, so that a slow producer does not
// have it prepared and removed again at every message. Needs mu.
func (m *arenaManager) dropSpares(keepReady bool) error {
	var errs []error
	if m.ready != nil && !keepReady {
		m.dirChanged()
		errs = append(errs, m.discardReady(m.ready))
		m.ready = nil
	}
	for _, sp := range m.spares {
		m.dirChanged()
		if err := sp.release(); err != nil {
			errs = append(errs, err)
		}
		if err := m.fs.remove(m.dir, sp.name); err != nil && !errors.Is(err, os.ErrNotExist) {
			errs = append(errs, fmt.Errorf("remove spare %s: %w", sp.name, err))
		}
	}
	m.spares = nil
	return errors.Join(errs...)
}

// pinDirty marks the dirty arenas clean and pins them for a flush, which
// then msyncs them without mu and calls unpin.
//
// The arena holding tail, the logical end of the committed records, is
// synced only up to the end of the page holding tail: no committed byte
// lies past it, and msync write-protects every page it cleans, so that
// syncing the pages ahead of the writer, which the prefaulter has made
// writable (prefault.go), would make the writer fault on each of them
// again. Bytes past tail are never part of what a flush promises.
//
// Arenas below below stay dirty: the flush reclaims them (Queue.flush).
func (m *arenaManager) pinDirty(tail, below uint64) []pinnedArena {
	var list []pinnedArena
	m.pinMu.Lock()
	defer m.pinMu.Unlock()
	for _, a := range m.mapped {
		if a.dirty && a.id >= below {
			a.dirty = false
			a.pins++
			data := a.data
			if a.id == tail/m.dataSize {
				end := arenaHeaderSize + int(tail%m.dataSize)
				end = (end + pageSize - 1) / pageSize * pageSize
				data = data[:min(end, len(data))]
			}
			list = append(list, pinnedArena{a: a, name: arenaName(a.id), data: data})
		}
	}
	return list
}

// pageSize is the size of the pages of a mapping.
var pageSize = os.Getpagesize()

// unpin releases what pinDirty pinned. It needs only pinMu, not mu.
func (m *arenaManager) unpin(list []pinnedArena) {
	m.pinMu.Lock()
	for _, p := range list {
		p.a.pins--
	}
	m.pinMu.Unlock()
	m.pinCond.Broadcast()
}

// inheritUnsynced marks the present arenas holding the logical bytes
// [from, to) unsynced: after a crash, records the last process wrote
// since its last flush may be in the page cache and nowhere else, and
// the next flush's checkpoint will cover them. Needs mu or exclusive
// access.
func (m *arenaManager) inheritUnsynced(from, to uint64) {
	if from >= to {
		return
	}
	// Over the arenas present, not the numbers in the range: a forged
	// or damaged index can put the checkpoint and the tail 2^62 bytes
	// apart (FuzzOpenDirectory found NewQueue looping here).
	lo, hi := from/m.dataSize, (to-1)/m.dataSize
	for id := range m.present {
		if id >= lo && id <= hi {
			m.unsynced[id] = true
		}
	}
}

// takeUnsynced returns, in order, the arenas waiting for a sync
// (unsynced) from arena below on, and forgets them; the caller syncs
// them with syncUnsynced. The ones below below stay: the flush reclaims
// them without syncing. Needs mu.
func (m *arenaManager) takeUnsynced(below uint64) []uint64 {
	var ids []uint64
	for id := range m.unsynced {
		if id < below {
			continue
		}
		delete(m.unsynced, id)
		if m.present[id] {
			ids = append(ids, id)
		}
	}
	slices.Sort(ids)
	return ids
}

// unsyncedResult is what syncUnsynced did.
type unsyncedResult struct {
	syncErr error    // a failed fsync: the queue fails closed on it
	openErr error    // a failure to open a file, which a retry may get past
	left    []uint64 // with openErr: the arenas not synced, for the next flush
	lost    error    // files gone before they could be synced (ErrCorrupt)
}

// syncUnsynced opens, fsyncs and closes the files of arenas ids, one at a
// time, so that no number of them runs out of descriptors. It needs no
// lock: only the flush it runs in reclaims, and no other file takes an
// arena's name. A file that is gone cannot be synced any more: its
// records are lost, the read that reaches them reports it, and lost
// says so (an error of housekeeping). It stops at the first other
// failure.
func (m *arenaManager) syncUnsynced(ids []uint64) unsyncedResult {
	var r unsyncedResult
	for i, id := range ids {
		f, err := m.fs.open(m.dir, arenaName(id))
		if errors.Is(err, os.ErrNotExist) {
			r.lost = errors.Join(r.lost, fmt.Errorf("sync arena %d: %w: %w", id, err, ErrCorrupt))
			continue
		}
		if err != nil {
			r.openErr = fmt.Errorf("open arena %d to sync it: %w", id, err)
			r.left = ids[i:]
			return r
		}
		err = m.fs.syncFile(f)
		cerr := f.Close()
		if err != nil {
			r.syncErr = fmt.Errorf("fsync arena %d: %w", id, err)
			return r
		}
		if cerr != nil {
			r.openErr = fmt.Errorf("close arena %d: %w", id, cerr)
			r.left = ids[i+1:]
			return r
		}
	}
	return r
}

// close msyncs (when sync is set) and unmaps every arena; with sync it
// also fsyncs the arenas evicted dirty.
func (m *arenaManager) close(sync bool) error {
	var errs []error
	if sync && len(m.unsynced) > 0 {
		r := m.syncUnsynced(m.takeUnsynced(0))
		m.choreErr = errors.Join(m.choreErr, r.lost)
		if err := errors.Join(r.syncErr, r.openErr); err != nil {
			errs = append(errs, err)
		}
	}
	if m.ready != nil {
		// It holds no data: a failure to release it is housekeeping,
		// and must not stop Close from syncing what does.
		m.choreErr = errors.Join(m.choreErr, m.ready.release())
	}
	for id := range m.parked {
		// Evicted: its pages are in unsynced when they need a sync.
		errs = append(errs, m.unpark(id))
	}
	for i := range m.spares {
		// The files stay when Close leaves them (after a failed sync);
		// their mappings must not, or they would keep the disk space of
		// files the next NewQueue deletes.
		errs = append(errs, m.spares[i].release())
	}
	for _, a := range m.mapped {
		mode := evictDrop
		if sync {
			mode = evictSync
		}
		if err := m.evict(a, mode); err != nil {
			errs = append(errs, err)
			if a.data != nil {
				errs = append(errs, m.evict(a, evictDrop))
			}
		}
	}
	return errors.Join(errs...)
}

// checksum extends crc over the n logical bytes at off, reading them in
// place.
func (m *arenaManager) checksum(off, n uint64, crc uint32) (uint32, error) {
	for n > 0 {
		id, pos := off/m.dataSize, off%m.dataSize
		a, err := m.get(id)
		if err != nil {
			return 0, err
		}
		k := min(n, m.dataSize-pos)
		crc = crc32.Update(crc, castagnoli, a.data[arenaHeaderSize+pos:][:k])
		n -= k
		off += k
	}
	return crc, nil
}

// drop removes arena file id, which lies outside [first, next). Only
// arenas whose records are all older than the tail's ever become spares
// (detachBelow): a spare's old records then carry sequence numbers no
// future record gets, so none can pass for a new one after a power loss.
func (m *arenaManager) drop(id uint64) error {
	delete(m.full, id) // whatever comes of it, the number may be made anew
	if a := m.mapped[id]; a != nil {
		if err := m.evict(a, evictDrop); err != nil {
			return err
		}
	}
	if err := m.unpark(id); err != nil {
		return err
	}
	m.dirChanged()
	delete(m.unsynced, id)
	if !m.present[id] {
		return nil
	}
	delete(m.present, id)
	if err := m.fs.remove(m.dir, arenaName(id)); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("drop arena %d: %w", id, err)
	}
	return nil
}

// discardRecovered removes arena id, which recovery found where no committed
// record of this queue can be (below the reclaim watermark, past the
// tail, or above a lost bottom), as drop does; but a file whose intact
// header names another queue is set aside instead (setAside), for it
// holds another queue's records, copied or moved in by mistake, which
// this queue must not destroy. An arena of this queue of another number
// (a spare renamed into place before a crash, its header not yet
// rewritten) is removed as before. Needs exclusive access.
func (m *arenaManager) discardRecovered(id uint64) error {
	if _, ok := m.parked[id]; !ok && m.mapped[id] == nil && m.ofAnotherQueue(arenaName(id)) {
		if err := m.setAside(id); err != nil {
			// NewQueue fails, and the file stays: a later open tries
			// again. Left in place with the queue open, a spare or a
			// prepared arena renamed to its name would replace it.
			return fmt.Errorf("set aside %s, which holds another queue's records: %w", m.dir.join(arenaName(id)), err)
		}
		return nil
	}
	return m.drop(id)
}

// ofAnotherQueue reports whether the file name holds an intact arena
// header naming a queue other than this one. A file that cannot be read
// or holds no intact header is not known to be another queue's.
func (m *arenaManager) ofAnotherQueue(name string) bool {
	f, err := m.dir.openRead(name)
	if err != nil {
		return false
	}
	defer f.Close()
	var b [arenaHeaderSize]byte
	if _, err := f.ReadAt(b[:], 0); err != nil {
		return false
	}
	h, err := decodeArenaHeader(b[:])
	return err == nil && h.queueID != m.queueID
}

// zeroPast clears the bytes of tail's arena past tail and msyncs them,
// when any is not zero. Pages that are zero already (the common case: a
// preallocated file reads as zeros) are only read. A missing or damaged
// arena is left alone: nothing is read from it.
func (m *arenaManager) zeroPast(tail uint64) error {
	id := tail / m.dataSize
	if tail%m.dataSize == 0 || !m.present[id] {
		return nil
	}
	a, err := m.get(id)
	if err != nil {
		if errors.Is(err, ErrCorrupt) {
			return nil
		}
		return err
	}
	// Page by page of the file, from the tail's byte: a page that reads
	// as zeros is left alone, since writing it could fault in a block the
	// reservation never covered (a hole); a page holding any other byte
	// was written, so it lies inside the reserved range, which is whole
	// pages (reserveAlign). The pages are read with pread, not through
	// the mapping: on tmpfs a read fault on a hole allocates a page, which
	// on a full file system is a SIGBUS.
	// Nothing written since the arena was mapped lies at or past its
	// reserved range, and what earlier runs left there was zeroed when the
	// queue was opened: the scan stops there when it is known.
	limit := len(a.data)
	if a.reserved > 0 {
		limit = a.reserved
	}
	start := arenaHeaderSize + int(tail%m.dataSize)
	if start >= limit {
		return nil
	}
	f, err := m.fs.open(m.dir, arenaName(id))
	if err != nil {
		return fmt.Errorf("clear arena %d past the tail: %w", id, err)
	}
	defer f.Close()
	buf := make([]byte, 64<<10)
	dirty := false
	for off := start; off < limit; {
		n := min(len(buf), limit-off)
		if _, err := f.ReadAt(buf[:n], int64(off)); err != nil {
			return fmt.Errorf("clear arena %d past the tail: %w", id, err)
		}
		for p := 0; p < n; {
			end := min((off+p)/reserveAlign*reserveAlign+reserveAlign, off+n) - off
			if !allZero(buf[p:end]) {
				clear(a.data[off+p : off+end])
				dirty = true
			}
			p = end
		}
		off += n
	}
	if !dirty {
		return nil
	}
	if err := m.fs.syncMapping(m.dir, arenaName(id), a.data); err != nil {
		err = fmt.Errorf("msync arena %d after clearing past the tail: %w", id, err)
		if m.syncErr == nil {
			m.syncErr = err
		}
		return err
	}
	return nil
}

// allZero reports whether every byte of b is zero.
func allZero(b []byte) bool {
	var zeros [4096]byte
	for len(b) > 0 {
		n := min(len(b), len(zeros))
		if !bytes.Equal(b[:n], zeros[:n]) {
			return false
		}
		b = b[n:]
	}
	return true
}

// nextPresent returns the smallest existing arena number >= id, or next.
// It walks the set of files, so absent ranges cost nothing however long.
func (m *arenaManager) nextPresent(id uint64) uint64 {
	if m.present[id] {
		return id
	}
	n := m.next
	for p := range m.present {
		if p >= id && p < n {
			n = p
		}
	}
	return n
}

// anyDirty reports whether an arena was written since its last sync,
// mapped or evicted (unsynced).
func (m *arenaManager) anyDirty() bool {
	if len(m.unsynced) > 0 {
		return true
	}
	for _, a := range m.mapped {
		if a.dirty {
			return true
		}
	}
	return false
}

// rollback removes the arenas from id on, which an append that failed
// created: no committed record is in them. Needs mu.
func (m *arenaManager) rollback(id uint64) error {
	var errs []error
	for ; m.next > id; m.next-- {
		if err := m.drop(m.next - 1); err != nil {
			errs = append(errs, err)
		}
	}
	m.first = min(m.first, m.next)
	return errors.Join(errs...)
}

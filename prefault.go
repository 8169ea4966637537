package bigqueue

// Pre-faulting. The first write to a page of a mapped file faults: the
// kernel finds or allocates a page cache page, zeroes it and maps it
// writable, which costs more than copying a small message into it and now
// and then stalls for milliseconds. A goroutine, the prefaulter, takes
// those faults ahead of the writer: it asks the kernel to populate the
// pages of the tail's arena up to prefaultWindow bytes past the tail
// (MADV_POPULATE_WRITE), so that Enqueue copies into pages that are
// mapped writable already.
//
// It populates only pages inside the arena's reserved range
// (arena.reserved), whose disk blocks fallocate has reserved, so that it
// never allocates a block the reservation did not, and never changes a
// byte: populating a page reads or zeroes it into the page cache and
// marks it writable and dirty. A flush syncs the tail's arena only up to
// the tail's page (arenaManager.pinDirty), so the populated pages ahead
// of the writer stay writable.
//
// It holds mu only to choose the pages and pins the arena (arena.pins)
// while it populates them without mu, so the mapping cannot be unmapped
// under it. A failed populate (an old kernel without
// MADV_POPULATE_WRITE, a truncated file, no memory) cannot fault, as an
// access would: the kernel returns an error instead of raising SIGBUS,
// and the queue then stops pre-faulting and leaves the faults to the
// writer, whose accesses are guarded (fault.go). It maps no arena but
// the next one it prepares (ready.go); the pages it populates are at most
// prefaultWindow bytes of page cache ahead of the tail.
//
// A populate holds the process's mmap lock (for reading) for the whole
// call, and a fault in it past a new arena's first pages (noReadAround)
// may have the kernel fill a whole read-ahead window (read_ahead_kb; 8
// MiB on this project's test machine) first, so one call can last
// milliseconds. Meanwhile an mmap or munmap of any
// thread (a new arena, the Go heap) waits for that lock, and faults
// queue behind it: 256 KiB calls gave a run like the benchmarks module's
// latency workload a p99.9 of 1.3 to 2.0 ms, 32 KiB calls 0.35 to 0.9
// ms (three runs each), at the same throughput. A step still takes mu
// and pins the arena once per 256 KiB, so that the prefaulter does not
// contend for mu more often than it did.
const (
	prefaultWindow = 2 << 20   // how far past the tail's page pages are populated
	prefaultChunk  = 256 << 10 // populated per step; bounds how long an arena stays pinned
	prefaultCall   = 32 << 10  // populated per call; bounds how long the mmap lock is held
)

// runPrefaulter is the prefaulter's goroutine. It waits for a request
// from writeAt and populates the pages ahead of the tail until the
// window is full, then waits again, until Close closes quit; Close waits
// for prefaultDone before it unmaps anything.
func (q *Queue) runPrefaulter() {
	defer close(q.prefaultDone)
	for {
		select {
		case <-q.quit:
			return
		case <-q.am.prefaultReq:
		}
		for q.prefaultStep() {
			select {
			case <-q.quit:
				return
			default:
			}
		}
		q.prepareReady()
	}
}

// prefaultStep populates the next chunk of pages ahead of the tail, and
// reports whether there may be more to do.
func (q *Queue) prefaultStep() bool {
	q.mu.Lock()
	if q.usable() != nil || q.am.prefaultOff {
		q.mu.Unlock()
		return false
	}
	m := q.am
	a := m.mapped[q.tail/m.dataSize]
	if a == nil || a.reserved == 0 {
		q.mu.Unlock()
		return false
	}
	pos := arenaHeaderSize + int(q.tail%m.dataSize)
	from := max(a.faulted, pos/pageSize*pageSize)
	to := min(a.reserved, (pos+prefaultWindow)/pageSize*pageSize, from+prefaultChunk)
	if to <= from {
		// Nothing left inside the window and the reserved range: ask
		// again when the writer is half a window further, or, when the
		// reserved range was the limit, once it reserves more.
		if to == a.reserved {
			a.prefaultAt = a.reserved + 1
		} else {
			a.prefaultAt = a.faulted - prefaultWindow/2
		}
		q.mu.Unlock()
		return false
	}
	m.pinMu.Lock()
	a.pins++
	m.pinMu.Unlock()
	q.mu.Unlock()

	var err error
	call := max(prefaultCall, pageSize) // page-aligned on 64 KiB-page kernels too
	for p := from; p < to && err == nil; p += call {
		err = prefault(a.data[p:min(p+call, to)])
	}

	m.unpin([]pinnedArena{{a: a}})
	q.mu.Lock()
	defer q.mu.Unlock()
	if err != nil {
		m.prefaultOff = true
		return false
	}
	a.faulted = max(a.faulted, to)
	a.prefaultAt = a.faulted - prefaultWindow/2
	return true
}

package bigqueue

import (
	"errors"
	"fmt"
	"os"
	"syscall"
)

// The next arena, prepared ahead. Creating an arena file takes the writer
// a few system calls, and the first access to the new mapping used to
// take milliseconds: before it maps the faulting page, the kernel fills a
// read-ahead window around it (read_ahead_kb; 8 MiB on this project's
// test machine, where that first write took 2.4 to 2.8 ms). In an arena
// of more than 8 MiB a new file's first pages are now advised random
// (noReadAround), which takes most of that away, but the creation and
// the first fault still cost the writer 0.1 to 0.3 ms.
//
// So while the writer is in the second half of an arena, the prefaulter
// (prefault.go) prepares the next one without mu: it creates a file under
// a spare's name, reserves its first blocks, maps it and populates its
// first page, on the prefaulter's goroutine. create then renames the file
// into place and uses the mapping. It needs no directory fsync first,
// unlike a spare that was an arena: the file never had another arena's
// name, so a power loss leaves its records under the new name, under the
// spare's name (which NewQueue deletes), or nowhere, and none of them was
// flushed yet.
//
// Only arenas of at least readyMinArena are prepared, only where the
// prefaulter works and fallocate reserves a prefix (not on darwin), and
// only when there is no spare to reuse (a spare's pages were written
// before and are cheaper still; create takes a spare first). The prepared
// file counts as a spare (Stats.SpareArenas and the spare limit). Close
// and a full disk remove it; a flush that finds nothing to do keeps it
// (one block), so that a slow producer does not have it prepared and
// removed again at every message. Its mapping and its open file are one
// more than SetMaxInMemArenas and the one file of the writing arena
// until create makes it the tail's arena.
const readyMinArena = 1 << 20

// readyArena is a prepared next arena: a file under a spare's name, with
// its first blocks reserved, mapped, and its first page populated.
type readyArena struct {
	name     string
	file     *os.File
	data     []byte
	reserved int
}

// wantReady asks the prefaulter to prepare the next arena once the writer
// is past the middle of a, the newest arena, at pos. Needs mu.
func (m *arenaManager) wantReady(a *arena, pos uint64) {
	if m.ready != nil || m.readyPending || m.readyOff || m.prefaultOff || fullAllocation ||
		m.arenaSize < m.readyMin || a.id+1 != m.next || pos < m.dataSize/2 || len(m.spares) > 0 ||
		m.readySkip == m.next {
		return
	}
	m.readyPending = true
	select {
	case m.prefaultReq <- struct{}{}:
	default:
	}
}

// prepareReady runs on the prefaulter's goroutine: it prepares the next
// arena when wantReady asked for one. A failure turns preparing off; the
// writer then creates its arenas itself. A full disk is left for the
// writer to report when it needs the blocks (preparing is tried again for
// the arena after), and a system that cannot populate pages turns
// prefaulting off, as prefaultStep does; any other failure is a
// housekeeping error, which the next Flush returns.
func (q *Queue) prepareReady() {
	q.mu.Lock()
	m := q.am
	if !m.readyPending || m.prefaultOff || q.usable() != nil {
		m.readyPending = false
		q.mu.Unlock()
		return
	}
	m.spareSeq++
	name := spareName(m.spareSeq)
	q.mu.Unlock()

	r, err := m.prepare(name)

	q.mu.Lock()
	defer q.mu.Unlock()
	m.readyPending = false
	m.dirChanged() // a file was created, or created and removed
	switch {
	case err == nil:
		m.ready = r
	case errors.Is(err, errPopulate):
		// As in prefaultStep: the system cannot populate pages (darwin,
		// Linux before 5.14); the writer takes its own faults.
		m.prefaultOff = true
	case errors.Is(err, syscall.ENOSPC):
		// The writer reports a full disk when it needs the blocks; try
		// again for the arena after this one.
		m.readySkip = m.next
	default:
		m.readyOff = true
		m.choreErr = errors.Join(m.choreErr, fmt.Errorf("prepare the next arena: %w", err))
	}
}

// errPopulate marks a failure to populate the prepared arena's first page.
var errPopulate = errors.New("populate")

// prepare creates, reserves, maps and populates the file name. It needs
// no mu: it touches no state of the manager, and the name is new.
func (m *arenaManager) prepare(name string) (*readyArena, error) {
	f, err := m.fs.create(m.dir, name)
	if err != nil {
		return nil, err
	}
	r := &readyArena{name: name, file: f}
	if r.reserved, err = m.allocateNew(f); err == nil {
		if r.data, err = m.fs.mmap(f, m.arenaSize); err == nil {
			noReadAround(r.data)
			if perr := prefault(r.data[:min(pageSize, r.reserved)]); perr != nil {
				err = fmt.Errorf("%w: %w", errPopulate, perr)
			}
		}
	}
	if err != nil {
		return nil, errors.Join(err, m.discardReady(r))
	}
	return r, nil
}

// takeReady renames the prepared arena, if there is one, to name and
// returns its file, mapping and reserved range; nil when there is none
// or the rename failed (reported with the housekeeping errors). Needs mu.
func (m *arenaManager) takeReady(name string) (*os.File, []byte, int) {
	r := m.ready
	if r == nil {
		return nil, nil, 0
	}
	m.ready = nil
	m.dirChanged()
	if err := m.fs.rename(m.dir, r.name, name); err != nil {
		m.choreErr = errors.Join(m.choreErr, fmt.Errorf("use prepared arena %s: %w", r.name, err), m.discardReady(r))
		return nil, nil, 0
	}
	m.readyUsed++
	return r.file, r.data, r.reserved
}

// release unmaps the prepared arena and closes its file, leaving the
// file, which dropSpares or the next NewQueue removes.
func (r *readyArena) release() error {
	var errs []error
	if r.data != nil {
		errs = append(errs, unmap(r.data))
		r.data = nil
	}
	if r.file != nil {
		errs = append(errs, r.file.Close())
		r.file = nil
	}
	return errors.Join(errs...)
}

// discardReady releases and removes the prepared arena r. Needs mu when
// r is m.ready.
func (m *arenaManager) discardReady(r *readyArena) error {
	err := r.release()
	if rerr := m.fs.remove(m.dir, r.name); rerr != nil && !errors.Is(rerr, os.ErrNotExist) {
		err = errors.Join(err, fmt.Errorf("remove prepared arena %s: %w", r.name, rerr))
	}
	return err
}

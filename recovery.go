package bigqueue

import (
	"cmp"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
)

// unknownSeq is the sequence number of a position recovery could not prove
// to be a record boundary. No record has it, so the first read from such a
// position skips to the next intact arena and reports ErrCorrupt.
const unknownSeq = ^uint64(0)

// recovered is the state recovery rebuilt from the index and the arena
// files, which Queue.install puts in place.
type recovered struct {
	tail, tailSeq     uint64
	oldest, oldestSeq uint64
	consumers         map[string]*consumerState
	damaged           []damagedSlot
	ckpt              checkpoint
	storedTail        uint64 // the index's tail and head words as read, to
	storedHead        uint64 // tell whether the index must be rewritten
	retained          uint64 // the index's retention mark (retention.go)
	// missing are the consumers that stood in arenas found missing below
	// the oldest one left, which neither reclaiming nor retention removed:
	// the loss install reports to each.
	missing []*consumerState
}

// recover rebuilds the queue's state from the index and the arena files
// after any shutdown, clean or not, and installs it. Needs mu or
// exclusive access.
//
// The index's tail may be ahead of the data that reached the disk (the
// kernel writes index pages back on its own), so the log verifies the
// records between the last checkpoint and the tail and cuts the tail back
// to the last valid one (arenaManager.recoverTail). Consumer positions are
// then checked against the record they point at and clamped into
// [oldest, tail]. Records below the checkpoint were msynced before it was
// written; reads check them again.
func (q *Queue) recover() error {
	storedTail, idxHead, ckpt := q.idx.tail(), q.idx.head(), q.idx.checkpoint()
	idxTail := storedTail
	if idxTail > maxOffset {
		idxTail = ckpt.offset // damage: the checkpoint is all that is known
	}
	limit := max(idxTail, ckpt.offset)
	list, damaged := q.idx.consumers()
	clean := q.idx.clean()
	tail, tailSeq, proven, err := q.am.recoverTail(idxHead, limit, ckpt, list, clean)
	if err != nil {
		return err
	}
	r := &recovered{tail: tail, tailSeq: tailSeq, damaged: damaged, ckpt: ckpt,
		storedTail: storedTail, storedHead: idxHead, retained: q.idx.retained(), consumers: make(map[string]*consumerState)}
	if err := r.placeConsumers(q.am, list, proven); err != nil {
		return err
	}
	q.install(r, list)
	q.reportMissing(r, list)
	q.cleanOnDisk = clean
	if !clean {
		// What a crashed process wrote since its last flush may be in
		// the page cache only, as it left it: the first flush syncs
		// those arenas before its checkpoint covers them.
		q.am.inheritUnsynced(min(ckpt.offset, tail), tail)
	}
	if tail < ckpt.offset {
		return q.reportCut(ckpt, list)
	}
	return nil
}

// reportCut makes the loss of records a checkpoint covered, which
// recovery found missing or damaged and cut, an error instead of a
// silent cut: every consumer that had not read them, and the default
// consumer (made here when there is none, since the lost messages were
// kept for it), gets ErrCorrupt from its next read, saying how much was
// lost. The mark is in the index, so a reopen before that read keeps it.
// Needs mu or exclusive access.
func (q *Queue) reportCut(ckpt checkpoint, list []consumerSlot) error {
	what, n := fmt.Sprintf("%d bytes", ckpt.offset-q.tail), uint64(0)
	if ckpt.seq > q.tailSeq && ckpt.seq <= maxOffset {
		n = ckpt.seq - q.tailSeq
		what = fmt.Sprintf("%d messages (sequence numbers %d to %d, %d bytes)", n, q.tailSeq, ckpt.seq-1, ckpt.offset-q.tail)
	}
	why := fmt.Sprintf("recovery found %s at offsets %d to %d missing or damaged although a flush had made them durable, "+
		"and cut the queue back to its last intact message", what, q.tail, ckpt.offset)
	mark := func(st *consumerState, n uint64) {
		text := why
		if st.lost && st.lostWhy != "" {
			// It lost the oldest arenas too (reportMissing): both
			// losses, in one report.
			text = st.lostWhy + ", and " + why
			if n > 0 && st.lostCount > 0 {
				n += st.lostCount
			} else {
				n = 0 // one of them is unknown
			}
		}
		st.lost, st.lostWhy = true, text
		q.idx.markLost(st.slot, n)
		q.changed = true
	}
	for _, c := range list {
		if c.offset >= ckpt.offset {
			continue
		}
		// A consumer that stood inside the lost range lost only what
		// lay past its position.
		lost := n
		if n > 0 && c.offset > q.tail && c.seqHint > q.tailSeq && c.seqHint < ckpt.seq {
			lost = ckpt.seq - c.seqHint
		}
		mark(q.consumers[c.name], lost)
	}
	if q.consumers[defaultConsumerKey] == nil {
		st, err := q.consumerAt(defaultConsumerKey, q.oldest, q.oldestSeq)
		if err != nil {
			return fmt.Errorf("report lost data: %w", err)
		}
		mark(st, n)
	}
	return nil
}

// recoverTail is the log's own recovery. It lists the directory and drops
// what reclaiming or an interrupted write left (inventory, cutLostBottom),
// verifies the records from the best proven boundary up to limit and
// returns the end of the last valid one (the tail) with the next sequence
// number, and the consumer slots whose stored position is a proven
// boundary. Arena files past the tail go, and, after a shutdown that was
// not clean or a cut tail, the tail arena's bytes past the tail are
// zeroed. Needs exclusive access.
func (m *arenaManager) recoverTail(idxHead, limit uint64, ckpt checkpoint, list []consumerSlot, clean bool) (uint64, uint64, map[int]bool, error) {
	ds := m.dataSize
	if err := m.inventory(idxHead, limit, ckpt); err != nil {
		return 0, 0, nil, err
	}
	if err := m.cutLostBottom(idxHead, limit, ckpt); err != nil {
		return 0, 0, nil, err
	}
	start, seq, proven, err := m.startPoint(ckpt, limit, list)
	if err != nil {
		return 0, 0, nil, err
	}
	tail, tailSeq, err := m.verify(start, seq, limit)
	if err != nil {
		return 0, 0, nil, err
	}

	// The tail's arena takes the next write. When the tail lies inside
	// one that cannot be mapped for damage (an intact header naming
	// another queue or another arena: a file copied or renamed in, or an
	// index forged with another queue's ID), verify read nothing in it,
	// and every Enqueue would fail on it: it is set aside, and the next
	// Enqueue creates the arena anew, its header naming the tail (below).
	// get sets a file of the wrong size aside itself, but a failed rename
	// there still reads as damage: setAside tries again, and a rename
	// that keeps failing fails NewQueue rather than leave the file where
	// the next arena must be created.
	if id := tail / ds; tail%ds != 0 && m.present[id] {
		if _, err := m.get(id); err != nil {
			if !errors.Is(err, ErrCorrupt) {
				return 0, 0, nil, err
			}
			if err := m.setAside(id); err != nil {
				return 0, 0, nil, fmt.Errorf("set aside arena %d: %w", id, err)
			}
			m.tailSetAside = true
		}
	}

	// Arenas past the one holding the last valid byte hold no committed
	// record (an interrupted write). They are deleted, not kept as spares:
	// their records carry sequence numbers the next records get. When the
	// tail lies inside an arena that is gone (nothing was verified in it),
	// the next Enqueue creates that arena anew, its header naming the
	// tail, so that the queue takes writes at once.
	keepNext := (tail + ds - 1) / ds
	if tail%ds != 0 && !m.present[tail/ds] {
		keepNext = tail / ds
	}
	for id := m.nextPresent(keepNext); id < m.next; id = m.nextPresent(id + 1) {
		if err := m.discardRecovered(id); err != nil {
			return 0, 0, nil, err
		}
	}
	m.next = keepNext
	m.first = min(m.first, m.next)

	// Past the tail, the tail's arena may hold records of an interrupted
	// run, with the sequence numbers the next records get at the same
	// offsets when messages have the same sizes: a power loss that kept
	// such an old page instead of the new one would let an old record
	// pass for a new one. They are zeroed, unless the queue was closed
	// cleanly and recovery kept its tail. The clean mark is cleared
	// durably before the first write into an arena (see clearCleanMark).
	if !clean || tail < limit {
		if err := m.zeroPast(tail); err != nil {
			return 0, 0, nil, err
		}
	}
	return tail, tailSeq, proven, nil
}

// placeConsumers sets every consumer's position and the oldest stored
// record from the recovered log m. Consumers at or past the tail move to
// it; those in arenas that are gone move to the oldest record left; the
// others keep their position, with its sequence number proven or walked
// to (unknownSeq when it is no record boundary).
func (r *recovered) placeConsumers(m *arenaManager, list []consumerSlot, proven map[int]bool) error {
	ds := m.dataSize
	tail, tailSeq := r.tail, r.tailSeq
	var below []*consumerState
	for _, c := range list {
		st := &consumerState{name: c.name, slot: c.slot, off: c.offset, lost: c.lost}
		if c.lost && c.lostCount > 0 {
			st.lostWhy = fmt.Sprintf("recovery found %d messages it had not read missing or damaged although a flush had made them durable", c.lostCount)
		}
		switch {
		case c.offset >= tail:
			st.off, st.seq = tail, tailSeq
		case m.first == m.next && !m.tailSetAside:
			// No arena is left below the tail: the ones the index
			// names were reclaimed (an arena holding a flushed record
			// is in the directory durably before the checkpoint that
			// covers it), so every consumer had read them. Not when
			// recovery set the only one aside: a consumer below it
			// lost the arenas it had not read, which is reported.
			st.off, st.seq = tail, tailSeq
		case c.offset < m.first*ds:
			st.seq = c.seqHint // for noteDrop
			below = append(below, st)
		case proven[c.slot]:
			st.seq = c.seqHint
		default:
			var err error
			if st.seq, err = m.seqAt(c.offset, tail, tailSeq); err != nil {
				return err
			}
		}
		r.consumers[c.name] = st
	}

	// The oldest stored record, where new consumers start: the first
	// record the oldest intact arena header names, or a consumer position
	// below it. An unproven one counts too: oldest, stored as the reclaim
	// watermark, must never pass a consumer, or the next open would take
	// the damaged arenas under it for reclaimed ones and move it silently.
	r.oldest, r.oldestSeq = tail, tailSeq
	if m.first < m.next {
		b, ok, err := m.oldestBoundary(m.first, tail)
		if err != nil {
			return err
		}
		if ok && b.firstSeq <= tailSeq {
			r.oldest, r.oldestSeq = b.first, b.firstSeq
		}
	}
	for _, st := range r.consumers {
		if st.off >= m.first*ds && st.off < r.oldest {
			r.oldest, r.oldestSeq = st.off, st.seq
		}
	}
	for _, st := range below {
		// Retention stores its mark with the watermark, which only
		// grows after (Close may store the start of the mark's arena): a
		// mark in a later arena than the watermark's is damage, no drop.
		if st.off < r.storedHead && st.off < r.retained && r.retained/ds <= r.storedHead/ds && r.storedHead <= tail {
			r.noteDrop(st) // retention removed what it had not read
		} else {
			// Reclaiming removes an arena only once a flush made every
			// consumer's position past it durable: this consumer's
			// stored position is in a file that went missing.
			r.missing = append(r.missing, st)
		}
		st.off, st.seq = r.oldest, r.oldestSeq
	}
	return nil
}

// reportMissing marks each consumer of r.missing lost, with the count of
// messages it had not read when its stored position says, so that its
// next read returns ErrCorrupt instead of moving on silently. The mark
// is in the index, so a reopen before that read keeps it. Needs mu or
// exclusive access.
func (q *Queue) reportMissing(r *recovered, list []consumerSlot) {
	for _, st := range r.missing {
		var seq uint64
		for _, c := range list {
			if c.name == st.name {
				seq = c.seqHint
			}
		}
		n, what := uint64(0), "messages"
		if seq < r.oldestSeq && r.oldestSeq <= maxOffset {
			n = r.oldestSeq - seq
			what = fmt.Sprintf("%d messages (sequence numbers %d to %d)", n, seq, r.oldestSeq-1)
		}
		st.lost = true
		st.lostWhy = fmt.Sprintf("recovery found the arena files holding %s it had not read missing below the oldest arena left", what)
		st.lostCount = n
		q.idx.markLost(st.slot, n)
		q.changed = true
	}
}

// install puts the recovered state r in place and writes into the index
// what differs from list, the consumer slots as read. Needs mu or
// exclusive access.
func (q *Queue) install(r *recovered, list []consumerSlot) {
	q.tail, q.tailSeq = r.tail, r.tailSeq
	q.pubTail.Store(r.tail)
	q.openTail = r.tail
	q.oldest, q.oldestSeq = r.oldest, r.oldestSeq
	q.consumers, q.damaged, q.ckpt = r.consumers, r.damaged, r.ckpt
	q.changed = len(r.damaged) > 0
	if r.storedTail != r.tail {
		q.idx.setTail(r.tail)
		q.changed = true
	}
	for _, c := range list {
		// A dropped consumer's slot keeps its old position until its
		// next read reports the drop (see dropState).
		if st := q.consumers[c.name]; !st.drop.pending && (st.off != c.offset || st.seq != c.seqHint) {
			q.idx.setConsumerPosition(st.slot, st.off, st.seq)
			q.changed = true
		}
	}
	q.advanceHead()
	q.idx.setHead(r.oldest)
	// What the recovered positions passed is reclaimed by the first
	// flush, once it has made them durable.
	q.changed = q.changed || r.storedHead != r.oldest || q.reclaimLimit() > q.am.first
}

// startPoint returns the record boundary recovery verifies from, with its
// sequence number, and the slots of the consumers whose stored position
// is a proven boundary: the record there carries the stored sequence
// number and passes its checksum.
//
// The checkpoint is the boundary of choice: the records below it were
// msynced before it was written, so verifying from it finds the first
// record a power loss damaged. It is passed over when its arena is gone
// (consumers read past it and the arena was reclaimed), when the arena is
// the wrong size, or when a proven boundary contradicts its sequence
// number (only a damaged index holds such a checkpoint: its checksum
// covers a seq Flush never wrote). Recovery then verifies from the lowest
// proven boundary, a consumer position or the first record the oldest
// arena's header names, when no consumer stands below it. Else it starts
// at the tail when a consumer stands there, and else at the start of the
// oldest arena: the tail is cut there, and every consumer moves to it.
func (m *arenaManager) startPoint(ckpt checkpoint, limit uint64, list []consumerSlot) (uint64, uint64, map[int]bool, error) {
	ds := m.dataSize
	lo := m.first * ds
	type boundary struct{ off, seq uint64 }
	var bounds []boundary
	proven := make(map[int]bool)
	for _, c := range list {
		if c.offset < lo || c.offset >= limit || c.seqHint > maxOffset {
			continue
		}
		_, ok, err := m.checkRecord(c.offset, c.seqHint, limit, true)
		if err != nil {
			return 0, 0, nil, err
		}
		if ok {
			proven[c.slot] = true
			bounds = append(bounds, boundary{c.offset, c.seqHint})
		}
	}

	// The checkpoint may lie in the arena created next: then the tail
	// stays there, and that arena is made by the next Enqueue.
	usable := lo <= ckpt.offset && (ckpt.offset <= m.next*ds || ckpt.offset/ds == m.next)
	if usable && ckpt.offset < m.next*ds {
		// The arena must be there and whole; its header may be damaged.
		_, err := m.get(ckpt.offset / ds)
		if err != nil && !isDamage(err) {
			return 0, 0, nil, err
		}
		usable = err == nil
	}
	sane, err := m.ckptFitsHeaders(ckpt) // and every proven boundary:
	if err != nil {
		return 0, 0, nil, err
	}
	for _, b := range bounds {
		if !seqFits(min(b.off, ckpt.offset), min(b.seq, ckpt.seq), max(b.off, ckpt.offset), max(b.seq, ckpt.seq)) ||
			(b.off < ckpt.offset) != (b.seq < ckpt.seq) {
			sane = false
		}
	}
	if usable && sane {
		return ckpt.offset, ckpt.seq, proven, nil
	}

	if m.first < m.next {
		h, err := m.header(m.first)
		switch {
		case err == nil && h.first >= lo && h.first <= min(limit, m.next*ds) && h.firstSeq <= maxOffset:
			bounds = append(bounds, boundary{h.first, h.firstSeq})
		case err != nil && !isDamage(err):
			return 0, 0, nil, err
		}
	}
	if len(bounds) > 0 {
		// Verifying from above a consumer that is not at a proven
		// boundary would keep what lies past it and make it skip what it
		// has not read: after a power loss, a hole instead of a prefix.
		b := slices.MinFunc(bounds, func(a, b boundary) int { return cmp.Compare(a.off, b.off) })
		below := slices.ContainsFunc(list, func(c consumerSlot) bool { return c.offset >= lo && c.offset < b.off })
		if !below {
			return b.off, b.seq, proven, nil
		}
	}

	// No proven boundary: a consumer at the tail names one, else the
	// tail is cut to the start of the oldest arena.
	seq, atTail := ckpt.seq, false
	writable := limit == m.next*ds || (limit/ds >= m.first && limit/ds < m.next && m.present[limit/ds])
	writable = writable && !slices.ContainsFunc(list, func(c consumerSlot) bool { return c.offset >= lo && c.offset < limit })
	for _, c := range list {
		if c.offset == limit && c.offset >= lo && writable && c.seqHint <= maxOffset {
			if !atTail || c.seqHint > seq {
				seq = c.seqHint
			}
			atTail = true
		}
	}
	if atTail {
		return limit, seq, proven, nil
	}
	if !sane {
		// The checkpoint's seq is wrong: take one no consumer is past.
		for _, c := range list {
			if c.seqHint <= maxOffset {
				seq = max(seq, c.seqHint)
			}
		}
	}
	return lo, seq, proven, nil
}

// ckptFitsHeaders reports whether ckpt agrees with the intact headers of
// the arenas that hold the bytes just before and at its offset: a record
// boundary with the checkpoint's sequence number can follow the first
// record such a header names.
func (m *arenaManager) ckptFitsHeaders(ckpt checkpoint) (bool, error) {
	ids := []uint64{ckpt.offset / m.dataSize}
	if ckpt.offset > 0 {
		ids = append(ids, (ckpt.offset-1)/m.dataSize)
	}
	for _, id := range ids {
		if id < m.first || id >= m.next || !m.present[id] {
			continue
		}
		h, err := m.header(id)
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

// seqFits reports whether a record with sequence number seq2 can start at
// off2 after one with seq1 at off1: the numbers grow by one per record,
// and every record takes at least recordHeaderSize bytes.
func seqFits(off1, seq1, off2, seq2 uint64) bool {
	return off1 <= off2 && seq1 <= seq2 && (seq2-seq1) <= (off2-off1)/recordHeaderSize && (off1 == off2) == (seq1 == seq2)
}

// isDamage reports whether err says that stored bytes are bad, as opposed
// to an error of the system that recovery must not paper over.
func isDamage(err error) bool {
	return errors.Is(err, ErrCorrupt) || errors.Is(err, ErrIncompatibleVersion)
}

// inventory lists the directory and sets [first, next) and the set of
// present arenas, without opening or stat'ing them: the cost is one
// directory read. Arena files below the reclaim watermark's arena (the
// index's head word) were reclaimed, whatever of their removal survived,
// and are deleted. Arena files past the highest offset the index names
// hold no committed record and are deleted. A file of the wrong size is
// found when it is first mapped (see arenaManager.get). Spare files are
// deleted: one a crash left may hold records with sequence numbers the
// next records get.
func (m *arenaManager) inventory(idxHead, limit uint64, ckpt checkpoint) error {
	ds := m.dataSize
	names, err := m.dir.names()
	if err != nil {
		return fmt.Errorf("list queue directory: %w", err)
	}
	floor := uint64(0)
	if idxHead <= limit {
		floor = idxHead / ds
	}
	limitArena := (limit + ds - 1) / ds // arenas from this one on hold no committed byte
	var beyond []uint64
	for _, name := range names {
		if n, ok := parseFileNumber(name, "spare-"); ok {
			// A spare left by a crash may hold the records of an arena
			// whose rename to its new name was lost, with sequence
			// numbers the next records get: it is never reused.
			m.spareSeq = max(m.spareSeq, n)
			m.dirChanged()
			if err := m.fs.remove(m.dir, name); err != nil {
				return fmt.Errorf("remove spare %s: %w", name, err)
			}
			continue
		}
		id, ok := parseFileNumber(name, "arena-")
		switch {
		case !ok:
		case id < floor:
			m.present[id] = true // for discardRecovered, which takes it out
			if err := m.discardRecovered(id); err != nil {
				return fmt.Errorf("remove consumed arena %d: %w", id, err)
			}
		case id >= limitArena:
			beyond = append(beyond, id)
		default:
			m.present[id] = true
		}
	}
	if len(m.present) > 0 {
		m.first = ^uint64(0)
		for id := range m.present {
			m.first = min(m.first, id)
			m.next = max(m.next, id+1)
		}
	} else {
		// No arena: the next one created is the checkpoint's, or the
		// head's when that is later.
		m.first = max(ckpt.offset/ds, floor)
		m.next = m.first
	}
	for _, id := range beyond {
		m.present[id] = true
		if err := m.discardRecovered(id); err != nil {
			return err
		}
	}
	return nil
}

// cutLostBottom handles the oldest arenas missing above the reclaim
// watermark while the checkpoint lies at the start of the oldest of them:
// nothing in them was flushed, so their files were created after the last
// directory fsync, and a power loss kept the creation of later arenas but
// not theirs. Nothing from there on can be read as a prefix of what was
// written, so the later arenas go too and the queue restarts at the
// checkpoint. (Missing arenas that held flushed bytes were durable before
// the checkpoint: that is damage, which reads report.) Needs mu or
// exclusive access.
func (m *arenaManager) cutLostBottom(idxHead, limit uint64, ckpt checkpoint) error {
	ds := m.dataSize
	floor := uint64(0)
	if idxHead <= limit {
		floor = idxHead / ds
	}
	if m.first <= floor || m.first == m.next || ckpt.offset != floor*ds {
		return nil
	}
	for id := m.nextPresent(m.first); id < m.next; id = m.nextPresent(id + 1) {
		if err := m.discardRecovered(id); err != nil {
			return err
		}
	}
	m.first, m.next = floor, floor
	return nil
}

// parseFileNumber parses names of the form prefix + decimal + ".bq".
func parseFileNumber(name, prefix string) (uint64, bool) {
	rest, ok := strings.CutPrefix(name, prefix)
	if !ok {
		return 0, false
	}
	digits, ok := strings.CutSuffix(rest, ".bq")
	if !ok || digits == "" || (len(digits) > 1 && digits[0] == '0') {
		return 0, false
	}
	n, err := strconv.ParseUint(digits, 10, 64)
	return n, err == nil
}

// oldestBoundary returns the first record named by the oldest intact arena
// header from arena from on, when one names a boundary inside the arenas
// and not past limit.
func (m *arenaManager) oldestBoundary(from, limit uint64) (arenaHeader, bool, error) {
	for id := m.nextPresent(from); id < m.next; id = m.nextPresent(id + 1) {
		h, err := m.header(id)
		if err != nil {
			if isDamage(err) {
				continue
			}
			return h, false, err
		}
		if h.first >= id*m.dataSize && h.first <= m.next*m.dataSize && h.first <= limit {
			return h, true, nil
		}
	}
	return arenaHeader{}, false, nil
}

// verify walks the records from the boundary (off, seq) up to limit and
// returns the end of the last valid one and the next sequence number. A
// record is valid when its arena exists, it ends at or below limit, its
// sequence number follows and its checksum matches.
func (m *arenaManager) verify(off, seq, limit uint64) (uint64, uint64, error) {
	for off < limit {
		n, ok, err := m.checkRecord(off, seq, limit, true)
		if err != nil {
			return 0, 0, err
		}
		if !ok {
			break
		}
		off += recordHeaderSize + n
		seq++
	}
	return off, seq, nil
}

// checkRecord reports whether a record with sequence number seq starts at
// off and ends at or below limit, and returns its payload length. With sum
// it also checks the checksum, reading the payload in place.
func (m *arenaManager) checkRecord(off, seq, limit uint64, sum bool) (uint64, bool, error) {
	if off > limit || limit-off < recordHeaderSize {
		return 0, false, nil
	}
	var h [recordHeaderSize]byte
	if err := m.readAt(off, h[:]); err != nil {
		if isDamage(err) {
			return 0, false, nil
		}
		return 0, false, err
	}
	rh := decodeRecordHeader(h[:])
	n := uint64(rh.length)
	if rh.seq != seq || n > limit-off-recordHeaderSize {
		return 0, false, nil
	}
	if !sum {
		return n, true, nil
	}
	crc, err := m.checksum(off+recordHeaderSize, n, recordHeaderSum(h[:]))
	if err != nil {
		if isDamage(err) {
			return 0, false, nil
		}
		return 0, false, err
	}
	return n, crc == rh.crc || m.noChecksum, nil
}

// seqAt returns the sequence number of the record at off, which lies in
// [first*dataSize, tail) and whose stored hint did not check out: the
// records of off's arena are walked from the first one its header names.
// A position that is not a proven boundary gets unknownSeq.
func (m *arenaManager) seqAt(off, tail, tailSeq uint64) (uint64, error) {
	s, ok, err := m.walkTo(off, tail, tailSeq)
	if err != nil || !ok {
		return unknownSeq, err
	}
	return s, nil
}

// walkTo follows record headers from the first record named by off's
// arena header and reports whether one starts exactly at off, with its
// sequence number. It reads one arena's worth of headers at most.
func (m *arenaManager) walkTo(off, tail, tailSeq uint64) (uint64, bool, error) {
	h, err := m.header(off / m.dataSize)
	if err != nil {
		if isDamage(err) {
			return 0, false, nil
		}
		return 0, false, err
	}
	p, s := h.first, h.firstSeq
	for p < off {
		n, ok, err := m.checkRecord(p, s, tail, false)
		if err != nil || !ok {
			return 0, false, err
		}
		p += recordHeaderSize + n
		s++
	}
	return s, p == off && s <= tailSeq, nil
}

package bigqueue

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
)

// recover rebuilds the queue's state from the index and the arena files
// after any shutdown, clean or not. Needs mu or exclusive access.
//
// The index's tail may be ahead of the data that reached the disk (the
// kernel writes index pages back on its own), so the records between the
// last checkpoint and the tail are verified and the tail is cut back to the
// last valid one. Positions are then clamped into [head, tail]. Everything
// else is trusted: records below the checkpoint were msynced before it was
// written, and are checked again when read.
func (q *Queue) recover() error {
	m := q.am
	ds := m.dataSize
	idxTail, ckpt := q.idx.tail(), q.idx.checkpoint()

	if err := q.inventory(ckpt); err != nil {
		return err
	}
	inRange := func(off uint64) bool { return m.first*ds <= off && off <= m.next*ds }
	limit := max(idxTail, ckpt.offset)

	// Find a record boundary to verify from: the checkpoint, else the first
	// record named by an intact arena header, else the end of the arenas.
	start, seq, found := ckpt.offset, ckpt.seq, false
	if inRange(ckpt.offset) {
		if id := ckpt.offset / ds; id == m.next || ckpt.offset == m.next*ds {
			found = true
		} else if _, err := m.header(id); err == nil {
			found = true
		} else if !errors.Is(err, ErrCorrupt) && !errors.Is(err, ErrIncompatibleVersion) {
			return err
		}
	}
	if !found {
		b, ok, err := q.oldestBoundary(limit)
		if err != nil {
			return err
		}
		if ok {
			start, seq = b.first, b.firstSeq
		} else {
			start = m.next * ds
		}
	}

	tail, tailSeq, err := q.verify(start, seq, limit)
	if err != nil {
		return err
	}
	q.tail, q.tailSeq = tail, tailSeq
	if idxTail != tail {
		q.idx.setTail(tail)
	}

	// Arenas past the one holding the last valid byte hold no committed
	// record (an interrupted write): keep them as spares.
	keepNext := m.first
	if tail > m.first*ds {
		keepNext = (tail-1)/ds + 1
	}
	for id := keepNext; id < m.next; id++ {
		if err := m.drop(id); err != nil {
			return err
		}
	}
	m.next = min(m.next, keepNext)

	head, headSeq, err := q.recoverHead(q.idx.head())
	if err != nil {
		return err
	}
	list, _ := q.idx.consumers()
	for _, c := range list {
		st := &consumerState{name: c.name, slot: c.slot, off: c.offset}
		switch {
		case st.off < head:
			st.off, st.seq = head, headSeq
		case st.off >= tail:
			st.off, st.seq = tail, tailSeq
		default:
			s, err := q.seqAt(st.off)
			if err != nil {
				return err
			}
			// A position that is not a record boundary gets a sequence
			// number no record has: its first read skips the damage.
			st.seq = min(max(s, headSeq), tailSeq)
		}
		if st.off != c.offset {
			q.idx.setConsumerOffset(st.slot, st.off)
		}
		q.consumers[c.name] = st
	}
	q.head, q.headSeq = head, headSeq
	q.ckpt = ckpt
	q.advanceHead()
	q.idx.setHead(q.head)
	q.reclaim()
	if err := q.bgErr; err != nil {
		return err
	}
	return nil
}

// inventory lists the directory: the highest contiguous run of arena files
// of the right size becomes [first, next); other arena files are removed;
// spare files are kept up to maxSpareArenas.
func (q *Queue) inventory(ckpt checkpoint) error {
	m := q.am
	entries, err := os.ReadDir(q.dir)
	if err != nil {
		return fmt.Errorf("list queue directory: %w", err)
	}
	sizes := make(map[uint64]int64)
	var ids []uint64
	for _, e := range entries {
		name := e.Name()
		if n, ok := parseFileNumber(name, "spare-"); ok {
			m.spareSeq = max(m.spareSeq, n)
			path := filepath.Join(q.dir, name)
			if len(m.spares) < maxSpareArenas {
				m.spares = append(m.spares, path)
			} else if err := os.Remove(path); err != nil {
				return fmt.Errorf("remove spare %s: %w", name, err)
			}
			continue
		}
		id, ok := parseFileNumber(name, "arena-")
		if !ok {
			continue
		}
		info, err := e.Info()
		if err != nil {
			return fmt.Errorf("stat %s: %w", name, err)
		}
		sizes[id] = info.Size()
		ids = append(ids, id)
	}
	slices.Sort(ids)

	// With no arena at all, start after the checkpoint's arena.
	m.first = (ckpt.offset + m.dataSize - 1) / m.dataSize
	m.next = m.first
	for i := len(ids) - 1; i >= 0; i-- {
		if sizes[ids[i]] == int64(q.opts.arenaSize) {
			m.next = ids[i] + 1
			m.first = ids[i]
			for m.first > 0 && sizes[m.first-1] == int64(q.opts.arenaSize) {
				m.first--
			}
			break
		}
	}
	for _, id := range ids {
		if id < m.first || id >= m.next {
			m.dirDirty = true
			if err := os.Remove(m.arenaPath(id)); err != nil {
				return fmt.Errorf("remove stray arena %d: %w", id, err)
			}
		}
	}
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
// header, when one names a boundary inside the arenas and not past limit.
func (q *Queue) oldestBoundary(limit uint64) (arenaHeader, bool, error) {
	m := q.am
	for id := m.first; id < m.next; id++ {
		h, err := m.header(id)
		if err != nil {
			if errors.Is(err, ErrCorrupt) || errors.Is(err, ErrIncompatibleVersion) {
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
// record is valid when its arena exists, its length stays below limit, its
// sequence number follows and its checksum matches.
func (q *Queue) verify(off, seq, limit uint64) (uint64, uint64, error) {
	var h [recordHeaderSize]byte
	for off < limit {
		if err := q.am.readAt(off, h[:]); err != nil {
			if errors.Is(err, ErrCorrupt) {
				break
			}
			return 0, 0, err
		}
		n := uint64(le32(h[recordLenOff:]))
		if le64(h[recordSeqOff:]) != seq || n > limit-off-recordHeaderSize {
			break
		}
		crc, err := q.am.checksum(off+recordHeaderSize, n, crc32Of(h[recordLenOff:]))
		if err != nil {
			if errors.Is(err, ErrCorrupt) {
				break
			}
			return 0, 0, err
		}
		if crc != le32(h[recordCRCOff:]) {
			break
		}
		off += recordHeaderSize + n
		seq++
	}
	return off, seq, nil
}

// recoverHead clamps the stored head into the recovered arenas and tail
// and finds its sequence number.
func (q *Queue) recoverHead(head uint64) (uint64, uint64, error) {
	m := q.am
	if head >= q.tail {
		return q.tail, q.tailSeq, nil
	}
	if head >= m.first*m.dataSize {
		s, err := q.seqAt(head)
		if err != nil {
			return 0, 0, err
		}
		if s < q.tailSeq {
			return head, s, nil
		}
	}
	b, ok, err := q.oldestBoundary(q.tail)
	if err != nil || !ok || b.firstSeq > q.tailSeq {
		return q.tail, q.tailSeq, err
	}
	return b.first, b.firstSeq, nil
}

// seqAt returns the sequence number in the record header at off, unchecked;
// the read that follows checks it. A missing arena gives the largest value.
func (q *Queue) seqAt(off uint64) (uint64, error) {
	var h [recordHeaderSize]byte
	if err := q.am.readAt(off, h[:]); err != nil {
		if errors.Is(err, ErrCorrupt) {
			return ^uint64(0), nil
		}
		return 0, err
	}
	return le64(h[recordSeqOff:]), nil
}

package bigqueue

import (
	"bytes"
	"cmp"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// Fuzz targets: the record decoder, the index decoder, and a
// whole queue directory. The seed corpora under testdata/fuzz/<Name>/ are
// files of real small queues (seed-*, TestWriteFuzzSeeds writes them) and
// inputs the fuzzer found (regress-*, kept as regression guards). Fuzz one
// target with
//
//	go test -run '^$' -fuzz '^FuzzOpenDirectory$' -fuzztime 60s -fuzzminimizetime 100x .
//
// (the library's coverage is not deterministic, so the fuzzer takes many
// inputs for new ones; minimizing each for the default 60 s leaves little
// time for fuzzing.)
//
// The harnesses build files from the layout of format.go with their
// own encoders (fuzzCRC and friends), not with the library's, so that they
// also check that the code reads what the format spec says.

const (
	fuzzArenaSize = 4096 // the smallest arena on a 4 KiB-page machine
	fuzzDataSize  = fuzzArenaSize - arenaHeaderSize

	// fuzzQueueID replaces the random queue id of the template queues, so
	// that they, and the seeds made of them, come out the same every time.
	fuzzQueueID = 0x5eed_f00d_5eed_f00d

	// fuzzMaxAlloc bounds what opening and draining a fuzzed queue may
	// allocate: its files hold a few KiB.
	fuzzMaxAlloc = 64 << 20

	// fuzzMaxArenaSize is the largest stored arena size a harness enqueues
	// into: a damaged index may name up to 1 TiB, which the library accepts
	// and a new arena then tries to allocate.
	fuzzMaxArenaSize = 1 << 20
)

var fuzzCastagnoli = crc32.MakeTable(crc32.Castagnoli)

// fuzzCRC is the CRC32C of the concatenation of parts.
func fuzzCRC(parts ...[]byte) uint32 {
	var c uint32
	for _, p := range parts {
		c = crc32.Update(c, fuzzCastagnoli, p)
	}
	return c
}

func fuzzPut32(b []byte, v uint32) { binary.LittleEndian.PutUint32(b, v) }
func fuzzPut64(b []byte, v uint64) { binary.LittleEndian.PutUint64(b, v) }

// fuzzFixIndex recomputes the checksums of an index image (format.go: index
// header, checkpoint slot, consumer slot): the header's, both checkpoint
// slots', and those of the used consumer slots whose name length is in
// range. The fuzzer can then reach what lies behind the checksums.
func fuzzFixIndex(b []byte) {
	if len(b) < indexHeaderSize {
		return
	}
	fuzzPut32(b[idxHeaderCRCOff:], fuzzCRC(b[:idxHeaderCRCOff], b[idxArenaSizeOff:idxTailOff]))
	for i := range 2 {
		s := b[idxCkptOff+i*ckptSize:][:ckptSize]
		fuzzPut32(s[ckptCRCOff:], fuzzCRC(s[:ckptCRCOff]))
	}
	for off := indexHeaderSize; off+slotSize <= len(b); off += slotSize {
		s := b[off : off+slotSize]
		n := le32(s[slotNameLenOff:])
		if le32(s[slotStateOff:]) == slotUsed && n >= 1 && n <= MaxConsumerNameLen {
			fuzzPut32(s[slotCRCOff:], fuzzCRC(s[slotNameLenOff:slotCRCOff], s[slotNameOff:slotNameOff+int(n)]))
		}
	}
}

// fuzzFixArenaHeader recomputes the checksum of the arena header at the
// start of b.
func fuzzFixArenaHeader(b []byte) {
	if len(b) >= arenaHeaderSize {
		fuzzPut32(b[arenaCRCOff:], fuzzCRC(b[:arenaCRCOff], b[arenaSizeOff:arenaHeaderSize]))
	}
}

// fuzzSetQueueID rewrites the queue id of every file of a queue directory
// image (index, arenas, spares) to id, with their checksums.
func fuzzSetQueueID(files map[string][]byte, id uint64) {
	for name, b := range files {
		switch {
		case name == indexFileName:
			fuzzPut64(b[idxQueueIDOff:], id)
			fuzzFixIndex(b)
		case strings.HasSuffix(name, ".bq"):
			fuzzPut64(b[arenaQueueIDOff:], id)
			fuzzFixArenaHeader(b)
		}
	}
}

// fuzzFrameAt decodes the record frame at offset off of stream and reports
// whether it fits in stream, carries sequence number seq (any when seq is
// negative) and passes its checksum.
func fuzzFrameAt(stream []byte, off int, seq int64) ([]byte, bool) {
	if off < 0 || len(stream)-off < recordHeaderSize {
		return nil, false
	}
	h := stream[off : off+recordHeaderSize]
	n := uint64(le32(h[recordLenOff:]))
	if n > uint64(len(stream)-off-recordHeaderSize) || (seq >= 0 && le64(h[recordSeqOff:]) != uint64(seq)) {
		return nil, false
	}
	payload := stream[off+recordHeaderSize : off+recordHeaderSize+int(n)]
	return payload, fuzzCRC(h[recordLenOff:], payload) == le32(h[recordCRCOff:])
}

// fuzzChain returns the payloads a reader must find in stream, a piece of
// the logical stream that starts with the record of sequence number 0 and
// ends at the tail: record after record, each with the next sequence
// number, a length that fits and a matching checksum. It also returns the
// offset where the chain ends.
func fuzzChain(stream []byte) ([][]byte, int) {
	var chain [][]byte
	off := 0
	for {
		payload, ok := fuzzFrameAt(stream, off, int64(len(chain)))
		if !ok {
			return chain, off
		}
		chain = append(chain, payload)
		off += recordHeaderSize + len(payload)
	}
}

// fuzzFixChain recomputes the checksum of every record of stream that
// fits, following the lengths from offset 0 whatever the sequence numbers.
func fuzzFixChain(stream []byte) {
	for off := 0; len(stream)-off >= recordHeaderSize; {
		h := stream[off : off+recordHeaderSize]
		n := uint64(le32(h[recordLenOff:]))
		if n > uint64(len(stream)-off-recordHeaderSize) {
			return
		}
		end := off + recordHeaderSize + int(n)
		fuzzPut32(h[recordCRCOff:], fuzzCRC(h[recordLenOff:], stream[off+recordHeaderSize:end]))
		off = end
	}
}

// fuzzHasFrame reports whether stream holds, at any offset, a record with
// payload msg and a matching checksum: a record the fuzzer forged, which
// a reader may return although it was never enqueued.
func fuzzHasFrame(stream, msg []byte) bool {
	for off := 0; off+recordHeaderSize+len(msg) <= len(stream); off++ {
		if int(le32(stream[off+recordLenOff:])) != len(msg) {
			continue
		}
		if payload, ok := fuzzFrameAt(stream, off, -1); ok && bytes.Equal(payload, msg) {
			return true
		}
	}
	return false
}

// fuzzExecDir returns an empty directory for one execution under root,
// removed when the execution ends.
func fuzzExecDir(t *testing.T, root string) string {
	dir, err := os.MkdirTemp(root, "exec-")
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, os.RemoveAll(dir)) })
	return dir
}

func fuzzWriteFiles(t *testing.T, dir string, files map[string][]byte) {
	for name, b := range files {
		require.NoError(t, os.WriteFile(filepath.Join(dir, name), b, 0o644))
	}
}

// fuzzSkipBigPages skips on machines whose pages exceed fuzzArenaSize,
// where SetArenaSize refuses it.
func fuzzSkipBigPages(tb testing.TB) {
	if os.Getpagesize() > fuzzArenaSize {
		tb.Skipf("page size %d > %d", os.Getpagesize(), fuzzArenaSize)
	}
}

// fuzzOptions are the options of the template queues.
func fuzzOptions() []Option {
	return []Option{SetArenaSize(fuzzArenaSize), SetPeriodicFlushOps(0), SetPeriodicFlushDuration(0)}
}

// fuzzMessages are the messages of the template queues: printable, so that
// the seed files stay readable, of 0 to 400 bytes, all distinct.
func fuzzMessages() [][]byte {
	rng := rand.New(rand.NewPCG(21, 21))
	msgs := make([][]byte, 60)
	for i := range msgs {
		n := rng.IntN(401)
		switch i {
		case 3:
			n = 0
		case 4:
			n = 1
		case 5:
			n = recordHeaderSize
		}
		b := make([]byte, n)
		for j := range b {
			b[j] = byte('a' + rng.IntN(26))
		}
		if n >= 5 {
			copy(b, fmt.Sprintf("m%03d/", i))
		}
		msgs[i] = b
	}
	return msgs
}

// fuzzTemplate builds the template queue of FuzzIndexDecode and
// FuzzOpenDirectory and returns its files, with queue id fuzzQueueID: the
// messages of fuzzMessages over four arenas of fuzzArenaSize bytes, a
// consumer "reader" that read 25 of them, the default consumer 35, and
// extra more consumers created at the end (after the Flush, if any).
//
// Without crash, a Flush turns arena 0, which both read past, into a spare
// and the files are those of the closed queue plus that spare, kept as a
// crash inside Close leaves it (Close removes spares after it has synced
// the index). With crash the files are copied before any Flush after the
// reads, as a process crash leaves them: the checkpoint is older than the
// tail and arena 0, which reads do not reclaim, is still there.
func fuzzTemplate(tb testing.TB, crash bool, extra int) map[string][]byte {
	tb.Helper()
	fuzzSkipBigPages(tb)
	msgs := fuzzMessages()
	q, dir := openTestQueue(tb, fuzzOptions()...)
	reader, err := q.NewConsumer("reader")
	require.NoError(tb, err)
	for i, m := range msgs {
		require.NoError(tb, q.Enqueue(m))
		if i == 40 {
			require.NoError(tb, q.Flush())
		}
	}
	for i := range 35 {
		if i < 25 {
			b, err := reader.Dequeue()
			require.NoError(tb, err)
			require.Equal(tb, msgs[i], b)
		}
		b, err := q.Dequeue()
		require.NoError(tb, err)
		require.Equal(tb, msgs[i], b)
	}
	var spare []byte
	if !crash {
		require.NoError(tb, q.Flush())
		require.Equal(tb, 1, q.Stats().SpareArenas)
		spare, err = os.ReadFile(filepath.Join(dir, "spare-1.bq"))
		require.NoError(tb, err)
	}
	for i := range extra {
		// At the oldest record stored: the first one in arena 1.
		_, err := q.NewConsumer(fmt.Sprintf("extra-%02d", i))
		require.NoError(tb, err)
	}
	if !crash {
		require.NoError(tb, q.Close())
	}
	files := make(map[string][]byte)
	entries, err := os.ReadDir(dir)
	require.NoError(tb, err)
	for _, e := range entries {
		if e.Name() == legacyLockFileName {
			continue
		}
		b, err := os.ReadFile(filepath.Join(dir, e.Name()))
		require.NoError(tb, err)
		files[e.Name()] = b
	}
	if crash {
		require.Equal(tb, []string{"arena-0.bq", "arena-1.bq", "arena-2.bq", "arena-3.bq"}, fuzzArenaNames(files))
	} else {
		require.NotContains(tb, files, "spare-1.bq", "Close removes spares")
		files["spare-1.bq"] = spare
		require.Equal(tb, []string{"arena-1.bq", "arena-2.bq", "arena-3.bq"}, fuzzArenaNames(files))
	}
	fuzzSetQueueID(files, fuzzQueueID)
	return files
}

// fuzzMessageIndex is messageIndex of the template's messages and of
// the fuzzNew messages the harnesses add, which come after them.
func fuzzMessageIndex() map[string]int {
	byContent := messageIndex(fuzzMessages())
	for i, m := range fuzzNew {
		byContent[m] = len(byContent) + i
	}
	return byContent
}

// fuzzNew are the messages a harness enqueues into a fuzzed queue.
var fuzzNew = []string{"new/0", "new/1", "new/2"}

// fuzzReaders returns a read function per consumer of q, the default one
// (through Queue.Dequeue) first.
func fuzzReaders(t *testing.T, q *Queue) ([]string, []func() ([]byte, error)) {
	names := []string{defaultConsumerKey}
	reads := []func() ([]byte, error){q.Dequeue}
	for _, name := range q.Consumers() {
		if name == defaultConsumerKey {
			continue
		}
		c, err := q.NewConsumer(name)
		require.NoError(t, err)
		names = append(names, name)
		reads = append(reads, c.Dequeue)
	}
	return names, reads
}

// fuzzExercise opens the queue in dir as a user finds it after damage:
// NewQueue refuses it with ErrCorrupt or ErrIncompatibleVersion, or opens
// it without allocating more than fuzzMaxAlloc; every consumer then reads
// only what fuzzDrain accepts; unless the stored arena size exceeds
// fuzzMaxArenaSize the queue takes new messages (or refuses them with
// ErrExhausted, only when the record would end past maxOffset or its
// sequence number reach it), Close and a reopen keep the ones taken, and
// every consumer then reads exactly them.
func fuzzExercise(t *testing.T, dir string, byContent map[string]int, forged func([]byte) bool, arenaSize uint64) {
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	limit := fuzzIndexLimit(t, dir)
	rules := drainRules{forged: forged, drops: indexHasRetentionMark(t, dir)}
	q, err := NewQueue(dir, corruptOpenOptions()...)
	if err != nil {
		require.True(t, errors.Is(err, ErrCorrupt) || errors.Is(err, ErrIncompatibleVersion), "open: untyped error: %v", err)
		return
	}
	closed := false
	t.Cleanup(func() {
		if !closed {
			require.NoError(t, q.Close())
		}
	})
	fuzzCheckRecovered(t, q, limit)
	requireInvariants(t, q)
	names, reads := fuzzReaders(t, q)
	for i, read := range reads {
		_, err := drain(read, byContent, rules, 4*fuzzArenaSize)
		require.NoError(t, err, "consumer %q", names[i])
	}
	runtime.ReadMemStats(&after)
	require.Less(t, after.TotalAlloc-before.TotalAlloc, uint64(fuzzMaxAlloc), "opening and draining allocated too much")
	requireInvariants(t, q)
	fuzzCheckRecovered(t, q, limit)
	if arenaSize > fuzzMaxArenaSize {
		closed = true
		require.NoError(t, q.Close())
		return
	}
	var taken []string
	for _, m := range fuzzNew {
		if err := q.EnqueueString(m); err != nil {
			// Only a tail or sequence number at the end of the range
			// recovery accepts refuses a message, and then typed.
			require.ErrorIs(t, err, ErrExhausted)
			require.True(t, q.tail+recordHeaderSize+uint64(len(m)) > maxOffset || q.tailSeq >= maxOffset,
				"refused with room left (tail %d, sequence number %d): %v", q.tail, q.tailSeq, err)
			continue
		}
		taken = append(taken, m)
	}
	closed = true
	require.NoError(t, q.Close())

	limit = fuzzIndexLimit(t, dir)
	q, err = NewQueue(dir, corruptOpenOptions()...)
	require.NoError(t, err, "reopen after a clean close")
	closed = false
	fuzzCheckRecovered(t, q, limit)
	requireInvariants(t, q)
	names2, reads := fuzzReaders(t, q)
	require.Equal(t, names, names2, "consumers after the reopen")
	for i, read := range reads {
		for _, m := range taken {
			b, err := read()
			require.NoError(t, err, "consumer %q after the reopen", names[i])
			require.Equal(t, m, string(b), "consumer %q after the reopen", names[i])
		}
		_, err := read()
		require.ErrorIs(t, err, ErrEmptyQueue, "consumer %q after the reopen", names[i])
	}
	requireInvariants(t, q)
	closed = true
	require.NoError(t, q.Close())
}

// fuzzIndexLimit reads the index file of the queue in dir, when it has a
// header, and returns the highest logical offset it names a record
// boundary at: its tail word, or the offset of its checkpoint (the valid
// slot with the highest generation, docs/FORMAT.md), whichever is higher. Recovery
// may cut the tail back below it, never move it past it.
func fuzzIndexLimit(t *testing.T, dir string) uint64 {
	b, err := os.ReadFile(filepath.Join(dir, indexFileName))
	require.NoError(t, err)
	if len(b) < indexHeaderSize {
		return 0
	}
	limit := le64(b[idxTailOff:])
	var gen uint64
	for i := range 2 {
		s := b[idxCkptOff+i*ckptSize:][:ckptSize]
		if le32(s[ckptCRCOff:]) == fuzzCRC(s[:ckptCRCOff]) && le64(s[ckptGenOff:]) > gen {
			gen = le64(s[ckptGenOff:])
			limit = max(le64(b[idxTailOff:]), le64(s[ckptOffsetOff:]))
		}
	}
	return limit
}

// fuzzCheckRecovered checks what recover must leave, whatever the files
// held (see TestCorruptionTailArenaHeader and the regress-* seeds under
// testdata/fuzz for the inputs that broke each once):
//
//   - the tail lies in an arena Enqueue can write or create (errBricked;
//     commit 86ca5dd, fixed by 32ec9be);
//   - the tail is not past every offset the index names (limit);
//   - no consumer, and not the head, stands at or before the tail with a
//     higher sequence number than the tail's, and a consumer at the tail
//     expects the tail's: else every message enqueued afterwards would be
//     skipped as corrupt. (A checkpoint that passes its checksum with a
//     sequence number the records contradict, and a damaged header of the
//     only arena with the checkpoint's arena reclaimed, once led there.)
func fuzzCheckRecovered(t *testing.T, q *Queue, limit uint64) {
	require.False(t, corruptBricked(q), "%v: the tail lies in an arena that is missing and may not be created", errBricked)
	q.mu.Lock()
	defer q.mu.Unlock()
	require.LessOrEqual(t, q.tail, limit, "recover set the tail past the index's tail and checkpoint")
	require.True(t, q.headSeq == unknownSeq || q.headSeq <= q.tailSeq, "the head's sequence number %d exceeds the tail's %d", q.headSeq, q.tailSeq)
	for name, st := range q.consumers {
		require.False(t, st.seq != unknownSeq && (st.seq > q.tailSeq || (st.off == q.tail && st.seq != q.tailSeq)),
			"consumer %q at %d expects sequence number %d, the tail %d has %d; new messages would be skipped as corrupt",
			name, st.off, st.seq, q.tail, q.tailSeq)
	}
}

// fuzzRecordTemplate returns the index and the arena header of a queue of
// one arena of fuzzArenaSize bytes whose consumers, the default one and
// "reader", stand at offset 0.
func fuzzRecordTemplate(tb testing.TB) (index, header []byte) {
	tb.Helper()
	fuzzSkipBigPages(tb)
	q, dir := openTestQueue(tb, fuzzOptions()...)
	_, err := q.NewConsumer("reader")
	require.NoError(tb, err)
	require.NoError(tb, q.EnqueueString("x"))
	require.NoError(tb, q.Close())
	index, err = os.ReadFile(filepath.Join(dir, indexFileName))
	require.NoError(tb, err)
	arena, err := os.ReadFile(filepath.Join(dir, "arena-0.bq"))
	require.NoError(tb, err)
	return index, arena[:arenaHeaderSize]
}

// FuzzRecordDecode takes stream as the start of the logical stream, whose
// first record has sequence number 0, and puts it in the only arena of a
// queue whose tail is its end and whose consumers stand at 0. With clean,
// the index says the queue was closed cleanly (a checkpoint at the tail;
// when the valid records end before it, with a sequence number 1 + extra
// past theirs), so reads must find any damage; without, it says nothing
// was flushed, so opening verifies the records and cuts the tail back. fix
// recomputes the checksum of every record the lengths lead to, so that the
// fuzzer reaches past them.
//
// Both consumers must read exactly the chain of valid records that
// fuzzChain finds, nothing else, then ErrEmptyQueue; with clean, one read
// reports ErrCorrupt when the chain ends before the tail (the checkpoint
// covered the lost bytes). The queue then
// takes and returns a new message.
func FuzzRecordDecode(f *testing.F) {
	index, header := fuzzRecordTemplate(f)
	root := memDir(f)
	f.Add([]byte{}, false, uint8(0), false)
	f.Add(make([]byte, recordHeaderSize), true, uint8(0), true)

	f.Fuzz(func(t *testing.T, stream []byte, clean bool, extra uint8, fix bool) {
		stream = slices.Clone(stream[:min(len(stream), fuzzDataSize)])
		if fix {
			fuzzFixChain(stream)
		}
		chain, end := fuzzChain(stream)

		idx := slices.Clone(index)
		fuzzPut64(idx[idxTailOff:], uint64(len(stream)))
		fuzzPut64(idx[idxHeadOff:], 0)
		clear(idx[idxCkptOff : idxCkptOff+2*ckptSize])
		if clean {
			// The sequence number at the tail: the chain's next one when the
			// chain reaches the tail, else one past the record at its end,
			// which damage broke, or more, as many as the damaged bytes can
			// hold (records take 16 bytes at least). A checkpoint that
			// claims more records than its offset holds, or records where
			// there are no bytes, cannot come from a flush: recovery may
			// pass it over, cut the tail at the chain's end and report it.
			seq := uint64(len(chain))
			if end < len(stream) {
				seq += 1 + uint64(extra)
			}
			s := idx[idxCkptOff+ckptSize:][:ckptSize] // generation 1 goes to slot 1
			fuzzPut64(s[ckptOffsetOff:], uint64(len(stream)))
			fuzzPut64(s[ckptSeqOff:], seq)
			fuzzPut64(s[ckptGenOff:], 1)
		}
		for off := indexHeaderSize; off+slotSize <= len(idx); off += slotSize {
			if le32(idx[off+slotStateOff:]) == slotUsed {
				fuzzPut64(idx[off+slotOffsetOff:], 0)
				fuzzPut64(idx[off+slotSeqOff:], 0)
			}
		}
		fuzzFixIndex(idx)
		arena := make([]byte, fuzzArenaSize)
		copy(arena, header)
		copy(arena[arenaHeaderSize:], stream)
		dir := fuzzExecDir(t, root)
		fuzzWriteFiles(t, dir, map[string][]byte{indexFileName: idx, "arena-0.bq": arena})

		q, err := NewQueue(dir, corruptOpenOptions()...)
		require.NoError(t, err)
		t.Cleanup(func() { require.NoError(t, q.Close()) })
		requireInvariants(t, q)
		reader, err := q.NewConsumer("reader")
		require.NoError(t, err)
		// With a checkpoint past the chain's end, what it covers is lost:
		// a read finds the damage (a checkpoint recovery trusts), or
		// recovery cuts the tail and reports the cut (one it passes
		// over). Either way once, never silently.
		wantCorrupt := 0
		if clean && end < len(stream) {
			wantCorrupt = 1
		}
		for _, read := range []func() ([]byte, error){q.Dequeue, reader.Dequeue} {
			var got [][]byte
			corrupt := 0
			for i := 0; ; i++ {
				require.LessOrEqual(t, i, len(chain)+wantCorrupt, "no ErrEmptyQueue after %d reads", i)
				b, err := read()
				if errors.Is(err, ErrEmptyQueue) {
					break
				}
				if errors.Is(err, ErrCorrupt) {
					corrupt++
					continue
				}
				require.NoError(t, err)
				got = append(got, b)
			}
			require.Equal(t, len(chain), len(got), "messages read")
			for i := range chain {
				require.True(t, bytes.Equal(chain[i], got[i]), "message %d: read %q, want %q", i, trimForLog(got[i]), trimForLog(chain[i]))
			}
			require.Equal(t, wantCorrupt, corrupt, "ErrCorrupt reports")
		}
		requireInvariants(t, q)
		require.NoError(t, q.EnqueueString("new"))
		for _, read := range []func() ([]byte, error){q.Dequeue, reader.Dequeue} {
			b, err := read()
			require.NoError(t, err)
			require.Equal(t, "new", string(b))
		}
		require.NoError(t, q.Close())
	})
}

// fuzzNormalizeIndex pads or cuts an index image to the nearest valid
// index size (at least initialIndexSize, a whole number of slots, at most
// 64 KiB) and recomputes its checksums.
func fuzzNormalizeIndex(b []byte) []byte {
	size := max(len(b), initialIndexSize)
	size = indexHeaderSize + (size-indexHeaderSize+slotSize-1)/slotSize*slotSize
	size = min(size, 64<<10)
	out := make([]byte, size)
	copy(out, b)
	fuzzFixIndex(out)
	return out
}

// FuzzIndexDecode takes the fuzz bytes as the index of the template queue
// of fuzzTemplate (three arenas and a spare, two consumers part-way); with
// fix it first pads the bytes to a valid index size and recomputes their
// checksums. See fuzzExercise for what must hold. The arenas are intact,
// so every message read must be one of the template's, in order.
func FuzzIndexDecode(f *testing.F) {
	template := fuzzTemplate(f, false, 0)
	byContent := fuzzMessageIndex()
	root := memDir(f)
	f.Add([]byte{}, false)
	f.Add(make([]byte, initialIndexSize), true)

	f.Fuzz(func(t *testing.T, index []byte, fix bool) {
		if fix {
			index = fuzzNormalizeIndex(index)
		}
		files := make(map[string][]byte, len(template))
		for name, b := range template {
			files[name] = b
		}
		files[indexFileName] = index
		dir := fuzzExecDir(t, root)
		fuzzWriteFiles(t, dir, files)
		var arenaSize uint64
		if len(index) >= idxArenaSizeOff+8 {
			arenaSize = le64(index[idxArenaSizeOff:])
		}
		fuzzExercise(t, dir, byContent, nil, arenaSize)
	})
}

// Layout bits of FuzzOpenDirectory.
const (
	fuzzLayoutBase  = 3  // the first arena's number: 0, 1, 2 or 7
	fuzzLayoutSpare = 4  // the last file is spare-1.bq, not an arena
	fuzzLayoutHole  = 8  // the arenas after the first are numbered one higher
	fuzzLayoutFix   = 16 // recompute the index's checksums
)

// fuzzSplit cuts data into the files of a queue directory: the index
// (its first initialIndexSize bytes), then up to four files of
// fuzzArenaSize bytes (the last may be shorter, a file of the wrong
// size), named after layout.
func fuzzSplit(data []byte, layout uint8) map[string][]byte {
	files := make(map[string][]byte)
	cut := min(len(data), initialIndexSize)
	files[indexFileName] = slices.Clone(data[:cut])
	data = data[cut:]
	var chunks [][]byte
	for len(data) > 0 && len(chunks) < 4 {
		n := min(len(data), fuzzArenaSize)
		chunks = append(chunks, slices.Clone(data[:n]))
		data = data[n:]
	}
	id := []uint64{0, 1, 2, 7}[layout&fuzzLayoutBase]
	for i, c := range chunks {
		switch {
		case i == len(chunks)-1 && layout&fuzzLayoutSpare != 0:
			files["spare-1.bq"] = c
		default:
			files[fmt.Sprintf("arena-%d.bq", id)] = c
			id++
			if i == 0 && layout&fuzzLayoutHole != 0 {
				id++
			}
		}
	}
	if layout&fuzzLayoutFix != 0 {
		fuzzFixIndex(files[indexFileName])
	}
	return files
}

// fuzzAddSeeds adds the seeds of the directory fuzzers (FuzzOpenDirectory,
// FuzzInspect) besides those in testdata: no file at all, and an empty
// index with one empty arena.
func fuzzAddSeeds(f *testing.F) {
	f.Add([]byte{}, uint8(0))
	f.Add(make([]byte, initialIndexSize+fuzzArenaSize), uint8(fuzzLayoutFix))
}

// fuzzStream returns the data of the arenas of files in number order,
// where a forged record would be.
func fuzzStream(files map[string][]byte) []byte {
	var stream []byte
	for _, name := range fuzzArenaNames(files) {
		if b := files[name]; len(b) > arenaHeaderSize {
			stream = append(stream, b[arenaHeaderSize:]...)
		}
	}
	return stream
}

// fuzzArenaNames returns the names of the arena files among files, in
// number order.
func fuzzArenaNames(files map[string][]byte) []string {
	var names []string
	for name := range files {
		if _, ok := parseFileNumber(name, "arena-"); ok {
			names = append(names, name)
		}
	}
	slices.SortFunc(names, func(a, b string) int {
		x, _ := parseFileNumber(a, "arena-")
		y, _ := parseFileNumber(b, "arena-")
		return cmp.Compare(x, y)
	})
	return names
}

// fuzzJoin is the inverse of fuzzSplit for a template's files, whose
// arenas are numbered from 0, 1 or 2 without a hole: it returns the index,
// the arenas in order, then a spare if there is one, and the layout.
func fuzzJoin(t *testing.T, files map[string][]byte) ([]byte, uint8) {
	out := slices.Clone(files[indexFileName])
	names := fuzzArenaNames(files)
	require.NotEmpty(t, names)
	first, _ := parseFileNumber(names[0], "arena-")
	require.Less(t, first, uint64(3))
	layout := uint8(first)
	for _, name := range names {
		out = append(out, files[name]...)
	}
	for name, b := range files {
		if strings.HasPrefix(name, "spare-") {
			out = append(out, b...)
			layout |= fuzzLayoutSpare
			break
		}
	}
	return out, layout
}

// FuzzOpenDirectory splits the fuzz bytes into a queue directory (see
// fuzzSplit and the layout bits) and checks it with fuzzExercise. Every
// message read must be one of the template messages the seeds hold, in
// order, or the payload of a record with a valid checksum that the fuzzer
// wrote into the input itself.
func FuzzOpenDirectory(f *testing.F) {
	byContent := fuzzMessageIndex()
	root := memDir(f)
	fuzzAddSeeds(f)

	f.Fuzz(func(t *testing.T, data []byte, layout uint8) {
		files := fuzzSplit(data, layout)
		stream := fuzzStream(files)
		forged := func(msg []byte) bool { return fuzzHasFrame(stream, msg) }
		dir := fuzzExecDir(t, root)
		fuzzWriteFiles(t, dir, files)
		var arenaSize uint64
		if idx := files[indexFileName]; len(idx) >= idxArenaSizeOff+8 {
			arenaSize = le64(idx[idxArenaSizeOff:])
		}
		fuzzExercise(t, dir, byContent, forged, arenaSize)
	})
}

// fuzzSeedsEnv makes TestWriteFuzzSeeds (re)write the seed corpora.
const fuzzSeedsEnv = "BIGQUEUE_WRITE_FUZZ_SEEDS"

// fuzzWriteSeed writes one seed file in the "go test fuzz v1" format.
func fuzzWriteSeed(t *testing.T, target, name string, args ...any) {
	var b strings.Builder
	b.WriteString("go test fuzz v1\n")
	for _, a := range args {
		switch v := a.(type) {
		case []byte:
			fmt.Fprintf(&b, "[]byte(%q)\n", v)
		case bool:
			fmt.Fprintf(&b, "bool(%t)\n", v)
		case uint8:
			fmt.Fprintf(&b, "byte(%q)\n", v)
		default:
			t.Fatalf("seed argument of type %T", a)
		}
	}
	dir := filepath.Join("testdata", "fuzz", target)
	require.NoError(t, os.MkdirAll(dir, 0o755))
	require.NoError(t, os.WriteFile(filepath.Join(dir, "seed-"+name), []byte(b.String()), 0o644))
}

// TestWriteFuzzSeeds writes the seed corpora under testdata/fuzz from the
// files of real small queues. It runs only when BIGQUEUE_WRITE_FUZZ_SEEDS=1:
//
//	BIGQUEUE_WRITE_FUZZ_SEEDS=1 go test -run '^TestWriteFuzzSeeds$' .
func TestWriteFuzzSeeds(t *testing.T) {
	if os.Getenv(fuzzSeedsEnv) != "1" {
		t.Skipf("set %s=1 to rewrite testdata/fuzz", fuzzSeedsEnv)
	}
	fuzzSkipBigPages(t)

	// FuzzRecordDecode: the data area of real arenas.
	stream := func(sizes []int) []byte {
		q, dir := openTestQueue(t, fuzzOptions()...)
		for i, n := range sizes {
			require.NoError(t, q.Enqueue(message(0, uint64(i), n)))
		}
		q.mu.Lock()
		tail := q.tail
		q.mu.Unlock()
		require.NoError(t, q.Close())
		arena, err := os.ReadFile(filepath.Join(dir, "arena-0.bq"))
		require.NoError(t, err)
		return arena[arenaHeaderSize : arenaHeaderSize+int(min(tail, fuzzDataSize))]
	}
	records := stream([]int{0, 1, 15, 16, 17, 100, 300, 1000})
	fuzzWriteSeed(t, "FuzzRecordDecode", "records-clean", records, true, uint8(0), false)
	fuzzWriteSeed(t, "FuzzRecordDecode", "records-crashed", records, false, uint8(0), false)
	torn := slices.Clone(records)
	clear(torn[len(torn)-700:])
	fuzzWriteSeed(t, "FuzzRecordDecode", "torn-tail-crashed", torn, false, uint8(0), false)
	fuzzWriteSeed(t, "FuzzRecordDecode", "torn-tail-clean", torn, true, uint8(3), false)
	spanning := stream([]int{1000, 1000, 1000, 1000, 100})
	fuzzWriteSeed(t, "FuzzRecordDecode", "spans-arena-clean", spanning, true, uint8(1), false)
	reseq := slices.Clone(records)
	reseq[recordHeaderSize+recordSeqOff] = 7 // record 1 claims sequence number 7
	fuzzWriteSeed(t, "FuzzRecordDecode", "bad-seq-fixed-crc", reseq, false, uint8(0), true)

	// FuzzIndexDecode: index files of the template queue and of variants
	// whose arenas are the same.
	closed := fuzzTemplate(t, false, 0)
	crashed := fuzzTemplate(t, true, 0)
	grown := fuzzTemplate(t, false, 20)
	for name, b := range closed {
		if name != indexFileName {
			// The spare is arena 0 renamed; the crashed template
			// still has it under its name.
			crashedName := name
			if name == "spare-1.bq" {
				crashedName = "arena-0.bq"
			}
			require.Equal(t, b, crashed[crashedName], "arena %s of the crashed template", crashedName)
			require.Equal(t, b, grown[name], "arena %s of the grown template", name)
		}
	}
	fuzzWriteSeed(t, "FuzzIndexDecode", "closed", closed[indexFileName], false)
	fuzzWriteSeed(t, "FuzzIndexDecode", "closed-fix", closed[indexFileName], true)
	fuzzWriteSeed(t, "FuzzIndexDecode", "crashed", crashed[indexFileName], false)
	fuzzWriteSeed(t, "FuzzIndexDecode", "grown", grown[indexFileName], false)
	inside := slices.Clone(closed[indexFileName])
	fuzzPut64(inside[indexHeaderSize+slotOffsetOff:], le64(inside[indexHeaderSize+slotOffsetOff:])+5)
	fuzzWriteSeed(t, "FuzzIndexDecode", "offset-inside-record", inside, false)

	// FuzzOpenDirectory: whole directories.
	data, layout := fuzzJoin(t, closed)
	require.Equal(t, uint8(1|fuzzLayoutSpare), layout, "arenas 1 to 3 and a spare")
	fuzzWriteSeed(t, "FuzzOpenDirectory", "closed", data, layout)
	fuzzWriteSeed(t, "FuzzOpenDirectory", "hole", data, layout|fuzzLayoutHole)
	fuzzWriteSeed(t, "FuzzOpenDirectory", "closed-fix", data, layout|fuzzLayoutFix)
	data, layout = fuzzJoin(t, crashed)
	fuzzWriteSeed(t, "FuzzOpenDirectory", "crashed", data, layout)
	small := func() map[string][]byte {
		q, dir := openTestQueue(t, fuzzOptions()...)
		for _, m := range fuzzMessages()[:10] {
			require.NoError(t, q.Enqueue(m))
		}
		require.NoError(t, q.Close())
		files := corruptReadFiles(t, dir)
		fuzzSetQueueID(files, fuzzQueueID)
		return files
	}()
	data, layout = fuzzJoin(t, small)
	require.Equal(t, uint8(0), layout, "arena 0 only")
	fuzzWriteSeed(t, "FuzzOpenDirectory", "one-arena", data, layout)
}

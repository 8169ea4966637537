package bigqueue

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// Fault tests: damaged files, a full disk, a second owner, use after Close.
// They write the queue's files directly, using the frozen layout constants
// of index.go.

// TestFaultFlippedByte damages one byte of one record (its checksum,
// length, sequence number or payload) in a closed queue. Every read must
// return intact records only, byte for byte and in order; the read that
// meets the damaged record returns ErrCorrupt and the consumer goes on:
// everything before the damage is read, and so is everything from the
// first record of the next arena on. The records after the damage in
// its own arena may be lost (the library resynchronises at the next arena
// header), but never silently.
func TestFaultFlippedByte(t *testing.T) {
	msgs := randomMessages(rand.New(rand.NewPCG(1, 1)), 100, 1000, 2500)
	spans := layoutOf(msgs)
	byContent := messageIndex(msgs)
	n := len(msgs)
	lastArena := (spans[n-1].end - 1) / smallDataSize
	require.GreaterOrEqual(t, lastArena, uint64(2), "the test wants at least three arenas")
	template := buildQueue(t, msgs)

	// firstFrom returns the first record that starts at or after off.
	firstFrom := func(off uint64) int {
		for j, s := range spans {
			if s.start >= off {
				return j
			}
		}
		return n
	}
	spanning := -1 // a record that crosses from arena 0 into arena 1
	for j, s := range spans {
		if s.start < smallDataSize && s.end > smallDataSize {
			spanning = j
		}
	}
	require.Positive(t, spanning, "no record crosses the first arena boundary")
	targets := []struct {
		name   string
		record int
	}{
		{"first", 0},
		{"arena0", 5},
		{"lastInArena0", spanning - 1},
		{"spanning", spanning},
		{"firstInArena1", firstFrom(smallDataSize)},
		{"lastArena", firstFrom(lastArena*smallDataSize) + 1},
		{"last", n - 1},
	}
	fields := []struct {
		name string
		off  func(payload int) int // byte within the record
	}{
		{"crc", func(int) int { return recordCRCOff }},
		{"len/low", func(int) int { return recordLenOff }},
		{"len/high", func(int) int { return recordLenOff + 3 }},
		{"seq/low", func(int) int { return recordSeqOff }},
		{"seq/high", func(int) int { return recordSeqOff + 7 }},
		{"payload/first", func(int) int { return recordHeaderSize }},
		{"payload/middle", func(p int) int { return recordHeaderSize + p/2 }},
		{"payload/last", func(p int) int { return recordHeaderSize + p - 1 }},
	}
	for _, target := range targets {
		for _, field := range fields {
			t.Run(target.name+"/"+field.name, func(t *testing.T) {
				d := target.record
				dir := copyQueueDir(t, template)
				at := spans[d].start + uint64(field.off(len(msgs[d])))
				rewriteRecords(t, dir, at, at+1, func(b byte) byte { return b ^ 0x5a })

				q := openTestQueueIn(t, dir, smallOptions()...)
				reader, err := q.NewConsumer("reader")
				require.NoError(t, err)
				bound := 2*n + 8
				for _, read := range []struct {
					name string
					next func() ([]byte, error)
				}{
					{"Queue.Dequeue", q.Dequeue},
					{"Consumer.DequeueString", stringReads(reader.DequeueString)},
				} {
					events := requireDrain(t, read.next, byContent, bound)
					t.Logf("%s read %s", read.name, eventString(events))
					require.Greater(t, len(events), d, "%s: %s", read.name, eventString(events))
					require.Equal(t, intRange(0, d), events[:d], "%s: the records before the damaged one", read.name)
					require.Equal(t, corruptEvent, events[d], "%s: the read of the damaged record", read.name)
					require.Equal(t, 1, countEvents(events, corruptEvent), "%s: one ErrCorrupt for one damaged record: %s", read.name, eventString(events))
					require.NotContains(t, events, d, "%s: the damaged record was read", read.name)
					// The consumer resynchronises at the next arena at the latest.
					resume := firstFrom((spans[d].start/smallDataSize + 1) * smallDataSize)
					for j := resume; j < n; j++ {
						require.Contains(t, events, j, "%s: record %d, after the damage's arena, was lost: %s", read.name, j, eventString(events))
					}
					if spans[d].start < smallDataSize {
						// Damage in the first arena: every record that starts in a later
						// arena is still read.
						for j := firstFrom(smallDataSize); j < n; j++ {
							if j != d {
								require.Contains(t, events, j, "%s: record %d of a later arena was lost", read.name, j)
							}
						}
					}
					require.True(t, slices.IsSorted(events[d+1:]), "%s: %s", read.name, eventString(events))
				}
				require.True(t, reader.IsEmpty())
				requireWorks(t, q, "after")
			})
		}
	}
}

// TestFaultZeroedTail zeroes the last bytes written to the last arena, as
// a power loss can leave them, and truncates files. Opening must work and
// the queue must hold an exact prefix of what was enqueued, or opening
// must fail with ErrCorrupt.
func TestFaultZeroedTail(t *testing.T) {
	msgs := randomMessages(rand.New(rand.NewPCG(2, 2)), 250, 200, 1500)
	spans := layoutOf(msgs)
	byContent := messageIndex(msgs)
	n := len(msgs)
	tail := spans[n-1].end
	lastArena := (tail - 1) / smallDataSize
	inLastArena := tail - lastArena*smallDataSize
	require.GreaterOrEqual(t, lastArena, uint64(2), "the test wants at least three arenas")
	half := n / 2
	ckpt := spans[half-1].end

	// sweep returns zeroed lengths around the last record boundaries, within
	// limit: every shift of the zeroed range across the headers of the last
	// records.
	sweep := func(limit uint64) []uint64 {
		set := map[uint64]bool{1: true, 2: true, 7: true}
		for j := n - 4; j < n; j++ {
			back := tail - spans[j].start
			for _, d := range []int64{-17, -16, -15, -12, -8, -4, -1, 0, 1, 4, 8, 12, 15, 16, 17} {
				set[uint64(int64(back)+d)] = true
			}
		}
		var list []uint64
		for v := range set {
			if v >= 1 && v <= limit {
				list = append(list, v)
			}
		}
		slices.Sort(list)
		return list
	}
	// survivors is the number of records that end before the zeroed bytes.
	survivors := func(zeroed uint64) int {
		k := 0
		for k < n && spans[k].end <= tail-zeroed {
			k++
		}
		return k
	}

	t.Run("closed", func(t *testing.T) {
		// A clean Close made everything durable: the damage is found on read.
		template := buildQueue(t, msgs)
		for _, zeroed := range sweep(inLastArena) {
			t.Run(fmt.Sprintf("zero=%d", zeroed), func(t *testing.T) {
				dir := copyQueueDir(t, template)
				rewriteRecords(t, dir, tail-zeroed, tail, func(byte) byte { return 0 })
				q := openTestQueueIn(t, dir, smallOptions()...)
				events := requireDrain(t, q.Dequeue, byContent, 2*n+8)
				k := survivors(zeroed)
				require.Equal(t, intRange(0, k), slices.DeleteFunc(slices.Clone(events), func(e int) bool { return e == corruptEvent }), "an exact prefix")
				if len(events) > k {
					require.Equal(t, []int{corruptEvent}, events[k:], "at most one ErrCorrupt, at the end")
				}
				requireWorks(t, q, "after")
			})
		}
	})

	t.Run("crashed", func(t *testing.T) {
		// A crash after a Flush of the first half: the files as the page
		// cache holds them, with the end of the unflushed records zeroed.
		q, dir := openTestQueue(t, smallOptions()...)
		for i, m := range msgs {
			require.NoError(t, q.Enqueue(m))
			if i == half-1 {
				require.NoError(t, q.Flush())
			}
		}
		snapshot := copyQueueDir(t, dir)
		require.NoError(t, q.Close())
		for _, zeroed := range sweep(min(inLastArena, tail-ckpt)) {
			t.Run(fmt.Sprintf("zero=%d", zeroed), func(t *testing.T) {
				dir := copyQueueDir(t, snapshot)
				rewriteRecords(t, dir, tail-zeroed, tail, func(byte) byte { return 0 })
				q := openTestQueueIn(t, dir, smallOptions()...)
				k := survivors(zeroed)
				q.mu.Lock()
				recovered := q.tail
				q.mu.Unlock()
				require.Equal(t, spans[k-1].end, recovered, "the tail is cut back to the last intact record")
				events := requireDrain(t, q.Dequeue, byContent, 2*n+8)
				require.Equal(t, intRange(0, k), events, "an exact prefix, and no damaged record left to report")
				requireWorks(t, q, "after")
				require.NoError(t, q.EnqueueString("durable"))
				require.NoError(t, q.Close())

				q = openTestQueueIn(t, dir, smallOptions()...)
				s, err := q.DequeueString()
				require.NoError(t, err)
				require.Equal(t, "durable", s)
				requireWorks(t, q, "reopened")
			})
		}
	})

	template := buildQueue(t, msgs)

	t.Run("truncatedIndex", func(t *testing.T) {
		for _, size := range []int64{0, 1, idxVersionOff, idxTailOff, indexHeaderSize - 1, indexHeaderSize, initialIndexSize - slotSize, initialIndexSize - 1} {
			t.Run(fmt.Sprintf("size=%d", size), func(t *testing.T) {
				dir := copyQueueDir(t, template)
				require.NoError(t, os.Truncate(filepath.Join(dir, indexFileName), size))
				for range 2 { // a failed open leaves the directory unlocked
					q, err := NewQueue(dir, smallOptions()...)
					if err != nil {
						require.ErrorIs(t, err, ErrCorrupt)
						continue
					}
					requireInvariants(t, q)
					events := requireDrain(t, q.Dequeue, byContent, 2*n+8)
					require.Equal(t, intRange(0, len(events)), events, "a clean prefix")
					require.NoError(t, q.Close())
				}
			})
		}
	})

	t.Run("truncatedArena", func(t *testing.T) {
		sizes := []int64{0, 1, arenaHeaderSize - 1, arenaHeaderSize, arenaHeaderSize + recordHeaderSize + 1, 4096, smallArenaSize / 2, smallArenaSize - 1}
		for _, id := range []uint64{0, 1, lastArena} {
			for _, size := range sizes {
				t.Run(fmt.Sprintf("arena=%d/size=%d", id, size), func(t *testing.T) {
					dir := copyQueueDir(t, template)
					require.NoError(t, os.Truncate(arenaPath(dir, id), size))
					q, err := NewQueue(dir, smallOptions()...)
					if err != nil {
						require.ErrorIs(t, err, ErrCorrupt)
						return
					}
					t.Cleanup(func() { require.NoError(t, q.Close()) })
					requireInvariants(t, q)
					events := requireDrain(t, q.Dequeue, byContent, 2*n+8)
					requireInvariants(t, q)
					requireWorks(t, q, "after")
					requireInvariants(t, q)
					if id == lastArena {
						// Only the last records can be lost, and the loss
						// is reported: a clean Close's checkpoint covered
						// them. One ErrCorrupt, from the first read.
						require.Equal(t, corruptEvent, events[0], "the cut is reported first")
						require.Equal(t, intRange(0, len(events)-1), events[1:], "then a clean prefix")
						return
					}
					require.NoError(t, silentGap(events, 0))
				})
			}
		}
	})
}

// faultScribble overwrites 1 to 4 random ranges of the file at path with random
// bytes, half of them within its first hot bytes. With words, it also
// writes, half of the time, a random value below maxWord into one of the
// 8-byte words at those offsets.
func faultScribble(t *testing.T, path string, rng *rand.Rand, hot int64, words []int64, maxWord uint64) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	require.NoError(t, err)
	defer func() { require.NoError(t, f.Close()) }()
	st, err := f.Stat()
	require.NoError(t, err)
	size := st.Size()
	require.Positive(t, size)
	for range 1 + rng.IntN(4) {
		var at int64
		if rng.IntN(2) == 0 {
			at = rng.Int64N(min(hot, size))
		} else {
			at = rng.Int64N(size)
		}
		length := int64(1 + rng.IntN(8))
		if rng.IntN(2) == 0 {
			length = int64(1 + rng.IntN(256))
		}
		b := make([]byte, min(length, size-at))
		for i := range b {
			b[i] = byte(rng.Uint32())
		}
		_, err := f.WriteAt(b, at)
		require.NoError(t, err)
	}
	if len(words) > 0 && rng.IntN(2) == 0 {
		var b [8]byte
		binary.LittleEndian.PutUint64(b[:], rng.Uint64N(maxWord))
		_, err := f.WriteAt(b[:], words[rng.IntN(len(words))])
		require.NoError(t, err)
	}
}

// TestFaultRandomBytes overwrites random ranges of one file of a queue
// directory (the index, each arena, each spare) with random bytes, for
// many seeds. Opening must fail with ErrCorrupt or ErrIncompatibleVersion,
// or give a queue whose every read returns an enqueued message, byte for
// byte and in order, or ErrCorrupt, until ErrEmptyQueue; the queue must
// then work.
func TestFaultRandomBytes(t *testing.T) {
	seed := int64(testSeed(t))
	seedsPerFile := 80
	if testing.Short() {
		seedsPerFile = 16
	}
	msgs := randomMessages(rand.New(rand.NewPCG(3, 3)), 300, 300, 1700)
	byContent := messageIndex(msgs)
	n := len(msgs)
	tail := layoutOf(msgs)[n-1].end

	// The template has two consumers part-way through, two arenas a flush
	// reclaimed kept as spares (as a crash inside Close leaves them), and
	// the arenas still read.
	q, template := openTestQueue(t, smallOptions()...)
	slow, err := q.NewConsumer("slow")
	require.NoError(t, err)
	enqueueAll(t, q, msgs)
	requireReads(t, slow.Dequeue, msgs[:140])
	requireReads(t, q.Dequeue, msgs[:170])
	require.NoError(t, q.Flush())
	closeKeepSpares(t, q, template)
	entries, err := os.ReadDir(template)
	require.NoError(t, err)
	var files []string
	spares := 0
	for _, e := range entries {
		if e.Name() != legacyLockFileName {
			files = append(files, e.Name())
		}
		if strings.HasPrefix(e.Name(), "spare-") {
			spares++
		}
	}
	require.Equal(t, 2, spares, "the template should hold two spares: %v", files)
	require.Contains(t, files, indexFileName)

	indexWords := []int64{idxTailOff, idxHeadOff}
	for i := range 4 {
		indexWords = append(indexWords, int64(indexHeaderSize+i*slotSize+slotOffsetOff))
	}
	// Enough new messages to fill two more arenas. NewQueue deleted the
	// spares: they are new files.
	post := randomMessages(rand.New(rand.NewPCG(4, 4)), 2*smallDataSize/1000+1, 1000, 1000)
	for i := range post {
		post[i][0] = '+' // distinct from every original message
	}

	// outcomes counts, per file, how the opens and reads went.
	outcomes := make(map[string]map[string]int)
	for _, file := range files {
		outcomes[file] = make(map[string]int)
		for i := range int64(seedsPerFile) {
			s := seed + i
			t.Run(fmt.Sprintf("%s/seed=%d", file, s), func(t *testing.T) {
				rng := rand.New(rand.NewPCG(uint64(s), 0))
				dir := copyQueueDir(t, template)
				if file == indexFileName {
					faultScribble(t, filepath.Join(dir, file), rng, indexHeaderSize+4*slotSize, indexWords, tail+smallDataSize)
				} else {
					faultScribble(t, filepath.Join(dir, file), rng, arenaHeaderSize+256, nil, 0)
				}

				rules := drainRules{drops: indexHasRetentionMark(t, dir)}
				q, err := NewQueue(dir, SetPeriodicFlushOps(0), SetPeriodicFlushDuration(0))
				if err != nil {
					require.True(t, errors.Is(err, ErrCorrupt) || errors.Is(err, ErrIncompatibleVersion), "open: %v", err)
					outcomes[file]["refused"]++
					return
				}
				t.Cleanup(func() { require.NoError(t, q.Close()) })
				requireInvariants(t, q)

				// Every consumer that survived, in name order; the default one
				// (which a damaged slot can remove) reads through Queue.Dequeue.
				names := slices.DeleteFunc(q.Consumers(), func(name string) bool { return name == defaultConsumerKey })
				reads := []func() ([]byte, error){q.Dequeue}
				for _, name := range names {
					c, err := q.NewConsumer(name)
					require.NoError(t, err)
					reads = append(reads, c.Dequeue)
				}
				var events []int
				for _, read := range reads {
					got, err := drain(read, byContent, rules, 2*n+8)
					require.NoError(t, err)
					events = append(events, got...)
				}
				if slices.Contains(events, corruptEvent) {
					outcomes[file]["opened, ErrCorrupt read"]++
				} else {
					outcomes[file]["opened, clean reads"]++
				}
				requireInvariants(t, q)

				// The queue works on: new messages, through two new arenas,
				// reach every consumer exactly.
				enqueueAll(t, q, post)
				for r, read := range reads {
					for j, m := range post {
						b, err := read()
						require.NoError(t, err, "reader %d, new message %d", r, j)
						require.Equal(t, m, b, "reader %d, new message %d", r, j)
					}
					_, err := read()
					require.ErrorIs(t, err, ErrEmptyQueue, "reader %d", r)
				}
				requireInvariants(t, q)
			})
		}
		t.Logf("%s: %v", file, outcomes[file])
	}
}

// TestFaultConsumerOffsetInsideRecord points the default consumer's
// stored offset at positions that are not record boundaries, as a damaged
// index can. Reads must still return only enqueued messages (never a
// record-like frame inside a payload), allocate no more than the data
// left, and reach ErrEmptyQueue.
func TestFaultConsumerOffsetInsideRecord(t *testing.T) {
	msgs := randomMessages(rand.New(rand.NewPCG(5, 5)), 20, 40, 120)
	// Message 10 carries a well-formed record frame with a sequence number
	// the queue uses; message 19 (the last) ends in a length word of 256 MiB.
	inner := []byte("never enqueued")
	frame := make([]byte, recordHeaderSize+len(inner))
	binary.LittleEndian.PutUint32(frame[recordLenOff:], uint32(len(inner)))
	binary.LittleEndian.PutUint64(frame[recordSeqOff:], 3)
	copy(frame[recordHeaderSize:], inner)
	binary.LittleEndian.PutUint32(frame[recordCRCOff:], crc32.Update(crc32.Update(0, castagnoli, frame[recordLenOff:recordHeaderSize]), castagnoli, inner))
	msgs[10] = append([]byte("#000010/"), frame...)
	msgs[19] = append(msgs[19], 0, 0, 0, 0x10)
	spans := layoutOf(msgs)
	byContent := messageIndex(msgs)
	tail := spans[len(msgs)-1].end
	template := buildQueue(t, msgs)

	var offsets []uint64
	for _, j := range []int{10, 18, 19} {
		for off := spans[j].start + 1; off < spans[j].end; off++ {
			offsets = append(offsets, off)
		}
	}
	for _, off := range offsets {
		t.Run(fmt.Sprintf("offset=%d", off), func(t *testing.T) {
			dir := copyQueueDir(t, template)
			f, err := os.OpenFile(filepath.Join(dir, indexFileName), os.O_RDWR, 0)
			require.NoError(t, err)
			// The default consumer has slot 0, the first a new queue fills.
			name := make([]byte, len(defaultConsumerKey))
			_, err = f.ReadAt(name, indexHeaderSize+0*slotSize+slotNameOff)
			require.NoError(t, err)
			require.Equal(t, defaultConsumerKey, string(name))
			var word [8]byte
			binary.LittleEndian.PutUint64(word[:], off)
			_, err = f.WriteAt(word[:], indexHeaderSize+0*slotSize+slotOffsetOff)
			require.NoError(t, err)
			require.NoError(t, f.Close())

			q := openTestQueueIn(t, dir, smallOptions()...)
			require.Equal(t, []string{defaultConsumerKey, "reader"}, q.Consumers())
			var before, after runtime.MemStats
			next := func() ([]byte, error) {
				runtime.ReadMemStats(&before)
				b, err := q.Dequeue()
				runtime.ReadMemStats(&after)
				require.Less(t, after.TotalAlloc-before.TotalAlloc, uint64(64<<10),
					"one read allocated more than 64 KiB with %d bytes left in the queue", tail-off)
				return b, err
			}
			requireDrain(t, next, byContent, 2*len(msgs)+8)
			requireWorks(t, q, "after")
		})
	}
}

// TestFaultDiskFull fills a small tmpfs: Enqueue must fail with ENOSPC,
// never SIGBUS, keep everything acknowledged, and work again once space is
// freed, by reading (arenas are reclaimed) or by removing another file.
func TestFaultDiskFull(t *testing.T) {
	const msgSize = 1000
	message := func(cycle, i int) []byte {
		b := make([]byte, msgSize)
		for j := range b {
			b[j] = byte(cycle*31 + i + j)
		}
		copy(b, fmt.Sprintf("%d/%d/", cycle, i))
		return b
	}
	perArena := smallDataSize / (recordHeaderSize + msgSize)

	// fill enqueues until Enqueue fails, which must be with ENOSPC within
	// limit messages, and returns the messages acknowledged.
	fill := func(t *testing.T, q *Queue, cycle, limit int) [][]byte {
		t.Helper()
		var acked [][]byte
		for i := 0; ; i++ {
			require.Less(t, i, limit, "no ENOSPC after %d messages", limit)
			m := message(cycle, i)
			err := q.Enqueue(m)
			if err != nil {
				require.ErrorIs(t, err, syscall.ENOSPC)
				// Still full: the failed record was not half-committed.
				require.ErrorIs(t, q.Enqueue(m), syscall.ENOSPC)
				return acked
			}
			acked = append(acked, m)
		}
	}
	drainExactly := func(t *testing.T, q *Queue, want [][]byte) {
		t.Helper()
		for i, m := range want {
			b, err := q.Dequeue()
			require.NoError(t, err, "message %d of %d", i, len(want))
			require.Equal(t, m, b, "message %d of %d", i, len(want))
		}
		_, err := q.Dequeue()
		require.ErrorIs(t, err, ErrEmptyQueue)
	}

	t.Run("cycles", func(t *testing.T) {
		dir := filepath.Join(scratchFS(t, "tmpfs", 2), "q")
		q := openTestQueueIn(t, dir, SetArenaSize(smallArenaSize))
		var first int
		for cycle := range 4 {
			acked := fill(t, q, cycle, 2<<20/msgSize)
			t.Logf("cycle %d: %d messages acknowledged before ENOSPC", cycle, len(acked))
			if cycle == 0 {
				first = len(acked)
				require.Greater(t, first, 20*perArena, "a 2 MiB disk holds more than 20 arenas")
			} else {
				require.GreaterOrEqual(t, len(acked), first-2*perArena, "cycle %d: space leaked since cycle 0", cycle)
			}
			requireInvariants(t, q)
			if cycle == 3 {
				// Still full: a clean reopen keeps everything.
				require.NoError(t, q.Close())
				q = openTestQueueIn(t, dir, SetArenaSize(smallArenaSize))
			}
			drainExactly(t, q, acked)
			require.True(t, q.IsEmpty())
			requireInvariants(t, q)
			require.NoError(t, q.EnqueueString("after"))
			s, err := q.DequeueString()
			require.NoError(t, err)
			require.Equal(t, "after", s)
			require.NoError(t, q.Flush())
		}
	})

	t.Run("filler", func(t *testing.T) {
		mnt := scratchFS(t, "tmpfs", 2)
		q := openTestQueueIn(t, filepath.Join(mnt, "q"), SetArenaSize(smallArenaSize))
		var acked [][]byte
		for i := range 10 {
			m := message(0, i)
			require.NoError(t, q.Enqueue(m))
			acked = append(acked, m)
		}
		// A filler file takes every free block.
		filler := filepath.Join(mnt, "filler")
		f, err := os.Create(filler)
		require.NoError(t, err)
		chunk := make([]byte, 64<<10)
		for {
			if _, err = f.Write(chunk); err != nil {
				break
			}
		}
		require.ErrorIs(t, err, syscall.ENOSPC)
		require.NoError(t, f.Close())

		// The open arena has room left; the next arena has none.
		acked = append(acked, fill(t, q, 1, perArena+2)...)
		requireInvariants(t, q)

		require.NoError(t, os.Remove(filler))
		for i := range 3 * perArena {
			m := message(2, i)
			require.NoError(t, q.Enqueue(m), "message %d after the filler was removed", i)
			acked = append(acked, m)
		}
		require.NoError(t, q.Flush())
		drainExactly(t, q, acked)
	})
}

// Environment of TestLockHelperProcess, set by TestFaultLock when it runs
// the test binary again as a second process.
const (
	lockHelperDirEnv  = "BIGQUEUE_LOCK_HELPER_DIR"  // the queue directory
	lockHelperModeEnv = "BIGQUEUE_LOCK_HELPER_MODE" // "try" or "hold"

	exitGotLocked = 10 // try: NewQueue returned ErrLocked
	exitOpened    = 11 // try: NewQueue succeeded
	exitFailed    = 12 // any other error
)

// TestLockHelperProcess is not a test: TestFaultLock runs the test binary
// again with only it selected, as the other process competing for a queue
// directory. In mode "try" it opens the queue and exits with a code saying
// what NewQueue returned; in mode "hold" it opens the queue, prints
// "locked" and holds it until its standard input ends or it is killed.
func TestLockHelperProcess(t *testing.T) {
	dir := os.Getenv(lockHelperDirEnv)
	if dir == "" {
		t.Skip("helper process of TestFaultLock")
	}
	q, err := NewQueue(dir)
	switch mode := os.Getenv(lockHelperModeEnv); {
	case mode == "try" && errors.Is(err, ErrLocked):
		os.Exit(exitGotLocked)
	case err != nil:
		fmt.Fprintln(os.Stderr, "open:", err)
		os.Exit(exitFailed)
	case mode == "try":
		if err := q.Close(); err != nil {
			fmt.Fprintln(os.Stderr, "close:", err)
			os.Exit(exitFailed)
		}
		os.Exit(exitOpened)
	case mode == "hold":
		fmt.Println("locked")
		if _, err := io.Copy(io.Discard, os.Stdin); err != nil {
			fmt.Fprintln(os.Stderr, "stdin:", err)
			os.Exit(exitFailed)
		}
		if err := q.Close(); err != nil {
			fmt.Fprintln(os.Stderr, "close:", err)
			os.Exit(exitFailed)
		}
		os.Exit(0)
	default:
		fmt.Fprintf(os.Stderr, "unknown mode %q\n", mode)
		os.Exit(exitFailed)
	}
}

// lockHelper returns the command that runs TestLockHelperProcess on dir.
func lockHelper(dir, mode string) *exec.Cmd {
	cmd := exec.Command(os.Args[0], "-test.run=^TestLockHelperProcess$", "-test.count=1")
	cmd.Env = append(os.Environ(), lockHelperDirEnv+"="+dir, lockHelperModeEnv+"="+mode)
	return cmd
}

// newQueuePromptly is NewQueue failing the test when it blocks, as a lock
// taken with waiting would.
func newQueuePromptly(t *testing.T, dir string) (*Queue, error) {
	t.Helper()
	type result struct {
		q   *Queue
		err error
	}
	done := make(chan result, 1)
	go func() {
		q, err := NewQueue(dir)
		done <- result{q, err}
	}()
	select {
	case r := <-done:
		return r.q, r.err
	case <-time.After(10 * time.Second):
		require.FailNow(t, "NewQueue blocks on a locked directory")
		return nil, nil
	}
}

// TestFaultLock checks that a queue directory has one owner: a second
// NewQueue, from this process or another, fails at once with ErrLocked
// and leaves the owner's queue alone, and succeeds once the owner has
// closed the queue or died.
func TestFaultLock(t *testing.T) {
	t.Run("sameProcess", func(t *testing.T) {
		q, dir := openTestQueue(t, SetArenaSize(smallArenaSize))
		require.NoError(t, q.EnqueueString("one"))
		for range 2 {
			q2, err := newQueuePromptly(t, dir)
			require.ErrorIs(t, err, ErrLocked)
			require.Nil(t, q2)
		}
		// The failed opens did not disturb the owner.
		require.NoError(t, q.EnqueueString("two"))
		s, err := q.DequeueString()
		require.NoError(t, err)
		require.Equal(t, "one", s)
		require.NoError(t, q.Close())

		q2 := openTestQueueIn(t, dir)
		s, err = q2.DequeueString()
		require.NoError(t, err)
		require.Equal(t, "two", s)
	})

	t.Run("otherProcessTries", func(t *testing.T) {
		q, dir := openTestQueue(t, SetArenaSize(smallArenaSize))
		require.NoError(t, q.EnqueueString("kept"))
		var stderr strings.Builder
		cmd := lockHelper(dir, "try")
		cmd.Stderr = &stderr
		err := cmd.Run()
		var exit *exec.ExitError
		require.ErrorAs(t, err, &exit, "stderr: %s", stderr.String())
		require.Equal(t, exitGotLocked, exit.ExitCode(), "the other process did not get ErrLocked; stderr: %s", stderr.String())
		require.False(t, q.IsEmpty())
		require.NoError(t, q.Close())

		stderr.Reset()
		cmd = lockHelper(dir, "try")
		cmd.Stderr = &stderr
		err = cmd.Run()
		require.ErrorAs(t, err, &exit, "stderr: %s", stderr.String())
		require.Equal(t, exitOpened, exit.ExitCode(), "the other process could not open a closed queue; stderr: %s", stderr.String())

		q = openTestQueueIn(t, dir)
		s, err := q.DequeueString()
		require.NoError(t, err)
		require.Equal(t, "kept", s)
	})

	t.Run("otherProcessHolds", func(t *testing.T) {
		q, dir := openTestQueue(t, SetArenaSize(smallArenaSize))
		require.NoError(t, q.EnqueueString("kept"))
		require.NoError(t, q.Close())

		var stderr strings.Builder
		cmd := lockHelper(dir, "hold")
		cmd.Stderr = &stderr
		stdout, kill := startHolder(t, cmd)
		line, err := bufio.NewReader(stdout).ReadString('\n')
		require.NoError(t, err, "the other process did not report the lock; stderr: %s", stderr.String())
		require.Equal(t, "locked\n", line)

		q2, err := newQueuePromptly(t, dir)
		require.ErrorIs(t, err, ErrLocked)
		require.Nil(t, q2)

		// The owner dies without closing: the kernel releases the lock.
		err = kill()
		var exit *exec.ExitError
		require.ErrorAs(t, err, &exit)

		q = openTestQueueIn(t, dir)
		s, err := q.DequeueString()
		require.NoError(t, err)
		require.Equal(t, "kept", s)
	})
}

// TestFaultClosed checks the queue after Close: every method returns
// ErrClosed, IsEmpty reports true, Consumers returns nil, Close returns nil
// again, and nothing stored changed. It also closes a queue that other
// goroutines are using.
func TestFaultClosed(t *testing.T) {
	t.Run("afterClose", func(t *testing.T) {
		q, dir := openTestQueue(t, SetArenaSize(smallArenaSize))
		require.NoError(t, q.EnqueueString("kept"))
		c, err := q.NewConsumer("c")
		require.NoError(t, err)
		require.NoError(t, q.Close())

		calls := []struct {
			name string
			call func() error
		}{
			{"Enqueue", func() error { return q.Enqueue([]byte("x")) }},
			{"EnqueueString", func() error { return q.EnqueueString("x") }},
			{"Dequeue", func() error { _, err := q.Dequeue(); return err }},
			{"DequeueString", func() error { _, err := q.DequeueString(); return err }},
			{"Flush", q.Flush},
			{"NewConsumer/existing", func() error { _, err := q.NewConsumer("c"); return err }},
			{"NewConsumer/new", func() error { _, err := q.NewConsumer("d"); return err }},
			{"FromConsumer", func() error { _, err := q.FromConsumer("d", c); return err }},
			{"DeleteConsumer", func() error { return q.DeleteConsumer("c") }},
			{"Consumer.Dequeue", func() error { _, err := c.Dequeue(); return err }},
			{"Consumer.DequeueString", func() error { _, err := c.DequeueString(); return err }},
		}
		for range 2 {
			for _, call := range calls {
				require.ErrorIs(t, call.call(), ErrClosed, call.name)
			}
			require.True(t, q.IsEmpty(), "Queue.IsEmpty")
			require.True(t, c.IsEmpty(), "Consumer.IsEmpty")
			require.Nil(t, q.Consumers())
			require.NoError(t, q.Close(), "a second Close")
		}

		q = openTestQueueIn(t, dir)
		// No queue-level read succeeded before Close, and the ones after
		// it created nothing: there is no default consumer yet.
		require.Equal(t, []string{"c"}, q.Consumers())
		s, err := q.DequeueString()
		require.NoError(t, err)
		require.Equal(t, "kept", s)
	})

	t.Run("whileInUse", func(t *testing.T) {
		q, _ := openTestQueue(t, SetArenaSize(smallArenaSize))
		c, err := q.NewConsumer("c")
		require.NoError(t, err)
		ops := []func() error{
			func() error { return q.EnqueueString("message") },
			func() error { _, err := q.Dequeue(); return err },
			func() error { _, err := c.DequeueString(); return err },
			func() error { _, err := q.NewConsumer("c"); return err },
			q.Flush,
		}
		const warmup = 50
		var running, done sync.WaitGroup
		running.Add(len(ops))
		errs := make(chan error, len(ops))
		for _, op := range ops {
			done.Add(1)
			go func() {
				defer done.Done()
				for i := 0; ; i++ {
					if i == warmup {
						running.Done()
					}
					err := op()
					if err == nil || errors.Is(err, ErrEmptyQueue) {
						continue
					}
					if i < warmup {
						running.Done()
					}
					if errors.Is(err, ErrClosed) {
						err = nil
					}
					errs <- err
					return
				}
			}()
		}
		running.Wait()
		require.NoError(t, q.Close())
		done.Wait()
		close(errs)
		for err := range errs {
			require.NoError(t, err)
		}
		require.True(t, q.IsEmpty())
	})
}

package bigqueue

import (
	"errors"
	"fmt"
	"maps"
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"slices"
	"sort"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// Corruption sweeps : every
// single-bit flip of an arena and of the index, every truncation length of
// the arena and index files, every zeroed or random 512-byte sector of
// every file, and two targeted cases (a damaged consumer slot, a damaged
// header of the tail arena). Each case damages a
// queue directory, opens it, reads every consumer to the end and checks
// what the package docs promise:
//
//   - nothing panics, and every consumer reaches ErrEmptyQueue;
//   - a read returns an enqueued message, byte for byte, in order and at
//     most once, or an error wrapping ErrCorrupt, or ErrEmptyQueue;
//   - NewQueue refuses only with ErrCorrupt or ErrIncompatibleVersion;
//   - messages are skipped only where a read reported ErrCorrupt, or at the
//     end of the stream, where a crash may cut it back.
//
// Cases run by the hundred thousand, so they do not copy a directory each:
// a corruptFixture holds one queue directory on a tmpfs, each case damages
// it in place and restore puts the pristine files back. One worker per CPU
// runs a share of the cases on its own fixture.
//
// With BIGQUEUE_LONG=1 every case runs. The default tier samples the cases
// that behave alike (payload bytes of one record, truncations in the middle
// of an arena that is not the last one) and says so in its summary line;
// under the race detector the sampling is coarser again.

// errBricked marks a library bug the truncation sweep found at commit
// 86ca5dd (32ec9be fixed it): a queue that opened but whose tail lies in
// an arena that is neither on disk nor the next one to create, so that
// every Enqueue fails with ErrCorrupt until the files are repaired by
// hand. corruptBricked detects it; sweeps count it apart and skip.
var errBricked = errors.New("the queue opened but refuses every message with ErrCorrupt")

// corruptBricked reports whether q has the errBricked bug: the next write
// at its tail needs an arena that is missing and may not be created.
func corruptBricked(q *Queue) bool {
	q.mu.Lock()
	defer q.mu.Unlock()
	m := q.am
	id := q.tail / m.dataSize
	return id != m.next && !m.present[id]
}

// corruptWorks is requireWorks returning an error: three new
// messages are enqueued and read back through Queue.Dequeue, which must
// have read everything before. An Enqueue refused as errBricked predicts
// wraps errBricked.
func corruptWorks(q *Queue) error {
	bricked := corruptBricked(q)
	for i := range 3 {
		if err := q.EnqueueString(fmt.Sprintf("after-%d", i)); err != nil {
			if bricked && errors.Is(err, ErrCorrupt) {
				return fmt.Errorf("%w: enqueue: %v", errBricked, err)
			}
			return fmt.Errorf("enqueue after the damage: %w", err)
		}
	}
	for i := range 3 {
		s, err := q.DequeueString()
		if err != nil || s != fmt.Sprintf("after-%d", i) {
			return fmt.Errorf("new message %d: read %q, %v", i, trimForLog([]byte(s)), err)
		}
	}
	if _, err := q.Dequeue(); !errors.Is(err, ErrEmptyQueue) {
		return fmt.Errorf("after the new messages: %v, want ErrEmptyQueue", err)
	}
	return nil
}

// corruptOpenOptions are the options a sweep opens a damaged queue with:
// the stored arena size, and no background flush, so that nothing but the
// case touches the files.
func corruptOpenOptions() []Option {
	return []Option{SetPeriodicFlushOps(0), SetPeriodicFlushDuration(0)}
}

// corruptReadFiles returns the content of every file of the queue
// directory dir but the lock.
func corruptReadFiles(t *testing.T, dir string) map[string][]byte {
	t.Helper()
	entries, err := os.ReadDir(dir)
	require.NoError(t, err)
	files := make(map[string][]byte)
	for _, e := range entries {
		if e.Name() == legacyLockFileName || !e.Type().IsRegular() {
			continue
		}
		b, err := os.ReadFile(filepath.Join(dir, e.Name()))
		require.NoError(t, err)
		files[e.Name()] = b
	}
	return files
}

// corruptBuildUnflushed enqueues msgs into a new queue with one extra
// consumer "reader", like buildQueue, but returns a copy of its
// directory taken before any flush: the files as a process crash leaves
// them, with a tail that opening has to verify record by record.
func corruptBuildUnflushed(t *testing.T, msgs [][]byte) string {
	t.Helper()
	q, dir := openTestQueue(t, smallOptions()...)
	_, err := q.NewConsumer("reader")
	require.NoError(t, err)
	enqueueAll(t, q, msgs)
	return copyQueueDir(t, dir)
}

// corruptFixture is a queue directory that cases damage in place and
// restore puts back, byte for byte, with the same inodes.
type corruptFixture struct {
	dir    string
	files  map[string][]byte // pristine content by name
	inodes map[uint64]string // inode number of each pristine file
}

func newCorruptFixture(t *testing.T, root string, files map[string][]byte) *corruptFixture {
	t.Helper()
	dir, err := os.MkdirTemp(root, "fixture-")
	require.NoError(t, err)
	f := &corruptFixture{dir: dir, files: files, inodes: make(map[uint64]string)}
	require.NoError(t, f.restore())
	return f
}

func corruptInode(info os.FileInfo) uint64 {
	return uint64(info.Sys().(*syscall.Stat_t).Ino)
}

// restore undoes whatever a case and the queue did to the directory: files
// the queue created are removed, pristine files it renamed (arena to
// spare, arena to damaged) get their names back, missing ones are written
// anew, and every pristine file gets its pristine bytes and size.
func (f *corruptFixture) restore() error {
	entries, err := os.ReadDir(f.dir)
	if err != nil {
		return err
	}
	seen := make(map[string]bool)
	var moved []string // current names of pristine files renamed by the case
	for _, e := range entries {
		name := e.Name()
		if name == legacyLockFileName {
			continue
		}
		path := filepath.Join(f.dir, name)
		info, err := e.Info()
		if err != nil {
			return err
		}
		if orig, ok := f.inodes[corruptInode(info)]; ok && info.Mode().IsRegular() && !seen[orig] {
			seen[orig] = true
			if name != orig {
				moved = append(moved, name)
			}
			continue
		}
		if err := os.RemoveAll(path); err != nil {
			return err
		}
	}
	// Two steps, so that no rename overwrites a pristine file that still
	// carries another's name.
	for i, name := range moved {
		if err := os.Rename(filepath.Join(f.dir, name), filepath.Join(f.dir, fmt.Sprintf("restore-%d", i))); err != nil {
			return err
		}
	}
	for i := range moved {
		tmp := filepath.Join(f.dir, fmt.Sprintf("restore-%d", i))
		info, err := os.Stat(tmp)
		if err != nil {
			return err
		}
		if err := os.Rename(tmp, filepath.Join(f.dir, f.inodes[corruptInode(info)])); err != nil {
			return err
		}
	}
	for name, b := range f.files {
		path := filepath.Join(f.dir, name)
		if seen[name] {
			if err := corruptOverwrite(path, b); err != nil {
				return err
			}
			continue
		}
		// Removed by the case, or the first restore: create it.
		for ino, n := range f.inodes {
			if n == name {
				delete(f.inodes, ino)
			}
		}
		if err := os.WriteFile(path, b, 0o644); err != nil {
			return err
		}
		info, err := os.Stat(path)
		if err != nil {
			return err
		}
		f.inodes[corruptInode(info)] = name
	}
	return nil
}

// corruptOverwrite writes b over the file at path, from byte 0, and cuts
// or extends the file to len(b).
func corruptOverwrite(path string, b []byte) error {
	file, err := os.OpenFile(path, os.O_WRONLY, 0)
	if err != nil {
		return err
	}
	_, err = file.WriteAt(b, 0)
	if err == nil {
		err = file.Truncate(int64(len(b)))
	}
	return errors.Join(err, file.Close())
}

// patch writes b at offset off of the fixture's file name.
func (f *corruptFixture) patch(name string, off int64, b []byte) error {
	file, err := os.OpenFile(filepath.Join(f.dir, name), os.O_WRONLY, 0)
	if err != nil {
		return err
	}
	_, err = file.WriteAt(b, off)
	return errors.Join(err, file.Close())
}

// corruptPrefix checks that events deliver exactly messages 0 to k-1 for
// some k, as after a crash that cut the tail back, and returns k.
func corruptPrefix(events []int) (int, error) {
	d := delivered(events)
	for i, e := range d {
		if e != i {
			return 0, fmt.Errorf("not a prefix of what was enqueued: read %s", eventString(events))
		}
	}
	return len(d), nil
}

// corruptReport is what opening and reading one damaged queue gave.
type corruptReport struct {
	refused error   // NewQueue's typed error, when it refused the damage
	events  [][]int // per consumer, the default one first, see requireDrain
	lost    int     // messages the consumers did not read, summed
	again   int     // messages read that a consumer had read before the damage
}

// corruptOpenDrain opens the queue in dir, reads every consumer to the end
// (the default one through Queue.Dequeue, the others in name order) and
// closes it. It returns what happened, or the broken promise: an untyped
// error of NewQueue or of a read, a wrong message, a stuck consumer, a
// failed Close. A failed invariant of the open queue fails the test. With
// works, it then checks that the queue takes and returns new messages.
// starts gives the message each consumer stood at before the damage (0
// when absent), to count lost and re-read messages.
func corruptOpenDrain(t *testing.T, dir string, byContent map[string]int, bound int, works bool, starts map[string]int) (corruptReport, error) {
	var rep corruptReport
	rules := drainRules{drops: indexHasRetentionMark(t, dir)}
	q, err := NewQueue(dir, corruptOpenOptions()...)
	if err != nil {
		if errors.Is(err, ErrCorrupt) || errors.Is(err, ErrIncompatibleVersion) {
			rep.refused = err
			return rep, nil
		}
		return rep, fmt.Errorf("open: untyped error: %w", err)
	}
	requireInvariants(t, q)
	names := []string{defaultConsumerKey}
	reads := []func() ([]byte, error){q.Dequeue}
	var bad error
	for _, name := range q.Consumers() {
		if name == defaultConsumerKey {
			continue
		}
		c, err := q.NewConsumer(name)
		if err != nil {
			bad = fmt.Errorf("consumer %q: %w", name, err)
			break
		}
		names = append(names, name)
		reads = append(reads, c.Dequeue)
	}
	for r, read := range reads {
		if bad != nil {
			break
		}
		var events []int
		events, bad = drain(read, byContent, rules, bound)
		rep.events = append(rep.events, events)
		first := starts[names[r]]
		rep.count(events, first, len(byContent))
	}
	if bad == nil {
		requireInvariants(t, q)
		if works {
			bad = corruptWorks(q)
		}
	}
	if err := q.Close(); err != nil && bad == nil {
		bad = fmt.Errorf("close: %w", err)
	}
	return rep, bad
}

// corruptTally adds up the outcomes of a sweep's cases. Workers add to it
// under mu.
type corruptTally struct {
	mu         sync.Mutex
	cases      int
	opened     int // NewQueue succeeded
	refused    int // NewQueue returned ErrCorrupt or ErrIncompatibleVersion
	corrupt    int // reads that returned ErrCorrupt
	lost       int // messages not read, summed over consumers
	again      int // messages read again, that a consumer had read before the damage
	wrong      int // cases that read a message never enqueued, or out of order
	violations int // cases that broke any promise, wrong ones included
	panics     int
	examples   []string
}

func (c *corruptTally) add(rep corruptReport) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.cases++
	if rep.refused != nil {
		c.refused++
		return
	}
	c.opened++
	for _, events := range rep.events {
		c.corrupt += countEvents(events, corruptEvent)
	}
	c.lost += rep.lost
	c.again += rep.again
}

func (c *corruptTally) violation(err error, panicked bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.violations++
	if errors.Is(err, errWrongMessage) {
		c.wrong++
	}
	if panicked {
		c.panics++
	}
	if len(c.examples) < 8 {
		c.examples = append(c.examples, err.Error())
	}
}

func (c *corruptTally) String() string {
	return fmt.Sprintf("opened=%d refused=%d corrupt_errors=%d lost=%d read_again=%d wrong=%d violations=%d panics=%d",
		c.opened, c.refused, c.corrupt, c.lost, c.again, c.wrong, c.violations, c.panics)
}

// corruptSweep runs cases 0 to count-1, one fixture per worker, in parallel
// subtests. run damages the fixture for case i, checks the queue and
// returns a broken promise, which is counted and reported at the end; the
// fixture is restored after every case. A panic (a memory fault included)
// is counted, and stops its worker.
func corruptSweep(t *testing.T, root string, files map[string][]byte, count int, tally *corruptTally,
	run func(t *testing.T, f *corruptFixture, i int) error) {
	t.Helper()
	workers := min(max(runtime.GOMAXPROCS(0), 1), 8, count)
	t.Run("workers", func(t *testing.T) {
		for w := range workers {
			t.Run(fmt.Sprintf("w%d", w), func(t *testing.T) {
				t.Parallel()
				defer debug.SetPanicOnFault(debug.SetPanicOnFault(true))
				f := newCorruptFixture(t, root, files)
				for i := w; i < count; i += workers {
					panicked := true
					func() {
						defer func() {
							if r := recover(); r != nil {
								tally.violation(fmt.Errorf("case %d: panic: %v\n%s", i, r, debug.Stack()), true)
							}
						}()
						if err := run(t, f, i); err != nil {
							tally.violation(fmt.Errorf("case %d: %w", i, err), false)
						}
						panicked = false
					}()
					if panicked {
						t.Fatalf("case %d panicked; worker stopped", i)
					}
					require.NoError(t, f.restore())
				}
			})
		}
	})
}

// corruptFinish logs the sweep's summary line and fails the test when a
// case broke a promise.
func corruptFinish(t *testing.T, line string, tally *corruptTally) {
	t.Helper()
	report(t, "%s", line)
	if tally.violations > 0 {
		t.Errorf("%d cases broke the contract; the first ones:\n%s", tally.violations, strings.Join(tally.examples, "\n"))
	}
}

// firstInArena returns the first of msgs, enqueued into an empty queue
// with smallOptions, whose record starts in arena id or later.
func firstInArena(msgs [][]byte, id uint64) int {
	spans := layoutOf(msgs)
	return sort.Search(len(spans), func(i int) bool { return spans[i].start >= id*smallDataSize })
}

// readBoth reads messages [from, to) through q's default consumer and,
// of those below readerTo, through reader too.
func readBoth(t *testing.T, q *Queue, reader *Consumer, readerTo, from, to int) {
	t.Helper()
	for i := from; i < to; i++ {
		if i < readerTo {
			_, err := reader.Dequeue()
			require.NoError(t, err)
		}
		_, err := q.Dequeue()
		require.NoError(t, err)
	}
}

// count adds to rep what a consumer that stood at message first read of
// n messages: those read again (below first) and those lost.
func (rep *corruptReport) count(events []int, first, n int) {
	fresh := 0
	for _, e := range delivered(events) {
		if e < first {
			rep.again++
		} else {
			fresh++
		}
	}
	rep.lost += n - first - fresh
}

// corruptRecordAt returns the record whose span holds the logical offset
// off.
func corruptRecordAt(spans []msgSpan, off uint64) int {
	return sort.Search(len(spans), func(j int) bool { return spans[j].end > off })
}

// corruptIsFrameByte reports whether byte p of arena 0 belongs to the
// arena header or to a record header, as opposed to a payload.
func corruptIsFrameByte(spans []msgSpan, p int) bool {
	if p < arenaHeaderSize {
		return true
	}
	off := uint64(p - arenaHeaderSize)
	j := corruptRecordAt(spans, off)
	return j < len(spans) && off-spans[j].start < recordHeaderSize
}

// corruptFlipBits returns the bits of arena 0 to flip and a description.
// The long tier flips every bit. The default tier flips every bit of the
// arena header and of every record header, and one bit of every payload
// byte (bit p%8 of byte p, so that every bit position is hit); a payload
// flip fails its record's checksum wherever it lands. Under the race
// detector: one bit of every header byte, one of every 64th payload byte.
func corruptFlipBits(spans []msgSpan) ([]int, string) {
	if longTier() {
		bits := make([]int, smallArenaSize*8)
		for i := range bits {
			bits[i] = i
		}
		return bits, "every bit"
	}
	frameEvery, payloadEvery := 1, 1
	tier := "every bit of the arena and record headers, one bit of every payload byte"
	if sampledTier() {
		frameEvery, payloadEvery = 8, 64
		tier = "sampled (race detector or -short): one bit of every header byte, one bit of every 64th payload byte"
	}
	var bits []int
	for p := range smallArenaSize {
		if corruptIsFrameByte(spans, p) {
			for b := range 8 {
				if (p*8+b)%frameEvery == p%frameEvery {
					bits = append(bits, p*8+b)
				}
			}
		} else if p%payloadEvery == 0 {
			bits = append(bits, p*8+p%8)
		}
	}
	return bits, tier
}

// TestCorruptionBitFlips flips, one at a time, the bits of the first arena
// of a queue whose first arena holds about a hundred records and whose
// last record spills into a second arena. Two states of the files: closed
// cleanly (every record is below the checkpoint, so reads find the damage)
// and crashed with nothing flushed (opening verifies every record and
// cuts the tail back at the damage).
//
// Besides the contract's checks: in the closed queue a damaged record is
// never read, the read that meets it returns ErrCorrupt, everything before
// it is read, and so is every record of the second arena; in the crashed
// one, exactly the records before the damaged one are read.
func TestCorruptionBitFlips(t *testing.T) {
	msgs := randomMessages(rand.New(rand.NewPCG(11, 11)), 110, 560, 640)
	spans := layoutOf(msgs)
	byContent := messageIndex(msgs)
	n := len(msgs)
	resume := corruptRecordAt(spans, smallDataSize) + 1 // the first record that starts in arena 1
	require.InDelta(t, 100, resume, 10, "arena 0 should hold about a hundred records")
	require.Less(t, spans[resume-1].start, uint64(smallDataSize))
	require.Greater(t, spans[resume-1].end, uint64(smallDataSize), "a record should span arenas 0 and 1")
	bits, tier := corruptFlipBits(spans)
	root := memDir(t)

	for _, mode := range []struct {
		name     string
		template string
		check    func(d int, events []int) error // d: the damaged record, -1 for the arena header
	}{
		{"closed", buildQueue(t, msgs), func(d int, events []int) error {
			if err := silentGap(events, 0); err != nil || d < 0 {
				return err
			}
			if len(events) <= d || !slices.Equal(events[:d], intRange(0, d)) || events[d] != corruptEvent {
				return fmt.Errorf("want messages 0 to %d then ErrCorrupt; read %s", d-1, eventString(events))
			}
			if slices.Contains(events, d) {
				return fmt.Errorf("damaged message %d was read: %s", d, eventString(events))
			}
			for j := resume; j < n; j++ {
				if !slices.Contains(events, j) {
					return fmt.Errorf("message %d, in the intact arena 1, was lost: %s", j, eventString(events))
				}
			}
			return nil
		}},
		{"unflushed", corruptBuildUnflushed(t, msgs), func(d int, events []int) error {
			k, err := corruptPrefix(events)
			if err == nil && d >= 0 && k != d {
				err = fmt.Errorf("want exactly messages 0 to %d, the records before the damage; read %s", d-1, eventString(events))
			}
			return err
		}},
	} {
		t.Run(mode.name, func(t *testing.T) {
			files := corruptReadFiles(t, mode.template)
			arena0 := files["arena-0.bq"]
			require.Len(t, arena0, smallArenaSize)
			var tally corruptTally
			start := time.Now()
			corruptSweep(t, root, files, len(bits), &tally, func(t *testing.T, f *corruptFixture, i int) error {
				bit := bits[i]
				p := bit / 8
				d, where := -1, "arena header"
				if p >= arenaHeaderSize {
					off := uint64(p - arenaHeaderSize)
					d = corruptRecordAt(spans, off)
					where = fmt.Sprintf("record %d byte %d", d, off-spans[d].start)
				}
				if err := f.patch("arena-0.bq", int64(p), []byte{arena0[p] ^ 1<<(bit%8)}); err != nil {
					return err
				}
				rep, err := corruptOpenDrain(t, f.dir, byContent, 2*n+8, false, nil)
				tally.add(rep)
				if err == nil && rep.refused != nil {
					err = fmt.Errorf("a damaged arena made NewQueue refuse the queue: %w", rep.refused)
				}
				for c, events := range rep.events {
					if err == nil {
						if err = mode.check(d, events); err != nil {
							err = fmt.Errorf("consumer %d: %w", c, err)
						}
					}
				}
				if err != nil {
					return fmt.Errorf("bit %d (byte %d, %s): %w", bit, p, where, err)
				}
				return nil
			})
			corruptFinish(t, fmt.Sprintf("bitflips[%s]: flips=%d %v elapsed=%v (%s)", mode.name, tally.cases, &tally, time.Since(start).Round(time.Millisecond), tier), &tally)
		})
	}
}

// TestCorruptionIndexBitFlips flips, one at a time, every bit of the index
// header and of the two used consumer slots, and one bit of every byte of
// the free slots (bit p%8 of byte p), of a closed queue whose consumers
// stand part-way through two arenas. Under the race detector: one bit of
// every byte of the header and used slots, of every 8th byte of the rest.
// The commit words (tail, head, consumer positions) carry no checksum, so
// a flip may move a consumer silently; the checks are the contract's: a
// typed refusal or a queue whose every read is an enqueued message, in
// order, or ErrCorrupt, and which then takes new messages. read_again
// counts messages a consumer read a second time.
func TestCorruptionIndexBitFlips(t *testing.T) {
	msgs, dir := corruptReadersQueue(t, 14)
	byContent := messageIndex(msgs)
	n := len(msgs)
	files := corruptReadFiles(t, dir)
	index := files[indexFileName]
	used := indexHeaderSize + 2*slotSize // the header and the two used slots
	require.Equal(t, uint32(slotUsed), le32(index[indexHeaderSize+slotSize+slotStateOff:]))
	require.Equal(t, uint32(slotFree), le32(index[used+slotStateOff:]))
	starts := map[string]int{defaultConsumerKey: 50, "reader": 30}
	sampled := sampledTier()
	tier := "every bit of the header and used slots, one bit of every byte of the free slots"
	switch {
	case longTier():
		tier = "every bit"
	case sampled:
		tier = "sampled (race detector or -short): one bit of every byte of the header and used slots, of every 8th byte of the free slots"
	}
	var bits []int
	for p := range index {
		switch {
		case longTier() || (p < used && !sampled):
			for b := range 8 {
				bits = append(bits, p*8+b)
			}
		case p < used || p%8 == 0 || !sampled:
			bits = append(bits, p*8+p%8)
		}
	}

	var tally corruptTally
	start := time.Now()
	corruptSweep(t, memDir(t), files, len(bits), &tally, func(t *testing.T, f *corruptFixture, i int) error {
		bit := bits[i]
		p := bit / 8
		if err := f.patch(indexFileName, int64(p), []byte{index[p] ^ 1<<(bit%8)}); err != nil {
			return err
		}
		rep, err := corruptOpenDrain(t, f.dir, byContent, 2*n+8, true, starts)
		tally.add(rep)
		if err != nil {
			return fmt.Errorf("index bit %d (byte %d): %w", bit, p, err)
		}
		return nil
	})
	corruptFinish(t, fmt.Sprintf("indexflips: flips=%d %v elapsed=%v (%s)", tally.cases, &tally, time.Since(start).Round(time.Millisecond), tier), &tally)
}

// corruptReadersQueue returns 110 messages of 560 to 640 bytes, made from
// seed, and the directory of a closed queue holding them whose default
// consumer read 50 of them and whose consumer "reader" read 30.
func corruptReadersQueue(t *testing.T, seed uint64) ([][]byte, string) {
	t.Helper()
	msgs := randomMessages(rand.New(rand.NewPCG(seed, seed)), 110, 560, 640)
	q, dir := openTestQueue(t, smallOptions()...)
	reader, err := q.NewConsumer("reader")
	require.NoError(t, err)
	enqueueAll(t, q, msgs)
	for i := range 50 {
		if i < 30 {
			_, err := reader.Dequeue()
			require.NoError(t, err)
		}
		_, err := q.Dequeue()
		require.NoError(t, err)
	}
	require.NoError(t, q.Close())
	return msgs, dir
}

// TestCorruptionConsumerSlotDamage damages one byte of a consumer's slot
// in the index of a closed queue whose default consumer read 50 messages
// and whose consumer "reader" read 30, so that the slot fails its checksum
// (or its state word is none of the known ones). The queue may not move
// the consumer silently: NewQueue opens, the consumer is gone from
// Consumers, and the consumer, created anew under its name (after one more
// close and reopen, to show that the damage is remembered; "reader" also
// after a reopen between its creation and its first read, to show that
// the report is owed until then), reports ErrCorrupt before it reads
// anything, then reads from the oldest stored message, where every new
// consumer starts. A silent restart there would repeat messages without a
// word.
func TestCorruptionConsumerSlotDamage(t *testing.T) {
	msgs, template := corruptReadersQueue(t, 15)
	byContent := messageIndex(msgs)
	n := len(msgs)
	starts := map[string]int{defaultConsumerKey: 50, "reader": 30}
	// The order they were created in: "reader" first, the default
	// consumer with the first queue-level read.
	slots := map[string]int{"reader": 0, defaultConsumerKey: 1}
	// Close reclaimed the arenas below the lowest position's; the oldest
	// stored message is the first that starts in the arena left.
	spans := layoutOf(msgs)
	firstKept := spans[30].start / smallDataSize * smallDataSize
	oldest := sort.Search(n, func(i int) bool { return spans[i].start >= firstKept })
	restarts := map[string]int{defaultConsumerKey: oldest, "reader": oldest}

	for _, consumer := range []string{"reader", defaultConsumerKey} {
		for _, field := range []struct {
			name string
			off  int
		}{
			{"state", slotStateOff},
			{"nameLen", slotNameLenOff},
			{"crc", slotCRCOff},
			{"name", slotNameOff + 2},
		} {
			t.Run(consumer+"/"+field.name, func(t *testing.T) {
				dir := copyQueueDir(t, template)
				slot := indexHeaderSize + slots[consumer]*slotSize
				index, err := os.ReadFile(filepath.Join(dir, indexFileName))
				require.NoError(t, err)
				require.Equal(t, consumer, string(index[slot+slotNameOff:slot+slotNameOff+len(consumer)]))
				index[slot+field.off] ^= 0x04
				require.NoError(t, os.WriteFile(filepath.Join(dir, indexFileName), index, 0o644))

				q, err := NewQueue(dir, corruptOpenOptions()...)
				require.NoError(t, err)
				require.NotContains(t, q.Consumers(), consumer)
				require.NoError(t, q.Close())
				q, err = NewQueue(dir, corruptOpenOptions()...)
				require.NoError(t, err)
				t.Cleanup(func() { require.NoError(t, q.Close()) })
				require.NotContains(t, q.Consumers(), consumer)
				read := q.Dequeue
				if consumer != defaultConsumerKey {
					_, err := q.NewConsumer(consumer)
					require.NoError(t, err)
					// The report is owed until the first read, across a reopen.
					require.NoError(t, q.Close())
					q, err = NewQueue(dir, corruptOpenOptions()...)
					require.NoError(t, err)
					require.Contains(t, q.Consumers(), consumer)
					c, err := q.NewConsumer(consumer)
					require.NoError(t, err)
					read = c.Dequeue
				}
				events := requireDrain(t, read, byContent, 2*n+8)
				t.Logf("read %s", eventString(events))
				require.NotEmpty(t, events)
				require.Equal(t, corruptEvent, events[0], "the consumer, created anew, must report the lost position first")
				// Created anew, it starts at the oldest stored message.
				require.Equal(t, restarts[consumer], events[1], "consumer %q, created anew, after its report", consumer)
				require.Equal(t, intRange(restarts[consumer], n), events[1:])
				// The other consumer is untouched.
				other := "reader"
				read = q.Dequeue
				if consumer == "reader" {
					other = defaultConsumerKey
				} else {
					c, err := q.NewConsumer(other)
					require.NoError(t, err)
					read = c.Dequeue
				}
				require.Equal(t, intRange(starts[other], n), requireDrain(t, read, byContent, 2*n+8), "consumer %q", other)
			})
		}
	}
}

// TestCorruptionTailArenaHeader flips, one at a time, every bit of the
// header of the arena that holds the tail, when no other arena has an
// intact header: the only arena of a closed queue whose consumers read
// nothing yet, and the second arena of a queue that crashed after its
// consumers read past the first and a flush reclaimed it, with records
// written and read past that flush's checkpoint. No
// record is damaged and every consumer position is proven by the sequence
// number stored with it, so every consumer must read every message it had
// not read; opening must leave a tail that the index names, whose sequence
// number follows the records below it, and the queue must take new
// messages. The arena header only names the first record, for
// resynchronisation.
func TestCorruptionTailArenaHeader(t *testing.T) {
	type state struct {
		name   string
		msgs   [][]byte
		dir    string
		starts map[string]int // each consumer's next message
	}
	closed := randomMessages(rand.New(rand.NewPCG(16, 16)), 5, 20, 60)
	crashed := randomMessages(rand.New(rand.NewPCG(17, 17)), 100, 1000, 1000)
	states := []state{
		{"closed", closed, buildQueue(t, closed), map[string]int{}},
		{"crashed", crashed, func() string {
			// Reads reclaim nothing: the consumers read past arena 0,
			// a flush reclaims it, and the rest is written and read
			// with no flush after.
			past := firstInArena(crashed, 1)
			require.Less(t, past, 70)
			q, dir := openTestQueue(t, smallOptions()...)
			reader, err := q.NewConsumer("reader")
			require.NoError(t, err)
			enqueueAll(t, q, crashed[:past+1])
			read := func(from, to int) { readBoth(t, q, reader, 70, from, to) }
			read(0, past)
			require.NoError(t, q.Flush())
			require.EqualValues(t, 1, q.Stats().ArenasReclaimed)
			enqueueAll(t, q, crashed[past+1:])
			read(past, 80)
			return copyQueueDir(t, dir)
		}(), map[string]int{defaultConsumerKey: 80, "reader": 70}},
	}
	for _, st := range states {
		t.Run(st.name, func(t *testing.T) {
			byContent := messageIndex(st.msgs)
			n := len(st.msgs)
			tail := layoutOf(st.msgs)[n-1].end
			last := fmt.Sprintf("arena-%d.bq", (tail-1)/smallDataSize)
			files := corruptReadFiles(t, st.dir)
			require.Equal(t, []string{last}, slices.DeleteFunc(slices.Sorted(maps.Keys(files)), func(name string) bool {
				return !strings.HasPrefix(name, "arena-")
			}), "one arena, the tail's")
			arena := files[last]
			f := newCorruptFixture(t, memDir(t), files)
			var moved, backwards, lost, bricked, corrupt int
			var bugs []string
			bug := func(format string, args ...any) {
				if len(bugs) < 4 {
					bugs = append(bugs, fmt.Sprintf(format, args...))
				}
			}
			for bit := range arenaHeaderSize * 8 {
				p := bit / 8
				require.NoError(t, f.patch(last, int64(p), []byte{arena[p] ^ 1<<(bit%8)}))
				q, err := NewQueue(f.dir, corruptOpenOptions()...)
				require.NoError(t, err, "bit %d", bit)
				q.mu.Lock()
				opened, openedSeq, headSeq := q.tail, q.tailSeq, q.headSeq
				q.mu.Unlock()
				if opened > tail {
					moved++
					bug("bit %d: the tail moved from %d to %d, past the index's", bit, tail, opened)
				}
				if headSeq != unknownSeq && headSeq > openedSeq {
					// checkInvariants would fail: count it with the bugs.
					backwards++
					bug("bit %d: tail sequence number %d, below the head's %d", bit, openedSeq, headSeq)
				} else {
					requireInvariants(t, q)
				}
				reader, err := q.NewConsumer("reader")
				require.NoError(t, err)
				for _, name := range []string{defaultConsumerKey, "reader"} {
					read := q.Dequeue
					if name != defaultConsumerKey {
						read = reader.Dequeue
					}
					events := requireDrain(t, read, byContent, 2*n+8)
					got := delivered(events)
					corrupt += countEvents(events, corruptEvent)
					if !slices.Equal(intRange(st.starts[name], n), got) {
						require.True(t, slices.Equal(intRange(st.starts[name], st.starts[name]+len(got)), got),
							"bit %d: consumer %q reads a prefix of its messages: %s", bit, name, eventString(events))
						lost++
						bug("bit %d: consumer %q read %s, want messages %d to %d, all intact", bit, name, eventString(events), st.starts[name], n-1)
					}
				}
				if err := corruptWorks(q); err != nil {
					require.ErrorIs(t, err, errBricked, "bit %d", bit)
					bricked++
					bug("bit %d: %v", bit, err)
				}
				require.NoError(t, q.Close())
				require.NoError(t, f.restore())
			}
			t.Logf("tailheader[%s]: flips=%d tail_moved=%d seq_backwards=%d intact_lost=%d bricked=%d corrupt_errors=%d wrong=0",
				st.name, arenaHeaderSize*8, moved, backwards, lost, bricked, corrupt)
			if len(bugs) > 0 {
				t.Errorf("a damaged header of the tail arena, when no other arena has an intact one, made recover lose its "+
					"footing: %s", strings.Join(bugs, "; "))
			}
		})
	}
}

// TestCorruptionStaleAfterHeaderDamage checks that a damaged arena header
// cannot make the queue reuse sequence numbers in a way that lets old
// records pass for new ones. A queue of 2000-byte messages (records of
// 2016 bytes: the third record of an arena starts at byte 4096 of its
// file) crashes after its consumers read past arena 0, which a flush
// made a spare, and after more records were written and read past that
// flush's checkpoint; arena 1, the tail's, gets one flipped bit in its
// header. The reopened queue is drained and flushed, and ten fresh
// messages are enqueued. A power loss then keeps the index and the first
// page that holds fresh records, but not the pages after it, which hold
// what the file held before (the spare's or the arena's old records). The
// queue must hold a prefix of the fresh messages and never an old one:
// sequence numbers that only grow make an old record fail its check. (At
// commit b007c83 recover restarted them at 0 here, and 8 old messages
// came back.)
func TestCorruptionStaleAfterHeaderDamage(t *testing.T) {
	const page = 4096
	old := randomMessages(rand.New(rand.NewPCG(18, 18)), 50, 2000, 2000)
	require.Equal(t, page, arenaHeaderSize+2*(recordHeaderSize+2000), "the third record must start a page")
	byContent := messageIndex(old)
	q, dir := openTestQueue(t, smallOptions()...)
	reader, err := q.NewConsumer("reader")
	require.NoError(t, err)
	// Reads reclaim nothing: the consumers read past arena 0 and a flush
	// makes it a spare; the rest is written and read with no flush after.
	past := firstInArena(old, 1)
	require.Less(t, past, 40)
	enqueueAll(t, q, old[:past+1])
	read := func(from, to int) { readBoth(t, q, reader, 40, from, to) }
	read(0, past)
	require.NoError(t, q.Flush())
	enqueueAll(t, q, old[past+1:])
	read(past, 45)
	crashed := copyQueueDir(t, dir) // not flushed since arena 0 became spare-1.bq
	require.FileExists(t, filepath.Join(crashed, "spare-1.bq"))
	require.NoFileExists(t, arenaPath(crashed, 0))
	header := arenaPath(crashed, 1)
	b, err := os.ReadFile(header)
	require.NoError(t, err)
	b[arenaFirstOff] ^= 1
	require.NoError(t, os.WriteFile(header, b, 0o644))

	// Not openTestQueueIn: its invariant check fails on the bug this test
	// follows, when it is there.
	q2, err := NewQueue(crashed, smallOptions()...)
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, q2.Close()) })
	reader2, err := q2.NewConsumer("reader")
	require.NoError(t, err)
	requireDrain(t, q2.Dequeue, byContent, 2*len(old))
	requireDrain(t, reader2.Dequeue, byContent, 2*len(old))
	require.NoError(t, q2.Flush())
	// What each file holds before the fresh messages, by inode: the arena
	// that receives them may be a spare renamed.
	before := make(map[uint64][]byte)
	for name, b := range corruptReadFiles(t, crashed) {
		info, err := os.Stat(filepath.Join(crashed, name))
		require.NoError(t, err)
		before[corruptInode(info)] = b
	}
	q2.mu.Lock()
	start, startSeq := q2.tail, q2.tailSeq
	q2.mu.Unlock()
	fresh := make([]string, 10)
	for i := range fresh {
		fresh[i] = fmt.Sprintf("fresh-%d-%s", i, strings.Repeat("f", 2000))[:2000]
		require.NoError(t, q2.EnqueueString(fresh[i]))
	}

	// The power loss: in the arena file that holds the first fresh record,
	// the pages after the one it starts in keep their old content: the
	// file's, or the spare's it was made from.
	powerLoss := copyQueueDir(t, crashed)
	name := fmt.Sprintf("arena-%d.bq", start/smallDataSize)
	info, err := os.Stat(filepath.Join(crashed, name))
	require.NoError(t, err)
	prior, ok := before[corruptInode(info)]
	require.True(t, ok, "%s was made from no file that was there: nothing old to come back", name)
	cur, err := os.ReadFile(filepath.Join(powerLoss, name))
	require.NoError(t, err)
	keep := (arenaHeaderSize + int(start%smallDataSize)) / page * page
	copy(cur[keep+page:], prior[keep+page:])
	require.NoError(t, os.WriteFile(filepath.Join(powerLoss, name), cur, 0o644))

	q3, err := NewQueue(powerLoss, smallOptions()...)
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, q3.Close()) })
	var got []string
	stale := 0
	for range 2 * len(fresh) {
		m, err := q3.DequeueString()
		if errors.Is(err, ErrEmptyQueue) {
			break
		}
		if errors.Is(err, ErrCorrupt) {
			continue
		}
		require.NoError(t, err)
		if _, ok := byContent[m]; ok {
			stale++
			got = append(got, "OLD "+m[:7])
			continue
		}
		got = append(got, m[:7])
	}
	t.Logf("stale: fresh messages from offset %d, sequence number %d; after the power loss read %v", start, startSeq, got)
	require.Zero(t, stale, "stale records delivered after a power loss: the damaged header made recover reuse sequence numbers, "+
		"so old records carry the expected numbers again")
	for i, m := range got {
		require.Equal(t, fresh[i][:7], m, "a prefix of the fresh messages")
	}
	require.GreaterOrEqual(t, startSeq, uint64(len(old)),
		"after the damaged header the fresh messages get sequence numbers from %d on, although records up to %d "+
			"were written and old ones still lie in spare arenas: such records can pass for new ones after a power loss "+
			"(this layout brought 8 back at commit b007c83)", startSeq, len(old)-1)
}

// TestCorruptionStaleAfterIndexLoss checks that records an interrupted
// run left past the recovered tail cannot come back in place of new ones.
// A power loss keeps the arena pages of ten 500-byte messages but the
// index of the flush after the third, so recovery cuts the tail back to
// the third; seven new messages of the same size then get the old ones'
// offsets and sequence numbers. A second power loss keeps the new index
// but none of the new arena pages. Unless recovery cleared the bytes past
// the tail (durably, before returning), the old records pass every check
// and are delivered as if they were the new ones.
func TestCorruptionStaleAfterIndexLoss(t *testing.T) {
	old := randomMessages(rand.New(rand.NewPCG(19, 19)), 10, 500, 500)
	byContent := messageIndex(old)
	q, dir := openTestQueue(t, smallOptions()...)
	var flushedIndex []byte
	for i, m := range old {
		require.NoError(t, q.Enqueue(m))
		if i == 2 {
			require.NoError(t, q.Flush())
			var err error
			flushedIndex, err = os.ReadFile(filepath.Join(dir, indexFileName))
			require.NoError(t, err)
		}
	}
	crashed := copyQueueDir(t, dir)
	require.NoError(t, os.WriteFile(filepath.Join(crashed, indexFileName), flushedIndex, 0o644))

	q2, err := NewQueue(crashed, smallOptions()...)
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, q2.Close()) })
	require.Equal(t, int64(3), q2.Len(), "the tail is cut back to the checkpoint")
	afterOpen, err := os.ReadFile(arenaPath(crashed, 0))
	require.NoError(t, err)
	fresh := make([]string, 7)
	for i := range fresh {
		fresh[i] = fmt.Sprintf("fresh-%d-%s", i, strings.Repeat("f", 500))[:500]
		require.NoError(t, q2.EnqueueString(fresh[i]))
	}

	powerLoss := copyQueueDir(t, crashed)
	require.NoError(t, os.WriteFile(arenaPath(powerLoss, 0), afterOpen, 0o644))
	q3, err := NewQueue(powerLoss, smallOptions()...)
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, q3.Close()) })
	var got []string
	for range 2 * len(old) {
		m, err := q3.DequeueString()
		if errors.Is(err, ErrEmptyQueue) {
			break
		}
		if errors.Is(err, ErrCorrupt) {
			got = append(got, "X")
			continue
		}
		require.NoError(t, err)
		if i, ok := byContent[m]; ok {
			got = append(got, fmt.Sprintf("old-%d", i))
			continue
		}
		got = append(got, m[:7])
	}
	t.Logf("after the second power loss read %v", got)
	require.GreaterOrEqual(t, len(got), 3)
	require.Equal(t, []string{"old-0", "old-1", "old-2"}, got[:3], "the flushed messages")
	for _, m := range got[3:] {
		require.NotContains(t, m, "old-", "a record of the interrupted run came back")
	}
}

// TestReclaimedCheckpointArena: the index of a flush names positions in
// arena 0, but a later run read everything, reclaimed arena 0, made the
// directory durable and lost power before its next checkpoint. Every
// consumer had read arena 0, so reopening reports no damage: the readers
// go on from the tail, silently.
func TestReclaimedCheckpointArena(t *testing.T) {
	q, dir := openTestQueue(t, smallOptions()...)
	msg := make([]byte, smallArenaSize/8)
	for range 3 {
		require.NoError(t, q.Enqueue(msg))
	}
	c, err := q.NewConsumer("c")
	require.NoError(t, err)
	_, err = q.Dequeue()
	require.NoError(t, err)
	require.NoError(t, q.Flush())
	flushedIndex, err := os.ReadFile(filepath.Join(dir, indexFileName))
	require.NoError(t, err)

	// Fill three more arenas and read all, so that arena 0 goes.
	for range 24 {
		require.NoError(t, q.Enqueue(msg))
	}
	for _, read := range []func() ([]byte, error){q.Dequeue, c.Dequeue} {
		for {
			_, err := read()
			if errors.Is(err, ErrEmptyQueue) {
				break
			}
			require.NoError(t, err)
		}
	}
	require.NoError(t, q.Flush())
	_, err = os.Stat(arenaPath(dir, 0))
	require.ErrorIs(t, err, os.ErrNotExist, "arena 0 was reclaimed")

	crashed := copyQueueDir(t, dir)
	require.NoError(t, os.WriteFile(filepath.Join(crashed, indexFileName), flushedIndex, 0o644))
	q2 := openTestQueueIn(t, crashed, smallOptions()...)
	c2, err := q2.NewConsumer("c")
	require.NoError(t, err)
	readers := map[string]func() (string, error){"default": q2.DequeueString, "c": c2.DequeueString}
	for name, read := range readers {
		_, err := read()
		require.ErrorIs(t, err, ErrEmptyQueue, "consumer %s: nothing past the checkpoint was flushed, and no damage to report", name)
	}
	require.NoError(t, q2.EnqueueString("after"))
	for name, read := range readers {
		got, err := read()
		require.NoError(t, err, "consumer %s", name)
		require.Equal(t, "after", got)
	}
}

// TestMissingMiddleArena: reclaiming goes oldest first, so an arena file
// missing between two present ones was not reclaimed (a hand deleted it).
// Its messages are reported lost with ErrCorrupt, once, and reading goes
// on with the next arena.
func TestMissingMiddleArena(t *testing.T) {
	q, dir := openTestQueue(t, smallOptions()...)
	msgs := randomMessages(rand.New(rand.NewPCG(23, 23)), 24, smallArenaSize/8, smallArenaSize/8)
	enqueueAll(t, q, msgs)
	require.NoError(t, q.Close())
	require.NoError(t, os.Remove(arenaPath(dir, 1)))

	q2 := openTestQueueIn(t, dir, smallOptions()...)
	byContent := messageIndex(msgs)
	var got []int
	corrupt := 0
	for {
		m, err := q2.Dequeue()
		if errors.Is(err, ErrEmptyQueue) {
			break
		}
		if errors.Is(err, ErrCorrupt) {
			require.Contains(t, err.Error(), "arena 1 is missing")
			corrupt++
			continue
		}
		require.NoError(t, err)
		i, ok := byContent[string(m)]
		require.True(t, ok, "a message that was never enqueued")
		got = append(got, i)
	}
	require.Equal(t, 1, corrupt, "the loss is reported once")
	require.NotEmpty(t, got)
	require.Equal(t, len(msgs)-1, got[len(got)-1], "reading goes on to the last message")
	require.Less(t, len(got), len(msgs), "arena 1's messages are gone")
	require.True(t, slices.IsSorted(got), "in order: %v", got)
}

// TestCleanMark checks the index's clean mark: set by Close, kept while a
// reopened queue only reads, and cleared before the first Enqueue writes
// into an arena (clearCleanMark msyncs it, so that an index a power loss
// brings back from after that write never claims a clean close).
func TestCleanMark(t *testing.T) {
	q, dir := openTestQueue(t, smallOptions()...)
	mark := func() uint64 {
		b, err := os.ReadFile(filepath.Join(dir, indexFileName))
		require.NoError(t, err)
		return le64(b[idxCleanOff:])
	}
	require.NoError(t, q.EnqueueString("a"))
	require.Zero(t, mark(), "new")
	require.NoError(t, q.EnqueueString("b"))
	require.NoError(t, q.Close())
	require.Equal(t, uint64(cleanMark), mark(), "closed")

	q, err := NewQueue(dir, smallOptions()...)
	require.NoError(t, err)
	msg, err := q.DequeueString()
	require.NoError(t, err)
	require.Equal(t, "a", msg)
	require.Equal(t, uint64(cleanMark), mark(), "reopened, read only")
	require.NoError(t, q.Close())
	require.Equal(t, uint64(cleanMark), mark(), "closed after reading")

	q, err = NewQueue(dir, smallOptions()...)
	require.NoError(t, err)
	require.NoError(t, q.EnqueueBatch([][]byte{[]byte("c")}))
	require.Zero(t, mark(), "after the first write")
	require.NoError(t, q.Close())
	require.Equal(t, uint64(cleanMark), mark(), "closed after writing")
	q, err = NewQueue(dir, smallOptions()...)
	require.NoError(t, err)
	for _, want := range []string{"b", "c"} {
		msg, err := q.DequeueString()
		require.NoError(t, err)
		require.Equal(t, want, msg)
	}
	require.NoError(t, q.Close())
}

// corruptTruncSizes returns the lengths to cut a file of size bytes to:
// every length when every is set, else every length of the first head
// bytes, every 509th length (a prime, so the cuts land all over the record
// frames), and every length within one byte of a boundary in bounds.
func corruptTruncSizes(size int, every bool, head int, bounds []int) []int {
	if every {
		return intRange(0, size+1)
	}
	set := make(map[int]bool)
	for s := 0; s <= head; s++ {
		set[s] = true
	}
	for s := 0; s <= size; s += 509 {
		set[s] = true
	}
	for _, b := range bounds {
		for s := b - 1; s <= b+1; s++ {
			if s >= 0 && s <= size {
				set[s] = true
			}
		}
	}
	set[size] = true
	sizes := make([]int, 0, len(set))
	for s := range set {
		sizes = append(sizes, s)
	}
	slices.Sort(sizes)
	return sizes
}

// TestCorruptionTruncation cuts one file of a queue of three arenas to
// every length: the last arena and the index to every length from 0 to
// their size; the other arenas to every length of their header region and
// around every record boundary, and to every 509th length. A cut arena
// file is set aside by NewQueue (its size is wrong), so the cases differ
// in which file is cut, not much in where; BIGQUEUE_LONG=1 cuts every
// arena to every length. NewQueue must either refuse with ErrCorrupt or
// open a queue whose reads skip only where they report ErrCorrupt; losing
// the last arena may cut the stream back silently, as a crash does, so it
// must then read as an exact prefix.
func TestCorruptionTruncation(t *testing.T) {
	msgs := randomMessages(rand.New(rand.NewPCG(12, 12)), 160, 700, 1300)
	spans := layoutOf(msgs)
	byContent := messageIndex(msgs)
	n := len(msgs)
	lastArena := int((spans[n-1].end - 1) / smallDataSize)
	require.Equal(t, 2, lastArena, "the test wants three arenas")
	root := memDir(t)

	type cut struct {
		file string
		id   int // arena number, -1 for the index
		size int
	}
	for _, mode := range []struct {
		name     string
		template string
		closed   bool
	}{
		{"closed", buildQueue(t, msgs), true},
		{"unflushed", corruptBuildUnflushed(t, msgs), false},
	} {
		t.Run(mode.name, func(t *testing.T) {
			files := corruptReadFiles(t, mode.template)
			var cuts []cut
			var plan []string
			for id := 0; id <= lastArena; id++ {
				// Record boundaries as byte offsets of this arena's file.
				var bounds []int
				for _, s := range spans {
					if s.start/smallDataSize == uint64(id) {
						bounds = append(bounds, arenaHeaderSize+int(s.start%smallDataSize), arenaHeaderSize+int(s.start%smallDataSize)+recordHeaderSize)
					}
				}
				every := longTier() || (id == lastArena && mode.closed && !sampledTier())
				sizes := corruptTruncSizes(smallArenaSize, every, arenaHeaderSize, bounds)
				for _, s := range sizes {
					cuts = append(cuts, cut{fmt.Sprintf("arena-%d.bq", id), id, s})
				}
				plan = append(plan, fmt.Sprintf("arena %d: %d lengths", id, len(sizes)))
			}
			index := files[indexFileName]
			var idxSizes []int
			if sampledTier() {
				idxSizes = corruptTruncSizes(len(index), false, indexHeaderSize, nil)
			} else {
				idxSizes = intRange(0, len(index)+1)
			}
			for _, s := range idxSizes {
				cuts = append(cuts, cut{indexFileName, -1, s})
			}
			plan = append(plan, fmt.Sprintf("index: %d lengths", len(idxSizes)))

			var tally corruptTally
			start := time.Now()
			corruptSweep(t, root, files, len(cuts), &tally, func(t *testing.T, f *corruptFixture, i int) error {
				c := cuts[i]
				if err := os.Truncate(filepath.Join(f.dir, c.file), int64(c.size)); err != nil {
					return err
				}
				rep, err := corruptOpenDrain(t, f.dir, byContent, 2*n+8, true, nil)
				tally.add(rep)
				if err == nil && rep.refused != nil && !errors.Is(rep.refused, ErrCorrupt) {
					err = fmt.Errorf("refused without ErrCorrupt: %w", rep.refused)
				}
				for k, events := range rep.events {
					if err != nil {
						break
					}
					err = silentGap(events, 0)
					if err == nil && c.id == lastArena {
						_, err = corruptPrefix(events)
					}
					if err == nil && mode.closed && c.id >= 0 && c.id < lastArena {
						// Every record that starts in a later arena, all intact, is read.
						for j := corruptRecordAt(spans, uint64(c.id+1)*smallDataSize) + 1; j < n; j++ {
							if !slices.Contains(events, j) {
								err = fmt.Errorf("message %d, in an intact later arena, was lost: %s", j, eventString(events))
								break
							}
						}
					}
					if err != nil {
						err = fmt.Errorf("consumer %d: %w", k, err)
					}
				}
				if err != nil {
					return fmt.Errorf("%s cut to %d bytes: %w", c.file, c.size, err)
				}
				return nil
			})
			corruptFinish(t, fmt.Sprintf("truncation[%s]: cases=%d %v elapsed=%v (%s)", mode.name, tally.cases, &tally, time.Since(start).Round(time.Millisecond), strings.Join(plan, ", ")), &tally)
		})
	}
}

// TestCorruptionSectors zeroes, and separately fills with random bytes,
// each 512-byte sector of every file of a small queue: the index, three
// arenas with two consumers part-way through them, and a spare arena.
// Two states of the files: closed cleanly, and crashed with the last
// sixty messages enqueued after the last flush. Besides the contract's
// checks: damage to an arena is never skipped silently (only at the end
// of the stream, where a crash may cut it), the queue then takes and
// returns new messages, and after a clean Close it reopens with nothing
// left to read. Under the race detector only the first two sectors of each
// file and every 4th are hit.
func TestCorruptionSectors(t *testing.T) {
	seed := int64(testSeed(t))
	const sector = 512
	msgs := randomMessages(rand.New(rand.NewPCG(13, 13)), 300, 300, 1700)
	byContent := messageIndex(msgs)
	n := len(msgs)
	root := memDir(t)
	positions := map[string]int{defaultConsumerKey: 170, "slow": 140} // next message of each consumer

	// build makes the small queue: two consumers part-way, the arenas they
	// read past kept as spares by a flush; with crash, the last 60
	// messages are not flushed and the directory is copied as a crash
	// leaves it, else the queue is closed and its spares put back as a
	// crash inside Close leaves them.
	build := func(t *testing.T, crash bool) string {
		q, dir := openTestQueue(t, smallOptions()...)
		slow, err := q.NewConsumer("slow")
		require.NoError(t, err)
		enqueueAll(t, q, msgs[:n-60])
		requireReads(t, slow.Dequeue, msgs[:140])
		requireReads(t, q.Dequeue, msgs[:170])
		require.NoError(t, q.Flush())
		enqueueAll(t, q, msgs[n-60:])
		if crash {
			return copyQueueDir(t, dir)
		}
		closeKeepSpares(t, q, dir)
		return dir
	}

	for _, mode := range []struct {
		name  string
		crash bool
	}{{"closed", false}, {"crashed", true}} {
		t.Run(mode.name, func(t *testing.T) {
			files := corruptReadFiles(t, build(t, mode.crash))
			var names []string
			for name := range files {
				names = append(names, name)
			}
			slices.Sort(names)
			spares := 0
			for _, name := range names {
				if strings.HasPrefix(name, "spare-") {
					spares++
				}
			}
			require.Positive(t, spares, "the template should hold a spare: %v", names)
			type hit struct {
				file   string
				sector int
				random bool
			}
			var hits []hit
			sampled := sampledTier()
			for _, name := range names {
				for s := 0; s*sector < len(files[name]); s++ {
					if sampled && s >= 2 && s%4 != 0 {
						continue // race detector: the first two sectors and every 4th
					}
					hits = append(hits, hit{name, s, false}, hit{name, s, true})
				}
			}

			var tally corruptTally
			start := time.Now()
			corruptSweep(t, root, files, len(hits), &tally, func(t *testing.T, f *corruptFixture, i int) error {
				h := hits[i]
				size := min(sector, len(files[h.file])-h.sector*sector)
				b := make([]byte, size)
				if h.random {
					rng := rand.New(rand.NewPCG(uint64(seed), uint64(i)))
					for j := range b {
						b[j] = byte(rng.Uint32())
					}
				}
				if err := f.patch(h.file, int64(h.sector*sector), b); err != nil {
					return err
				}
				what := fmt.Sprintf("%s sector %d zeroed", h.file, h.sector)
				if h.random {
					what = fmt.Sprintf("%s sector %d random", h.file, h.sector)
				}

				q, err := NewQueue(f.dir, corruptOpenOptions()...)
				if err != nil {
					tally.add(corruptReport{refused: err})
					if !errors.Is(err, ErrCorrupt) && !errors.Is(err, ErrIncompatibleVersion) {
						return fmt.Errorf("%s: open: untyped error: %w", what, err)
					}
					return nil
				}
				requireInvariants(t, q)
				readers := []string{defaultConsumerKey}
				reads := []func() ([]byte, error){q.Dequeue}
				for _, name := range q.Consumers() {
					if name != defaultConsumerKey {
						c, err := q.NewConsumer(name)
						require.NoError(t, err)
						readers = append(readers, name)
						reads = append(reads, c.Dequeue)
					}
				}
				var rep corruptReport
				for r, read := range reads {
					events := requireDrain(t, read, byContent, 2*n+8)
					rep.events = append(rep.events, events)
					first, known := positions[readers[r]]
					rep.count(events, first, n)
					if known && h.file != indexFileName {
						// A damaged index may move a consumer silently; damaged
						// records may not be skipped silently.
						if err := silentGap(events, first); err != nil {
							return fmt.Errorf("%s: consumer %q: %w", what, readers[r], err)
						}
					}
				}
				tally.add(rep)
				requireInvariants(t, q)
				requireWorks(t, q, "after")
				for r, read := range reads[1:] {
					for j := range 3 {
						b, err := read()
						require.NoError(t, err, "%s: consumer %q, new message %d", what, readers[r+1], j)
						require.Equal(t, fmt.Sprintf("after-%d", j), string(b), "%s: consumer %q", what, readers[r+1])
					}
					_, err := read()
					require.ErrorIs(t, err, ErrEmptyQueue)
				}
				require.NoError(t, q.Close())

				q2, err := NewQueue(f.dir, corruptOpenOptions()...)
				require.NoError(t, err, "%s: reopen after a clean close", what)
				requireInvariants(t, q2)
				names := q2.Consumers()
				require.Contains(t, names, defaultConsumerKey, what)
				for _, name := range names {
					c, err := q2.NewConsumer(name)
					require.NoError(t, err)
					require.True(t, c.IsEmpty(), "%s: consumer %q has something to read after a drain and a clean close", what, name)
				}
				require.NoError(t, q2.Close())
				return nil
			})
			corruptFinish(t, fmt.Sprintf("sectors[%s]: seed=%d files=%d sectors=%d cases=%d %v elapsed=%v", mode.name, seed, len(names), len(hits)/2, tally.cases, &tally, time.Since(start).Round(time.Millisecond)), &tally)
		})
	}
}

// TestCorruptionUnprovenConsumerKeepsArena: a consumer whose position
// recovery cannot prove (the record there is damaged) stands below the
// oldest intact arena header. The oldest stored record, which the index
// keeps as the reclaim watermark, may not pass it: else the next open
// deletes the arena under it as reclaimed and moves the consumer on
// without a word. Its first read must report ErrCorrupt, across a reopen.
func TestCorruptionUnprovenConsumerKeepsArena(t *testing.T) {
	msgs := randomMessages(rand.New(rand.NewPCG(12, 12)), 160, 700, 1300)
	dir := buildQueue(t, msgs) // "reader" and the default consumer at 0
	// Damage arena 0's header and the first record's payload; the records
	// after it are intact.
	arena := arenaPath(dir, 0)
	b, err := os.ReadFile(arena)
	require.NoError(t, err)
	b[arenaFirstOff] ^= 1
	b[arenaHeaderSize+recordHeaderSize+3] ^= 1
	require.NoError(t, os.WriteFile(arena, b, 0o644))

	q := openTestQueueIn(t, dir, corruptOpenOptions()...)
	require.NoError(t, q.Close())
	q = openTestQueueIn(t, dir, corruptOpenOptions()...)
	require.FileExists(t, arena, "arena 0 was taken for reclaimed")
	c, err := q.NewConsumer("reader")
	require.NoError(t, err)
	_, err = c.Dequeue()
	require.ErrorIs(t, err, ErrCorrupt, "the damage under the consumer went unreported")
}

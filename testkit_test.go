package bigqueue

// The test kit: what the big test files share. Every random test takes
// its seed from testSeed, every message from appendMessage, every check
// of a drained consumer from drain, every scratch file system from
// scratchFS or memDir, and every test that differs between the tiers asks
// longTier. Reliability tests end with one summary line through report,
// which shows even without -v.

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// longTier reports whether BIGQUEUE_LONG=1 asks for the long tier: every
// case of the sweeps, ten thousand crash-loop children, two million power
// losses. Run it before resolving anything that touches durability.
func longTier() bool { return os.Getenv("BIGQUEUE_LONG") == "1" }

// sampledTier reports whether the sweeps run on a sample of their cases:
// under the race detector, which makes every case several times slower,
// and in the -short smoke run, unless BIGQUEUE_LONG=1 asks for every
// case.
func sampledTier() bool { return (testRaceEnabled || testing.Short()) && !longTier() }

// testSeed returns the seed of a random test: BIGQUEUE_SEED when it is
// set, else one from the clock. It logs the seed and how to replay it.
func testSeed(t testing.TB) uint64 {
	t.Helper()
	var seed uint64
	if s := os.Getenv("BIGQUEUE_SEED"); s != "" {
		v, err := strconv.ParseUint(s, 10, 64)
		require.NoError(t, err, "BIGQUEUE_SEED")
		seed = v
	} else {
		seed = uint64(time.Now().UnixNano())
	}
	t.Logf("%s: seed=%d (replay with BIGQUEUE_SEED=%d)", t.Name(), seed, seed)
	return seed
}

// seededRand returns a generator determined by seed and the parts of a
// case, so that each case can be rebuilt from the seed alone, whatever
// the order the cases run in.
func seededRand(seed uint64, parts ...uint64) *rand.Rand {
	h := seed
	for _, p := range parts {
		h = (h ^ p) * 0x9E3779B97F4A7C15
	}
	return rand.New(rand.NewPCG(seed, h))
}

// report logs a reliability test's summary line and, when go test runs
// without -v (which hides t.Log and the output of passing packages),
// also writes it to the go command's standard output, where it shows
// next to the package's ok line.
func report(t testing.TB, format string, args ...any) {
	t.Helper()
	line := fmt.Sprintf(format, args...)
	t.Log(line)
	if w := reportOut(); w != nil {
		fmt.Fprintf(w, "    %s: %s\n", t.Name(), line)
	}
}

// reportOut is the go command's standard output, when this test binary
// is its child, -v is off and that output is a pipe or a terminal (as in
// CI and at a shell); nil otherwise: with -v or -json t.Log shows the
// line, and when go test's output goes to a file, the line needs -v.
// Linux only: elsewhere summary lines need -v. A cached run prints none.
var reportOut = sync.OnceValue(func() io.Writer {
	if testing.Verbose() {
		return nil
	}
	parent := os.Getppid()
	comm, err := os.ReadFile(fmt.Sprintf("/proc/%d/comm", parent))
	if err != nil || strings.TrimSpace(string(comm)) != "go" {
		return nil
	}
	// Only a pipe or a terminal: a regular file opened again has an
	// offset of its own, and the go command's next write would land on
	// top of the line.
	out := fmt.Sprintf("/proc/%d/fd/1", parent)
	if fi, err := os.Stat(out); err != nil || fi.Mode()&(os.ModeNamedPipe|os.ModeCharDevice) == 0 {
		return nil
	}
	f, err := os.OpenFile(out, os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		return nil
	}
	return f
})

// messageHeadSize is the part of a test message that names it.
const messageHeadSize = 16

// appendMessage appends message id of n bytes of a test seeded with seed:
// the same bytes for the same arguments. Its first 16 bytes (fewer when n
// is smaller) hold id and seed, so that describeMessage can name any
// message met in a failure, and the rest are pseudo-random. No byte is
// zero, so that zeroing any byte of a record's payload damages it.
func appendMessage(dst []byte, seed, id uint64, n int) []byte {
	start := len(dst)
	dst = slices.Grow(dst, n)[:start+n]
	b := dst[start:]
	var head [messageHeadSize]byte
	putNonZero(head[:8], id)
	putNonZero(head[8:], seed)
	copy(b, head[:])
	if n > messageHeadSize {
		pcg := rand.NewPCG(seed, id)
		var w [8]byte
		for i := messageHeadSize; i < n; i += 8 {
			binary.LittleEndian.PutUint64(w[:], pcg.Uint64()|0x0101010101010101)
			copy(b[i:], w[:])
		}
	}
	return dst
}

// message is appendMessage into a new slice.
func message(seed, id uint64, n int) []byte {
	return appendMessage(make([]byte, 0, n), seed, id, n)
}

// putNonZero writes the low 56 bits of v into b[:8], seven bits a byte,
// the top bit of each set, so that no byte is zero.
func putNonZero(b []byte, v uint64) {
	for i := range 8 {
		b[i] = 0x80 | byte(v>>(7*i))&0x7f
	}
}

func getNonZero(b []byte) uint64 {
	var v uint64
	for i := range 8 {
		v |= uint64(b[i]&0x7f) << (7 * i)
	}
	return v
}

// messageID returns the id appendMessage stamped into b for seed, and
// whether b is that message whole.
func messageID(seed uint64, b []byte) (uint64, bool) {
	if len(b) < messageHeadSize || getNonZero(b[8:]) != seed&(1<<56-1) {
		return 0, false
	}
	id := getNonZero(b)
	return id, bytes.Equal(b, message(seed, id, len(b)))
}

// describeMessage names b in a failure message.
func describeMessage(seed uint64, b []byte) string {
	if id, whole := messageID(seed, b); whole {
		return fmt.Sprintf("message %d (%d bytes)", id, len(b))
	} else if len(b) >= messageHeadSize && getNonZero(b[8:]) == seed&(1<<56-1) {
		return fmt.Sprintf("a damaged message %d (%d bytes)", id, len(b))
	}
	if len(b) > 16 {
		return fmt.Sprintf("%d unknown bytes %x...", len(b), b[:16])
	}
	return fmt.Sprintf("%d bytes %x", len(b), b)
}

// randomMessages returns n messages of minLen to maxLen bytes, the
// lengths and the seed drawn from rng: message i is message(seed, i,
// length), so that two calls with different generators give different
// messages.
func randomMessages(rng *rand.Rand, n, minLen, maxLen int) [][]byte {
	seed := rng.Uint64()
	msgs := make([][]byte, n)
	for i := range msgs {
		msgs[i] = message(seed, uint64(i), minLen+rng.IntN(maxLen-minLen+1))
	}
	return msgs
}

// messageIndex maps the content of each message to its position.
func messageIndex(msgs [][]byte) map[string]int {
	m := make(map[string]int, len(msgs))
	for i, b := range msgs {
		m[string(b)] = i
	}
	return m
}

// corruptEvent stands for a read that returned an error wrapping
// ErrCorrupt in the events drain returns.
const corruptEvent = -1

// errWrongMessage marks a read that returned a message never enqueued,
// or one out of order: a broken promise, never a tolerated outcome.
var errWrongMessage = errors.New("wrong message")

// drainRules relax drain for a queue opened from damaged files.
type drainRules struct {
	// forged accepts a message that is not in byContent: a fuzzed input
	// may frame messages of its own. nil accepts none.
	forged func([]byte) bool
	// drops takes ErrDropped for a reported skip, like ErrCorrupt: a
	// damaged index may hold a retention mark and a watermark that look
	// like retention's own (no checksum covers them; see
	// indexHasRetentionMark).
	drops bool
}

// indexHasRetentionMark reports whether the index in dir holds a
// retention mark, which damage may have put there.
func indexHasRetentionMark(t testing.TB, dir string) bool {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(dir, indexFileName))
	if errors.Is(err, os.ErrNotExist) {
		return false
	}
	require.NoError(t, err)
	return len(b) >= idxRetainedOff+8 && le64(b[idxRetainedOff:]) != 0
}

// drain reads with next until ErrEmptyQueue and returns what each read
// gave: the position in the enqueued messages (byContent) of the message
// it returned, or corruptEvent. rules relax it for damaged files. It returns an error for a message never enqueued
// or out of order (wrapping errWrongMessage), for any error but
// ErrCorrupt, and for a consumer that has not reached ErrEmptyQueue after
// bound reads.
func drain(next func() ([]byte, error), byContent map[string]int, rules drainRules, bound int) ([]int, error) {
	var events []int
	last := -1
	for range bound {
		b, err := next()
		switch {
		case err == nil:
			i, ok := byContent[string(b)]
			if !ok && rules.forged != nil && rules.forged(b) {
				continue
			}
			if !ok {
				return events, fmt.Errorf("read %d bytes that were never enqueued, after message %d (%q): %w", len(b), last, trimForLog(b), errWrongMessage)
			}
			if i <= last {
				return events, fmt.Errorf("message %d read after message %d: %w", i, last, errWrongMessage)
			}
			last = i
			events = append(events, i)
		case errors.Is(err, ErrEmptyQueue):
			return events, nil
		case errors.Is(err, ErrCorrupt), rules.drops && errors.Is(err, ErrDropped):
			events = append(events, corruptEvent)
		default:
			return events, fmt.Errorf("read after message %d: untyped error: %w", last, err)
		}
	}
	return events, fmt.Errorf("consumer stuck: no ErrEmptyQueue after %d reads; read %s", bound, eventString(events))
}

// requireDrain is drain that fails the test on an error.
func requireDrain(t testing.TB, next func() ([]byte, error), byContent map[string]int, bound int) []int {
	t.Helper()
	events, err := drain(next, byContent, drainRules{}, bound)
	require.NoError(t, err)
	return events
}

// delivered returns the messages of events, without the ErrCorrupt
// reports.
func delivered(events []int) []int {
	return slices.DeleteFunc(slices.Clone(events), func(e int) bool { return e == corruptEvent })
}

// silentGap returns an error when events, read by a consumer that stood
// at message first, skip messages anywhere but right after a read that
// reported ErrCorrupt, or at the end.
func silentGap(events []int, first int) error {
	prev, reported := first-1, false
	for _, e := range events {
		if e == corruptEvent {
			reported = true
			continue
		}
		if e != prev+1 && !reported {
			return fmt.Errorf("messages %d to %d were skipped without an ErrCorrupt; read %s", prev+1, e-1, eventString(events))
		}
		prev, reported = e, false
	}
	return nil
}

// eventString formats events compactly: runs of consecutive messages as
// "from-to", ErrCorrupt as "X".
func eventString(events []int) string {
	var parts []string
	for i := 0; i < len(events); {
		e := events[i]
		if e == corruptEvent {
			parts = append(parts, "X")
			i++
			continue
		}
		j := i
		for j+1 < len(events) && events[j+1] == events[j]+1 {
			j++
		}
		if j == i {
			parts = append(parts, fmt.Sprint(e))
		} else {
			parts = append(parts, fmt.Sprintf("%d-%d", e, events[j]))
		}
		i = j + 1
	}
	return "[" + strings.Join(parts, " ") + "]"
}

func trimForLog(b []byte) []byte {
	if len(b) > 24 {
		return b[:24]
	}
	return b
}

// intRange returns the message positions [from, to).
func intRange(from, to int) []int {
	s := make([]int, 0, max(to-from, 0))
	for i := from; i < to; i++ {
		s = append(s, i)
	}
	return s
}

// memDir returns a new directory in memory (/dev/shm) when there is one,
// else the test's TempDir: fsync and msync cost nothing there, which the
// tests that open thousands of queues need. No root needed.
func memDir(t testing.TB) string {
	t.Helper()
	if fi, err := os.Stat("/dev/shm"); err == nil && fi.IsDir() {
		if dir, err := os.MkdirTemp("/dev/shm", "bigqueue-test-"); err == nil {
			t.Cleanup(func() {
				if err := os.RemoveAll(dir); err != nil {
					t.Errorf("remove %s: %v", dir, err)
				}
			})
			return dir
		}
	}
	return t.TempDir()
}

// scratchSpec says how to make and mount a file system of one kind.
type scratchSpec struct {
	mkfs  []string // the command that formats an image, which is appended; none for tmpfs and ramfs
	mount string   // mount options besides loop
	min   int      // smallest image mkfs accepts, in MiB
}

var scratchSpecs = map[string]scratchSpec{
	"tmpfs": {},
	"ramfs": {},
	// -m 0: no blocks reserved for root, who runs these tests.
	"ext4": {mkfs: []string{"mkfs.ext4", "-q", "-F", "-m", "0"}, mount: "barrier=0"},
	// ext2 has no fallocate: the queue reserves blocks by writing zeros.
	"ext2": {mkfs: []string{"mkfs.ext2", "-q", "-F", "-m", "0"}},
	// --mixed: data and metadata share chunks, so that a small image
	// fills up as a big one does. btrfs is copy-on-write: the queue
	// marks its files NOCOW.
	"btrfs": {mkfs: []string{"mkfs.btrfs", "-q", "-f", "--mixed"}, mount: "nobarrier"},
	"xfs":   {mkfs: []string{"mkfs.xfs", "-q", "-f"}, min: 300},
}

// scratchFS mounts a new file system of the given kind, of mib MiB
// (ramfs has no size), and returns its mount point: "tmpfs", "ramfs", or
// a loop-mounted image of "ext4", "ext2", "btrfs" or "xfs". At cleanup it
// unmounts it (lazily when it is still busy, failing the test) and
// removes the image, always. It skips the test, saying why, when it
// cannot mount (not root, no loop devices, no mkfs: apt-get install
// btrfs-progs xfsprogs).
//
// An image lives on a tmpfs when one can be mounted, and is mounted
// without write barriers where the file system has the option: the
// queue's msyncs then cost memory copies instead of disk flushes, and the
// file system still allocates, journals and runs out of space as it does
// on a disk.
func scratchFS(t *testing.T, kind string, mib int) string {
	t.Helper()
	spec, ok := scratchSpecs[kind]
	require.True(t, ok, "no file system %q in the kit", kind)
	mnt := filepath.Join(t.TempDir(), "mnt")
	require.NoError(t, os.Mkdir(mnt, 0o755))
	switch kind {
	case "tmpfs":
		if err := run("mount", "-t", "tmpfs", "-o", fmt.Sprintf("size=%dm", mib), "tmpfs", mnt); err != nil {
			t.Skipf("cannot mount a tmpfs (needs root and mount(8)): %v", err)
		}
		t.Cleanup(func() { unmount(t, mnt) })
		return mnt
	case "ramfs":
		if err := run("mount", "-t", "ramfs", "ramfs", mnt); err != nil {
			t.Skipf("cannot mount a ramfs (needs root and mount(8)): %v", err)
		}
		t.Cleanup(func() { unmount(t, mnt) })
		return mnt
	}
	mib = max(mib, spec.min)
	if _, err := exec.LookPath(spec.mkfs[0]); err != nil {
		t.Skipf("no %s on this machine (apt-get install btrfs-progs xfsprogs): %v", spec.mkfs[0], err)
	}
	store := filepath.Join(t.TempDir(), "store")
	require.NoError(t, os.Mkdir(store, 0o755))
	if err := run("mount", "-t", "tmpfs", "-o", fmt.Sprintf("size=%dm", mib+1), "tmpfs", store); err != nil {
		t.Logf("the %s image goes to the temporary directory: %v", kind, err)
	} else {
		t.Cleanup(func() { unmount(t, store) })
	}
	img := filepath.Join(store, kind+".img")
	t.Cleanup(func() {
		if err := os.Remove(img); err != nil && !errors.Is(err, os.ErrNotExist) {
			t.Errorf("remove %s image: %v", kind, err)
		}
	})
	if err := run("truncate", "-s", fmt.Sprintf("%dM", mib), img); err != nil {
		t.Skipf("cannot make a %s image: %v", kind, err)
	}
	if err := run(spec.mkfs[0], append(spec.mkfs[1:], img)...); err != nil {
		t.Skipf("cannot make a %s image: %v", kind, err)
	}
	opts := "loop"
	if spec.mount != "" {
		opts += "," + spec.mount
	}
	if err := run("mount", "-o", opts, img, mnt); err != nil {
		t.Skipf("cannot mount a %s loop image (needs root and loop devices): %v", kind, err)
	}
	t.Cleanup(func() { unmount(t, mnt) })
	return mnt
}

// run runs a command, returning its output with the error.
func run(name string, args ...string) error {
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("%s %v: %w: %s", name, args, err, out)
	}
	return nil
}

// unmount unmounts dir, lazily when it is still busy (a failed test may
// have left files open), so that no mount outlives the test. It fails
// the test when dir was busy.
func unmount(t *testing.T, dir string) {
	t.Helper()
	err := run("umount", dir)
	if err == nil {
		return
	}
	t.Error(err)
	if err := run("umount", "-l", dir); err != nil {
		t.Error(err)
	}
}

// requireInvariants fails the test when q's invariants do not hold.
func requireInvariants(tb testing.TB, q *Queue) {
	tb.Helper()
	require.NoError(tb, q.checkInvariants())
}

// checkInvariants returns what does not hold, of what must hold between
// any two operations on an open queue; nil on a closed one. On a queue
// that failed closed on a fault it may report an operation the fault left
// half done (create maps an arena before it writes its header, so that
// Close unmaps it): such tests do not call it.
func (q *Queue) checkInvariants() error {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.closed {
		return nil
	}
	var errs []error
	check := func(ok bool, format string, args ...any) {
		if !ok {
			errs = append(errs, fmt.Errorf("invariant: "+format, args...))
		}
	}
	m := q.am
	check(q.tail == q.idx.tail(), "index tail %d, queue tail %d", q.idx.tail(), q.tail)
	// A flush moves oldest past the arenas it reclaims at its start
	// (passOldest), the watermark once they are gone.
	check(q.oldest == q.idx.head() || q.passed && q.idx.head() < q.oldest,
		"index head %d, oldest stored record %d", q.idx.head(), q.oldest)
	check(q.oldest <= q.head, "oldest %d > head %d", q.oldest, q.head)
	check(q.head <= q.tail, "head %d > tail %d", q.head, q.tail)
	// unknownSeq marks a position recovery could not prove; its first read
	// reports ErrCorrupt and moves on.
	check(q.headSeq <= q.tailSeq || q.headSeq == unknownSeq, "head seq %d > tail seq %d", q.headSeq, q.tailSeq)
	// oldest is unproven when a consumer recovery could not prove stands
	// below the oldest intact arena header: it may not pass that consumer.
	check(q.oldestSeq <= q.headSeq || q.headSeq == unknownSeq || q.oldestSeq == unknownSeq,
		"oldest seq %d > head seq %d", q.oldestSeq, q.headSeq)
	if len(q.consumers) == 0 {
		check(q.oldest == q.head, "with no consumer the head %d is not the oldest record %d", q.head, q.oldest)
	}
	lowest := q.tail
	for _, c := range q.consumers {
		lowest = min(lowest, c.off)
	}
	if len(q.consumers) > 0 {
		check(lowest == q.head, "head %d is not the lowest consumer position %d", q.head, lowest)
	}
	for name, c := range q.consumers {
		check(name == c.name, "consumer %q under the name %q", c.name, name)
		check(c.off >= q.head, "consumer %q at %d before head %d", name, c.off, q.head)
		check(c.off <= q.tail, "consumer %q at %d past tail %d", name, c.off, q.tail)
		check(c.seq <= q.tailSeq || c.seq == unknownSeq, "consumer %q seq %d > tail seq %d", name, c.seq, q.tailSeq)
		stored := le64(q.idx.slot(c.slot)[slotOffsetOff:])
		if c.drop.pending {
			// Retention removed what it had not read: its slot keeps the
			// position from before, below the watermark, until its next
			// read reports the drop.
			check(stored < q.oldest, "dropped consumer %q slot offset %d, oldest %d", name, stored, q.oldest)
		} else {
			check(c.off == stored, "consumer %q at %d, its slot says %d", name, c.off, stored)
		}
	}
	if m.maxMapped > 0 {
		check(len(m.mapped) <= m.maxMapped, "%d mapped arenas, limit %d", len(m.mapped), m.maxMapped)
	}
	check(m.first <= m.next, "first arena %d > next %d", m.first, m.next)
	if q.tail > m.first*m.dataSize {
		check(m.first <= q.oldest/m.dataSize, "the oldest record %d lies below the oldest arena %d", q.oldest, m.first)
		// Arena files end with the tail's, or just before it when
		// recovery left the tail inside an arena whose file is gone (the
		// next Enqueue creates it).
		if !(q.tail%m.dataSize != 0 && m.next == q.tail/m.dataSize) {
			check((q.tail-1)/m.dataSize+1 == m.next, "arena files end at %d, the tail's is %d", m.next, (q.tail-1)/m.dataSize)
		}
	}
	for id := range m.present {
		check(id >= m.first && id < m.next, "present arena %d outside [%d,%d)", id, m.first, m.next)
		f, err := m.dir.openRead(arenaName(id))
		if err != nil {
			errs = append(errs, fmt.Errorf("arena %d: %w", id, err))
			continue
		}
		st, err := f.Stat()
		if err = errors.Join(err, f.Close()); err != nil {
			errs = append(errs, fmt.Errorf("arena %d: %w", id, err))
			continue
		}
		if _, mapped := m.mapped[id]; mapped {
			// A file of the wrong size is found, and set aside, when it
			// is first mapped; a mapped one must be whole.
			check(st.Size() == int64(q.opts.arenaSize), "arena %d size %d, want %d", id, st.Size(), q.opts.arenaSize)
		}
	}
	check(len(m.spares) <= maxSpareArenas, "%d spares", len(m.spares))
	check(len(m.spares)*q.opts.arenaSize <= maxSpareBytes, "%d spare bytes", len(m.spares)*q.opts.arenaSize)
	for id := range m.mapped {
		check(id >= m.first && id < m.next, "mapped arena %d outside [%d,%d)", id, m.first, m.next)
	}
	for id, k := range m.parked {
		check(m.present[id], "parked arena %d is not present", id)
		check(m.mapped[id] == nil, "arena %d is mapped and parked", id)
		check(len(k.data) == q.opts.arenaSize, "parked arena %d: mapping of %d bytes", id, len(k.data))
	}
	// Parking and detachBelow keep a mapping only below the spare limit,
	// counting those a reclaim under way holds.
	check(m.keptMappings() <= m.spareLimit(), "%d kept mappings, limit %d", m.keptMappings(), m.spareLimit())
	return errors.Join(errs...)
}

// smallArenaSize is the arena size of the tests that lay records out
// by hand: small, so that a hundred messages span several arenas.
const (
	smallArenaSize = 64 << 10
	smallDataSize  = smallArenaSize - arenaHeaderSize // record bytes per arena
)

// smallOptions are small arenas and no background flush, so that the files
// change only when the test says so.
func smallOptions() []Option {
	return []Option{SetArenaSize(smallArenaSize), SetPeriodicFlushOps(0), SetPeriodicFlushDuration(0)}
}

// msgSpan is the logical extent [start, end) of one record, header included.
type msgSpan struct{ start, end uint64 }

// layoutOf returns where the records of msgs lie when enqueued into an
// empty queue.
func layoutOf(msgs [][]byte) []msgSpan {
	spans := make([]msgSpan, len(msgs))
	var off uint64
	for i, m := range msgs {
		spans[i] = msgSpan{off, off + recordHeaderSize + uint64(len(m))}
		off = spans[i].end
	}
	return spans
}

// arenaPath is the path of arena id in dir.
func arenaPath(dir string, id uint64) string {
	return filepath.Join(dir, fmt.Sprintf("arena-%d.bq", id))
}

// buildQueue enqueues msgs into a new queue in a new directory, with
// the default consumer (slot 0, made by a first read) and one extra
// consumer "reader" (slot 1), closes it, and returns the directory.
func buildQueue(t *testing.T, msgs [][]byte) string {
	t.Helper()
	q, dir := openTestQueue(t, smallOptions()...)
	_, err := q.Peek()
	require.ErrorIs(t, err, ErrEmptyQueue)
	_, err = q.NewConsumer("reader")
	require.NoError(t, err)
	enqueueAll(t, q, msgs)
	spans := layoutOf(msgs)
	q.mu.Lock()
	tail := q.tail
	q.mu.Unlock()
	require.Equal(t, spans[len(spans)-1].end, tail, "the test's record layout differs from the queue's")
	requireInvariants(t, q)
	require.NoError(t, q.Close())
	return dir
}

// closeKeepSpares closes q, whose directory is dir, and puts back the
// spare files it held just before, as a crash inside Close leaves them:
// Close removes the spares only after it has synced the index. It returns
// how many there were. NewQueue deletes spares it finds, never reuses
// them; a template that holds some tests that.
func closeKeepSpares(t *testing.T, q *Queue, dir string) int {
	t.Helper()
	spares, err := filepath.Glob(filepath.Join(dir, "spare-*.bq"))
	require.NoError(t, err)
	content := make(map[string][]byte, len(spares))
	for _, p := range spares {
		b, err := os.ReadFile(p)
		require.NoError(t, err)
		content[p] = b
	}
	require.NoError(t, q.Close())
	for p, b := range content {
		require.NoFileExists(t, p, "Close removes spares")
		require.NoError(t, os.WriteFile(p, b, 0o644))
	}
	return len(spares)
}

// copyQueueDir copies the regular files of src, but the lock file, into a new
// directory and returns it.
func copyQueueDir(t *testing.T, src string) string {
	t.Helper()
	dst := t.TempDir()
	entries, err := os.ReadDir(src)
	require.NoError(t, err)
	for _, e := range entries {
		if !e.Type().IsRegular() || e.Name() == legacyLockFileName {
			continue
		}
		b, err := os.ReadFile(filepath.Join(src, e.Name()))
		require.NoError(t, err)
		require.NoError(t, os.WriteFile(filepath.Join(dst, e.Name()), b, 0o644))
	}
	return dst
}

// rewriteRecords replaces each logical record byte in [from, to) of the
// queue in dir (closed) with fn of it, across arena files.
func rewriteRecords(t *testing.T, dir string, from, to uint64, fn func(byte) byte) {
	t.Helper()
	for from < to {
		id, pos := from/smallDataSize, from%smallDataSize
		n := min(to-from, smallDataSize-pos)
		f, err := os.OpenFile(arenaPath(dir, id), os.O_RDWR, 0)
		require.NoError(t, err)
		b := make([]byte, n)
		_, err = f.ReadAt(b, int64(arenaHeaderSize+pos))
		require.NoError(t, err)
		for i := range b {
			b[i] = fn(b[i])
		}
		_, err = f.WriteAt(b, int64(arenaHeaderSize+pos))
		require.NoError(t, err)
		require.NoError(t, f.Close())
		from += n
	}
}

func countEvents(events []int, e int) int {
	n := 0
	for _, v := range events {
		if v == e {
			n++
		}
	}
	return n
}

// stringReads adapts a DequeueString method to requireDrain.
func stringReads(f func() (string, error)) func() ([]byte, error) {
	return func() ([]byte, error) {
		s, err := f()
		return []byte(s), err
	}
}

// requireWorks enqueues a few new messages and reads them back through
// Dequeue, which must have read everything before.
func requireWorks(t *testing.T, q *Queue, tag string) {
	t.Helper()
	for i := range 3 {
		require.NoError(t, q.EnqueueString(fmt.Sprintf("%s-%d", tag, i)))
	}
	for i := range 3 {
		s, err := q.DequeueString()
		require.NoError(t, err)
		require.Equal(t, fmt.Sprintf("%s-%d", tag, i), s)
	}
	_, err := q.Dequeue()
	require.ErrorIs(t, err, ErrEmptyQueue)
	require.True(t, q.IsEmpty())
}

// enqueueAll enqueues msgs into q.
func enqueueAll(t testing.TB, q *Queue, msgs [][]byte) {
	t.Helper()
	for _, m := range msgs {
		require.NoError(t, q.Enqueue(m))
	}
}

// requireReads reads len(want) messages with next and requires them to
// be want, in order.
func requireReads(t testing.TB, next func() ([]byte, error), want [][]byte) {
	t.Helper()
	for i, w := range want {
		b, err := next()
		require.NoError(t, err, "read %d", i)
		require.Equal(t, w, b, "read %d", i)
	}
}

// views returns the two ways to read a queue, as the interface T: the
// queue itself (its default consumer) and a consumer named "named".
func views[T any](t testing.TB, q *Queue) map[string]T {
	t.Helper()
	c, err := q.NewConsumer("named")
	require.NoError(t, err)
	return map[string]T{"queue": any(q).(T), "consumer": any(c).(T)}
}

// reopen closes q, whose directory is dir, or with crash abandons it as
// a killed process leaves it (abandonQueue), and opens dir again.
func reopen(t *testing.T, q *Queue, dir string, crash bool, opts ...Option) *Queue {
	t.Helper()
	if crash {
		abandonQueue(t, q)
	} else {
		require.NoError(t, q.Close())
	}
	return openTestQueueIn(t, dir, opts...)
}

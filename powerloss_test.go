package bigqueue

// Power-loss simulator.
//
// crashFS watches every file and sync call a queue makes and keeps, per
// file, the content a power loss cannot take away: what the last msync or
// fsync of that file wrote. Directory entries become durable only at a
// directory fsync. Files are tracked by inode, so that renames (spare-N.bq
// to arena-M.bq, index.bq.tmp to index.bq) move content, not names.
//
// Before every sync call, and at the end of a workload, crashFS takes a
// snapshot: the content of every file now, the durable content, the
// durable directory and the directory operations since, and what the
// workload knows (plModel). A crash at a snapshot is an image directory
// built from it:
//
//   - the directory is the durable one plus any subset of the creates,
//     renames and removes since (POSIX orders none of them before a
//     directory fsync), applied in their order: a created file is there
//     or not, a removed file is still there or gone, a renamed file is
//     under its old name or its new one (never both, never neither unless
//     a remove in the subset takes it); each operation acts on its file
//     wherever that file's name is, and a create or rename replaces what
//     its target name held (plDirOp.apply);
//   - a file's content follows its inode, whatever name it ends up under:
//     every file starts from its durable content (empty when never
//     synced); each 4 KiB page that differs from the current content is
//     kept old, taken new, torn (each 512-byte sector old or new), filled
//     with garbage where it changed (arena files only: the index relies on
//     sector-atomic writes, see docs/FORMAT.md), or taken from a version the kernel
//     may have written back at an earlier snapshot;
//   - a file that grew keeps its durable size or takes the new one (a page
//     beyond the durable size that is not old forces the new size).
//
// The image is opened with the real code (plain NewQueue on osFS) and
// judged by plJudge against the workload: it opens; it accepts an
// Enqueue at once, before any read; it holds every message a successful
// Flush covered and no more than were enqueued; every consumer reads,
// byte for byte, the run of enqueued messages from the position the
// image's index stores for it (or the recovered tail, when lower; and
// between its position at the last successful Flush and what it had read
// when the index cannot say) up to the recovered tail, then the message
// enqueued at once, with no ErrCorrupt skip over a message (at-least-once:
// a message the durable position had not passed comes back even if it
// was read before the crash); checkInvariants holds; and the queue still works (a new
// message reaches every consumer, Close succeeds). An ErrCorrupt from an
// image with no torn or garbage page is a false alarm: an arena missing
// because its remove survived, or its create did not, is no damage.
//
// Workloads: every sequence of up to three operations over a small
// alphabet with page-size arenas, where each sync call of the last
// operation, the end, and the sync calls of Close are crash points
// (shorter workloads cover the earlier ones), each with every subset of
// its dirty pages (at most 4 here, 8 allowed) and one random subset of
// the directory operations; a few explicit workloads of reported bugs
// (plExplicitWorkloads), each page subset with no, all and a random subset
// of the directory operations whatever the tier; and long random
// workloads with two consumers, reclamation, spare reuse, reopening and
// evictions, at random crash points with random page fates and random
// directory subsets. The default run simulates about 20,000 power
// losses; under the race detector about 3,000; with BIGQUEUE_LONG=1
// about 2,000,000, every subset of dirty pages then with every subset of
// up to plMaxDirsEvery directory operations (else none, all and
// plDirSamples random ones), four times
// (BIGQUEUE_LONG=1 go test -timeout 0 -run 'TestPowerLoss$').
// TestPowerLossBroken shows that the deliberately broken variants of the
// library (plVariant) are caught. A library bug the simulator found is pinned
// by TestPowerLossCheckpointFallback and, while it reproduces, images of
// its shape (recovery cannot start at the checkpoint) are counted apart
// instead of failing TestPowerLoss. BIGQUEUE_POWERLOSS_ONLY and
// BIGQUEUE_POWERLOSS_KEEP help to rerun and inspect a reported image.

import (
	"bytes"
	"errors"
	"fmt"
	"maps"
	"math/rand/v2"
	"os"
	"path/filepath"
	"regexp"
	"runtime"
	"runtime/debug"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// Environment of the simulator, besides BIGQUEUE_SEED and BIGQUEUE_LONG.
const (
	// powerLossKeepEnv names a directory where the images of violations
	// are copied for inspection.
	powerLossKeepEnv = "BIGQUEUE_POWERLOSS_KEEP"
	// powerLossOnlyEnv is a regular expression: only the workloads whose
	// names it matches run (e.g. '^long#563$' to rerun one a report named).
	powerLossOnlyEnv = "BIGQUEUE_POWERLOSS_ONLY"
)

const (
	plSectorSize = 512
	plMaxMasked  = 8 // maskImages tries every subset of up to this many dirty pages, else 256 random ones
	// plMaxDirsEvery: the long tier tries every subset of up to this many
	// pending directory operations, else none, all and plDirSamples
	// random subsets.
	plMaxDirsEvery = 8
	plDirSamples   = 30
)

var plPageSize = os.Getpagesize()

// ---------------------------------------------------------------------
// Workloads and what they know.

// plConsumer is what a workload knows about one consumer. Positions count
// messages.
type plConsumer struct {
	name        string
	exists      bool // created (NewQueue for the default consumer)
	durable     bool // created before a successful Flush or Close
	read        int  // messages it has dequeued
	readStarted int  // read, plus one while a dequeue runs
	flushedRead int  // read at the last successful Flush or Close
}

// plModel is what a workload knows at one instant.
type plModel struct {
	started int // messages whose Enqueue or EnqueueBatch began
	acked   int // messages whose Enqueue or EnqueueBatch returned nil
	flushed int // messages acked before the last successful Flush or Close
	cons    []plConsumer
}

func (m *plModel) clone() plModel {
	c := *m
	c.cons = slices.Clone(m.cons)
	return c
}

func (m *plModel) consumer(name string) int {
	for i, c := range m.cons {
		if c.name == name {
			return i
		}
	}
	return -1
}

// flushed records a successful Flush or Close that started at pre.
func (m *plModel) flushedAt(pre plModel) {
	m.flushed = pre.acked
	for i := range m.cons {
		m.cons[i].flushedRead = pre.cons[i].read
		m.cons[i].durable = m.cons[i].durable || pre.cons[i].exists
	}
}

type plOpKind uint8

const (
	plEnqueue plOpKind = iota
	plBatch
	plDequeue
	plFlush
	plReopen  // Close, then NewQueue on the same directory
	plReclaim // the background flusher's reclaimFlush: no promise made
)

type plOp struct {
	kind     plOpKind
	sizes    []int // message sizes of an enqueue or a batch
	consumer int   // the consumer of a dequeue, an index into plModel.cons
}

func (op plOp) String() string {
	sizes := func() string {
		s := make([]string, len(op.sizes))
		for i, n := range op.sizes {
			s[i] = strconv.Itoa(n)
		}
		return strings.Join(s, ",")
	}
	switch op.kind {
	case plEnqueue:
		return "enq(" + sizes() + ")"
	case plBatch:
		return "batch(" + sizes() + ")"
	case plDequeue:
		return "deq(" + strconv.Itoa(op.consumer) + ")"
	case plFlush:
		return "flush"
	case plReclaim:
		return "reclaim"
	}
	return "reopen"
}

// plWorkload is a queue configuration and what to do with it.
type plWorkload struct {
	name      string
	arenaSize int
	maxMapped int
	consumers []string // named consumers, created and flushed after the first open
	ops       []plOp
	// crashFrom: snapshots taken before op crashFrom are not crash points,
	// as a shorter workload covers them.
	crashFrom int
	variant   plVariant // a deliberately broken library, or the real one
	// prepared makes the queue prepare its next arena ahead (ready.go),
	// which it does only for large arenas otherwise.
	prepared bool
}

// plVariant is a deliberately broken variant of the library, for showing
// that the simulator catches each kind of mistake (TestPowerLossBroken);
// the zero value is the library as shipped.
type plVariant struct {
	name      string
	plant     plant // the mistakes switched on by a test-only option
	noDirSync bool  // directory fsyncs are dropped by a fileSystem wrapper
}

// noDirSyncFS is a fileSystem that drops directory fsyncs.
type noDirSyncFS struct{ fileSystem }

func (noDirSyncFS) syncDir(*queueDir) error { return nil }

// fs returns the fileSystem the recording runs on: cfs, wrapped when the
// variant drops directory fsyncs.
func (w *plWorkload) fs(cfs *crashFS) fileSystem {
	if w.variant.noDirSync {
		return noDirSyncFS{cfs}
	}
	return cfs
}

func (w *plWorkload) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s arena=%d mem=%d", w.name, w.arenaSize, w.maxMapped)
	if w.prepared {
		b.WriteString(" prepared")
	}
	if len(w.ops) <= 8 {
		ops := make([]string, len(w.ops))
		for i, op := range w.ops {
			ops[i] = op.String()
		}
		fmt.Fprintf(&b, " ops=[%s]", strings.Join(ops, " "))
	} else {
		fmt.Fprintf(&b, " ops=%d", len(w.ops))
	}
	return b.String()
}

// options are the options of the workload's queue: only explicit Flush,
// eviction and Close sync.
func (w *plWorkload) options(extra ...Option) []Option {
	opts := []Option{SetArenaSize(w.arenaSize), SetMaxInMemArenas(w.maxMapped),
		SetPeriodicFlushOps(0), SetPeriodicFlushDuration(0), withPlant(w.variant.plant)}
	if w.prepared {
		opts = append(opts, withReadyMin(0))
	}
	return append(opts, extra...)
}

// plMarker is the message an image gets after its check, to show that the
// queue still works.
var plMarker = []byte("power-loss marker: the queue works after recovery")

// plRecording is a workload that ran on a crashFS.
type plRecording struct {
	w      *plWorkload
	msgs   [][]byte // every message enqueue began, in order
	snaps  []*plSnapshot
	points []int // the snapshots to crash at
	calls  map[string]int64
	// prepared counts the arenas made from a prepared file (ready.go).
	prepared uint64
}

// notePrepared adds the prepared arenas q used to the recording's count.
func (rec *plRecording) notePrepared(q *Queue) {
	q.mu.Lock()
	rec.prepared += q.am.readyUsed
	q.mu.Unlock()
}

// plRecord runs w in dir on a crashFS.
func plRecord(w *plWorkload, dir string) (_ *plRecording, err error) {
	model := &plModel{cons: []plConsumer{{name: defaultConsumerKey}}}
	for _, name := range w.consumers {
		model.cons = append(model.cons, plConsumer{name: name})
	}
	cfs := newCrashFS(dir, model)
	rec := &plRecording{w: w}
	q, err := NewQueue(dir, w.options(withFS(w.fs(cfs)))...)
	if err != nil {
		return nil, fmt.Errorf("open: %w", err)
	}
	defer func() {
		if q != nil {
			rec.notePrepared(q)
			err = errors.Join(err, q.Close())
		}
	}()
	// The default consumer comes with the first queue-level read.
	if _, err := q.Peek(); !errors.Is(err, ErrEmptyQueue) {
		return nil, fmt.Errorf("first peek: %v, want ErrEmptyQueue", err)
	}
	model.cons[0].exists = true
	readers := func() ([]func() ([]byte, error), error) {
		rs := []func() ([]byte, error){q.Dequeue}
		for _, name := range w.consumers {
			c, err := q.NewConsumer(name)
			if err != nil {
				return nil, err
			}
			model.cons[model.consumer(name)].exists = true
			rs = append(rs, c.Dequeue)
		}
		return rs, nil
	}
	read, err := readers()
	if err != nil {
		return nil, err
	}
	if len(w.consumers) > 0 {
		pre := model.clone()
		if err := q.Flush(); err != nil {
			return nil, fmt.Errorf("flush after creating consumers: %w", err)
		}
		model.flushedAt(pre)
	}
	closeQueue := func() error {
		pre := model.clone()
		rec.notePrepared(q)
		err := q.Close()
		q = nil
		if err != nil {
			return fmt.Errorf("close: %w", err)
		}
		model.flushedAt(pre)
		return nil
	}

	for i, op := range w.ops {
		cfs.setPhase(i, fmt.Sprintf("op %d %s", i, op))
		switch op.kind {
		case plEnqueue, plBatch:
			batch := make([][]byte, len(op.sizes))
			for j, n := range op.sizes {
				batch[j] = message(0, uint64(len(rec.msgs)), n)
				rec.msgs = append(rec.msgs, batch[j])
			}
			model.started += len(batch)
			if op.kind == plEnqueue {
				err = q.Enqueue(batch[0])
			} else {
				err = q.EnqueueBatch(batch)
			}
			if err != nil {
				return nil, fmt.Errorf("op %d %s: %w", i, op, err)
			}
			model.acked = model.started
		case plDequeue:
			c := &model.cons[op.consumer]
			c.readStarted++
			msg, err := read[op.consumer]()
			switch {
			case errors.Is(err, ErrEmptyQueue) && c.read == model.acked:
				c.readStarted--
			case err != nil:
				return nil, fmt.Errorf("op %d %s: %w", i, op, err)
			case c.read >= model.acked || !bytes.Equal(msg, rec.msgs[c.read]):
				return nil, fmt.Errorf("op %d %s: read a message other than number %d", i, op, c.read)
			default:
				c.read++
			}
		case plFlush:
			pre := model.clone()
			if err := q.Flush(); err != nil {
				return nil, fmt.Errorf("op %d %s: %w", i, op, err)
			}
			model.flushedAt(pre)
		case plReclaim:
			// It makes positions durable early, which the page cache's
			// own write-back may do anyway, and promises nothing.
			if err := q.reclaimFlush(); err != nil {
				return nil, fmt.Errorf("op %d %s: %w", i, op, err)
			}
		case plReopen:
			if err := closeQueue(); err != nil {
				return nil, fmt.Errorf("op %d %s: %w", i, op, err)
			}
			if q, err = NewQueue(dir, w.options(withFS(w.fs(cfs)))...); err != nil {
				return nil, fmt.Errorf("op %d %s: %w", i, op, err)
			}
			if read, err = readers(); err != nil {
				return nil, fmt.Errorf("op %d %s: %w", i, op, err)
			}
		}
		if cfs.err != nil {
			return nil, cfs.err
		}
	}
	cfs.setPhase(len(w.ops), "end")
	cfs.mu.Lock()
	cfs.snapshot("after the last op")
	cfs.mu.Unlock()
	cfs.setPhase(len(w.ops), "close")
	if err := closeQueue(); err != nil {
		return nil, err
	}
	cfs.setPhase(len(w.ops), "closed")
	cfs.mu.Lock()
	cfs.snapshot("after Close")
	cfs.mu.Unlock()
	if cfs.err != nil {
		return nil, cfs.err
	}
	rec.snaps, rec.calls = cfs.snaps, cfs.observed
	for i, s := range rec.snaps {
		if s.opIndex >= w.crashFrom {
			rec.points = append(rec.points, i)
		}
	}
	return rec, nil
}

// ---------------------------------------------------------------------
// Crash images.

// plChoice is what a power loss left of one dirty page.
type plChoice uint8

const (
	plOld     plChoice = iota // the durable content
	plNew                     // the content at the crash
	plTorn                    // each sector old or new
	plGarbage                 // random bytes where the page changed (arena files only)
	plMid                     // the content at an earlier snapshot since the last sync
)

var plChoiceNames = [...]string{"old", "new", "torn", "garbage", "mid"}

type plPageRef struct{ fid, page int }

// plPoint is a crash point: a snapshot and the pages that differ between
// its durable and its current content.
type plPoint struct {
	rec   *plRecording
	snap  int
	dirty []plPageRef
}

func newPlPoint(rec *plRecording, snap int) *plPoint {
	s := rec.snaps[snap]
	p := &plPoint{rec: rec, snap: snap}
	fids := slices.Sorted(maps.Keys(s.cur))
	for _, fid := range fids {
		old, cur := s.dur[fid], s.cur[fid]
		n := (max(len(old), len(cur)) + plPageSize - 1) / plPageSize
		for pg := range n {
			lo, hi := pg*plPageSize, (pg+1)*plPageSize
			if !bytes.Equal(plPad(old, lo, hi), plPad(cur, lo, hi)) {
				p.dirty = append(p.dirty, plPageRef{fid, pg})
			}
		}
	}
	return p
}

// plPad returns b[lo:hi], zero-padded past the end of b.
func plPad(b []byte, lo, hi int) []byte {
	out := make([]byte, hi-lo)
	if lo < len(b) {
		copy(out, b[lo:min(hi, len(b))])
	}
	return out
}

// plImage says what one power loss at a crash point left.
type plImage struct {
	dirs    plDirSet   // the directory: durable plus these pending operations
	choices []plChoice // per dirty page of the point
	seed    uint64     // of torn sectors, garbage bytes, earlier versions, sizes
}

// intact reports whether every page of img is a version its file had at
// some time, none torn or filled with garbage. Which directory operations
// survived does not matter: a file missing because its remove survived,
// or its create did not, is no damage.
func (img plImage) intact() bool {
	for _, c := range img.choices {
		if c == plTorn || c == plGarbage {
			return false
		}
	}
	return true
}

// pickDirs chooses which of n pending directory operations survive: none,
// all, or each with even odds, a third of the time each.
func pickDirs(rng *rand.Rand, n int) plDirSet {
	if n == 0 {
		return nil
	}
	switch rng.IntN(3) {
	case 0:
		return nil
	case 1:
		return plAllDirs(n)
	}
	set := make(plDirSet, n)
	for i := range set {
		set[i] = rng.IntN(2) == 0
	}
	return set
}

// plDirSets returns every subset of n pending directory operations when
// n <= plMaxDirsEvery, else none, all and plDirSamples random ones.
func plDirSets(rng *rand.Rand, n int) []plDirSet {
	if n <= plMaxDirsEvery {
		sets := make([]plDirSet, 0, 1<<n)
		for m := range 1 << n {
			set := make(plDirSet, n)
			for i := range set {
				set[i] = m&(1<<i) != 0
			}
			sets = append(sets, set)
		}
		return sets
	}
	sets := []plDirSet{nil, plAllDirs(n)}
	for range plDirSamples {
		set := make(plDirSet, n)
		for i := range set {
			set[i] = rng.IntN(2) == 0
		}
		sets = append(sets, set)
	}
	return sets
}

// randomImage chooses every dirty page's fate, and which directory
// operations survive, at random.
func (p *plPoint) randomImage(rng *rand.Rand) plImage {
	img := plImage{dirs: pickDirs(rng, len(p.rec.snaps[p.snap].pending)), seed: rng.Uint64()}
	img.choices = make([]plChoice, len(p.dirty))
	allNew, allOld := rng.IntN(8) == 0, rng.IntN(8) == 0
	for i := range img.choices {
		switch r := rng.IntN(100); {
		case allNew:
			img.choices[i] = plNew
		case allOld:
			img.choices[i] = plOld
		case r < 40:
			img.choices[i] = plOld
		case r < 78:
			img.choices[i] = plNew
		case r < 90:
			img.choices[i] = plTorn
		case r < 96:
			img.choices[i] = plGarbage
		default:
			img.choices[i] = plMid
		}
	}
	return img
}

// plDirMode says which directories maskImages pairs each page subset with.
type plDirMode uint8

const (
	plDirsOne   plDirMode = iota // one, chosen by pickDirs
	plDirsEdges                  // none, all and one chosen by pickDirs
	plDirsEvery                  // every subset (plDirSets), four times
)

// maskImages returns images for every subset of dirty pages taken new
// (256 random subsets when there are more than plMaxMasked). With
// plDirsEvery, each subset comes with every subset of the pending
// directory operations (plDirSets), once with pages only old or new and
// three times with some new pages torn or garbage; otherwise with the
// directories of mode and an occasional torn or garbage page.
func (p *plPoint) maskImages(rng *rand.Rand, mode plDirMode) []plImage {
	d := len(p.dirty)
	n := len(p.rec.snaps[p.snap].pending)
	var masks []uint64
	if d <= plMaxMasked {
		for m := range uint64(1) << d {
			masks = append(masks, m)
		}
	} else {
		for range 1 << plMaxMasked {
			masks = append(masks, rng.Uint64())
		}
	}
	var sets []plDirSet
	if mode == plDirsEvery {
		sets = plDirSets(rng, n)
	}
	var imgs []plImage
	add := func(m uint64, dirs plDirSet, mangle int) {
		img := plImage{dirs: dirs, choices: make([]plChoice, d), seed: rng.Uint64()}
		for i := range img.choices {
			if d <= 64 && m&(1<<i) == 0 || d > 64 && rng.IntN(2) == 0 {
				continue
			}
			img.choices[i] = plNew
			switch r := rng.IntN(16); {
			case r < mangle:
				img.choices[i] = plTorn
			case r < mangle+mangle/2:
				img.choices[i] = plGarbage
			}
		}
		imgs = append(imgs, img)
	}
	for _, m := range masks {
		switch mode {
		case plDirsOne:
			add(m, pickDirs(rng, n), 2)
		case plDirsEdges:
			add(m, nil, 2)
			if n > 0 {
				add(m, plAllDirs(n), 2)
				add(m, pickDirs(rng, n), 2)
			}
		case plDirsEvery:
			for _, set := range sets {
				add(m, set, 0)
				for range 3 {
					add(m, set, 6)
				}
			}
		}
	}
	return imgs
}

// write builds img in the empty directory dir.
func (p *plPoint) write(dir string, img plImage) error {
	s := p.rec.snaps[p.snap]
	rng := rand.New(rand.NewPCG(img.seed, uint64(p.snap)))
	byFid := make(map[int][]int)
	for i, ref := range p.dirty {
		byFid[ref.fid] = append(byFid[ref.fid], i)
	}
	list := s.listing(img.dirs)
	for _, name := range slices.Sorted(maps.Keys(list)) {
		fid := list[name]
		if err := os.WriteFile(filepath.Join(dir, name), p.compose(fid, byFid[fid], img, rng), 0o644); err != nil {
			return err
		}
	}
	return os.WriteFile(filepath.Join(dir, legacyLockFileName), nil, 0o644)
}

// compose returns the content file fid has after the power loss img.
func (p *plPoint) compose(fid int, pages []int, img plImage, rng *rand.Rand) []byte {
	s := p.rec.snaps[p.snap]
	old, cur := s.dur[fid], s.cur[fid]
	size := len(old)
	switch {
	case len(cur) > len(old):
		grow := false
		for _, i := range pages {
			if img.choices[i] != plOld && (p.dirty[i].page+1)*plPageSize > len(old) {
				grow = true
			}
		}
		if grow || rng.IntN(2) == 0 {
			size = len(cur) // the size reached the disk, the pages maybe not
		}
	case len(cur) < len(old):
		if rng.IntN(2) == 0 {
			size = len(cur)
		}
	}
	out := make([]byte, size)
	copy(out, old)
	for _, i := range pages {
		lo := p.dirty[i].page * plPageSize
		if lo >= size {
			continue
		}
		hi := min(lo+plPageSize, size)
		was, now := plPad(old, lo, hi), plPad(cur, lo, hi)
		dst := out[lo:hi]
		choice := img.choices[i]
		if choice == plGarbage && s.isIndex[fid] {
			choice = plTorn
		}
		switch choice {
		case plNew:
			copy(dst, now)
		case plTorn:
			for sec := 0; sec < len(dst); sec += plSectorSize {
				if rng.IntN(2) == 0 {
					copy(dst[sec:min(sec+plSectorSize, len(dst))], now[sec:])
				}
			}
		case plGarbage:
			for j := range dst {
				if was[j] != now[j] {
					dst[j] = byte(rng.Uint32())
				}
			}
		case plMid:
			from := 0
			if at, ok := s.durAt[fid]; ok {
				from = at + 1
			}
			var versions [][]byte
			for j := from; j < p.snap; j++ {
				if b, ok := p.rec.snaps[j].cur[fid]; ok {
					versions = append(versions, b)
				}
			}
			if len(versions) == 0 {
				copy(dst, now)
				break
			}
			copy(dst, plPad(versions[rng.IntN(len(versions))], lo, hi))
		}
	}
	return out
}

// describe says what img left, for reports.
func (p *plPoint) describe(img plImage) string {
	s := p.rec.snaps[p.snap]
	var b strings.Builder
	fmt.Fprintf(&b, "crash at %q (snapshot %d); directory: durable", s.label, p.snap)
	if len(s.pending) > 0 {
		ops := make([]string, len(s.pending))
		for i, op := range s.pending {
			mark := "-"
			if img.dirs.has(i) {
				mark = "+"
			}
			ops[i] = mark + op.String()
		}
		fmt.Fprintf(&b, " + pending (+ survived, - lost) [%s]", strings.Join(ops, "; "))
	}
	names := make(map[int]string)
	for name, fid := range s.listing(plAllDirs(len(s.pending))) {
		names[fid] = name
	}
	for name, fid := range s.listing(img.dirs) {
		names[fid] = name
	}
	fmt.Fprintf(&b, "; pages:")
	for i, ref := range p.dirty {
		name, ok := names[ref.fid]
		if !ok {
			name = fmt.Sprintf("file%d", ref.fid)
		}
		fmt.Fprintf(&b, " %s/%d=%s", name, ref.page, plChoiceNames[img.choices[i]])
	}
	fmt.Fprintf(&b, "; image seed %d", img.seed)
	return b.String()
}

// ---------------------------------------------------------------------
// Judging an image.

// Violation classes; plClasses orders them in summaries.
const (
	plOpenFailure = "open_failures"
	plLostFlushed = "lost_flushed"
	plGarbageMsg  = "garbage"
	plNotPrefix   = "not_prefix"
	plRegressed   = "regressed" // a consumer re-reads what it read before a successful Flush
	plInvariant   = "invariants"
	plUnusable    = "unusable" // the marker did not go through, Close failed, a read failed
	plPanic       = "panics"
	// plHole: a skip hid unflushed messages and later ones were read, so
	// the queue did not hold a prefix. A known bug while
	// plFallbackRepro reproduces it; see
	// TestPowerLossCheckpointFallback.
	plHole = "unflushed_holes"
	// plCorruptTail: the queue kept records past the checkpoint that fail
	// their checks (a reader skipped them with ErrCorrupt to the tail),
	// where docs/FORMAT.md says recovery cuts the tail back to the last valid one.
	plCorruptTail = "corrupt_tail"
	// plFalseAlarm: a read returned ErrCorrupt from an image whose pages
	// are each a version their file had: nothing was damaged.
	plFalseAlarm = "false_alarms"
)

var plClasses = []string{plOpenFailure, plLostFlushed, plGarbageMsg, plNotPrefix, plRegressed, plInvariant, plUnusable, plPanic, plHole, plCorruptTail, plFalseAlarm}

// plEvent is one read: a message, or an ErrCorrupt.
type plEvent struct {
	msg     []byte
	corrupt bool
}

// plVerdict is the outcome of one image.
type plVerdict struct {
	class   string // "" when the image passed
	detail  string
	opened  bool
	corrupt bool   // some read returned ErrCorrupt
	report  string // the first such error
}

// check opens the image in dir with the real code and judges it against
// snapshot s.
func (r *plRecording) check(tb testing.TB, dir string, s *plSnapshot) (v plVerdict) {
	defer func() {
		if p := recover(); p != nil {
			v = plVerdict{class: plPanic, detail: fmt.Sprint(p), opened: v.opened}
		}
	}()
	stored := plStoredPositions(dir)
	q, err := NewQueue(dir, r.w.options()...)
	if err != nil {
		return plVerdict{class: plOpenFailure, detail: err.Error()}
	}
	v.opened = true
	open := true
	defer func() {
		if open {
			if err := q.Close(); err != nil && v.class == "" {
				v.class, v.detail = plUnusable, "close: "+err.Error()
			}
		}
	}()
	fail := func(class, format string, args ...any) plVerdict {
		v.class, v.detail = class, fmt.Sprintf(format, args...)
		return v
	}
	if err := q.checkInvariants(); err != nil {
		return fail(plInvariant, "after open: %v", err)
	}
	q.mu.Lock()
	tail := q.tailSeq // messages the queue holds, counted from the first one ever
	q.mu.Unlock()
	// The queue accepts writes at once: the marker goes in before any
	// read, and every consumer must read it after the recovered messages.
	if err := q.Enqueue(plMarker); err != nil {
		return fail(plUnusable, "enqueue right after recovery: %v", err)
	}

	m := s.model
	present := make([]bool, len(m.cons))
	for _, name := range q.Consumers() {
		i := m.consumer(name)
		if i < 0 {
			return fail(plGarbageMsg, "unknown consumer %q", name)
		}
		present[i] = true
	}
	totalBytes := 0
	for _, msg := range r.msgs[:m.started] {
		totalBytes += recordHeaderSize + len(msg)
	}
	limit := m.started + totalBytes/(r.w.arenaSize-arenaHeaderSize) + 9
	reads := make([][]plEvent, len(m.cons))
	positions := make([]int, len(m.cons))
	noMarker := ""
	readers := make([]func() ([]byte, error), len(m.cons))
	for i, c := range m.cons {
		switch {
		case present[i]:
		case c.durable:
			return fail(plLostFlushed, "consumer %q, created before a successful Flush, is gone", c.name)
		case i != 0:
			continue // never made durable: it may be gone
		}
		if i == 0 {
			readers[i] = q.Dequeue // re-creates the default consumer when it is gone
		} else {
			h, err := q.NewConsumer(c.name)
			if err != nil {
				return fail(plUnusable, "consumer %q: %v", c.name, err)
			}
			readers[i] = h.Dequeue
		}
		ev := []plEvent{}
		for {
			msg, err := readers[i]()
			if errors.Is(err, ErrEmptyQueue) {
				break
			}
			if err != nil && !errors.Is(err, ErrCorrupt) {
				return fail(plUnusable, "consumer %q: read %d: %v", c.name, len(ev), err)
			}
			if err != nil && !v.corrupt {
				v.corrupt, v.report = true, fmt.Sprintf("consumer %q: read %d: %v", c.name, len(ev), err)
			}
			ev = append(ev, plEvent{msg: msg, corrupt: err != nil})
			if len(ev) > limit {
				return fail(plUnusable, "consumer %q: reads do not end after %d", c.name, limit)
			}
		}
		if n := len(ev); n > 0 && !ev[n-1].corrupt && bytes.Equal(ev[n-1].msg, plMarker) {
			ev = ev[:n-1]
		} else if noMarker == "" {
			noMarker = fmt.Sprintf("consumer %q: the message enqueued right after recovery is not the last one read (%d reads)", c.name, n)
		}
		reads[i] = ev
		positions[i] = -1
		if p, ok := stored[c.name]; ok && present[i] {
			positions[i] = p
		}
	}
	if class, detail := plJudge(r.msgs, m, tail, reads, present, positions); class != "" {
		return fail(class, "%s", detail)
	}
	if noMarker != "" {
		return fail(plUnusable, "%s", noMarker)
	}

	// And again, now that every consumer has read to the end.
	if err := q.Enqueue(plMarker); err != nil {
		return fail(plUnusable, "enqueue after reading: %v", err)
	}
	for i, read := range readers {
		if read == nil {
			continue
		}
		msg, err := read()
		if err != nil || !bytes.Equal(msg, plMarker) {
			return fail(plUnusable, "consumer %q after recovery: got %q, %v; want the new message", m.cons[i].name, plShort(msg), err)
		}
		if _, err := read(); !errors.Is(err, ErrEmptyQueue) {
			return fail(plUnusable, "consumer %q after recovery: %v after the new message, want ErrEmptyQueue", m.cons[i].name, err)
		}
	}
	if err := q.checkInvariants(); err != nil {
		return fail(plInvariant, "after reading: %v", err)
	}
	open = false
	if err := q.Close(); err != nil {
		return fail(plUnusable, "close: %v", err)
	}
	return v
}

// plStoredPositions returns the position, a message number, that the
// index in dir stores for each consumer, read before recovery touches it;
// nil when there is no index with a valid header.
func plStoredPositions(dir string) map[string]int {
	b, err := os.ReadFile(filepath.Join(dir, indexFileName))
	if err != nil || len(b) < initialIndexSize || checkIndexHeader(b) != nil {
		return nil
	}
	x := &index{data: b}
	list, _ := x.consumers()
	stored := make(map[string]int, len(list))
	for _, c := range list {
		if !c.lost && c.seqHint <= maxOffset {
			stored[c.name] = int(c.seqHint)
		}
	}
	return stored
}

func plShort(b []byte) string {
	if len(b) > 24 {
		return fmt.Sprintf("%x… (%d bytes)", b[:24], len(b))
	}
	return fmt.Sprintf("%x", b)
}

// plJudge checks what the consumers read from an image against the
// messages enqueued and m, the workload's knowledge at the crash; tail is
// the number of messages the recovered queue says it holds (its next
// sequence number). reads[i] is nil for a consumer that was not read;
// stored[i] is the position the image's index held for it before
// recovery, or -1 when unknown.
//
// The queue must hold every flushed message and nothing that was not
// enqueued. A consumer reads runs of messages separated by ErrCorrupt
// skips. It must start no earlier than its position at the last
// successful Flush and no later than what it had read before the crash;
// where the image's index stores its position, exactly there (or at the
// tail, when that is lower); and read up to the tail. A skip may hide
// nothing (at-least-once: every message from the stored position on is
// delivered, whether or not the consumer had read it before the crash):
// hiding a flushed message is a loss, hiding an unflushed one before a
// later message is a hole, and before the tail a corrupt tail. It returns
// a violation class and why, or "".
func plJudge(msgs [][]byte, m plModel, tail uint64, reads [][]plEvent, present []bool, stored []int) (string, string) {
	msgs = msgs[:m.started]
	switch {
	case tail < uint64(m.flushed):
		return plLostFlushed, fmt.Sprintf("the queue holds %d messages, %d were flushed", tail, m.flushed)
	case tail > uint64(len(msgs)):
		return plNotPrefix, fmt.Sprintf("the queue holds %d messages, %d were enqueued", tail, len(msgs))
	}
	known := make(map[string]bool, len(msgs))
	for _, msg := range msgs {
		known[string(msg)] = true
	}
	for ci, ev := range reads {
		if ev == nil {
			continue
		}
		c := m.cons[ci]
		var segs [][][]byte
		seg := [][]byte{}
		for _, e := range ev {
			if e.corrupt {
				segs = append(segs, seg)
				seg = [][]byte{}
				continue
			}
			if !known[string(e.msg)] {
				return plGarbageMsg, fmt.Sprintf("consumer %q read %s, which was never enqueued", c.name, plShort(e.msg))
			}
			seg = append(seg, e.msg)
		}
		segs = append(segs, seg)
		// A consumer re-created by the check starts wherever the oldest
		// message is; the others between their flushed position and what
		// they had read.
		lo, hi, at := 0, len(msgs), "unknown"
		if present[ci] {
			hi = c.readStarted
			if c.durable {
				lo = c.flushedRead
			}
			if p := stored[ci]; p >= 0 {
				// Recovery may move a position down to the tail, nowhere
				// else; one outside [lo, hi] fails below.
				at = strconv.Itoa(p)
				lo = min(max(min(p, int(tail)), lo), hi)
				hi = lo
			}
		}
		a := plAssignment{msgs: msgs[:tail], lo: lo, hi: hi, flushed: m.flushed, budget: 100000}
		a.segs = [][][]byte{segs[0]}
		for _, sg := range segs[1:] {
			if len(sg) > 0 {
				a.segs = append(a.segs, sg)
			}
		}
		a.trailing = len(segs) > 1 && len(segs[len(segs)-1]) == 0
		a.search(0, 0, 0)
		if !a.found {
			return a.class, fmt.Sprintf("consumer %q (position %d at the last Flush, %d read, %s in the image's index; %d flushed, %d enqueued, %d held; %d skips): %s",
				c.name, c.flushedRead, c.readStarted, at, m.flushed, len(msgs), tail, len(segs)-1, a.detail)
		}
	}
	return "", ""
}

// plAssignment searches where in the enqueued messages each run a consumer
// read starts, for an assignment that breaks no rule of plJudge. Runs of
// short messages can match in several places, hence the search.
type plAssignment struct {
	msgs     [][]byte   // the messages the queue holds
	segs     [][][]byte // the runs; only the first may be empty
	trailing bool       // the last read was an ErrCorrupt skip to the end
	lo, hi   int        // bounds of the first start
	flushed  int
	budget   int // search steps left

	found  bool   // an assignment breaks no rule
	class  string // otherwise the violation of the first failed one
	detail string
}

// reject records why an assignment fails. Of several, the mildest is
// kept: the image is judged by the reading that explains it best.
func (a *plAssignment) reject(class, format string, args ...any) {
	rank := func(c string) int { return slices.Index(plClassesByMildness, c) }
	if a.class == "" || rank(class) < rank(a.class) {
		a.class, a.detail = class, fmt.Sprintf(format, args...)
	}
}

// plClassesByMildness orders the classes an assignment can fail with.
var plClassesByMildness = []string{plCorruptTail, plHole, plNotPrefix, plRegressed, plLostFlushed}

// hidden judges the messages [from, to) a skip jumped over.
func (a *plAssignment) hidden(from, to int) bool {
	switch {
	case from >= to:
		return true
	case from < a.flushed:
		a.reject(plLostFlushed, "an ErrCorrupt skip hides messages %d to %d, flushed", from, min(to, a.flushed)-1)
	case to == len(a.msgs):
		a.reject(plCorruptTail, "an ErrCorrupt skip hides messages %d to %d, unflushed, up to the tail", from, to-1)
	default:
		a.reject(plHole, "an ErrCorrupt skip hides messages %d to %d, unflushed, and later ones are read", from, to-1)
	}
	return false
}

// search places run j at a start >= from; end is where run j-1 ended.
func (a *plAssignment) search(j, from, end int) {
	if a.budget--; a.budget < 0 {
		return
	}
	if j == len(a.segs) {
		switch {
		case a.trailing:
			if !a.hidden(end, len(a.msgs)) {
				return
			}
		case end < a.flushed:
			a.reject(plLostFlushed, "stops reading at message %d, the queue holds %d: messages %d to %d, flushed, are not delivered", end, len(a.msgs), end, a.flushed-1)
			return
		case end != len(a.msgs):
			a.reject(plNotPrefix, "stops reading at message %d, the queue holds %d", end, len(a.msgs))
			return
		}
		a.found = true
		return
	}
	run := a.segs[j]
	last, any := len(a.msgs)-len(run), false
	if j == 0 {
		from, last = a.lo, min(last, a.hi)
	}
	for s := from; s <= last; s++ {
		if !plRunAt(a.msgs, s, run) {
			continue
		}
		any = true
		if j > 0 && !a.hidden(end, s) {
			continue
		}
		a.search(j+1, s+len(run), s+len(run))
	}
	if any {
		return
	}
	if j > 0 {
		a.reject(plNotPrefix, "the %d messages after skip %d are no run of the messages after the ones before", len(run), j)
		return
	}
	for s := 0; s+len(run) <= len(a.msgs); s++ {
		if plRunAt(a.msgs, s, run) {
			switch {
			case s < a.lo:
				a.reject(plRegressed, "starts at message %d, before its position %d", s, a.lo)
			case a.hi < a.flushed:
				a.reject(plLostFlushed, "starts at message %d, past its position %d: messages %d to %d, flushed, are not delivered", s, a.hi, a.hi, min(s, a.flushed)-1)
			default:
				a.reject(plNotPrefix, "starts at message %d, past its position %d", s, a.hi)
			}
			return
		}
	}
	a.reject(plNotPrefix, "its %d messages are no run of the enqueued ones", len(run))
}

// plRunAt reports whether msgs[s:] starts with run.
func plRunAt(msgs [][]byte, s int, run [][]byte) bool {
	for i, msg := range run {
		if !bytes.Equal(msgs[s+i], msg) {
			return false
		}
	}
	return true
}

// ---------------------------------------------------------------------
// The simulation.

// plConfig says how many power losses to simulate.
type plConfig struct {
	smallPerPoint int  // random images per crash point of the small workloads
	smallMasks    bool // instead, every subset of dirty pages (maskImages)
	smallEvery    bool // and every directory prefix, four times
	longWorkloads int  // long random workloads
	longOps       int  // operations per long workload
	longImages    int  // random images per long workload
	maxExamples   int  // violations described in the log, per class
	progressEvery int  // log the counts every this many images; 0: never
	variant       plVariant
}

// plStats sums the outcomes of a simulation.
type plStats struct {
	mu         sync.Mutex
	images     int
	points     int
	opened     int
	corrupt    int // images where a read returned ErrCorrupt without a violation
	workloads  int
	prepared   uint64 // arenas the recordings made from a prepared file
	snapshots  int
	violations map[string]int
	tolerated  map[string]bool // classes of known bugs: an image of their shape counts in known
	known      map[string]int  // images that show a known bug, by class; not violations
	examples   []plExample
	calls      map[string]int64
}

// plExample describes one violation.
type plExample struct {
	class, text string
}

// total returns the number of violations.
func (st *plStats) total() int {
	n := 0
	for _, v := range st.violations {
		n += v
	}
	return n
}

func (st *plStats) summary(seed uint64, elapsed time.Duration) string {
	var b strings.Builder
	fmt.Fprintf(&b, "images=%d crash_points=%d workloads=%d prepared_arenas=%d opened=%d", st.images, st.points, st.workloads, st.prepared, st.opened)
	for _, c := range plClasses {
		fmt.Fprintf(&b, " %s=%d", c, st.violations[c])
	}
	for _, c := range slices.Sorted(maps.Keys(st.tolerated)) {
		fmt.Fprintf(&b, " known_bug_%s=%d", c, st.known[c])
	}
	fmt.Fprintf(&b, " corrupt_reads=%d violations=%d seed=%d elapsed=%s rate=%.0f/s", st.corrupt, st.total(), seed,
		elapsed.Round(time.Millisecond), float64(st.images)/elapsed.Seconds())
	return b.String()
}

// plSmallWorkloads returns every workload of up to three operations over
// the small alphabet, with page-size arenas. Each is a crash point only
// from its last operation on; its prefixes cover the rest.
func plSmallWorkloads() []*plWorkload {
	page := plPageSize
	alphabet := []plOp{
		{kind: plEnqueue, sizes: []int{0}},
		{kind: plEnqueue, sizes: []int{16}},
		{kind: plEnqueue, sizes: []int{page - arenaHeaderSize - recordHeaderSize - 16}}, // about one arena
		{kind: plEnqueue, sizes: []int{3 * page}},                                       // spans four arenas
		{kind: plBatch, sizes: []int{5, 0, page / 2}},
		{kind: plDequeue},
		{kind: plFlush},
	}
	var out []*plWorkload
	var walk func(ops []plOp)
	walk = func(ops []plOp) {
		out = append(out, &plWorkload{
			name:      fmt.Sprintf("small#%d", len(out)),
			arenaSize: page,
			maxMapped: minInMemArenas,
			ops:       slices.Clone(ops),
			crashFrom: len(ops) - 1,
		})
		if len(ops) == 3 {
			return
		}
		for _, op := range alphabet {
			walk(append(ops, op))
		}
	}
	walk(nil)
	return out
}

// plLongWorkload returns a random workload of n operations with two
// consumers, arenas of two pages and at most three mapped.
func plLongWorkload(rng *rand.Rand, index, n int) *plWorkload {
	w := &plWorkload{
		name:      fmt.Sprintf("long#%d", index),
		arenaSize: 2 * plPageSize,
		maxMapped: minInMemArenas,
		consumers: []string{"c1"},
		prepared:  index%2 == 1,
	}
	size := func() int {
		switch r := rng.IntN(100); {
		case r < 5:
			return 0
		case r < 40:
			return 1 + rng.IntN(64)
		case r < 80:
			return 65 + rng.IntN(1000)
		case r < 95:
			return 1000 + rng.IntN(4000)
		}
		return 5000 + rng.IntN(15000)
	}
	for len(w.ops) < n {
		var op plOp
		switch r := rng.IntN(100); {
		case r < 30:
			op = plOp{kind: plEnqueue, sizes: []int{size()}}
		case r < 36:
			op = plOp{kind: plBatch}
			for range 2 + rng.IntN(4) {
				op.sizes = append(op.sizes, size())
			}
		case r < 60:
			op = plOp{kind: plDequeue, consumer: 0}
		case r < 84:
			op = plOp{kind: plDequeue, consumer: 1}
		case r < 93:
			op = plOp{kind: plFlush}
		case r < 97:
			op = plOp{kind: plReclaim}
		default:
			op = plOp{kind: plReopen}
		}
		w.ops = append(w.ops, op)
	}
	return w
}

// plExplicitWorkloads returns workloads written for one scenario each,
// with page-size arenas; each is a crash point from the op crashFrom on.
func plExplicitWorkloads() []*plWorkload {
	const n, size = 100, 200 // about 19 messages an arena: six arenas
	enq := func(k int) []plOp {
		ops := make([]plOp, k)
		for i := range ops {
			ops[i] = plOp{kind: plEnqueue, sizes: []int{size}}
		}
		return ops
	}
	deq := func(k int) []plOp { return slices.Repeat([]plOp{{kind: plDequeue}}, k) }
	flush := []plOp{{kind: plFlush}}
	var out []*plWorkload
	add := func(crashFrom int, parts ...[]plOp) {
		out = append(out, &plWorkload{
			name:      fmt.Sprintf("explicit#%d", len(out)),
			arenaSize: plPageSize,
			maxMapped: minInMemArenas,
			ops:       slices.Concat(parts...),
			crashFrom: crashFrom,
		})
	}
	// The bug report: the default consumer reads every flushed message,
	// through several arenas, and the power fails before the next Flush.
	// The durable index still has the consumer at 0, so every message must
	// come back, in order, without an error: the arenas it read may not be
	// reclaimed before a Flush made its position durable.
	add(n+1, enq(n), flush, deq(n))
	// The same, then new messages go to arenas that may be the reclaimed
	// ones, reused as spares.
	add(n+1, enq(n), flush, deq(n), enq(20))
	// Half is read and flushed (the arenas below may go), then the rest is
	// read: everything from message n/2 must come back.
	add(n+1+n/2+1, enq(n), flush, deq(n/2), flush, deq(n/2))
	// The background flusher reclaims what was read, without a flush:
	// the positions and the watermark go to the disk before the files,
	// and the spares it makes take new messages; what the last Flush
	// covered and no consumer read must come back.
	reclaim := []plOp{{kind: plReclaim}}
	add(n+1, enq(n), flush, deq(n/2), reclaim, enq(20), deq(20), reclaim, enq(20))
	add(n/2, enq(n/2), deq(n/2), reclaim, enq(n/2), flush, deq(n/4), reclaim, flush)
	// No flush at all: the arenas' creations are not durable yet when
	// the reclaim stores a watermark past them; one missing below the
	// tail must not become a hole (long#45 of a long-tier run).
	add(60+45, enq(60), deq(45), reclaim, enq(5))
	return out
}

// plJob is one workload and how to crash it.
type plJob struct {
	w        *plWorkload
	index    int
	images   int  // random images over all its crash points; 0: per point
	explicit bool // from plExplicitWorkloads: images by maskImages whatever the tier
}

// simulatePowerLoss runs the simulation cfg on a few workers and returns
// its statistics.
func simulatePowerLoss(t *testing.T, seed uint64, cfg plConfig, tolerated map[string]bool) *plStats {
	t.Helper()
	root := memDir(t)
	only := regexp.MustCompile(os.Getenv(powerLossOnlyEnv))
	// Long workloads first: they take longest.
	var jobs []plJob
	small := plSmallWorkloads()
	for i := range cfg.longWorkloads {
		rng := seededRand(seed, 1, uint64(i))
		jobs = append(jobs, plJob{w: plLongWorkload(rng, i, cfg.longOps), index: len(small) + i, images: cfg.longImages})
	}
	for i, w := range plExplicitWorkloads() {
		jobs = append(jobs, plJob{w: w, index: len(small) + cfg.longWorkloads + i, explicit: true})
	}
	for i, w := range small {
		jobs = append(jobs, plJob{w: w, index: i})
	}
	jobs = slices.DeleteFunc(jobs, func(j plJob) bool { return !only.MatchString(j.w.name) })
	for _, j := range jobs {
		j.w.variant = cfg.variant
	}

	st := &plStats{violations: make(map[string]int), tolerated: tolerated, known: make(map[string]int), calls: make(map[string]int64)}
	keep := os.Getenv(powerLossKeepEnv)
	work := make(chan plJob)
	var wg sync.WaitGroup
	var fatal error
	var fatalOnce sync.Once
	workers := max(1, runtime.GOMAXPROCS(0))
	for wi := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			debug.SetPanicOnFault(true) // a fault in a mapping becomes a panic the check reports
			for job := range work {
				if err := plRunJob(t, seed, root, wi, job, cfg, st, keep); err != nil {
					fatalOnce.Do(func() { fatal = fmt.Errorf("%s: %w", job.w, err) })
				}
			}
		}()
	}
	for _, job := range jobs {
		work <- job
	}
	close(work)
	wg.Wait()
	require.NoError(t, fatal, "a workload failed while recording")
	return st
}

// plRunJob records one workload and checks its images.
func plRunJob(t *testing.T, seed uint64, root string, worker int, job plJob, cfg plConfig, st *plStats, keep string) error {
	recDir := filepath.Join(root, fmt.Sprintf("rec%d", worker))
	imgDir := filepath.Join(root, fmt.Sprintf("img%d", worker))
	if err := os.RemoveAll(recDir); err != nil {
		return err
	}
	if err := os.MkdirAll(recDir, 0o755); err != nil {
		return err
	}
	rec, err := plRecord(job.w, recDir)
	if err != nil {
		return err
	}
	type planned struct {
		point *plPoint
		img   plImage
	}
	var plan []planned
	points := make(map[int]*plPoint)
	point := func(snap int) *plPoint {
		if points[snap] == nil {
			points[snap] = newPlPoint(rec, snap)
		}
		return points[snap]
	}
	rng := seededRand(seed, 2, uint64(job.index))
	switch {
	case job.images > 0:
		for range job.images {
			p := point(rec.points[rng.IntN(len(rec.points))])
			plan = append(plan, planned{p, p.randomImage(rng)})
		}
	case cfg.smallMasks || job.explicit:
		mode := plDirsOne
		switch {
		case cfg.smallEvery:
			mode = plDirsEvery
		case job.explicit:
			mode = plDirsEdges
		}
		for _, snap := range rec.points {
			p := point(snap)
			for _, img := range p.maskImages(rng, mode) {
				plan = append(plan, planned{p, img})
			}
		}
	default:
		for _, snap := range rec.points {
			p := point(snap)
			for range cfg.smallPerPoint {
				plan = append(plan, planned{p, p.randomImage(rng)})
			}
		}
	}

	local := plStats{violations: make(map[string]int), known: make(map[string]int)}
	var examples []plExample
	perClass := make(map[string]int)
	for _, pl := range plan {
		if err := os.RemoveAll(imgDir); err != nil {
			return err
		}
		if err := os.Mkdir(imgDir, 0o755); err != nil {
			return err
		}
		if err := pl.point.write(imgDir, pl.img); err != nil {
			return err
		}
		fellBack := plCheckpointArenaUnusable(imgDir)
		v := rec.check(t, imgDir, rec.snaps[pl.point.snap])
		local.images++
		if v.opened {
			local.opened++
		}
		if v.class == "" && v.corrupt && pl.img.intact() {
			v.class, v.detail = plFalseAlarm, v.report
		}
		if v.class == "" {
			if v.corrupt {
				local.corrupt++
			}
			continue
		}
		class := v.class
		if st.tolerated[class] && fellBack {
			local.known[class]++
			class = "known bug " + class
		} else {
			local.violations[class]++
		}
		if perClass[class]++; perClass[class] <= cfg.maxExamples {
			ex := fmt.Sprintf("%s\n  workload %s\n  %s", v.detail, job.w, pl.point.describe(pl.img))
			if keep != "" {
				kept := filepath.Join(keep, fmt.Sprintf("%s-snap%d-%d", strings.ReplaceAll(job.w.name, "#", ""), pl.point.snap, pl.img.seed))
				if err := os.MkdirAll(kept, 0o755); err != nil {
					return err
				}
				if err := pl.point.write(kept, pl.img); err != nil { // as it was before recovery changed it
					return err
				}
				ex += "\n  image kept in " + kept
			}
			examples = append(examples, plExample{class, ex})
		}
	}

	st.mu.Lock()
	defer st.mu.Unlock()
	st.workloads++
	st.prepared += rec.prepared
	st.points += len(points)
	st.snapshots += len(rec.snaps)
	st.images += local.images
	st.opened += local.opened
	st.corrupt += local.corrupt
	for c, n := range local.violations {
		st.violations[c] += n
	}
	for c, n := range local.known {
		st.known[c] += n
	}
	if cfg.progressEvery > 0 {
		for _, ex := range examples {
			if !strings.HasPrefix(ex.class, "known bug") {
				t.Logf("powerloss progress: violation %s: %s", ex.class, ex.text)
			}
		}
		if st.images/cfg.progressEvery != (st.images-local.images)/cfg.progressEvery {
			t.Logf("powerloss progress: images=%d workloads=%d violations=%d", st.images, st.workloads, st.total())
		}
	}
	for k, n := range rec.calls {
		st.calls[k] += n
	}
	for _, ex := range examples {
		n := 0
		for _, have := range st.examples {
			if have.class == ex.class {
				n++
			}
		}
		if n < cfg.maxExamples {
			st.examples = append(st.examples, ex)
		}
	}
	return nil
}

// plCheckpointArenaUnusable reports whether recovery of the image in dir
// cannot start verifying at the checkpoint and falls back to arena
// headers: the arena the checkpoint points into lies below the stored
// head's (inventory deletes it), has a damaged header or the wrong size,
// or is missing while a later arena exists. That is the shape of the
// known recovery bug (TestPowerLossCheckpointFallback).
func plCheckpointArenaUnusable(dir string) bool {
	b, err := os.ReadFile(filepath.Join(dir, indexFileName))
	if err != nil || len(b) < initialIndexSize || checkIndexHeader(b) != nil {
		return false // a new queue, or one that does not open
	}
	x := &index{data: b}
	size := x.arenaSize()
	if size <= arenaHeaderSize {
		return false
	}
	ckpt, ds := x.checkpoint(), size-arenaHeaderSize
	id := ckpt.offset / ds
	if head := x.head(); head <= max(x.tail(), ckpt.offset) && id < head/ds {
		return true // inventory deletes it as consumed
	}
	a, err := os.ReadFile(filepath.Join(dir, fmt.Sprintf("arena-%d.bq", id)))
	if err == nil {
		h, err := decodeArenaHeader(a)
		return uint64(len(a)) != size || err != nil || h.id != id || h.queueID != x.queueID()
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		return false
	}
	for _, e := range entries {
		if n, ok := parseFileNumber(e.Name(), "arena-"); ok && n > id {
			return true
		}
	}
	return false
}

// plTier returns the configuration of the default run (about 20,000
// images), of the long one with BIGQUEUE_LONG=1 (about 2,000,000, of
// which 1,100,000 from the small workloads), or of a run under the race
// detector, which is ten times slower.
func plTier() (plConfig, string) {
	switch {
	case longTier():
		return plConfig{smallMasks: true, smallEvery: true, longWorkloads: 530, longOps: 600, longImages: 1500, maxExamples: 3, progressEvery: 50000}, "long"
	case testing.Short():
		return plConfig{smallPerPoint: 1, longWorkloads: 2, longOps: 150, longImages: 50, maxExamples: 3}, "short"
	case testRaceEnabled:
		return plConfig{smallPerPoint: 1, longWorkloads: 4, longOps: 200, longImages: 100, maxExamples: 3}, "race"
	}
	return plConfig{smallMasks: true, longWorkloads: 18, longOps: 300, longImages: 500, maxExamples: 3}, "default"
}

// TestPowerLoss simulates power losses at every sync call of small
// workloads and at random ones of long workloads, and requires the
// durability contract of doc.go to hold for every image.
func TestPowerLoss(t *testing.T) {
	seed := testSeed(t)
	cfg, tier := plTier()
	tolerated := plKnownBugs(t)
	start, cpu := time.Now(), plCPUTime()
	st := simulatePowerLoss(t, seed, cfg, tolerated)
	elapsed := time.Since(start)
	report(t, "tier=%s: %s cpu=%s", tier, st.summary(seed, elapsed), (plCPUTime() - cpu).Round(time.Millisecond))
	t.Logf("powerloss: sync and directory calls of the workloads: %v; snapshots=%d", st.calls, st.snapshots)
	for _, ex := range st.examples {
		if strings.HasPrefix(ex.class, "known bug") {
			t.Logf("powerloss %s: %s", ex.class, ex.text)
		} else {
			t.Errorf("powerloss violation %s: %s", ex.class, ex.text)
		}
	}
	require.Zero(t, st.total(), "power-loss violations; the first of each class are described above")
}

// TestPowerLossBroken shows that the simulator has teeth: each
// deliberately broken variant of the library (plVariant: a test-only option or a fileSystem wrapper) gives violations.
func TestPowerLossBroken(t *testing.T) {
	seed := testSeed(t)
	tolerated := plKnownBugs(t)
	cfg := plConfig{smallPerPoint: 1, longWorkloads: 4, longOps: 200, longImages: 200, maxExamples: 1}
	if sampledTier() {
		cfg = plConfig{smallPerPoint: 1, longWorkloads: 2, longOps: 150, longImages: 50, maxExamples: 1}
	}
	for _, variant := range []plVariant{
		{name: "index-before-data", plant: plantIndexBeforeData},
		{name: "no-dir-sync", noDirSync: true},
		{name: "no-checksum", plant: plantNoChecksum},
		{name: "early-reclaim", plant: plantEarlyReclaim},
		{name: "forget-evicted", plant: plantForgetEvicted},
		{name: "skip-unread", plant: plantSkipUnread},
		{name: "reclaim-early", plant: plantReclaimEarly},
	} {
		t.Run(variant.name, func(t *testing.T) {
			cfg := cfg
			cfg.variant = variant
			if variant.plant == plantSkipUnread {
				// Its images are rare: an arena holding flushed,
				// unread records, evicted unsynced, then a flush that
				// reclaims. Long workloads make them.
				cfg.longWorkloads *= 4
				cfg.longImages *= 2
			}
			start := time.Now()
			st := simulatePowerLoss(t, seed, cfg, tolerated)
			report(t, "broken=%s: %s", variant.name, st.summary(seed, time.Since(start)))
			for _, ex := range st.examples {
				t.Logf("powerloss broken=%s: %s: %s", variant.name, ex.class, ex.text)
			}
			require.Positive(t, st.total(), "the simulator does not catch broken=%s", variant.name)
		})
	}
}

// plKnownBugs returns the violation classes of library bugs that still
// reproduce; images of their shape are counted apart, not failed.
func plKnownBugs(t *testing.T) map[string]bool {
	t.Helper()
	known := make(map[string]bool)
	for _, sc := range plFallbackScenarios {
		if r := plFallbackRepro(t, sc.ops, sc.damage, sc.zero); r.class == sc.class {
			known[sc.class] = true
			t.Logf("powerloss: known bug (see TestPowerLossCheckpointFallback/%s): %s are counted apart on images whose checkpoint arena is unusable", sc.name, sc.class)
		}
	}
	return known
}

// Operations of plFallbackScenarios besides enqueues (sizes).
const (
	plReproDequeue = -1
	plReproFlush   = -2
)

// plFallbackScenarios are the smallest images the simulator found
// where recovery goes wrong once it cannot start at the checkpoint.
// Operations run on a new queue of page-size arenas (message sizes,
// plReproDequeue, plReproFlush), and then the power fails: files that
// existed at the last Flush keep their names and their content of then,
// the index and files created since are as in the page cache, except that
// the first zero bytes of file damage read as zeros (never written back:
// allocated blocks read as zeros).
var plFallbackScenarios = []struct {
	name   string
	ops    []int
	damage string
	zero   int    // -1: the whole file
	class  string // the violation it shows
}{
	// Arena 0 is lost, arena 1's header names message 2: a reader gets it
	// after an ErrCorrupt that lost messages 0 and 1.
	{"hole", []int{plPageSize - arenaHeaderSize - recordHeaderSize - 16, 16, 16}, "arena-0.bq", -1, plHole},
	// Arena 0 is lost, arena 1's header names the tail: the queue keeps
	// five messages it cannot deliver; a reader gets ErrCorrupt, then
	// nothing.
	{"corrupt-tail", []int{5, 0, plPageSize / 2, 16, plPageSize - arenaHeaderSize - recordHeaderSize - 16}, "arena-0.bq", -1, plCorruptTail},
	// Only arena 0's header sector is lost: the tail goes to the end of
	// arena 0 with the checkpoint's sequence number (0), while the
	// default consumer's position, on a record that did reach the disk,
	// is proven with 1.
	{"sequence", []int{plPageSize - arenaHeaderSize - 2*recordHeaderSize, plReproDequeue, 0}, "arena-0.bq", plSectorSize, plInvariant},
	// The default consumer read past arena 0, which was reclaimed (its
	// rename to a spare did not reach the disk); the index reached the
	// disk, arena 1's header sector did not. Recovery deletes arena 0 as
	// below the stored head, the checkpoint is then below every arena, no
	// arena header is intact, and the tail goes to the end of arena 1 with
	// the checkpoint's sequence number (1), below the consumer's (2).
	{"reclaimed", []int{100, plReproFlush, plPageSize + 400, 16, plReproDequeue, plReproDequeue}, "arena-1.bq", plSectorSize, plInvariant},
}

// plReproResult is what a scenario's image did.
type plReproResult struct {
	class string // the violation it shows, or ""
	held  int64  // Len after opening
	got   string // in words
}

// plInodes returns the inode of every file in dir but the lock file.
func plInodes(t *testing.T, dir string) map[string]uint64 {
	t.Helper()
	entries, err := os.ReadDir(dir)
	require.NoError(t, err)
	inodes := make(map[string]uint64)
	for _, e := range entries {
		if e.Name() == legacyLockFileName {
			continue
		}
		fi, err := e.Info()
		require.NoError(t, err)
		ino, ok := plInode(fi)
		require.True(t, ok)
		inodes[e.Name()] = ino
	}
	return inodes
}

// plFallbackRepro builds a scenario's image by hand, opens it with
// the real code and reads it.
func plFallbackRepro(t *testing.T, ops []int, damage string, zero int) plReproResult {
	t.Helper()
	dir, img := t.TempDir(), t.TempDir()
	opts := []Option{SetArenaSize(plPageSize), SetPeriodicFlushOps(0), SetPeriodicFlushDuration(0)}
	q, err := NewQueue(dir, opts...)
	require.NoError(t, err)
	durable := plInodes(t, dir) // name → inode at the last Flush
	old := make(map[string][]byte)
	var msgs [][]byte
	read := 0
	for _, op := range ops {
		switch op {
		case plReproDequeue:
			_, err := q.Dequeue()
			require.NoError(t, err)
			read++
		case plReproFlush:
			require.NoError(t, q.Flush())
			durable = plInodes(t, dir)
			for name := range durable {
				b, err := os.ReadFile(filepath.Join(dir, name))
				require.NoError(t, err)
				old[name] = b
			}
		default:
			msgs = append(msgs, message(0, uint64(len(msgs)), op))
			require.NoError(t, q.Enqueue(msgs[len(msgs)-1]))
		}
	}
	known := make(map[uint64]bool)
	for name, ino := range durable {
		known[ino] = true
		if b, ok := old[name]; ok && name != indexFileName {
			require.NoError(t, os.WriteFile(filepath.Join(img, name), b, 0o644))
		}
	}
	for name, ino := range plInodes(t, dir) {
		if known[ino] && name != indexFileName {
			continue // a file of the last Flush, perhaps renamed since: as it was then
		}
		b, err := os.ReadFile(filepath.Join(dir, name))
		require.NoError(t, err)
		if name == damage {
			clear(b[:max(zero, 0)])
			if zero < 0 {
				clear(b)
			}
		}
		require.NoError(t, os.WriteFile(filepath.Join(img, name), b, 0o644))
	}
	require.NoError(t, q.Close())

	q, err = NewQueue(img, opts...)
	require.NoError(t, err, "the image must open")
	defer func() { require.NoError(t, q.Close()) }()
	r := plReproResult{held: q.Len()}
	if err := q.checkInvariants(); err != nil {
		r.class, r.got = plInvariant, err.Error()
		return r
	}
	var got []string
	next := read // the message a prefix delivers next
	corrupt := false
	for range 2*len(msgs) + 2 {
		msg, err := q.Dequeue()
		if errors.Is(err, ErrEmptyQueue) {
			break
		}
		corrupt = err != nil
		if err != nil {
			require.ErrorIs(t, err, ErrCorrupt)
			got = append(got, "ErrCorrupt")
			continue
		}
		i := slices.IndexFunc(msgs, func(m []byte) bool { return bytes.Equal(m, msg) })
		require.GreaterOrEqual(t, i, 0, "read a message never enqueued")
		got = append(got, fmt.Sprintf("message %d", i))
		if i != next && r.class == "" {
			r.class = plHole
		}
		next = i + 1
	}
	if corrupt && r.class == "" {
		r.class = plCorruptTail
	}
	r.got = strings.Join(append(got, "ErrEmptyQueue"), ", ")
	return r
}

// TestPowerLossCheckpointFallback is the regression test of the recovery
// bug the simulator found (plFallbackScenarios): after these power
// losses the queue must open consistent and hold a prefix of the messages,
// which it delivers without ErrCorrupt (here none of them, as none was
// flushed, or some first ones in order).
func TestPowerLossCheckpointFallback(t *testing.T) {
	for _, sc := range plFallbackScenarios {
		t.Run(sc.name, func(t *testing.T) {
			r := plFallbackRepro(t, sc.ops, sc.damage, sc.zero)
			require.Empty(t, r.class, "Len reports %d; the reader got: %s", r.held, r.got)
		})
	}
}

// plCPUTime returns the CPU time the process used so far.
func plCPUTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// TestPowerLossCrashFS checks the model itself: durable content advances
// only at syncs of that file, directory entries only at directory fsyncs,
// and renames move content by inode.
func TestPowerLossCrashFS(t *testing.T) {
	dir := t.TempDir()
	model := &plModel{}
	c := newCrashFS(dir, model)
	d, err := openQueueDir(dir)
	require.NoError(t, err)
	defer func() { require.NoError(t, d.close()) }()
	f, err := c.create(d, "a")
	require.NoError(t, err)
	defer f.Close()
	_, err = f.WriteAt([]byte("one"), 0)
	require.NoError(t, err)
	require.NoError(t, c.syncFile(f)) // snapshot 0: nothing durable
	require.NoError(t, c.rename(d, "a", "b"))
	require.NoError(t, c.syncDir(d)) // snapshot 1: content durable, entry not
	_, err = f.WriteAt([]byte("two"), 0)
	require.NoError(t, err)
	require.NoError(t, c.remove(d, "b"))
	require.NoError(t, c.syncDir(d)) // snapshot 2: "b" durable, removed since
	require.NoError(t, c.err)

	require.Len(t, c.snaps, 3)
	s0, s1, s2 := c.snaps[0], c.snaps[1], c.snaps[2]
	require.Empty(t, s0.listing(nil))
	require.Equal(t, map[string]int{"a": 1}, s0.listing(plAllDirs(1)))
	require.Empty(t, s0.dur)
	require.Equal(t, []byte("one"), s0.cur[1])

	require.Empty(t, s1.listing(nil))
	require.Equal(t, map[string]int{"b": 1}, s1.listing(plAllDirs(2)))
	require.Equal(t, map[string]int{"a": 1}, s1.listing(plDirSet{true, false}), "the create without the rename")
	require.Equal(t, map[string]int{"b": 1}, s1.listing(plDirSet{false, true}), "the rename without the create: the file under its new name")
	require.Equal(t, []byte("one"), s1.dur[1])

	require.Equal(t, map[string]int{"b": 1}, s2.listing(nil))
	require.Empty(t, s2.listing(plAllDirs(1)))
	require.Equal(t, []byte("two"), s2.cur[1], "content of a removed file, read before the remove")

	rec := &plRecording{snaps: c.snaps}
	p := newPlPoint(rec, 2)
	require.Equal(t, []plPageRef{{1, 0}}, p.dirty)
	img := t.TempDir()
	require.NoError(t, p.write(img, plImage{choices: []plChoice{plNew}}))
	got, err := os.ReadFile(filepath.Join(img, "b"))
	require.NoError(t, err)
	require.Equal(t, []byte("two"), got)
	require.Len(t, p.maskImages(seededRand(1), plDirsOne), 2, "two subsets")
	require.Len(t, p.maskImages(seededRand(1), plDirsEdges), 6, "two subsets, three directories")
	require.Len(t, p.maskImages(seededRand(1), plDirsEvery), 16, "two subsets, two directories, four variants")
}

// TestPowerLossDirSubsets checks the directory of an image for subsets of
// the operations since the last directory fsync, whatever their order:
// each survives or not on its own, a file is under one name at most, and
// a name holds one file.
func TestPowerLossDirSubsets(t *testing.T) {
	// Durable: arena-0 (file 1), spare-5 (file 2), index.bq (file 3).
	// Since: arena-0 becomes spare-0, spare-5 becomes arena-6, arena-7
	// (file 4) is created, spare-0 is removed, index.bq.tmp (file 5) is
	// created and renamed over index.bq.
	s := &plSnapshot{
		durList: map[string]int{"arena-0.bq": 1, "spare-5.bq": 2, "index.bq": 3},
		pending: []plDirOp{
			{kind: plRename, name: "arena-0.bq", to: "spare-0.bq", fid: 1},
			{kind: plRename, name: "spare-5.bq", to: "arena-6.bq", fid: 2},
			{kind: plCreate, name: "arena-7.bq", fid: 4},
			{kind: plRemove, name: "spare-0.bq", fid: 1},
			{kind: plCreate, name: "index.bq.tmp", fid: 5},
			{kind: plRename, name: "index.bq.tmp", to: "index.bq", fid: 5},
		},
	}
	for _, tc := range []struct {
		dirs plDirSet
		want map[string]int
	}{
		{nil, map[string]int{"arena-0.bq": 1, "spare-5.bq": 2, "index.bq": 3}},
		{plAllDirs(6), map[string]int{"arena-6.bq": 2, "arena-7.bq": 4, "index.bq": 5}},
		// The remove of the spare without the rename that named it: the
		// file is gone from its old name.
		{plDirSet{false, false, false, true}, map[string]int{"spare-5.bq": 2, "index.bq": 3}},
		// A later arena's create without an earlier rename: a hole.
		{plDirSet{false, false, true}, map[string]int{"arena-0.bq": 1, "spare-5.bq": 2, "arena-7.bq": 4, "index.bq": 3}},
		// The index's rename without its create: the new file replaces
		// the old one.
		{plDirSet{false, false, false, false, false, true}, map[string]int{"arena-0.bq": 1, "spare-5.bq": 2, "index.bq": 5}},
		{plDirSet{false, false, false, false, true}, map[string]int{"arena-0.bq": 1, "spare-5.bq": 2, "index.bq": 3, "index.bq.tmp": 5}},
	} {
		require.Equal(t, tc.want, s.listing(tc.dirs), "%v", tc.dirs)
	}
	sets := plDirSets(seededRand(1), 3)
	require.Len(t, sets, 8)
	seen := make(map[string]bool)
	for _, set := range sets {
		seen[fmt.Sprint(set)] = true
	}
	require.Len(t, seen, 8, "every subset once")
	require.Len(t, plDirSets(seededRand(1), plMaxDirsEvery+1), plDirSamples+2)
}

// TestPowerLossJudge checks plJudge on the bug report of the explicit
// workloads: 100 messages flushed, all read by the default consumer, then
// a power loss; the image's index stores position 0.
func TestPowerLossJudge(t *testing.T) {
	msgs := make([][]byte, 100)
	for i := range msgs {
		msgs[i] = message(0, uint64(i), 200)
	}
	m := plModel{started: 100, acked: 100, flushed: 100,
		cons: []plConsumer{{name: defaultConsumerKey, exists: true, durable: true, read: 100, readStarted: 100}}}
	run := func(from, to int, skip bool) [][]plEvent {
		ev := []plEvent{}
		if skip {
			ev = append(ev, plEvent{corrupt: true})
		}
		for _, msg := range msgs[from:to] {
			ev = append(ev, plEvent{msg: msg})
		}
		return [][]plEvent{ev}
	}
	for _, tc := range []struct {
		name   string
		reads  [][]plEvent
		stored int
		want   string
	}{
		{"every message again", run(0, 100, false), 0, ""},
		{"silently from the first arena left", run(94, 100, false), 0, plLostFlushed},
		{"an ErrCorrupt skip over what was read", run(94, 100, true), 0, plLostFlushed},
		{"nothing", run(100, 100, false), 0, plLostFlushed},
		{"from the position the index stores", run(40, 100, false), 40, ""},
		{"past the position the index stores", run(41, 100, false), 40, plLostFlushed},
		{"index unknown: from anywhere read", run(94, 100, false), -1, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			class, detail := plJudge(msgs, m, 100, tc.reads, []bool{true}, []int{tc.stored})
			require.Equal(t, tc.want, class, detail)
		})
	}
}

package compat

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"

	ours "github.com/bigqueue-go/bigqueue"
	"github.com/stretchr/testify/require"
)

// differentialConfigs are the option sets the differential test runs with:
// small arenas, so that messages span several, and the default 128 MiB
// ones; no limit on mapped arenas and the default limit of 3.
var differentialConfigs = []config{
	{arenaSize: 4096, maxInMemArenas: 0},
	{arenaSize: 4096, maxInMemArenas: 3},
	{arenaSize: 3 * 4096, maxInMemArenas: -1},
	{arenaSize: 0, maxInMemArenas: 3},
	{arenaSize: 0, maxInMemArenas: 0},
}

// TestDifferential runs one random sequence of operations per option set
// on the original and on this library and requires every result to be
// the same: values, emptiness, and errors, which must both be nil or the
// same sentinel returned bare (compared with ==).
//
// Both queues get a consumer "pin" first that never reads, so that this
// library reclaims nothing and a consumer created later starts, in both,
// at the first message ever enqueued (deviation 1 in the package docs;
// TestNewConsumerAfterReclaim shows the difference).
func TestDifferential(t *testing.T) {
	seed := testSeed(t)
	for i, cfg := range differentialConfigs {
		// Opening, flushing and closing 128 MiB arenas costs more: fewer
		// operations there keep the test within 30 s on two cores.
		ops := 4000
		if cfg.arenaSize == 0 {
			ops = 1500
		}
		if testing.Short() {
			ops /= 8
		}
		t.Run(cfg.String(), func(t *testing.T) {
			t.Parallel()
			d := newDifferential(t, rand.New(rand.NewPCG(seed, uint64(i))), cfg)
			for range ops {
				d.step()
			}
			d.drainAll()
		})
	}
}

// side is one library's half of a differential run.
type side struct {
	lib       lib
	dir       string
	q         queue
	consumers map[string]consumer
	other     queue // a second queue, whose consumers FromConsumer must refuse
}

type differential struct {
	t       *testing.T
	rng     *rand.Rand
	cfg     config
	sides   [2]*side
	names   []string // consumer names created so far, in order
	seq     uint64   // messages enqueued so far
	history []string // the operations run so far, for the failure message
}

func newDifferential(t *testing.T, rng *rand.Rand, cfg config) *differential {
	d := &differential{t: t, rng: rng, cfg: cfg}
	for i, l := range []lib{original, ourLib} {
		s := &side{lib: l, dir: t.TempDir(), consumers: map[string]consumer{}}
		var err error
		s.q, err = l.open(s.dir, cfg)
		require.NoError(t, err, l.name)
		s.other, err = l.open(t.TempDir(), cfg)
		require.NoError(t, err, l.name)
		d.sides[i] = s
	}
	t.Cleanup(func() {
		for _, s := range d.sides {
			require.NoError(t, s.q.Close(), s.lib.name)
			require.NoError(t, s.other.Close(), s.lib.name)
		}
	})
	d.newConsumer("pin")
	return d
}

// fail reports a mismatch with the operations that led to it.
func (d *differential) fail(format string, args ...any) {
	d.t.Helper()
	from := max(0, len(d.history)-25)
	d.t.Fatalf("%s\nafter %d operations, the last ones:\n  %s", fmt.Sprintf(format, args...),
		len(d.history), strings.Join(d.history[from:], "\n  "))
}

func (d *differential) log(format string, args ...any) {
	d.history = append(d.history, fmt.Sprintf(format, args...))
}

// sameErr requires the two errors of an operation to match.
func (d *differential) sameErr(op string, errs [2]error) {
	d.t.Helper()
	a, b := d.sides[0].lib.errName(errs[0]), d.sides[1].lib.errName(errs[1])
	if a != b {
		d.fail("%s: original returned %q, ours %q", op, a, b)
	}
	if strings.HasPrefix(a, "other: ") {
		d.fail("%s: both returned an unexpected error: original %v, ours %v", op, errs[0], errs[1])
	}
}

// message returns the payload of message number seq, n bytes long: its
// number, then a byte that depends on it.
func message(seq uint64, n int) []byte {
	b := bytes.Repeat([]byte{byte(seq % 251)}, n)
	var num [8]byte
	binary.LittleEndian.PutUint64(num[:], seq)
	copy(b, num[:])
	return b
}

// size draws a message size: mostly small, some up to an arena, some
// spanning several arenas (up to 3.5 of them) when arenas are small.
func (d *differential) size() int {
	arena := d.cfg.arenaSize
	if arena == 0 {
		arena = 1 << 20 // large enough to cross pages, small enough to run fast
	}
	switch r := d.rng.IntN(100); {
	case r < 35:
		return d.rng.IntN(17)
	case r < 70:
		return d.rng.IntN(300)
	case r < 90:
		return d.rng.IntN(arena + 1)
	default:
		return d.rng.IntN(arena*7/2 + 1)
	}
}

func (d *differential) step() {
	switch r := d.rng.IntN(1000); {
	case r < 320:
		d.enqueue()
	case r < 520:
		d.dequeue("")
	case r < 560:
		d.isEmpty("")
	case r < 800:
		name := d.names[d.rng.IntN(len(d.names))]
		if name == "pin" {
			d.isEmpty(name)
			return
		}
		if d.rng.IntN(5) == 0 {
			d.isEmpty(name)
		} else {
			d.dequeue(name)
		}
	case r < 850:
		d.newConsumer(fmt.Sprintf("c%d", d.rng.IntN(5)))
	case r < 880:
		d.newConsumer("__default__")
	case r < 930:
		from := d.names[d.rng.IntN(len(d.names))]
		to := fmt.Sprintf("c%d", d.rng.IntN(5))
		if to == "c0" {
			to = "__default__"
		}
		d.fromConsumer(to, from)
	case r < 940:
		d.fromOtherQueue()
	case r < 975:
		d.flush()
	default:
		d.reopen(d.rng.IntN(3) == 0)
	}
}

func (d *differential) enqueue() {
	n := d.size()
	msg := message(d.seq, n)
	asString := d.rng.IntN(2) == 0
	d.log("enqueue #%d, %d bytes, string %v", d.seq, n, asString)
	d.seq++
	var errs [2]error
	for i, s := range d.sides {
		if asString {
			errs[i] = s.q.EnqueueString(string(msg))
		} else {
			errs[i] = s.q.Enqueue(msg)
		}
	}
	d.sameErr("enqueue", errs)
}

// dequeue reads one message from the named consumer, or from the queue
// (the default consumer) when name is "".
func (d *differential) dequeue(name string) {
	asString := d.rng.IntN(2) == 0
	d.log("dequeue %q, string %v", name, asString)
	var vals [2][]byte
	var errs [2]error
	for i, s := range d.sides {
		var str string
		switch {
		case name == "" && asString:
			str, errs[i] = s.q.DequeueString()
			vals[i] = []byte(str)
		case name == "":
			vals[i], errs[i] = s.q.Dequeue()
		case asString:
			str, errs[i] = s.consumers[name].DequeueString()
			vals[i] = []byte(str)
		default:
			vals[i], errs[i] = s.consumers[name].Dequeue()
		}
	}
	d.sameErr("dequeue "+name, errs)
	if !bytes.Equal(vals[0], vals[1]) {
		d.fail("dequeue %q: original returned %d bytes (%s), ours %d bytes (%s)", name,
			len(vals[0]), describe(vals[0]), len(vals[1]), describe(vals[1]))
	}
}

// describe names a payload by the message number it starts with.
func describe(b []byte) string {
	if len(b) < 8 {
		return fmt.Sprintf("%q", b)
	}
	return fmt.Sprintf("message #%d", binary.LittleEndian.Uint64(b))
}

func (d *differential) isEmpty(name string) {
	d.log("isEmpty %q", name)
	var got [2]bool
	for i, s := range d.sides {
		if name == "" {
			got[i] = s.q.IsEmpty()
		} else {
			got[i] = s.consumers[name].IsEmpty()
		}
	}
	if got[0] != got[1] {
		d.fail("IsEmpty %q: original %v, ours %v", name, got[0], got[1])
	}
}

func (d *differential) newConsumer(name string) {
	d.log("NewConsumer %q", name)
	var errs [2]error
	for i, s := range d.sides {
		var c consumer
		c, errs[i] = s.q.NewConsumer(name)
		if errs[i] == nil {
			s.consumers[name] = c
		}
	}
	d.sameErr("NewConsumer "+name, errs)
	d.remember(name)
}

func (d *differential) remember(name string) {
	for _, n := range d.names {
		if n == name {
			return
		}
	}
	d.names = append(d.names, name)
}

func (d *differential) fromConsumer(name, from string) {
	d.log("FromConsumer %q from %q", name, from)
	var errs [2]error
	for i, s := range d.sides {
		var c consumer
		c, errs[i] = s.q.FromConsumer(name, s.consumers[from])
		if errs[i] == nil {
			s.consumers[name] = c
		}
	}
	d.sameErr("FromConsumer "+name, errs)
	d.remember(name)
}

// fromOtherQueue asks each queue to copy a consumer of another queue: both
// must return ErrDifferentQueues, bare.
func (d *differential) fromOtherQueue() {
	d.log("FromConsumer from another queue")
	var errs [2]error
	for i, s := range d.sides {
		from, err := s.other.NewConsumer("stranger")
		require.NoError(d.t, err, s.lib.name)
		_, errs[i] = s.q.FromConsumer("copy", from)
	}
	d.sameErr("FromConsumer from another queue", errs)
	if d.sides[1].lib.errName(errs[1]) != "ErrDifferentQueues" {
		d.fail("FromConsumer from another queue: ours returned %v", errs[1])
	}
}

func (d *differential) flush() {
	d.log("Flush")
	var errs [2]error
	for i, s := range d.sides {
		errs[i] = s.q.Flush()
	}
	d.sameErr("Flush", errs)
}

// reopen closes both queues and opens them again; with wrongSize it first
// tries another arena size, which both must refuse with
// ErrInvalidArenaSize, bare. The consumers are looked up again by name.
func (d *differential) reopen(wrongSize bool) {
	d.log("Close and reopen, wrong size first %v", wrongSize)
	var errs [2]error
	for i, s := range d.sides {
		errs[i] = s.q.Close()
	}
	d.sameErr("Close", errs)
	if wrongSize {
		wrong := d.cfg
		wrong.arenaSize = 2 * max(d.cfg.arenaSize, 4096)
		for i, s := range d.sides {
			var q queue
			q, errs[i] = s.lib.open(s.dir, wrong)
			if errs[i] == nil {
				require.NoError(d.t, q.Close())
			}
		}
		d.sameErr("open with another arena size", errs)
		if d.sides[1].lib.errName(errs[1]) != "ErrInvalidArenaSize" {
			d.fail("open with another arena size: ours returned %v", errs[1])
		}
	}
	for i, s := range d.sides {
		s.q, errs[i] = s.lib.open(s.dir, d.cfg)
		require.NoError(d.t, errs[i], "reopen %s", s.lib.name)
		for _, name := range d.names {
			c, err := s.q.NewConsumer(name)
			require.NoError(d.t, err, "%s: consumer %q after reopen", s.lib.name, name)
			s.consumers[name] = c
		}
	}
}

// drainAll reads every consumer and the queue to the end, comparing, and
// checks that both end empty.
func (d *differential) drainAll() {
	for _, name := range append([]string{""}, d.names...) {
		for range d.seq + 1 {
			empty := d.sides[0].q.IsEmpty()
			if name != "" {
				empty = d.sides[0].consumers[name].IsEmpty()
			}
			d.isEmpty(name)
			if empty {
				break
			}
			d.dequeue(name)
		}
	}
	d.t.Logf("%d operations, %d messages enqueued, %d consumers", len(d.history), d.seq, len(d.names))
}

// TestNewConsumerAfterReclaim shows deviation 1: once every consumer has
// read past some messages and a flush has let this library reclaim their
// arenas, a new consumer starts at the oldest message still stored; in
// the original it starts at the first message ever written, which the
// original keeps forever.
func TestNewConsumerAfterReclaim(t *testing.T) {
	cfg := config{arenaSize: 4096, maxInMemArenas: -1}
	const total, read = 40, 30
	first := map[string]string{}
	for _, l := range []lib{original, ourLib} {
		dir := t.TempDir()
		q, err := l.open(dir, cfg)
		require.NoError(t, err)
		for i := range total {
			require.NoError(t, q.Enqueue(message(uint64(i), 1000)))
		}
		for range read {
			_, err := q.Dequeue()
			require.NoError(t, err)
		}
		require.NoError(t, q.Flush())
		require.NoError(t, q.Close()) // and reopen, as a later run would
		q, err = l.open(dir, cfg)
		require.NoError(t, err)
		c, err := q.NewConsumer("late")
		require.NoError(t, err)
		b, err := c.Dequeue()
		require.NoError(t, err)
		first[l.name] = describe(b)
		require.NoError(t, q.Close())
	}
	require.Equal(t, "message #0", first["original"])
	// Ours: at most one arena of 4 messages of 1000 bytes is kept below
	// the default consumer's position, which is at message 30.
	require.NotEqual(t, "message #0", first["ours"], "this library reclaimed nothing")
	t.Logf("a consumer created after %d of %d messages were read starts at %s in the original, %s in ours",
		read, total, first["original"], first["ours"])
}

// TestForeignDirectoryUntouched opens a directory written by the original
// with this library: refused, and not a byte written.
func TestForeignDirectoryUntouched(t *testing.T) {
	dir := t.TempDir()
	q, err := original.open(dir, config{arenaSize: 4096, maxInMemArenas: -1})
	require.NoError(t, err)
	require.NoError(t, q.EnqueueString("queued before the switch"))
	require.NoError(t, q.Close())
	before := snapshot(t, dir)
	_, err = ourLib.open(dir, config{maxInMemArenas: -1})
	require.ErrorIs(t, err, ours.ErrForeignQueue)
	require.Contains(t, err.Error(), "migrate.Import")
	require.Equal(t, before, snapshot(t, dir))
	_, err = os.Stat(filepath.Join(dir, "lock"))
	require.ErrorIs(t, err, os.ErrNotExist)
}

// snapshot returns every file under dir with its contents.
func snapshot(t *testing.T, dir string) map[string]string {
	t.Helper()
	files := map[string]string{}
	err := filepath.WalkDir(dir, func(path string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := os.ReadFile(path)
		files[path] = string(b)
		return err
	})
	require.NoError(t, err)
	return files
}

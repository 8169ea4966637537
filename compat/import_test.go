package compat

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"

	ours "github.com/bigqueue-go/bigqueue"
	"github.com/bigqueue-go/bigqueue/migrate"
	"github.com/stretchr/testify/require"
)

const importArena = 4096

// writeOriginal fills a directory with the original: messages of 0 bytes
// to 3.5 arenas, a message that leaves fewer than 8 bytes at the end of
// its arena (so the next length goes to the next arena), consumers c0 to
// c3 and the default one read to different positions, FromConsumer
// copies, and reopens. It returns the consumer names.
func writeOriginal(t *testing.T, rng *rand.Rand, dir string) []string {
	t.Helper()
	cfg := config{arenaSize: importArena, maxInMemArenas: 3}
	q, err := original.open(dir, cfg)
	require.NoError(t, err)
	names := []string{"__default__", "c0", "c1", "c2", "c3"}
	consumers := map[string]consumer{}
	lookup := func() {
		for _, name := range names[1:] {
			c, err := q.NewConsumer(name)
			require.NoError(t, err)
			consumers[name] = c
		}
	}
	lookup()
	var seq uint64
	// 8 length bytes + 4084 payload bytes end 4 bytes short of the arena.
	require.NoError(t, q.Enqueue(message(seq, importArena-lengthPrefix-4)))
	seq++
	for range 600 {
		switch r := rng.IntN(100); {
		case r < 45:
			n := rng.IntN(200)
			if rng.IntN(8) == 0 {
				n = rng.IntN(importArena*7/2 + 1)
			}
			require.NoError(t, q.Enqueue(message(seq, n)))
			seq++
		case r < 60:
			_, err := q.Dequeue()
			if err != nil && original.errName(err) != "ErrEmptyQueue" {
				require.NoError(t, err)
			}
		case r < 90:
			name := names[1+rng.IntN(len(names)-1)]
			_, err := consumers[name].Dequeue()
			if err != nil && original.errName(err) != "ErrEmptyQueue" {
				require.NoError(t, err)
			}
		case r < 95:
			to := names[1+rng.IntN(len(names)-1)]
			c, err := q.FromConsumer(to, consumers[names[1+rng.IntN(len(names)-1)]])
			require.NoError(t, err)
			consumers[to] = c
		default:
			require.NoError(t, q.Close())
			q, err = original.open(dir, cfg)
			require.NoError(t, err)
			lookup()
		}
	}
	require.NoError(t, q.Close())
	return names
}

const lengthPrefix = 8

// drain reads c to the end and returns what it read.
func drain(t *testing.T, l lib, c consumer) []string {
	t.Helper()
	var got []string
	for !c.IsEmpty() {
		b, err := c.Dequeue()
		require.NoError(t, err, l.name)
		got = append(got, describe(b)+fmt.Sprintf("/%d", len(b)))
	}
	_, err := c.Dequeue()
	require.Equal(t, "ErrEmptyQueue", l.errName(err), l.name)
	return got
}

// TestImport writes directories with the original, imports them, and
// requires every consumer to read the same messages from the new queue as
// it reads, afterwards, from the original; the original must not change.
func TestImport(t *testing.T) {
	seed := testSeed(t)
	for i := range 4 {
		t.Run(fmt.Sprintf("dir%d", i), func(t *testing.T) {
			src, dst := t.TempDir(), filepath.Join(t.TempDir(), "imported")
			names := writeOriginal(t, rand.New(rand.NewPCG(seed, uint64(i))), src)
			before := snapshot(t, src)
			report, err := migrate.Import(src, dst)
			require.NoError(t, err)
			require.Equal(t, before, snapshot(t, src), "the import changed the original's directory")
			require.Equal(t, importArena, report.ArenaSize)
			require.Len(t, report.Unread, len(names))

			oq, err := original.open(src, config{arenaSize: importArena, maxInMemArenas: -1})
			require.NoError(t, err)
			defer func() { require.NoError(t, oq.Close()) }()
			nq, err := ours.NewQueue(dst) // the stored arena size is the original's
			require.NoError(t, err)
			defer func() { require.NoError(t, nq.Close()) }()
			for _, name := range names {
				c, err := nq.NewConsumer(name)
				require.NoError(t, err)
				require.Equal(t, report.Unread[name], c.Len(), "consumer %q", name)
			}
			require.Equal(t, report.Unread["__default__"], nq.Len())

			var maxUnread int64
			for _, name := range names[1:] {
				oc, err := oq.NewConsumer(name)
				require.NoError(t, err)
				nc, err := ourQueue{nq}.NewConsumer(name)
				require.NoError(t, err)
				want := drain(t, original, oc)
				require.Equal(t, want, drain(t, ourLib, nc), "consumer %q", name)
				require.EqualValues(t, len(want), report.Unread[name], "consumer %q", name)
				maxUnread = max(maxUnread, int64(len(want)))
			}
			// The default consumer, through the queue.
			var want, got []string
			for !oq.IsEmpty() {
				b, err := oq.Dequeue()
				require.NoError(t, err)
				want = append(want, describe(b)+fmt.Sprintf("/%d", len(b)))
			}
			for !nq.IsEmpty() {
				b, err := nq.Dequeue()
				require.NoError(t, err)
				got = append(got, describe(b)+fmt.Sprintf("/%d", len(b)))
			}
			require.Equal(t, want, got, "default consumer")
			maxUnread = max(maxUnread, int64(len(want)))
			require.Equal(t, maxUnread, report.Messages, "messages imported: as many as the slowest consumer had left")
			t.Logf("imported %d messages (%d bytes), skipped %d read by all; unread %v",
				report.Messages, report.Bytes, report.Skipped, report.Unread)
		})
	}
}

// An original queue that was only opened imports as an empty queue that
// has the default consumer.
func TestImportEmpty(t *testing.T) {
	src, dst := t.TempDir(), t.TempDir()
	q, err := original.open(src, config{maxInMemArenas: -1})
	require.NoError(t, err)
	require.NoError(t, q.Close())
	report, err := migrate.Import(src, dst)
	require.NoError(t, err)
	require.Equal(t, migrate.Report{ArenaSize: 128 << 20, Unread: map[string]int64{"__default__": 0}}, report)
	nq, err := ours.NewQueue(dst, ours.SetArenaSize(128<<20))
	require.NoError(t, err)
	require.True(t, nq.IsEmpty())
	require.NoError(t, nq.Close())
}

// Every consumer had read everything: nothing is copied, and the new
// queue still has them all.
func TestImportAllRead(t *testing.T) {
	src, dst := t.TempDir(), t.TempDir()
	q, err := original.open(src, config{arenaSize: importArena, maxInMemArenas: -1})
	require.NoError(t, err)
	for i := range 10 {
		require.NoError(t, q.Enqueue(message(uint64(i), 1000)))
	}
	c, err := q.NewConsumer("c")
	require.NoError(t, err)
	for range 10 {
		_, err := q.Dequeue()
		require.NoError(t, err)
		_, err = c.Dequeue()
		require.NoError(t, err)
	}
	require.NoError(t, q.Close())
	report, err := migrate.Import(src, dst)
	require.NoError(t, err)
	require.Equal(t, migrate.Report{ArenaSize: importArena, Skipped: 10,
		Unread: map[string]int64{"__default__": 0, "c": 0}}, report)
	nq, err := ours.NewQueue(dst)
	require.NoError(t, err)
	require.ElementsMatch(t, []string{"__default__", "c"}, nq.Consumers())
	require.True(t, nq.IsEmpty())
	require.NoError(t, nq.Close())
}

// Damaged or foreign sources are refused before the destination is
// created; a destination that is not empty is refused.
func TestImportErrors(t *testing.T) {
	src := t.TempDir()
	q, err := original.open(src, config{arenaSize: importArena, maxInMemArenas: -1})
	require.NoError(t, err)
	for i := range 5 {
		require.NoError(t, q.Enqueue(message(uint64(i), 3000)))
	}
	require.NoError(t, q.Close())
	metadata, err := os.ReadFile(filepath.Join(src, "metadata.dat"))
	require.NoError(t, err)

	nonEmpty := t.TempDir()
	require.NoError(t, os.WriteFile(filepath.Join(nonEmpty, "x"), nil, 0o644))
	_, err = migrate.Import(src, nonEmpty)
	require.ErrorIs(t, err, migrate.ErrNotEmpty)

	_, err = migrate.Import(t.TempDir(), filepath.Join(t.TempDir(), "dst"))
	require.ErrorIs(t, err, os.ErrNotExist, "no metadata.dat")

	for _, tc := range []struct {
		name   string
		damage func(md []byte) []byte
		remove string
		want   error
	}{
		{"version 2", func(md []byte) []byte { binary.LittleEndian.PutUint64(md[0:], 2); return md }, "", ours.ErrIncompatibleVersion},
		{"truncated metadata", func(md []byte) []byte { return md[:40] }, "", ours.ErrCorrupt},
		{"consumer count too large", func(md []byte) []byte { binary.LittleEndian.PutUint64(md[48:], 1000); return md }, "", ours.ErrCorrupt},
		{"tail offset past the arena", func(md []byte) []byte { binary.LittleEndian.PutUint64(md[32:], importArena+1); return md }, "", ours.ErrCorrupt},
		{"consumer past the tail", func(md []byte) []byte { binary.LittleEndian.PutUint64(md[56+8:], 99); return md }, "", ours.ErrCorrupt},
		{"consumer inside a record", func(md []byte) []byte { binary.LittleEndian.PutUint64(md[56+16:], 100); return md }, "", ours.ErrCorrupt},
		{"tiny arena size", func(md []byte) []byte { binary.LittleEndian.PutUint64(md[40:], 16); return md }, "", ours.ErrCorrupt},
		{"missing arena", func(md []byte) []byte { return md }, "1_arena.dat", os.ErrNotExist},
	} {
		t.Run(tc.name, func(t *testing.T) {
			bad := t.TempDir()
			for _, name := range []string{"0_arena.dat", "1_arena.dat", "2_arena.dat", "3_arena.dat"} {
				if name == tc.remove {
					continue
				}
				b, err := os.ReadFile(filepath.Join(src, name))
				require.NoError(t, err)
				require.NoError(t, os.WriteFile(filepath.Join(bad, name), b, 0o644))
			}
			require.NoError(t, os.WriteFile(filepath.Join(bad, "metadata.dat"), tc.damage(slicesClone(metadata)), 0o644))
			dst := filepath.Join(t.TempDir(), "dst")
			_, err := migrate.Import(bad, dst)
			require.ErrorIs(t, err, tc.want)
			_, err = os.Stat(dst)
			require.True(t, errors.Is(err, os.ErrNotExist), "the destination was created for a bad source")
		})
	}
}

func slicesClone(b []byte) []byte { return append([]byte(nil), b...) }

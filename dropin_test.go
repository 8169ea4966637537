package bigqueue

import (
	"encoding/binary"
	"errors"
	"math"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/stretchr/testify/require"
)

// The errors the original returned bare compare equal with ==, as code
// written against the original does; nothing is written for a refused
// option.
func TestBareErrors(t *testing.T) {
	var maxArena int64 = MaxArenaSize // a variable: it overflows int on 32-bit platforms
	for _, tc := range []struct {
		name string
		opt  Option
		want error
	}{
		{"below page size", SetArenaSize(os.Getpagesize() - 1), ErrTooSmallArenaSize},
		{"zero size", SetArenaSize(0), ErrTooSmallArenaSize},
		{"above MaxArenaSize", SetArenaSize(int(min(maxArena+1, math.MaxInt))), ErrTooLargeArenaSize},
		{"max int size", SetArenaSize(math.MaxInt), ErrTooLargeArenaSize},
		{"one in memory", SetMaxInMemArenas(1), ErrTooFewInMemArenas},
		{"negative in memory", SetMaxInMemArenas(-3), ErrTooFewInMemArenas},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if tc.want == ErrTooLargeArenaSize && math.MaxInt <= maxArena {
				t.Skip("int cannot exceed MaxArenaSize on this platform")
			}
			dir := filepath.Join(t.TempDir(), "q")
			q, err := NewQueue(dir, tc.opt)
			require.Nil(t, q)
			require.True(t, err == tc.want, "err = %v, want bare %v", err, tc.want)
			_, err = os.Stat(dir)
			require.ErrorIs(t, err, os.ErrNotExist, "a refused option created the directory")
		})
	}

	q, dir := openTestQueue(t, SetArenaSize(8192))
	require.NoError(t, q.EnqueueString("kept"))
	_, err := q.NewConsumer("c")
	require.NoError(t, err)
	other, _ := openTestQueue(t, SetArenaSize(8192))
	from, err := other.NewConsumer("c")
	require.NoError(t, err)
	_, err = q.FromConsumer("copy", from)
	require.True(t, err == ErrDifferentQueues, "FromConsumer: %v", err)
	require.NoError(t, q.Close())

	_, err = NewQueue(dir, SetArenaSize(4096))
	require.True(t, err == ErrInvalidArenaSize, "reopen with another size: %v", err)

	q = openTestQueueIn(t, dir, SetArenaSize(8192))
	s, err := q.DequeueString()
	require.NoError(t, err)
	require.Equal(t, "kept", s)
	_, err = q.Dequeue()
	require.True(t, err == ErrEmptyQueue, "Dequeue: %v", err)
	_, err = q.DequeueString()
	require.True(t, err == ErrEmptyQueue, "DequeueString: %v", err)
	c, err := q.NewConsumer("c")
	require.NoError(t, err)
	_, err = c.Dequeue()
	require.NoError(t, err)
	_, err = c.DequeueString()
	require.True(t, err == ErrEmptyQueue, "Consumer.DequeueString: %v", err)
	require.NoError(t, q.Close())

	path := filepath.Join(dir, indexFileName)
	raw, err := os.ReadFile(path)
	require.NoError(t, err)
	binary.LittleEndian.PutUint32(raw[idxVersionOff:], formatVersion+1)
	require.NoError(t, os.WriteFile(path, raw, 0o644))
	_, err = NewQueue(dir)
	require.True(t, err == ErrIncompatibleVersion, "another version: %v", err)
}

// The largest arena size accepted opens, and reopens: it is within what
// the index takes for a valid stored size.
func TestMaxArenaSizeReopens(t *testing.T) {
	var maxArena int64 = MaxArenaSize
	if math.MaxInt < maxArena {
		t.Skip("int cannot hold MaxArenaSize on this platform")
	}
	dir := t.TempDir()
	q, err := NewQueue(dir, SetArenaSize(int(maxArena)))
	require.NoError(t, err)
	require.NoError(t, q.Close())
	q, err = NewQueue(dir)
	require.NoError(t, err)
	require.NoError(t, q.Close())
	q, err = NewQueue(dir, SetArenaSize(int(maxArena)))
	require.NoError(t, err)
	require.NoError(t, q.Close())
}

// dirListing returns the names in dir with their sizes, for checking that
// a refused NewQueue wrote nothing.
func dirListing(t *testing.T, dir string) map[string]int64 {
	t.Helper()
	entries, err := os.ReadDir(dir)
	require.NoError(t, err)
	list := make(map[string]int64, len(entries))
	for _, e := range entries {
		info, err := e.Info()
		require.NoError(t, err)
		list[e.Name()] = info.Size()
	}
	return list
}

func TestForeignDirectories(t *testing.T) {
	write := func(t *testing.T, dir string, names ...string) {
		t.Helper()
		for _, name := range names {
			require.NoError(t, os.WriteFile(filepath.Join(dir, name), []byte("not ours"), 0o644))
		}
	}
	for _, tc := range []struct {
		name    string
		files   []string
		refused bool
	}{
		{"original queue", []string{"metadata.dat", "0_arena.dat"}, true},
		{"original metadata only", []string{"metadata.dat"}, true},
		{"original arena only", []string{"0_arena.dat"}, true},
		{"unrelated file", []string{"notes.txt"}, true},
		{"dot file", []string{".keep"}, true},
		{"our lock and a stranger", []string{legacyLockFileName, "notes.txt"}, true},
		{"our names with a stranger", []string{"arena-x.bq"}, true},
		{"empty", nil, false},
		{"lost+found", []string{"lost+found"}, false},
		{"only our files", []string{legacyLockFileName, indexFileName + ".tmp", "spare-3.bq"}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			write(t, dir, tc.files...)
			before := dirListing(t, dir)
			q, err := NewQueue(dir, SetArenaSize(4096))
			if !tc.refused {
				require.NoError(t, err)
				require.NoError(t, q.Close())
				return
			}
			require.Nil(t, q)
			require.ErrorIs(t, err, ErrForeignQueue)
			require.Equal(t, before, dirListing(t, dir), "a refused directory was written to")
			if slices.Contains(tc.files, "metadata.dat") {
				require.Contains(t, err.Error(), "migrate.Import", "the error says how to migrate")
			}
		})
	}

	// An existing queue of ours opens with a stranger next to it, but not
	// with the original's metadata next to it: that would hide its
	// messages.
	q, dir := openTestQueue(t, SetArenaSize(4096))
	require.NoError(t, q.EnqueueString("x"))
	require.NoError(t, q.Close())
	write(t, dir, "notes.txt")
	q = openTestQueueIn(t, dir)
	require.NoError(t, q.Close())
	write(t, dir, "metadata.dat")
	before := dirListing(t, dir)
	_, err := NewQueue(dir)
	require.ErrorIs(t, err, ErrForeignQueue)
	require.Equal(t, before, dirListing(t, dir))
}

func TestOwnFileNames(t *testing.T) {
	for name, want := range map[string]bool{
		"lock": true, "index.bq": true, "index.bq.tmp": true, "arena-0.bq": true, "arena-123.bq": true,
		"spare-7.bq": true, "damaged-12.bq": true, "damaged-12-3.bq": true,
		"damaged-12-.bq": false, "damaged--3.bq": false, "damaged-1-2-3.bq": false, "damaged-1x.bq": false,
		"spare-1-2.bq": false, "arena-1-2.bq": false,
		"arena-.bq": false, "arena-1.bqx": false, "arena-1a.bq": false, "arena--1.bq": false,
		"metadata.dat": false, "0_arena.dat": false, "index": false, "lock.bq": false,
	} {
		require.Equal(t, want, isOwnFileName(name), name)
	}
}

// A directory that cannot be listed is reported as such, wrapped.
func TestCheckBeforeOpenUnreadable(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "file")
	require.NoError(t, os.WriteFile(file, nil, 0o644))
	_, err := NewQueue(file)
	require.Error(t, err)
	require.False(t, errors.Is(err, ErrForeignQueue), "%v", err)
}

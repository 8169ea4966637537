package compat

import (
	"math/rand/v2"
	"path/filepath"
	"testing"

	"github.com/bigqueue-go/bigqueue/migrate"
	"github.com/stretchr/testify/require"
)

// TestImportProgress requires ImportWithProgress to report every step,
// from (0, total) to (total, total), one step at a time, with the same
// result as Import.
func TestImportProgress(t *testing.T) {
	seed := testSeed(t)
	src := t.TempDir()
	writeOriginal(t, rand.New(rand.NewPCG(seed, 0)), src)
	want, err := migrate.Import(src, filepath.Join(t.TempDir(), "plain"))
	require.NoError(t, err)

	var calls [][2]int64
	got, err := migrate.ImportWithProgress(src, filepath.Join(t.TempDir(), "progress"), func(done, total int64) {
		calls = append(calls, [2]int64{done, total})
	})
	require.NoError(t, err)
	require.Equal(t, want, got)
	require.NotEmpty(t, calls)
	total := calls[0][1]
	require.GreaterOrEqual(t, total, got.Messages, "every message written is a step")
	for i, c := range calls {
		require.Equal(t, [2]int64{int64(i), total}, c, "call %d", i)
	}
	require.Equal(t, total, calls[len(calls)-1][0])

	calls = nil
	_, err = migrate.ImportWithProgress(t.TempDir(), filepath.Join(t.TempDir(), "empty"), func(done, total int64) {
		calls = append(calls, [2]int64{done, total})
	})
	require.Error(t, err, "an empty directory is no original queue")
	require.Empty(t, calls, "no progress before src checked out")
}

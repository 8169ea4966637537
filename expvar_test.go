package bigqueue

import (
	"encoding/json"
	"expvar"
	"fmt"
	"testing"

	"github.com/stretchr/testify/require"
)

// PublishExpvar shows Stats as JSON under its name; a name in use, an
// empty name and a closed queue are errors, not expvar's panic.
func TestPublishExpvar(t *testing.T) {
	q, _ := openTestQueue(t, SetArenaSize(4096))
	name := fmt.Sprintf("bigqueue-test-%p", q)
	require.NoError(t, q.PublishExpvar(name))
	require.NoError(t, q.EnqueueString("a"))
	require.NoError(t, q.EnqueueString("b"))
	_, err := q.Dequeue()
	require.NoError(t, err)
	require.NoError(t, q.Flush())

	var got map[string]any
	require.NoError(t, json.Unmarshal([]byte(expvar.Get(name).String()), &got))
	require.Equal(t, fmt.Sprintf("%016x", q.Stats().QueueID), got["QueueID"])
	require.EqualValues(t, 2, got["Messages"])
	require.EqualValues(t, 1, got["OldestSeq"])
	require.EqualValues(t, 3, got["NextSeq"])
	require.Equal(t, map[string]any{defaultConsumerKey: 1.0}, got["Lag"])
	require.Equal(t, map[string]any{defaultConsumerKey: 0.0}, got["Dropped"])
	require.Equal(t, "", got["LastFlushError"])
	require.NotEmpty(t, got["LastFlushAt"])
	for _, field := range []string{"Bytes", "ArenaSize", "ArenasOnDisk", "SpareArenas", "ArenasMapped", "Flushes", "ArenasReclaimed", "RetentionRemoved"} {
		require.Contains(t, got, field)
	}

	require.ErrorIs(t, q.PublishExpvar(name), ErrInvalidName, "the name is in use")
	require.ErrorIs(t, q.PublishExpvar(""), ErrInvalidName)
	require.NoError(t, q.Close())
	require.ErrorIs(t, q.PublishExpvar(name+"-closed"), ErrClosed)
	require.NoError(t, json.Unmarshal([]byte(expvar.Get(name).String()), &got), "a closed queue shows zeros")
	require.EqualValues(t, 0, got["Messages"])
	for _, q := range []*Queue{nil, {}} {
		require.ErrorIs(t, q.PublishExpvar("x"), ErrClosed)
	}
}

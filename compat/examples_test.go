package compat

import (
	"container/heap"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"testing"

	"github.com/stretchr/testify/require"
)

// The original's example programs (examples/basic, config, consumer and
// extsort in grandecola/bigqueue v0.6.0), retold as scenarios that run on
// both libraries: each returns a transcript, which must be the same for
// both and say what the original's program printed.

func bothTranscripts(t *testing.T, cfg config, scenario func(*testing.T, queue) []string) {
	t.Helper()
	var got [2][]string
	for i, l := range []lib{original, ourLib} {
		q, err := l.open(t.TempDir(), cfg)
		require.NoError(t, err, l.name)
		got[i] = scenario(t, q)
		require.NoError(t, q.Close(), l.name)
	}
	require.Equal(t, got[0], got[1], "original, then ours")
}

// basicScenario enqueues a []byte and a string and reads them back.
func basicScenario(t *testing.T, q queue) []string {
	require.NoError(t, q.Enqueue([]byte("elem")))
	require.NoError(t, q.EnqueueString("elem2"))
	require.False(t, q.IsEmpty())
	b, err := q.Dequeue()
	require.NoError(t, err)
	s, err := q.DequeueString()
	require.NoError(t, err)
	return []string{string(b), s, strconv.FormatBool(q.IsEmpty())}
}

func TestExampleBasic(t *testing.T) {
	bothTranscripts(t, config{maxInMemArenas: -1}, func(t *testing.T, q queue) []string {
		got := basicScenario(t, q)
		require.Equal(t, []string{"elem", "elem2", "true"}, got)
		return got
	})
}

// The config example: 4 KiB arenas, 4 in memory, a flush after every
// mutation and every second.
func TestExampleConfig(t *testing.T) {
	bothTranscripts(t, config{arenaSize: 4 * 1024, maxInMemArenas: 4}, func(t *testing.T, q queue) []string {
		got := basicScenario(t, q)
		require.Equal(t, []string{"elem", "elem2", "true"}, got)
		return got
	})
}

// The consumer example: after the default consumer read both messages, a
// new consumer still reads from the first one, and a consumer copied from
// it reads on from its position.
func TestExampleConsumer(t *testing.T) {
	bothTranscripts(t, config{maxInMemArenas: -1}, func(t *testing.T, q queue) []string {
		got := basicScenario(t, q)
		c1, err := q.NewConsumer("consumer1")
		require.NoError(t, err)
		got = append(got, "consumer1 empty: "+strconv.FormatBool(c1.IsEmpty()))
		b, err := c1.Dequeue()
		got = append(got, fmt.Sprintf("consumer1: %q %v", b, err))
		c2, err := q.FromConsumer("consumer2", c1)
		require.NoError(t, err)
		got = append(got, "consumer2 empty: "+strconv.FormatBool(c2.IsEmpty()))
		s, err := c2.DequeueString()
		got = append(got, fmt.Sprintf("consumer2: %q %v", s, err))
		require.Equal(t, []string{"elem", "elem2", "true",
			"consumer1 empty: false", `consumer1: "elem" <nil>`,
			"consumer2 empty: false", `consumer2: "elem2" <nil>`}, got)
		return got
	})
}

// TestExampleExternalSort sorts integers the way the original's extsort
// example does, with its options (default arena size, 3 arenas in memory):
// sorted runs of chunk integers go to one queue each, then queues are
// merged two at a time into new queues until one is left. Both libraries
// must produce the sorted input, and this one must not use more than
// twice the original's disk blocks: with the example's default flags
// (10,000 integers in runs of 100: about 200 small queues, where the
// per-queue overhead counts) and with larger runs.
func TestExampleExternalSort(t *testing.T) {
	seed := testSeed(t)
	for _, size := range []struct{ n, chunk int }{{10_000, 100}, {200_000, 10_000}} {
		t.Run(fmt.Sprintf("n=%d/chunk=%d", size.n, size.chunk), func(t *testing.T) {
			rng := rand.New(rand.NewPCG(seed, uint64(size.n)))
			input := make([]int, size.n)
			for i := range input {
				input[i] = rng.IntN(2_000_000_000) - 1_000_000_000
			}
			want := slices.Clone(input)
			slices.Sort(want)

			var disk [2]int64
			for i, l := range []lib{original, ourLib} {
				dir := t.TempDir()
				got, queues := externalSort(t, l, dir, input, size.chunk)
				require.Equal(t, want, got, l.name)
				disk[i] = diskUsed(t, dir)
				t.Logf("%s: %d queues, %d bytes of disk blocks", l.name, queues, disk[i])
			}
			require.Less(t, disk[1], 2*disk[0], "disk blocks: ours, twice the original's")
		})
	}
}

// externalSort sorts input through queues of lib l under dir and returns
// the result and the number of queues it made.
func externalSort(t *testing.T, l lib, dir string, input []int, chunk int) ([]int, int) {
	t.Helper()
	made := 0
	newQueue := func() queue {
		qdir := filepath.Join(dir, "q"+strconv.Itoa(made))
		made++
		require.NoError(t, os.Mkdir(qdir, 0o755))
		q, err := l.open(qdir, config{maxInMemArenas: 3})
		require.NoError(t, err, l.name)
		return q
	}

	var runs []queue
	for start := 0; start < len(input); start += chunk {
		run := slices.Clone(input[start:min(start+chunk, len(input))])
		slices.Sort(run)
		q := newQueue()
		for _, v := range run {
			require.NoError(t, q.Enqueue([]byte(strconv.Itoa(v))))
		}
		runs = append(runs, q)
	}
	for len(runs) > 1 {
		var next []queue
		for i := 0; i < len(runs); i += 2 {
			if i+1 == len(runs) {
				next = append(next, runs[i])
				continue
			}
			out := newQueue()
			mergeQueues(t, out, runs[i:i+2])
			require.NoError(t, runs[i].Close())
			require.NoError(t, runs[i+1].Close())
			next = append(next, out)
		}
		runs = next
	}
	var out []int
	for !runs[0].IsEmpty() {
		out = append(out, dequeueInt(t, runs[0]))
	}
	_, err := runs[0].Dequeue()
	require.Equal(t, "ErrEmptyQueue", l.errName(err))
	require.NoError(t, runs[0].Close())
	return out, made
}

// mergeQueues writes the merge of the sorted queues in into out.
func mergeQueues(t *testing.T, out queue, in []queue) {
	h := &heads{}
	for i, q := range in {
		if !q.IsEmpty() {
			heap.Push(h, head{dequeueInt(t, q), i})
		}
	}
	for h.Len() > 0 {
		top := heap.Pop(h).(head)
		require.NoError(t, out.EnqueueString(strconv.Itoa(top.value)))
		if q := in[top.queue]; !q.IsEmpty() {
			heap.Push(h, head{dequeueInt(t, q), top.queue})
		}
	}
}

func dequeueInt(t *testing.T, q queue) int {
	s, err := q.DequeueString()
	require.NoError(t, err)
	v, err := strconv.Atoi(s)
	require.NoError(t, err)
	return v
}

// head is the next value of one input queue of a merge.
type head struct{ value, queue int }

// heads is a min-heap of heads by value.
type heads []head

func (h heads) Len() int           { return len(h) }
func (h heads) Less(i, j int) bool { return h[i].value < h[j].value }
func (h heads) Swap(i, j int)      { h[i], h[j] = h[j], h[i] }
func (h *heads) Push(x any)        { *h = append(*h, x.(head)) }
func (h *heads) Pop() any {
	old := *h
	x := old[len(old)-1]
	*h = old[:len(old)-1]
	return x
}

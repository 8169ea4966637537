package compat

import (
	"os"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"
	"time"

	ours "github.com/bigqueue-go/bigqueue"
	orig "github.com/grandecola/bigqueue"
	"github.com/stretchr/testify/require"
)

// queue is the API the two libraries share, so that one scenario runs on
// both. consumer likewise.
type queue interface {
	Enqueue([]byte) error
	EnqueueString(string) error
	Dequeue() ([]byte, error)
	DequeueString() (string, error)
	IsEmpty() bool
	Flush() error
	Close() error
	NewConsumer(name string) (consumer, error)
	FromConsumer(name string, from consumer) (consumer, error)
}

type consumer interface {
	IsEmpty() bool
	Dequeue() ([]byte, error)
	DequeueString() (string, error)
}

// config is the options both libraries are opened with; zero fields keep
// the defaults.
type config struct {
	arenaSize      int
	maxInMemArenas int // -1 keeps the default (3)
}

func (c config) String() string {
	size := "default"
	if c.arenaSize > 0 {
		size = strconv.Itoa(c.arenaSize)
	}
	mem := "default"
	if c.maxInMemArenas >= 0 {
		mem = strconv.Itoa(c.maxInMemArenas)
	}
	return "arena=" + size + "/mem=" + mem
}

// lib opens queues of one library and names its errors.
type lib struct {
	name string
	open func(dir string, c config) (queue, error)
	// errName returns the name of a sentinel error returned bare
	// (compared with ==), "" for nil, and "other: ..." for anything else.
	errName func(error) string
}

var original = lib{
	name: "original",
	open: func(dir string, c config) (queue, error) {
		var opts []orig.Option
		if c.arenaSize > 0 {
			opts = append(opts, orig.SetArenaSize(c.arenaSize))
		}
		if c.maxInMemArenas >= 0 {
			opts = append(opts, orig.SetMaxInMemArenas(c.maxInMemArenas))
		}
		q, err := orig.NewMmapQueue(dir, opts...)
		if err != nil {
			return nil, err
		}
		return origQueue{q}, nil
	},
	errName: func(err error) string {
		return sentinelName(err, map[error]string{
			orig.ErrEmptyQueue:          "ErrEmptyQueue",
			orig.ErrInvalidArenaSize:    "ErrInvalidArenaSize",
			orig.ErrDifferentQueues:     "ErrDifferentQueues",
			orig.ErrTooSmallArenaSize:   "ErrTooSmallArenaSize",
			orig.ErrTooFewInMemArenas:   "ErrTooFewInMemArenas",
			orig.ErrIncompatibleVersion: "ErrIncompatibleVersion",
		})
	},
}

var ourLib = lib{
	name: "ours",
	open: func(dir string, c config) (queue, error) {
		var opts []ours.Option
		if c.arenaSize > 0 {
			opts = append(opts, ours.SetArenaSize(c.arenaSize))
		}
		if c.maxInMemArenas >= 0 {
			opts = append(opts, ours.SetMaxInMemArenas(c.maxInMemArenas))
		}
		q, err := ours.NewQueue(dir, opts...)
		if err != nil {
			return nil, err
		}
		return ourQueue{q}, nil
	},
	errName: func(err error) string {
		return sentinelName(err, map[error]string{
			ours.ErrEmptyQueue:          "ErrEmptyQueue",
			ours.ErrInvalidArenaSize:    "ErrInvalidArenaSize",
			ours.ErrDifferentQueues:     "ErrDifferentQueues",
			ours.ErrTooSmallArenaSize:   "ErrTooSmallArenaSize",
			ours.ErrTooFewInMemArenas:   "ErrTooFewInMemArenas",
			ours.ErrIncompatibleVersion: "ErrIncompatibleVersion",
		})
	},
}

func sentinelName(err error, names map[error]string) string {
	if err == nil {
		return ""
	}
	if name, ok := names[err]; ok {
		return name
	}
	return "other: " + err.Error()
}

type origQueue struct{ q *orig.MmapQueue }

func (o origQueue) Enqueue(b []byte) error         { return o.q.Enqueue(b) }
func (o origQueue) EnqueueString(s string) error   { return o.q.EnqueueString(s) }
func (o origQueue) Dequeue() ([]byte, error)       { return o.q.Dequeue() }
func (o origQueue) DequeueString() (string, error) { return o.q.DequeueString() }
func (o origQueue) IsEmpty() bool                  { return o.q.IsEmpty() }
func (o origQueue) Flush() error                   { return o.q.Flush() }
func (o origQueue) Close() error                   { return o.q.Close() }
func (o origQueue) NewConsumer(n string) (consumer, error) {
	c, err := o.q.NewConsumer(n)
	if err != nil {
		return nil, err
	}
	return c, nil
}

func (o origQueue) FromConsumer(n string, from consumer) (consumer, error) {
	c, err := o.q.FromConsumer(n, from.(*orig.Consumer))
	if err != nil {
		return nil, err
	}
	return c, nil
}

type ourQueue struct{ q *ours.Queue }

func (o ourQueue) Enqueue(b []byte) error         { return o.q.Enqueue(b) }
func (o ourQueue) EnqueueString(s string) error   { return o.q.EnqueueString(s) }
func (o ourQueue) Dequeue() ([]byte, error)       { return o.q.Dequeue() }
func (o ourQueue) DequeueString() (string, error) { return o.q.DequeueString() }
func (o ourQueue) IsEmpty() bool                  { return o.q.IsEmpty() }
func (o ourQueue) Flush() error                   { return o.q.Flush() }
func (o ourQueue) Close() error                   { return o.q.Close() }
func (o ourQueue) NewConsumer(n string) (consumer, error) {
	c, err := o.q.NewConsumer(n)
	if err != nil {
		return nil, err
	}
	return c, nil
}

func (o ourQueue) FromConsumer(n string, from consumer) (consumer, error) {
	c, err := o.q.FromConsumer(n, from.(*ours.Consumer))
	if err != nil {
		return nil, err
	}
	return c, nil
}

// testSeed returns BIGQUEUE_SEED when it is set, else the clock, and logs
// it so that a failure can be replayed.
func testSeed(t *testing.T) uint64 {
	t.Helper()
	seed := uint64(time.Now().UnixNano())
	if s := os.Getenv("BIGQUEUE_SEED"); s != "" {
		v, err := strconv.ParseUint(s, 10, 64)
		require.NoError(t, err, "BIGQUEUE_SEED")
		seed = v
	}
	t.Logf("seed %d (replay with BIGQUEUE_SEED=%d)", seed, seed)
	return seed
}

// diskUsed returns the bytes of disk blocks allocated to the files under
// dir (st_blocks), which counts neither holes of sparse files nor
// directories.
func diskUsed(t *testing.T, dir string) int64 {
	t.Helper()
	var total int64
	err := filepath.WalkDir(dir, func(path string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		total += info.Sys().(*syscall.Stat_t).Blocks * 512
		return nil
	})
	require.NoError(t, err)
	return total
}

package bigqueue

import (
	"fmt"
	"os"
	"testing"
)

// The benchmarks run the original bigqueue's grid: every message size ×
// arena size × SetMaxInMemArenas, named by numbers
// (msg=4KiB/arena=128KiB/mem=3; mem=0 is no limit). Compare runs with
// benchstat.
//
// They use the default flush settings: the background flusher runs once a
// second and after 1,000,000 mutations, during the timed region, as it
// would in production. Nothing else is excluded from what Enqueue and
// Dequeue cost, except the final Close (which msyncs whatever is left) and
// the setup the comments name.
//
// Disk use is bounded: an enqueue benchmark replaces its queue by an empty
// one, timer stopped, once it holds benchMaxQueueBytes, and a dequeue
// benchmark fills its queue in chunks of that size, so that a large b.N
// of 128 KiB messages does not fill the disk. The bound is also kept below
// benchMaxQueueArenas arena files, so that mem=0 with 4 KiB arenas (every
// arena mapped) stays far from the kernel's limit on mappings
// (vm.max_map_count, 65530 by default).

const (
	benchMaxQueueBytes  = 1 << 30  // data held by one benchmark queue at most
	benchMaxQueueArenas = 16384    // arena files of one benchmark queue at most
	benchOpenQueueBytes = 16 << 20 // messages in the queue BenchmarkNewQueue opens
)

// benchCase is one point of the grid.
type benchCase struct {
	msg   int // message size in bytes
	arena int // SetArenaSize
	mem   int // SetMaxInMemArenas; 0 = no limit
}

func (c benchCase) String() string {
	return fmt.Sprintf("msg=%s/arena=%s/mem=%d", benchSizeName(c.msg), benchSizeName(c.arena), c.mem)
}

// queueMsgs returns how many messages one benchmark queue holds at most:
// benchMaxQueueBytes, or fewer when that would take more than
// benchMaxQueueArenas arenas.
func (c benchCase) queueMsgs() int {
	limit := min(benchMaxQueueBytes, benchMaxQueueArenas*(c.arena-arenaHeaderSize))
	return max(1, limit/(c.msg+recordHeaderSize))
}

// benchSizeName writes n bytes as 128B, 4KiB or 4MiB.
func benchSizeName(n int) string {
	switch {
	case n >= 1<<20 && n%(1<<20) == 0:
		return fmt.Sprintf("%dMiB", n>>20)
	case n >= 1<<10 && n%(1<<10) == 0:
		return fmt.Sprintf("%dKiB", n>>10)
	default:
		return fmt.Sprintf("%dB", n)
	}
}

// benchGrid is message size × arena size × in-memory arenas.
var benchGrid = func() []benchCase {
	var grid []benchCase
	for _, msg := range []int{128, 4 << 10, 128 << 10} {
		for _, arena := range []int{4 << 10, 128 << 10, 4 << 20} {
			for _, mem := range []int{3, 10, 0} {
				grid = append(grid, benchCase{msg: msg, arena: arena, mem: mem})
			}
		}
	}
	return grid
}()

// benchMessage returns the message of n bytes the benchmarks write.
func benchMessage(n int) []byte { return message(1, 0, n) }

// openBenchQueue opens the queue of c in dir. At cleanup it closes the
// queue, for a benchmark that stopped early; closing a queue that is
// already closed returns nil.
func openBenchQueue(b *testing.B, dir string, c benchCase) *Queue {
	b.Helper()
	q, err := NewQueue(dir, SetArenaSize(c.arena), SetMaxInMemArenas(c.mem))
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() {
		if err := q.Close(); err != nil {
			b.Error(err)
		}
	})
	return q
}

func closeBenchQueue(b *testing.B, q *Queue) {
	b.Helper()
	if err := q.Close(); err != nil {
		b.Fatal(err)
	}
}

// BenchmarkNewQueue opens a closed, non-empty queue holding 16 MiB of
// messages and closes it again: an open/close cycle is one op, as a queue
// cannot be opened twice. Opening reads the directory and one record
// header per consumer; closing an unchanged queue syncs nothing. No bytes are set:
// opening reads no messages, so MB/s would mean nothing.
func BenchmarkNewQueue(b *testing.B) {
	parent := b
	for _, c := range benchGrid {
		var dir string // filled once, by the first run of the sub-benchmark
		b.Run(c.String(), func(b *testing.B) {
			if dir == "" {
				d := parent.TempDir()
				q := openBenchQueue(b, d, c)
				msg := benchMessage(c.msg)
				for range max(1, benchOpenQueueBytes/c.msg) {
					if err := q.Enqueue(msg); err != nil {
						b.Fatal(err)
					}
				}
				closeBenchQueue(b, q)
				dir = d
			}
			b.ReportAllocs()
			b.ResetTimer()
			for range b.N {
				q, err := NewQueue(dir, SetArenaSize(c.arena), SetMaxInMemArenas(c.mem))
				if err != nil {
					b.Fatal(err)
				}
				if err := q.Close(); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkFirstEnqueue times the first Enqueue of 128 B into a new
// queue of 128 MiB arenas, right after NewQueue: it creates arena 0 and
// takes the first write fault of its mapping (see noReadAround). NewQueue
// and Close, with the removal of the directory, are not timed.
func BenchmarkFirstEnqueue(b *testing.B) {
	msg := benchMessage(128)
	parent := b.TempDir()
	b.ReportAllocs()
	b.ResetTimer()
	for i := range b.N {
		b.StopTimer()
		dir := fmt.Sprintf("%s/q%d", parent, i)
		q, err := NewQueue(dir, SetArenaSize(128<<20))
		if err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
		err = q.Enqueue(msg)
		b.StopTimer()
		if err != nil {
			b.Fatal(err)
		}
		if err := q.Close(); err != nil {
			b.Fatal(err)
		}
		if err := os.RemoveAll(dir); err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
	}
}

// BenchmarkOpenGrowing times NewQueue, the first Peek and Close of a
// closed queue holding 100k, 1M and 4M messages of 128 B (default
// options): opening reads the index, the newest arena's header and the
// record each consumer points at, not the data, so the time should not
// grow with the queue.
func BenchmarkOpenGrowing(b *testing.B) {
	parent := b
	for _, n := range []int{100_000, 1_000_000, 4_000_000} {
		var dir string // filled once, by the first run of the sub-benchmark
		b.Run(fmt.Sprintf("msgs=%d", n), func(b *testing.B) {
			if dir == "" {
				d := parent.TempDir()
				q, err := NewQueue(d)
				if err != nil {
					b.Fatal(err)
				}
				msg := benchMessage(128)
				for range n {
					if err := q.Enqueue(msg); err != nil {
						b.Fatal(err)
					}
				}
				closeBenchQueue(b, q)
				dir = d
			}
			b.ResetTimer()
			for range b.N {
				q, err := NewQueue(dir)
				if err != nil {
					b.Fatal(err)
				}
				if _, err := q.Peek(); err != nil {
					b.Fatal(err)
				}
				if err := q.Close(); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func BenchmarkEnqueue(b *testing.B) {
	for _, c := range benchGrid {
		b.Run(c.String(), func(b *testing.B) {
			msg := benchMessage(c.msg)
			benchEnqueue(b, c, 1, func(q *Queue) error { return q.Enqueue(msg) })
		})
	}
}

func BenchmarkEnqueueString(b *testing.B) {
	for _, c := range benchGrid {
		b.Run(c.String(), func(b *testing.B) {
			msg := string(benchMessage(c.msg))
			benchEnqueue(b, c, 1, func(q *Queue) error { return q.EnqueueString(msg) })
		})
	}
}

// benchEnqueue times b.N calls of enqueue, each storing perOp messages of
// c.msg bytes, on a new queue. Once the queue holds about c.queueMsgs()
// messages it is closed, removed and replaced by an empty one with the
// timer stopped, which keeps disk use bounded: the enqueue benchmarks,
// unlike the dequeue ones, free nothing.
func benchEnqueue(b *testing.B, c benchCase, perOp int, enqueue func(*Queue) error) {
	dir := b.TempDir()
	q := openBenchQueue(b, dir, c)
	perQueue := max(1, c.queueMsgs()/perOp)
	b.ReportAllocs()
	b.SetBytes(int64(perOp * c.msg))
	b.ResetTimer()
	for i, held := 0, 0; i < b.N; i++ {
		if held == perQueue {
			b.StopTimer()
			closeBenchQueue(b, q)
			if err := os.RemoveAll(dir); err != nil {
				b.Fatal(err)
			}
			q = openBenchQueue(b, dir, c)
			held = 0
			b.StartTimer()
		}
		if err := enqueue(q); err != nil {
			b.Fatal(err)
		}
		held++
	}
	b.StopTimer()
	closeBenchQueue(b, q)
}

func BenchmarkDequeue(b *testing.B) {
	for _, c := range benchGrid {
		b.Run(c.String(), func(b *testing.B) {
			benchDequeue(b, c, func(q *Queue) (int, error) {
				msg, err := q.Dequeue()
				return len(msg), err
			})
		})
	}
}

func BenchmarkDequeueString(b *testing.B) {
	for _, c := range benchGrid {
		b.Run(c.String(), func(b *testing.B) {
			benchDequeue(b, c, func(q *Queue) (int, error) {
				msg, err := q.DequeueString()
				return len(msg), err
			})
		})
	}
}

// benchDequeue times b.N calls of dequeue, which returns the length of the
// message it read. The queue is filled with exactly b.N messages, timer
// stopped, in chunks of at most c.queueMsgs() messages to bound disk use,
// and flushed after each chunk, so that the timed region reads data at
// rest and does not wait for a flush of the fill. Reading reclaims the
// arenas it passes, inside the timed region.
func benchDequeue(b *testing.B, c benchCase, dequeue func(*Queue) (int, error)) {
	q := openBenchQueue(b, b.TempDir(), c)
	msg := benchMessage(c.msg)
	chunk := c.queueMsgs()
	b.ReportAllocs()
	b.SetBytes(int64(c.msg))
	b.StopTimer()
	b.ResetTimer()
	for done := 0; done < b.N; {
		n := min(chunk, b.N-done)
		for range n {
			if err := q.Enqueue(msg); err != nil {
				b.Fatal(err)
			}
		}
		if err := q.Flush(); err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
		for range n {
			size, err := dequeue(q)
			if err != nil {
				b.Fatal(err)
			}
			if size != c.msg {
				b.Fatalf("dequeued %d bytes, want %d", size, c.msg)
			}
		}
		b.StopTimer()
		done += n
	}
	if !q.IsEmpty() {
		b.Fatal("queue not empty after b.N enqueues and b.N dequeues")
	}
	closeBenchQueue(b, q)
}

// BenchmarkEnqueueDequeue times an Enqueue followed by a Dequeue: a queue
// in steady state that stays small, as reclamation recycles the arenas it
// has read. It reports the files of the queue directory at the end (index,
// lock, the tail arena and at most maxSpareArenas spares).
func BenchmarkEnqueueDequeue(b *testing.B) {
	for _, c := range []benchCase{{msg: 128, arena: 128 << 10, mem: 3}, {msg: 128, arena: 4 << 20, mem: 0}} {
		benchEnqueueDequeue(b, c)
	}
}

func benchEnqueueDequeue(b *testing.B, c benchCase) {
	b.Run(c.String(), func(b *testing.B) {
		dir := b.TempDir()
		q := openBenchQueue(b, dir, c)
		msg := benchMessage(c.msg)
		b.ReportAllocs()
		b.SetBytes(int64(c.msg))
		b.ResetTimer()
		for range b.N {
			if err := q.Enqueue(msg); err != nil {
				b.Fatal(err)
			}
			got, err := q.Dequeue()
			if err != nil {
				b.Fatal(err)
			}
			if len(got) != c.msg {
				b.Fatalf("dequeued %d bytes, want %d", len(got), c.msg)
			}
		}
		b.StopTimer()
		entries, err := os.ReadDir(dir)
		if err != nil {
			b.Fatal(err)
		}
		b.ReportMetric(float64(len(entries)), "files")
		closeBenchQueue(b, q)
	})
}

// everydayCases are the grid points the everyday API is measured on.
var everydayCases = []benchCase{
	{msg: 128, arena: 128 << 10, mem: 3},
	{msg: 4 << 10, arena: 4 << 20, mem: 0},
}

// BenchmarkDequeueAppend reads into one reused buffer: 0 allocs/op.
func BenchmarkDequeueAppend(b *testing.B) {
	for _, c := range everydayCases {
		b.Run(c.String(), func(b *testing.B) {
			buf := make([]byte, 0, c.msg)
			benchDequeue(b, c, func(q *Queue) (int, error) {
				var err error
				buf, err = q.DequeueAppend(buf[:0])
				return len(buf), err
			})
		})
	}
}

// BenchmarkPeek peeks at the same message again and again: after the
// first read it is handed out from the consumer's cache, 0 allocs/op.
func BenchmarkPeek(b *testing.B) {
	for _, c := range everydayCases {
		b.Run(c.String(), func(b *testing.B) {
			q := openBenchQueue(b, b.TempDir(), c)
			if err := q.Enqueue(benchMessage(c.msg)); err != nil {
				b.Fatal(err)
			}
			b.ReportAllocs()
			b.SetBytes(int64(c.msg))
			b.ResetTimer()
			for range b.N {
				msg, err := q.Peek()
				if err != nil || len(msg) != c.msg {
					b.Fatalf("peek: %d bytes, %v", len(msg), err)
				}
			}
			b.StopTimer()
			closeBenchQueue(b, q)
		})
	}
}

// BenchmarkPeekDequeue is the at-least-once pattern, Peek then Dequeue to
// commit: one read and one allocation per message.
func BenchmarkPeekDequeue(b *testing.B) {
	for _, c := range everydayCases {
		b.Run(c.String(), func(b *testing.B) {
			benchDequeue(b, c, func(q *Queue) (int, error) {
				if _, err := q.Peek(); err != nil {
					return 0, err
				}
				msg, err := q.Dequeue()
				return len(msg), err
			})
		})
	}
}

// BenchmarkEnqueueBatch stores 64 messages of 128 B per op, as one
// EnqueueBatch or as 64 Enqueue calls, on the same queue configuration.
func BenchmarkEnqueueBatch(b *testing.B) {
	const n = 64
	c := benchCase{msg: 128, arena: 4 << 20, mem: 3}
	msgs := make([][]byte, n)
	for i := range msgs {
		msgs[i] = benchMessage(c.msg)
	}
	run := func(name string, enqueue func(*Queue) error) {
		b.Run(name+"/"+c.String(), func(b *testing.B) { benchEnqueue(b, c, n, enqueue) })
	}
	run("batch=64", func(q *Queue) error { return q.EnqueueBatch(msgs) })
	run("single=64", func(q *Queue) error {
		for _, m := range msgs {
			if err := q.Enqueue(m); err != nil {
				return err
			}
		}
		return nil
	})
}

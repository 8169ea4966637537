package main

import (
	"errors"
	"fmt"
	"os"
	"testing"
)

// The per-operation workloads of the comparison as ordinary benchmarks,
// for benchstat:
//
//	go test -run '^$' -bench . -benchtime 100000x -count 6 | tee new.txt
//
// Names are built from numbers (BenchmarkEnqueue/lib=bigqueue/msg=128B).
// Every library runs with the settings of libs.go, the same as in
// `go run .`. Disk use is bounded: an enqueue benchmark replaces its queue
// by an empty one, timer stopped, once it holds benchQueueBytes, and a
// dequeue benchmark fills its queue in chunks of that size, timer stopped.

const benchQueueBytes = 256 << 20

var benchSizes = []int{128, 4 << 10, 128 << 10}

// benchLibraries are the libraries and the in-memory reference.
var benchLibraries = append(append([]library{}, libraries...), memqueueLib)

// openBench opens lib in dir and closes it at cleanup unless closeBench
// did so already.
func openBench(b *testing.B, lib library, dir string, c config) (q queue, closeBench func()) {
	b.Helper()
	q, err := lib.open(dir, c)
	if err != nil {
		b.Fatal(err)
	}
	closed := false
	closeBench = func() {
		b.Helper()
		if closed {
			return
		}
		closed = true
		if err := q.Close(); err != nil {
			b.Fatal(err)
		}
	}
	b.Cleanup(closeBench)
	return q, closeBench
}

func BenchmarkEnqueue(b *testing.B) {
	for _, lib := range benchLibraries {
		for _, size := range benchSizes {
			b.Run(fmt.Sprintf("lib=%s/msg=%s", lib.name, sizeName(size)), func(b *testing.B) {
				c := config{msg: size}
				dir := b.TempDir()
				q, closeQ := openBench(b, lib, dir, c)
				perQueue := max(1, benchQueueBytes/size)
				msg := payload(size)
				b.ReportAllocs()
				b.SetBytes(int64(size))
				b.ResetTimer()
				for i, held := 0, 0; i < b.N; i++ {
					if held == perQueue {
						b.StopTimer()
						closeQ()
						if err := os.RemoveAll(dir); err != nil {
							b.Fatal(err)
						}
						if err := os.Mkdir(dir, 0o755); err != nil {
							b.Fatal(err)
						}
						q, closeQ = openBench(b, lib, dir, c)
						held = 0
						b.StartTimer()
					}
					stamp(msg, uint64(held))
					if err := q.Enqueue(msg); err != nil {
						b.Fatal(err)
					}
					held++
				}
				b.StopTimer()
				closeQ()
			})
		}
	}
}

func BenchmarkDequeue(b *testing.B) {
	for _, lib := range benchLibraries {
		for _, size := range benchSizes {
			b.Run(fmt.Sprintf("lib=%s/msg=%s", lib.name, sizeName(size)), func(b *testing.B) {
				q, closeQ := openBench(b, lib, b.TempDir(), config{msg: size})
				msg := payload(size)
				buf := make([]byte, 0, size)
				chunk := max(1, benchQueueBytes/size)
				b.ReportAllocs()
				b.SetBytes(int64(size))
				b.StopTimer()
				b.ResetTimer()
				for done := 0; done < b.N; {
					n := min(chunk, b.N-done)
					if err := fill(q, msg, done, n); err != nil {
						b.Fatal(err)
					}
					b.StartTimer()
					for i := range n {
						m, err := dequeueWait(q, buf)
						if err != nil {
							b.Fatal(err)
						}
						if err := check(m, size, uint64(done+i)); err != nil {
							b.Fatal(err)
						}
					}
					b.StopTimer()
					done += n
				}
				if _, err := q.Dequeue(buf); !errors.Is(err, errEmpty) {
					b.Fatalf("queue not empty after b.N enqueues and dequeues: %v", err)
				}
				closeQ()
			})
		}
	}
}

// BenchmarkEnqueueDequeue keeps depth messages queued and times one
// enqueue plus one dequeue per op, as the alternate workload does.
func BenchmarkEnqueueDequeue(b *testing.B) {
	const size, depth = 128, 1000
	for _, lib := range benchLibraries {
		b.Run(fmt.Sprintf("lib=%s/msg=%s/depth=%d", lib.name, sizeName(size), depth), func(b *testing.B) {
			q, closeQ := openBench(b, lib, b.TempDir(), config{msg: size})
			msg := payload(size)
			buf := make([]byte, 0, size)
			if err := fill(q, msg, 0, depth); err != nil {
				b.Fatal(err)
			}
			b.ReportAllocs()
			b.SetBytes(size)
			b.ResetTimer()
			for i := range b.N {
				stamp(msg, uint64(depth+i))
				if err := q.Enqueue(msg); err != nil {
					b.Fatal(err)
				}
				m, err := dequeueWait(q, buf)
				if err != nil {
					b.Fatal(err)
				}
				if err := check(m, size, uint64(i)); err != nil {
					b.Fatal(err)
				}
			}
			b.StopTimer()
			closeQ()
		})
	}
}

// TestQuickSuite runs every workload of the quick mode on every library
// and reference with tiny counts: the harness itself, as a test.
func TestQuickSuite(t *testing.T) {
	suite := workloads(true)
	for i := range suite {
		suite[i].n = max(1, suite[i].n/20)
		if suite[i].kind == kindPC {
			suite[i].n -= suite[i].n % suite[i].producers
		}
	}
	for _, w := range suite {
		for _, lib := range benchLibraries {
			t.Run(w.name+"/lib="+lib.name, func(t *testing.T) {
				r := runQueueWorkload(lib, w, t.TempDir())
				if r.Err != "" {
					t.Fatal(r.Err)
				}
			})
		}
		for _, ref := range references {
			if ref.name == memqueueLib.name {
				continue
			}
			t.Run(w.name+"/ref="+ref.name, func(t *testing.T) {
				if r := runReference(ref.name, w, t.TempDir()); r.Err != "" {
					t.Fatal(r.Err)
				}
			})
		}
	}
}

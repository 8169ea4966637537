package bigqueue_test

import (
	"context"
	"errors"
	"expvar"
	"fmt"
	"log"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/bigqueue-go/bigqueue"
)

// exampleDir returns a new temporary directory and a function that
// removes it.
func exampleDir() (string, func()) {
	dir, err := os.MkdirTemp("", "bigqueue-example")
	if err != nil {
		log.Fatal(err)
	}
	return dir, func() { os.RemoveAll(dir) }
}

// check stops the example on an error.
func check(err error) {
	if err != nil {
		log.Fatal(err)
	}
}

// mustEnqueue enqueues each of msgs.
func mustEnqueue(q *bigqueue.Queue, msgs ...string) {
	for _, m := range msgs {
		check(q.EnqueueString(m))
	}
}

func ExampleNewQueue() {
	dir, cleanup := exampleDir()
	defer cleanup()

	// Created on first use; the options are checked before anything is
	// written.
	q, err := bigqueue.NewQueue(dir, bigqueue.SetArenaSize(64<<10), bigqueue.SetMaxInMemArenas(3))
	if err != nil {
		log.Fatal(err)
	}
	mustEnqueue(q, "kept across Close")
	check(q.Close())

	// Reopened: the arena size is stored, so it need not be given again.
	q, err = bigqueue.NewQueue(dir)
	if err != nil {
		log.Fatal(err)
	}
	defer q.Close()
	msg, err := q.DequeueString()
	fmt.Println(msg, err)
	// Output: kept across Close <nil>
}

// One owner at a time: a second NewQueue on the directory fails with
// ErrLocked until the first Queue is closed, in this process or another.
func ExampleNewQueue_locked() {
	dir, cleanup := exampleDir()
	defer cleanup()
	q, err := bigqueue.NewQueue(dir)
	if err != nil {
		log.Fatal(err)
	}
	_, err = bigqueue.NewQueue(dir)
	fmt.Println("second open locked:", errors.Is(err, bigqueue.ErrLocked))
	check(q.Close())
	q, err = bigqueue.NewQueue(dir)
	fmt.Println("after Close:", err)
	if err == nil {
		q.Close()
	}
	// Output:
	// second open locked: true
	// after Close: <nil>
}

// Code written for github.com/grandecola/bigqueue keeps its names.
func ExampleNewMmapQueue() {
	dir, cleanup := exampleDir()
	defer cleanup()
	var q *bigqueue.MmapQueue
	q, err := bigqueue.NewMmapQueue(dir, bigqueue.SetArenaSize(64<<10))
	if err != nil {
		log.Fatal(err)
	}
	defer q.Close()
	mustEnqueue(q, "same API")
	fmt.Println(q.DequeueString())
	// Output: same API <nil>
}

// The arena size is stored with the queue; option errors are returned
// bare, as the original did.
func ExampleSetArenaSize() {
	dir, cleanup := exampleDir()
	defer cleanup()
	q, err := bigqueue.NewQueue(dir, bigqueue.SetArenaSize(1<<20))
	if err != nil {
		log.Fatal(err)
	}
	check(q.Close())
	_, err = bigqueue.NewQueue(dir, bigqueue.SetArenaSize(2<<20))
	fmt.Println(err == bigqueue.ErrInvalidArenaSize)
	_, err = bigqueue.NewQueue(dir, bigqueue.SetArenaSize(100))
	fmt.Println(err == bigqueue.ErrTooSmallArenaSize)
	// Output:
	// true
	// true
}

// 0 means no limit; 1 and 2 are refused.
func ExampleSetMaxInMemArenas() {
	dir, cleanup := exampleDir()
	defer cleanup()
	_, err := bigqueue.NewQueue(dir, bigqueue.SetMaxInMemArenas(2))
	fmt.Println(err == bigqueue.ErrTooFewInMemArenas)
	q, err := bigqueue.NewQueue(dir, bigqueue.SetArenaSize(64<<10), bigqueue.SetMaxInMemArenas(10))
	if err != nil {
		log.Fatal(err)
	}
	defer q.Close()
	fmt.Println(q.Stats().ArenasMapped <= 10)
	// Output:
	// true
	// true
}

// With periodic flushing off, only Flush and Close sync: a power loss
// keeps what the last of them covered.
func ExampleSetPeriodicFlushOps() {
	q, closeQueue := openExample(bigqueue.SetPeriodicFlushOps(0), bigqueue.SetPeriodicFlushDuration(0))
	defer closeQueue()
	mustEnqueue(q, "a", "b")
	fmt.Println("flushes:", q.Stats().Flushes)
	check(q.Flush())
	fmt.Println("flushes:", q.Stats().Flushes)
	// Output:
	// flushes: 0
	// flushes: 1
}

// A flush every 10 ms instead of every second: less lost on a power loss,
// more syncs.
func ExampleSetPeriodicFlushDuration() {
	q, closeQueue := openExample(bigqueue.SetPeriodicFlushDuration(10 * time.Millisecond))
	defer closeQueue()
	mustEnqueue(q, "synced soon")
	fmt.Println(q.Len())
	// Output: 1
}

// A consumer that stopped reading no longer pins the disk: past the
// limit, the oldest arenas go at the next flush, and the consumer's next
// read says how many messages it lost.
func ExampleSetMaxBytes() {
	q, closeQueue := openExample(bigqueue.SetArenaSize(4096), bigqueue.SetMaxBytes(8192), bigqueue.SetPeriodicFlushOps(0), bigqueue.SetPeriodicFlushDuration(0))
	defer closeQueue()
	stalled, err := q.NewConsumer("stalled")
	if err != nil {
		log.Fatal(err)
	}
	for i := 1; i <= 100; i++ {
		mustEnqueue(q, fmt.Sprintf("%03d %s", i, strings.Repeat(".", 100)))
	}
	check(q.Flush())
	fmt.Println("stored bytes within the limit:", q.Stats().Bytes <= 8192)
	_, err = stalled.Dequeue()
	fmt.Println(errors.Is(err, bigqueue.ErrDropped), q.Stats().Dropped["stalled"], "dropped")
	msg, _ := stalled.DequeueString()
	fmt.Println("reads on from", msg[:3])
	// Output:
	// stored bytes within the limit: true
	// true 34 dropped
	// reads on from 035
}

// Messages go by age, a whole arena at a time: an arena goes once the
// next one was started more than the limit ago. (A limit of a
// nanosecond, for the example: every arena but the newest is old.)
func ExampleSetMaxAge() {
	q, closeQueue := openExample(bigqueue.SetArenaSize(4096), bigqueue.SetMaxAge(time.Nanosecond), bigqueue.SetPeriodicFlushOps(0), bigqueue.SetPeriodicFlushDuration(0))
	defer closeQueue()
	for i := 1; i <= 100; i++ {
		mustEnqueue(q, fmt.Sprintf("%03d %s", i, strings.Repeat(".", 100)))
	}
	check(q.Flush())
	s := q.Stats()
	fmt.Println("arenas:", s.ArenasOnDisk, "oldest message:", s.OldestSeq, "removed:", s.RetentionRemoved)
	// Output: arenas: 1 oldest message: 69 removed: 68
}

// Enqueue copies the message: the caller may reuse its buffer at once.
func ExampleQueue_Enqueue() {
	q, closeQueue := openExample()
	defer closeQueue()
	buf := []byte("first")
	check(q.Enqueue(buf))
	copy(buf, "XXXXX")
	if err := q.Enqueue(nil); err != nil { // an empty message is a message
		log.Fatal(err)
	}
	a, _ := q.Dequeue()
	b, _ := q.Dequeue()
	fmt.Printf("%q %q\n", a, b)
	// Output: "first" ""
}

func ExampleQueue_EnqueueString() {
	q, closeQueue := openExample()
	defer closeQueue()
	check(q.EnqueueString("no conversion, no allocation"))
	fmt.Println(q.DequeueString())
	// Output: no conversion, no allocation <nil>
}

// FromConsumer creates a consumer at another one's position: here a
// replay of what the auditor has not read yet.
func ExampleQueue_FromConsumer() {
	q, closeQueue := openExample()
	defer closeQueue()
	mustEnqueue(q, "a", "b", "c")
	audit, err := q.NewConsumer("audit")
	if err != nil {
		log.Fatal(err)
	}
	audit.DequeueString()
	replay, err := q.FromConsumer("replay", audit)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(replay.DequeueString())
	fmt.Println(replay.Len(), audit.Len())
	// Output:
	// b <nil>
	// 1 2
}

// DeleteConsumer stops a consumer pinning data; its handles then return
// ErrNoConsumer. Consumers lists the ones left.
func ExampleQueue_DeleteConsumer() {
	q, closeQueue := openExample()
	defer closeQueue()
	old, err := q.NewConsumer("old-service")
	if err != nil {
		log.Fatal(err)
	}
	if _, err := q.NewConsumer("new-service"); err != nil {
		log.Fatal(err)
	}
	fmt.Println(q.Consumers())
	check(q.DeleteConsumer("old-service"))
	_, err = old.Dequeue()
	fmt.Println(q.Consumers(), errors.Is(err, bigqueue.ErrNoConsumer))
	err = q.DeleteConsumer("old-service")
	fmt.Println(errors.Is(err, bigqueue.ErrNoConsumer))
	// Output:
	// [new-service old-service]
	// [new-service] true
	// true
}

// Consumers lists the persisted consumers; the default one comes with the
// first queue-level read.
func ExampleQueue_Consumers() {
	q, closeQueue := openExample()
	defer closeQueue()
	if _, err := q.NewConsumer("mailer"); err != nil {
		log.Fatal(err)
	}
	fmt.Println(q.Consumers())
	q.Dequeue()
	fmt.Println(q.Consumers())
	// Output:
	// [mailer]
	// [__default__ mailer]
}

// Flush makes everything so far durable against power loss, and then
// reclaims the arenas every consumer has read past.
func ExampleQueue_Flush() {
	q, closeQueue := openExample(bigqueue.SetArenaSize(4096), bigqueue.SetPeriodicFlushOps(0), bigqueue.SetPeriodicFlushDuration(0))
	defer closeQueue()
	for i := 0; i < 100; i++ {
		mustEnqueue(q, strings.Repeat("x", 100))
	}
	for !q.IsEmpty() {
		q.Dequeue()
	}
	fmt.Println("arenas before:", q.Stats().ArenasOnDisk)
	check(q.Flush())
	fmt.Println("arenas after:", q.Stats().ArenasOnDisk)
	// Output:
	// arenas before: 3
	// arenas after: 1
}

// A read that meets damaged data says where and how much it skipped, in an
// error wrapping ErrCorrupt, and the consumer has already moved past it:
// keep reading.
func ExampleQueue_Dequeue_corrupt() {
	dir, cleanup := exampleDir()
	defer cleanup()
	q, err := bigqueue.NewQueue(dir, bigqueue.SetArenaSize(4096))
	if err != nil {
		log.Fatal(err)
	}
	for i := 1; i <= 60; i++ {
		mustEnqueue(q, fmt.Sprintf("%02d %s", i, strings.Repeat(".", 100)))
	}
	check(q.Close())
	// Damage the first message's payload (after the 64-byte arena header
	// and its 16-byte record header).
	f, err := os.OpenFile(filepath.Join(dir, "arena-0.bq"), os.O_RDWR, 0)
	if err != nil {
		log.Fatal(err)
	}
	if _, err := f.WriteAt([]byte("XX"), 64+16); err != nil {
		log.Fatal(err)
	}
	f.Close()

	q, err = bigqueue.NewQueue(dir)
	if err != nil {
		log.Fatal(err)
	}
	defer q.Close()
	read := 0
	for {
		msg, err := q.DequeueString()
		if errors.Is(err, bigqueue.ErrEmptyQueue) {
			break
		}
		if errors.Is(err, bigqueue.ErrCorrupt) {
			fmt.Println("skipped damaged data; next:", q.Position())
			continue
		}
		if err != nil {
			log.Fatal(err)
		}
		if read == 0 {
			fmt.Println("first intact:", msg[:2])
		}
		read++
	}
	fmt.Println("read:", read)
	// Output:
	// skipped damaged data; next: 35
	// first intact: 35
	// read: 26
}

// At-least-once without polling: PeekWait blocks until a job arrives,
// the job is processed, and Dequeue commits it. A crash before the
// commit delivers the job again.
func ExampleQueue_PeekWait() {
	q, closeQueue := openExample()
	defer closeQueue()
	done := make(chan struct{})
	go func() {
		defer close(done)
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		job, err := q.PeekWait(ctx)
		if err != nil {
			log.Fatal(err)
		}
		fmt.Printf("processing %s, still queued: %d\n", job, q.Len())
		if _, err := q.Dequeue(); err != nil { // commit
			log.Fatal(err)
		}
	}()
	mustEnqueue(q, "resize photo")
	<-done
	fmt.Println("queued:", q.Len())
	// Output:
	// processing resize photo, still queued: 1
	// queued: 0
}

// Every message has a sequence number, kept across restarts: with the
// queue's ID it names the message, so that a forwarder can skip what it
// forwarded before a crash.
func ExampleQueue_Position() {
	q, closeQueue := openExample()
	defer closeQueue()
	mustEnqueue(q, "a", "b", "c")
	forwarded := uint64(2) // stored by the receiver: messages up to 2 arrived
	for !q.IsEmpty() {
		seq := q.Position()
		msg, err := q.DequeueString()
		if err != nil {
			log.Fatal(err)
		}
		if seq <= forwarded {
			fmt.Println("skip", seq, msg)
			continue
		}
		fmt.Println("forward", seq, msg)
	}
	fmt.Println("next:", q.Position(), "queue ID set:", q.Stats().QueueID != 0)
	// Output:
	// skip 1 a
	// skip 2 b
	// forward 3 c
	// next: 4 queue ID set: true
}

// Seek moves a consumer to a stored message; a number not stored is an
// error wrapping ErrOutOfRange, and the consumer stays.
func ExampleQueue_Seek() {
	q, closeQueue := openExample()
	defer closeQueue()
	mustEnqueue(q, "a", "b", "c", "d")
	check(q.Seek(3))
	fmt.Println(q.DequeueString())
	if err := q.Seek(1); err != nil { // back: "a" is still stored
		log.Fatal(err)
	}
	fmt.Println(q.DequeueString())
	err := q.Seek(9)
	fmt.Println(errors.Is(err, bigqueue.ErrOutOfRange), q.Position())
	// Output:
	// c <nil>
	// a <nil>
	// true 2
}

// A new consumer that reads only what is enqueued from now on, and one
// that starts over.
func ExampleQueue_SeekNewest() {
	q, closeQueue := openExample()
	defer closeQueue()
	mustEnqueue(q, "old")
	live, err := q.NewConsumer("live")
	if err != nil {
		log.Fatal(err)
	}
	check(live.SeekNewest())
	mustEnqueue(q, "new")
	fmt.Println(live.DequeueString())
	check(live.SeekOldest())
	fmt.Println(live.DequeueString())
	// Output:
	// new <nil>
	// old <nil>
}

// All reads with range-over-func and commits each message when the body
// asks for the next: a break leaves the last message for the next reader.
func ExampleQueue_All() {
	q, closeQueue := openExample()
	defer closeQueue()
	mustEnqueue(q, "a", "b", "c")
	for msg, err := range q.All(context.Background()) {
		if err != nil {
			log.Fatal(err)
		}
		fmt.Println("got", string(msg))
		if string(msg) == "b" {
			break // b is not committed
		}
	}
	fmt.Println("next:", q.Position(), "left:", q.Len())
	// Output:
	// got a
	// got b
	// next: 2 left: 2
}

// Graceful shutdown: the worker ranges over All until its context ends
// (in a program, signal.NotifyContext(ctx, os.Interrupt) cancels it on
// Ctrl-C); the message being processed then is committed only if its
// processing finished, and Close runs after the worker stopped.
func ExampleQueue_All_shutdown() {
	dir, cleanup := exampleDir()
	defer cleanup()
	q, err := bigqueue.NewQueue(dir, bigqueue.SetArenaSize(64<<10))
	if err != nil {
		log.Fatal(err)
	}
	ctx, stop := context.WithCancel(context.Background())
	stopped := make(chan error)
	go func() {
		for msg, err := range q.All(ctx) {
			if err != nil {
				stopped <- err
				return
			}
			fmt.Println("handled", string(msg))
			if string(msg) == "2" {
				stop() // stands in for Ctrl-C
			}
		}
	}()
	mustEnqueue(q, "1", "2", "3")
	fmt.Println("worker:", <-stopped)
	check(q.Close())

	q, err = bigqueue.NewQueue(dir)
	if err != nil {
		log.Fatal(err)
	}
	defer q.Close()
	fmt.Println("after restart:", q.Len(), "left")
	// Output:
	// handled 1
	// handled 2
	// worker: context canceled
	// after restart: 1 left
}

// Stats in /debug/vars (served by net/http's DefaultServeMux when a
// program imports expvar).
func ExampleQueue_PublishExpvar() {
	q, closeQueue := openExample()
	defer closeQueue()
	check(q.PublishExpvar("jobs-queue"))
	mustEnqueue(q, "a", "b")
	v := expvar.Get("jobs-queue").String()
	fmt.Println(strings.Contains(v, `"Messages":2`))
	err := q.PublishExpvar("jobs-queue")
	fmt.Println(errors.Is(err, bigqueue.ErrInvalidName))
	// Output:
	// true
	// true
}

// Each consumer has its own iterator, position and commits.
func ExampleConsumer_All() {
	q, closeQueue := openExample()
	defer closeQueue()
	mustEnqueue(q, "a", "b")
	audit, err := q.NewConsumer("audit")
	if err != nil {
		log.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	for msg, err := range audit.All(ctx) {
		if err != nil {
			fmt.Println(err)
			break
		}
		fmt.Println("audited", string(msg))
		if audit.Len() == 1 { // the last one: stop after it
			cancel()
		}
	}
	fmt.Println(audit.Len(), q.Len())
	// Output:
	// audited a
	// audited b
	// context canceled
	// 0 2
}

func ExampleConsumer_DequeueAppend() {
	q, closeQueue := openExample()
	defer closeQueue()
	mustEnqueue(q, "alpha", "beta")
	c, err := q.NewConsumer("c")
	if err != nil {
		log.Fatal(err)
	}
	buf := make([]byte, 0, 64)
	for !c.IsEmpty() {
		if buf, err = c.DequeueAppend(buf[:0]); err != nil {
			log.Fatal(err)
		}
		fmt.Println(string(buf))
	}
	// Output:
	// alpha
	// beta
}

func ExampleConsumer_DequeueWait() {
	q, closeQueue := openExample()
	defer closeQueue()
	c, err := q.NewConsumer("c")
	if err != nil {
		log.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, err = c.DequeueWait(ctx) // nothing to read, and the context is done
	fmt.Println(err)
	mustEnqueue(q, "ready")
	msg, err := c.DequeueWait(context.Background())
	fmt.Println(string(msg), err)
	// Output:
	// context canceled
	// ready <nil>
}

func ExampleConsumer_PeekWait() {
	q, closeQueue := openExample()
	defer closeQueue()
	c, err := q.NewConsumer("c")
	if err != nil {
		log.Fatal(err)
	}
	got := make(chan string)
	go func() {
		msg, err := c.PeekWait(context.Background())
		if err != nil {
			log.Fatal(err)
		}
		got <- string(msg)
	}()
	mustEnqueue(q, "job")
	fmt.Println(<-got, c.Len())
	// Output: job 1
}

// A consumer goes back to a message it read, by its sequence number.
func ExampleConsumer_Seek() {
	q, closeQueue := openExample()
	defer closeQueue()
	mustEnqueue(q, "a", "b", "c")
	c, err := q.NewConsumer("c")
	if err != nil {
		log.Fatal(err)
	}
	for !c.IsEmpty() {
		c.Dequeue()
	}
	check(c.Seek(2))
	fmt.Println(c.DequeueString())
	// Output: b <nil>
}

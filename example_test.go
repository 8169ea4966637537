package bigqueue_test

import (
	"context"
	"errors"
	"fmt"
	"log"
	"os"
	"time"

	"github.com/bigqueue-go/bigqueue"
)

func Example() {
	dir, err := os.MkdirTemp("", "bigqueue-example")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)

	q, err := bigqueue.NewQueue(dir, bigqueue.SetArenaSize(64<<10))
	if err != nil {
		log.Fatal(err)
	}
	defer q.Close()

	for _, s := range []string{"one", "two", "three"} {
		check(q.EnqueueString(s))
	}
	for {
		msg, err := q.DequeueString()
		if errors.Is(err, bigqueue.ErrEmptyQueue) {
			break
		}
		if err != nil {
			log.Fatal(err)
		}
		fmt.Println(msg)
	}
	// Output:
	// one
	// two
	// three
}

// Consumers read the whole stream independently, and their positions
// survive Close.
func ExampleQueue_NewConsumer() {
	dir, err := os.MkdirTemp("", "bigqueue-example")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)

	q, err := bigqueue.NewQueue(dir)
	if err != nil {
		log.Fatal(err)
	}
	for _, s := range []string{"a", "b", "c"} {
		check(q.EnqueueString(s))
	}
	audit, err := q.NewConsumer("audit")
	if err != nil {
		log.Fatal(err)
	}
	first, _ := audit.DequeueString()
	fromQueue, _ := q.DequeueString()
	fmt.Println(first, fromQueue)
	check(q.Close())

	q, err = bigqueue.NewQueue(dir)
	if err != nil {
		log.Fatal(err)
	}
	defer q.Close()
	audit, err = q.NewConsumer("audit")
	if err != nil {
		log.Fatal(err)
	}
	next, _ := audit.DequeueString()
	fmt.Println(next, q.Consumers())
	// Output:
	// a a
	// b [__default__ audit]
}

// openExample opens a queue with 64 KiB arenas and opts in a new
// temporary directory, and returns it with a function that closes and
// removes it.
func openExample(opts ...bigqueue.Option) (*bigqueue.Queue, func()) {
	dir, err := os.MkdirTemp("", "bigqueue-example")
	if err != nil {
		log.Fatal(err)
	}
	q, err := bigqueue.NewQueue(dir, append([]bigqueue.Option{bigqueue.SetArenaSize(64 << 10)}, opts...)...)
	if err != nil {
		log.Fatal(err)
	}
	return q, func() {
		check(q.Close())
		os.RemoveAll(dir)
	}
}

// At-least-once processing: Peek, process, then Dequeue to commit. A crash
// between the two delivers the message again after reopening. Peek does
// not lock the message: when several goroutines share one consumer, two
// of them may Peek the same message and the second Dequeue then consumes
// the next one unseen. Give each such goroutine its own consumer (each
// reads every message), or serialize Peek and Dequeue with a mutex.
func ExampleQueue_Peek() {
	q, done := openExample()
	defer done()
	for _, job := range []string{"resize photo", "send mail"} {
		check(q.EnqueueString(job))
	}
	process := func(job []byte) error {
		fmt.Printf("processing %q\n", job)
		return nil
	}
	for {
		job, err := q.Peek()
		if errors.Is(err, bigqueue.ErrEmptyQueue) {
			break
		}
		if err != nil {
			log.Fatal(err)
		}
		if err := process(job); err != nil {
			continue // not committed: it is delivered again
		}
		if _, err := q.Dequeue(); err != nil { // commit; returns the peeked slice
			log.Fatal(err)
		}
	}
	fmt.Println("left:", q.Len())
	// Output:
	// processing "resize photo"
	// processing "send mail"
	// left: 0
}

// A consumer goroutine blocks until a message arrives or its context ends.
func ExampleQueue_DequeueWait() {
	q, done := openExample()
	defer done()
	got := make(chan string)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		msg, err := q.DequeueWait(ctx)
		if err != nil {
			log.Fatal(err)
		}
		got <- string(msg)
	}()
	check(q.EnqueueString("wake up"))
	fmt.Println(<-got)
	// Output: wake up
}

// A batch becomes visible, and durable against a process crash, all at
// once.
func ExampleQueue_EnqueueBatch() {
	q, done := openExample()
	defer done()
	batch := [][]byte{[]byte("debit A"), []byte("credit B")}
	check(q.EnqueueBatch(batch))
	fmt.Println(q.Len())
	// Output: 2
}

// DequeueAppend reuses one buffer, so reading allocates nothing.
func ExampleQueue_DequeueAppend() {
	q, done := openExample()
	defer done()
	for _, s := range []string{"alpha", "beta"} {
		check(q.EnqueueString(s))
	}
	buf := make([]byte, 0, 1024)
	for !q.IsEmpty() {
		var err error
		buf, err = q.DequeueAppend(buf[:0])
		if err != nil {
			log.Fatal(err)
		}
		fmt.Println(string(buf))
	}
	// Output:
	// alpha
	// beta
}

func ExampleQueue_Stats() {
	q, done := openExample()
	defer done()
	if _, err := q.NewConsumer("audit"); err != nil {
		log.Fatal(err)
	}
	for i := 0; i < 3; i++ {
		check(q.EnqueueString("event"))
	}
	if _, err := q.Dequeue(); err != nil {
		log.Fatal(err)
	}
	s := q.Stats()
	fmt.Println("stored:", s.Messages, "lag:", s.Lag)
	// Output: stored: 3 lag: map[__default__:2 audit:3]
}

package bigqueue_test

import (
	"fmt"
	"log"

	"github.com/bigqueue-go/bigqueue"
)

// inspectedQueue makes a closed queue in a new directory holding
// messages, with a consumer "worker" that read the first of them.
func inspectedQueue(msgs ...string) (string, func()) {
	dir, cleanup := exampleDir()
	q, err := bigqueue.NewQueue(dir)
	if err != nil {
		log.Fatal(err)
	}
	mustEnqueue(q, msgs...)
	w, err := q.NewConsumer("worker")
	if err != nil {
		log.Fatal(err)
	}
	if _, err := w.Dequeue(); err != nil {
		log.Fatal(err)
	}
	check(q.Close())
	return dir, cleanup
}

// openInspection inspects a queue made by inspectedQueue, and returns
// the inspection with a function that closes it and removes the queue.
func openInspection(msgs ...string) (*bigqueue.Inspection, func()) {
	dir, cleanup := inspectedQueue(msgs...)
	in, err := bigqueue.Inspect(dir)
	if err != nil {
		log.Fatal(err)
	}
	return in, func() {
		check(in.Close())
		cleanup()
	}
}

// Inspect looks at a closed queue without changing it: what is stored
// and how far each consumer is behind.
func ExampleInspect() {
	dir, cleanup := inspectedQueue("a", "b", "c")
	defer cleanup()

	in, err := bigqueue.Inspect(dir)
	if err != nil {
		log.Fatal(err)
	}
	defer in.Close()
	info := in.Info()
	fmt.Println("messages stored:", info.Messages)
	for _, c := range info.Consumers {
		fmt.Printf("%s lags %d\n", c.Name, c.Lag)
	}
	// Output:
	// messages stored: 3
	// worker lags 2
}

// Verify checks every record's checksum; damage goes into the report,
// not the error.
func ExampleInspection_Verify() {
	in, cleanup := openInspection("a", "b", "c")
	defer cleanup()
	rep, err := in.Verify(nil) // nil: no progress reports
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("records:", rep.Records, "damaged:", len(rep.Damage))
	// Output: records: 3 damaged: 0
}

// Messages shows what a consumer would read next, without moving it.
func ExampleInspection_Messages() {
	in, cleanup := openInspection("a", "b", "c")
	defer cleanup()
	for msg, err := range in.Messages("worker") {
		if err != nil {
			log.Fatal(err)
		}
		fmt.Println(string(msg))
	}
	// Output:
	// b
	// c
}

// ProbeTail tells, without the lock another process holds, whether
// messages were enqueued since the last look.
func ExampleProbeTail() {
	dir, cleanup := exampleDir()
	defer cleanup()
	q, err := bigqueue.NewQueue(dir)
	if err != nil {
		log.Fatal(err)
	}
	defer q.Close()

	before, err := bigqueue.ProbeTail(dir)
	if err != nil {
		log.Fatal(err)
	}
	mustEnqueue(q, "new")
	after, err := bigqueue.ProbeTail(dir)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("enqueued since:", after != before)
	// Output: enqueued since: true
}

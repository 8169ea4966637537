package bigqueue_test

import (
	"errors"
	"fmt"
	"log"
	"os"

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
		if err := q.EnqueueString(s); err != nil {
			log.Fatal(err)
		}
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
		if err := q.EnqueueString(s); err != nil {
			log.Fatal(err)
		}
	}
	audit, err := q.NewConsumer("audit")
	if err != nil {
		log.Fatal(err)
	}
	first, _ := audit.DequeueString()
	fromQueue, _ := q.DequeueString()
	fmt.Println(first, fromQueue)
	if err := q.Close(); err != nil {
		log.Fatal(err)
	}

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

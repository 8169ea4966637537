// Command demo runs bigqueue on a temporary directory: it enqueues a batch
// of messages, reads them with two consumers, reopens the queue to show
// that positions persist, and shows consumed arenas being reclaimed.
//
//	go run ./examples/demo
package main

import (
	"errors"
	"fmt"
	"log"
	"os"
	"path/filepath"
	"strings"
	"syscall"

	"github.com/bigqueue-go/bigqueue"
)

const arenaSize = 64 << 10

func main() {
	dir, err := os.MkdirTemp("", "bigqueue-demo")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)
	fmt.Println("queue directory:", dir)

	q, err := bigqueue.NewQueue(dir, bigqueue.SetArenaSize(arenaSize))
	if err != nil {
		log.Fatal(err)
	}
	const n = 10_000
	for i := 0; i < n; i++ {
		if err := q.EnqueueString(fmt.Sprintf("job %05d %s", i, strings.Repeat("x", 100))); err != nil {
			log.Fatal(err)
		}
	}
	fmt.Printf("enqueued %d messages: %s\n", n, files(dir))

	audit, err := q.NewConsumer("audit")
	if err != nil {
		log.Fatal(err)
	}
	for i := 0; i < 3; i++ {
		msg, err := audit.DequeueString()
		if err != nil {
			log.Fatal(err)
		}
		fmt.Printf("audit read %q\n", msg[:9])
	}
	worker := 0
	for {
		_, err := q.DequeueString()
		if errors.Is(err, bigqueue.ErrEmptyQueue) {
			break
		}
		if err != nil {
			log.Fatal(err)
		}
		worker++
	}
	fmt.Printf("default consumer read %d messages; audit still pins the data: %s\n", worker, files(dir))

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
	msg, err := audit.DequeueString()
	if err != nil {
		log.Fatal(err)
	}
	fmt.Printf("after reopen, consumers %v; audit goes on with %q\n", q.Consumers(), msg[:9])

	if err := q.DeleteConsumer("audit"); err != nil {
		log.Fatal(err)
	}
	fmt.Printf("audit deleted; reads never touch files: %s\n", files(dir))
	// A flush makes the positions durable, then reclaims what they passed.
	if err := q.Flush(); err != nil {
		log.Fatal(err)
	}
	fmt.Printf("after Flush, consumed arenas reclaimed: %s\n", files(dir))
	// The next flush makes the renames of the reclaim durable; a flush
	// that then finds nothing to do gives the spares' disk space back.
	for range 2 {
		if err := q.Flush(); err != nil {
			log.Fatal(err)
		}
	}
	fmt.Printf("idle, spares given back: %s\n", files(dir))
}

// files summarizes the arena files in dir and the disk blocks they use.
func files(dir string) string {
	arenas, _ := filepath.Glob(filepath.Join(dir, "arena-*.bq"))
	spares, _ := filepath.Glob(filepath.Join(dir, "spare-*.bq"))
	var used int64
	for _, p := range append(arenas, spares...) {
		if fi, err := os.Stat(p); err == nil {
			if st, ok := fi.Sys().(*syscall.Stat_t); ok {
				used += st.Blocks * 512
			}
		}
	}
	return fmt.Sprintf("%d arena files + %d spares, %d KiB of disk", len(arenas), len(spares), used>>10)
}

package prometheus_test

import (
	"errors"
	"fmt"
	"log"
	"os"
	"strings"
	"testing"

	"github.com/bigqueue-go/bigqueue"
	bqprom "github.com/bigqueue-go/bigqueue/prometheus"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

func openQueue(t *testing.T) *bigqueue.Queue {
	t.Helper()
	q, err := bigqueue.NewQueue(t.TempDir(), bigqueue.SetArenaSize(4096),
		bigqueue.SetPeriodicFlushOps(0), bigqueue.SetPeriodicFlushDuration(0))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := q.Close(); err != nil {
			t.Error(err)
		}
	})
	return q
}

func TestCollector(t *testing.T) {
	q := openQueue(t)
	audit, err := q.NewConsumer("audit")
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 3; i++ {
		if err := q.EnqueueString("event"); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := q.Dequeue(); err != nil {
		t.Fatal(err)
	}
	if _, err := audit.Dequeue(); err != nil {
		t.Fatal(err)
	}
	if _, err := audit.Dequeue(); err != nil {
		t.Fatal(err)
	}
	c := bqprom.NewCollector(q, prometheus.Labels{"queue": "jobs"})
	reg := prometheus.NewPedanticRegistry()
	if err := reg.Register(c); err != nil {
		t.Fatal(err)
	}
	want := `
# HELP bigqueue_consumer_lag_messages Messages the consumer has not read.
# TYPE bigqueue_consumer_lag_messages gauge
bigqueue_consumer_lag_messages{consumer="__default__",queue="jobs"} 2
bigqueue_consumer_lag_messages{consumer="audit",queue="jobs"} 1
# HELP bigqueue_stored_messages Messages stored, from the oldest kept to the newest.
# TYPE bigqueue_stored_messages gauge
bigqueue_stored_messages{queue="jobs"} 3
# HELP bigqueue_stored_bytes Bytes of the stored records, headers included.
# TYPE bigqueue_stored_bytes gauge
bigqueue_stored_bytes{queue="jobs"} 63
# HELP bigqueue_arena_files Arena files on disk: data holds queue data, spare is kept for reuse.
# TYPE bigqueue_arena_files gauge
bigqueue_arena_files{kind="data",queue="jobs"} 1
bigqueue_arena_files{kind="spare",queue="jobs"} 0
# HELP bigqueue_next_sequence_number Sequence number the next message enqueued gets.
# TYPE bigqueue_next_sequence_number gauge
bigqueue_next_sequence_number{queue="jobs"} 4
# HELP bigqueue_flushes_total Successful flushes since the queue was opened.
# TYPE bigqueue_flushes_total counter
bigqueue_flushes_total{queue="jobs"} 0
# HELP bigqueue_last_flush_failed 1 when the latest flush or its housekeeping failed, else 0.
# TYPE bigqueue_last_flush_failed gauge
bigqueue_last_flush_failed{queue="jobs"} 0
# HELP bigqueue_consumer_dropped_messages_total Messages retention removed before the consumer read them, since the queue was opened.
# TYPE bigqueue_consumer_dropped_messages_total counter
bigqueue_consumer_dropped_messages_total{consumer="__default__",queue="jobs"} 0
bigqueue_consumer_dropped_messages_total{consumer="audit",queue="jobs"} 0
`
	names := []string{"bigqueue_consumer_lag_messages", "bigqueue_stored_messages", "bigqueue_stored_bytes",
		"bigqueue_arena_files", "bigqueue_next_sequence_number", "bigqueue_flushes_total",
		"bigqueue_last_flush_failed", "bigqueue_consumer_dropped_messages_total"}
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want), names...); err != nil {
		t.Fatal(err)
	}
	// Every metric is there, with the queue's ID on the info metric.
	if n := testutil.CollectAndCount(c); n != 17 {
		t.Fatalf("%d metrics, want 17", n)
	}
	info := fmt.Sprintf(`
# HELP bigqueue_info Always 1; the queue_id label identifies the queue.
# TYPE bigqueue_info gauge
bigqueue_info{queue="jobs",queue_id="%016x"} 1
`, q.Stats().QueueID)
	if err := testutil.GatherAndCompare(reg, strings.NewReader(info), "bigqueue_info"); err != nil {
		t.Fatal(err)
	}
	if problems, err := testutil.CollectAndLint(c); err != nil || len(problems) > 0 {
		t.Fatalf("lint: %v %v", problems, err)
	}

	if err := q.Flush(); err != nil {
		t.Fatal(err)
	}
	flushed := `
# HELP bigqueue_flushes_total Successful flushes since the queue was opened.
# TYPE bigqueue_flushes_total counter
bigqueue_flushes_total{queue="jobs"} 1
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(flushed), "bigqueue_flushes_total"); err != nil {
		t.Fatal(err)
	}

	if err := q.Close(); err != nil {
		t.Fatal(err)
	}
	if n := testutil.CollectAndCount(c); n != 0 {
		t.Fatalf("a closed queue exports %d metrics, want none", n)
	}
}

// Register a queue's collector; every scrape reads its Stats.
func ExampleNewCollector() {
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
	if err := q.EnqueueString("job"); err != nil {
		log.Fatal(err)
	}
	if _, err := q.NewConsumer("worker"); err != nil {
		log.Fatal(err)
	}

	reg := prometheus.NewRegistry()
	if err := reg.Register(bqprom.NewCollector(q, prometheus.Labels{"queue": "jobs"})); err != nil {
		log.Fatal(err)
	}
	// An HTTP server would serve reg with promhttp.HandlerFor; here the
	// lag gauge is read directly.
	families, err := reg.Gather()
	if err != nil {
		log.Fatal(err)
	}
	for _, f := range families {
		if f.GetName() != "bigqueue_consumer_lag_messages" {
			continue
		}
		for _, m := range f.GetMetric() {
			fmt.Println(f.GetName(), m.GetLabel()[0].GetValue(), m.GetGauge().GetValue())
		}
	}
	var dup prometheus.AlreadyRegisteredError
	err = reg.Register(bqprom.NewCollector(q, prometheus.Labels{"queue": "jobs"}))
	fmt.Println("registered twice:", errors.As(err, &dup))
	// Output:
	// bigqueue_consumer_lag_messages worker 1
	// registered twice: true
}

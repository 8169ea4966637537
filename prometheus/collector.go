// Package prometheus exports the Stats of a bigqueue.Queue as Prometheus
// metrics. It is a module of its own, so that the library's go.mod does
// not depend on github.com/prometheus/client_golang.
//
//	q, err := bigqueue.NewQueue(dir)
//	...
//	prometheus.MustRegister(bqprom.NewCollector(q, prometheus.Labels{"queue": "jobs"}))
//
// Every scrape calls Queue.Stats once; a closed queue exports nothing.
// The metrics, each with the collector's constant labels:
//
//	bigqueue_info{queue_id}                          1; queue_id in 16 hex digits
//	bigqueue_stored_messages                         gauge: messages stored
//	bigqueue_stored_bytes                            gauge: bytes of the stored records
//	bigqueue_next_sequence_number                    gauge: the number the next message gets
//	bigqueue_arena_size_bytes                        gauge: the size of an arena file
//	bigqueue_arena_files{kind="data"|"spare"}        gauge: arena files on disk
//	bigqueue_mapped_arenas                           gauge: arenas memory-mapped now
//	bigqueue_consumer_lag_messages{consumer}         gauge: messages the consumer has not read
//	bigqueue_consumer_dropped_messages_total{consumer} counter: removed by retention before it read them
//	bigqueue_retention_removed_messages_total        counter: removed by retention, read or not
//	bigqueue_flushes_total                           counter: successful flushes
//	bigqueue_arenas_reclaimed_total                  counter: arenas reclaimed
//	bigqueue_last_flush_timestamp_seconds            gauge: end of the latest successful flush, Unix time
//	bigqueue_last_flush_failed                       gauge: 1 when the latest flush or its housekeeping failed
//
// The counters count since the queue was opened; Prometheus's rate and
// increase handle the reset at a reopen.
package prometheus

import (
	"fmt"

	"github.com/bigqueue-go/bigqueue"
	prom "github.com/prometheus/client_golang/prometheus"
)

// Collector is a prometheus.Collector of one queue's Stats. Register it
// with a registry; it is safe for concurrent scrapes.
type Collector struct {
	q *bigqueue.Queue

	info, messages, bytes, nextSeq, arenaSize, arenaFiles, mapped *prom.Desc
	lag, dropped, retentionRemoved, flushes, reclaimed            *prom.Desc
	lastFlush, lastFlushFailed                                    *prom.Desc
}

// NewCollector returns a Collector of q's Stats. labels are added to
// every metric; give each queue a label of its own (say queue="jobs")
// when one registry collects several.
func NewCollector(q *bigqueue.Queue, labels prom.Labels) *Collector {
	d := func(name, help string, variable ...string) *prom.Desc {
		return prom.NewDesc("bigqueue_"+name, help, variable, labels)
	}
	return &Collector{
		q:                q,
		info:             d("info", "Always 1; the queue_id label identifies the queue.", "queue_id"),
		messages:         d("stored_messages", "Messages stored, from the oldest kept to the newest."),
		bytes:            d("stored_bytes", "Bytes of the stored records, headers included."),
		nextSeq:          d("next_sequence_number", "Sequence number the next message enqueued gets."),
		arenaSize:        d("arena_size_bytes", "Size of each arena file."),
		arenaFiles:       d("arena_files", "Arena files on disk: data holds queue data, spare is kept for reuse.", "kind"),
		mapped:           d("mapped_arenas", "Arenas memory-mapped now."),
		lag:              d("consumer_lag_messages", "Messages the consumer has not read.", "consumer"),
		dropped:          d("consumer_dropped_messages_total", "Messages retention removed before the consumer read them, since the queue was opened.", "consumer"),
		retentionRemoved: d("retention_removed_messages_total", "Messages retention removed since the queue was opened, read or not."),
		flushes:          d("flushes_total", "Successful flushes since the queue was opened."),
		reclaimed:        d("arenas_reclaimed_total", "Arenas reclaimed since the queue was opened."),
		lastFlush:        d("last_flush_timestamp_seconds", "When the latest successful flush ended, in Unix time; 0 before the first."),
		lastFlushFailed:  d("last_flush_failed", "1 when the latest flush or its housekeeping failed, else 0."),
	}
}

// Describe sends the descriptions of every metric the Collector exports.
func (c *Collector) Describe(ch chan<- *prom.Desc) {
	for _, d := range []*prom.Desc{c.info, c.messages, c.bytes, c.nextSeq, c.arenaSize, c.arenaFiles, c.mapped,
		c.lag, c.dropped, c.retentionRemoved, c.flushes, c.reclaimed, c.lastFlush, c.lastFlushFailed} {
		ch <- d
	}
}

// Collect sends the metrics of one Stats snapshot; nothing for a closed
// queue.
func (c *Collector) Collect(ch chan<- prom.Metric) {
	s := c.q.Stats()
	if s.ArenaSize == 0 {
		return // closed: Stats is zero
	}
	gauge := func(d *prom.Desc, v float64, labels ...string) {
		ch <- prom.MustNewConstMetric(d, prom.GaugeValue, v, labels...)
	}
	counter := func(d *prom.Desc, v float64, labels ...string) {
		ch <- prom.MustNewConstMetric(d, prom.CounterValue, v, labels...)
	}
	gauge(c.info, 1, fmt.Sprintf("%016x", s.QueueID))
	gauge(c.messages, float64(s.Messages))
	gauge(c.bytes, float64(s.Bytes))
	gauge(c.nextSeq, float64(s.NextSeq))
	gauge(c.arenaSize, float64(s.ArenaSize))
	gauge(c.arenaFiles, float64(s.ArenasOnDisk), "data")
	gauge(c.arenaFiles, float64(s.SpareArenas), "spare")
	gauge(c.mapped, float64(s.ArenasMapped))
	for name, lag := range s.Lag {
		gauge(c.lag, float64(lag), name)
	}
	for name, n := range s.Dropped {
		counter(c.dropped, float64(n), name)
	}
	counter(c.retentionRemoved, float64(s.RetentionRemoved))
	counter(c.flushes, float64(s.Flushes))
	counter(c.reclaimed, float64(s.ArenasReclaimed))
	last := 0.0
	if !s.LastFlushAt.IsZero() {
		last = float64(s.LastFlushAt.UnixNano()) / 1e9
	}
	gauge(c.lastFlush, last)
	failed := 0.0
	if s.LastFlushError != nil {
		failed = 1
	}
	gauge(c.lastFlushFailed, failed)
}

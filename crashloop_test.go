package bigqueue

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// The process-crash loop (durability contract, point 1): a child process
// runs random operations on a queue and reports each one as it starts and
// as it returns; the parent kills it with SIGKILL at a random moment,
// sometimes while NewQueue is still recovering, and the queue is checked
// against the parent's model of what it must hold. Then the next child goes
// on with the same queue, so state accumulates across kills.
//
// The model is the list of acknowledged messages in queue order, from the
// oldest one some consumer still has to read, and each consumer's position
// as an index into it. The operation in flight at a kill may or may not
// have taken effect; the next check decides which from what the queue
// holds, and accepts nothing else.
//
// The check runs in the parent, in-process, before some children, and in
// the child itself, right after its NewQueue, before the others: that way
// children are killed while recovering a queue that was itself killed, not
// only one the parent closed cleanly.
//
// Knobs: BIGQUEUE_SEED fixes the seed (the kill moments
// still vary from run to run); BIGQUEUE_LONG=1 runs 10,000 iterations
// (with go test -timeout 2h: they take longer than the default 10 minutes);
// BIGQUEUE_CRASHLOOP_ITERATIONS=n runs n.

const (
	crashPlanEnv       = "BIGQUEUE_CRASHLOOP_PLAN" // path of the child's plan (JSON); set only in the child
	crashIterationsEnv = "BIGQUEUE_CRASHLOOP_ITERATIONS"
	crashVerifier      = "crashloop-verify" // the consumer a check reads the whole queue with
	crashExitFailed    = 3                  // the child found a problem and reported it
	crashChildTimeout  = 2 * time.Minute    // a child still running after this hangs
)

// crashArenaSizes are the arena sizes an epoch (one queue directory) picks
// from. The size is stored with the queue, so it is chosen per queue, not
// per child. 10000 is not a multiple of the page size.
var crashArenaSizes = []int{4 << 10, 8 << 10, 12 << 10, 16 << 10, 32 << 10, 64 << 10, 10000}

// crashNamed are the names of the named consumers; a child keeps at most
// two of them, so that a queue has one to three consumers.
var crashNamed = []string{"c1", "c2", "c3"}

// crashPlan is what the parent hands a child.
type crashPlan struct {
	Dir        string
	Seed       uint64 // the run's seed: every payload derives from it
	OpSeed     uint64 // the child's choice of operations
	ArenaSize  int
	MaxInMem   int
	FlushOps   int64
	FlushEvery time.Duration
	Ops        int // operations to run before idling until killed
	EnqueuePct int // share of enqueues among the operations, in percent
	Model      crashModel
}

func (p *crashPlan) options() []Option {
	return []Option{
		SetArenaSize(p.ArenaSize),
		SetMaxInMemArenas(p.MaxInMem),
		SetPeriodicFlushOps(p.FlushOps),
		SetPeriodicFlushDuration(p.FlushEvery),
	}
}

// crashMsg is one acknowledged message. Its payload is crashPayload of
// (run seed, Seq, Len).
type crashMsg struct {
	Seq uint64
	Len int
}

// crashModel is what a queue must hold.
type crashModel struct {
	NextSeq uint64         // the sequence number the next enqueue gets; never reused
	Msgs    []crashMsg     // acknowledged messages, queue order, from at or before the head
	Pos     map[string]int // consumer name -> index into Msgs of its next message
	Pending *crashOp       // the operation in flight at the last kill, not resolved yet
}

func newCrashModel(nextSeq uint64) *crashModel {
	return &crashModel{NextSeq: nextSeq, Pos: map[string]int{defaultConsumerKey: 0}}
}

func (m *crashModel) clone() *crashModel {
	c := *m
	c.Msgs = slices.Clone(m.Msgs)
	c.Pos = make(map[string]int, len(m.Pos))
	for k, v := range m.Pos {
		c.Pos[k] = v
	}
	if m.Pending != nil {
		op := *m.Pending
		c.Pending = &op
	}
	return &c
}

// head is the index of the oldest message a consumer still has to read:
// where a new consumer starts.
func (m *crashModel) head() int {
	h := len(m.Msgs)
	for _, p := range m.Pos {
		h = min(h, p)
	}
	return h
}

// names returns the consumers, sorted.
func (m *crashModel) names() []string {
	names := make([]string, 0, len(m.Pos))
	for name := range m.Pos {
		names = append(names, name)
	}
	slices.Sort(names)
	return names
}

// trim forgets the messages below the head: no consumer can read them.
func (m *crashModel) trim() {
	h := m.head()
	if h == 0 {
		return
	}
	m.Msgs = slices.Clone(m.Msgs[h:])
	for k := range m.Pos {
		m.Pos[k] -= h
	}
}

// apply changes the model as op does when it takes effect.
func (m *crashModel) apply(op crashOp) {
	switch op.Kind {
	case 'E', 'B':
		for i, n := range op.Lens {
			m.Msgs = append(m.Msgs, crashMsg{Seq: op.Seq + uint64(i), Len: n})
		}
		m.NextSeq = max(m.NextSeq, op.Seq+uint64(len(op.Lens)))
	case 'D':
		if p, ok := m.Pos[op.Name]; ok && p < len(m.Msgs) {
			m.Pos[op.Name] = p + 1
		}
	case 'N':
		if op.From != "" {
			m.Pos[op.Name] = m.Pos[op.From]
		} else {
			m.Pos[op.Name] = m.head()
		}
	case 'X':
		delete(m.Pos, op.Name)
	}
}

// crashOp is one operation of a child. On the report pipe it is a line of
// fields:
//
//	E api seq len         Enqueue (api 0) or EnqueueString (1)
//	B seq len,len,...     EnqueueBatch
//	D api name            Dequeue (0), DequeueString (1), DequeueAppend (2)
//	P api name            Peek (0), PeekString (1)
//	F                     Flush
//	N name [from]         NewConsumer, or FromConsumer(name, from)
//	X name                DeleteConsumer
type crashOp struct {
	Kind byte
	API  int
	Name string
	From string
	Seq  uint64
	Lens []int
}

func (op crashOp) String() string {
	switch op.Kind {
	case 'E':
		return fmt.Sprintf("E %d %d %d", op.API, op.Seq, op.Lens[0])
	case 'B':
		lens := make([]string, len(op.Lens))
		for i, n := range op.Lens {
			lens[i] = strconv.Itoa(n)
		}
		return fmt.Sprintf("B %d %s", op.Seq, strings.Join(lens, ","))
	case 'D', 'P':
		return fmt.Sprintf("%c %d %s", op.Kind, op.API, op.Name)
	case 'N':
		return strings.TrimSpace("N " + op.Name + " " + op.From)
	case 'X':
		return "X " + op.Name
	}
	return string(op.Kind)
}

func parseCrashOp(s string) (crashOp, error) {
	f := strings.Fields(s)
	if len(f) == 0 || len(f[0]) != 1 {
		return crashOp{}, fmt.Errorf("bad operation %q", s)
	}
	op := crashOp{Kind: f[0][0]}
	nums := func(fields ...string) ([]uint64, error) {
		var v []uint64
		for _, x := range fields {
			n, err := strconv.ParseUint(x, 10, 64)
			if err != nil {
				return nil, fmt.Errorf("bad operation %q: %w", s, err)
			}
			v = append(v, n)
		}
		return v, nil
	}
	want := map[byte]int{'E': 4, 'B': 3, 'D': 3, 'P': 3, 'F': 1, 'X': 2}[op.Kind]
	if op.Kind == 'N' {
		want = len(f)
		if want != 2 && want != 3 {
			want = -1
		}
	}
	if want == 0 || len(f) != want {
		return crashOp{}, fmt.Errorf("bad operation %q", s)
	}
	switch op.Kind {
	case 'E':
		v, err := nums(f[1:]...)
		if err != nil {
			return op, err
		}
		op.API, op.Seq, op.Lens = int(v[0]), v[1], []int{int(v[2])}
	case 'B':
		v, err := nums(append([]string{f[1]}, strings.Split(f[2], ",")...)...)
		if err != nil {
			return op, err
		}
		op.Seq = v[0]
		for _, n := range v[1:] {
			op.Lens = append(op.Lens, int(n))
		}
	case 'D', 'P':
		v, err := nums(f[1])
		if err != nil {
			return op, err
		}
		op.API, op.Name = int(v[0]), f[2]
	case 'N':
		op.Name = f[1]
		if len(f) == 3 {
			op.From = f[2]
		}
	case 'X':
		op.Name = f[1]
	}
	return op, nil
}

func crashDescribeMsg(m crashMsg) string {
	return fmt.Sprintf("message %d (%d bytes)", m.Seq, m.Len)
}

// crashCounts classifies how a queue differs from the model.
type crashCounts struct {
	lost, garbage, duplicates int
}

// crashObservation is what a check reads from a reopened queue.
type crashObservation struct {
	names   []string          // Consumers(), the verifier left out
	remain  map[string]int64  // Len of each consumer
	next    map[string][]byte // Peek of each consumer
	nextErr map[string]error  // the error of that Peek
	all     [][]byte          // what a new consumer reads from the head to the tail
	allErr  error             // the error that ended that read, other than ErrEmptyQueue
	allLen  int64             // that consumer's Len before reading
}

// crashObserve reads q: every consumer's Len and Peek, and every message
// from the head through a new consumer, which it deletes afterwards (or
// the next check does, when this one is killed). It reads at most bound
// messages. It consumes nothing.
func crashObserve(q *Queue, bound int) (*crashObservation, error) {
	o := &crashObservation{
		remain:  make(map[string]int64),
		next:    make(map[string][]byte),
		nextErr: make(map[string]error),
	}
	for _, name := range q.Consumers() {
		if name == crashVerifier {
			if err := q.DeleteConsumer(name); err != nil {
				return nil, fmt.Errorf("delete the verifier left by a killed check: %w", err)
			}
			continue
		}
		o.names = append(o.names, name)
	}
	for _, name := range o.names {
		r, err := crashReaderOf(q, name)
		if err != nil {
			return nil, err
		}
		o.remain[name] = r.length()
		o.next[name], o.nextErr[name] = r.peek()
	}
	if len(o.names) == 0 {
		return o, nil // no consumer: nothing is to be read
	}
	// The verifier starts at the head, copied from the slowest consumer
	// (a plain new consumer starts at the oldest stored message, which may
	// lie below the head until a flush reclaims it).
	slowest := o.names[0]
	for _, name := range o.names {
		if o.remain[name] > o.remain[slowest] {
			slowest = name
		}
	}
	from, err := q.NewConsumer(slowest)
	if err != nil {
		return nil, fmt.Errorf("slowest consumer %q: %w", slowest, err)
	}
	v, err := q.FromConsumer(crashVerifier, from)
	if err != nil {
		return nil, fmt.Errorf("new verifier: %w", err)
	}
	o.allLen = v.Len()
	for len(o.all) <= bound {
		b, err := v.Dequeue()
		if errors.Is(err, ErrEmptyQueue) {
			break
		}
		if err != nil {
			o.allErr = err
			break
		}
		o.all = append(o.all, b)
	}
	if err := q.DeleteConsumer(crashVerifier); err != nil {
		return nil, fmt.Errorf("delete verifier: %w", err)
	}
	return o, nil
}

// crashEnsureDefault makes the default consumer of a queue no queue-level
// read has touched yet: the model has it from the start, at the first
// message, and a new queue gets it with its first queue-level read, which
// every child's check makes before any operation (so nothing was enqueued
// yet, and it starts at the first message too).
func crashEnsureDefault(q *Queue, m *crashModel) error {
	if slices.Contains(q.Consumers(), defaultConsumerKey) {
		return nil
	}
	if _, ok := m.Pos[defaultConsumerKey]; !ok || len(m.Msgs) > 0 || m.Pending != nil {
		return nil // the check reports the missing consumer
	}
	if _, err := q.Peek(); !errors.Is(err, ErrEmptyQueue) {
		return fmt.Errorf("first queue-level read of a new queue: %v, want ErrEmptyQueue", err)
	}
	return nil
}

// mismatch returns how o differs from what m says the queue holds, or "".
func (o *crashObservation) mismatch(seed uint64, m *crashModel) string {
	names := m.names()
	if !slices.Equal(o.names, names) {
		return fmt.Sprintf("consumers %v, want %v", o.names, names)
	}
	var buf []byte
	for _, name := range names {
		p := m.Pos[name]
		if r, want := o.remain[name], int64(len(m.Msgs)-p); r != want {
			return fmt.Sprintf("consumer %q: Len %d, want %d", name, r, want)
		}
		err := o.nextErr[name]
		if p == len(m.Msgs) {
			if !errors.Is(err, ErrEmptyQueue) {
				return fmt.Sprintf("consumer %q: Peek gave %s (error %v), want ErrEmptyQueue", name, describeMessage(seed, o.next[name]), err)
			}
			continue
		}
		if err != nil {
			return fmt.Sprintf("consumer %q: Peek: %v, want %s", name, err, crashDescribeMsg(m.Msgs[p]))
		}
		buf = appendMessage(buf[:0], seed, m.Msgs[p].Seq, m.Msgs[p].Len)
		if !bytes.Equal(o.next[name], buf) {
			return fmt.Sprintf("consumer %q: Peek gave %s, want %s", name, describeMessage(seed, o.next[name]), crashDescribeMsg(m.Msgs[p]))
		}
	}
	h := m.head()
	for i, b := range o.all {
		if h+i >= len(m.Msgs) {
			return fmt.Sprintf("reading from the head: %s after the last acknowledged message", describeMessage(seed, b))
		}
		msg := m.Msgs[h+i]
		buf = appendMessage(buf[:0], seed, msg.Seq, msg.Len)
		if !bytes.Equal(b, buf) {
			return fmt.Sprintf("reading from the head: read %d gave %s, want %s", i, describeMessage(seed, b), crashDescribeMsg(msg))
		}
	}
	if o.allErr != nil {
		return fmt.Sprintf("reading from the head: %v after %d messages", o.allErr, len(o.all))
	}
	if len(o.all) != len(m.Msgs)-h {
		return fmt.Sprintf("reading from the head: %d messages, want %d", len(o.all), len(m.Msgs)-h)
	}
	if o.allLen != int64(len(o.all)) {
		return fmt.Sprintf("a new consumer's Len is %d, it read %d", o.allLen, len(o.all))
	}
	return ""
}

// classify counts, roughly, what o lost, invented or repeated compared
// with the acknowledged model m, allowing for m.Pending either way. A
// consumer's position counts by the message it would read next.
func (o *crashObservation) classify(seed uint64, m *crashModel) crashCounts {
	var c crashCounts
	done := m.clone()
	var pendingMsgs []crashMsg
	if op := m.Pending; op != nil {
		done.apply(*op)
		if op.Kind == 'E' || op.Kind == 'B' {
			pendingMsgs = done.Msgs[len(m.Msgs):]
		}
	}
	key := func(msg crashMsg) string { return string(appendMessage(nil, seed, msg.Seq, msg.Len)) }
	h := m.head()
	where := make(map[string][]int) // payload -> indexes into done.Msgs
	for i := h; i < len(done.Msgs); i++ {
		k := key(done.Msgs[i])
		where[k] = append(where[k], i)
	}
	seen := make(map[string]int)
	for _, b := range o.all {
		switch {
		case len(where[string(b)]) == 0:
			c.garbage++
		case seen[string(b)] >= len(where[string(b)]):
			c.duplicates++
		}
		seen[string(b)]++
	}
	if o.allErr != nil {
		c.garbage++
	}
	for _, msg := range m.Msgs[min(done.head(), len(m.Msgs)):] {
		if seen[key(msg)] == 0 {
			c.lost++
		}
	}
	partial := 0
	for _, msg := range pendingMsgs {
		if seen[key(msg)] > 0 {
			partial++
		}
	}
	if partial < len(pendingMsgs) {
		c.garbage += partial // a batch in flight is all or nothing
	}
	for name, p := range m.Pos {
		r, ok := o.remain[name]
		if !ok {
			if op := m.Pending; op == nil || op.Kind != 'X' || op.Name != name {
				c.lost++ // an acknowledged consumer is gone
			}
			continue
		}
		lo, hi := p, p
		if op := m.Pending; op != nil && op.Kind == 'D' && op.Name == name && p < len(m.Msgs) {
			hi++
		}
		var at int // the index into done.Msgs of the consumer's next message
		switch idx := len(o.all) - int(r); {
		case idx < 0 || idx > len(o.all):
			continue // Len disagrees with the reading; counted there
		case idx == len(o.all):
			at = max(len(m.Msgs), p)
		default:
			list := where[string(o.all[idx])]
			if len(list) == 0 {
				continue // garbage, counted above
			}
			at = list[0]
			for _, i := range list {
				if crashAbs(i-p) < crashAbs(at-p) {
					at = i
				}
			}
		}
		if at < lo {
			c.duplicates += lo - at
		}
		if at > hi {
			c.lost += at - hi
		}
	}
	for _, name := range o.names {
		if _, ok := done.Pos[name]; !ok {
			c.garbage++ // a consumer nobody created, or one deleted with acknowledgement
		}
	}
	return c
}

func crashAbs(x int) int {
	if x < 0 {
		return -x
	}
	return x
}

// crashResolve checks q against m: the operation in flight at the last
// kill (m.Pending) took effect or it did not, and nothing else differs. It
// returns the resolved model and whether the operation took effect, or a
// description of the difference and its classification. err is an error
// of the checking itself.
func crashResolve(q *Queue, seed uint64, m *crashModel) (resolved *crashModel, applied bool, problem string, counts crashCounts, err error) {
	bound := len(m.Msgs) + 16
	if m.Pending != nil {
		bound += len(m.Pending.Lens)
	}
	if err := crashEnsureDefault(q, m); err != nil {
		return nil, false, "", counts, err
	}
	o, err := crashObserve(q, bound)
	if err != nil {
		return nil, false, "", counts, err
	}
	before := m.clone()
	before.Pending = nil
	p0 := o.mismatch(seed, before)
	if p0 == "" {
		return before, false, "", counts, nil
	}
	problem = p0
	if m.Pending != nil {
		after := before.clone()
		after.apply(*m.Pending)
		p1 := o.mismatch(seed, after)
		if p1 == "" {
			return after, true, "", counts, nil
		}
		problem = fmt.Sprintf("the queue matches neither state around the operation in flight (%s): without it: %s; with it: %s", m.Pending, p0, p1)
	}
	return nil, false, problem, o.classify(seed, m), nil
}

// crashReader is one consumer's reading methods: the Queue's own for the
// default consumer, a Consumer's for the others.
type crashReader struct {
	dequeue       func() ([]byte, error)
	dequeueString func() (string, error)
	dequeueAppend func([]byte) ([]byte, error)
	peek          func() ([]byte, error)
	peekString    func() (string, error)
	length        func() int64
}

// crashReaderOf returns the reader of consumer name, which must exist
// (NewConsumer would create it).
func crashReaderOf(q *Queue, name string) (crashReader, error) {
	if name == defaultConsumerKey {
		return crashReader{q.Dequeue, q.DequeueString, q.DequeueAppend, q.Peek, q.PeekString, q.Len}, nil
	}
	c, err := q.NewConsumer(name)
	if err != nil {
		return crashReader{}, fmt.Errorf("consumer %q: %w", name, err)
	}
	return crashReader{c.Dequeue, c.DequeueString, c.DequeueAppend, c.Peek, c.PeekString, c.Len}, nil
}

// TestCrashLoopChild is not a test: TestCrashLoop runs the test binary
// again with only it selected, as the process it kills. It reports on
// file descriptor 3, one line each, written before it goes on:
//
//	S          NewQueue starts
//	O          NewQueue returned
//	V 0|1      the check passed; the operation in flight at the last kill
//	           did not (0) or did (1) take effect
//	I op       an operation starts (see crashOp)
//	A          it returned as expected: acknowledged
//	Z          the operations are done; it waits to be killed
//	C l g d    lost, garbage and duplicate counts of a failed check
//	X text     a failure; the child exits with crashExitFailed
func TestCrashLoopChild(t *testing.T) {
	path := os.Getenv(crashPlanEnv)
	if path == "" {
		t.Skip("helper process of TestCrashLoop")
	}
	report := os.NewFile(3, "report")
	send := func(s string) {
		if _, err := report.WriteString(s); err != nil {
			fmt.Fprintln(os.Stderr, "report:", err)
			os.Exit(crashExitFailed)
		}
	}
	fail := func(format string, args ...any) {
		msg := strings.ReplaceAll(fmt.Sprintf(format, args...), "\n", " | ")
		send("X " + msg + "\n")
		os.Exit(crashExitFailed)
	}
	raw, err := os.ReadFile(path)
	if err != nil {
		fail("read plan: %v", err)
	}
	var plan crashPlan
	if err := json.Unmarshal(raw, &plan); err != nil {
		fail("decode plan: %v", err)
	}
	if plan.Model.Pos == nil {
		plan.Model.Pos = make(map[string]int)
	}
	invariants := func(q *Queue) {
		if err := q.checkInvariants(); err != nil {
			fail("%v", err)
		}
	}

	send("S\n")
	q, err := NewQueue(plan.Dir, plan.options()...)
	if err != nil {
		fail("open: %v", err)
	}
	send("O\n")
	invariants(q)
	m, applied, problem, counts, err := crashResolve(q, plan.Seed, &plan.Model)
	if err != nil {
		fail("check: %v", err)
	}
	if problem != "" {
		send(fmt.Sprintf("C %d %d %d\n", counts.lost, counts.garbage, counts.duplicates))
		fail("check: %s", problem)
	}
	invariants(q)
	if applied {
		send("V 1\n")
	} else {
		send("V 0\n")
	}

	c := &crashChild{
		q:          q,
		seed:       plan.Seed,
		arena:      plan.ArenaSize,
		enqueuePct: plan.EnqueuePct,
		m:          m,
		rng:        rand.New(rand.NewPCG(plan.OpSeed, 0xc4a54)),
		readers:    make(map[string]crashReader),
		fail:       fail,
	}
	prefix := ""
	for range plan.Ops {
		op := c.next()
		send(prefix + "I " + op.String() + "\n")
		c.do(op)
		c.m.apply(op)
		prefix = "A\n"
	}
	invariants(q)
	send(prefix + "Z\n")
	// Wait to be killed; the end of stdin means the parent is gone.
	if _, err := io.Copy(io.Discard, os.Stdin); err != nil {
		fail("stdin: %v", err)
	}
	os.Exit(0)
}

// crashChild runs a child's operations and checks each result against its
// model.
type crashChild struct {
	q          *Queue
	seed       uint64
	arena      int
	enqueuePct int
	m          *crashModel
	rng        *rand.Rand
	readers    map[string]crashReader
	buf        []byte
	fail       func(format string, args ...any)
}

// size returns a payload length: often short (empty included), often up to
// an arena, sometimes a record that just fills an arena, and, outside a
// batch, sometimes up to 3.5 arenas.
func (c *crashChild) size(batch bool) int {
	ds := c.arena - arenaHeaderSize
	switch r := c.rng.IntN(100); {
	case r < 25:
		return c.rng.IntN(16)
	case r < 60:
		return 16 + c.rng.IntN(240)
	case r < 85:
		return c.rng.IntN(ds)
	case r < 92:
		return max(0, ds-recordHeaderSize-16+c.rng.IntN(33))
	case batch:
		return c.rng.IntN(ds)
	default:
		return c.rng.IntN(3*ds + ds/2)
	}
}

// next picks the next operation. It favours the slowest consumer when the
// backlog grows, so that arenas keep being reclaimed and checks stay short.
func (c *crashChild) next() crashOp {
	m, rng := c.m, c.rng
	names := m.names()
	var named []string
	laggard := names[0]
	for _, name := range names {
		if name != defaultConsumerKey {
			named = append(named, name)
		}
		if m.Pos[name] < m.Pos[laggard] {
			laggard = name
		}
	}
	backlog := 0
	for _, msg := range m.Msgs[m.Pos[laggard]:] {
		backlog += recordHeaderSize + msg.Len
	}
	if (backlog > 8*c.arena || len(m.Msgs)-m.Pos[laggard] > 400) && rng.IntN(4) != 0 {
		if laggard != defaultConsumerKey && rng.IntN(20) == 0 {
			return crashOp{Kind: 'X', Name: laggard}
		}
		return crashOp{Kind: 'D', API: rng.IntN(3), Name: laggard}
	}
	if rng.IntN(200) == 0 {
		// A Flush waits for the disk: rare, to keep the loop fast.
		return crashOp{Kind: 'F'}
	}
	if rng.IntN(100) < c.enqueuePct {
		if rng.IntN(4) != 0 {
			op := crashOp{Kind: 'E', API: rng.IntN(2), Seq: m.NextSeq, Lens: []int{c.size(false)}}
			m.NextSeq++
			return op
		}
		op := crashOp{Kind: 'B', Seq: m.NextSeq}
		for range 1 + rng.IntN(8) {
			op.Lens = append(op.Lens, c.size(true))
		}
		m.NextSeq += uint64(len(op.Lens))
		return op
	}
	switch r := rng.IntN(80); {
	case r < 52:
		name := laggard
		if rng.IntN(2) == 0 {
			name = names[rng.IntN(len(names))]
		}
		return crashOp{Kind: 'D', API: rng.IntN(3), Name: name}
	case r < 62:
		return crashOp{Kind: 'P', API: rng.IntN(2), Name: names[rng.IntN(len(names))]}
	case r < 68 && len(named) < 2:
		var free []string
		for _, name := range crashNamed {
			if _, ok := m.Pos[name]; !ok {
				free = append(free, name)
			}
		}
		// Always FromConsumer: a plain NewConsumer starts at the oldest
		// message still stored, which the model, trimmed at the head,
		// does not know (lifecycle_test.go and the I/O-error and compat
		// tests check that start); copying the slowest consumer is the
		// same position the head had.
		op := crashOp{Kind: 'N', Name: free[rng.IntN(len(free))], From: laggard}
		if rng.IntN(2) == 0 {
			op.From = names[rng.IntN(len(names))]
		}
		return op
	case r < 72 && len(named) > 0:
		return crashOp{Kind: 'X', Name: named[rng.IntN(len(named))]}
	}
	return crashOp{Kind: 'D', API: rng.IntN(3), Name: names[rng.IntN(len(names))]}
}

// reader returns the reader of a consumer the model has.
func (c *crashChild) reader(name string) crashReader {
	r, ok := c.readers[name]
	if !ok {
		var err error
		if r, err = crashReaderOf(c.q, name); err != nil {
			c.fail("%v", err)
		}
		c.readers[name] = r
	}
	return r
}

// expect checks a message read from consumer name, which the model has
// at position p, and the error that came with it.
func (c *crashChild) expect(op crashOp, p int, got []byte, err error) {
	if p == len(c.m.Msgs) {
		if !errors.Is(err, ErrEmptyQueue) {
			c.fail("%s: got %s (error %v), want ErrEmptyQueue", op, describeMessage(c.seed, got), err)
		}
		return
	}
	want := c.m.Msgs[p]
	if err != nil {
		c.fail("%s: %v, want %s", op, err, crashDescribeMsg(want))
	}
	c.buf = appendMessage(c.buf[:0], c.seed, want.Seq, want.Len)
	if !bytes.Equal(got, c.buf) {
		c.fail("%s: got %s, want %s", op, describeMessage(c.seed, got), crashDescribeMsg(want))
	}
}

// checkLen checks consumer name's Len against the model's position p.
func (c *crashChild) checkLen(op crashOp, name string, p int) {
	if n, want := c.reader(name).length(), int64(len(c.m.Msgs)-p); n != want {
		c.fail("%s: Len of %q is %d, want %d", op, name, n, want)
	}
}

func (c *crashChild) checkConsumers(op crashOp, m *crashModel) {
	if got, want := c.q.Consumers(), m.names(); !slices.Equal(got, want) {
		c.fail("%s: consumers %v, want %v", op, got, want)
	}
}

// do runs op and checks its result against the model, which op has not
// changed yet.
func (c *crashChild) do(op crashOp) {
	q, m := c.q, c.m
	switch op.Kind {
	case 'E':
		c.buf = appendMessage(c.buf[:0], c.seed, op.Seq, op.Lens[0])
		var err error
		if op.API == 0 {
			err = q.Enqueue(c.buf)
		} else {
			err = q.EnqueueString(string(c.buf))
		}
		if err != nil {
			c.fail("%s: %v", op, err)
		}
	case 'B':
		msgs := make([][]byte, len(op.Lens))
		for i, n := range op.Lens {
			msgs[i] = appendMessage(nil, c.seed, op.Seq+uint64(i), n)
		}
		if err := q.EnqueueBatch(msgs); err != nil {
			c.fail("%s: %v", op, err)
		}
	case 'D':
		r, p := c.reader(op.Name), m.Pos[op.Name]
		var got []byte
		var err error
		switch op.API {
		case 0:
			got, err = r.dequeue()
		case 1:
			var s string
			s, err = r.dequeueString()
			got = []byte(s)
		default:
			dst := []byte("pre")
			got, err = r.dequeueAppend(dst)
			if !bytes.HasPrefix(got, dst) {
				c.fail("%s: DequeueAppend lost the bytes of dst: %q", op, got)
			}
			got = got[len(dst):]
		}
		c.expect(op, p, got, err)
		c.checkLen(op, op.Name, min(p+1, len(m.Msgs)))
	case 'P':
		r, p := c.reader(op.Name), m.Pos[op.Name]
		var got []byte
		var err error
		if op.API == 0 {
			got, err = r.peek()
		} else {
			var s string
			s, err = r.peekString()
			got = []byte(s)
		}
		c.expect(op, p, got, err)
	case 'F':
		if err := q.Flush(); err != nil {
			c.fail("%s: %v", op, err)
		}
	case 'N':
		var cons *Consumer
		var err error
		if op.From == "" {
			cons, err = q.NewConsumer(op.Name)
		} else {
			var from *Consumer
			if from, err = q.NewConsumer(op.From); err == nil {
				cons, err = q.FromConsumer(op.Name, from)
			}
		}
		if err != nil {
			c.fail("%s: %v", op, err)
		}
		c.readers[op.Name] = crashReader{cons.Dequeue, cons.DequeueString, cons.DequeueAppend, cons.Peek, cons.PeekString, cons.Len}
		after := m.clone()
		after.apply(op)
		c.checkLen(op, op.Name, after.Pos[op.Name])
		c.checkConsumers(op, after)
	case 'X':
		r := c.reader(op.Name)
		if err := q.DeleteConsumer(op.Name); err != nil {
			c.fail("%s: %v", op, err)
		}
		delete(c.readers, op.Name)
		if _, err := r.dequeue(); !errors.Is(err, ErrNoConsumer) {
			c.fail("%s: a deleted consumer's Dequeue: %v, want ErrNoConsumer", op, err)
		}
		after := m.clone()
		after.apply(op)
		c.checkConsumers(op, after)
	default:
		c.fail("unknown operation %s", op)
	}
}

// crashKill says when the parent kills a child.
type crashKill struct {
	afterStart time.Duration // > 0: this long after starting the process
	afterOpen  time.Duration // >= 0 with early: this long after "S"
	early      bool          // kill on afterOpen
	afterAcks  int           // otherwise: when this many operations were acknowledged,
	then       time.Duration // and this long after that
}

func (k crashKill) String() string {
	switch {
	case k.afterStart > 0:
		return fmt.Sprintf("%v after start", k.afterStart)
	case k.early:
		return fmt.Sprintf("%v after NewQueue started", k.afterOpen)
	}
	return fmt.Sprintf("%v after %d acknowledged operations", k.then, k.afterAcks)
}

// crashRun is the parent's state.
type crashRun struct {
	t     *testing.T
	seed  uint64
	root  string
	start time.Time

	// The current epoch: one queue directory and its model.
	epoch int
	dir   string
	arena int
	model *crashModel
	q     *Queue // open in the parent during a check

	// Counters for the summary.
	iterations, acked, enqueued, dequeued                                int
	counts                                                               crashCounts
	openFailures                                                         int
	killsBeforeOpen, killsDuringOpen, killsDuringCheck, killsInOps, idle int
	inFlightApplied, inFlightNotApplied                                  int
	inFlight                                                             map[byte]*[2]int // per kind: not applied, applied
	parentChecks, childChecks, maxBacklog                                int

	// The current iteration, for failure messages.
	it    int
	plan  *crashPlan
	kill  crashKill
	lines []string // the last reports of the current child
	out   string   // the current child's output, when it failed
}

// crashIterations returns how many children to kill.
func crashIterations(t *testing.T) (iterations, maxOps int) {
	iterations, maxOps = 300, 800
	switch {
	case longTier():
		iterations = 10_000
	case testRaceEnabled:
		iterations, maxOps = 100, 300
	case testing.Short():
		iterations = 40
	}
	if s := os.Getenv(crashIterationsEnv); s != "" {
		n, err := strconv.Atoi(s)
		require.NoError(t, err, crashIterationsEnv)
		iterations = n
	}
	return iterations, maxOps
}

// TestCrashLoop kills child processes that use one queue at random moments
// and checks after each kill that the queue holds every acknowledged
// message, in order and byte for byte, and every acknowledged consumer
// position and consumer, and nothing else but the effect of the one
// operation in flight; see the comment at the top of this file.
func TestCrashLoop(t *testing.T) {
	if os.Getenv(crashPlanEnv) != "" {
		t.Skip("running as a child")
	}
	iterations, maxOps := crashIterations(t)
	r := &crashRun{t: t, seed: testSeed(t), root: t.TempDir(), start: time.Now()}
	t.Cleanup(func() {
		if r.q != nil {
			if err := r.q.Close(); err != nil {
				t.Logf("close the queue after a failure: %v", err)
			}
		}
	})
	rng := rand.New(rand.NewPCG(r.seed, 0))
	epochEnd := 0
	for r.it = 0; r.it < iterations; r.it++ {
		if r.it == epochEnd {
			if r.dir != "" {
				r.check(rng)
				require.NoError(t, os.RemoveAll(r.dir))
			}
			r.epoch++
			r.dir = filepath.Join(r.root, fmt.Sprintf("q%d", r.epoch))
			r.arena = crashArenaSizes[rng.IntN(len(crashArenaSizes))]
			nextSeq := uint64(1)
			if r.model != nil {
				nextSeq = r.model.NextSeq
			}
			r.model = newCrashModel(nextSeq)
			epochEnd = r.it + 10 + rng.IntN(40)
		} else if r.model.Pending != nil && rng.IntN(3) == 0 {
			r.check(rng)
		}
		r.model.trim()
		plan := r.newPlan(rng, maxOps)
		r.runChild(plan, r.newKill(rng, plan))
		r.iterations++
		r.maxBacklog = max(r.maxBacklog, len(r.model.Msgs)-r.model.head())
	}
	r.check(rng)
	t.Logf("crashloop: enqueued=%d dequeued=%d kills_before_open=%d kills_during_check=%d kills_in_ops=%d kills_idle=%d in_flight_applied=%d in_flight_not_applied=%d parent_checks=%d child_checks=%d epochs=%d max_backlog=%d elapsed=%s",
		r.enqueued, r.dequeued, r.killsBeforeOpen, r.killsDuringCheck, r.killsInOps, r.idle,
		r.inFlightApplied, r.inFlightNotApplied, r.parentChecks, r.childChecks, r.epoch, r.maxBacklog,
		time.Since(r.start).Round(time.Millisecond))
	var kinds []string
	for _, k := range []byte("EBDNX") {
		if n := r.inFlight[k]; n != nil {
			kinds = append(kinds, fmt.Sprintf("%c=%d/%d", k, n[1], n[0]+n[1]))
		}
	}
	t.Logf("crashloop: in-flight operations that took effect, by kind: %s", strings.Join(kinds, " "))
	r.summary()
}

func (r *crashRun) summary() {
	report(r.t, "iterations=%d acked=%d lost=%d garbage=%d duplicates=%d open_failures=%d kills_during_open=%d seed=%d",
		r.iterations, r.acked, r.counts.lost, r.counts.garbage, r.counts.duplicates, r.openFailures, r.killsDuringOpen, r.seed)
}

func (r *crashRun) newPlan(rng *rand.Rand, maxOps int) *crashPlan {
	return &crashPlan{
		Dir:        r.dir,
		Seed:       r.seed,
		OpSeed:     rng.Uint64(),
		ArenaSize:  r.arena,
		MaxInMem:   []int{0, 3, 4}[rng.IntN(3)],
		FlushOps:   []int64{0, 0, 1, 8, 64}[rng.IntN(5)],
		FlushEvery: []time.Duration{0, 0, time.Millisecond, 10 * time.Millisecond}[rng.IntN(4)],
		Ops:        1 + rng.IntN(maxOps),
		EnqueuePct: []int{15, 25, 40}[rng.IntN(3)],
		Model:      *r.model,
	}
}

func (r *crashRun) newKill(rng *rand.Rand, plan *crashPlan) crashKill {
	switch n := rng.IntN(100); {
	case n < 8:
		return crashKill{afterStart: time.Duration(1 + rng.Int64N(int64(2*time.Millisecond)))}
	case n < 25:
		limit := []time.Duration{50 * time.Microsecond, 300 * time.Microsecond, 2 * time.Millisecond}[rng.IntN(3)]
		return crashKill{early: true, afterOpen: time.Duration(rng.Int64N(int64(limit)))}
	case n < 30:
		return crashKill{afterAcks: plan.Ops + 1} // when idle
	}
	k := crashKill{afterAcks: rng.IntN(plan.Ops + 1)}
	switch rng.IntN(4) {
	case 0:
		k.then = time.Duration(rng.Int64N(int64(100 * time.Microsecond)))
	case 1:
		k.then = time.Duration(rng.Int64N(int64(time.Millisecond)))
	}
	return k
}

// fail reports a failure with what is known about the iteration, keeps a
// copy of the queue directory, prints the summary and stops the test.
func (r *crashRun) fail(format string, args ...any) {
	t := r.t
	t.Helper()
	msg := fmt.Sprintf(format, args...)
	if r.plan != nil {
		p := *r.plan
		p.Model = crashModel{}
		t.Logf("iteration %d, epoch %d, kill %s, plan %+v", r.it, r.epoch, r.kill, p)
	}
	if m := r.model; m != nil {
		first := "none"
		if len(m.Msgs) > 0 {
			first = crashDescribeMsg(m.Msgs[0])
		}
		t.Logf("model: %d messages from %s, next seq %d, positions %v, pending %v", len(m.Msgs), first, m.NextSeq, m.Pos, m.Pending)
	}
	if len(r.lines) > 0 {
		t.Logf("last reports of the child:\n%s", strings.Join(r.lines, "\n"))
	}
	if r.out != "" {
		t.Logf("child output:\n%s", r.out)
	}
	if r.dir != "" {
		if kept, err := crashKeepDir(r.dir); err != nil {
			t.Logf("could not keep the queue directory: %v", err)
		} else {
			t.Logf("the queue directory is kept at %s", kept)
		}
	}
	r.summary()
	t.Fatalf("crashloop: %s (seed %d, iteration %d)", msg, r.seed, r.it)
}

// crashKeepDir copies the files of dir to a new directory that outlives
// the test.
func crashKeepDir(dir string) (string, error) {
	kept, err := os.MkdirTemp("", "bigqueue-crashloop-")
	if err != nil {
		return "", err
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		return "", err
	}
	for _, e := range entries {
		if !e.Type().IsRegular() {
			continue
		}
		b, err := os.ReadFile(filepath.Join(dir, e.Name()))
		if err != nil {
			return "", err
		}
		if err := os.WriteFile(filepath.Join(kept, e.Name()), b, 0o644); err != nil {
			return "", err
		}
	}
	return kept, nil
}

// resolved counts how the operation in flight at a kill was resolved.
func (r *crashRun) resolved(pending *crashOp, applied bool) {
	if pending == nil || pending.Kind == 'P' || pending.Kind == 'F' {
		return
	}
	if r.inFlight == nil {
		r.inFlight = make(map[byte]*[2]int)
	}
	if r.inFlight[pending.Kind] == nil {
		r.inFlight[pending.Kind] = new([2]int)
	}
	if applied {
		r.inFlightApplied++
		r.inFlight[pending.Kind][1]++
		r.count(*pending)
	} else {
		r.inFlightNotApplied++
		r.inFlight[pending.Kind][0]++
	}
}

// count adds an operation that took effect to the counters.
func (r *crashRun) count(op crashOp) {
	switch op.Kind {
	case 'E', 'B':
		r.enqueued += len(op.Lens)
	case 'D':
		if p, ok := r.model.Pos[op.Name]; ok && p < len(r.model.Msgs) {
			r.dequeued++
		}
	}
}

// check opens the queue in this process, checks it against the model,
// resolving the operation in flight, and closes it.
func (r *crashRun) check(rng *rand.Rand) {
	t := r.t
	t.Helper()
	r.plan, r.lines, r.out = nil, nil, ""
	opts := []Option{SetArenaSize(r.arena), SetMaxInMemArenas([]int{0, 3}[rng.IntN(2)])}
	q, err := NewQueue(r.dir, opts...)
	if err != nil {
		r.openFailures++
		r.fail("the parent's NewQueue: %v", err)
	}
	r.q = q
	if err := q.checkInvariants(); err != nil {
		r.fail("%v", err)
	}
	m, applied, problem, counts, err := crashResolve(q, r.seed, r.model)
	require.NoError(t, err, "check in the parent")
	if problem != "" {
		r.counts.lost += counts.lost
		r.counts.garbage += counts.garbage
		r.counts.duplicates += counts.duplicates
		r.fail("check in the parent: %s", problem)
	}
	if err := q.checkInvariants(); err != nil {
		r.fail("%v", err)
	}
	require.NoError(t, q.Close())
	r.q = nil
	r.resolved(r.model.Pending, applied) // before the model changes: a dequeue counts when it moved
	r.model = m
	r.parentChecks++
}

// runChild runs one child with plan, kills it as kill says, and updates
// the model from its reports.
func (r *crashRun) runChild(plan *crashPlan, kill crashKill) {
	t := r.t
	t.Helper()
	r.plan, r.kill, r.lines, r.out = plan, kill, nil, ""
	raw, err := json.Marshal(plan)
	require.NoError(t, err)
	planPath := filepath.Join(r.root, "plan.json")
	require.NoError(t, os.WriteFile(planPath, raw, 0o644))

	cmd := exec.Command(os.Args[0], "-test.run=^TestCrashLoopChild$", "-test.count=1")
	cmd.Env = append(os.Environ(), crashPlanEnv+"="+planPath)
	reports, reportsW, err := os.Pipe()
	require.NoError(t, err)
	stdin, stdinW, err := os.Pipe()
	require.NoError(t, err)
	cmd.ExtraFiles = []*os.File{reportsW}
	cmd.Stdin = stdin
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	require.NoError(t, cmd.Start())
	require.NoError(t, reportsW.Close())
	require.NoError(t, stdin.Close())

	var once sync.Once
	killNow := func() {
		once.Do(func() {
			if err := cmd.Process.Kill(); err != nil && !errors.Is(err, os.ErrProcessDone) {
				t.Errorf("kill the child: %v", err)
			}
		})
	}
	var hung atomic.Bool
	watchdog := time.AfterFunc(crashChildTimeout, func() { hung.Store(true); killNow() })
	var timer *time.Timer
	if kill.afterStart > 0 {
		timer = time.AfterFunc(kill.afterStart, killNow)
	}

	// The reports, line by line; a last line without its newline was cut
	// by the kill and is no report.
	lines := make(chan string, 1024)
	go func() {
		defer close(lines)
		br := bufio.NewReader(reports)
		for {
			s, err := br.ReadString('\n')
			if err != nil {
				return
			}
			lines <- strings.TrimSuffix(s, "\n")
		}
	}()

	var sawOpen, sawOpened, sawChecked, sawIdle bool
	var failure string
	var failCounts crashCounts
	acks := 0
	for line := range lines {
		r.lines = append(r.lines, line)
		if len(r.lines) > 40 {
			r.lines = r.lines[1:]
		}
		if failure != "" {
			continue
		}
		if line == "" {
			failure = "an empty report"
			continue
		}
		switch line[0] {
		case 'S':
			sawOpen = true
			if kill.early {
				timer = time.AfterFunc(kill.afterOpen, killNow)
			}
		case 'O':
			sawOpened = true
		case 'V':
			sawChecked = true
			r.childChecks++
			applied := line == "V 1"
			if r.model.Pending != nil {
				r.resolved(r.model.Pending, applied)
				if applied {
					r.model.apply(*r.model.Pending)
				}
				r.model.Pending = nil
			}
			if kill.afterStart == 0 && !kill.early && kill.afterAcks == 0 {
				killNow()
			}
		case 'I':
			op, err := parseCrashOp(strings.TrimPrefix(line, "I "))
			if err != nil {
				failure = err.Error()
				continue
			}
			if r.model.Pending != nil {
				failure = fmt.Sprintf("operation %s started before %s was acknowledged", op, r.model.Pending)
				continue
			}
			r.model.Pending = &op
			r.model.NextSeq = max(r.model.NextSeq, op.Seq+uint64(len(op.Lens)))
		case 'A':
			if r.model.Pending == nil {
				failure = "an acknowledgement without an operation"
				continue
			}
			r.count(*r.model.Pending)
			r.model.apply(*r.model.Pending)
			r.model.Pending = nil
			r.acked++
			acks++
			if !kill.early && kill.afterStart == 0 && acks == kill.afterAcks {
				if kill.then > 0 {
					timer = time.AfterFunc(kill.then, killNow)
				} else {
					killNow()
				}
			}
		case 'Z':
			sawIdle = true
			killNow()
		case 'C':
			_, err := fmt.Sscanf(line, "C %d %d %d", &failCounts.lost, &failCounts.garbage, &failCounts.duplicates)
			if err != nil {
				failure = fmt.Sprintf("bad report %q: %v", line, err)
			}
		case 'X':
			failure = strings.TrimPrefix(line, "X ")
		default:
			failure = fmt.Sprintf("unknown report %q", line)
		}
	}
	require.NoError(t, reports.Close())
	waitErr := cmd.Wait()
	require.NoError(t, stdinW.Close())
	watchdog.Stop()
	if timer != nil {
		timer.Stop()
	}
	r.out = out.String()
	if len(r.out) > 8<<10 {
		r.out = "..." + r.out[len(r.out)-8<<10:]
	}

	if failure != "" {
		if strings.HasPrefix(failure, "open: ") {
			r.openFailures++
		}
		r.counts.lost += failCounts.lost
		r.counts.garbage += failCounts.garbage
		r.counts.duplicates += failCounts.duplicates
		r.fail("child: %s", failure)
	}
	if hung.Load() {
		r.fail("the child ran for %v without being done", crashChildTimeout)
	}
	var exit *exec.ExitError
	if !errors.As(waitErr, &exit) {
		r.fail("the child: %v", waitErr)
	}
	if ws, ok := exit.Sys().(syscall.WaitStatus); !ok || !ws.Signaled() || ws.Signal() != syscall.SIGKILL {
		r.fail("the child ended by itself, not by SIGKILL: %v", waitErr)
	}
	switch {
	case !sawOpen:
		r.killsBeforeOpen++
	case !sawOpened:
		r.killsDuringOpen++
	case !sawChecked:
		r.killsDuringCheck++
	case sawIdle:
		r.idle++
	default:
		r.killsInOps++
	}
}

// TestCrashFirstArenaUnfinished is the state a kill leaves when it hits
// the first Enqueue of a new queue while arena 0 is being created: the file
// exists but is empty (killed before fallocate) or full of zeros (killed
// before its header was written). Nothing was committed, so the queue must
// open empty and work.
//
// It guards a fixed bug: inventory took the arena starting at the highest
// committed offset for one that can hold a committed byte.
func TestCrashFirstArenaUnfinished(t *testing.T) {
	const arenaSize = 12 << 10
	for _, tc := range []struct {
		name string
		size int64
	}{
		{"empty", 0},
		{"noHeader", arenaSize},
	} {
		t.Run(tc.name, func(t *testing.T) {
			q, dir := openTestQueue(t, SetArenaSize(arenaSize))
			require.NoError(t, q.Close())
			require.NoError(t, os.WriteFile(filepath.Join(dir, "arena-0.bq"), make([]byte, tc.size), 0o644))

			q = openTestQueueIn(t, dir, SetArenaSize(arenaSize))
			require.Empty(t, q.Consumers(), "no queue-level read made the default consumer yet")
			require.Zero(t, q.Len(), "Len of an empty queue")
			require.True(t, q.IsEmpty())
			_, err := q.Dequeue()
			require.ErrorIs(t, err, ErrEmptyQueue)
			require.NoError(t, q.EnqueueString("first"))
			s, err := q.DequeueString()
			require.NoError(t, err)
			require.Equal(t, "first", s)
		})
	}
}

// crashStopAtDirSync is the file system of a process that dies at its
// first directory fsync: the call fails, and so does the NewQueue that
// made it, leaving the files as a kill at that moment would.
type crashStopAtDirSync struct{ osFS }

func (crashStopAtDirSync) syncDir(*queueDir) error { return errors.New("killed here") }

// TestCrashFirstOpenInterrupted is the state a kill leaves when it hits the
// NewQueue that creates a queue, after the index is in place: the queue's
// first successful NewQueue opens it, with no consumer (the default one
// comes with the first queue-level read), and the default consumer must
// not miss messages that a named consumer reads first.
//
// It guarded a fixed bug: the default consumer was added only after the
// index was in place, so a NewQueue dying in between left a queue without
// it, which then started at the head. Now the default consumer is made by
// the first queue-level read, at the oldest stored message.
func TestCrashFirstOpenInterrupted(t *testing.T) {
	dir := t.TempDir()
	_, err := NewQueue(dir, SetArenaSize(4096), withFS(crashStopAtDirSync{}))
	require.Error(t, err, "the first NewQueue was to die at its directory sync")

	q := openTestQueueIn(t, dir, SetArenaSize(4096))
	require.Empty(t, q.Consumers(), "a new queue has no consumer")
	for _, s := range []string{"a", "b", "c"} {
		require.NoError(t, q.EnqueueString(s))
	}
	c, err := q.NewConsumer("named")
	require.NoError(t, err)
	for range 3 {
		_, err := c.Dequeue()
		require.NoError(t, err)
	}
	s, err := q.DequeueString()
	require.NoError(t, err, "the default consumer lost what a named consumer read first")
	require.Equal(t, "a", s)
}

// TestCrashLoopChecker checks the loop's checker on queues built in
// process: it must resolve an operation in flight either way and report
// lost, invented and repeated messages.
func TestCrashLoopChecker(t *testing.T) {
	const seed = 7
	enqueue := func(t *testing.T, q *Queue, seq uint64, n int) {
		require.NoError(t, q.Enqueue(appendMessage(nil, seed, seq, n)))
	}
	// base is a queue holding messages 1 to 3 (3 is empty), one of them read
	// by the default consumer, with a named consumer c1 at the start, and
	// the matching model.
	base := func(t *testing.T) (*Queue, *crashModel) {
		q, _ := openTestQueue(t, SetArenaSize(4096))
		m := newCrashModel(1)
		for i, n := range []int{100, 5000, 0} {
			op := crashOp{Kind: 'E', Seq: uint64(i + 1), Lens: []int{n}}
			enqueue(t, q, op.Seq, n)
			m.apply(op)
		}
		_, err := q.NewConsumer("c1")
		require.NoError(t, err)
		m.apply(crashOp{Kind: 'N', Name: "c1"})
		_, err = q.Dequeue()
		require.NoError(t, err)
		m.apply(crashOp{Kind: 'D', Name: defaultConsumerKey})
		return q, m
	}
	for _, tc := range []struct {
		name    string
		pending *crashOp
		act     func(t *testing.T, q *Queue, m *crashModel) // what the queue went through
		applied bool
		counts  *crashCounts // nil: the check passes
	}{
		{name: "idle"},
		{name: "enqueueDone", pending: &crashOp{Kind: 'E', Seq: 4, Lens: []int{20}},
			act: func(t *testing.T, q *Queue, _ *crashModel) { enqueue(t, q, 4, 20) }, applied: true},
		{name: "enqueueNotDone", pending: &crashOp{Kind: 'E', Seq: 4, Lens: []int{20}}},
		{name: "batchDone", pending: &crashOp{Kind: 'B', Seq: 4, Lens: []int{1, 0, 9000}},
			act: func(t *testing.T, q *Queue, _ *crashModel) {
				require.NoError(t, q.EnqueueBatch([][]byte{appendMessage(nil, seed, 4, 1), appendMessage(nil, seed, 5, 0), appendMessage(nil, seed, 6, 9000)}))
			}, applied: true},
		{name: "batchHalfDone", pending: &crashOp{Kind: 'B', Seq: 4, Lens: []int{1, 2}},
			act:    func(t *testing.T, q *Queue, _ *crashModel) { enqueue(t, q, 4, 1) },
			counts: &crashCounts{garbage: 1}},
		{name: "dequeueDone", pending: &crashOp{Kind: 'D', Name: "c1"},
			act: func(t *testing.T, q *Queue, _ *crashModel) {
				c, err := q.NewConsumer("c1")
				require.NoError(t, err)
				_, err = c.Dequeue()
				require.NoError(t, err)
			}, applied: true},
		{name: "newConsumerDone", pending: &crashOp{Kind: 'N', Name: "c2", From: defaultConsumerKey},
			act: func(t *testing.T, q *Queue, _ *crashModel) {
				from, err := q.NewConsumer(defaultConsumerKey)
				require.NoError(t, err)
				_, err = q.FromConsumer("c2", from)
				require.NoError(t, err)
			}, applied: true},
		{name: "deleteNotDone", pending: &crashOp{Kind: 'X', Name: "c1"}},
		{name: "garbage",
			act:    func(t *testing.T, q *Queue, _ *crashModel) { enqueue(t, q, 99, 30) },
			counts: &crashCounts{garbage: 1}},
		{name: "lost",
			act:    func(_ *testing.T, _ *Queue, m *crashModel) { m.apply(crashOp{Kind: 'E', Seq: 4, Lens: []int{20}}) },
			counts: &crashCounts{lost: 1}},
		{name: "duplicate",
			act:    func(_ *testing.T, _ *Queue, m *crashModel) { m.apply(crashOp{Kind: 'D', Name: defaultConsumerKey}) },
			counts: &crashCounts{duplicates: 1}},
		{name: "skipped", pending: &crashOp{Kind: 'D', Name: "c1"},
			act: func(t *testing.T, q *Queue, _ *crashModel) {
				c, err := q.NewConsumer("c1")
				require.NoError(t, err)
				for range 2 {
					_, err = c.Dequeue()
					require.NoError(t, err)
				}
			}, counts: &crashCounts{lost: 1}},
		{name: "deletedComesBack",
			act: func(t *testing.T, q *Queue, m *crashModel) {
				_, err := q.NewConsumer("c2")
				require.NoError(t, err)
				m.apply(crashOp{Kind: 'N', Name: "c2"})
				m.apply(crashOp{Kind: 'X', Name: "c2"})
			}, counts: &crashCounts{garbage: 1}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			q, m := base(t)
			if tc.act != nil {
				tc.act(t, q, m)
			}
			m.Pending = tc.pending
			resolved, applied, problem, counts, err := crashResolve(q, seed, m)
			require.NoError(t, err)
			if tc.counts != nil {
				require.NotEmpty(t, problem)
				t.Log(problem)
				require.Equal(t, *tc.counts, counts)
				return
			}
			require.Empty(t, problem)
			require.Equal(t, tc.applied, applied)
			require.Nil(t, resolved.Pending)
			require.NotContains(t, q.Consumers(), crashVerifier)
		})
	}
}

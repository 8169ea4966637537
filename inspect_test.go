package bigqueue

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io/fs"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"

	"github.com/stretchr/testify/require"
)

// inspectCorrupt stands for an error wrapping ErrCorrupt in the lists of
// what a reader got (inspectMessages, inspectQueueRead).
const inspectCorrupt = "<corrupt>"

// inspectFiles returns the content of every file of dir, to show that an
// inspection changed nothing (it makes no file: the lock is on the
// directory).
func inspectFiles(t *testing.T, dir string) map[string]string {
	t.Helper()
	entries, err := os.ReadDir(dir)
	require.NoError(t, err)
	files := make(map[string]string)
	for _, e := range entries {
		b, err := os.ReadFile(filepath.Join(dir, e.Name()))
		require.NoError(t, err)
		files[e.Name()] = string(b)
	}
	return files
}

// inspectCopy copies the files of the queue directory src into a new
// directory.
func inspectCopy(t *testing.T, src string) string {
	t.Helper()
	dst := t.TempDir()
	for name, b := range inspectFiles(t, src) {
		require.NoError(t, os.WriteFile(filepath.Join(dst, name), []byte(b), 0o644))
	}
	return dst
}

// inspectMessages returns what Messages(name) yields, errors as
// inspectCorrupt (each must wrap ErrCorrupt).
func inspectMessages(t *testing.T, in *Inspection, name string) []string {
	t.Helper()
	var got []string
	for msg, err := range in.Messages(name) {
		if err != nil {
			require.ErrorIs(t, err, ErrCorrupt)
			got = append(got, inspectCorrupt)
			continue
		}
		got = append(got, string(msg))
	}
	return got
}

// inspectQueueRead opens dir and reads the consumer called name to the
// end (a new consumer for "", the queue's default one for
// defaultConsumerKey) and returns what it got, errors as inspectCorrupt.
func inspectQueueRead(t *testing.T, dir, name string) []string {
	t.Helper()
	q, err := NewQueue(dir)
	require.NoError(t, err)
	defer func() { require.NoError(t, q.Close()) }()
	next := q.Dequeue
	if name != defaultConsumerKey {
		if name == "" {
			name = "inspect-test-new"
		}
		c, err := q.NewConsumer(name)
		require.NoError(t, err)
		next = c.Dequeue
	}
	var got []string
	for {
		msg, err := next()
		if errors.Is(err, ErrEmptyQueue) {
			return got
		}
		if err != nil {
			require.ErrorIs(t, err, ErrCorrupt)
			got = append(got, inspectCorrupt)
			continue
		}
		got = append(got, string(msg))
	}
}

// inspectWorkload runs random operations on a queue in dir with 4 KiB
// arenas: messages of 0 bytes to three arenas, consumers that read, are
// copied and deleted, flushes that reclaim, reopens. It returns the open
// queue.
func inspectWorkload(t *testing.T, rng *rand.Rand, dir string) *Queue {
	t.Helper()
	opts := []Option{SetArenaSize(4096), SetPeriodicFlushOps(0), SetPeriodicFlushDuration(0)}
	q, err := NewQueue(dir, opts...)
	require.NoError(t, err)
	names := []string{"a", "b", "c"}
	seq := 0
	for range 400 {
		switch r := rng.IntN(100); {
		case r < 45:
			n := rng.IntN(300)
			if rng.IntN(20) == 0 {
				n = rng.IntN(3 * 4096)
			}
			require.NoError(t, q.Enqueue([]byte(fmt.Sprintf("%d:%s", seq, strings.Repeat("x", n)))))
			seq++
		case r < 55:
			if _, err := q.Dequeue(); err != nil {
				require.ErrorIs(t, err, ErrEmptyQueue)
			}
		case r < 85:
			c, err := q.NewConsumer(names[rng.IntN(len(names))])
			require.NoError(t, err)
			for range rng.IntN(4) {
				if _, err := c.Dequeue(); err != nil {
					require.ErrorIs(t, err, ErrEmptyQueue)
				}
			}
		case r < 88:
			from, err := q.NewConsumer(names[rng.IntN(len(names))])
			require.NoError(t, err)
			_, err = q.FromConsumer(names[rng.IntN(len(names))], from)
			require.NoError(t, err)
		case r < 90:
			if err := q.DeleteConsumer(names[rng.IntN(len(names))]); err != nil {
				require.ErrorIs(t, err, ErrNoConsumer)
			}
		case r < 97:
			require.NoError(t, q.Flush())
		default:
			require.NoError(t, q.Close())
			q, err = NewQueue(dir, opts...)
			require.NoError(t, err)
		}
	}
	return q
}

// inspectCompare inspects dir, checks that the inspection changed no file,
// and compares what it found with what a Queue opened on a copy of dir
// reports and reads: Stats, and every consumer's messages.
func inspectCompare(t *testing.T, dir string) Info {
	t.Helper()
	before := inspectFiles(t, dir)
	in, err := Inspect(dir)
	require.NoError(t, err)
	info := in.Info()
	rep, err := in.Verify(nil)
	require.NoError(t, err)
	require.Empty(t, rep.Damage)
	require.Equal(t, info.Messages, rep.Records, "verify checks every stored message")
	require.Equal(t, info.Bytes, rep.Bytes)
	names := []string{"", defaultConsumerKey}
	for _, c := range info.Consumers {
		if c.Name != defaultConsumerKey {
			names = append(names, c.Name)
		}
	}
	read := make(map[string][]string)
	for _, name := range names {
		read[name] = inspectMessages(t, in, name)
	}
	require.NoError(t, in.Close())
	require.NoError(t, in.Close(), "Close is idempotent")
	require.Equal(t, before, inspectFiles(t, dir), "the inspection changed the directory")

	q, err := NewQueue(inspectCopy(t, dir))
	require.NoError(t, err)
	st := q.Stats()
	require.NoError(t, q.Close())
	require.Equal(t, st.Messages, info.Messages, "messages")
	require.Equal(t, st.Bytes, info.Bytes, "bytes")
	lag := make(map[string]int64)
	for _, c := range info.Consumers {
		lag[c.Name] = c.Lag
		require.False(t, c.Unproven || c.Lost, "consumer %q", c.Name)
	}
	require.Equal(t, st.Lag, lag, "lag")
	for _, name := range names {
		require.Equal(t, inspectQueueRead(t, inspectCopy(t, dir), name), read[name], "consumer %q", name)
	}
	return info
}

// TestInspectMatchesQueue runs random workloads and inspects the
// directory, closed and as a crash would leave it (a copy of the files of
// the open queue), against what a Queue finds there.
func TestInspectMatchesQueue(t *testing.T) {
	seed := testSeed(t)
	t.Logf("seed %d (BIGQUEUE_SEED replays it)", seed)
	for i := range 6 {
		t.Run(fmt.Sprint(i), func(t *testing.T) {
			rng := rand.New(rand.NewPCG(seed, uint64(i)))
			dir := t.TempDir()
			q := inspectWorkload(t, rng, dir)
			crashed := inspectCopy(t, dir)
			require.NoError(t, q.Close())

			info := inspectCompare(t, dir)
			require.True(t, info.Clean)
			require.Zero(t, info.Unflushed)
			require.Zero(t, info.Truncated)
			require.Equal(t, 4096, info.ArenaSize)
			require.Equal(t, formatVersion, info.FormatVersion)

			info = inspectCompare(t, crashed)
			require.Zero(t, info.Truncated)
		})
	}
}

// inspectLayoutQueue writes 100 messages of 100 bytes ("m00".."m99",
// padded) into dir with 4 KiB arenas: record i starts at stream offset
// 116*i, so arena 0 holds records 0-34 (34 spans into arena 1), arena 1's
// first record is 35, arena 2's is 70. Consumer "a" has read 10, "b"
// none. It returns the messages.
func inspectLayoutQueue(t *testing.T, dir string) []string {
	t.Helper()
	q, err := NewQueue(dir, SetArenaSize(4096))
	require.NoError(t, err)
	var msgs []string
	for i := range 100 {
		m := fmt.Sprintf("m%02d%s", i, strings.Repeat(".", 97))
		msgs = append(msgs, m)
		require.NoError(t, q.EnqueueString(m))
	}
	a, err := q.NewConsumer("a")
	require.NoError(t, err)
	_, err = q.NewConsumer("b")
	require.NoError(t, err)
	for range 10 {
		_, err := a.Dequeue()
		require.NoError(t, err)
	}
	require.NoError(t, q.Close())
	return msgs
}

// inspectPatch changes the file name of dir at offset with change.
func inspectPatch(t *testing.T, dir, name string, change func(b []byte)) {
	t.Helper()
	path := filepath.Join(dir, name)
	b, err := os.ReadFile(path)
	require.NoError(t, err)
	change(b)
	require.NoError(t, os.WriteFile(path, b, 0o644))
}

// inspectSlot returns the slot number of consumer name in dir's index.
func inspectSlot(t *testing.T, dir, name string) int {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join(dir, indexFileName))
	require.NoError(t, err)
	list, _ := (&index{data: raw}).consumers()
	for _, c := range list {
		if c.name == name {
			return c.slot
		}
	}
	t.Fatalf("no consumer %q", name)
	return 0
}

// TestInspectDamage damages a queue of known layout in one place each and
// requires Verify to report it with its file and offset, and Messages to
// yield, for every consumer, what the queue itself reads from a copy.
func TestInspectDamage(t *testing.T) {
	const rec = 116 // record size of inspectLayoutQueue
	fileOffset := func(i int) int64 { return int64(arenaHeaderSize + (i*rec)%(4096-arenaHeaderSize)) }
	tests := []struct {
		name   string
		damage func(t *testing.T, dir string)
		// want are the damage reports, as "file@offset"
		want []string
		// skipped are the records readers lose, from..to inclusive
		from, to int
		check    func(t *testing.T, info Info, rep Report)
		// damagedSlot names the consumer whose slot was damaged;
		// damagedDefault says it is the default consumer's.
		damagedSlot    string
		damagedDefault bool
	}{
		{
			name: "payload byte",
			damage: func(t *testing.T, dir string) {
				inspectPatch(t, dir, "arena-1.bq", func(b []byte) { b[fileOffset(40)+recordHeaderSize+5] ^= 1 })
			},
			want: []string{fmt.Sprintf("arena-1.bq@%d", fileOffset(40))}, from: 40, to: 69,
		},
		{
			name: "length",
			damage: func(t *testing.T, dir string) {
				inspectPatch(t, dir, "arena-1.bq", func(b []byte) {
					binary.LittleEndian.PutUint32(b[fileOffset(40)+recordLenOff:], 1<<31)
				})
			},
			want: []string{fmt.Sprintf("arena-1.bq@%d", fileOffset(40))}, from: 40, to: 69,
		},
		{
			name: "sequence number",
			damage: func(t *testing.T, dir string) {
				inspectPatch(t, dir, "arena-0.bq", func(b []byte) { b[fileOffset(12)+recordSeqOff] ^= 4 })
			},
			want: []string{fmt.Sprintf("arena-0.bq@%d", fileOffset(12))}, from: 12, to: 34,
		},
		{
			name: "record spanning into a missing arena",
			damage: func(t *testing.T, dir string) {
				require.NoError(t, os.Remove(filepath.Join(dir, "arena-1.bq")))
			},
			want: []string{"arena-1.bq@0", fmt.Sprintf("arena-0.bq@%d", fileOffset(34))}, from: 34, to: 69,
		},
		{
			name: "stray arena past the tail",
			damage: func(t *testing.T, dir string) {
				// Arena 1 is gone, a stray arena file lies far
				// past the tail, and the index's tail word (which
				// has no checksum) points past it: recovery keeps
				// the tail at the checkpoint and deletes the stray.
				require.NoError(t, os.Rename(filepath.Join(dir, "arena-1.bq"), filepath.Join(dir, "arena-1000.bq")))
				inspectPatch(t, dir, indexFileName, func(b []byte) {
					binary.LittleEndian.PutUint64(b[idxTailOff:], 1001*(4096-arenaHeaderSize))
				})
			},
			want: []string{"arena-1.bq@0", fmt.Sprintf("arena-0.bq@%d", fileOffset(34))},
			from: 34, to: 69,
			check: func(t *testing.T, info Info, rep Report) {
				require.Len(t, info.Arenas, 2)
				require.Equal(t, []string{"arena-1000.bq"}, info.Leftovers)
				require.EqualValues(t, 1001*(4096-arenaHeaderSize)-100*rec, info.Truncated)
			},
		},
		{
			name: "arena renamed far ahead, its header naming its old number",
			damage: func(t *testing.T, dir string) {
				// As above, but the stray arena starts with a valid
				// record, and the checkpoint (checksum recomputed)
				// names it.
				require.NoError(t, os.Rename(filepath.Join(dir, "arena-1.bq"), filepath.Join(dir, "arena-1000.bq")))
				inspectPatch(t, dir, "arena-1000.bq", func(b []byte) {
					msg := []byte("stray")
					encodeRecordHeader(b[arenaHeaderSize:], 1000, msg)
					copy(b[arenaHeaderSize+recordHeaderSize:], msg)
				})
				inspectPatch(t, dir, indexFileName, func(b []byte) {
					off := uint64(1000 * (4096 - arenaHeaderSize))
					binary.LittleEndian.PutUint64(b[idxTailOff:], off+recordHeaderSize+5)
					for i := range 2 {
						c := b[idxCkptOff+i*ckptSize:][:ckptSize]
						binary.LittleEndian.PutUint64(c[ckptOffsetOff:], off)
						binary.LittleEndian.PutUint64(c[ckptSeqOff:], 1000)
						binary.LittleEndian.PutUint32(c[ckptCRCOff:], crc32Of(c[:ckptCRCOff]))
					}
				})
			},
			// The stray file's intact header still names arena 1: the
			// queue refuses every record in it, so the checkpoint that
			// names it cannot be used, and recovery cuts the queue after
			// arena 0 and reports what the checkpoint covered.
			want: []string{fmt.Sprintf("arena-0.bq@%d", fileOffset(34))},
			check: func(t *testing.T, info Info, rep Report) {
				require.Len(t, rep.Damage, 1)
				require.Contains(t, rep.Damage[0].Reason, "records a flush made durable are damaged")
			},
			from: -1, to: -1,
		},
		{
			name: "arena of the wrong size",
			damage: func(t *testing.T, dir string) {
				require.NoError(t, os.Truncate(filepath.Join(dir, "arena-1.bq"), 1000))
			},
			want: []string{"arena-1.bq@0", fmt.Sprintf("arena-0.bq@%d", fileOffset(34))}, from: 34, to: 69,
		},
		{
			name: "arena header",
			damage: func(t *testing.T, dir string) {
				inspectPatch(t, dir, "arena-2.bq", func(b []byte) { b[arenaFirstOff] ^= 1 })
			},
			want: []string{"arena-2.bq@0"}, from: -1, to: -1,
		},
		{
			name: "consumer slot",
			damage: func(t *testing.T, dir string) {
				slot := inspectSlot(t, dir, "a")
				inspectPatch(t, dir, indexFileName, func(b []byte) { b[indexHeaderSize+slot*slotSize+slotCRCOff] ^= 1 })
			},
			want: []string{fmt.Sprintf("index.bq@%d", indexHeaderSize)}, from: -1, to: -1,
			check: func(t *testing.T, info Info, rep Report) {
				require.Equal(t, 1, info.DamagedSlots)
				require.Len(t, info.Consumers, 1)
				require.Contains(t, rep.Damage[0].Reason, `"a"`)
			},
			damagedSlot: "a",
		},
		{
			name: "default consumer slot",
			damage: func(t *testing.T, dir string) {
				q, err := NewQueue(dir)
				require.NoError(t, err)
				_, err = q.Dequeue() // the default consumer, at message 1
				require.NoError(t, err)
				require.NoError(t, q.Close())
				slot := inspectSlot(t, dir, defaultConsumerKey)
				inspectPatch(t, dir, indexFileName, func(b []byte) { b[indexHeaderSize+slot*slotSize+slotCRCOff] ^= 1 })
			},
			want: []string{fmt.Sprintf("index.bq@%d", indexHeaderSize+2*slotSize)}, from: -1, to: -1,
			check: func(t *testing.T, info Info, rep Report) {
				require.Equal(t, 1, info.DamagedSlots)
			},
			damagedDefault: true,
		},
		{
			name: "consumer inside a record",
			damage: func(t *testing.T, dir string) {
				slot := inspectSlot(t, dir, "a")
				inspectPatch(t, dir, indexFileName, func(b []byte) {
					binary.LittleEndian.PutUint64(b[indexHeaderSize+slot*slotSize+slotOffsetOff:], 10*rec+50)
				})
			},
			want: []string{fmt.Sprintf("arena-0.bq@%d", fileOffset(10)+50)}, from: -1, to: -1,
			check: func(t *testing.T, info Info, rep Report) {
				require.True(t, info.Consumers[0].Unproven)
				require.EqualValues(t, 1, info.Consumers[0].Lag, "an unproven position counts one message, as Len does")
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			msgs := inspectLayoutQueue(t, dir)
			tt.damage(t, dir)
			before := inspectFiles(t, dir)
			in, err := Inspect(dir)
			require.NoError(t, err)
			defer func() { require.NoError(t, in.Close()) }()
			var calls int
			rep, err := in.Verify(func(done, total int64) {
				calls++
				require.LessOrEqual(t, done, total)
			})
			require.NoError(t, err)
			require.Positive(t, calls)
			var got []string
			for _, d := range rep.Damage {
				got = append(got, fmt.Sprintf("%s@%d", d.File, d.Offset))
				require.Contains(t, d.String(), d.File)
			}
			require.ElementsMatch(t, tt.want, got, "damage: %v", rep.Damage)
			if tt.from >= 0 {
				require.EqualValues(t, 100-(tt.to-tt.from+1), rep.Records)
				want := slices.Concat(msgs[:tt.from], []string{inspectCorrupt}, msgs[tt.to+1:])
				require.Equal(t, want, inspectMessages(t, in, "b"))
			}
			if tt.check != nil {
				tt.check(t, in.Info(), rep)
			}
			for _, c := range in.Info().Consumers {
				require.Equal(t, inspectQueueRead(t, inspectCopy(t, dir), c.Name), inspectMessages(t, in, c.Name), "consumer %q", c.Name)
			}
			if tt.damagedSlot != "" {
				var errs []error
				for _, err := range in.Messages(tt.damagedSlot) {
					errs = append(errs, err)
				}
				require.Len(t, errs, 1, "a named consumer whose slot is damaged yields that, then nothing")
				require.ErrorIs(t, errs[0], ErrCorrupt)
			}
			if tt.damagedDefault {
				// The queue re-creates the default consumer in its
				// slot at the oldest message and reports the loss.
				require.Equal(t, inspectQueueRead(t, inspectCopy(t, dir), defaultConsumerKey), inspectMessages(t, in, defaultConsumerKey))
				require.Equal(t, slices.Concat([]string{inspectCorrupt}, msgs), inspectMessages(t, in, defaultConsumerKey))
			}
			if in.Info().DamagedSlots == 0 {
				// (A consumer created in the queue would take the
				// damaged slot and report it on its first read.)
				require.Equal(t, inspectQueueRead(t, inspectCopy(t, dir), ""), inspectMessages(t, in, ""), "from the oldest")
			}
			require.Equal(t, before, inspectFiles(t, dir), "the inspection changed the directory")
		})
	}
}

// TestInspectTornTail inspects a crash image whose last records are gone
// (zeroed, as after a power loss that kept the index page but not the
// arena's): Info says what recovery cuts, Verify notes it without calling
// it damage, and Messages ends where the queue does.
func TestInspectTornTail(t *testing.T) {
	src := t.TempDir()
	q, err := NewQueue(src, SetArenaSize(4096), SetPeriodicFlushOps(0), SetPeriodicFlushDuration(0))
	require.NoError(t, err)
	for i := range 20 {
		require.NoError(t, q.EnqueueString(fmt.Sprintf("flushed %d", i)))
	}
	require.NoError(t, q.Flush())
	for i := range 5 {
		require.NoError(t, q.EnqueueString(fmt.Sprintf("unflushed %d", i)))
	}
	dir := inspectCopy(t, src)
	require.NoError(t, q.Close())
	ckpt := (&index{data: []byte(inspectFiles(t, dir)[indexFileName])}).checkpoint()
	inspectPatch(t, dir, "arena-0.bq", func(b []byte) {
		clear(b[arenaHeaderSize+ckpt.offset+40:])
	})

	in, err := Inspect(dir)
	require.NoError(t, err)
	info := in.Info()
	require.False(t, info.Clean)
	require.Positive(t, info.Truncated)
	require.EqualValues(t, 21, info.Messages, "the 20 flushed messages and the first unflushed one, which ends before the zeroed bytes")
	rep, err := in.Verify(nil)
	require.NoError(t, err)
	require.Empty(t, rep.Damage)
	require.Len(t, rep.Notes, 2, "%q", rep.Notes)
	read := inspectMessages(t, in, "")
	require.NoError(t, in.Close())
	require.Equal(t, inspectQueueRead(t, inspectCopy(t, dir), ""), read)
}

// TestInspectRefuses covers the directories Inspect does not open.
func TestInspectRefuses(t *testing.T) {
	t.Run("missing", func(t *testing.T) {
		_, err := Inspect(filepath.Join(t.TempDir(), "none"))
		require.ErrorIs(t, err, fs.ErrNotExist)
	})
	t.Run("empty", func(t *testing.T) {
		dir := t.TempDir()
		_, err := Inspect(dir)
		require.ErrorIs(t, err, fs.ErrNotExist)
		entries, err := os.ReadDir(dir)
		require.NoError(t, err)
		require.Empty(t, entries, "Inspect created a file")
	})
	t.Run("original", func(t *testing.T) {
		dir := t.TempDir()
		require.NoError(t, os.WriteFile(filepath.Join(dir, "metadata.dat"), make([]byte, 64), 0o644))
		_, err := Inspect(dir)
		require.ErrorIs(t, err, ErrForeignQueue)
	})
	t.Run("locked", func(t *testing.T) {
		q, dir := openTestQueue(t)
		require.NoError(t, q.EnqueueString("x"))
		_, err := Inspect(dir)
		require.ErrorIs(t, err, ErrLocked)
		_, err = ProbeTail(dir)
		require.NoError(t, err, "ProbeTail takes no lock")
	})
	// A FIFO planted as the index blocks none of the calls that read it
	// (an open for reading waits for a writer unless O_NONBLOCK): each
	// reports it as a damaged index.
	t.Run("fifo index", func(t *testing.T) {
		dir := t.TempDir()
		fifo := filepath.Join(dir, indexFileName)
		require.NoError(t, syscall.Mkfifo(fifo, 0o644))
		errs := runPastFIFO(t, fifo, func() (errs [3]error) {
			_, errs[0] = ProbeTail(dir)
			if in, err := Inspect(dir); err == nil {
				errs[1] = in.Close()
			} else {
				errs[1] = err
			}
			if q, err := NewQueue(dir); err == nil {
				errs[2] = q.Close()
			} else {
				errs[2] = err
			}
			return errs
		})
		require.ErrorIs(t, errs[0], ErrCorrupt, "ProbeTail")
		require.ErrorIs(t, errs[1], ErrCorrupt, "Inspect")
		require.ErrorIs(t, errs[2], ErrCorrupt, "NewQueue")
	})
	t.Run("holds the lock", func(t *testing.T) {
		dir := t.TempDir()
		inspectLayoutQueue(t, dir)
		in, err := Inspect(dir)
		require.NoError(t, err)
		_, err = NewQueue(dir)
		require.ErrorIs(t, err, ErrLocked)
		_, err = Inspect(dir)
		require.ErrorIs(t, err, ErrLocked)
		require.NoError(t, in.Close())
		q, err := NewQueue(dir)
		require.NoError(t, err)
		require.NoError(t, q.Close())
		_, err = in.Verify(nil)
		require.ErrorIs(t, err, ErrClosed)
		for _, err := range in.Messages("") {
			require.ErrorIs(t, err, ErrClosed)
		}
	})
	t.Run("index header", func(t *testing.T) {
		dir := t.TempDir()
		inspectLayoutQueue(t, dir)
		inspectPatch(t, dir, indexFileName, func(b []byte) { b[idxArenaSizeOff] ^= 1 })
		_, err := Inspect(dir)
		require.ErrorIs(t, err, ErrCorrupt)
		_, err = ProbeTail(dir)
		require.ErrorIs(t, err, ErrCorrupt)
	})
	t.Run("index version", func(t *testing.T) {
		dir := t.TempDir()
		inspectLayoutQueue(t, dir)
		inspectPatch(t, dir, indexFileName, func(b []byte) { b[idxVersionOff] = 9 })
		_, err := Inspect(dir)
		require.ErrorIs(t, err, ErrIncompatibleVersion)
	})
	t.Run("index size", func(t *testing.T) {
		dir := t.TempDir()
		inspectLayoutQueue(t, dir)
		require.NoError(t, os.Truncate(filepath.Join(dir, indexFileName), initialIndexSize+1))
		_, err := Inspect(dir)
		require.ErrorIs(t, err, ErrCorrupt)
	})
	t.Run("unknown consumer", func(t *testing.T) {
		dir := t.TempDir()
		inspectLayoutQueue(t, dir)
		in, err := Inspect(dir)
		require.NoError(t, err)
		defer func() { require.NoError(t, in.Close()) }()
		for _, err := range in.Messages("nobody") {
			require.ErrorIs(t, err, ErrNoConsumer)
		}
		n := 0
		for msg, err := range in.Messages(defaultConsumerKey) {
			require.NoError(t, err)
			require.Len(t, msg, 100)
			n++
			if n == 3 {
				break // a break ends the iteration
			}
		}
		require.Equal(t, 3, n)
	})
}

// TestProbeTail shows the probe moving with enqueues made while another
// Queue holds the directory.
func TestProbeTail(t *testing.T) {
	q, dir := openTestQueue(t)
	before, err := ProbeTail(dir)
	require.NoError(t, err)
	require.NoError(t, q.EnqueueString("one"))
	after, err := ProbeTail(dir)
	require.NoError(t, err)
	require.Greater(t, after, before)
	_, err = ProbeTail(t.TempDir())
	require.ErrorIs(t, err, fs.ErrNotExist)
}

// TestInspectLargeMessage reads a message larger than the read buffer
// and spanning arenas, and a damaged one, which is checked before it is
// allocated.
func TestInspectLargeMessage(t *testing.T) {
	dir := t.TempDir()
	q, err := NewQueue(dir, SetArenaSize(64<<10))
	require.NoError(t, err)
	big := make([]byte, 3*readerChunk+123)
	for i := range big {
		big[i] = byte(i * 7)
	}
	require.NoError(t, q.Enqueue(big))
	require.NoError(t, q.EnqueueString("after"))
	require.NoError(t, q.Close())

	in, err := Inspect(dir)
	require.NoError(t, err)
	var got [][]byte
	for msg, err := range in.Messages("") {
		require.NoError(t, err)
		got = append(got, slices.Clone(msg))
	}
	require.Equal(t, [][]byte{big, []byte("after")}, got)
	require.NoError(t, in.Close())

	inspectPatch(t, dir, "arena-20.bq", func(b []byte) { b[1000] ^= 1 })
	in, err = Inspect(dir)
	require.NoError(t, err)
	defer func() { require.NoError(t, in.Close()) }()
	rep, err := in.Verify(nil)
	require.NoError(t, err)
	require.Len(t, rep.Damage, 1)
	require.Equal(t, "arena-0.bq", rep.Damage[0].File)
	require.Equal(t, []string{inspectCorrupt, "after"}, inspectMessages(t, in, ""))
}

// FuzzInspect cuts the fuzz bytes into a queue directory as
// FuzzOpenDirectory does and inspects it: nothing may panic, run away or
// change a file, and every message Messages yields must be the payload of
// a record with a valid checksum in the input. Seeds: those of
// FuzzOpenDirectory (same arguments).
func FuzzInspect(f *testing.F) {
	root := memDir(f)
	fuzzAddSeeds(f)
	f.Fuzz(func(t *testing.T, data []byte, layout uint8) {
		files := fuzzSplit(data, layout)
		stream := fuzzStream(files)
		dir := fuzzExecDir(t, root)
		fuzzWriteFiles(t, dir, files)
		before := inspectFiles(t, dir)
		in, err := Inspect(dir)
		if err != nil {
			require.False(t, errors.Is(err, ErrLocked), "%v", err)
			require.Equal(t, before, inspectFiles(t, dir))
			return
		}
		info := in.Info()
		require.GreaterOrEqual(t, info.Messages, int64(0))
		_, err = in.Verify(func(done, total int64) { require.LessOrEqual(t, done, total) })
		require.NoError(t, err)
		names := []string{""}
		for _, c := range info.Consumers {
			names = append(names, c.Name)
		}
		read := make(map[string][]string)
		for _, name := range names {
			for msg, err := range in.Messages(name) {
				if err != nil {
					require.ErrorIs(t, err, ErrCorrupt)
					read[name] = append(read[name], inspectCorrupt)
					continue
				}
				require.True(t, len(msg) == 0 || fuzzHasFrame(stream, msg), "message %q is no intact record of the input", msg)
				read[name] = append(read[name], string(msg))
			}
		}
		require.NoError(t, in.Close())
		require.Equal(t, before, inspectFiles(t, dir), "the inspection changed the directory")

		// Every consumer reads from a queue what Messages showed.
		for _, c := range info.Consumers {
			got, ok := fuzzQueueRead(t, inspectCopy(t, dir), c.Name)
			if ok {
				require.Equal(t, got, read[c.Name], "consumer %q", c.Name)
			}
		}
	})
}

// fuzzQueueRead is inspectQueueRead for fuzz inputs: ok is false when the
// queue does not open or a read fails with anything but ErrCorrupt.
func fuzzQueueRead(t *testing.T, dir, name string) ([]string, bool) {
	q, err := NewQueue(dir)
	if err != nil {
		return nil, false
	}
	defer func() { require.NoError(t, q.Close()) }()
	c, err := q.NewConsumer(name)
	if err != nil {
		return nil, false
	}
	var got []string
	for {
		msg, err := c.Dequeue()
		switch {
		case errors.Is(err, ErrEmptyQueue):
			return got, true
		case errors.Is(err, ErrCorrupt):
			got = append(got, inspectCorrupt)
		case err != nil:
			return nil, false
		default:
			got = append(got, string(msg))
		}
	}
}

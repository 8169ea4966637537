package main

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/bigqueue-go/bigqueue"
	"github.com/spf13/cobra"
)

// This file holds the commands that only read: stat, consumers, verify,
// peek and dump. They go through bigqueue.Inspect, which locks the queue
// directory, reads with pread and writes nothing.

// inspect opens dir read-only and calls fn with the inspection.
func (e *env) inspect(dir string, fn func(in *bigqueue.Inspection) error) error {
	in, err := bigqueue.Inspect(dir)
	if err != nil {
		return e.fail(err)
	}
	err = fn(in)
	if cerr := in.Close(); err == nil && cerr != nil {
		err = e.fail(cerr)
	}
	return err
}

// statJSON is the output of stat -json.
type statJSON struct {
	Dir            string         `json:"dir"`
	FormatVersion  int            `json:"format_version"`
	QueueID        string         `json:"queue_id"`
	ArenaSize      int            `json:"arena_size"`
	Arenas         []arenaJSON    `json:"arenas"`
	ArenaBytes     int64          `json:"arena_bytes"`
	DiskBytes      int64          `json:"disk_bytes"`
	Spares         []string       `json:"spares"`
	SetAside       []string       `json:"set_aside"`
	Leftovers      []string       `json:"leftovers"`
	Messages       int64          `json:"messages"`
	Bytes          int64          `json:"bytes"`
	Consumers      []consumerJSON `json:"consumers"`
	DamagedSlots   int            `json:"damaged_slots"`
	Clean          bool           `json:"clean"`
	Flushes        uint64         `json:"flushes"`
	UnflushedBytes int64          `json:"unflushed_bytes"`
	TruncatedBytes int64          `json:"truncated_bytes"`
	IndexModified  time.Time      `json:"index_modified"`
}

type arenaJSON struct {
	ID        uint64 `json:"id"`
	Name      string `json:"name"`
	Size      int64  `json:"size"`
	DiskBytes int64  `json:"disk_bytes"`
}

type consumerJSON struct {
	Name     string `json:"name"`
	Lag      int64  `json:"lag"`
	Offset   uint64 `json:"offset"`
	Unproven bool   `json:"unproven,omitempty"`
	Lost     bool   `json:"lost,omitempty"`
}

// diskBytes returns the bytes of disk blocks allocated to the file at
// path (arena files are sparse), or 0 when it cannot tell.
func diskBytes(path string) int64 {
	fi, err := os.Stat(path)
	if err != nil {
		return 0
	}
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		return int64(st.Blocks) * 512
	}
	return 0
}

func statOf(dir string, info bigqueue.Info) statJSON {
	s := statJSON{
		Dir: dir, FormatVersion: info.FormatVersion, QueueID: fmt.Sprintf("%016x", info.QueueID),
		ArenaSize: info.ArenaSize, Arenas: []arenaJSON{}, Spares: nonNil(info.Spares), SetAside: nonNil(info.SetAside),
		Leftovers: nonNil(info.Leftovers), Messages: info.Messages, Bytes: info.Bytes, Consumers: []consumerJSON{},
		DamagedSlots: info.DamagedSlots, Clean: info.Clean, Flushes: info.Flushes,
		UnflushedBytes: info.Unflushed, TruncatedBytes: info.Truncated, IndexModified: info.IndexModified,
	}
	for _, a := range info.Arenas {
		disk := diskBytes(filepath.Join(dir, a.Name))
		s.Arenas = append(s.Arenas, arenaJSON{ID: a.ID, Name: a.Name, Size: a.Size, DiskBytes: disk})
		s.ArenaBytes += a.Size
		s.DiskBytes += disk
	}
	for _, c := range info.Consumers {
		s.Consumers = append(s.Consumers, consumerJSON{Name: c.Name, Lag: c.Lag, Offset: c.Offset, Unproven: c.Unproven, Lost: c.Lost})
	}
	return s
}

func nonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}

func newStat(e *env) *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "stat DIR",
		Short: "Show a queue's format, arenas, messages, consumers and last flush",
		Long: `stat shows the format version and queue id, the arena size, the arena
files on disk with their size and the disk blocks they use, the messages
stored, every consumer with its lag (messages it has not read), and the
state of the last flush: the checkpoints written, the bytes a power loss
could take (past the last checkpoint), whether the queue was closed
cleanly, and when its index was last written. The format stores no time,
so that is the index file's modification time. stat reads the index and
the records written since the last flush only; it changes nothing.`,
		Args: argsBetween(1, 1, "DIR"),
		RunE: func(_ *cobra.Command, args []string) error {
			return e.inspect(args[0], func(in *bigqueue.Inspection) error {
				s := statOf(args[0], in.Info())
				w := bufio.NewWriter(e.stdout)
				if asJSON {
					enc := json.NewEncoder(w)
					enc.SetIndent("", "  ")
					if err := enc.Encode(s); err != nil {
						return e.fail(err)
					}
				} else {
					printStat(w, s)
				}
				if err := w.Flush(); err != nil {
					return e.fail(err)
				}
				return nil
			})
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print a JSON object (see the README for its fields)")
	return cmd
}

func printStat(out io.Writer, s statJSON) {
	w := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	fmt.Fprintf(w, "queue\t%s\n", s.Dir)
	fmt.Fprintf(w, "format\tversion %d, queue id %s\n", s.FormatVersion, s.QueueID)
	fmt.Fprintf(w, "arena size\t%s (%d bytes)\n", humanBytes(int64(s.ArenaSize)), s.ArenaSize)
	switch n := len(s.Arenas); n {
	case 0:
		fmt.Fprintf(w, "arenas\tnone\n")
	default:
		names := s.Arenas[0].Name
		if n > 1 {
			names += " to " + s.Arenas[n-1].Name
		}
		fmt.Fprintf(w, "arenas\t%d on disk (%s): %s in files, %s of disk blocks\n", n, names, humanBytes(s.ArenaBytes), humanBytes(s.DiskBytes))
	}
	if len(s.Spares) > 0 {
		fmt.Fprintf(w, "spares\t%d %v (consumed arenas kept for reuse, or the next arena prepared)\n", len(s.Spares), s.Spares)
	}
	if len(s.SetAside) > 0 {
		fmt.Fprintf(w, "set aside\t%v (arena files set aside for damage, never read again)\n", s.SetAside)
	}
	if len(s.Leftovers) > 0 {
		fmt.Fprintf(w, "leftovers\t%v (the next open deletes them, or sets aside another queue's)\n", s.Leftovers)
	}
	fmt.Fprintf(w, "messages\t%d (%s with record headers)\n", s.Messages, humanBytes(s.Bytes))
	fmt.Fprintf(w, "consumers\t%d\n", len(s.Consumers))
	for _, c := range s.Consumers {
		note := ""
		switch {
		case c.Unproven:
			note = " (position is no record boundary: its next read reports damage)"
		case c.Lost:
			note = " (took a damaged slot: its next read reports the lost position)"
		}
		fmt.Fprintf(w, "  %s\tlag %d, at offset %d%s\n", c.Name, c.Lag, c.Offset, note)
	}
	if s.DamagedSlots > 0 {
		fmt.Fprintf(w, "damaged slots\t%d consumer slots fail their checksum (run verify)\n", s.DamagedSlots)
	}
	fmt.Fprintf(w, "last flush\t%d checkpoints written; %s past the last one; index written %s\n",
		s.Flushes, humanBytes(s.UnflushedBytes), s.IndexModified.Format(time.RFC3339))
	switch {
	case s.Clean:
		fmt.Fprintf(w, "shutdown\tclean\n")
	case s.TruncatedBytes > 0:
		fmt.Fprintf(w, "shutdown\tnot clean: the next open recovers it and cuts %s of torn records at the tail\n", humanBytes(s.TruncatedBytes))
	default:
		fmt.Fprintf(w, "shutdown\tnot clean: the next open recovers it\n")
	}
	w.Flush() // a tabwriter over a bufio.Writer; the caller's Flush reports write errors
}

func newConsumers(e *env) *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "consumers DIR",
		Short: "List the consumers of a queue with their lag",
		Long: `consumers lists every consumer of the queue, sorted by name, with the
number of messages it has not read and the stream offset of its next
message. It changes nothing. "consumers delete DIR NAME" deletes one.`,
		Args: argsBetween(1, 1, "DIR"),
		RunE: func(_ *cobra.Command, args []string) error {
			return e.inspect(args[0], func(in *bigqueue.Inspection) error {
				s := statOf(args[0], in.Info())
				w := bufio.NewWriter(e.stdout)
				if asJSON {
					enc := json.NewEncoder(w)
					enc.SetIndent("", "  ")
					if err := enc.Encode(s.Consumers); err != nil {
						return e.fail(err)
					}
				} else {
					tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
					fmt.Fprintf(tw, "NAME\tLAG\tOFFSET\n")
					for _, c := range s.Consumers {
						fmt.Fprintf(tw, "%s\t%d\t%d\n", c.Name, c.Lag, c.Offset)
					}
					tw.Flush() // see printStat
				}
				if err := w.Flush(); err != nil {
					return e.fail(err)
				}
				return nil
			})
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, `print a JSON array of {"name","lag","offset"}`)
	cmd.AddCommand(newConsumersDelete(e))
	return cmd
}

func newVerify(e *env) *cobra.Command {
	return &cobra.Command{
		Use:   "verify DIR",
		Short: "Check every record, arena and consumer of a queue",
		Long: `verify walks every stored record from the oldest to the newest and checks
its length, sequence number and CRC32C checksum; it checks that every arena
file between the oldest and the newest is there, of the arena size, with
an intact header, and every consumer slot and position. Each damage is
printed with its arena, file and byte offset, and what readers will skip;
notes say what is not damage (an unclean shutdown that the next open
recovers from, files it deletes). verify changes nothing. It shows a
progress bar on a terminal.

Exit status: 0 clean, 1 damaged, 2 could not open.`,
		Args: argsBetween(1, 1, "DIR"),
		RunE: func(_ *cobra.Command, args []string) error {
			return e.inspect(args[0], func(in *bigqueue.Inspection) error {
				bar := newProgress(e.stderr, "verify", true)
				rep, err := in.Verify(bar.update)
				bar.finish()
				if err != nil {
					return e.fail(err)
				}
				w := bufio.NewWriter(e.stdout)
				for _, d := range rep.Damage {
					fmt.Fprintf(w, "damage: %s\n", d)
				}
				for _, n := range rep.Notes {
					fmt.Fprintf(w, "note: %s\n", n)
				}
				status := "ok"
				if len(rep.Damage) > 0 {
					status = fmt.Sprintf("DAMAGED in %d places", len(rep.Damage))
				}
				fmt.Fprintf(w, "%s: %d records, %s checked: %s\n", args[0], rep.Records, humanBytes(rep.Bytes), status)
				if err := w.Flush(); err != nil {
					return e.fail(err)
				}
				if len(rep.Damage) > 0 {
					return &cmdError{code: exitFailed}
				}
				return nil
			})
		},
	}
}

// printMessages prints what in.Messages(name) yields, at most n messages
// when n > 0, and returns the exit status: damage met is reported on
// stderr and makes it exitFailed; no message at all, with empty, makes
// it exitEmpty.
func (e *env) printMessages(in *bigqueue.Inspection, name string, n int, f format, empty bool) error {
	w := bufio.NewWriter(e.stdout)
	printed, damaged := 0, false
	for msg, err := range in.Messages(name) {
		if errors.Is(err, bigqueue.ErrCorrupt) {
			damaged = true
			fmt.Fprintf(e.stderr, "bigqueue: damage: %v\n", err)
			continue
		}
		if err != nil {
			return e.fail(err)
		}
		if err := f.write(w, msg); err != nil {
			return e.fail(err)
		}
		printed++
		if n > 0 && printed == n {
			break
		}
	}
	if err := w.Flush(); err != nil {
		return e.fail(err)
	}
	switch {
	case damaged:
		return &cmdError{code: exitFailed}
	case printed == 0 && empty:
		return &cmdError{code: exitEmpty}
	}
	return nil
}

func newPeek(e *env) *cobra.Command {
	var (
		consumer string
		n        int
		f        format
	)
	cmd := &cobra.Command{
		Use:   "peek DIR",
		Short: "Print the next messages a consumer would read, without consuming them",
		Long: `peek prints the next messages the consumer would read (by default the
queue's default consumer, which Queue.Dequeue reads through; when it does
not exist yet, from the oldest stored message), without moving it or
changing any file. -n sets how many (0: all). Each message is printed on a
line of its own unless -0, -raw, -hex or -json says otherwise.

Exit status 3 when there is no message to print; 1 when a damaged record
was met (reported on stderr; the messages after it are printed).`,
		Args: argsBetween(1, 1, "DIR"),
		RunE: func(_ *cobra.Command, args []string) error {
			if n < 0 {
				return usageError("-n must be 0 (all) or more, not %d", n)
			}
			return e.inspect(args[0], func(in *bigqueue.Inspection) error {
				return e.printMessages(in, consumer, n, f, true)
			})
		},
	}
	cmd.Flags().StringVarP(&consumer, "consumer", "c", defaultConsumer, "the consumer whose next messages to print")
	cmd.Flags().IntVarP(&n, "count", "n", 1, "how many messages to print; 0 for all")
	addFormatFlags(cmd, &f)
	return cmd
}

func newDump(e *env) *cobra.Command {
	var (
		n int
		f format
	)
	cmd := &cobra.Command{
		Use:   "dump DIR",
		Short: "Print every stored message, from the oldest, without consuming any",
		Long: `dump prints every message still stored, from the oldest to the newest,
whoever has read it, without moving any consumer or changing any file.
-n stops after that many messages. The formats are those of peek.

Exit status 1 when a damaged record was met (reported on stderr; the
messages after it are printed).`,
		Args: argsBetween(1, 1, "DIR"),
		RunE: func(_ *cobra.Command, args []string) error {
			if n < 0 {
				return usageError("-n must be 0 (all) or more, not %d", n)
			}
			return e.inspect(args[0], func(in *bigqueue.Inspection) error {
				return e.printMessages(in, "", n, f, false)
			})
		},
	}
	cmd.Flags().IntVarP(&n, "count", "n", 0, "stop after this many messages; 0 for all")
	addFormatFlags(cmd, &f)
	return cmd
}

// defaultConsumer is the name of the consumer Queue.Dequeue reads
// through, documented in the library's package doc.
const defaultConsumer = "__default__"

// Command bigqueue inspects, verifies, fills and drains a queue directory
// of github.com/bigqueue-go/bigqueue from the shell.
//
//	bigqueue stat DIR [-json]          format, arenas, messages, consumers, last flush
//	bigqueue consumers DIR [-json]     consumers with their lag
//	bigqueue consumers delete DIR NAME delete a consumer
//	bigqueue verify DIR                check every record; exit 0 clean, 1 damaged, 2 could not open
//	bigqueue peek DIR [-consumer NAME] [-n N] [-0|-raw|-hex|-json]
//	bigqueue dump DIR [-n N] [-0|-raw|-hex|-json]
//	bigqueue push DIR [-0|-raw]        enqueue stdin: lines, NUL-terminated, or one message
//	bigqueue pop DIR [-consumer NAME] [-n N] [-wait] [-0|-raw|-hex|-json]
//	bigqueue import SRC DST            convert a queue of grandecola/bigqueue
//	bigqueue bench [-size 128] [-n 1000000] [DIR]
//	bigqueue forward DIR --subject S [--server URL] [--consumer NAME] [--stream NAME] [--once]
//
// Every command has -h; bigqueue --version says which build it is. Errors
// go to stderr, output to stdout. The README of the repository documents
// each command with examples.
//
// # Exit status
//
//	0    success
//	1    an error; or damage found: verify found any, or peek, dump or pop
//	     met a damaged record (reported on stderr; they go on past it as a
//	     consumer does), or the index itself is damaged
//	2    the queue could not be opened: another process holds it
//	     (bigqueue.ErrLocked), no queue there, a queue of the original
//	     library or other files, another format version, no permission,
//	     or (import) a destination that is not empty
//	3    peek or pop found no message
//	64   bad command line (EX_USAGE): the usage is printed
//	130  pop -wait, bench or forward interrupted by SIGINT or SIGTERM
//
// # Decisions where the issue is silent
//
//   - Usage errors exit with 64, not 2 as Go's flag package does: verify's
//     2 means "could not open", and a script should tell the two apart.
//   - Flags take one dash or two (-json, --json), like Go's own tools and
//     GNU's; the single-letter ones (-n, -c, -0, -h) are shorthands of
//     --count, --consumer, --null and --help. Flags may come before or
//     after the arguments, even before the command's name. A word after
//     "--" is an argument even when it starts with a dash.
//   - A queue has one owner at a time. The read-only commands (stat,
//     consumers, verify, peek, dump) take the directory's lock too, for
//     as long as they run, so that nothing changes under them: meanwhile a
//     program's NewQueue on the directory fails with ErrLocked. They read
//     with pread and write nothing (the lock is an flock on the directory
//     itself, no file).
//   - peek reads through the default consumer (__default__, the one
//     Queue.Dequeue uses) unless -consumer names another; when the default
//     consumer does not exist yet it starts at the oldest stored message,
//     where Queue.Dequeue would create it. dump prints every message still
//     on disk from the oldest, including those every consumer has read but
//     that a flush has not reclaimed yet.
//   - pop writes a message to stdout, flushes it, and only then commits it
//     (Peek, write, Dequeue): a message pop could not write stays in the
//     queue, so delivery is at-least-once. pop creates no consumer but the
//     default one: a typo must not create a consumer that pins the data.
//   - pop -wait: a producer can only enqueue while pop does not hold the
//     queue. So pop closes it while it waits and polls the index's tail
//     every 100 ms without the lock (bigqueue.ProbeTail), and opens the
//     queue again only when messages were enqueued since; a producer
//     opening the queue in that moment gets ErrLocked and must retry.
//     With -wait a queue held by another process is waited for (pop says
//     so on stderr once); without it, it is refused with exit status 2.
//   - push strips the delimiter only ("\r" stays), takes an empty line as
//     an empty message, and a last line without a newline as a message
//     when it is not empty. It creates the queue with the default options
//     when DIR holds none; pop and consumers delete never create one.
//   - Output: one message per line by default; -0 ends each with a NUL
//     byte, -raw writes messages back to back (for one binary message),
//     -hex writes each in hex on a line, -json writes
//     {"bytes":N,"text":"..."} per line, with "base64" instead of "text"
//     when the message is not valid UTF-8, and no HTML escaping.
//   - stat's "last flush": the format stores no time, so stat shows how
//     many checkpoints were written (one per flush that had something to
//     write), how many bytes lie past the last one (what a power loss could
//     take), whether the queue was closed cleanly, and the index file's
//     modification time, the last time the queue wrote its state.
//   - verify calls damage what readers will report as ErrCorrupt or what
//     loses data a flush made durable. Records past the last checkpoint
//     that an unclean shutdown tore are a note, not damage: the next
//     NewQueue cuts them, as the durability contract allows. A progress
//     bar shows on stderr when it is a terminal, for verify and import.
//   - bench's DIR chooses the file system: the queue goes in a new
//     temporary directory inside it, removed at the end (also on SIGINT).
//     It uses the default options, times the enqueue loop and the dequeue
//     loop (DequeueAppend, no allocation) apart from the flush between
//     them, and counts MB/s as 10^6 bytes of payload per second.
//   - forward publishes a consumer's messages to a JetStream subject with
//     the jetstream module's Forwarder (exactly once within the stream's
//     duplicate window, in order). It holds the queue while it forwards
//     what there is (Forwarder.Drain), then closes it and polls the
//     index's tail as pop -wait does, so that producers of other
//     processes get their turn; after a failure it closes the queue too
//     and tries again after a jittered backoff (100 ms doubling to 5 s),
//     saying so once on stderr. It creates its consumer (default
//     "jetstream") when missing: unlike pop it is meant to run for good,
//     and its first run must create it. --stream creates a stream of that
//     name on the subject (file storage, the server's defaults) only when
//     none of that name exists; it never changes one. The connection
//     reconnects for ever and has no reconnect buffer (a publish while it
//     is down fails at once). --once exits 1 at the first failure, for
//     scripts. On exit it prints how many messages it forwarded.
//   - Only pop -wait, bench and forward catch SIGINT and SIGTERM, to close
//     the queue or remove their directory; the other commands are safe to
//     kill: the read-only ones write nothing, and a killed push is a
//     process crash, which keeps every message it enqueued.
//   - The module needs Go 1.26 (nats.go v1.55.0's and nats-server
//     v2.15.2's requirement, for forward); the library itself needs 1.23.
package main

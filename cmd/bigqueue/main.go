package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/signal"
	"runtime"
	"runtime/debug"
	"strings"
	"syscall"

	"github.com/bigqueue-go/bigqueue"
	"github.com/bigqueue-go/bigqueue/migrate"
	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
)

// Exit statuses, documented in the package doc and the README.
const (
	exitOK          = 0   // success
	exitFailed      = 1   // an error, or damage found
	exitCannotOpen  = 2   // the queue could not be opened
	exitEmpty       = 3   // peek or pop found no message
	exitUsage       = 64  // bad command line (EX_USAGE of sysexits.h)
	exitInterrupted = 130 // SIGINT or SIGTERM
)

// version is set at link time (-ldflags "-X main.version=v1.2.3"); else
// the module version and VCS revision of the build are shown.
var version = ""

func main() {
	os.Exit(run(os.Args[1:], os.Stdin, os.Stdout, os.Stderr))
}

// env is what the commands read and write: the standard streams, and a
// context that SIGINT or SIGTERM cancel once a command asked for it
// (interruptible).
type env struct {
	ctx    context.Context
	stdin  io.Reader
	stdout io.Writer
	stderr io.Writer
}

// interruptible makes SIGINT and SIGTERM cancel e.ctx instead of killing
// the process, for the commands that must stop cleanly (pop closes the
// queue, bench removes its directory); a second signal kills as usual.
// The other commands are safe to kill at any point: the read-only ones
// write nothing, and a killed push is a process crash, which loses
// nothing it enqueued. The caller defers the returned stop.
func (e *env) interruptible() func() {
	ctx, stop := signal.NotifyContext(e.ctx, os.Interrupt, syscall.SIGTERM)
	e.ctx = ctx
	go func() {
		<-ctx.Done()
		stop()
	}()
	return stop
}

// run runs the command line args and returns the exit status.
func run(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	e := &env{ctx: context.Background(), stdin: stdin, stdout: stdout, stderr: stderr}
	root := newRoot(e)
	root.SetArgs(normalizeArgs(root, args))
	root.SetIn(stdin)
	root.SetOut(stdout)
	root.SetErr(stderr)
	cmd, err := root.ExecuteC()
	if err == nil {
		return exitOK
	}
	var ce *cmdError
	if !errors.As(err, &ce) {
		// Everything cobra returns itself is a usage error: an unknown
		// command or flag, a bad flag value, wrong arguments.
		fmt.Fprintf(stderr, "bigqueue: %v\n\n", err)
		fmt.Fprint(stderr, cmd.UsageString())
		return exitUsage
	}
	if ce.err != nil {
		fmt.Fprintf(stderr, "bigqueue: %s: %v\n", cmd.Name(), ce.err)
		if hint := hintFor(ce.err); hint != "" {
			fmt.Fprintf(stderr, "bigqueue: %s\n", hint)
		}
	}
	return ce.code
}

// cmdError carries a command's exit status and the error to print (nil
// when the command printed what went wrong itself).
type cmdError struct {
	code int
	err  error
}

func (e *cmdError) Error() string {
	if e.err == nil {
		return fmt.Sprintf("exit status %d", e.code)
	}
	return e.err.Error()
}

// fail turns err into the command's exit status: exitCannotOpen for a
// queue that could not be opened, exitInterrupted after a signal, else
// exitFailed.
func (e *env) fail(err error) error {
	code := exitFailed
	switch {
	case e.ctx.Err() != nil && errors.Is(err, context.Canceled):
		return &cmdError{code: exitInterrupted, err: errors.New("interrupted")}
	case errors.Is(err, bigqueue.ErrCorrupt):
		// A damaged queue is damage, even when it cannot be opened.
	case errors.Is(err, bigqueue.ErrLocked), errors.Is(err, fs.ErrNotExist), errors.Is(err, fs.ErrPermission),
		errors.Is(err, bigqueue.ErrForeignQueue), errors.Is(err, bigqueue.ErrIncompatibleVersion),
		errors.Is(err, migrate.ErrNotEmpty):
		code = exitCannotOpen
	}
	return &cmdError{code: code, err: err}
}

// hintFor returns what an operator can do about err, or "".
func hintFor(err error) string {
	switch {
	case errors.Is(err, bigqueue.ErrLocked):
		return "another process has the queue open (a queue has one owner at a time); stop it, or retry once it has closed the queue"
	case errors.Is(err, bigqueue.ErrForeignQueue) && strings.Contains(err.Error(), "grandecola"):
		return "convert it with: bigqueue import SRC NEWDIR"
	}
	return ""
}

// usageError marks an error of the command line.
func usageError(format string, args ...any) error { return fmt.Errorf(format, args...) }

// args returns a cobra.PositionalArgs that wants between min and max
// arguments, named in the error.
func argsBetween(lo, hi int, names string) cobra.PositionalArgs {
	return func(cmd *cobra.Command, args []string) error {
		if len(args) < lo || len(args) > hi {
			return usageError("%s wants %s, got %d arguments", cmd.Name(), names, len(args))
		}
		return nil
	}
}

func newRoot(e *env) *cobra.Command {
	root := &cobra.Command{
		Use:   "bigqueue",
		Short: "Inspect, verify and pipe a bigqueue queue directory from the shell",
		Long: `bigqueue looks inside, checks, fills and drains a queue directory of
github.com/bigqueue-go/bigqueue. A queue has one owner at a time: every
command refuses a queue that another process has open (exit status 2).
stat, consumers, verify, peek and dump only read: they move no consumer
and change no file.

Flags take one or two dashes (-json or --json) and may come before or
after the arguments.

Exit status: 0 success; 1 an error, or damage found (verify, or a damaged
record met while reading); 2 the queue could not be opened (held by
another process, missing, not a queue, another format version, no
permission); 3 peek or pop found no message; 64 bad command line; 130
interrupted.

forward publishes a consumer's messages to a NATS JetStream subject,
exactly once within the stream's duplicate window.`,
		Version:           versionString(),
		SilenceErrors:     true,
		SilenceUsage:      true,
		CompletionOptions: cobra.CompletionOptions{DisableDefaultCmd: true},
	}
	root.SetVersionTemplate("{{.Version}}\n")
	root.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return err })
	root.AddCommand(newStat(e), newConsumers(e), newVerify(e), newPeek(e), newDump(e),
		newPush(e), newPop(e), newImport(e), newBench(e), newForward(e))
	return root
}

// versionString says which build this is: the version set at link time,
// or the module's version and VCS revision, and the Go version.
func versionString() string {
	v := version
	info, ok := debug.ReadBuildInfo()
	if v == "" && ok {
		v = info.Main.Version
		for _, s := range info.Settings {
			switch s.Key {
			case "vcs.revision":
				v += " " + s.Value[:min(len(s.Value), 12)]
			case "vcs.modified":
				if s.Value == "true" {
					v += "+dirty"
				}
			}
		}
	}
	if v == "" {
		v = "(unknown)"
	}
	return fmt.Sprintf("bigqueue %s (%s %s/%s)", v, runtime.Version(), runtime.GOOS, runtime.GOARCH)
}

// normalizeArgs rewrites Go-style single-dash long flags (-json, -n=3 is
// left alone) into the double-dash form cobra's flag parser wants, so that
// -json and --json both work. A token is rewritten only when its name is
// a long flag of some command; the value of a flag that takes one is
// never rewritten, and nothing after "--" is.
func normalizeArgs(root *cobra.Command, args []string) []string {
	takesValue := make(map[string]bool) // long name -> takes a value
	short := make(map[string]bool)      // shorthand -> takes a value
	var visit func(c *cobra.Command)
	visit = func(c *cobra.Command) {
		add := func(f *pflag.Flag) {
			value := f.NoOptDefVal == ""
			takesValue[f.Name] = value
			if f.Shorthand != "" {
				short[f.Shorthand] = value
			}
		}
		c.LocalFlags().VisitAll(add)
		c.PersistentFlags().VisitAll(add)
		for _, sub := range c.Commands() {
			visit(sub)
		}
	}
	root.InitDefaultHelpFlag()
	root.InitDefaultVersionFlag()
	visit(root)
	takesValue["help"], takesValue["version"] = false, false

	out := make([]string, 0, len(args))
	for i := 0; i < len(args); i++ {
		a := args[i]
		out = append(out, a)
		if a == "--" {
			return append(out, args[i+1:]...)
		}
		if len(a) < 2 || a[0] != '-' {
			continue
		}
		name, _, hasValue := strings.Cut(strings.TrimLeft(a, "-"), "=")
		if !strings.HasPrefix(a, "--") {
			first := a[1:2]
			shortValue, isShort := short[first]
			value, isLong := takesValue[name]
			if len(name) > 1 && (isLong || !isShort) {
				// -json is --json; so is an unknown -word, so that
				// the error names it whole.
				out[len(out)-1] = "-" + a
				if isLong && value && !hasValue && i+1 < len(args) {
					i++
					out = append(out, args[i])
				}
				continue
			}
			// A shorthand's value is attached (-n5) or the next token.
			if isShort && shortValue && len(a) == 2 && i+1 < len(args) {
				i++
				out = append(out, args[i])
			}
			continue
		}
		if value, ok := takesValue[name]; ok && value && !hasValue && i+1 < len(args) {
			i++
			out = append(out, args[i])
		}
	}
	return out
}

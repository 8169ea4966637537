package main

import (
	"bufio"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"unicode/utf8"

	"os"

	"github.com/schollz/progressbar/v3"
	"github.com/spf13/cobra"
	"golang.org/x/term"
)

// format is how peek, dump and pop print messages: one per line (the
// default), NUL-terminated (-0), as they are (-raw), in hex (-hex) or as
// JSON lines (-json).
type format struct {
	null, raw, hex, json bool
}

// addFormatFlags declares the output format flags of cmd into f.
func addFormatFlags(cmd *cobra.Command, f *format) {
	cmd.Flags().BoolVarP(&f.null, "null", "0", false, "end each message with a NUL byte instead of a newline")
	cmd.Flags().BoolVar(&f.raw, "raw", false, "print messages as they are, with nothing after each")
	cmd.Flags().BoolVar(&f.hex, "hex", false, "print each message in hexadecimal, one per line")
	cmd.Flags().BoolVar(&f.json, "json", false, `print each message as a JSON line: {"bytes":N,"text":"..."}, or "base64" instead of "text" when it is not UTF-8`)
	cmd.MarkFlagsMutuallyExclusive("null", "raw", "hex", "json")
}

// jsonMessage is a message in -json output. Exactly one of Text and
// Base64 is set: Text when the message is valid UTF-8.
type jsonMessage struct {
	Bytes  int     `json:"bytes"`
	Text   *string `json:"text,omitempty"`
	Base64 *string `json:"base64,omitempty"`
}

// write prints msg to w in the format.
func (f format) write(w *bufio.Writer, msg []byte) error {
	switch {
	case f.json:
		m := jsonMessage{Bytes: len(msg)}
		if utf8.Valid(msg) {
			s := string(msg)
			m.Text = &s
		} else {
			s := base64.StdEncoding.EncodeToString(msg)
			m.Base64 = &s
		}
		enc := json.NewEncoder(w)
		enc.SetEscapeHTML(false)
		return enc.Encode(m) // ends with a newline
	case f.hex:
		if _, err := hex.NewEncoder(w).Write(msg); err != nil {
			return err
		}
		return w.WriteByte('\n')
	case f.raw:
		_, err := w.Write(msg)
		return err
	}
	if _, err := w.Write(msg); err != nil {
		return err
	}
	if f.null {
		return w.WriteByte(0)
	}
	return w.WriteByte('\n')
}

// progress shows a progress bar on stderr when it is a terminal, and does
// nothing otherwise. update takes the work done and the work in all;
// finish removes the bar.
type progress struct {
	bar *progressbar.ProgressBar
}

func newProgress(stderr io.Writer, description string, bytes bool) *progress {
	f, ok := stderr.(*os.File)
	if !ok || !term.IsTerminal(int(f.Fd())) {
		return &progress{}
	}
	bar := progressbar.NewOptions64(-1,
		progressbar.OptionSetWriter(f),
		progressbar.OptionSetDescription(description),
		progressbar.OptionShowBytes(bytes),
		progressbar.OptionShowCount(),
		progressbar.OptionSetPredictTime(true),
		progressbar.OptionThrottle(100e6),
		progressbar.OptionClearOnFinish(),
		progressbar.OptionFullWidth(),
	)
	return &progress{bar: bar}
}

func (p *progress) update(done, total int64) {
	if p.bar == nil {
		return
	}
	if p.bar.GetMax64() != total {
		p.bar.ChangeMax64(total)
	}
	if err := p.bar.Set64(done); err != nil {
		p.bar = nil // the terminal went away: the command goes on without a bar
	}
}

func (p *progress) finish() {
	if p.bar == nil {
		return
	}
	if err := p.bar.Finish(); err != nil {
		p.bar = nil // see update
	}
}

// humanBytes formats n bytes with a binary unit.
func humanBytes(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTPE"[exp])
}

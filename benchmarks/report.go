package main

import (
	"bytes"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strings"
)

// baseline is the library every ratio is taken against.
const baseline = "original"

// sizeName writes n bytes as 128B, 4KiB or 128KiB.
func sizeName(n int) string {
	switch {
	case n >= 1<<20 && n%(1<<20) == 0:
		return fmt.Sprintf("%dMiB", n>>20)
	case n >= 1<<10 && n%(1<<10) == 0:
		return fmt.Sprintf("%dKiB", n>>10)
	default:
		return fmt.Sprintf("%dB", n)
	}
}

// count writes 1000000 as 1M and 20000 as 20k.
func count(n int) string {
	switch {
	case n >= 1_000_000 && n%1_000_000 == 0:
		return fmt.Sprintf("%dM", n/1_000_000)
	case n >= 1000 && n%1000 == 0:
		return fmt.Sprintf("%dk", n/1000)
	default:
		return fmt.Sprintf("%d", n)
	}
}

func fmtNs(ns float64) string {
	switch {
	case ns <= 0 || math.IsNaN(ns):
		return "-"
	case ns < 10:
		return fmt.Sprintf("%.1f ns", ns)
	case ns < 1e4:
		return fmt.Sprintf("%.0f ns", ns)
	case ns < 1e7:
		return fmt.Sprintf("%.1f µs", ns/1e3)
	case ns < 1e10:
		return fmt.Sprintf("%.1f ms", ns/1e6)
	default:
		return fmt.Sprintf("%.1f s", ns/1e9)
	}
}

func fmtRate(r float64) string {
	switch {
	case r >= 1e6:
		return fmt.Sprintf("%.2fM", r/1e6)
	case r >= 1e3:
		return fmt.Sprintf("%.1fk", r/1e3)
	default:
		return fmt.Sprintf("%.0f", r)
	}
}

func fmtBytes(b int64) string {
	switch {
	case b < 0:
		return "-"
	case b < 1<<20:
		return fmt.Sprintf("%.0f KiB", float64(b)/(1<<10))
	default:
		return fmt.Sprintf("%.1f MiB", float64(b)/(1<<20))
	}
}

func fmtRatio(x float64) string {
	switch {
	case x <= 0 || math.IsNaN(x) || math.IsInf(x, 0):
		return "-"
	case x < 0.1:
		return fmt.Sprintf("%.3f", x)
	case x < 10:
		return fmt.Sprintf("%.2f", x)
	default:
		return fmt.Sprintf("%.0f", x)
	}
}

// lookup finds the result of lib for workload, if any.
func (rep report) lookup(workload, lib string) (result, bool) {
	for _, r := range rep.Results {
		if r.Workload == workload && r.Lib == lib {
			return r, true
		}
	}
	return result{}, false
}

// usable reports whether r holds a measurement.
func usable(r result, ok bool) bool { return ok && r.Err == "" && r.NA == "" && r.NsPerOp > 0 }

// ratio is lib's time per op divided by other's, or 0.
func (rep report) ratio(workload, lib, other string) float64 {
	a, okA := rep.lookup(workload, lib)
	b, okB := rep.lookup(workload, other)
	if !usable(a, okA) || !usable(b, okB) {
		return 0
	}
	return a.NsPerOp / b.NsPerOp
}

// rows are the libraries, then memqueue, then the physical references,
// in the order they were run.
func (rep report) rows() []string {
	var names []string
	seen := map[string]bool{}
	for _, r := range rep.Results {
		if !seen[r.Lib] {
			seen[r.Lib] = true
			names = append(names, r.Lib)
		}
	}
	return names
}

func isLibrary(name string) bool {
	for _, l := range libraries {
		if l.name == name {
			return true
		}
	}
	return false
}

// cell is what a table shows instead of a number, or "".
func cell(r result, ok bool) string {
	switch {
	case !ok:
		return "not run"
	case r.Err != "":
		return "**ERROR**: " + oneLine(r.Err)
	case r.NA != "":
		return "n/a (" + r.NA + ")"
	}
	return ""
}

func oneLine(s string) string {
	s = strings.ReplaceAll(s, "\n", " ")
	s = strings.ReplaceAll(s, "|", "/")
	if len(s) > 200 {
		s = s[:200] + "…"
	}
	return s
}

func (rep report) header(b *bytes.Buffer) {
	m := rep.Machine
	fmt.Fprintf(b, "Command: `%s`", rep.Command)
	if rep.Quick {
		b.WriteString(" (quick mode: small counts, for CI; not for comparison)")
	}
	fmt.Fprintf(b, "  \nDate: %s; library commit %s; %s; the whole run took %.0f s.\n\n", rep.Date, rep.Commit, m.Go, rep.Total)
	fmt.Fprintf(b, "Machine: `nproc` %d, %s, %s, %s RAM; temp dir %s on %s.\n\n", m.NumCPU, m.CPU, m.Kernel, m.MemTotal, m.TempDir, m.TempFS)
	b.WriteString("The machine is shared (other jobs ran at the same time): absolute numbers are noisy. " +
		"Read the ratios, which come from this one run; a ratio below 1 means faster than the row it is divided by.\n\n")
}

// summary is the matrix of time per message ÷ the original's.
func (rep report) summary(b *bytes.Buffer) {
	var libs []string
	for _, l := range rep.rows() {
		if isLibrary(l) || l == memqueueLib.name {
			libs = append(libs, l)
		}
	}
	fmt.Fprintf(b, "Time per operation, and in parentheses that time ÷ the %s's (lower is better). ", baseline)
	b.WriteString("Open: open plus the first dequeue. Latency: p99 from the scheduled send time.\n\n")
	b.WriteString("| workload | " + strings.Join(libs, " | ") + " |\n")
	b.WriteString("|---" + strings.Repeat("|---:", len(libs)) + "|\n")
	for _, w := range rep.Workloads {
		cells := []string{"`" + w.Name + "`"}
		for _, l := range libs {
			r, ok := rep.lookup(w.Name, l)
			if c := cell(r, ok); c != "" {
				if r.NA != "" {
					c = "n/a"
				} else if r.Err != "" {
					c = "**ERROR**"
				}
				cells = append(cells, c)
				continue
			}
			v, base := r.NsPerOp, 0.0
			if br, ok := rep.lookup(w.Name, baseline); usable(br, ok) {
				base = br.NsPerOp
				switch w.Kind {
				case string(kindOpen):
					base = br.FirstNs
				case string(kindLatency):
					base = br.P99
				}
			}
			switch w.Kind {
			case string(kindOpen):
				v = r.FirstNs
			case string(kindLatency):
				v = r.P99
			}
			s := fmtNs(v)
			if base > 0 {
				s += " (" + fmtRatio(v/base) + ")"
			}
			cells = append(cells, s)
		}
		b.WriteString("| " + strings.Join(cells, " | ") + " |\n")
	}
	b.WriteString("\n")
	for _, w := range rep.Workloads {
		if line := rep.flushRatioLine(w); line != "" {
			b.WriteString(line + "\n\n")
		}
	}
}

// flushRatioLine is, for off a latency workload with background flushing
// off, the p99.9 of each library at default durability (the workload of
// the same name without the suffix) ÷ its p99.9 with flushes off. It is ""
// for any other workload, and when no library has both numbers (a saved
// run from before the flushes-off workload, or a -run that chose one).
func (rep report) flushRatioLine(off workloadInfo) string {
	if off.Kind != string(kindLatency) || !strings.HasSuffix(off.Name, flushOffSuffix) {
		return ""
	}
	def := strings.TrimSuffix(off.Name, flushOffSuffix)
	var parts []string
	for _, l := range rep.rows() {
		d, okD := rep.lookup(def, l)
		o, okO := rep.lookup(off.Name, l)
		if !usable(d, okD) || !usable(o, okO) || o.P999 <= 0 {
			continue
		}
		parts = append(parts, fmt.Sprintf("%s p99.9 default ÷ flushes off = %s (%s ÷ %s)", l, fmtRatio(d.P999/o.P999), fmtNs(d.P999), fmtNs(o.P999)))
	}
	if len(parts) == 0 {
		return ""
	}
	line := fmt.Sprintf("Cost of the background flush on enqueue latency (`%s` ÷ `%s`): %s. "+
		"Issue 12 asks of bigqueue a default-durability p99.9 of at most 1 ms at 200k msg/s and at most 2× the one with flushes off.",
		def, off.Name, strings.Join(parts, "; "))
	if rep.Quick {
		line += " Quick mode: the workloads end before the first background flush (1 s or 1M mutations), so this ratio is noise."
	}
	return line
}

func (rep report) throughputTable(b *bytes.Buffer, w workloadInfo) {
	fmt.Fprintf(b, "### `%s`\n\n%s.", w.Name, w.Desc)
	ref := w.Ref
	if ref != "" {
		fmt.Fprintf(b, " Relevant reference: %s.", ref)
	}
	b.WriteString("\n\n| library | ns/op | msgs/s | MB/s | allocs/op | ÷ " + baseline + " |")
	if ref != "" {
		b.WriteString(" ÷ " + ref + " |")
	}
	b.WriteString("\n|---|---:|---:|---:|---:|---:|")
	if ref != "" {
		b.WriteString("---:|")
	}
	b.WriteString("\n")
	for _, l := range rep.rows() {
		r, ok := rep.lookup(w.Name, l)
		if !ok {
			continue
		}
		if c := cell(r, ok); c != "" {
			fmt.Fprintf(b, "| %s | %s |\n", l, c)
			continue
		}
		fmt.Fprintf(b, "| %s | %s | %s | %.0f | %.1f | %s |", l, fmtNs(r.NsPerOp), fmtRate(r.MsgsPerSec),
			float64(r.Bytes)/r.Seconds/1e6, r.AllocsPerOp, fmtRatio(rep.ratio(w.Name, l, baseline)))
		if ref != "" {
			fmt.Fprintf(b, " %s |", fmtRatio(rep.ratio(w.Name, l, ref)))
		}
		b.WriteString("\n")
	}
	b.WriteString("\n")
}

func (rep report) latencyTable(b *bytes.Buffer, w workloadInfo) {
	fmt.Fprintf(b, "### `%s`\n\n%s. A library that cannot keep up is stopped at twice the schedule plus 1 s: "+
		"its percentiles cover the messages it sent.\n\n", w.Name, w.Desc)
	b.WriteString("The last four columns split the tail: the enqueue call's own duration (from its start, " +
		"so without the time the sender was late to make it), how many calls took over 1 ms, and the CPU " +
		"steal of the run (the hypervisor running something else), in percent of all CPUs' time.\n\n")
	b.WriteString("| library | sent / offered | achieved msg/s | p50 | p99 | p99.9 | max | p99 ÷ " + baseline +
		" | call p99.9 | call max | calls > 1 ms | steal |\n")
	b.WriteString("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n")
	base, okBase := rep.lookup(w.Name, baseline)
	for _, l := range rep.rows() {
		r, ok := rep.lookup(w.Name, l)
		if !ok {
			continue
		}
		if c := cell(r, ok); c != "" {
			fmt.Fprintf(b, "| %s | %s |\n", l, c)
			continue
		}
		ratio := "-"
		if usable(base, okBase) && base.P99 > 0 {
			ratio = fmtRatio(r.P99 / base.P99)
		}
		// Results of a run before the split (read with -from) have no
		// call durations: every call takes some time, so zero is absent.
		slow, steal := "-", "-"
		if r.CallMax > 0 {
			slow = fmt.Sprint(r.SlowCalls)
			if r.StealPct >= 0 {
				steal = fmt.Sprintf("%.1f%%", r.StealPct)
			}
		}
		fmt.Fprintf(b, "| %s | %d / %d | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |\n", l, r.Sent, r.Offered,
			fmtRate(r.MsgsPerSec), fmtNs(r.P50), fmtNs(r.P99), fmtNs(r.P999), fmtNs(r.Max), ratio,
			fmtNs(r.CallP999), fmtNs(r.CallMax), slow, steal)
	}
	b.WriteString("\n")
}

func (rep report) openTable(b *bytes.Buffer, w workloadInfo) {
	fmt.Fprintf(b, "### `%s`\n\n%s.\n\n", w.Name, w.Desc)
	b.WriteString("| library | open | open + first dequeue | ÷ " + baseline + " (first dequeue) |\n|---|---:|---:|---:|\n")
	base, okBase := rep.lookup(w.Name, baseline)
	for _, l := range rep.rows() {
		r, ok := rep.lookup(w.Name, l)
		if !ok || !(isLibrary(l) || l == memqueueLib.name) {
			continue
		}
		if c := cell(r, ok); c != "" {
			fmt.Fprintf(b, "| %s | %s |\n", l, c)
			continue
		}
		ratio := "-"
		if usable(base, okBase) {
			ratio = fmtRatio(r.FirstNs / base.FirstNs)
		}
		fmt.Fprintf(b, "| %s | %s | %s | %s |\n", l, fmtNs(r.OpenNs), fmtNs(r.FirstNs), ratio)
	}
	b.WriteString("\n")
}

// diskTable shows du of each library's directory, full and drained.
func (rep report) diskTable(b *bytes.Buffer) {
	var cols []workloadInfo
	for _, w := range rep.Workloads {
		if w.Kind == string(kindDequeue) || w.Kind == string(kindSteady) || w.Kind == string(kindAlternate) {
			cols = append(cols, w)
		}
	}
	if len(cols) == 0 {
		return
	}
	b.WriteString("### Disk used\n\n`du` of the queue directory (st_blocks × 512, every file), the queue closed: " +
		"full, after the dequeue workloads' fill; drained, after they read everything; and after the alternate and steady workloads, which end empty.\n\n")
	b.WriteString("| library |")
	for _, w := range cols {
		if w.Kind == string(kindDequeue) {
			fmt.Fprintf(b, " `%s` full | drained |", w.Name)
		} else {
			fmt.Fprintf(b, " `%s` drained |", w.Name)
		}
	}
	b.WriteString("\n|---|")
	for _, w := range cols {
		b.WriteString("---:|")
		if w.Kind == string(kindDequeue) {
			b.WriteString("---:|")
		}
	}
	b.WriteString("\n")
	for _, l := range rep.rows() {
		if !isLibrary(l) {
			continue
		}
		fmt.Fprintf(b, "| %s |", l)
		for _, w := range cols {
			r, ok := rep.lookup(w.Name, l)
			full, after := "-", "-"
			if c := cell(r, ok); c != "" {
				full, after = "error", "error"
				if r.NA != "" {
					full, after = "n/a", "n/a"
				}
			} else {
				full, after = fmtBytes(r.DiskFull), fmtBytes(r.DiskAfter)
			}
			if w.Kind == string(kindDequeue) {
				fmt.Fprintf(b, " %s |", full)
			}
			fmt.Fprintf(b, " %s |", after)
		}
		b.WriteString("\n")
	}
	b.WriteString("\n")
}

func (rep report) rssTable(b *bytes.Buffer) {
	var enq string
	for _, w := range rep.Workloads {
		if w.Kind == string(kindEnqueue) && strings.HasSuffix(w.Name, "=128B") {
			enq = w.Name
		}
	}
	b.WriteString("### Memory\n\nRSS (VmRSS: anonymous memory and resident pages of mapped files) of each library's process, ")
	if enq != "" {
		fmt.Fprintf(b, "at the end of `%s` with the queue full and still open, ", enq)
	}
	b.WriteString("and the peak (VmHWM) over all its workloads.\n\n| library | RSS, queue full | peak RSS |\n|---|---:|---:|\n")
	for _, l := range rep.Children {
		if l == refsChild {
			continue
		}
		full := "-"
		if r, ok := rep.lookup(enq, l); ok {
			full = fmtBytes(r.RSS)
		}
		peak, ok := rep.PeakRSS[l]
		if !ok {
			peak = -1
		}
		fmt.Fprintf(b, "| %s | %s | %s |\n", l, full, fmtBytes(peak))
	}
	b.WriteString("\n")
}

// renderMarkdown is the whole results file.
func renderMarkdown(rep report) string {
	var b bytes.Buffer
	b.WriteString("# Benchmark results\n\n")
	rep.header(&b)
	b.WriteString("![throughput relative to the original](chart.svg)\n\n## Summary\n\n")
	rep.summary(&b)
	b.WriteString("## Settings\n\n")
	settingsTable(&b)
	b.WriteString("## Workloads\n\n")
	for _, w := range rep.Workloads {
		switch w.Kind {
		case string(kindLatency):
			rep.latencyTable(&b, w)
			if line := rep.flushRatioLine(w); line != "" {
				b.WriteString(line + "\n\n")
			}
		case string(kindOpen):
			rep.openTable(&b, w)
		default:
			rep.throughputTable(&b, w)
		}
	}
	rep.diskTable(&b)
	rep.rssTable(&b)
	b.WriteString("### Wall time of each process\n\n| process | seconds |\n|---|---:|\n")
	for _, c := range rep.Children {
		fmt.Fprintf(&b, "| %s | %.1f |\n", c, rep.Seconds[c])
	}
	b.WriteString("\n")
	return b.String()
}

// settingsTable lists each library and reference with its exact settings.
func settingsTable(b *bytes.Buffer) {
	b.WriteString("| name | module | settings |\n|---|---|---|\n")
	for _, l := range append(append([]library{}, libraries...), memqueueLib) {
		fmt.Fprintf(b, "| %s | %s | %s |\n", l.name, l.module, l.settings)
	}
	for _, r := range references {
		if r.name != memqueueLib.name {
			fmt.Fprintf(b, "| %s | reference | %s |\n", r.name, r.what)
		}
	}
	b.WriteString("\n")
}

// workloadTable lists the workloads of the run.
func (rep report) workloadTable(b *bytes.Buffer) {
	b.WriteString("| workload | what is timed | reference |\n|---|---|---|\n")
	for _, w := range rep.Workloads {
		ref := w.Ref
		if ref == "" {
			ref = "-"
		}
		fmt.Fprintf(b, "| `%s` | %s | %s |\n", w.Name, w.Desc, ref)
	}
	b.WriteString("\n")
}

// renderReadmeSection is what README.md shows between its markers.
func renderReadmeSection(rep report, dir string) string {
	var b bytes.Buffer
	b.WriteString("### Settings of this run\n\n")
	settingsTable(&b)
	b.WriteString("### Workloads of this run\n\n")
	rep.workloadTable(&b)
	b.WriteString("### Latest results\n\n")
	rep.header(&b)
	fmt.Fprintf(&b, "![throughput relative to the original](%s)\n\n", filepath.ToSlash(filepath.Join(dir, "chart.svg")))
	rep.summary(&b)
	fmt.Fprintf(&b, "Every table of this run (per workload: msgs/s, MB/s, allocs/op, ratios to the original and to the reference; "+
		"latency percentiles; open time; disk used; RSS) is in [%s](%s).\n",
		filepath.ToSlash(filepath.Join(dir, "results.md")), filepath.ToSlash(filepath.Join(dir, "results.md")))
	return b.String()
}

const (
	beginMarker = "<!-- results:begin (written by `go run . -out results`) -->"
	endMarker   = "<!-- results:end -->"
)

// updateReadme replaces what lies between the markers of path.
func updateReadme(path, section string) error {
	old, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	s := string(old)
	i, j := strings.Index(s, beginMarker), strings.Index(s, endMarker)
	if i < 0 || j < i {
		return fmt.Errorf("%s: no %q … %q section to replace", path, beginMarker, endMarker)
	}
	s = s[:i+len(beginMarker)] + "\n\n" + section + "\n" + s[j:]
	return os.WriteFile(path, []byte(s), 0o644)
}

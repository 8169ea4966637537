// Command benchmarks compares bigqueue with the original
// (grandecola/bigqueue), other Go disk queues and physical references,
// doing identical work for each: fixed message counts, the same message
// sizes, comparable durability (no fsync per operation).
//
//	go run . -quick          # small counts, well under two minutes; exits 1 on any error
//	go run . -out results    # the full run; writes results/ and updates README.md
//
// Each library runs in a child process of its own (this program started
// again with -child), so that its memory, goroutines and mappings do not
// affect the next one and its RSS is its own. The parent collects the
// children's JSON and writes a Markdown table, a JSON file and an SVG
// chart. See README.md.
package main

import (
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"time"
)

// The children of the parent: every library, the in-memory queue and the
// physical references.
const refsChild = "refs"

func main() {
	var (
		quick  = flag.Bool("quick", false, "small counts (CI): well under two minutes")
		out    = flag.String("out", "", "directory to write results.md, results.json and chart.svg into; also updates -readme")
		readme = flag.String("readme", "README.md", "with -out: the file whose results section is replaced")
		tmp    = flag.String("tmp", os.TempDir(), "directory under which each run creates and removes its queue directories")
		libs   = flag.String("libs", "", "comma-separated children to run (default all): "+strings.Join(childNames(), ","))
		only   = flag.String("run", "", "regular expression selecting workloads by name (default all)")
		child  = flag.String("child", "", "internal: run one library's workloads and print JSON")
		from   = flag.String("from", "", "render -out from this results.json instead of running anything")
	)
	flag.Parse()
	if *from != "" {
		if err := rerender(*from, *out, *readme); err != nil {
			fatalf("%v", err)
		}
		return
	}
	var filter *regexp.Regexp
	if *only != "" {
		var err error
		if filter, err = regexp.Compile(*only); err != nil {
			fatalf("-run: %v", err)
		}
	}
	suite := selectWorkloads(workloads(*quick), filter)
	if *child != "" {
		if err := runChild(*child, suite, *tmp); err != nil {
			fatalf("%s: %v", *child, err)
		}
		return
	}
	names := childNames()
	if *libs != "" {
		names = strings.Split(*libs, ",")
		for _, n := range names {
			if !validChild(n) {
				fatalf("-libs: unknown %q (have %s)", n, strings.Join(childNames(), ","))
			}
		}
	}
	rep, failed := runParent(names, suite, *quick, *tmp, *only)
	md := renderMarkdown(rep)
	if *out == "" {
		fmt.Print(md)
	} else if err := writeOutputs(*out, *readme, rep, md); err != nil {
		fatalf("%v", err)
	}
	if failed {
		fmt.Fprintln(os.Stderr, "FAIL: at least one library or reference reported an error (see ERROR in the table)")
		os.Exit(1)
	}
}

func fatalf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "benchmarks: "+format+"\n", args...)
	os.Exit(2)
}

func childNames() []string {
	var names []string
	for _, l := range libraries {
		names = append(names, l.name)
	}
	return append(names, memqueueLib.name, refsChild)
}

func validChild(name string) bool {
	for _, n := range childNames() {
		if n == name {
			return true
		}
	}
	return false
}

func selectWorkloads(all []workload, filter *regexp.Regexp) []workload {
	if filter == nil {
		return all
	}
	var ws []workload
	for _, w := range all {
		if filter.MatchString(w.name) {
			ws = append(ws, w)
		}
	}
	return ws
}

// childOutput is what a child prints on stdout.
type childOutput struct {
	Results []result `json:"results"`
	PeakRSS int64    `json:"peak_rss"`
}

// runChild runs every workload of suite for one library (or the
// references) and prints childOutput as JSON. Progress goes to stderr.
func runChild(name string, suite []workload, tmp string) error {
	var out childOutput
	for _, w := range suite {
		start := time.Now()
		var rs []result
		if name == refsChild {
			for _, ref := range references {
				if ref.name != memqueueLib.name {
					rs = append(rs, runReference(ref.name, w, tmp))
				}
			}
		} else {
			lib, ok := libraryByName(name)
			if !ok {
				return fmt.Errorf("unknown library")
			}
			rs = append(rs, runQueueWorkload(lib, w, tmp))
		}
		for _, r := range rs {
			status := "ok"
			switch {
			case r.Err != "":
				status = "ERROR " + r.Err
			case r.NA != "":
				status = "n/a: " + r.NA
			}
			fmt.Fprintf(os.Stderr, "  %-10s %-40s %-12s %s\n", r.Lib, w.name, fmtNs(r.NsPerOp), status)
		}
		fmt.Fprintf(os.Stderr, "  %-10s %-40s took %.1fs\n", name, w.name, time.Since(start).Seconds())
		out.Results = append(out.Results, rs...)
	}
	out.PeakRSS = peakRSS()
	return json.NewEncoder(os.Stdout).Encode(out)
}

// report is everything one run measured.
type report struct {
	Command   string             `json:"command"`
	Quick     bool               `json:"quick"`
	Date      string             `json:"date"`
	Commit    string             `json:"commit"`
	Machine   machine            `json:"machine"`
	Children  []string           `json:"children"`
	Workloads []workloadInfo     `json:"workloads"`
	Results   []result           `json:"results"`
	PeakRSS   map[string]int64   `json:"peak_rss"`
	Seconds   map[string]float64 `json:"seconds"` // wall time of each child
	Total     float64            `json:"total_seconds"`
}

type workloadInfo struct {
	Name string `json:"name"`
	Kind string `json:"kind"`
	Desc string `json:"description"`
	Ref  string `json:"reference,omitempty"`
}

// runParent starts one child per name, in order, and gathers their
// results. failed is true when any child failed or any result is an
// error.
func runParent(names []string, suite []workload, quick bool, tmp, only string) (report, bool) {
	rep := report{
		Command:  commandLine(),
		Quick:    quick,
		Date:     time.Now().UTC().Format("2006-01-02 15:04 UTC"),
		Commit:   libraryCommit(),
		Machine:  describeMachine(tmp),
		Children: names,
		PeakRSS:  map[string]int64{},
		Seconds:  map[string]float64{},
	}
	for _, w := range suite {
		rep.Workloads = append(rep.Workloads, workloadInfo{Name: w.name, Kind: string(w.kind), Desc: w.describe(), Ref: w.ref})
	}
	exe, err := os.Executable()
	if err != nil {
		fatalf("%v", err)
	}
	failed := false
	start := time.Now()
	for _, name := range names {
		fmt.Fprintf(os.Stderr, "== %s\n", name)
		args := []string{"-child", name, "-tmp", tmp}
		if quick {
			args = append(args, "-quick")
		}
		if only != "" {
			args = append(args, "-run", only)
		}
		cmd := exec.Command(exe, args...)
		var stdout bytes.Buffer
		cmd.Stdout = &stdout
		cmd.Stderr = os.Stderr
		t := time.Now()
		err := cmd.Run()
		rep.Seconds[name] = time.Since(t).Seconds()
		var out childOutput
		if err == nil {
			err = json.Unmarshal(stdout.Bytes(), &out)
		}
		if err != nil {
			failed = true
			fmt.Fprintf(os.Stderr, "== %s failed: %v\n", name, err)
			for _, w := range suite {
				r := newResult(w, name)
				r.Err = "child process failed: " + err.Error()
				rep.Results = append(rep.Results, r)
			}
			continue
		}
		for _, r := range out.Results {
			if r.Err != "" {
				failed = true
			}
		}
		rep.Results = append(rep.Results, out.Results...)
		rep.PeakRSS[name] = out.PeakRSS
		fmt.Fprintf(os.Stderr, "== %s took %.1fs\n", name, rep.Seconds[name])
	}
	rep.Total = time.Since(start).Seconds()
	return rep, failed
}

// commandLine is how this run was started, as a command to paste.
func commandLine() string {
	args := []string{"go", "run", "."}
	for _, a := range os.Args[1:] {
		if strings.ContainsAny(a, " \t'\"$*?") {
			a = "'" + strings.ReplaceAll(a, "'", `'\''`) + "'"
		}
		args = append(args, a)
	}
	return "cd benchmarks && " + strings.Join(args, " ")
}

// libraryCommit is the commit of the repository holding this module, with
// "+dirty" when the library's files have uncommitted changes.
func libraryCommit() string {
	out, err := exec.Command("git", "-C", "..", "rev-parse", "--short", "HEAD").Output()
	if err != nil {
		return "unknown"
	}
	commit := strings.TrimSpace(string(out))
	status, err := exec.Command("git", "-C", "..", "status", "--porcelain", "--", ".", ":!benchmarks").Output()
	if err == nil && len(bytes.TrimSpace(status)) > 0 {
		commit += "+dirty"
	}
	return commit
}

// rerender writes the outputs of a saved run again, for a change of the
// report's layout that needs no new measurement.
func rerender(path, dir, readme string) error {
	if dir == "" {
		return fmt.Errorf("-from needs -out")
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	var rep report
	if err := json.Unmarshal(b, &rep); err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	return writeOutputs(dir, readme, rep, renderMarkdown(rep))
}

// writeOutputs writes results.md, results.json and chart.svg into dir and
// replaces the results section of readme.
func writeOutputs(dir, readme string, rep report, md string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	js, err := json.MarshalIndent(rep, "", "  ")
	if err != nil {
		return err
	}
	files := map[string][]byte{
		"results.md":   []byte(md),
		"results.json": append(js, '\n'),
		"chart.svg":    []byte(renderChart(rep)),
	}
	for name, data := range files {
		if err := os.WriteFile(filepath.Join(dir, name), data, 0o644); err != nil {
			return err
		}
	}
	if readme == "" {
		return nil
	}
	return updateReadme(readme, renderReadmeSection(rep, dir))
}

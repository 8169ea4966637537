package main

import (
	"bytes"
	"fmt"
	"html"
	"math"
)

// chartColors are distinguishable colours, one per library, in run order.
var chartColors = []string{"#1b9e77", "#7570b3", "#d95f02", "#e7298a", "#66a61e", "#e6ab02", "#666666", "#a6761d"}

// renderChart draws, for every throughput workload, each library's speed
// relative to the original (original time ÷ library time) on a log scale,
// as bars growing right of 1× (faster) or left of it (slower).
func renderChart(rep report) string {
	var libs []string
	for _, l := range rep.rows() {
		if isLibrary(l) || l == memqueueLib.name {
			libs = append(libs, l)
		}
	}
	var ws []workloadInfo
	for _, w := range rep.Workloads {
		switch kind(w.Kind) {
		case kindEnqueue, kindDequeue, kindAlternate, kindSteady, kindPC:
			ws = append(ws, w)
		}
	}
	// The axis spans whole powers of ten around every value and 1.
	lo, hi := 0.0, 0.0
	speed := func(w, l string) float64 {
		if x := rep.ratio(w, l, baseline); x > 0 {
			return 1 / x
		}
		return 0
	}
	for _, w := range ws {
		for _, l := range libs {
			if s := speed(w.Name, l); s > 0 {
				lo = math.Min(lo, math.Floor(math.Log10(s)))
				hi = math.Max(hi, math.Ceil(math.Log10(s)))
			}
		}
	}
	if hi == lo {
		hi = lo + 1
	}
	const (
		left    = 290.0 // workload labels
		plotW   = 560.0
		barH    = 9.0
		groupGp = 14.0
		top     = 70.0
	)
	groupH := float64(len(libs))*barH + groupGp
	height := top + float64(len(ws))*groupH + 40
	width := left + plotW + 70
	x := func(v float64) float64 { return left + (math.Log10(v)-lo)/(hi-lo)*plotW }

	var b bytes.Buffer
	fmt.Fprintf(&b, `<svg xmlns="http://www.w3.org/2000/svg" width="%.0f" height="%.0f" viewBox="0 0 %.0f %.0f" font-family="sans-serif" font-size="11">`+"\n", width, height, width, height)
	fmt.Fprintf(&b, `<rect width="100%%" height="100%%" fill="white"/>`+"\n")
	fmt.Fprintf(&b, `<text x="10" y="18" font-size="14" font-weight="bold">Throughput relative to %s (log scale; right of 1× is faster)</text>`+"\n", html.EscapeString(baseline))
	fmt.Fprintf(&b, `<text x="10" y="34" fill="#555">%s; %s, nproc %d. One run: compare ratios, not absolute numbers.</text>`+"\n",
		html.EscapeString(rep.Command), html.EscapeString(rep.Date), rep.Machine.NumCPU)
	// Legend.
	lx := 10.0
	for i, l := range libs {
		fmt.Fprintf(&b, `<rect x="%.0f" y="44" width="10" height="10" fill="%s"/><text x="%.0f" y="53">%s</text>`+"\n", lx, chartColors[i%len(chartColors)], lx+14, html.EscapeString(l))
		lx += 14 + 7*float64(len(l)) + 16
	}
	// Grid at each power of ten.
	bottom := height - 30
	for p := lo; p <= hi; p++ {
		gx := x(math.Pow(10, p))
		stroke, w := "#ddd", 1.0
		if p == 0 {
			stroke, w = "#333", 1.5
		}
		fmt.Fprintf(&b, `<line x1="%.1f" y1="%.0f" x2="%.1f" y2="%.0f" stroke="%s" stroke-width="%.1f"/>`+"\n", gx, top-6, gx, bottom, stroke, w)
		fmt.Fprintf(&b, `<text x="%.1f" y="%.0f" text-anchor="middle">%s×</text>`+"\n", gx, bottom+14, fmtRatio(math.Pow(10, p)))
	}
	for gi, w := range ws {
		gy := top + float64(gi)*groupH
		fmt.Fprintf(&b, `<text x="%.0f" y="%.1f" text-anchor="end">%s</text>`+"\n", left-8, gy+float64(len(libs))*barH/2+4, html.EscapeString(w.Name))
		for li, l := range libs {
			y := gy + float64(li)*barH
			s := speed(w.Name, l)
			if s <= 0 {
				r, ok := rep.lookup(w.Name, l)
				label := "n/a"
				if ok && r.Err != "" {
					label = "error"
				} else if !ok {
					label = "not run"
				}
				fmt.Fprintf(&b, `<text x="%.1f" y="%.1f" fill="#999" font-size="8">%s: %s</text>`+"\n", x(1)+4, y+barH-1.5, html.EscapeString(l), label)
				continue
			}
			x0, x1 := x(1), x(s)
			if x1 < x0 {
				x0, x1 = x1, x0
			}
			fmt.Fprintf(&b, `<rect x="%.1f" y="%.1f" width="%.1f" height="%.1f" fill="%s"><title>%s %s: %s× the original</title></rect>`+"\n",
				x0, y, math.Max(x1-x0, 0.5), barH-1, chartColors[li%len(chartColors)], html.EscapeString(l), html.EscapeString(w.Name), fmtRatio(s))
			lxv, anchor := x(s)+3, "start"
			if s < 1 {
				lxv, anchor = x(s)-3, "end"
			}
			fmt.Fprintf(&b, `<text x="%.1f" y="%.1f" font-size="8" text-anchor="%s">%s</text>`+"\n", lxv, y+barH-1.5, anchor, fmtRatio(s))
		}
	}
	b.WriteString("</svg>\n")
	return b.String()
}

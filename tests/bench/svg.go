package main

import (
	"fmt"
	"html"
	"math"
	"strings"
)

// chart is a grouped bar chart: one group per workload, one bar per series
// in each group.
type chart struct {
	// Title is drawn at the top; YLabel along the y axis.
	Title, YLabel string
	// Groups are the group labels (workloads), left to right.
	Groups []string
	// Series are the bars of every group, in order.
	Series []series
	// Reference, when > 0, draws a dashed horizontal line at that value
	// (1 for overhead ratios: "as fast as without recording").
	Reference float64
}

// series is one system's values, one per group; NaN marks a missing
// measurement, drawn as "n/a" instead of a bar.
type series struct {
	Name   string
	Values []float64
}

// palette is the Okabe-Ito colour-blind-safe palette (Okabe & Ito,
// "Color Universal Design", 2008): blue, vermilion, bluish green, orange.
var palette = []string{"#0072B2", "#D55E00", "#009E73", "#E69F00"}

// Chart geometry in SVG user units (pixels). Chosen so that 7 groups of 3
// bars fit a ~800 px wide page column with readable labels.
const (
	barWidth   = 22  // one bar
	groupGap   = 28  // space between groups
	plotHeight = 260 // height of the value axis
	marginLeft = 64  // room for tick labels and the y label
	marginRite = 16
	titleSpace = 30 // title line above the legend
	legendLine = 16 // one legend entry per line
	marginBot  = 48 // group labels
	valueTicks = 5  // aim for about this many grid lines
)

// renderSVG draws c as a standalone SVG document.
func renderSVG(c chart) string {
	groupWidth := float64(len(c.Series)*barWidth + groupGap)
	width := marginLeft + marginRite + groupWidth*float64(len(c.Groups))
	if width < 560 { // room for the title: ~60 characters of 15 px bold
		width = 560
	}
	// The legend lists one series per line under the title, so long names
	// never run past the right edge.
	marginTop := titleSpace + legendLine*len(c.Series) + legendLine
	height := float64(marginTop + plotHeight + marginBot)

	max := c.Reference
	for _, s := range c.Series {
		for _, v := range s.Values {
			if !math.IsNaN(v) && v > max {
				max = v
			}
		}
	}
	step := niceStep(max / valueTicks)
	top := math.Ceil(max/step) * step
	if top <= 0 {
		top = 1
	}
	y := func(v float64) float64 { return float64(marginTop) + plotHeight - v/top*plotHeight }

	var b strings.Builder
	fmt.Fprintf(&b, `<svg xmlns="http://www.w3.org/2000/svg" width="%.0f" height="%.0f" viewBox="0 0 %.0f %.0f" font-family="sans-serif" font-size="12">`+"\n", width, height, width, height)
	fmt.Fprintf(&b, `<rect width="100%%" height="100%%" fill="white"/>`+"\n")
	fmt.Fprintf(&b, `<text class="title" x="%.0f" y="20" text-anchor="middle" font-size="15" font-weight="bold">%s</text>`+"\n", width/2, esc(c.Title))

	// Legend: one swatch and name per line under the title.
	for i, s := range c.Series {
		ly := titleSpace + legendLine*i
		fmt.Fprintf(&b, `<rect class="legend" x="%d" y="%d" width="12" height="12" fill="%s"/>`, marginLeft, ly, palette[i%len(palette)])
		fmt.Fprintf(&b, `<text class="legend" x="%d" y="%d">%s</text>`+"\n", marginLeft+16, ly+11, esc(s.Name))
	}

	// Value axis: grid lines and tick labels.
	for v := 0.0; v <= top+step/2; v += step {
		fmt.Fprintf(&b, `<line x1="%d" x2="%.0f" y1="%.1f" y2="%.1f" stroke="#ddd"/>`, marginLeft, width-marginRite, y(v), y(v))
		fmt.Fprintf(&b, `<text class="tick" x="%d" y="%.1f" text-anchor="end">%s×</text>`+"\n", marginLeft-6, y(v)+4, trimFloat(v))
	}
	fmt.Fprintf(&b, `<text class="ylabel" transform="translate(16 %d) rotate(-90)" text-anchor="middle">%s</text>`+"\n", marginTop+plotHeight/2, esc(c.YLabel))
	if c.Reference > 0 {
		fmt.Fprintf(&b, `<line class="reference" x1="%d" x2="%.0f" y1="%.1f" y2="%.1f" stroke="#444" stroke-dasharray="4 3"/>`+"\n", marginLeft, width-marginRite, y(c.Reference), y(c.Reference))
	}

	// Bars, one group per workload.
	for g, name := range c.Groups {
		x0 := marginLeft + groupWidth*float64(g) + groupGap/2
		for i, s := range c.Series {
			x := x0 + float64(i*barWidth)
			v := math.NaN()
			if g < len(s.Values) {
				v = s.Values[g]
			}
			if math.IsNaN(v) {
				fmt.Fprintf(&b, `<text class="missing" x="%.1f" y="%.1f" text-anchor="middle" font-size="9" fill="#888">n/a</text>`+"\n", x+barWidth/2, y(0)-4)
				continue
			}
			fmt.Fprintf(&b, `<rect class="bar" data-group="%s" data-series="%s" x="%.1f" y="%.1f" width="%d" height="%.1f" fill="%s"><title>%s, %s: %.2f×</title></rect>`,
				esc(name), esc(s.Name), x+1, y(v), barWidth-2, y(0)-y(v), palette[i%len(palette)], esc(name), esc(s.Name), v)
			fmt.Fprintf(&b, `<text class="value" x="%.1f" y="%.1f" text-anchor="middle" font-size="9">%.1f</text>`+"\n", x+barWidth/2, y(v)-3, v)
		}
		fmt.Fprintf(&b, `<text class="group" x="%.1f" y="%d" text-anchor="middle">%s</text>`+"\n", x0+float64(len(c.Series)*barWidth)/2, marginTop+plotHeight+18, esc(name))
	}
	fmt.Fprintf(&b, `<line x1="%d" x2="%.0f" y1="%.1f" y2="%.1f" stroke="#000"/>`+"\n", marginLeft, width-marginRite, y(0), y(0))
	b.WriteString("</svg>\n")
	return b.String()
}

// niceStep rounds a raw tick step up to 1, 2 or 5 times a power of ten.
func niceStep(raw float64) float64 {
	if raw <= 0 || math.IsNaN(raw) {
		return 1
	}
	p := math.Pow(10, math.Floor(math.Log10(raw)))
	for _, m := range []float64{1, 2, 5, 10} {
		if raw <= m*p {
			return m * p
		}
	}
	return 10 * p
}

// trimFloat prints v without trailing zeros (0.5, 1, 2.5).
func trimFloat(v float64) string {
	return strings.TrimRight(strings.TrimRight(fmt.Sprintf("%.2f", v), "0"), ".")
}

// esc escapes text for SVG (XML) content and attributes.
func esc(s string) string { return html.EscapeString(s) }

// overheadChart is the recording overhead (record time / run time) per
// workload: samsara at each measured vCPU count, then QEMU rr on 1 vCPU.
func overheadChart(r *benchReport) chart {
	c := chart{
		Title:     "Recording overhead: record time / run time (lower is better)",
		YLabel:    "record / run",
		Reference: 1,
	}
	// samsara series, most vCPUs first ("2 vCPUs next to 1 vCPU").
	var cpus []int
	if len(r.Workloads) > 0 {
		for _, s := range r.Workloads[0].Samsara {
			cpus = append([]int{s.VCPUs}, cpus...)
		}
	}
	for _, n := range cpus {
		s := series{Name: fmt.Sprintf("samsara %s (serialized)", vcpus(n))}
		for _, w := range r.Workloads {
			v := math.NaN()
			for _, sr := range w.Samsara {
				if sr.VCPUs == n {
					v = ratio(sr.Record, sr.Run)
				}
			}
			s.Values = append(s.Values, v)
		}
		c.Series = append(c.Series, s)
	}
	q := series{Name: "QEMU rr 1 vCPU (TCG, icount)"}
	for _, w := range r.Workloads {
		c.Groups = append(c.Groups, w.Name)
		q.Values = append(q.Values, ratio(w.QEMU.Record1, w.QEMU.Plain1))
	}
	c.Series = append(c.Series, q)
	return c
}

// ratio is a/b's wall times, NaN unless both succeeded.
func ratio(a, b outcome) float64 {
	if !a.ok() || !b.ok() || b.Wall <= 0 {
		return math.NaN()
	}
	return a.Wall.Seconds() / b.Wall.Seconds()
}

// vcpus is "1 vCPU" or "N vCPUs".
func vcpus(n int) string {
	if n == 1 {
		return "1 vCPU"
	}
	return fmt.Sprintf("%d vCPUs", n)
}

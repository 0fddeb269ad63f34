package suite

import (
	"fmt"
	"html"
	"os"
	"path/filepath"
	"strings"
)

// WriteReports writes junit.xml, results.json, report.md and chart.svg
// to dir.
func WriteReports(r *Results, dir string) error {
	if err := WriteJUnit(r, filepath.Join(dir, "junit.xml")); err != nil {
		return err
	}
	if err := r.WriteJSON(filepath.Join(dir, "results.json")); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, "chart.svg"), []byte(Chart(r)), 0o644); err != nil {
		return fmt.Errorf("chart: %w", err)
	}
	if err := os.WriteFile(filepath.Join(dir, "report.md"), []byte(Markdown(r)), 0o644); err != nil {
		return fmt.Errorf("report: %w", err)
	}
	return nil
}

// Markdown is the human report: a summary, the chart, one table row per
// case, and the failures with their reproducing commands.
func Markdown(r *Results) string {
	var b strings.Builder
	fmt.Fprintf(&b, "# samsara suite %s\n\n", r.Suite)
	fmt.Fprintf(&b, "%s, %d host CPUs, %.0f s: %d cases, %d failed.\n\n", r.Started.Format("2006-01-02 15:04 MST"),
		r.HostCPUs, r.WallSeconds, len(r.Cases), r.Failed())
	b.WriteString("![record/run and replay/record per case](chart.svg)\n\n")
	b.WriteString("| case | result | run s | record s | replay s | record/run | replay/record | log bytes | log B/guest s | squash rate | peak RSS MiB (run/record/replay) |\n")
	b.WriteString("|---|---|---|---|---|---|---|---|---|---|---|\n")
	for _, c := range r.Cases {
		result := "pass"
		if len(c.Failures) > 0 {
			result = "**FAIL** (" + c.Failures[0].Kind + ")"
		}
		var reps []string
		for _, s := range c.ReplaySeconds {
			reps = append(reps, fmt.Sprintf("%.2f", s))
		}
		fmt.Fprintf(&b, "| %s | %s | %.2f | %.2f | %s | %.2f | %.2f | %d | %.0f | %.3f | %.0f/%.0f/%.0f |\n",
			c.Name, result, c.RunSeconds, c.RecordSeconds, strings.Join(reps, ", "), c.RecordRunRatio,
			c.ReplayRecordRatio, c.LogBytes, c.LogRate, c.SquashRate,
			float64(c.RunMaxRSSKiB)/1024, float64(c.RecordMaxRSSKiB)/1024, float64(c.ReplayMaxRSSKiB)/1024)
	}
	for _, c := range r.Cases {
		if len(c.Failures) == 0 {
			continue
		}
		fmt.Fprintf(&b, "\n## %s\n\n", c.Name)
		for _, f := range c.Failures {
			fmt.Fprintf(&b, "```\n%s\n```\n\n", strings.TrimSpace(f.Message))
		}
		if c.ReplayCommand != "" {
			fmt.Fprintf(&b, "Reproduce: `%s`\n", c.ReplayCommand)
		}
		if c.Kept != "" {
			fmt.Fprintf(&b, "\nKept in `%s`.\n", c.Kept)
		}
	}
	return b.String()
}

// Chart geometry, in SVG user units (pixels).
const (
	chartLabelW = 260 // room for "fluidanimate/2cpu/serialized"
	chartBarW   = 420 // the longest bar
	chartRowH   = 22  // two bars of 9 and a gap
	chartTop    = 40  // title and legend
)

// Chart is a hand-written SVG bar chart: per case, record/run (blue) and
// replay/record (orange), scaled to the largest ratio, with a line at 1.
func Chart(r *Results) string {
	maxV := 1.0
	for _, c := range r.Cases {
		maxV = max(maxV, c.RecordRunRatio, c.ReplayRecordRatio)
	}
	scale := chartBarW / maxV
	w, h := chartLabelW+chartBarW+80, chartTop+chartRowH*len(r.Cases)+20
	var b strings.Builder
	fmt.Fprintf(&b, `<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" font-family="sans-serif" font-size="12">`+"\n", w, h)
	fmt.Fprintf(&b, `<text x="4" y="16" font-weight="bold">samsara suite %s: time ratios</text>`+"\n", html.EscapeString(r.Suite))
	fmt.Fprintf(&b, `<rect x="%d" y="24" width="10" height="9" fill="#4878d0"/><text x="%d" y="33">record/run</text>`+"\n", chartLabelW, chartLabelW+14)
	fmt.Fprintf(&b, `<rect x="%d" y="24" width="10" height="9" fill="#ee854a"/><text x="%d" y="33">replay/record</text>`+"\n", chartLabelW+100, chartLabelW+114)
	for i, c := range r.Cases {
		y := chartTop + i*chartRowH
		color := "#000"
		if len(c.Failures) > 0 {
			color = "#c00"
		}
		fmt.Fprintf(&b, `<text x="%d" y="%d" text-anchor="end" fill="%s">%s</text>`+"\n", chartLabelW-6, y+14, color, html.EscapeString(c.Name))
		fmt.Fprintf(&b, `<rect x="%d" y="%d" width="%.1f" height="9" fill="#4878d0"/>`+"\n", chartLabelW, y+2, c.RecordRunRatio*scale)
		fmt.Fprintf(&b, `<rect x="%d" y="%d" width="%.1f" height="9" fill="#ee854a"/>`+"\n", chartLabelW, y+11, c.ReplayRecordRatio*scale)
		fmt.Fprintf(&b, `<text x="%.1f" y="%d">%.2f / %.2f</text>`+"\n", float64(chartLabelW)+max(c.RecordRunRatio, c.ReplayRecordRatio)*scale+4, y+14, c.RecordRunRatio, c.ReplayRecordRatio)
	}
	x1 := float64(chartLabelW) + scale
	fmt.Fprintf(&b, `<line x1="%.1f" y1="%d" x2="%.1f" y2="%d" stroke="#888" stroke-dasharray="3,3"/>`+"\n", x1, chartTop, x1, h-16)
	fmt.Fprintf(&b, `<text x="%.1f" y="%d" fill="#888">1x</text>`+"\n", x1-6, h-4)
	b.WriteString("</svg>\n")
	return b.String()
}

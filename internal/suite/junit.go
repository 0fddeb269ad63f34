package suite

import (
	"encoding/xml"
	"fmt"
	"os"
	"strings"
)

// The JUnit XML schema CI systems read (Jenkins, GitLab, GitHub test
// reporters): <testsuites><testsuite><testcase><failure message type>.
// Each case's time is its record and replays' wall time.

// JUnitSuites is the document root.
type JUnitSuites struct {
	XMLName xml.Name     `xml:"testsuites"`
	Suites  []JUnitSuite `xml:"testsuite"`
}

// JUnitSuite is the suite.
type JUnitSuite struct {
	Name     string      `xml:"name,attr"`
	Tests    int         `xml:"tests,attr"`
	Failures int         `xml:"failures,attr"`
	Errors   int         `xml:"errors,attr"`
	Time     string      `xml:"time,attr"`
	Cases    []JUnitCase `xml:"testcase"`
}

// JUnitCase is one workload x vCPUs x recorder.
type JUnitCase struct {
	Name      string        `xml:"name,attr"`
	Classname string        `xml:"classname,attr"`
	Time      string        `xml:"time,attr"`
	Failure   *JUnitFailure `xml:"failure,omitempty"`
	SystemOut string        `xml:"system-out,omitempty"`
}

// JUnitFailure says why a case failed: Message is the first failure's
// one-line summary, Type its kind (divergence, regression, error), the
// text every failure in full.
type JUnitFailure struct {
	Message string `xml:"message,attr"`
	Type    string `xml:"type,attr"`
	Text    string `xml:",chardata"`
}

// JUnit converts results to the JUnit document.
func JUnit(r *Results) JUnitSuites {
	s := JUnitSuite{Name: "samsara.suite." + r.Suite, Tests: len(r.Cases), Failures: r.Failed(),
		Time: fmt.Sprintf("%.3f", r.WallSeconds)}
	for _, c := range r.Cases {
		t := c.RecordSeconds
		for _, x := range c.ReplaySeconds {
			t += x
		}
		jc := JUnitCase{Name: c.Name, Classname: "samsara.suite." + r.Suite + "." + c.Workload, Time: fmt.Sprintf("%.3f", t),
			SystemOut: fmt.Sprintf("record/run %.3f, replay/record %.3f, log %d bytes, %.0f bytes per guest second, squash rate %.3f",
				c.RecordRunRatio, c.ReplayRecordRatio, c.LogBytes, c.LogRate, c.SquashRate)}
		if len(c.Failures) > 0 {
			var text []string
			for _, f := range c.Failures {
				text = append(text, f.Message)
			}
			if c.ReplayCommand != "" {
				text = append(text, "reproduce with: "+c.ReplayCommand)
			} else if c.Kept != "" {
				text = append(text, "kept in "+c.Kept)
			}
			first, _, _ := strings.Cut(c.Failures[0].Message, "\n")
			jc.Failure = &JUnitFailure{Message: first, Type: c.Failures[0].Kind, Text: strings.Join(text, "\n\n")}
		}
		s.Cases = append(s.Cases, jc)
	}
	return JUnitSuites{Suites: []JUnitSuite{s}}
}

// WriteJUnit writes r's JUnit XML to path.
func WriteJUnit(r *Results, path string) error {
	b, err := xml.MarshalIndent(JUnit(r), "", "  ")
	if err != nil {
		return fmt.Errorf("junit: %w", err)
	}
	if err := os.WriteFile(path, append([]byte(xml.Header), append(b, '\n')...), 0o644); err != nil {
		return fmt.Errorf("junit: %w", err)
	}
	return nil
}

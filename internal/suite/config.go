// Package suite runs a CI regression suite (issue 17): a YAML file lists
// workloads; for each workload and vCPU count the suite runs the program
// once under `samsara run` as the baseline, records it with each recorder
// and replays every recording, checks the output and the replays, and
// measures record/run, replay/record, log size and rate, squash rate and
// peak memory. It writes JUnit XML (one test case per workload x vCPUs x
// recorder), a JSON of every figure, and a Markdown report with an SVG
// chart, and compares the figures against a baseline JSON.
//
// Every job is a child process of the samsara binary (record, replay,
// run, inspect), as in the daemon: a machine that crashes takes only its
// child down, and the figures are those of the one-shot CLI.
//
// The suite file, with every key:
//
//	name: short                     # the JUnit suite name (default: file name)
//	defaults:                       # any workload key except name/command
//	  vcpus: [2]
//	  modes: [serialized, parallel]
//	  replays: 1
//	  timeout: 3m                   # per job (run, record, one replay)
//	  thresholds: {record_run_ratio: 1.5, log_rate: 1.5}
//	workloads:
//	  - name: blackscholes
//	    image: disk.img             # ext2 image for --vm; relative to the
//	                                # suite file; omitted: the initramfs
//	    command: [/mnt/blackscholes, "2", "tiny"]
//	    cwd: /tmp                   # --cwd
//	    env: [K=V]                  # --env
//	    stdin: /mnt/in.txt          # --stdin
//	    memory: 256M                # --mem
//	    append: ""                  # --append
//	    expect: 'blackscholes: .* ok'   # regexp the output must match
package suite

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"
)

// Suite is a parsed suite file.
type Suite struct {
	// Name names the JUnit test suite; default: the file's base name.
	Name string `yaml:"name"`
	// Defaults apply to every workload that does not set the key.
	Defaults Settings `yaml:"defaults"`
	// Workloads are run in this order.
	Workloads []Workload `yaml:"workloads"`
	// Path is the file it was read from (not a YAML key).
	Path string `yaml:"-"`
}

// Settings are the per-workload keys that defaults can give too.
type Settings struct {
	// Image is the disk image (--vm); empty: the initramfs's programs.
	Image string `yaml:"image"`
	// VCPUs lists the vCPU counts to run on.
	VCPUs []int `yaml:"vcpus"`
	// Modes lists the recorders: serialized, parallel.
	Modes []string `yaml:"modes"`
	// Replays is how many times each recording is replayed.
	Replays *int `yaml:"replays"`
	// Timeout bounds each job (run, record, one replay).
	Timeout Duration `yaml:"timeout"`
	// Thresholds are the regressions the baseline comparison allows.
	Thresholds Thresholds `yaml:"thresholds"`
	// Cwd, Env and Stdin are the program's environment (run --cwd ...).
	Cwd   string   `yaml:"cwd"`
	Env   []string `yaml:"env"`
	Stdin string   `yaml:"stdin"`
	// Memory and Append are run's --mem and --append.
	Memory string `yaml:"memory"`
	Append string `yaml:"append"`
	// Expect is a regexp the program's console output must match.
	Expect string `yaml:"expect"`
}

// Thresholds are factors over the baseline's figure: a figure above
// baseline x factor is a regression. Zero means the default.
type Thresholds struct {
	// RecordRunRatio bounds record time / run time.
	RecordRunRatio float64 `yaml:"record_run_ratio"`
	// LogRate bounds log bytes per guest second.
	LogRate float64 `yaml:"log_rate"`
}

// Workload is one program of the suite.
type Workload struct {
	// Name identifies the workload in test case names.
	Name string `yaml:"name"`
	// Command is the program and its arguments in the guest.
	Command  []string `yaml:"command"`
	Settings `yaml:",inline"`
	// Line is the workload's line in the suite file (not a YAML key).
	Line int `yaml:"-"`
}

// Duration is a time.Duration written as "90s" or "3m" in YAML.
type Duration struct{ time.Duration }

// UnmarshalYAML parses a Go duration string.
func (d *Duration) UnmarshalYAML(n *yaml.Node) error {
	v, err := time.ParseDuration(n.Value)
	if err != nil {
		return fmt.Errorf("line %d: %q is not a duration (examples: 90s, 3m)", n.Line, n.Value)
	}
	d.Duration = v
	return nil
}

// Built-in defaults for what neither the workload nor defaults set.
const (
	// defaultTimeout bounds one job: tests/harness_test.go's resumeTimeout
	// is 3 minutes for the same kind of job (resume, run, record, replay).
	defaultTimeout = 3 * time.Minute
	// defaultThreshold allows a figure 1.5x its baseline: on the shared
	// 2-CPU development machine the same recording's wall time varied by
	// up to ~1.3x between runs (README, the daemon's benchmark), so a
	// tighter bound would fail on noise.
	defaultThreshold = 1.5
)

// Load reads and checks a suite file: unknown keys, values of the wrong
// type (a threshold that is not a number), missing images, bad regexps and
// commands that are not on their image are errors naming the file, line
// and key, found before anything runs. initrd is the initramfs whose /bin
// holds the built-in programs ("" skips that check).
func Load(path, initrd string) (*Suite, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("suite: %w", err)
	}
	var root yaml.Node
	if err := yaml.Unmarshal(raw, &root); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	if len(root.Content) == 0 {
		return nil, fmt.Errorf("%s: empty suite file", path)
	}
	if errs := checkNode(path, root.Content[0], typeOfSuite, ""); len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	s := &Suite{Path: path}
	dec := yaml.NewDecoder(bytes.NewReader(raw))
	dec.KnownFields(true)
	if err := dec.Decode(s); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	if s.Name == "" {
		s.Name = strings.TrimSuffix(filepath.Base(path), filepath.Ext(path))
	}
	lines := workloadLines(root.Content[0])
	for i := range s.Workloads {
		if i < len(lines) {
			s.Workloads[i].Line = lines[i]
		}
	}
	if err := s.resolve(initrd); err != nil {
		return nil, err
	}
	return s, nil
}

// workloadLines returns the line of each item of the workloads list.
func workloadLines(doc *yaml.Node) []int {
	var lines []int
	for i := 0; i+1 < len(doc.Content); i += 2 {
		if doc.Content[i].Value == "workloads" {
			for _, w := range doc.Content[i+1].Content {
				lines = append(lines, w.Line)
			}
		}
	}
	return lines
}

// knownModes are the recorders `samsara record --mode` takes.
var knownModes = map[string]bool{"serialized": true, "parallel": true}

// validName is what a workload name may hold: it names files and JUnit
// test cases.
var validName = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.-]*$`)

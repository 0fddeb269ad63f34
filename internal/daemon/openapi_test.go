package daemon

import (
	"os"
	"regexp"
	"sort"
	"strings"
	"testing"
)

// TestOpenAPIMatchesRoutes: api/openapi.yaml documents exactly the
// endpoints the daemon serves, method by method.
func TestOpenAPIMatchesRoutes(t *testing.T) {
	b, err := os.ReadFile("../../api/openapi.yaml")
	if err != nil {
		t.Fatal(err)
	}
	// Under "paths:", a path is a 2-space-indented key and a method a
	// 4-space-indented one, up to "components:".
	doc := string(b)
	doc = doc[strings.Index(doc, "\npaths:\n"):strings.Index(doc, "\ncomponents:\n")]
	pathRE := regexp.MustCompile(`^  (/\S*):$`)
	methodRE := regexp.MustCompile(`^    (get|post|put|delete|patch):$`)
	var documented []string
	path := ""
	for _, line := range strings.Split(doc, "\n") {
		if m := pathRE.FindStringSubmatch(line); m != nil {
			path = m[1]
		} else if m := methodRE.FindStringSubmatch(line); m != nil {
			documented = append(documented, strings.ToUpper(m[1])+" "+path)
		}
	}
	d := &Daemon{}
	d.met = newMetrics(d)
	var served []string
	for _, r := range d.routes() {
		served = append(served, r.pattern)
	}
	sort.Strings(documented)
	sort.Strings(served)
	if strings.Join(documented, "\n") != strings.Join(served, "\n") {
		t.Errorf("api/openapi.yaml documents\n  %s\nthe daemon serves\n  %s", strings.Join(documented, "\n  "), strings.Join(served, "\n  "))
	}
}

package suite

import (
	"fmt"
	"reflect"
	"sort"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"
)

// The suite file is checked against the Go types before it is decoded, so
// that each mistake is reported as FILE:LINE: key: what is wrong. (The
// YAML decoder's KnownFields errors name the line and field but not the
// file, and its type errors name neither the key nor the file.)

var (
	typeOfSuite    = reflect.TypeOf(Suite{})
	typeOfDuration = reflect.TypeOf(Duration{})
)

// fieldError is one problem at a key of the suite file.
func fieldError(file string, n *yaml.Node, key, format string, args ...any) error {
	return fmt.Errorf("%s:%d: %s: %s", file, n.Line, key, fmt.Sprintf(format, args...))
}

// yamlFields maps the YAML keys of struct type t (inline structs
// flattened) to their types.
func yamlFields(t reflect.Type) map[string]reflect.Type {
	m := map[string]reflect.Type{}
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		tag := f.Tag.Get("yaml")
		if tag == "-" || !f.IsExported() {
			continue
		}
		name, opts, _ := strings.Cut(tag, ",")
		if opts == "inline" {
			for k, v := range yamlFields(f.Type) {
				m[k] = v
			}
			continue
		}
		m[name] = f.Type
	}
	return m
}

// checkNode checks node n against type t; path is the dotted key so far.
func checkNode(file string, n *yaml.Node, t reflect.Type, path string) []error {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if n.Kind == yaml.AliasNode {
		n = n.Alias
	}
	key := path
	if key == "" {
		key = "(top level)"
	}
	switch {
	case t == typeOfDuration:
		if _, err := time.ParseDuration(n.Value); n.Kind != yaml.ScalarNode || err != nil {
			return []error{fieldError(file, n, key, "%q is not a duration (examples: 90s, 3m)", n.Value)}
		}
		return nil
	case t.Kind() == reflect.Struct:
		return checkMapping(file, n, t, path, key)
	case t.Kind() == reflect.Slice:
		if n.Kind != yaml.SequenceNode {
			return []error{fieldError(file, n, key, "want a list, e.g. [%s]", exampleOf(t.Elem()))}
		}
		var errs []error
		for i, c := range n.Content {
			errs = append(errs, checkNode(file, c, t.Elem(), fmt.Sprintf("%s[%d]", path, i))...)
		}
		return errs
	}
	if n.Kind != yaml.ScalarNode {
		return []error{fieldError(file, n, key, "want a single value, not a list or mapping")}
	}
	switch t.Kind() {
	case reflect.Float64:
		if n.Tag != "!!int" && n.Tag != "!!float" {
			return []error{fieldError(file, n, key, "%q is not a number", n.Value)}
		}
	case reflect.Int:
		if n.Tag != "!!int" {
			return []error{fieldError(file, n, key, "%q is not an integer", n.Value)}
		}
	}
	return nil
}

// checkMapping checks a mapping node against struct type t: every key
// must be one of its fields.
func checkMapping(file string, n *yaml.Node, t reflect.Type, path, key string) []error {
	if n.Kind != yaml.MappingNode {
		return []error{fieldError(file, n, key, "want a mapping of keys to values")}
	}
	fields := yamlFields(t)
	var errs []error
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		full := k.Value
		if path != "" {
			full = path + "." + k.Value
		}
		ft, ok := fields[k.Value]
		if !ok {
			errs = append(errs, fieldError(file, k, full, "unknown key (known: %s)", knownKeys(fields)))
			continue
		}
		errs = append(errs, checkNode(file, v, ft, full)...)
	}
	return errs
}

func knownKeys(fields map[string]reflect.Type) string {
	keys := make([]string, 0, len(fields))
	for k := range fields {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return strings.Join(keys, ", ")
}

func exampleOf(t reflect.Type) string {
	switch t.Kind() {
	case reflect.Int:
		return "2"
	case reflect.Struct:
		return "{...}"
	}
	return "a, b"
}

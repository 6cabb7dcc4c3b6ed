package yamlpos

import (
	"regexp"
	"strconv"
	"strings"
)

// Paths name a value of a document the way people write them:
// "functions[2].command", "functions[0].env.PATH", or `env["A.B"]` for a
// key that is not a plain name.

// plainKey matches the keys written after a dot; others are quoted in
// brackets.
var plainKey = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_-]*$`)

// Key returns path extended by the mapping key key.
func Key(path, key string) string {
	if !plainKey.MatchString(key) {
		return path + "[" + strconv.Quote(key) + "]"
	}
	if path == "" {
		return key
	}
	return path + "." + key
}

// Index returns path extended by the sequence index i.
func Index(path string, i int) string { return path + "[" + strconv.Itoa(i) + "]" }

// Join returns path extended by rel, a path relative to it (such as
// "env.PATH", as runtime.FieldError names a field).
func Join(path, rel string) string {
	switch {
	case rel == "":
		return path
	case path == "" || strings.HasPrefix(rel, "["):
		return path + rel
	}
	return path + "." + rel
}

// Parent returns path without its last element: "" for a top-level key or
// a path it cannot read.
func Parent(path string) string {
	elems := split(path)
	if len(elems) < 2 {
		return ""
	}
	return path[:elems[len(elems)-1]]
}

// split returns the offsets at which path's elements begin; an element
// after a dot begins at the dot.
func split(path string) []int {
	var starts []int
	for i := 0; i < len(path); {
		starts = append(starts, i)
		switch path[i] {
		case '[':
			if strings.HasPrefix(path[i+1:], `"`) {
				q, err := strconv.QuotedPrefix(path[i+1:])
				if err != nil {
					return starts
				}
				i += 1 + len(q)
			}
			end := strings.IndexByte(path[i:], ']')
			if end < 0 {
				return starts
			}
			i += end + 1
		case '.':
			i++
			fallthrough
		default:
			end := strings.IndexAny(path[i:], ".[")
			if end < 0 {
				return starts
			}
			i += end
		}
	}
	return starts
}

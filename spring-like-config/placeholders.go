package springconfig

import (
	"fmt"
	"strings"
)

// Placeholders: ${NAME} or ${NAME:default} in any value. NAME is looked up in the environment, then in
// properties, then as a dotted key of the file (${defaults.timeout}); the default is used when none has
// it. $${ writes a literal ${, for shell commands that use shell variables.

// maxPlaceholderDepth bounds placeholders that name values holding placeholders.
const maxPlaceholderDepth = 10

type resolver struct {
	orig *node // the file before any resolution: references see values as written, resolved afresh
	opts Options
	// done caches each referenced key's resolved value, and busy holds those being resolved, so that a
	// value naming others many times costs one resolution each and a loop is found at once.
	done map[string]resolved
	busy map[string]bool
}

type resolved struct {
	v   string
	err error
}

// resolveAll replaces placeholders in every value of root; each one that cannot be resolved is an error
// naming its job and key.
func resolveAll(root *node, opts Options, c *collector) {
	r := &resolver{orig: root.clone(), opts: opts, done: map[string]resolved{}, busy: map[string]bool{}}
	var walk func(n *node, path string, o owner)
	walk = func(n *node, path string, o owner) {
		switch n.kind {
		case kScalar:
			s, err := r.resolve(n.text, 0)
			if err != nil {
				c.add(n.line, o, path, "%s", err.Error())
				return
			}
			n.text = s
		case kMap:
			for _, k := range n.keys {
				walk(n.kids[k], joinPath(path, k), o)
			}
		case kList:
			for _, item := range n.items {
				walk(item, path, o)
			}
		}
	}
	for _, section := range root.keys {
		n := root.kids[section]
		switch section {
		case "jobs":
			if n.kind != kList {
				continue
			}
			for i, j := range n.items {
				walk(j, "", jobOwner(j, i, ""))
			}
		case "batches":
			if n.kind != kList {
				continue
			}
			for i, b := range n.items {
				walk(b, "", batchOwner(b, i, ""))
			}
		case "templates":
			if n.kind != kMap {
				continue
			}
			for _, name := range n.keys {
				walk(n.kids[name], "", owner{section: "template " + name})
			}
		default:
			walk(n, "", owner{section: section})
		}
	}
}

func joinPath(prefix, k string) string {
	if prefix == "" {
		return k
	}
	return prefix + "." + k
}

func (r *resolver) resolve(s string, depth int) (string, error) {
	if !strings.Contains(s, "${") {
		return s, nil
	}
	if depth > maxPlaceholderDepth {
		return "", fmt.Errorf("placeholders nest more than %d deep (a loop?)", maxPlaceholderDepth)
	}
	var b strings.Builder
	for {
		i := strings.Index(s, "${")
		if i < 0 {
			b.WriteString(s)
			return b.String(), nil
		}
		if i > 0 && s[i-1] == '$' {
			b.WriteString(s[:i-1])
			b.WriteString("${")
			s = s[i+2:]
			continue
		}
		b.WriteString(s[:i])
		end := matchingBrace(s, i+2)
		if end < 0 {
			return "", fmt.Errorf("placeholder %q has no closing }", s[i:])
		}
		v, err := r.value(s[i+2:end], depth)
		if err != nil {
			return "", err
		}
		b.WriteString(v)
		s = s[end+1:]
	}
}

// matchingBrace returns the index of the } that closes a placeholder whose body starts at from.
func matchingBrace(s string, from int) int {
	nest := 0
	for i := from; i < len(s); i++ {
		switch {
		case strings.HasPrefix(s[i:], "${"):
			nest++
			i++
		case s[i] == '}' && nest == 0:
			return i
		case s[i] == '}':
			nest--
		}
	}
	return -1
}

func (r *resolver) value(body string, depth int) (string, error) {
	name, def, hasDef := strings.Cut(body, ":")
	name = strings.TrimSpace(name)
	if name == "" {
		return "", fmt.Errorf("placeholder ${%s} has no name", body)
	}
	if v, ok := r.opts.lookup(name); ok {
		return v, nil
	}
	for _, path := range []string{"properties." + name, name} {
		n := r.orig.get(path)
		if n == nil || n.kind == kNull {
			continue
		}
		if n.kind != kScalar {
			return "", fmt.Errorf("placeholder ${%s} names a group of keys, not a value", name)
		}
		if res, ok := r.done[path]; ok {
			return res.v, res.err
		}
		if r.busy[path] {
			return "", fmt.Errorf("placeholders loop through ${%s}", name)
		}
		r.busy[path] = true
		v, err := r.resolve(n.text, depth+1)
		delete(r.busy, path)
		r.done[path] = resolved{v, err}
		return v, err
	}
	if hasDef {
		return r.resolve(def, depth+1)
	}
	return "", fmt.Errorf("placeholder ${%s} is not set: not in the environment, properties or the file, and has no default", name)
}

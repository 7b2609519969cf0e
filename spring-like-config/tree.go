package springconfig

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"
)

// Every format is read into the same small tree, which keeps the line of each key, so that profiles,
// placeholders, inheritance and validation are written once. Scalars stay text, as XML and tags give
// them, and are typed only when a job is decoded.

type kind uint8

const (
	kNull kind = iota
	kScalar
	kMap
	kList
)

type node struct {
	kind  kind
	line  int
	text  string           // kScalar
	keys  []string         // kMap, in file order
	kids  map[string]*node // kMap
	items []*node          // kList
}

func newMap(line int) *node { return &node{kind: kMap, line: line, kids: map[string]*node{}} }

func scalar(text string, line int) *node { return &node{kind: kScalar, text: text, line: line} }

// set adds or replaces key; it reports whether key was already there.
func (n *node) set(key string, v *node) bool {
	_, dup := n.kids[key]
	if !dup {
		n.keys = append(n.keys, key)
	}
	n.kids[key] = v
	return dup
}

func (n *node) del(key string) {
	if _, ok := n.kids[key]; !ok {
		return
	}
	delete(n.kids, key)
	n.keys = removeString(n.keys, key)
}

func removeString(s []string, v string) []string {
	out := s[:0:0]
	for _, x := range s {
		if x != v {
			out = append(out, x)
		}
	}
	return out
}

// get returns the child at a dotted path, or nil.
func (n *node) get(path string) *node {
	cur := n
	for part := range strings.SplitSeq(path, ".") {
		if cur == nil || cur.kind != kMap {
			return nil
		}
		cur = cur.kids[part]
	}
	return cur
}

func (n *node) clone() *node {
	if n == nil {
		return nil
	}
	c := *n
	if n.kind == kMap {
		c.keys = append([]string(nil), n.keys...)
		c.kids = make(map[string]*node, len(n.kids))
		for k, v := range n.kids {
			c.kids[k] = v.clone()
		}
	}
	if n.kind == kList {
		c.items = make([]*node, len(n.items))
		for i, v := range n.items {
			c.items[i] = v.clone()
		}
	}
	return &c
}

// merge returns over laid on base: maps merge key by key, anything else in over replaces base, and a null
// in over removes the key (a child can drop what it inherits).
func merge(base, over *node) *node {
	if base == nil || base.kind != kMap || over.kind != kMap {
		return over.clone()
	}
	out := base.clone()
	out.line = over.line
	for _, k := range over.keys {
		v := over.kids[k]
		if v.kind == kNull {
			out.del(k)
			continue
		}
		out.set(k, merge(out.kids[k], v))
	}
	return out
}

// parseError is a syntax error of a file, with its line when the parser says it.
type parseError struct {
	line int
	msg  string
}

func (e *parseError) Error() string { return e.msg }

// maxNodes bounds what one file may expand to: YAML aliases can make a small file huge.
const maxNodes = 200_000

// parseFile reads data in the format its extension names.
func parseFile(name string, data []byte) (*node, error) {
	var root *node
	var err error
	switch ext := strings.ToLower(filepath.Ext(name)); ext {
	case ".yaml", ".yml":
		root, err = parseYAML(data)
	case ".json":
		root, err = parseJSON(data)
	case ".toml":
		root, err = parseTOML(data)
	case ".xml":
		root, err = parseXML(data)
	default:
		return nil, &parseError{msg: fmt.Sprintf("unknown format %q: want .yaml, .yml, .json, .toml or .xml", ext)}
	}
	if err != nil {
		return nil, err
	}
	if root == nil || root.kind == kNull {
		return newMap(1), nil // an empty file declares nothing
	}
	if root.kind != kMap {
		return nil, &parseError{line: root.line, msg: "the document must be a mapping (jobs:, defaults:, ...)"}
	}
	return root, nil
}

// YAML

var yamlLine = regexp.MustCompile(`^line (\d+)`)

func parseYAML(data []byte) (*node, error) {
	var doc yaml.Node
	if err := yaml.Unmarshal(data, &doc); err != nil {
		pe := &parseError{msg: strings.TrimPrefix(err.Error(), "yaml: ")}
		if m := yamlLine.FindStringSubmatch(pe.msg); m != nil {
			pe.line, _ = strconv.Atoi(m[1])
			pe.msg = strings.TrimPrefix(pe.msg, m[0]+": ")
		}
		return nil, pe
	}
	if len(doc.Content) == 0 {
		return nil, nil
	}
	budget := maxNodes
	return fromYAML(doc.Content[0], &budget, 0)
}

func fromYAML(y *yaml.Node, budget *int, depth int) (*node, error) {
	if *budget--; *budget < 0 || depth > 100 {
		return nil, &parseError{line: y.Line, msg: "document too large or too deeply nested (aliases?)"}
	}
	switch y.Kind {
	case yaml.AliasNode:
		return fromYAML(y.Alias, budget, depth+1)
	case yaml.ScalarNode:
		if y.Tag == "!!null" {
			return &node{kind: kNull, line: y.Line}, nil
		}
		return scalar(y.Value, y.Line), nil
	case yaml.SequenceNode:
		n := &node{kind: kList, line: y.Line}
		for _, c := range y.Content {
			v, err := fromYAML(c, budget, depth+1)
			if err != nil {
				return nil, err
			}
			n.items = append(n.items, v)
		}
		return n, nil
	case yaml.MappingNode:
		n := newMap(y.Line)
		var merges []*yaml.Node
		for i := 0; i+1 < len(y.Content); i += 2 {
			k, v := y.Content[i], y.Content[i+1]
			if k.Value == "<<" && k.Tag == "!!merge" {
				merges = append(merges, v)
				continue
			}
			c, err := fromYAML(v, budget, depth+1)
			if err != nil {
				return nil, err
			}
			c.line = k.Line
			if n.set(k.Value, c) {
				return nil, &parseError{line: k.Line, msg: fmt.Sprintf("key %q is repeated", k.Value)}
			}
		}
		// Keys written in the mapping win over those merged in with <<, wherever they stand.
		for _, m := range merges {
			srcs := []*yaml.Node{m}
			if m.Kind == yaml.SequenceNode {
				srcs = m.Content
			}
			for _, s := range srcs {
				v, err := fromYAML(s, budget, depth+1)
				if err != nil {
					return nil, err
				}
				if v.kind != kMap {
					return nil, &parseError{line: s.Line, msg: "<< must merge a mapping"}
				}
				for _, k := range v.keys {
					if _, ok := n.kids[k]; !ok {
						n.set(k, v.kids[k])
					}
				}
			}
		}
		return n, nil
	case yaml.DocumentNode:
		if len(y.Content) == 0 {
			return nil, nil
		}
		return fromYAML(y.Content[0], budget, depth+1)
	}
	return nil, &parseError{line: y.Line, msg: "unsupported YAML node"}
}

// JSON

// lineIndex turns byte offsets into 1-based lines.
type lineIndex []int

func newLineIndex(data []byte) lineIndex {
	var nl lineIndex
	for i, b := range data {
		if b == '\n' {
			nl = append(nl, i)
		}
	}
	return nl
}

func (l lineIndex) line(offset int64) int {
	return sort.SearchInts(l, int(offset)) + 1
}

func parseJSON(data []byte) (*node, error) {
	lines := newLineIndex(data)
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	n, err := jsonValue(dec, lines, 0)
	if err != nil {
		return nil, err
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return nil, &parseError{line: lines.line(dec.InputOffset()), msg: "unexpected data after the top-level value"}
	}
	return n, nil
}

func jsonErr(dec *json.Decoder, lines lineIndex, err error) error {
	line := lines.line(dec.InputOffset())
	var se *json.SyntaxError
	if errors.As(err, &se) {
		line = lines.line(se.Offset)
	}
	if errors.Is(err, io.EOF) {
		err = io.ErrUnexpectedEOF
	}
	return &parseError{line: line, msg: err.Error()}
}

func jsonValue(dec *json.Decoder, lines lineIndex, depth int) (*node, error) {
	if depth > 100 {
		return nil, &parseError{line: lines.line(dec.InputOffset()), msg: "too deeply nested"}
	}
	tok, err := dec.Token()
	if err != nil {
		return nil, jsonErr(dec, lines, err)
	}
	line := lines.line(dec.InputOffset())
	switch t := tok.(type) {
	case json.Delim:
		if t == '[' {
			n := &node{kind: kList, line: line}
			for dec.More() {
				v, err := jsonValue(dec, lines, depth+1)
				if err != nil {
					return nil, err
				}
				n.items = append(n.items, v)
			}
			if _, err := dec.Token(); err != nil {
				return nil, jsonErr(dec, lines, err)
			}
			return n, nil
		}
		n := newMap(line)
		for dec.More() {
			kt, err := dec.Token()
			if err != nil {
				return nil, jsonErr(dec, lines, err)
			}
			key, _ := kt.(string)
			kline := lines.line(dec.InputOffset())
			v, err := jsonValue(dec, lines, depth+1)
			if err != nil {
				return nil, err
			}
			v.line = kline
			if n.set(key, v) {
				return nil, &parseError{line: kline, msg: fmt.Sprintf("key %q is repeated", key)}
			}
		}
		if _, err := dec.Token(); err != nil {
			return nil, jsonErr(dec, lines, err)
		}
		return n, nil
	case nil:
		return &node{kind: kNull, line: line}, nil
	case string:
		return scalar(t, line), nil
	case json.Number:
		return scalar(t.String(), line), nil
	case bool:
		return scalar(strconv.FormatBool(t), line), nil
	}
	return nil, &parseError{line: line, msg: fmt.Sprintf("unexpected %v", tok)}
}

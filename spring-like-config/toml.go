package springconfig

import (
	"bytes"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/pelletier/go-toml/v2/unstable"
)

// parseTOML builds the tree from go-toml's expression parser, which keeps where each key is; go-toml's
// Unmarshal would give the values without their lines.
func parseTOML(data []byte) (n *node, err error) {
	var p unstable.Parser
	p.Reset(data)
	lineOf := func(r unstable.Range) int { return bytes.Count(data[:min(int(r.Offset), len(data))], []byte{'\n'}) + 1 }
	root := newMap(1)
	table := root // where key = value lines go: the last [table] or [[array table]]
	for p.NextExpression() {
		e := p.Expression()
		switch e.Kind {
		case unstable.KeyValue:
			if err := tomlKeyValue(table, e, lineOf); err != nil {
				return nil, err
			}
		case unstable.Table, unstable.ArrayTable:
			keys, line := tomlKey(e.Key(), lineOf)
			parent, err := tomlDescend(root, keys[:len(keys)-1], line)
			if err != nil {
				return nil, err
			}
			last := keys[len(keys)-1]
			cur := parent.kids[last]
			if e.Kind == unstable.Table {
				switch {
				case cur == nil:
					table = newMap(line)
					parent.set(last, table)
				case cur.kind == kMap:
					table = cur
				default:
					return nil, &parseError{line: line, msg: fmt.Sprintf("table [%s] is already defined as a value", strings.Join(keys, "."))}
				}
				continue
			}
			if cur == nil {
				cur = &node{kind: kList, line: line}
				parent.set(last, cur)
			}
			if cur.kind != kList {
				return nil, &parseError{line: line, msg: fmt.Sprintf("[[%s]] is already defined as a value", strings.Join(keys, "."))}
			}
			table = newMap(line)
			cur.items = append(cur.items, table)
		}
	}
	if err := p.Error(); err != nil {
		pe := &parseError{msg: err.Error()}
		var perr *unstable.ParserError
		if errors.As(err, &perr) {
			pe.line = safeLine(&p, perr.Highlight, lineOf)
		}
		return nil, pe
	}
	return root, nil
}

// safeLine finds the line of an error's highlight; go-toml panics on a slice that is not of its input.
func safeLine(p *unstable.Parser, b []byte, lineOf func(unstable.Range) int) (line int) {
	defer func() {
		if recover() != nil {
			line = 0
		}
	}()
	if len(b) == 0 {
		return 0
	}
	return lineOf(p.Range(b))
}

func tomlKey(it unstable.Iterator, lineOf func(unstable.Range) int) ([]string, int) {
	var keys []string
	line := 0
	for it.Next() {
		k := it.Node()
		if line == 0 {
			line = lineOf(k.Raw)
		}
		keys = append(keys, string(k.Data))
	}
	return keys, line
}

// tomlDescend walks keys from t, making tables as needed; an array of tables stands for its last element.
func tomlDescend(t *node, keys []string, line int) (*node, error) {
	for _, k := range keys {
		c := t.kids[k]
		switch {
		case c == nil:
			c = newMap(line)
			t.set(k, c)
		case c.kind == kList && len(c.items) > 0 && c.items[len(c.items)-1].kind == kMap:
			c = c.items[len(c.items)-1]
		case c.kind != kMap:
			return nil, &parseError{line: line, msg: fmt.Sprintf("key %q is already a value", k)}
		}
		t = c
	}
	return t, nil
}

func tomlKeyValue(t *node, e *unstable.Node, lineOf func(unstable.Range) int) error {
	keys, line := tomlKey(e.Key(), lineOf)
	parent, err := tomlDescend(t, keys[:len(keys)-1], line)
	if err != nil {
		return err
	}
	v, err := tomlValue(e.Value(), line, lineOf)
	if err != nil {
		return err
	}
	v.line = line
	if parent.set(keys[len(keys)-1], v) {
		return &parseError{line: line, msg: fmt.Sprintf("key %q is repeated", strings.Join(keys, "."))}
	}
	return nil
}

func tomlValue(v *unstable.Node, line int, lineOf func(unstable.Range) int) (*node, error) {
	if v.Raw.Length > 0 {
		line = lineOf(v.Raw)
	}
	switch v.Kind {
	case unstable.String, unstable.LocalDate, unstable.LocalTime, unstable.LocalDateTime, unstable.DateTime:
		return scalar(string(v.Data), line), nil
	case unstable.Bool:
		return scalar(string(v.Data), line), nil
	case unstable.Integer:
		s := strings.ReplaceAll(string(v.Data), "_", "")
		if i, err := strconv.ParseInt(s, 0, 64); err == nil {
			s = strconv.FormatInt(i, 10)
		}
		return scalar(s, line), nil
	case unstable.Float:
		return scalar(strings.ReplaceAll(string(v.Data), "_", ""), line), nil
	case unstable.Array:
		n := &node{kind: kList, line: line}
		it := v.Children()
		for it.Next() {
			c, err := tomlValue(it.Node(), line, lineOf)
			if err != nil {
				return nil, err
			}
			n.items = append(n.items, c)
		}
		return n, nil
	case unstable.InlineTable:
		n := newMap(line)
		it := v.Children()
		for it.Next() {
			if err := tomlKeyValue(n, it.Node(), lineOf); err != nil {
				return nil, err
			}
		}
		return n, nil
	}
	return nil, &parseError{line: line, msg: fmt.Sprintf("unsupported TOML value %s", v.Kind)}
}

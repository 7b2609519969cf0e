package springconfig

import (
	"bytes"
	"encoding/json"
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/clover-sched/clover/internal/workflow"
)

// Batches (graphs of jobs, see package workflow) are declared in the same files, under `batches:`. Their
// keys are those of the API's batch body (workflow.Definition): the tree is typed by the schema below,
// then decoded as that body would be and checked by the same Validate, so that a file says what the API
// would. Batches have no defaults, templates or parents: a batch is one document.

// BatchDeclaration is one batch definition and where it was declared.
type BatchDeclaration struct {
	Definition workflow.Definition
	// Origin says where it was declared: "jobs.yaml:40", `Batch("year-end")`.
	Origin string
}

// Batch keys by dotted path; the items of a list of objects have the list's path as their prefix
// (nodes.job, nodes.locks.shared).
var batchKeys = map[string]valueKind{
	"name": vString, "description": vString, "schedule": vString, "time_zone": vString, "frequency": vString,
	"cycle_format": vString, "requested_by": vList, "nodes": vObjectList, "edges": vObjectList,

	"nodes.name": vString, "nodes.job": vString, "nodes.group": vString, "nodes.labels": vStrMap,
	"nodes.params": vStrMap, "nodes.partitions": vList, "nodes.partitions_from": vString,
	"nodes.frequencies": vList, "nodes.locks": vObjectList, "nodes.resources": vIntMap,
	"nodes.pre": vString, "nodes.post": vString, "nodes.handlers": vObject,
	"nodes.locks.name": vString, "nodes.locks.shared": vBool,

	"edges.from": vString, "edges.to": vString, "edges.flag": vString,
}

// scalarItem is the key an item of a list of objects may be written as alone: `locks: [ledger]`.
var scalarItem = map[string]string{"nodes.locks": "name"}

func init() {
	for _, h := range []string{"on_start", "on_success", "on_failure"} {
		p := "nodes.handlers." + h
		batchKeys[p], batchKeys[p+".command"], batchKeys[p+".contacts"] = vObject, vString, vList
	}
}

// batchKeyIDs are the keys under prefix, for suggestions.
func batchKeyIDs(prefix string) []string {
	var out []string
	for k := range batchKeys {
		if rest, ok := strings.CutPrefix(k, prefix); ok && !strings.Contains(rest, ".") {
			out = append(out, rest)
		}
	}
	slices.Sort(out)
	return out
}

func batchOwner(n *node, i int, where string) owner {
	if name := n.get("name"); name != nil && name.kind == kScalar && name.text != "" {
		return owner{batch: name.text}
	}
	return owner{section: fmt.Sprintf("%sbatches[%d]", where, i)}
}

// checkBatches reports what is misshapen in a batches section: keys no batch has, wrong shapes.
func checkBatches(n *node, where string, c *collector) {
	if n.kind != kList {
		c.add(n.line, owner{section: where + "batches"}, "", "want a list of batches")
		return
	}
	for i, b := range n.items {
		o := batchOwner(b, i, where)
		if b.kind != kMap {
			c.add(b.line, o, "", "want a mapping of keys")
			continue
		}
		toJSON(b, "", "", o, c)
	}
}

// toJSON types a tree by the batch schema: schema is the path of n in batchKeys ("" for a batch), shown
// the path written in the file (nodes[2].locks[0]). Problems are reported; what is wrong is left out.
func toJSON(n *node, schema, shown string, o owner, c *collector) map[string]any {
	out := map[string]any{}
	for _, k := range n.keys {
		v := n.kids[k]
		path, at := joinPath(schema, k), joinPath(shown, k)
		kind, known := batchKeys[path]
		if !known || strings.Contains(k, ".") {
			// A dotted key (handlers.on_failure.command) is not a path here: write the mapping out.
			c.add(v.line, o, at, "%s", unknownKeyMsg(k, batchKeyIDs(joinPath(schema, ""))))
			continue
		}
		if v.kind == kNull {
			continue
		}
		if x, ok := typed(v, kind, path, at, o, c); ok {
			out[k] = x
		}
	}
	return out
}

func typed(v *node, kind valueKind, path, at string, o owner, c *collector) (any, bool) {
	switch kind {
	case vObject:
		if v.kind != kMap {
			c.add(v.line, o, at, "want a mapping of keys")
			return nil, false
		}
		return toJSON(v, path, at, o, c), true
	case vObjectList:
		if v.kind != kList {
			c.add(v.line, o, at, "want a list")
			return nil, false
		}
		items := []any{}
		for i, item := range v.items {
			itemAt := fmt.Sprintf("%s[%d]", at, i)
			switch {
			case item.kind == kMap:
				items = append(items, toJSON(item, path, itemAt, o, c))
			case item.kind == kScalar && scalarItem[path] != "":
				items = append(items, map[string]any{scalarItem[path]: item.text})
			default:
				c.add(item.line, o, itemAt, "want a mapping of keys")
			}
		}
		return items, true
	case vList:
		list, ok := wantList(v, at, o, c)
		return list, ok
	case vStrMap, vIntMap:
		if v.kind != kMap {
			c.add(v.line, o, at, "want a mapping of names to values")
			return nil, false
		}
		m := map[string]any{}
		for _, k := range v.keys {
			s, ok := wantScalar(v.kids[k], at+"."+k, o, c)
			if !ok {
				continue
			}
			if kind == vStrMap {
				m[k] = s
				continue
			}
			n, err := strconv.Atoi(strings.TrimSpace(s))
			if err != nil {
				c.add(v.kids[k].line, o, at+"."+k, "%q: want a whole number", s)
				continue
			}
			m[k] = n
		}
		return m, true
	case vBool:
		s, ok := wantScalar(v, at, o, c)
		if !ok {
			return nil, false
		}
		b, err := strconv.ParseBool(strings.TrimSpace(s))
		if err != nil {
			c.add(v.line, o, at, "%q: want true or false", s)
			return nil, false
		}
		return b, true
	default:
		return wantScalar(v, at, o, c)
	}
}

// buildBatches turns each batch of the file into a declaration, checked as the API checks it (the jobs
// its nodes name are checked by the cluster, where they may come from another file or a client).
func buildBatches(file string, root *node, c *collector) []BatchDeclaration {
	list := root.kids["batches"]
	if list == nil || list.kind != kList {
		return nil
	}
	var out []BatchDeclaration
	seen := map[string]int{}
	for i, b := range list.items {
		if b.kind != kMap {
			continue // reported by checkFile
		}
		o := batchOwner(b, i, "")
		quiet := &collector{file: c.file} // checkFile reported the shapes already
		def, err := decodeBatch(toJSON(b, "", "", o, quiet))
		if err != nil || len(quiet.errs) > 0 {
			if err != nil {
				c.add(b.line, o, "", "%s", strings.TrimPrefix(err.Error(), "batch "+def.Name+": "))
			}
			continue
		}
		if first, dup := seen[def.Name]; dup {
			c.add(b.line, o, "", "declared twice (first at %s:%d)", file, first)
			continue
		}
		seen[def.Name] = b.line
		out = append(out, BatchDeclaration{Definition: def, Origin: fmt.Sprintf("%s:%d", file, b.line)})
	}
	return out
}

// decodeBatch decodes a typed batch as the API decodes its body, and validates it.
func decodeBatch(m map[string]any) (workflow.Definition, error) {
	var def workflow.Definition
	b, err := json.Marshal(m)
	if err != nil {
		return def, err
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields() // the schema let through only keys the definition has: a guard
	if err := dec.Decode(&def); err != nil {
		return def, err
	}
	if err := def.Validate(); err != nil {
		return def, err
	}
	return def, nil
}

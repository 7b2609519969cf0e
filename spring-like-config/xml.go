package springconfig

import (
	"bytes"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"strings"
)

// The XML form, for teams coming from Spring's <task:scheduled-tasks> and Quartz XML. It maps onto the
// same tree as YAML (see README.md):
//
//	<clover>
//	  <properties><property name="region" value="emea"/></properties>
//	  <defaults timeout="10m"><retry max="3"/><contacts><contact>ops@example.com</contact></contacts></defaults>
//	  <template name="nightly" time_zone="Europe/Paris"/>
//	  <job name="settle" parent="nightly" schedule="0 0 2 * * ?" handler="settle">
//	    <params><param name="ledger" value="main"/></params>
//	  </job>
//	  <profile name="prod"><job name="settle" timeout="30m"/></profile>
//	</clover>
//
// A scalar key is an attribute or an element holding text; a group (retry, routing...) is an element; a
// map (params, routing.labels) holds elements with a name and a value attribute or text; a list
// (contacts, routing.clients, routing.shard_items) holds one element per item, whatever its name.

type xmlElem struct {
	name     string
	line     int
	attrs    []xml.Attr
	children []*xmlElem
	text     strings.Builder
}

func parseXML(data []byte) (*node, error) {
	d := xml.NewDecoder(bytes.NewReader(data))
	var stack []*xmlElem
	var root *xmlElem
	count := 0
	for {
		line, _ := d.InputPos()
		tok, err := d.Token()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			line, _ = d.InputPos()
			var se *xml.SyntaxError
			if errors.As(err, &se) {
				line = se.Line
			}
			return nil, &parseError{line: line, msg: strings.TrimPrefix(err.Error(), "XML syntax error on line "+fmt.Sprint(line)+": ")}
		}
		switch t := tok.(type) {
		case xml.StartElement:
			if count++; count > maxNodes || len(stack) > 100 {
				return nil, &parseError{line: line, msg: "document too large or too deeply nested"}
			}
			e := &xmlElem{name: t.Name.Local, line: line, attrs: t.Attr}
			if len(stack) == 0 {
				if root != nil {
					return nil, &parseError{line: line, msg: "more than one root element"}
				}
				root = e
			} else {
				parent := stack[len(stack)-1]
				parent.children = append(parent.children, e)
			}
			stack = append(stack, e)
		case xml.EndElement:
			stack = stack[:len(stack)-1]
		case xml.CharData:
			if len(stack) > 0 {
				stack[len(stack)-1].text.Write(t)
			}
		}
	}
	if root == nil {
		return nil, nil
	}
	if root.name != "clover" {
		return nil, &parseError{line: root.line, msg: fmt.Sprintf("root element <%s>: want <clover>", root.name)}
	}
	return xmlSection(root, true)
}

// xmlAttrs are the attributes that carry keys: namespace declarations and xsi:... are not keys.
func xmlAttrs(e *xmlElem) []xml.Attr {
	var out []xml.Attr
	for _, a := range e.attrs {
		if a.Name.Space == "" && a.Name.Local != "xmlns" {
			out = append(out, a)
		}
	}
	return out
}

func xmlAttr(e *xmlElem, name string) (string, bool) {
	for _, a := range xmlAttrs(e) {
		if a.Name.Local == name {
			return a.Value, true
		}
	}
	return "", false
}

func xmlSet(n *node, key string, v *node) error {
	if n.set(key, v) {
		return &parseError{line: v.line, msg: fmt.Sprintf("key %q is repeated", key)}
	}
	return nil
}

// xmlSection reads <clover> or <profile>: properties, defaults, templates, jobs and (at the top) profiles.
func xmlSection(e *xmlElem, top bool) (*node, error) {
	n := newMap(e.line)
	named := func(c *xmlElem) (string, error) {
		name, ok := xmlAttr(c, "name")
		if !ok || name == "" {
			return "", &parseError{line: c.line, msg: fmt.Sprintf("<%s> needs a name attribute", c.name)}
		}
		return name, nil
	}
	child := func(key string, line int) *node {
		if c, ok := n.kids[key]; ok {
			return c
		}
		c := newMap(line)
		if key == "jobs" || key == "batches" {
			c = &node{kind: kList, line: line}
		}
		n.set(key, c)
		return c
	}
	for _, c := range e.children {
		switch {
		case c.name == "properties":
			m, err := xmlMap(c)
			if err != nil {
				return nil, err
			}
			if err := xmlSet(n, "properties", m); err != nil {
				return nil, err
			}
		case c.name == "defaults":
			m, err := xmlObject(c, "")
			if err != nil {
				return nil, err
			}
			if err := xmlSet(n, "defaults", m); err != nil {
				return nil, err
			}
		case c.name == "template":
			name, err := named(c)
			if err != nil {
				return nil, err
			}
			m, err := xmlObject(c, "")
			if err != nil {
				return nil, err
			}
			m.del("name")
			if err := xmlSet(child("templates", c.line), name, m); err != nil {
				return nil, err
			}
		case c.name == "job":
			m, err := xmlObject(c, "")
			if err != nil {
				return nil, err
			}
			jobs := child("jobs", c.line)
			jobs.items = append(jobs.items, m)
		case c.name == "batch":
			m, err := xmlBatch(c, "")
			if err != nil {
				return nil, err
			}
			batches := child("batches", c.line)
			batches.items = append(batches.items, m)
		case c.name == "profile" && top:
			name, err := named(c)
			if err != nil {
				return nil, err
			}
			m, err := xmlSection(c, false)
			if err != nil {
				return nil, err
			}
			if err := xmlSet(child("profiles", c.line), name, m); err != nil {
				return nil, err
			}
		default:
			// Kept so that validation reports it as an unknown key, with its line.
			m, err := xmlObject(c, c.name+".")
			if err != nil {
				return nil, err
			}
			if err := xmlSet(n, c.name, m); err != nil {
				return nil, err
			}
		}
	}
	return n, nil
}

// xmlObject reads a job, defaults, template or a group such as <retry>; prefix is its key path.
func xmlObject(e *xmlElem, prefix string) (*node, error) {
	n := newMap(e.line)
	for _, a := range xmlAttrs(e) {
		if err := xmlSet(n, a.Name.Local, scalar(a.Value, e.line)); err != nil {
			return nil, err
		}
	}
	for _, c := range e.children {
		var v *node
		var err error
		switch k := jobKeys[prefix+c.name]; {
		case k.kind == vStrMap:
			v, err = xmlMap(c)
		case k.kind == vList && len(c.children) > 0:
			v = &node{kind: kList, line: c.line}
			for _, item := range c.children {
				v.items = append(v.items, scalar(strings.TrimSpace(item.text.String()), item.line))
			}
		case k.kind != vObject && len(c.children) == 0 && len(xmlAttrs(c)) == 0:
			v = scalar(strings.TrimSpace(c.text.String()), c.line)
		default:
			v, err = xmlObject(c, prefix+c.name+".")
		}
		if err != nil {
			return nil, err
		}
		if err := xmlSet(n, c.name, v); err != nil {
			return nil, err
		}
	}
	return n, nil
}

// xmlMap reads <params>, <labels> or <properties>: children with a name, and a value attribute or text.
func xmlMap(e *xmlElem) (*node, error) {
	n := newMap(e.line)
	for _, c := range e.children {
		name, ok := xmlAttr(c, "name")
		if !ok || name == "" {
			return nil, &parseError{line: c.line, msg: fmt.Sprintf("<%s> in <%s> needs a name attribute", c.name, e.name)}
		}
		val, ok := xmlAttr(c, "value")
		if !ok {
			val = strings.TrimSpace(c.text.String())
		}
		if err := xmlSet(n, name, scalar(val, c.line)); err != nil {
			return nil, err
		}
	}
	return n, nil
}

// xmlBatch reads a <batch>, or an element within one whose key path is schema (nodes, nodes.locks...):
//
//	<batch name="year-end" schedule="0 0 22 * * ?" frequency="D">
//	  <node name="extract" job="ye-extract" partitions="A,B,C">
//	    <locks><lock name="ledger" shared="true"/></locks>
//	    <resources><resource name="db" value="1"/></resources>
//	    <handlers><on_failure command="notify.sh"><contacts><contact>ops@example.com</contact></contacts></on_failure></handlers>
//	  </node>
//	  <edge from="extract" to="summary" flag="successful"/>
//	</batch>
//
// <node> and <edge> are the items of nodes and edges (a <nodes> or <edges> wrapper is allowed too); a list
// of objects (locks) holds one element per item; the rest reads as in a job.
func xmlBatch(e *xmlElem, schema string) (*node, error) {
	n := newMap(e.line)
	for _, a := range xmlAttrs(e) {
		if err := xmlSet(n, a.Name.Local, scalar(a.Value, e.line)); err != nil {
			return nil, err
		}
	}
	// Text in an element of keys is a mistake (<on_failure>notify.sh</on_failure>), not nothing; a lock's
	// is its name (<lock shared="true">ledger</lock>).
	if text := strings.TrimSpace(e.text.String()); text != "" {
		if scalarItem[schema] == "" || n.kids[scalarItem[schema]] != nil || len(e.children) > 0 {
			return nil, &parseError{line: e.line, msg: fmt.Sprintf("<%s> holds text %q: its keys are attributes or elements", e.name, clipText(text))}
		}
		n.set(scalarItem[schema], scalar(text, e.line))
	}
	for _, c := range e.children {
		key := c.name
		if schema == "" && (key == "node" || key == "edge") {
			item, err := xmlBatch(c, key+"s")
			if err != nil {
				return nil, err
			}
			if err := xmlAppend(n, key+"s", c.line, item); err != nil {
				return nil, err
			}
			continue
		}
		path := joinPath(schema, key)
		kind := batchKeys[path]
		var v *node
		var err error
		if text := strings.TrimSpace(c.text.String()); text != "" && (kind == vObjectList || kind == vStrMap || kind == vIntMap || kind == vObject || kind == vList && len(c.children) > 0) {
			return nil, &parseError{line: c.line, msg: fmt.Sprintf("<%s> holds text %q: want one element per item", c.name, clipText(text))}
		}
		switch {
		case kind == vObjectList:
			// <nodes><node/></nodes>, <locks><lock/></locks>: the items are named as the list is, less its s.
			itemName := strings.TrimSuffix(key, "s")
			for _, item := range c.children {
				if item.name != itemName {
					return nil, &parseError{line: item.line, msg: fmt.Sprintf("<%s> in <%s>: want <%s>", item.name, c.name, itemName)}
				}
				var x *node
				if len(item.children) == 0 && len(xmlAttrs(item)) == 0 && scalarItem[path] != "" {
					x = scalar(strings.TrimSpace(item.text.String()), item.line)
				} else if x, err = xmlBatch(item, path); err != nil {
					return nil, err
				}
				if err := xmlAppend(n, key, c.line, x); err != nil {
					return nil, err
				}
			}
			if _, ok := n.kids[key]; !ok {
				n.set(key, &node{kind: kList, line: c.line})
			}
			continue
		case kind == vStrMap || kind == vIntMap:
			v, err = xmlMap(c)
		case kind == vList && len(c.children) > 0:
			v = &node{kind: kList, line: c.line}
			for _, item := range c.children {
				v.items = append(v.items, scalar(strings.TrimSpace(item.text.String()), item.line))
			}
		case kind != vObject && len(c.children) == 0 && len(xmlAttrs(c)) == 0:
			v = scalar(strings.TrimSpace(c.text.String()), c.line)
		default:
			v, err = xmlBatch(c, path)
		}
		if err != nil {
			return nil, err
		}
		if err := xmlSet(n, key, v); err != nil {
			return nil, err
		}
	}
	return n, nil
}

// xmlAppend adds item to the list under key, made on first use: a batch's <node> and <edge> elements may
// stand alone or in a <nodes> or <edges>, in any order.
func xmlAppend(n *node, key string, line int, item *node) error {
	list, ok := n.kids[key]
	if !ok {
		list = &node{kind: kList, line: line}
		n.set(key, list)
	}
	if list.kind != kList {
		return &parseError{line: line, msg: fmt.Sprintf("<%s> is given as a value and as items", key)}
	}
	list.items = append(list.items, item)
	return nil
}

func clipText(s string) string {
	if len(s) > 40 {
		return s[:40] + "..."
	}
	return s
}

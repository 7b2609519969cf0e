package springconfig

import (
	"fmt"
	"slices"
	"strings"
)

// checkFile reports unknown keys and misshapen sections everywhere, profiles included, so that a typo in
// the prod profile is found while validating for dev.
func checkFile(root *node, c *collector) {
	checkSection(root, topKeys, "", c)
	if p := root.kids["profiles"]; p != nil {
		if p.kind != kMap {
			c.add(p.line, owner{}, "profiles", "want a mapping of profile names")
			return
		}
		for _, name := range p.keys {
			prof := p.kids[name]
			if prof.kind != kMap {
				c.add(prof.line, owner{section: "profile " + name}, "", "want a mapping (jobs:, defaults:, ...)")
				continue
			}
			checkSection(prof, profileKeys, "profile "+name+": ", c)
		}
	}
}

func checkSection(n *node, allowed []string, where string, c *collector) {
	for _, k := range n.keys {
		if !slices.Contains(allowed, k) {
			c.add(n.kids[k].line, owner{section: strings.TrimSuffix(where, ": ")}, k, "%s", unknownKeyMsg(k, allowed))
		}
	}
	if p := n.kids["properties"]; p != nil && p.kind != kMap && p.kind != kNull {
		c.add(p.line, owner{section: where + "properties"}, "", "want a mapping of names to values")
	}
	if d := n.kids["defaults"]; d != nil {
		checkJobKeys(d, "", owner{section: where + "defaults"}, []string{"name", keyParent}, c)
	}
	if t := n.kids["templates"]; t != nil {
		if t.kind != kMap {
			c.add(t.line, owner{section: where + "templates"}, "", "want a mapping of template names")
		} else {
			for _, name := range t.keys {
				checkJobKeys(t.kids[name], "", owner{section: where + "template " + name}, []string{"name"}, c)
			}
		}
	}
	if b := n.kids["batches"]; b != nil {
		checkBatches(b, where, c)
	}
	if j := n.kids["jobs"]; j != nil {
		if j.kind != kList {
			c.add(j.line, owner{section: where + "jobs"}, "", "want a list of jobs")
			return
		}
		for i, item := range j.items {
			checkJobKeys(item, "", jobOwner(item, i, where), nil, c)
		}
	}
}

func jobOwner(n *node, i int, where string) owner {
	if name := n.get("name"); name != nil && name.kind == kScalar && name.text != "" {
		return owner{job: name.text}
	}
	return owner{section: fmt.Sprintf("%sjobs[%d]", where, i)}
}

// checkJobKeys reports the keys of a job (or defaults, template) that no job has, and those the section
// does not allow.
func checkJobKeys(n *node, prefix string, o owner, forbidden []string, c *collector) {
	if n.kind == kNull {
		return
	}
	if n.kind != kMap {
		c.add(n.line, o, strings.TrimSuffix(prefix, "."), "want a mapping of keys")
		return
	}
	for _, k := range n.keys {
		v, path := n.kids[k], prefix+k
		jk, ok := jobKeys[path]
		switch {
		case !ok:
			c.add(v.line, o, path, "%s", unknownKeyMsg(path, jobKeyIDs))
		case slices.Contains(forbidden, path):
			c.add(v.line, o, path, "not allowed in %s", o.section)
		case jk.kind == vObject && v.kind != kNull:
			checkJobKeys(v, path+".", o, nil, c)
		}
	}
}

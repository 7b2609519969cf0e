package springconfig

import (
	"cmp"
	"context"
	"fmt"
	"os"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/clover-sched/clover/client"
	"github.com/clover-sched/clover/internal/job"
	"github.com/clover-sched/clover/internal/schedule"
)

// Options say how files are read.
type Options struct {
	// Profile overlays the section profiles.<Profile> of each file on its base; "" reads the base only.
	// A profile that no file declares is an error.
	Profile string
	// Lookup resolves ${NAME} from the environment; nil means os.LookupEnv. Tests inject their own.
	Lookup func(name string) (string, bool)
}

func (o Options) lookup(name string) (string, bool) {
	if o.Lookup != nil {
		return o.Lookup(name)
	}
	return os.LookupEnv(name)
}

// Declaration is one job definition and where it was declared.
type Declaration struct {
	Spec job.Spec
	// Origin says where it was declared: "jobs.yaml:12", "struct Jobs field Settle", `Job("settle")`.
	Origin string
	// Handler is the Go function of a job declared in code; nil for jobs declared in files.
	Handler client.HandlerFunc
}

// Specs returns the job definitions of ds.
func Specs(ds []Declaration) []job.Spec {
	out := make([]job.Spec, len(ds))
	for i, d := range ds {
		out[i] = d.Spec
	}
	return out
}

// Load reads the job files at paths (.yaml, .yml, .json, .toml, .xml) into one set of declarations. It
// reports every problem of every file at once, as Errors; a job declared in two files is one of them.
func Load(ctx context.Context, paths []string, opts Options) ([]Declaration, error) {
	var files []parsedFile
	var errs Errors
	for _, p := range paths {
		if err := ctx.Err(); err != nil {
			return nil, fmt.Errorf("springconfig: load: %w", err)
		}
		data, err := os.ReadFile(p)
		if err != nil {
			errs = append(errs, &Error{File: p, Msg: fmt.Sprintf("cannot read: %v", err)})
			continue
		}
		files = append(files, parseOne(p, data, opts))
	}
	decls, more := combine(files, opts)
	errs = append(errs, more...)
	sortErrors(errs, paths)
	if err := errs.err(); err != nil {
		return nil, err
	}
	return decls, nil
}

// Parse reads one file's content as Load does; name gives its format (by extension) and names it in errors.
func Parse(name string, data []byte, opts Options) ([]Declaration, error) {
	decls, errs := combine([]parsedFile{parseOne(name, data, opts)}, opts)
	sortErrors(errs, []string{name})
	if err := errs.err(); err != nil {
		return nil, err
	}
	return decls, nil
}

type parsedFile struct {
	decls    []Declaration
	profiles []string
	errs     Errors
}

// combine checks what only the whole load can: the profile exists somewhere, no name is declared twice.
func combine(files []parsedFile, opts Options) ([]Declaration, Errors) {
	var decls []Declaration
	var errs Errors
	var profiles []string
	for _, f := range files {
		errs = append(errs, f.errs...)
		profiles = append(profiles, f.profiles...)
		decls = append(decls, f.decls...)
	}
	if opts.Profile != "" && !slices.Contains(profiles, opts.Profile) {
		slices.Sort(profiles)
		profiles = slices.Compact(profiles)
		msg := "unknown profile: the files declare no profiles"
		if len(profiles) > 0 {
			msg = "unknown profile: the files declare " + strings.Join(profiles, ", ")
			if s := suggest(opts.Profile, profiles); s != "" {
				msg = fmt.Sprintf("unknown profile (did you mean %s?): the files declare %s", s, strings.Join(profiles, ", "))
			}
		}
		errs = append(Errors{{Section: "profile " + opts.Profile, Msg: msg}}, errs...)
	}
	decls, dupErrs := dedupe(decls)
	return decls, append(errs, dupErrs...)
}

// dedupe keeps the first declaration of each name and reports the others, naming both places.
func dedupe(decls []Declaration) ([]Declaration, Errors) {
	var errs Errors
	first := map[string]Declaration{}
	var out []Declaration
	for _, d := range decls {
		if f, ok := first[d.Spec.Name]; ok {
			file, line := splitOrigin(d.Origin)
			errs = append(errs, &Error{File: file, Line: line, Job: d.Spec.Name, Msg: "declared twice (first at " + f.Origin + ")"})
			continue
		}
		first[d.Spec.Name] = d
		out = append(out, d)
	}
	return out, errs
}

// splitOrigin splits "jobs.yaml:12" into its file and line; other origins have no line.
func splitOrigin(origin string) (string, int) {
	if i := strings.LastIndexByte(origin, ':'); i > 0 {
		if n, err := strconv.Atoi(origin[i+1:]); err == nil {
			return origin[:i], n
		}
	}
	return origin, 0
}

// parseOne reads one file: parse, check keys, overlay the profile, resolve placeholders, inherit, decode.
func parseOne(name string, data []byte, opts Options) (pf parsedFile) {
	c := &collector{file: name}
	defer func() { pf.errs = append(pf.errs, c.errs...) }()
	root, err := parseFile(name, data)
	if err != nil {
		line := 0
		if pe, ok := err.(*parseError); ok {
			line = pe.line
		}
		c.add(line, owner{}, "", "%s", err.Error())
		return pf
	}
	checkFile(root, c)
	if p := root.get("profiles"); p != nil && p.kind == kMap {
		pf.profiles = p.keys
	}
	if opts.Profile != "" {
		if prof := root.get("profiles." + opts.Profile); prof != nil && prof.kind == kMap {
			root = overlay(root, prof, c)
		}
	}
	root.del("profiles")
	root.del("$schema")
	resolveAll(root, opts, c)
	pf.decls = buildJobs(name, root, c)
	return pf
}

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

// overlay lays a profile over the base: properties, defaults and templates merge; a job of the profile
// merges over the base job of the same name, or is added.
func overlay(root, prof *node, c *collector) *node {
	out := root.clone()
	for _, k := range []string{"properties", "defaults", "templates"} {
		if v := prof.kids[k]; v != nil {
			out.set(k, merge(out.kids[k], v))
		}
	}
	pj := prof.kids["jobs"]
	if pj == nil || pj.kind != kList {
		return out
	}
	base := out.kids["jobs"]
	if base == nil || base.kind != kList {
		base = &node{kind: kList, line: pj.line}
		out.set("jobs", base)
	}
	for i, j := range pj.items {
		name := j.get("name")
		if name == nil || name.kind != kScalar || name.text == "" {
			c.add(j.line, owner{section: fmt.Sprintf("profile jobs[%d]", i)}, "name", "is required to match a job of the base")
			continue
		}
		idx := slices.IndexFunc(base.items, func(b *node) bool {
			bn := b.get("name")
			return bn != nil && bn.kind == kScalar && bn.text == name.text
		})
		if idx < 0 {
			base.items = append(base.items, j.clone())
		} else {
			line := base.items[idx].line // the job is where the base declares it
			base.items[idx] = merge(base.items[idx], j)
			base.items[idx].line = line
		}
	}
	return out
}

// buildJobs turns each job of the file into a declaration, inheriting from defaults and parents.
func buildJobs(file string, root *node, c *collector) []Declaration {
	jobs := root.kids["jobs"]
	if jobs == nil || jobs.kind != kList {
		return nil
	}
	var out []Declaration
	seen := map[string]int{}
	for i, j := range jobs.items {
		if j.kind != kMap {
			continue // reported by checkFile
		}
		o := jobOwner(j, i, "")
		merged, ok := inherit(root, j, o, c)
		if !ok {
			continue
		}
		spec, ok := decodeJob(merged, o, c)
		if !ok {
			continue
		}
		if first, dup := seen[spec.Name]; dup {
			c.add(j.line, o, "", "declared twice (first at %s:%d)", file, first)
			continue
		}
		seen[spec.Name] = j.line
		out = append(out, Declaration{Spec: spec, Origin: fmt.Sprintf("%s:%d", file, j.line)})
	}
	return out
}

// inherit lays, in order, the defaults, the job's ancestors from the farthest, and the job itself.
func inherit(root, j *node, o owner, c *collector) (*node, bool) {
	var chain []*node // nearest ancestor first
	seen := []string{}
	cur := j
	for {
		p := cur.get(keyParent)
		if p == nil || p.kind == kNull {
			break
		}
		if p.kind != kScalar || p.text == "" {
			c.add(p.line, o, keyParent, "want the name of a template or job")
			return nil, false
		}
		if slices.Contains(seen, p.text) {
			c.add(p.line, o, keyParent, "parent chain loops: %s -> %s", strings.Join(seen, " -> "), p.text)
			return nil, false
		}
		seen = append(seen, p.text)
		next := findParent(root, p.text)
		if next == nil {
			c.add(p.line, o, keyParent, "%s", unknownParentMsg(root, p.text))
			return nil, false
		}
		chain = append(chain, next)
		cur = next
	}
	out := newMap(j.line)
	if d := root.kids["defaults"]; d != nil && d.kind == kMap {
		out = merge(out, d)
	}
	for i := len(chain) - 1; i >= 0; i-- {
		a := chain[i].clone()
		a.del("name")
		a.del(keyParent)
		out = merge(out, a)
	}
	own := j.clone()
	own.del(keyParent)
	out = merge(out, own)
	out.line = j.line
	return out, true
}

func findParent(root *node, name string) *node {
	if t := root.get("templates"); t != nil && t.kind == kMap {
		if n := t.kids[name]; n != nil && n.kind == kMap {
			return n
		}
	}
	if jobs := root.kids["jobs"]; jobs != nil && jobs.kind == kList {
		for _, j := range jobs.items {
			if n := j.get("name"); n != nil && n.kind == kScalar && n.text == name && j.kind == kMap {
				return j
			}
		}
	}
	return nil
}

func unknownParentMsg(root *node, name string) string {
	var names []string
	if t := root.get("templates"); t != nil && t.kind == kMap {
		names = append(names, t.keys...)
	}
	if jobs := root.kids["jobs"]; jobs != nil && jobs.kind == kList {
		for _, j := range jobs.items {
			if n := j.get("name"); n != nil && n.kind == kScalar {
				names = append(names, n.text)
			}
		}
	}
	msg := fmt.Sprintf("no template or job %q in this file", name)
	if s := suggest(name, names); s != "" {
		msg += fmt.Sprintf(" (did you mean %s?)", s)
	}
	return msg
}

// decodeJob types the keys of a merged job into client.JobConfig, then validates the spec it makes.
func decodeJob(n *node, o owner, c *collector) (job.Spec, bool) {
	var jc client.JobConfig
	before := len(c.errs)
	group := ""
	// A key that does not decode stays at its zero value, which every check accepts, so the checks below
	// still report the other keys' problems.
	decodeInto(reflect.ValueOf(&jc).Elem(), n, "", o, c, &group)
	spec := jc.Spec()
	if group != "" {
		if g, ok := spec.Params[keyGroup]; ok && g != group {
			c.add(lineOf(n, keyGroup), o, keyGroup, "%q differs from params.group %q", group, g)
			return job.Spec{}, false
		}
		if spec.Params == nil {
			spec.Params = map[string]string{}
		}
		spec.Params[keyGroup] = group
	}
	if o.job == "" && spec.Name != "" {
		o = owner{job: spec.Name}
	}
	for _, p := range validateSpec(spec) {
		c.add(lineOf(n, p.key), o, p.key, "%s", p.msg)
	}
	return spec, len(c.errs) == before
}

// lineOf is the line of the key at path, else of the nearest group holding it (overdue for
// overdue.after), else of the job.
func lineOf(n *node, path string) int {
	for path != "" {
		if v := n.get(path); v != nil {
			return v.line
		}
		i := strings.LastIndexByte(path, '.')
		if i < 0 {
			break
		}
		path = path[:i]
	}
	return n.line
}

func decodeInto(jc reflect.Value, n *node, prefix string, o owner, c *collector, group *string) {
	for _, k := range n.keys {
		v, path := n.kids[k], prefix+k
		jk, known := jobKeys[path]
		if !known || v.kind == kNull || path == keyParent {
			continue // unknown keys were reported by checkFile
		}
		if jk.kind == vObject {
			if v.kind == kMap {
				decodeInto(jc, v, path+".", o, c, group)
			}
			continue
		}
		if path == keyGroup {
			if s, ok := wantScalar(v, path, o, c); ok {
				*group = s
			}
			continue
		}
		f := jc.FieldByIndex(jk.index)
		switch jk.kind {
		case vList:
			var list []string
			switch v.kind {
			case kScalar:
				for item := range strings.SplitSeq(v.text, ",") {
					if item = strings.TrimSpace(item); item != "" {
						list = append(list, item)
					}
				}
			case kList:
				for _, item := range v.items {
					if s, ok := wantScalar(item, path, o, c); ok {
						list = append(list, s)
					}
				}
			default:
				c.add(v.line, o, path, "want a list of values, got a mapping")
			}
			f.Set(reflect.ValueOf(list))
		case vStrMap:
			if v.kind != kMap {
				c.add(v.line, o, path, "want a mapping of names to values")
				continue
			}
			m := map[string]string{}
			for _, mk := range v.keys {
				if s, ok := wantScalar(v.kids[mk], path+"."+mk, o, c); ok {
					m[mk] = s
				}
			}
			f.Set(reflect.ValueOf(m))
		default:
			s, ok := wantScalar(v, path, o, c)
			if !ok {
				continue
			}
			if err := setScalar(f, jk.kind, s); err != nil {
				c.add(v.line, o, path, "%s", err.Error())
			}
		}
	}
}

func wantScalar(v *node, path string, o owner, c *collector) (string, bool) {
	switch v.kind {
	case kScalar:
		return v.text, true
	case kNull:
		return "", true
	case kMap:
		c.add(v.line, o, path, "want a single value, got a mapping")
	default:
		c.add(v.line, o, path, "want a single value, got a list")
	}
	return "", false
}

func setScalar(f reflect.Value, k valueKind, s string) error {
	s = strings.TrimSpace(s)
	switch k {
	case vInt:
		i, err := strconv.Atoi(s)
		if err != nil {
			return fmt.Errorf("want a whole number, got %q", s)
		}
		f.SetInt(int64(i))
	case vFloat:
		x, err := strconv.ParseFloat(s, 64)
		if err != nil {
			return fmt.Errorf("want a number, got %q", s)
		}
		f.SetFloat(x)
	case vBool:
		b, err := strconv.ParseBool(s)
		if err != nil {
			return fmt.Errorf("want true or false, got %q", s)
		}
		f.SetBool(b)
	case vDuration:
		d, err := parseDuration(s)
		if err != nil {
			return err
		}
		f.SetInt(int64(d))
	default:
		f.SetString(s)
	}
	return nil
}

// parseDuration reads "90s", "1h30m", or a bare number of seconds as job.Duration does in JSON.
func parseDuration(s string) (time.Duration, error) {
	if d, err := time.ParseDuration(s); err == nil {
		return d, nil
	}
	if x, err := strconv.ParseFloat(s, 64); err == nil && x >= -1e9 && x <= 1e9 {
		return time.Duration(x * float64(time.Second)), nil
	}
	return 0, fmt.Errorf("want a duration like 90s or 1h30m, got %q", s)
}

// problem is one failed check of a spec, on a key.
type problem struct{ key, msg string }

// validateSpec runs the job package's own checks, Spec.Validate and schedule.Parse, so that a file says
// what the API would. Validate stops at the first problem, so each group of fields is checked alone on a
// spec known to be valid; the cross-field rules are checked last, on the whole spec.
func validateSpec(s job.Spec) []problem {
	const probeName = "probe"
	base := job.Spec{Name: probeName, Schedule: "@daily", Handler: "probe"}
	if s.Name == "" {
		return []problem{{"name", "is required"}}
	}
	groups := []func(p *job.Spec){
		func(p *job.Spec) { p.Name = s.Name },
		func(p *job.Spec) {
			p.Handler, p.Params = s.Handler, s.Params
			if s.Handler == "" {
				p.Params = nil
			}
		},
		func(p *job.Spec) { p.Timeout = s.Timeout },
		func(p *job.Spec) { p.Mode = s.Mode },
		func(p *job.Spec) { p.Misfire.Policy = s.Misfire.Policy },
		func(p *job.Spec) { p.Misfire.Limit = s.Misfire.Limit },
		func(p *job.Spec) { p.Overlap = s.Overlap },
		func(p *job.Spec) { p.Routing.Strategy = s.Routing.Strategy },
		func(p *job.Spec) { p.Routing.Width = s.Routing.Width },
		func(p *job.Spec) { p.Routing.Clients = s.Routing.Clients },
		func(p *job.Spec) {
			p.Routing.Shards, p.Routing.ShardItems = s.Routing.Shards, s.Routing.ShardItems
			if s.Routing.Shards != 0 || len(s.Routing.ShardItems) > 0 {
				p.Routing.Strategy = job.RouteShardBroadcast // the strategy has its own check
			}
		},
		func(p *job.Spec) { p.Retry.Max = s.Retry.Max },
		func(p *job.Spec) { p.Retry.Backoff = s.Retry.Backoff },
		func(p *job.Spec) { p.Retry.Delay, p.Retry.MaxDelay = s.Retry.Delay, s.Retry.MaxDelay },
		func(p *job.Spec) { p.Retry.Jitter = s.Retry.Jitter },
		func(p *job.Spec) { p.Overdue = s.Overdue },
		func(p *job.Spec) { p.TimeZone = s.TimeZone },
	}
	var out []problem
	for i, set := range groups {
		p := base
		set(&p)
		if err := p.Validate(); err != nil {
			name := probeName
			if i == 0 {
				name = s.Name
			}
			out = append(out, problemOf(err.Error(), name))
		}
	}
	zoneBad := slices.ContainsFunc(out, func(p problem) bool { return p.key == "time_zone" })
	if s.Schedule == "" {
		out = append(out, problem{"schedule", "is required"})
	} else if _, err := schedule.Parse(s.Schedule, s.TimeZone); err != nil {
		if pe, ok := err.(*schedule.ParseError); ok && pe.Field == "time zone" {
			if !zoneBad {
				out = append(out, problem{"time_zone", err.Error()})
			}
		} else {
			out = append(out, problem{"schedule", err.Error()})
		}
	}
	if len(out) == 0 {
		if err := s.Validate(); err != nil {
			out = append(out, problemOf(err.Error(), s.Name))
		}
	}
	return out
}

// problemOf finds the key a job package message is about: "job x: retry.max 200: want 0-100" is about
// retry.max, and says "200: want 0-100" of it.
func problemOf(msg, name string) problem {
	if rest, ok := strings.CutPrefix(msg, "job name "); ok {
		return problem{"name", rest}
	}
	msg = strings.TrimPrefix(msg, "job "+name+": ")
	tok, rest, _ := strings.Cut(msg, " ")
	key := tok
	if i := strings.IndexByte(key, '['); i > 0 {
		key = key[:i]
	}
	key = strings.TrimSuffix(key, ":")
	if _, ok := jobKeys[key]; !ok {
		return problem{"", msg}
	}
	if strings.HasPrefix(rest, "and ") || tok != key {
		return problem{key, msg}
	}
	return problem{key, rest}
}

// sortErrors orders errors by file, as given, then line.
func sortErrors(errs Errors, files []string) {
	slices.SortStableFunc(errs, func(a, b *Error) int {
		return cmp.Or(cmp.Compare(slices.Index(files, a.File), slices.Index(files, b.File)), cmp.Compare(a.Line, b.Line))
	})
}

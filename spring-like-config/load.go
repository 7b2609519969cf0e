package springconfig

import (
	"cmp"
	"context"
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"

	"github.com/clover-sched/clover/client"
	"github.com/clover-sched/clover/internal/job"
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

// Set is what files and code declare: jobs, and batches of them.
type Set struct {
	Jobs    []Declaration
	Batches []BatchDeclaration
}

// Load reads the job files at paths (.yaml, .yml, .json, .toml, .xml) into one set of declarations. It
// reports every problem of every file at once, as Errors; a job declared in two files is one of them.
// The files' batches are checked too; LoadSet returns them.
func Load(ctx context.Context, paths []string, opts Options) ([]Declaration, error) {
	set, err := LoadSet(ctx, paths, opts)
	return set.Jobs, err
}

// LoadSet reads the jobs and the batches of the files at paths, as Load does.
func LoadSet(ctx context.Context, paths []string, opts Options) (Set, error) {
	var files []parsedFile
	var errs Errors
	for _, p := range paths {
		if err := ctx.Err(); err != nil {
			return Set{}, fmt.Errorf("springconfig: load: %w", err)
		}
		data, err := os.ReadFile(p)
		if err != nil {
			errs = append(errs, &Error{File: p, Msg: fmt.Sprintf("cannot read: %v", err)})
			continue
		}
		files = append(files, parseOne(p, data, opts))
	}
	set, more := combine(files, opts)
	errs = append(errs, more...)
	sortErrors(errs, paths)
	if err := errs.err(); err != nil {
		return Set{}, err
	}
	return set, nil
}

// Parse reads one file's content as Load does; name gives its format (by extension) and names it in errors.
func Parse(name string, data []byte, opts Options) ([]Declaration, error) {
	set, errs := combine([]parsedFile{parseOne(name, data, opts)}, opts)
	sortErrors(errs, []string{name})
	if err := errs.err(); err != nil {
		return nil, err
	}
	return set.Jobs, nil
}

type parsedFile struct {
	decls    []Declaration
	batches  []BatchDeclaration
	profiles []string
	errs     Errors
}

// combine checks what only the whole load can: the profile exists somewhere, no name is declared twice.
func combine(files []parsedFile, opts Options) (Set, Errors) {
	var decls []Declaration
	var batches []BatchDeclaration
	var errs Errors
	var profiles []string
	for _, f := range files {
		errs = append(errs, f.errs...)
		profiles = append(profiles, f.profiles...)
		decls = append(decls, f.decls...)
		batches = append(batches, f.batches...)
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
	batches, batchDups := dedupeBatches(batches)
	return Set{Jobs: decls, Batches: batches}, append(append(errs, dupErrs...), batchDups...)
}

// dedupeBatches keeps the first declaration of each batch and reports the others, naming both places.
func dedupeBatches(decls []BatchDeclaration) ([]BatchDeclaration, Errors) {
	return dedupeNamed(decls, func(d BatchDeclaration) (string, string) { return d.Definition.Name, d.Origin },
		func(e *Error, name string) { e.Batch = name })
}

// dedupe keeps the first declaration of each name and reports the others, naming both places.
func dedupe(decls []Declaration) ([]Declaration, Errors) {
	return dedupeNamed(decls, func(d Declaration) (string, string) { return d.Spec.Name, d.Origin },
		func(e *Error, name string) { e.Job = name })
}

func dedupeNamed[T any](decls []T, key func(T) (name, origin string), owner func(e *Error, name string)) ([]T, Errors) {
	var errs Errors
	first := map[string]string{} // name → origin
	var out []T
	for _, d := range decls {
		name, origin := key(d)
		if f, ok := first[name]; ok {
			file, line := splitOrigin(origin)
			e := &Error{File: file, Line: line, Msg: "declared twice (first at " + f + ")"}
			owner(e, name)
			errs = append(errs, e)
			continue
		}
		first[name] = origin
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
	pf.batches = buildBatches(name, root, c)
	return pf
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
	overlayList(out, prof, "jobs", "job", c)
	overlayList(out, prof, "batches", "batch", c)
	return out
}

// overlayList merges each item of the profile's list over the base's item of the same name, or adds it.
func overlayList(out, prof *node, key, what string, c *collector) {
	pj := prof.kids[key]
	if pj == nil || pj.kind != kList {
		return
	}
	base := out.kids[key]
	if base == nil || base.kind != kList {
		base = &node{kind: kList, line: pj.line}
		out.set(key, base)
	}
	for i, j := range pj.items {
		name := j.get("name")
		if name == nil || name.kind != kScalar || name.text == "" {
			c.add(j.line, owner{section: fmt.Sprintf("profile %s[%d]", key, i)}, "name", "is required to match a %s of the base", what)
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

// sortErrors orders errors by file, as given, then line.
func sortErrors(errs Errors, files []string) {
	slices.SortStableFunc(errs, func(a, b *Error) int {
		return cmp.Or(cmp.Compare(slices.Index(files, a.File), slices.Index(files, b.File)), cmp.Compare(a.Line, b.Line))
	})
}

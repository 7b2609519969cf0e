package springconfig

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/clover-sched/clover/client"
)

// Declarer is a source of declarations: files, a tagged struct or a builder. Register and Merge take any
// number of them.
type Declarer interface {
	Declarations(ctx context.Context) ([]Declaration, error)
}

var (
	_ Declarer = files{}
	_ Declarer = tagged{}
	_ Declarer = (*Builder)(nil)
)

type files struct {
	paths []string
	opts  Options
}

// Files declares the jobs of job files, read by Load when declarations are asked for.
func Files(paths []string, opts Options) Declarer { return files{paths, opts} }

func (f files) Declarations(ctx context.Context) ([]Declaration, error) {
	return Load(ctx, f.paths, f.opts)
}

// Merge gathers the declarations of ds into one set. A job declared twice, in files or in code, is an
// error naming both places; every problem of every source is reported at once.
func Merge(ctx context.Context, ds ...Declarer) ([]Declaration, error) {
	set, err := MergeSet(ctx, ds...)
	return set.Jobs, err
}

// MergeSet gathers the jobs and the batches of ds (those that are also BatchDeclarers: files and batch
// builders), as Merge does the jobs.
func MergeSet(ctx context.Context, ds ...Declarer) (Set, error) {
	var set Set
	var errs Errors
	collect := func(err error) error {
		var es Errors
		switch {
		case errors.As(err, &es):
			errs = append(errs, es...)
		case err != nil:
			return err
		}
		return nil
	}
	for _, d := range ds {
		if f, ok := d.(files); ok {
			// Read once for both.
			s, err := LoadSet(ctx, f.paths, f.opts)
			if err := collect(err); err != nil {
				return Set{}, err
			}
			set.Jobs, set.Batches = append(set.Jobs, s.Jobs...), append(set.Batches, s.Batches...)
			continue
		}
		decls, err := d.Declarations(ctx)
		if err := collect(err); err != nil {
			return Set{}, err
		}
		set.Jobs = append(set.Jobs, decls...)
		if bd, ok := d.(BatchDeclarer); ok {
			batches, err := bd.BatchDeclarations(ctx)
			if err := collect(err); err != nil {
				return Set{}, err
			}
			set.Batches = append(set.Batches, batches...)
		}
	}
	var dups, batchDups Errors
	set.Jobs, dups = dedupe(set.Jobs)
	set.Batches, batchDups = dedupeBatches(set.Batches)
	errs = append(append(errs, dups...), batchDups...)
	if err := errs.err(); err != nil {
		return Set{}, err
	}
	return set, nil
}

// Register declares every job of ds with c.Declare, and registers the Go handlers of those declared in
// code with c.Handle, under the job's handler name; then every batch with c.DeclareBatch, whose nodes
// must run jobs declared here (a client declares batches of its own jobs only). Call it before c.Run.
// Nothing is registered unless everything is valid.
func Register(ctx context.Context, c *client.Client, ds ...Declarer) error {
	set, err := MergeSet(ctx, ds...)
	if err != nil {
		return fmt.Errorf("springconfig: register: %w", err)
	}
	decls := set.Jobs
	for _, b := range set.Batches {
		for _, n := range b.Definition.Nodes {
			if !slices.ContainsFunc(decls, func(d Declaration) bool { return d.Spec.Name == n.Job }) {
				return fmt.Errorf("springconfig: register %s: node %s: job %s is not declared here; a client declares batches of its own jobs only (make others' with clover config apply or the API)", b.Origin, n.Name, n.Job)
			}
		}
	}
	handlers := map[string]Declaration{}
	for _, d := range decls {
		if d.Handler == nil {
			continue
		}
		if prev, ok := handlers[d.Spec.Handler]; ok && reflect.ValueOf(prev.Handler).Pointer() != reflect.ValueOf(d.Handler).Pointer() {
			return fmt.Errorf("springconfig: register: handler %s is given two different functions, at %s and at %s", d.Spec.Handler, prev.Origin, d.Origin)
		}
		handlers[d.Spec.Handler] = d
	}
	for name, d := range handlers {
		c.Handle(name, d.Handler)
	}
	for _, d := range decls {
		if err := c.Declare(d.Spec); err != nil {
			return fmt.Errorf("springconfig: register %s: %w", d.Origin, err)
		}
	}
	for _, b := range set.Batches {
		if err := c.DeclareBatch(b.Definition); err != nil {
			return fmt.Errorf("springconfig: register %s: %w", b.Origin, err)
		}
	}
	return nil
}

// Tagged struct fields.

var handlerType = reflect.TypeFor[client.HandlerFunc]()

type tagged struct{ v any }

// Tagged declares the jobs of a struct whose fields are handlers tagged like
//
//	Settle client.HandlerFunc `clover:"name=settle,cron=0 0 2 * * ?,timeout=5m,retry.max=3,overlap=forbid"`
//
// The tag holds key=value pairs with the keys of a job file (cron is schedule; params.NAME and
// routing.labels.NAME set one entry). A comma starts a new pair only when a key= follows it, so that
// "cron=0 0 2,14 * * ?" and "contacts=a@example.com,b@example.com" read as one value. The handler name is
// the job name unless handler= says otherwise. v is the struct or a pointer to it.
func Tagged(v any) Declarer { return tagged{v} }

func (t tagged) Declarations(context.Context) ([]Declaration, error) {
	rv := reflect.ValueOf(t.v)
	for rv.Kind() == reflect.Pointer && !rv.IsNil() {
		rv = rv.Elem()
	}
	if rv.Kind() != reflect.Struct {
		return nil, fmt.Errorf("springconfig: Tagged wants a struct, got %T", t.v)
	}
	typ := rv.Type()
	var out []Declaration
	var errs Errors
	for i := range typ.NumField() {
		f := typ.Field(i)
		tag, ok := f.Tag.Lookup("clover")
		if !ok || tag == "-" {
			continue
		}
		origin := strings.Join(strings.Fields(fmt.Sprintf("struct %s field %s", typ.Name(), f.Name)), " ")
		c := &collector{file: origin}
		var fn client.HandlerFunc
		switch {
		case !f.Type.ConvertibleTo(handlerType):
			c.add(0, owner{}, "", "type %s is not a handler func(context.Context, client.JobContext) error", f.Type)
		case !f.IsExported():
			c.add(0, owner{}, "", "field is unexported, so its handler cannot be read")
		default:
			fn = rv.Field(i).Convert(handlerType).Interface().(client.HandlerFunc)
			if fn == nil {
				c.add(0, owner{}, "", "handler is nil")
			}
		}
		n := parseTag(tag, c)
		if d, ok := declare(n, origin, fn, c); ok && len(c.errs) == 0 {
			out = append(out, d)
		}
		errs = append(errs, c.errs...)
	}
	if err := errs.err(); err != nil {
		return out, err
	}
	return out, nil
}

var tagKey = regexp.MustCompile(`^\s*([A-Za-z_][A-Za-z0-9_.\-]*)\s*=`)

// parseTag reads key=value pairs into a job tree.
func parseTag(tag string, c *collector) *node {
	type pair struct{ key, val string }
	var pairs []pair
	for seg := range strings.SplitSeq(tag, ",") {
		if m := tagKey.FindStringSubmatch(seg); m != nil {
			pairs = append(pairs, pair{m[1], strings.TrimSpace(seg[len(m[0]):])})
			continue
		}
		if len(pairs) == 0 {
			c.add(0, owner{}, "", "tag %q: want key=value pairs", tag)
			return newMap(0)
		}
		pairs[len(pairs)-1].val += "," + seg
	}
	n := newMap(0)
	for _, p := range pairs {
		key := p.key
		if key == "cron" {
			key = "schedule"
		}
		setPath(n, key, scalar(strings.TrimSpace(p.val), 0), c)
	}
	return n
}

// setPath puts v at a dotted key; the part after a map key (params.region) is one entry's name.
func setPath(n *node, key string, v *node, c *collector) {
	parts := strings.Split(key, ".")
	cur := n
	for i, part := range parts[:len(parts)-1] {
		next := cur.kids[part]
		if next == nil {
			next = newMap(0)
			cur.set(part, next)
		}
		if next.kind != kMap {
			c.add(0, owner{}, key, "is repeated")
			return
		}
		cur = next
		if jobKeys[strings.Join(parts[:i+1], ".")].kind == vStrMap {
			parts = append(parts[:i+1], strings.Join(parts[i+1:], "."))
			break
		}
	}
	if cur.set(parts[len(parts)-1], v) {
		c.add(0, owner{}, key, "is repeated")
	}
}

// declare checks and decodes a job declared in code, as a file's job would be.
func declare(n *node, origin string, fn client.HandlerFunc, c *collector) (Declaration, bool) {
	o := owner{}
	if name := n.get("name"); name != nil && name.kind == kScalar {
		o.job = name.text
	}
	checkJobKeys(n, "", o, []string{keyParent}, c)
	if n.get("handler") == nil && n.get("command") == nil && o.job != "" {
		n.set("handler", scalar(o.job, 0))
	}
	if len(c.errs) > 0 {
		return Declaration{}, false
	}
	spec, ok := decodeJob(n, o, c)
	return Declaration{Spec: spec, Origin: origin, Handler: fn}, ok
}

// Builder declares one job in code:
//
//	springconfig.Job("settle").Cron("0 0 2 * * ?").Timeout(5 * time.Minute).Retry(3).Handler(settle)
//
// Its methods set the keys of a job file; Set sets any of them by name. Errors are reported when the
// declarations are read (by Register or Merge), all at once.
type Builder struct {
	name    string
	n       *node
	handler client.HandlerFunc
	errs    collector
}

// Job starts the declaration of the job name.
func Job(name string) *Builder {
	b := &Builder{name: name, n: newMap(0)}
	b.errs.file = fmt.Sprintf("Job(%q)", name)
	b.n.set("name", scalar(name, 0))
	return b
}

func (b *Builder) put(key, val string) *Builder {
	if old := b.n.get(key); old != nil {
		// A builder call replaces an earlier one, as a second assignment would.
		old.kind, old.text = kScalar, val
		return b
	}
	setPath(b.n, key, scalar(val, 0), &b.errs)
	return b
}

func (b *Builder) list(key string, items []string) *Builder {
	n := &node{kind: kList}
	for _, s := range items {
		n.items = append(n.items, scalar(s, 0))
	}
	b.n.del(key)
	setPath(b.n, key, n, &b.errs)
	return b
}

// Set sets any key by its name in a job file ("retry.jitter", "params.region"), written as in a file.
func (b *Builder) Set(key, value string) *Builder {
	if key == "cron" {
		key = "schedule"
	}
	return b.put(key, value)
}

// Cron sets the schedule: a cron expression (with seconds), "@every 10s", "@daily"...
func (b *Builder) Cron(expr string) *Builder { return b.put("schedule", expr) }

// TimeZone sets the IANA zone the schedule is read in.
func (b *Builder) TimeZone(tz string) *Builder { return b.put("time_zone", tz) }

// Handler sets the Go function that runs the job; Register registers it under the handler name (the job
// name unless HandlerName sets another).
func (b *Builder) Handler(fn client.HandlerFunc) *Builder {
	b.handler = fn
	return b
}

// HandlerName names the handler that runs the job, when it is not the job name.
func (b *Builder) HandlerName(name string) *Builder { return b.put("handler", name) }

// Command makes it a shell job running command.
func (b *Builder) Command(command string) *Builder { return b.put("command", command) }

// Param sets one parameter.
func (b *Builder) Param(name, value string) *Builder { return b.put("params."+name, value) }

// Group sets params.group.
func (b *Builder) Group(group string) *Builder { return b.put(keyGroup, group) }

// Timeout sets the time limit of one run.
func (b *Builder) Timeout(d time.Duration) *Builder { return b.put("timeout", d.String()) }

// Contacts sets the owners told of failures.
func (b *Builder) Contacts(contacts ...string) *Builder { return b.list("contacts", contacts) }

// Overridable lists the params a trigger or a client's request may change (never command).
func (b *Builder) Overridable(keys ...string) *Builder { return b.list("overridable", keys) }

// Mode sets who fires the job: "remote" (the leader) or "local" (the declaring client).
func (b *Builder) Mode(mode string) *Builder { return b.put("mode", mode) }

// Misfire sets the misfire policy and, for fire-all, its limit (0: the default).
func (b *Builder) Misfire(policy string, limit int) *Builder {
	b.put("misfire.policy", policy)
	if limit != 0 {
		b.put("misfire.limit", strconv.Itoa(limit))
	}
	return b
}

// Overlap sets the overlap policy.
func (b *Builder) Overlap(policy string) *Builder { return b.put("overlap", policy) }

// Route sets the routing strategy.
func (b *Builder) Route(strategy string) *Builder { return b.put("routing.strategy", strategy) }

// Label requires a client label.
func (b *Builder) Label(name, value string) *Builder { return b.put("routing.labels."+name, value) }

// Retry sets how many retries follow a failed run.
func (b *Builder) Retry(max int) *Builder { return b.put("retry.max", strconv.Itoa(max)) }

// Backoff sets the retry backoff kind and delays (0: the default).
func (b *Builder) Backoff(kind string, delay, maxDelay time.Duration) *Builder {
	b.put("retry.backoff", kind)
	if delay != 0 {
		b.put("retry.delay", delay.String())
	}
	if maxDelay != 0 {
		b.put("retry.max_delay", maxDelay.String())
	}
	return b
}

// Jitter sets the fraction (0-1) by which retry delays vary.
func (b *Builder) Jitter(f float64) *Builder {
	return b.put("retry.jitter", strconv.FormatFloat(f, 'g', -1, 64))
}

// Overdue raises an alarm when a run lasts longer than max(after, ratio × its recent average).
func (b *Builder) Overdue(after time.Duration, ratio float64) *Builder {
	b.put("overdue.after", after.String())
	return b.put("overdue.ratio", strconv.FormatFloat(ratio, 'g', -1, 64))
}

// Rerunnable says the job is idempotent.
func (b *Builder) Rerunnable() *Builder { return b.put("rerunnable", "true") }

// Declarations checks the job and returns it.
func (b *Builder) Declarations(context.Context) ([]Declaration, error) {
	c := &collector{file: b.errs.file, errs: append(Errors(nil), b.errs.errs...)}
	d, ok := declare(b.n.clone(), c.file, b.handler, c)
	if err := c.errs.err(); err != nil || !ok {
		return nil, err
	}
	return []Declaration{d}, nil
}

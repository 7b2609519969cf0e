package springconfig

import (
	"fmt"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/clover-sched/clover/client"
	"github.com/clover-sched/clover/internal/job"
	"github.com/clover-sched/clover/internal/schedule"
)

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
			list, _ := wantList(v, path, o, c)
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

// wantList reads a list of values, or one value of comma-separated items.
func wantList(v *node, path string, o owner, c *collector) ([]string, bool) {
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
		return nil, false
	}
	return list, true
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
	// No schedule is a job that runs only when asked (an operator, an application, a batch), as the API has it.
	if _, err := schedule.Parse(s.Schedule, s.TimeZone); err != nil {
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

package springconfig

import (
	"reflect"
	"slices"
	"strings"
	"time"

	"github.com/clover-sched/clover/client"
)

// valueKind is what a key holds.
type valueKind uint8

const (
	vString valueKind = iota
	vInt
	vFloat
	vBool
	vDuration
	vList   // of strings
	vStrMap // string to string
	vObject // a group of keys: retry, routing...
	// Batches only:
	vObjectList // a list of groups of keys: a batch's nodes, edges, a node's locks
	vIntMap     // string to whole number: a node's resources
)

// jobKey is one key a job may set. The keys are those of client.JobConfig, read from its mapstructure
// tags, so that a job file and a client's `jobs:` list cannot drift apart.
type jobKey struct {
	path  string
	kind  valueKind
	index []int // field index in client.JobConfig; nil for keys that are not in it
}

// Keys of our own, besides client.JobConfig's.
const (
	keyParent = "parent" // a template or job of the same file to inherit from
	keyGroup  = "group"  // shorthand for params.group, as command is for params.command
)

var (
	jobKeys   = map[string]jobKey{}
	jobKeyIDs []string // sorted, for suggestions and the schema test
)

func init() {
	var walk func(t reflect.Type, prefix string, index []int)
	walk = func(t reflect.Type, prefix string, index []int) {
		for i := range t.NumField() {
			f := t.Field(i)
			tag := f.Tag.Get("mapstructure")
			if tag == "" || tag == "-" {
				continue
			}
			k := jobKey{path: prefix + tag, index: append(slices.Clone(index), i)}
			switch {
			case f.Type == reflect.TypeFor[time.Duration]():
				k.kind = vDuration
			case f.Type.Kind() == reflect.Struct:
				k.kind = vObject
				walk(f.Type, k.path+".", k.index)
			case f.Type.Kind() == reflect.Slice:
				k.kind = vList
			case f.Type.Kind() == reflect.Map:
				k.kind = vStrMap
			case f.Type.Kind() == reflect.Int:
				k.kind = vInt
			case f.Type.Kind() == reflect.Float64:
				k.kind = vFloat
			case f.Type.Kind() == reflect.Bool:
				k.kind = vBool
			default:
				k.kind = vString
			}
			jobKeys[k.path] = k
		}
	}
	walk(reflect.TypeFor[client.JobConfig](), "", nil)
	jobKeys[keyParent] = jobKey{path: keyParent}
	jobKeys[keyGroup] = jobKey{path: keyGroup}
	for k := range jobKeys {
		jobKeyIDs = append(jobKeyIDs, k)
	}
	slices.Sort(jobKeyIDs)
}

// Top-level keys of a file, and those a profile may overlay.
var (
	topKeys     = []string{"$schema", "properties", "defaults", "templates", "jobs", "batches", "profiles"}
	profileKeys = []string{"properties", "defaults", "templates", "jobs", "batches"}
)

// suggest returns the candidate closest to s, or "" when none is close enough to be a likely typo.
func suggest(s string, candidates []string) string {
	best, bestD := "", 0
	for _, c := range candidates {
		d := editDistance(strings.ToLower(s), strings.ToLower(c))
		if best == "" || d < bestD {
			best, bestD = c, d
		}
	}
	if best == "" || bestD > max(2, len(s)/3) {
		return ""
	}
	return best
}

// editDistance is the Levenshtein distance of a and b.
func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}

// unknownKeyMsg says a key is unknown and, when one is close, which was meant.
func unknownKeyMsg(key string, candidates []string) string {
	if s := suggest(key, candidates); s != "" {
		return "unknown key (did you mean " + s + "?)"
	}
	return "unknown key"
}

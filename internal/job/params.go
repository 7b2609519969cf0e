package job

import (
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"unicode/utf8"
)

// Bounds of a definition, so that one caller cannot store or fire what exhausts the cluster.
const (
	MaxParams      = 64
	MaxParamKey    = 128
	MaxParamValue  = 16 << 10
	MaxScheduleLen = 256
)

// ErrParams is wrapped by every refusal of a firing's parameters.
var ErrParams = errors.New("parameters refused")

// commandParam is the shell handler's command: only an admin's definition sets it, never a firing.
const commandParam = "command"

// ValidateParams checks a parameter map against the bounds; what names the map in errors.
func ValidateParams(what string, p map[string]string) error {
	if len(p) > MaxParams {
		return fmt.Errorf("%s: %d parameters, at most %d", what, len(p), MaxParams)
	}
	for _, k := range slices.Sorted(maps.Keys(p)) {
		if k == "" || len(k) > MaxParamKey || !utf8.ValidString(k) {
			return fmt.Errorf("%s: key %.40q: must be 1-%d bytes of UTF-8", what, k, MaxParamKey)
		}
		if len(p[k]) > MaxParamValue {
			return fmt.Errorf("%s.%s: %d bytes, at most %d", what, k, len(p[k]), MaxParamValue)
		}
	}
	return nil
}

// ParamVar is the name a shell command sees a parameter under (CLOVER_PARAM_<VAR>): two keys with the same
// variable are one parameter, whatever their case or spelling ("mode" and "MODE"; "scrıpt" with a
// dotless i and "script", which upper-case alike).
func ParamVar(k string) string { return strings.ToUpper(k) }

// SameParam reports whether two keys name one parameter.
func SameParam(a, b string) bool { return ParamVar(a) == ParamVar(b) || strings.EqualFold(a, b) }

// batchParams are the parameters a batch run gives its executions: its context, and the pre, post and
// handler commands of its node, which a shell job's client runs around the command.
var batchParams = []string{"batch", "batch_cycle", "batch_frequency", "batch_node", "batch_partition",
	"batch_pre", "batch_post", "batch_on_start", "batch_on_success", "batch_on_failure"}

// IsBatchParam reports whether k names one of the parameters only a batch run sets.
func IsBatchParam(k string) bool {
	return slices.ContainsFunc(batchParams, func(b string) bool { return SameParam(k, b) })
}

// MergeParams is the job's parameters with those of one firing (a manual trigger, a client's request)
// over them. A firing may add parameters, and change those the job lists in overridable; it never changes
// the shell command, so that operating a job never amounts to running a command of one's choice.
func (s Spec) MergeParams(firing map[string]string) (map[string]string, error) {
	if err := ValidateParams("params", firing); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrParams, err)
	}
	merged := maps.Clone(s.Params)
	if merged == nil {
		merged = map[string]string{}
	}
	for _, k := range slices.Sorted(maps.Keys(firing)) {
		// Keys are compared as the variables a shell command sees (CLOVER_PARAM_<KEY>), where "mode" and
		// "MODE" are one, and so are keys that upper-case alike (SameParam).
		if SameParam(k, commandParam) {
			return nil, fmt.Errorf("%w: params.%s: a firing never sets the command; change the job's definition (an admin's right)", ErrParams, k)
		}
		if IsBatchParam(k) {
			return nil, fmt.Errorf("%w: params.%s: set by batch runs only (their context, a node's pre and post commands)", ErrParams, k)
		}
		for jk := range s.Params {
			if SameParam(jk, k) && !slices.ContainsFunc(s.Overridable, func(o string) bool { return SameParam(o, jk) }) {
				return nil, fmt.Errorf("%w: params.%s: job %s does not list it in overridable", ErrParams, k, s.Name)
			}
		}
		for mk := range merged {
			if mk != k && SameParam(mk, k) {
				delete(merged, mk) // one variable: the firing's spelling stands
			}
		}
		merged[k] = firing[k]
	}
	if len(merged) > MaxParams {
		return nil, fmt.Errorf("%w: %d parameters with the job's, at most %d", ErrParams, len(merged), MaxParams)
	}
	return merged, nil
}

package job

import (
	"encoding/json"
	"fmt"
	"regexp"
	"strings"
	"time"
)

// Spec is a job's definition, as stored and as shown by the API.
type Spec struct {
	Name     string            `json:"name" bson:"_id"`
	Schedule string            `json:"schedule" bson:"schedule"`                       // cron with seconds, "@every 10s", "@daily", ...; empty: only when asked (a trigger, a request, a batch)
	TimeZone string            `json:"time_zone,omitempty" bson:"time_zone,omitempty"` // IANA name; empty means UTC
	Handler  string            `json:"handler" bson:"handler"`                         // "shell", or a Go handler name a client serves
	Params   map[string]string `json:"params,omitempty" bson:"params,omitempty"`
	// Overridable are the params a firing (a trigger, a client's request) may change; it may add others.
	// The shell command is never overridable.
	Overridable []string `json:"overridable,omitempty" bson:"overridable,omitempty"`
	Timeout     Duration `json:"timeout,omitempty" bson:"timeout,omitempty"`
	Contacts    []string `json:"contacts,omitempty" bson:"contacts,omitempty"`
	Paused      bool     `json:"paused" bson:"paused"`

	// Policies; the zero value of each is its default.
	Mode    Mode    `json:"mode,omitempty" bson:"mode,omitempty"`
	Misfire Misfire `json:"misfire,omitzero" bson:"misfire,omitempty"`
	Overlap string  `json:"overlap,omitempty" bson:"overlap,omitempty"`
	Routing Routing `json:"routing,omitzero" bson:"routing,omitempty"`
	Retry   Retry   `json:"retry,omitzero" bson:"retry,omitempty"`
	Overdue Overdue `json:"overdue,omitzero" bson:"overdue,omitempty"`
	// Rerunnable says the job is idempotent: a run whose client died may run again elsewhere. A job that is
	// not rerunnable is never run twice blindly: such a run becomes orphaned until someone decides.
	Rerunnable bool `json:"rerunnable,omitempty" bson:"rerunnable,omitempty"`

	// Source says who owns the definition: "api", or "client:<id>" for a job declared by a client.
	Source string `json:"source,omitempty" bson:"source,omitempty"`
	// Version grows by one on every change; updates are conditional on it.
	Version   int64     `json:"version" bson:"version"`
	CreatedAt time.Time `json:"created_at" bson:"created_at"`
	UpdatedAt time.Time `json:"updated_at" bson:"updated_at"`
	// ActiveSince is when the job was created or its schedule last changed: no firing before it is ever
	// caught up.
	ActiveSince time.Time `json:"active_since" bson:"active_since"`
	// PausedAt is when the job was last paused: on resume, the times missed since then go to the misfire
	// policy.
	PausedAt time.Time `json:"paused_at,omitzero" bson:"paused_at,omitempty"`
	// Stats is shown by the API and never stored with the definition (see Stats).
	Stats *Stats `json:"stats,omitempty" bson:"-"`
}

var namePattern = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$`)

// ValidateName reports whether name can name a job: it is part of execution ids and URLs.
func ValidateName(name string) error {
	if !namePattern.MatchString(name) {
		return fmt.Errorf("job name %q: must be 1-128 characters of letters, digits, '.', '_' or '-', starting with a letter or digit", name)
	}
	return nil
}

// Validate checks the fields that do not need the schedule parser (package schedule checks the schedule).
func (s *Spec) Validate() error {
	if err := ValidateName(s.Name); err != nil {
		return err
	}
	if strings.TrimSpace(s.Schedule) == "" && s.Mode == ModeLocal {
		return fmt.Errorf("job %s: schedule is required in local mode (a job without one runs only when asked)", s.Name)
	}
	if len(s.Schedule) > MaxScheduleLen {
		return fmt.Errorf("job %s: schedule of %d characters, at most %d", s.Name, len(s.Schedule), MaxScheduleLen)
	}
	if err := ValidateParams("job "+s.Name+": params", s.Params); err != nil {
		return err
	}
	for _, k := range s.Overridable {
		if k == commandParam {
			return fmt.Errorf("job %s: overridable: %s can never be overridden by a firing", s.Name, commandParam)
		}
	}
	if s.Handler == "" {
		return fmt.Errorf("job %s: handler is required", s.Name)
	}
	if s.Handler == HandlerShell && s.Params["command"] == "" {
		return fmt.Errorf("job %s: handler %q needs params.command", s.Name, HandlerShell)
	}
	if s.Timeout < 0 {
		return fmt.Errorf("job %s: timeout %s is negative", s.Name, time.Duration(s.Timeout))
	}
	if err := s.validatePolicies(); err != nil {
		return err
	}
	if s.TimeZone != "" {
		if _, err := time.LoadLocation(s.TimeZone); err != nil {
			return fmt.Errorf("job %s: time_zone %q: %w", s.Name, s.TimeZone, err)
		}
	}
	return nil
}

// HandlerShell runs params.command with /bin/sh -c on the client.
const HandlerShell = "shell"

// Duration is a time.Duration that reads and writes as "30s" in JSON and as nanoseconds in BSON.
type Duration time.Duration

func (d Duration) String() string { return time.Duration(d).String() }

// MarshalJSON writes the duration as a Go duration string.
func (d Duration) MarshalJSON() ([]byte, error) { return json.Marshal(time.Duration(d).String()) }

// UnmarshalJSON accepts a Go duration string ("90s") or a number of seconds.
func (d *Duration) UnmarshalJSON(b []byte) error {
	var v any
	if err := json.Unmarshal(b, &v); err != nil {
		return err
	}
	switch x := v.(type) {
	case string:
		p, err := time.ParseDuration(x)
		if err != nil {
			return fmt.Errorf("duration %q: %w", x, err)
		}
		*d = Duration(p)
	case float64:
		*d = Duration(time.Duration(x * float64(time.Second)))
	default:
		return fmt.Errorf("duration: want a string like \"30s\" or seconds, got %s", b)
	}
	return nil
}

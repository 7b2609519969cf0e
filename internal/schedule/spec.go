package schedule

import (
	"fmt"

	"github.com/clover-sched/clover/internal/job"
)

// ValidateSpec checks a job's definition as the server does before it stores one: its fields
// (job.Spec.Validate), and its schedule in its time zone. The CLI checks a definition with it before it
// calls the API, so a mistake is told in the server's words, with or without a server to reach.
func ValidateSpec(spec job.Spec) error {
	if err := spec.Validate(); err != nil {
		return err
	}
	if _, err := Parse(spec.Schedule, spec.TimeZone); err != nil {
		return fmt.Errorf("job %s: %w", spec.Name, err)
	}
	return nil
}

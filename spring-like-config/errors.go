package springconfig

import (
	"fmt"
	"strings"
)

// Error is one problem of a load, placed as precisely as the format allows.
type Error struct {
	File string // file name as given, or where a code declaration is ("struct Jobs field Settle")
	Line int    // 1-based; 0 when unknown
	Job  string // the job the key belongs to; empty outside a job
	// Batch is the batch the key belongs to; empty outside a batch.
	Batch string
	// Section is where the key is when it is not in a job: "defaults", "template nightly", "profile prod".
	Section string
	Key     string // dotted key path, e.g. retry.jitter; may be empty
	Msg     string
}

func (e *Error) Error() string {
	var b strings.Builder
	if e.File != "" {
		b.WriteString(e.File)
		if e.Line > 0 {
			fmt.Fprintf(&b, ":%d", e.Line)
		}
		b.WriteString(": ")
	}
	switch {
	case e.Job != "":
		fmt.Fprintf(&b, "job %s: ", e.Job)
	case e.Batch != "":
		fmt.Fprintf(&b, "batch %s: ", e.Batch)
	case e.Section != "":
		fmt.Fprintf(&b, "%s: ", e.Section)
	}
	if e.Key != "" {
		fmt.Fprintf(&b, "key %s: ", e.Key)
	}
	b.WriteString(e.Msg)
	return b.String()
}

// Errors is every problem found by one load: a load reports them all, not the first.
type Errors []*Error

func (es Errors) Error() string {
	lines := make([]string, len(es))
	for i, e := range es {
		lines[i] = e.Error()
	}
	return strings.Join(lines, "\n")
}

// err returns es as an error, or nil when it is empty (never a typed nil).
func (es Errors) err() error {
	if len(es) == 0 {
		return nil
	}
	return es
}

// collector gathers the errors of one file so that no check stops the others.
type collector struct {
	file string
	errs Errors
}

// owner says whose key it is: a job, a batch, or a section outside them.
type owner struct{ job, batch, section string }

func (c *collector) add(line int, o owner, key, format string, args ...any) {
	c.errs = append(c.errs, &Error{File: c.file, Line: line, Job: o.job, Batch: o.batch, Section: o.section, Key: key, Msg: fmt.Sprintf(format, args...)})
}

// Package springconfig reads job declarations from files (YAML, JSON, TOML, XML) and from Go code (tagged
// handler fields, a builder) into the same job.Spec that the API and client declarations produce, the
// way Spring lets Java teams declare scheduled jobs in XML or with annotations. Import it as springconfig.
//
// A file declares many jobs, shared defaults and named templates a job inherits from (parent:), profiles
// laid over the base (dev, prod), and ${NAME:default} placeholders. Load checks everything and reports
// every problem at once, each naming its file, line, job and key. Diff and Watch turn a change of the files
// into job additions, updates and deletions; Register declares code and file jobs with a client.
//
// The keys are those of client.JobConfig, read from its tags, so a job file and a client's jobs: list
// cannot drift apart. See README.md for the format.
package springconfig

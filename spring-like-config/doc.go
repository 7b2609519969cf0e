// Package springconfig will read job declarations from files (YAML, TOML, JSON, XML) with profiles,
// placeholders and a schema, and from tagged Go structs, into the same job.Spec that the API and client
// declarations produce. Import it as springconfig. Not written yet: see the open issue.
package springconfig

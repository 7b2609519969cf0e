package client

import (
	"fmt"
	"strings"
	"time"

	"github.com/clover-sched/clover/internal/config"
	"github.com/clover-sched/clover/internal/job"
)

// Config is a client's configuration.
type Config struct {
	ID        string           `mapstructure:"id"`     // unique in the cluster; default client-<host>-<pid>
	Listen    string           `mapstructure:"listen"` // ZeroMQ PULL endpoint for dispatches, tcp://host:port (port 0: any)
	ZooKeeper config.ZooKeeper `mapstructure:"zookeeper"`
	Capacity  int              `mapstructure:"capacity"` // slots: executions run at once; more are refused
	// Width is the resource width (memory units, licences...) its runs share; each run takes its job's
	// routing.width. 0: unbounded.
	Width  int               `mapstructure:"width"`
	Labels map[string]string `mapstructure:"labels"`
	// Handlers are generic handlers this client offers for any job that names them, e.g. "shell".
	Handlers []string `mapstructure:"handlers"`
	// Jobs are declared by this client: created in the cluster when it registers, and served by it.
	Jobs []JobConfig `mapstructure:"jobs"`
	// ResultRetry is how often a result without a receipt is sent again.
	ResultRetry time.Duration `mapstructure:"result_retry"`
	LogLevel    string        `mapstructure:"log_level"`
}

// JobConfig declares a job in a config file.
type JobConfig struct {
	Name     string            `mapstructure:"name"`
	Schedule string            `mapstructure:"schedule"`
	TimeZone string            `mapstructure:"time_zone"`
	Handler  string            `mapstructure:"handler"`
	Command  string            `mapstructure:"command"` // shorthand for params.command of a shell job
	Params   map[string]string `mapstructure:"params"`
	Timeout  time.Duration     `mapstructure:"timeout"`
	Contacts []string          `mapstructure:"contacts"`
}

// Spec turns the declaration into a job definition.
func (j JobConfig) Spec() job.Spec {
	params := map[string]string{}
	for k, v := range j.Params {
		params[k] = v
	}
	handler := j.Handler
	if j.Command != "" {
		params["command"] = j.Command
		if handler == "" {
			handler = job.HandlerShell
		}
	}
	if len(params) == 0 {
		params = nil
	}
	return job.Spec{
		Name: j.Name, Schedule: j.Schedule, TimeZone: j.TimeZone, Handler: handler, Params: params,
		Timeout: job.Duration(j.Timeout), Contacts: j.Contacts,
	}
}

// DefaultConfig is a client that listens on any free local port.
func DefaultConfig() Config {
	return Config{
		ID:          config.DefaultID("client"),
		Listen:      "tcp://127.0.0.1:0",
		ZooKeeper:   config.DefaultZooKeeper(),
		Capacity:    64,
		ResultRetry: time.Second,
		LogLevel:    "info",
	}
}

// Validate names the first bad key.
func (c Config) Validate() error {
	if c.ID == "" || strings.ContainsAny(c.ID, "/ ") {
		return fmt.Errorf("id %q: must be non-empty, without / or spaces", c.ID)
	}
	if !strings.HasPrefix(c.Listen, "tcp://") {
		return fmt.Errorf("listen %q: must be a tcp://host:port ZeroMQ endpoint", c.Listen)
	}
	if err := c.ZooKeeper.Validate(); err != nil {
		return err
	}
	if c.Capacity < 1 {
		return fmt.Errorf("capacity %d: must be at least 1", c.Capacity)
	}
	if c.Width < 0 {
		return fmt.Errorf("width %d: must not be negative", c.Width)
	}
	if c.ResultRetry <= 0 {
		return fmt.Errorf("result_retry %s: must be positive", c.ResultRetry)
	}
	seen := map[string]bool{}
	for i, j := range c.Jobs {
		spec := j.Spec()
		if err := spec.Validate(); err != nil {
			return fmt.Errorf("jobs[%d]: %w", i, err)
		}
		if seen[spec.Name] {
			return fmt.Errorf("jobs[%d]: job %s is declared twice", i, spec.Name)
		}
		seen[spec.Name] = true
	}
	return nil
}

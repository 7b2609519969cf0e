package client

import (
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/clover-sched/clover/internal/config"
	"github.com/clover-sched/clover/internal/job"
)

// Config is a client's configuration.
type Config struct {
	ID     string `mapstructure:"id"`     // unique in the cluster; default client-<host>-<pid>
	Listen string `mapstructure:"listen"` // ZeroMQ PULL endpoint for dispatches, tcp://host:port (port 0: any)
	// Advertise is the endpoint servers are told to dispatch to, when it is not the bound one (NAT, containers);
	// without a port, the bound port.
	Advertise string `mapstructure:"advertise"`
	// KeysDir holds this client's keypair (clients/<id>.key), the servers' public key and clients.secret.
	KeysDir string `mapstructure:"keys_dir"`
	// Insecure runs without authentication (loopback listeners only); see config.Security.
	Insecure  bool             `mapstructure:"insecure"`
	ZooKeeper config.ZooKeeper `mapstructure:"zookeeper"`
	// Capacity is how many executions run here at once; more are refused and go to another client or wait.
	// 0: derived from the machine (see DefaultCapacity).
	Capacity int `mapstructure:"capacity"`
	// JobNice is how much lower than the client's the CPU priority of the processes shell jobs start is
	// (added to the client's nice value, at most 19); 0 runs them at the client's priority. Jobs that
	// saturate the machine then cannot starve the client of the CPU it needs to keep its ZooKeeper session.
	JobNice int `mapstructure:"job_nice"`
	// JobCgroup, when set, is a cgroup v2 directory this user may write (systemd's Delegate=yes gives one)
	// that every job process is started in, so that its cpu.weight and memory.max bound all jobs together.
	JobCgroup string `mapstructure:"job_cgroup"`
	// Width is the resource width (memory units, licences...) its runs share; each run takes its job's
	// routing.width. 0: unbounded.
	Width  int               `mapstructure:"width"`
	Labels map[string]string `mapstructure:"labels"`
	// Handlers are generic handlers this client offers for any job that names them, e.g. "shell".
	Handlers []string `mapstructure:"handlers"`
	// ShellEnv names the variables of the client's environment that shell commands get, besides PATH,
	// HOME, USER, LANG, TZ and a few more (ORACLE_HOME, JAVA_HOME...). The rest is not passed on.
	ShellEnv []string `mapstructure:"shell_env"`
	// Jobs are declared by this client: created in the cluster when it registers, and served by it.
	Jobs []JobConfig `mapstructure:"jobs"`
	// ResultRetry is how often a result without a receipt is sent again.
	ResultRetry time.Duration `mapstructure:"result_retry"`
	// LeaseRenew is how often a heartbeat renews the leases of the runs under way here. Keep it well
	// under the servers' lease_timeout: a run no heartbeat lists for that long is lost.
	LeaseRenew time.Duration `mapstructure:"lease_renew"`
	// MetricsListen, when set (host:port), serves /metrics and /healthz over HTTP.
	MetricsListen string `mapstructure:"metrics_listen"`
	// DebugListen, when set, serves Go's pprof profiles on this loopback address.
	DebugListen string `mapstructure:"debug_listen"`
	// StateDir holds the journal of the runs under way (<state_dir>/<id>/runs), which lets this client,
	// restarted with the same id, report the runs that ended while it was down and watch again those still
	// going. Keep it on a disk that survives a restart, writable by this user only; default:
	// $XDG_STATE_HOME/clover, else ~/.local/state/clover.
	StateDir string `mapstructure:"state_dir"`
	// Watches start batch runs when files arrive (see WatchConfig).
	Watches []WatchConfig `mapstructure:"watches"`
	// Fallback is where reports go when no server takes them; off unless fallback.mongo_uri is set.
	Fallback FallbackConfig `mapstructure:"fallback"`
	LogLevel string         `mapstructure:"log_level"`
}

// FallbackConfig sets up the fallback queue: what a client could not deliver to any server (results,
// acks of local runs, run requests, its declarations) waits in MongoDB, or in a local spool file while
// MongoDB is down too, until a leader replays it.
type FallbackConfig struct {
	MongoURI string `mapstructure:"mongo_uri"` // the servers' database; empty: no fallback queue
	// MongoURIFile holds the URI instead (credentials in neither argv nor the environment). Its user
	// needs only insert and find on the fallback collection: the client creates no index.
	MongoURIFile string `mapstructure:"mongo_uri_file"`
	Database     string `mapstructure:"database"`
	// SpoolDir holds the spool file <id>.spool; keep it on a disk that survives a restart.
	SpoolDir      string `mapstructure:"spool_dir"`
	SpoolMaxBytes int64  `mapstructure:"spool_max_bytes"`
	// After is how long a report waits without any receipt from any server before it is queued.
	After time.Duration `mapstructure:"after"`
}

// Enabled reports whether the fallback queue is configured.
func (f FallbackConfig) Enabled() bool { return f.MongoURI != "" }

// JobConfig declares a job in a config file.
type JobConfig struct {
	Name     string            `mapstructure:"name"`
	Schedule string            `mapstructure:"schedule"`
	TimeZone string            `mapstructure:"time_zone"`
	Handler  string            `mapstructure:"handler"`
	Command  string            `mapstructure:"command"` // shorthand for params.command of a shell job
	Params   map[string]string `mapstructure:"params"`
	// Overridable are the params a trigger or request may change (never command).
	Overridable []string      `mapstructure:"overridable"`
	Timeout     time.Duration `mapstructure:"timeout"`
	Contacts    []string      `mapstructure:"contacts"`

	// Policies (see job.Spec); the zero value of each is its default.
	Mode       string        `mapstructure:"mode"` // remote (the default) or local: this client fires it itself
	Misfire    MisfireConfig `mapstructure:"misfire"`
	Overlap    string        `mapstructure:"overlap"`
	Routing    RoutingConfig `mapstructure:"routing"`
	Retry      RetryConfig   `mapstructure:"retry"`
	Overdue    OverdueConfig `mapstructure:"overdue"`
	Rerunnable bool          `mapstructure:"rerunnable"`
}

// MisfireConfig is a declared job's misfire policy (job.Misfire).
type MisfireConfig struct {
	Policy string `mapstructure:"policy"`
	Limit  int    `mapstructure:"limit"`
}

// RoutingConfig is a declared job's routing (job.Routing).
type RoutingConfig struct {
	Strategy   string            `mapstructure:"strategy"`
	HashKey    string            `mapstructure:"hash_key"`
	Labels     map[string]string `mapstructure:"labels"`
	Clients    []string          `mapstructure:"clients"`
	Width      int               `mapstructure:"width"`
	Shards     int               `mapstructure:"shards"`
	ShardItems []string          `mapstructure:"shard_items"`
}

// RetryConfig is a declared job's retry policy (job.Retry); durations are written like "10s".
type RetryConfig struct {
	Max      int           `mapstructure:"max"`
	Backoff  string        `mapstructure:"backoff"`
	Delay    time.Duration `mapstructure:"delay"`
	MaxDelay time.Duration `mapstructure:"max_delay"`
	Jitter   float64       `mapstructure:"jitter"`
}

// OverdueConfig is a declared job's overdue alarm (job.Overdue).
type OverdueConfig struct {
	After time.Duration `mapstructure:"after"`
	Ratio float64       `mapstructure:"ratio"`
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
	r := j.Routing
	return job.Spec{
		Name: j.Name, Schedule: j.Schedule, TimeZone: j.TimeZone, Handler: handler, Params: params, Overridable: j.Overridable,
		Timeout: job.Duration(j.Timeout), Contacts: j.Contacts,
		Mode:    job.Mode(j.Mode),
		Misfire: job.Misfire{Policy: j.Misfire.Policy, Limit: j.Misfire.Limit},
		Overlap: j.Overlap,
		Routing: job.Routing{
			Strategy: r.Strategy, HashKey: r.HashKey, Labels: maps.Clone(r.Labels), Clients: slices.Clone(r.Clients),
			Width: r.Width, Shards: r.Shards, ShardItems: slices.Clone(r.ShardItems),
		},
		Retry: job.Retry{
			Max: j.Retry.Max, Backoff: j.Retry.Backoff, Delay: job.Duration(j.Retry.Delay),
			MaxDelay: job.Duration(j.Retry.MaxDelay), Jitter: j.Retry.Jitter,
		},
		Overdue:    job.Overdue{After: job.Duration(j.Overdue.After), Ratio: j.Overdue.Ratio},
		Rerunnable: j.Rerunnable,
	}
}

// DefaultConfig is a client that listens on any free local port.
func DefaultConfig() Config {
	return Config{
		ID:          config.DefaultID("client"),
		Listen:      "tcp://127.0.0.1:0",
		ZooKeeper:   clientZooKeeper(),
		JobNice:     10,
		ResultRetry: time.Second,
		LeaseRenew:  2 * time.Second,
		Fallback:    FallbackConfig{Database: "clover", SpoolMaxBytes: 64 << 20, After: 5 * time.Second},
		LogLevel:    "info",
	}
}

// clientZooKeeper is a client's default ZooKeeper settings: a longer session than a server's. A server's
// session timeout is the failover time, worth keeping short; a client's is how long the leader takes to
// count a client that died as gone, and a loaded machine that delays the client's pings past it costs
// every run the client holds. Dead clients are also found by their leases (lease_timeout).
func clientZooKeeper() config.ZooKeeper {
	z := config.DefaultZooKeeper()
	z.SessionTimeout = 10 * time.Second
	return z
}

// Security is the client's security settings.
func (c Config) Security() config.Security {
	return config.Security{KeysDir: c.KeysDir, Insecure: c.Insecure}
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
	if _, err := config.Advertise(c.Listen, c.Advertise); err != nil {
		return err
	}
	if err := c.Security().Validate(map[string]string{"listen": c.Listen, "metrics_listen": c.MetricsListen}); err != nil {
		return err
	}
	if c.Capacity < 0 {
		return fmt.Errorf("capacity %d: must be at least 1 (or 0: derived from the machine)", c.Capacity)
	}
	if c.DebugListen != "" && !config.Loopback(c.DebugListen) {
		return fmt.Errorf("debug_listen %q: must be a loopback host:port (profiles reveal memory and let anyone slow the client)", c.DebugListen)
	}
	if c.JobNice < 0 || c.JobNice > 19 {
		return fmt.Errorf("job_nice %d: must be between 0 (the client's priority) and 19", c.JobNice)
	}
	if c.Width < 0 {
		return fmt.Errorf("width %d: must not be negative", c.Width)
	}
	if c.ResultRetry <= 0 {
		return fmt.Errorf("result_retry %s: must be positive", c.ResultRetry)
	}
	if c.LeaseRenew <= 0 {
		return fmt.Errorf("lease_renew %s: must be positive", c.LeaseRenew)
	}
	if f := c.Fallback; f.Enabled() {
		switch {
		case f.Database == "":
			return fmt.Errorf("fallback.database: required with fallback.mongo_uri")
		case f.SpoolDir == "":
			return fmt.Errorf("fallback.spool_dir: required with fallback.mongo_uri (the local spool for when MongoDB is down too)")
		case f.SpoolMaxBytes < 1<<16:
			return fmt.Errorf("fallback.spool_max_bytes %d: must be at least 65536", f.SpoolMaxBytes)
		case f.After <= 0:
			return fmt.Errorf("fallback.after %s: must be positive", f.After)
		}
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
	for i := range c.Watches {
		if err := c.Watches[i].validate(i); err != nil {
			return err
		}
	}
	return nil
}

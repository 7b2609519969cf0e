package server

import (
	"errors"
	"fmt"
	"net"
	"strings"
	"time"

	"github.com/clover-sched/clover/internal/config"
	"github.com/clover-sched/clover/internal/store"
)

// Config is a server's configuration. Keys are shown as they appear in a config file; the environment
// variable of a key is CLOVER_ followed by the key in upper case with dots as underscores.
type Config struct {
	ID     string `mapstructure:"id"`     // unique in the cluster; default server-<host>-<pid>
	Listen string `mapstructure:"listen"` // ZeroMQ PULL endpoint for client reports, tcp://host:port
	// Advertise is the endpoint clients and servers are told to use, when it is not the bound one (NAT,
	// containers); without a port, the bound port.
	Advertise string           `mapstructure:"advertise"`
	API       API              `mapstructure:"api"`
	ZooKeeper config.ZooKeeper `mapstructure:"zookeeper"`
	Mongo     config.Mongo     `mapstructure:"mongo"`
	// KeysDir holds the servers' keypair, the cluster secret, the clients' public keys and the API tokens.
	KeysDir string `mapstructure:"keys_dir"`
	// Insecure runs without authentication (loopback listeners only); see config.Security.
	Insecure bool `mapstructure:"insecure"`
	// DebugListen, when set, serves Go's pprof profiles on this loopback address (never on the API).
	DebugListen string `mapstructure:"debug_listen"`
	// Limits bound what callers and clients may ask for.
	Limits Limits `mapstructure:"limits"`

	// MisfireThreshold: a firing later than this is a misfire; all misfired times of a job are replaced by
	// one catch-up run. Firings late by less (a leader change, a short outage) run each, just late.
	MisfireThreshold time.Duration `mapstructure:"misfire_threshold"`
	// AckTimeout: an execution not acknowledged within this is sent again to the same client.
	AckTimeout time.Duration `mapstructure:"ack_timeout"`
	// AcceptWindow: a client refuses to start an execution this long after it was dispatched, so that the
	// leader can then give it to another client without risk of two runs.
	AcceptWindow time.Duration `mapstructure:"accept_window"`
	// OpenLookback: when a store written before the open set is first led, how far back its unfinished
	// executions are looked for (once; see store.MigrateOpenSet).
	OpenLookback time.Duration `mapstructure:"open_lookback"`
	// LeaseTimeout: a running execution its client has not listed in a heartbeat for this long is lost
	// (rerun elsewhere if its job is rerunnable, orphaned if not), even if the client is still registered.
	LeaseTimeout time.Duration `mapstructure:"lease_timeout"`
	// TimeoutGrace: a run past its job's timeout by this much is stopped by the leader; past it by twice
	// this much without a result, it is marked timed out.
	TimeoutGrace time.Duration `mapstructure:"timeout_grace"`
	// FallbackPoll is how often the leader looks for entries in the fallback queue and replays them.
	FallbackPoll time.Duration `mapstructure:"fallback_poll"`
	// FallbackKeep is how long replayed (or rejected) fallback entries are kept, for `clover fallback status`
	// and inquiries; the leader deletes older ones every hour.
	FallbackKeep time.Duration `mapstructure:"fallback_keep"`
	// History says how long ended executions are kept.
	History History `mapstructure:"history"`
	// Operators are the contacts (email addresses) told of server and cluster problems, such as reports
	// waiting in the fallback queue.
	Operators []string `mapstructure:"operators"`
	LogLevel  string   `mapstructure:"log_level"` // debug, info, warn, error
}

// DefaultConfig is a server on this machine's default ports.
func DefaultConfig() Config {
	return Config{
		ID:               config.DefaultID("server"),
		Listen:           "tcp://127.0.0.1:7701",
		API:              API{Listen: "127.0.0.1:7700"},
		Limits:           DefaultLimits(),
		ZooKeeper:        config.DefaultZooKeeper(),
		Mongo:            config.DefaultMongo(),
		MisfireThreshold: 15 * time.Second,
		AckTimeout:       2 * time.Second,
		AcceptWindow:     5 * time.Second,
		OpenLookback:     24 * time.Hour,
		LeaseTimeout:     10 * time.Second,
		TimeoutGrace:     5 * time.Second,
		FallbackPoll:     2 * time.Second,
		FallbackKeep:     7 * 24 * time.Hour,
		History:          History{Keep: 7 * 24 * time.Hour, ArchiveKeep: 90 * 24 * time.Hour, BucketSize: store.DefaultBucketSize, RevisionsKeep: 100, AuditKeep: 400 * 24 * time.Hour},
		LogLevel:         "info",
	}
}

// History says how long ended executions are kept: in the history (listed by `clover exec list`, read by
// the monitor) for Keep, then in the archive (`clover exec list --archived`) for ArchiveKeep, then they are
// deleted. 0 keeps them for ever.
type History struct {
	Keep        time.Duration `mapstructure:"keep"`
	ArchiveKeep time.Duration `mapstructure:"archive_keep"`
	// BucketSize is the most executions one history bucket (a collection) holds: small for FerretDB,
	// which reads a whole bucket to answer a listing; larger on a busy cluster with a real MongoDB, so that
	// the buckets are fewer collections.
	BucketSize int `mapstructure:"bucket_size"`
	// RevisionsKeep is how many revisions of each job's definition are kept (its newest); tagged ones are
	// kept besides, whatever their age.
	RevisionsKeep int `mapstructure:"revisions_keep"`
	// AuditKeep is how long the audit log keeps an entry (whole days: a day is dropped once all of it is
	// this old); 0 keeps them for ever.
	AuditKeep time.Duration `mapstructure:"audit_keep"`
}

// Validate names the bad key.
func (h History) Validate() error {
	if h.Keep < 0 {
		return fmt.Errorf("history.keep %s: must be 0 (for ever) or positive", h.Keep)
	}
	if h.ArchiveKeep < 0 {
		return fmt.Errorf("history.archive_keep %s: must be 0 (for ever) or positive", h.ArchiveKeep)
	}
	if h.BucketSize < 100 || h.BucketSize > 1_000_000 {
		return fmt.Errorf("history.bucket_size %d: must be from 100 to 1000000", h.BucketSize)
	}
	if h.AuditKeep < 0 || (h.AuditKeep > 0 && h.AuditKeep < 24*time.Hour) {
		// Days are dropped whole: a shorter keep would drop the day entries are still being written to.
		return fmt.Errorf("history.audit_keep %s: must be 0 (for ever) or at least 24h", h.AuditKeep)
	}
	if h.RevisionsKeep < 1 || h.RevisionsKeep > 100_000 {
		return fmt.Errorf("history.revisions_keep %d: must be from 1 to 100000", h.RevisionsKeep)
	}
	return nil
}

// bucketSpan is how long the history writes one bucket at most: a fraction of Keep, so that a bucket moves
// to the archive soon after its executions are Keep old, and at most an hour.
func (h History) bucketSpan() time.Duration {
	if h.Keep <= 0 {
		return time.Hour
	}
	return min(max(h.Keep/4, 10*time.Second), time.Hour)
}

// checkEvery is how often the leader moves and prunes the history.
func (h History) checkEvery() time.Duration {
	return min(max(h.Keep/4, 5*time.Second), time.Minute)
}

// Security is the server's security settings.
func (c Config) Security() config.Security {
	return config.Security{KeysDir: c.KeysDir, Insecure: c.Insecure}
}

// API configures the REST API.
type API struct {
	Listen string `mapstructure:"listen"` // host:port
	// Advertise is the address other servers forward writes to, when it is not the bound one.
	Advertise string `mapstructure:"advertise"`
	TLS       TLS    `mapstructure:"tls"`
	// Hosts are the names (besides IP addresses, localhost, this host's name and the advertised host)
	// callers may use in the Host header; any other is refused, against DNS rebinding.
	Hosts []string `mapstructure:"hosts"`
	// Origins are the browser origins (scheme://host:port) besides the API's own that may write.
	Origins []string `mapstructure:"origins"`
	// PublicMetrics serves /metrics without a token (for a scraper on a trusted network).
	PublicMetrics bool `mapstructure:"public_metrics"`
}

// TLS turns on HTTPS for the API; with ClientCAFile, callers must also present a certificate it signed.
type TLS struct {
	CertFile     string `mapstructure:"cert_file"`
	KeyFile      string `mapstructure:"key_file"`
	ClientCAFile string `mapstructure:"client_ca_file"`
	// CAFile signed the servers' certificates: a follower trusts it when it forwards to the leader
	// (default: client_ca_file, else the system's CAs).
	CAFile string `mapstructure:"ca_file"`
}

// Enabled reports whether the API serves HTTPS.
func (t TLS) Enabled() bool { return t.CertFile != "" }

// Validate names the bad key.
func (a API) Validate() error {
	if _, _, err := net.SplitHostPort(a.Listen); err != nil {
		return fmt.Errorf("api.listen %q: %w", a.Listen, err)
	}
	if _, err := config.Advertise(a.Listen, a.Advertise); err != nil {
		return fmt.Errorf("api.%w", err)
	}
	if (a.TLS.CertFile == "") != (a.TLS.KeyFile == "") {
		return errors.New("api.tls: cert_file and key_file go together")
	}
	if a.TLS.ClientCAFile != "" && !a.TLS.Enabled() {
		return errors.New("api.tls.client_ca_file: needs cert_file and key_file")
	}
	for _, o := range a.Origins {
		if !strings.HasPrefix(o, "http://") && !strings.HasPrefix(o, "https://") {
			return fmt.Errorf("api.origins %q: must be scheme://host[:port]", o)
		}
	}
	return nil
}

// Limits bound what callers and clients may ask for, so that one of them cannot exhaust the cluster.
type Limits struct {
	Jobs          int `mapstructure:"jobs"`            // jobs in the cluster
	JobsPerClient int `mapstructure:"jobs_per_client"` // jobs one client may declare
	// Backlog and BacklogMiB bound the executions the leader holds waiting for a client (or for their
	// job's earlier runs): at either, scheduled firings wait and their times go to the misfire policies.
	// They bound the leader's memory under overload.
	Backlog    int `mapstructure:"backlog"`
	BacklogMiB int `mapstructure:"backlog_mib"`
}

// DefaultLimits are generous for people and tight for a runaway program.
func DefaultLimits() Limits {
	return Limits{Jobs: 100_000, JobsPerClient: 5_000, Backlog: 20_000, BacklogMiB: 64}
}

// Validate names the bad key.
func (l Limits) Validate() error {
	if l.Jobs < 1 || l.JobsPerClient < 1 {
		return fmt.Errorf("limits: jobs (%d) and jobs_per_client (%d) must be positive", l.Jobs, l.JobsPerClient)
	}
	if l.Backlog < 100 || l.BacklogMiB < 1 {
		return fmt.Errorf("limits: backlog (%d) must be at least 100 and backlog_mib (%d) at least 1", l.Backlog, l.BacklogMiB)
	}
	return nil
}

// Validate names the first bad key.
func (c Config) Validate() error {
	if c.ID == "" || strings.ContainsAny(c.ID, "/ ") {
		return fmt.Errorf("id %q: must be non-empty, without / or spaces", c.ID)
	}
	if !strings.HasPrefix(c.Listen, "tcp://") {
		return fmt.Errorf("listen %q: must be a tcp://host:port ZeroMQ endpoint", c.Listen)
	}
	if _, err := config.Advertise(c.Listen, c.Advertise); err != nil {
		return err
	}
	if err := c.API.Validate(); err != nil {
		return err
	}
	if c.DebugListen != "" && !config.Loopback(c.DebugListen) {
		return fmt.Errorf("debug_listen %q: must be a loopback host:port (profiles reveal memory and let anyone slow the server)", c.DebugListen)
	}
	if err := c.Security().Validate(map[string]string{"listen": c.Listen, "api.listen": c.API.Listen}); err != nil {
		return err
	}
	if err := c.Limits.Validate(); err != nil {
		return err
	}
	if err := c.ZooKeeper.Validate(); err != nil {
		return err
	}
	if err := c.Mongo.Validate(); err != nil {
		return err
	}
	if err := c.History.Validate(); err != nil {
		return err
	}
	for key, d := range map[string]time.Duration{
		"misfire_threshold": c.MisfireThreshold, "ack_timeout": c.AckTimeout,
		"accept_window": c.AcceptWindow, "open_lookback": c.OpenLookback,
		"lease_timeout": c.LeaseTimeout, "timeout_grace": c.TimeoutGrace, "fallback_poll": c.FallbackPoll, "fallback_keep": c.FallbackKeep,
	} {
		if d <= 0 {
			return fmt.Errorf("%s %s: must be positive", key, d)
		}
	}
	if c.AcceptWindow < c.AckTimeout {
		return errors.New("accept_window: must be at least ack_timeout, or a re-sent dispatch would always be refused")
	}
	if c.MisfireThreshold <= c.ZooKeeper.SessionTimeout {
		return fmt.Errorf("misfire_threshold %s: must exceed zookeeper.session_timeout %s, or every failover would coalesce firings", c.MisfireThreshold, c.ZooKeeper.SessionTimeout)
	}
	return nil
}

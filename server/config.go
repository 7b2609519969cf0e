package server

import (
	"errors"
	"fmt"
	"net"
	"strings"
	"time"

	"github.com/clover-sched/clover/internal/config"
)

// Config is a server's configuration. Keys are shown as they appear in a config file; the environment
// variable of a key is CLOVER_ followed by the key in upper case with dots as underscores.
type Config struct {
	ID        string           `mapstructure:"id"`         // unique in the cluster; default server-<host>-<pid>
	Listen    string           `mapstructure:"listen"`     // ZeroMQ PULL endpoint for client reports, tcp://host:port
	APIListen string           `mapstructure:"api_listen"` // REST API listen address, host:port
	ZooKeeper config.ZooKeeper `mapstructure:"zookeeper"`
	Mongo     config.Mongo     `mapstructure:"mongo"`

	// MisfireThreshold: a firing later than this is a misfire; all misfired times of a job are replaced by
	// one catch-up run. Firings late by less (a leader change, a short outage) run each, just late.
	MisfireThreshold time.Duration `mapstructure:"misfire_threshold"`
	// AckTimeout: an execution not acknowledged within this is sent again to the same client.
	AckTimeout time.Duration `mapstructure:"ack_timeout"`
	// AcceptWindow: a client refuses to start an execution this long after it was dispatched, so that the
	// leader can then give it to another client without risk of two runs.
	AcceptWindow time.Duration `mapstructure:"accept_window"`
	// OpenLookback bounds how far back a new leader looks for executions still pending or running.
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
		APIListen:        "127.0.0.1:7700",
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
		LogLevel:         "info",
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
	if _, _, err := net.SplitHostPort(c.APIListen); err != nil {
		return fmt.Errorf("api_listen %q: %w", c.APIListen, err)
	}
	if err := c.ZooKeeper.Validate(); err != nil {
		return err
	}
	if err := c.Mongo.Validate(); err != nil {
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

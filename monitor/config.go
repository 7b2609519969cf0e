package monitor

import (
	"fmt"
	"strings"
	"time"

	"github.com/clover-sched/clover/internal/config"
	"github.com/clover-sched/clover/internal/notify"
)

// Config is a monitor's configuration; keys as in a config file, CLOVER_* in the environment.
type Config struct {
	ID        string           `mapstructure:"id"`
	Listen    string           `mapstructure:"listen"` // HTTP: /metrics and /healthz
	ZooKeeper config.ZooKeeper `mapstructure:"zookeeper"`
	Mongo     config.Mongo     `mapstructure:"mongo"`
	// Cluster names the cluster in mails.
	Cluster string `mapstructure:"cluster"`
	// Operators are told of server and cluster problems, and of job problems when the job names no
	// contact: contact names (see `clover contact add`) or email addresses.
	Operators []string          `mapstructure:"operators"`
	SMTP      notify.SMTPConfig `mapstructure:"smtp"`

	// Interval is how often the active monitor checks the cluster.
	Interval time.Duration `mapstructure:"interval"`
	// Unresponsive: a server whose API has not answered, or a client whose heartbeat the leader has not
	// heard, for this long is reported though it is still registered in ZooKeeper.
	Unresponsive time.Duration `mapstructure:"unresponsive"`
	// NoLeader: no leader for this long is reported.
	NoLeader time.Duration `mapstructure:"no_leader"`
	// FlapChanges leader changes within FlapWindow are reported as leadership changing too often.
	FlapChanges int           `mapstructure:"flap_changes"`
	FlapWindow  time.Duration `mapstructure:"flap_window"`
	// NoClient: a job that no live client can run is reported once that lasted this long, or at once if
	// it is due within this time.
	NoClient time.Duration `mapstructure:"no_client"`
	// Waiting: an execution waiting for a client this long is reported.
	Waiting time.Duration `mapstructure:"waiting"`
	// Unreachable: ZooKeeper or MongoDB unreachable from the monitor for this long is reported.
	Unreachable time.Duration `mapstructure:"unreachable"`
	// RemindEvery: an alert still open gets a reminder this often.
	RemindEvery time.Duration `mapstructure:"remind_every"`
	// KeepNotifications is how long delivered (or failed) notifications of cleared alerts are kept.
	KeepNotifications time.Duration `mapstructure:"keep_notifications"`
	LogLevel          string        `mapstructure:"log_level"`

	// KeysDir holds cluster.secret: the monitor takes part in ZooKeeper as the servers do.
	KeysDir string `mapstructure:"keys_dir"`
	// Insecure runs without authentication (loopback listeners only); see config.Security.
	Insecure bool `mapstructure:"insecure"`
	// TokenFile holds the API token (role viewer is enough) the monitor reads the leader's API with.
	TokenFile string `mapstructure:"token_file"`
	// APICAFile, when the servers' API serves HTTPS, is the CA that signed their certificates.
	APICAFile string `mapstructure:"api_ca_file"`
	// WebhookAllowPrivate lets contacts' webhooks reach loopback, private and link-local addresses
	// (receivers inside the monitor's own network). Off: a webhook cannot be used to probe that network.
	WebhookAllowPrivate bool `mapstructure:"webhook_allow_private"`
}

// Security is the monitor's security settings.
func (c Config) Security() config.Security {
	return config.Security{KeysDir: c.KeysDir, Insecure: c.Insecure}
}

// DefaultConfig is a monitor on this machine's defaults.
func DefaultConfig() Config {
	return Config{
		ID:                config.DefaultID("monitor"),
		Listen:            "127.0.0.1:7790",
		ZooKeeper:         config.DefaultZooKeeper(),
		Mongo:             config.DefaultMongo(),
		Cluster:           "clover",
		SMTP:              notify.DefaultSMTPConfig(),
		Interval:          2 * time.Second,
		Unresponsive:      15 * time.Second,
		NoLeader:          15 * time.Second,
		FlapChanges:       5,
		FlapWindow:        10 * time.Minute,
		NoClient:          30 * time.Second,
		Waiting:           time.Minute,
		Unreachable:       15 * time.Second,
		RemindEvery:       time.Hour,
		KeepNotifications: 7 * 24 * time.Hour,
		LogLevel:          "info",
	}
}

// Validate names the first bad key.
func (c Config) Validate() error {
	if c.ID == "" || strings.ContainsAny(c.ID, "/ ") {
		return fmt.Errorf("id %q: must be non-empty, without / or spaces", c.ID)
	}
	if err := c.ZooKeeper.Validate(); err != nil {
		return err
	}
	if err := c.Security().Validate(map[string]string{"listen": c.Listen}); err != nil {
		return err
	}
	if !c.Insecure && c.TokenFile == "" {
		return fmt.Errorf("token_file: required: the monitor reads the leader's API with a token (clover keys token --role viewer)")
	}
	if err := c.Mongo.Validate(); err != nil {
		return err
	}
	if c.SMTP.Host != "" {
		if err := c.SMTP.Validate(); err != nil {
			return fmt.Errorf("smtp: %w", err)
		}
	}
	for key, d := range map[string]time.Duration{
		"interval": c.Interval, "unresponsive": c.Unresponsive, "no_leader": c.NoLeader, "flap_window": c.FlapWindow,
		"waiting": c.Waiting, "unreachable": c.Unreachable, "remind_every": c.RemindEvery, "no_client": c.NoClient,
		"keep_notifications": c.KeepNotifications,
	} {
		if d <= 0 {
			return fmt.Errorf("%s %s: must be positive", key, d)
		}
	}
	if c.FlapChanges < 2 {
		return fmt.Errorf("flap_changes %d: must be at least 2", c.FlapChanges)
	}
	return nil
}

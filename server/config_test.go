package server

import (
	"strings"
	"testing"
	"time"

	"github.com/clover-sched/clover/internal/config"
)

func TestConfigValidateNamesTheKey(t *testing.T) {
	for name, tc := range map[string]struct {
		mutate func(*Config)
		want   string
	}{
		"id":            {func(c *Config) { c.ID = "" }, `id ""`},
		"listen":        {func(c *Config) { c.Listen = "127.0.0.1:7701" }, `listen "127.0.0.1:7701"`},
		"api.listen":    {func(c *Config) { c.API.Listen = "nope" }, `api.listen "nope"`},
		"keys_dir":      {func(c *Config) { c.KeysDir = "" }, "keys_dir: not set"},
		"insecure":      {func(c *Config) { c.Insecure, c.API.Listen = true, "0.0.0.0:7700" }, `insecure: refused because api.listen "0.0.0.0:7700" is not a loopback address`},
		"insecure zmq":  {func(c *Config) { c.Insecure, c.Listen = true, "tcp://10.0.0.1:7701" }, `listen "tcp://10.0.0.1:7701" is not a loopback`},
		"debug_listen":  {func(c *Config) { c.DebugListen = "0.0.0.0:6060" }, "debug_listen"},
		"api.tls":       {func(c *Config) { c.API.TLS.CertFile = "c.pem" }, "api.tls: cert_file and key_file go together"},
		"api.origins":   {func(c *Config) { c.API.Origins = []string{"example.com"} }, "api.origins"},
		"advertise":     {func(c *Config) { c.Advertise = "tcp://example.com:99999" }, "advertise"},
		"zookeeper":     {func(c *Config) { c.ZooKeeper.Root = "clover" }, "zookeeper.root"},
		"session":       {func(c *Config) { c.ZooKeeper.SessionTimeout = time.Millisecond }, "zookeeper.session_timeout"},
		"mongo":         {func(c *Config) { c.Mongo.URI = "http://x" }, "mongo.uri"},
		"database":      {func(c *Config) { c.Mongo.Database = "a.b" }, "mongo.database"},
		"ack_timeout":   {func(c *Config) { c.AckTimeout = 0 }, "ack_timeout"},
		"accept_window": {func(c *Config) { c.AcceptWindow = time.Second }, "accept_window"},
		"misfire":       {func(c *Config) { c.MisfireThreshold = 2 * time.Second }, "misfire_threshold 2s: must exceed zookeeper.session_timeout"},
		"audit_keep":    {func(c *Config) { c.History.AuditKeep = time.Hour }, "history.audit_keep 1h0m0s: must be 0 (for ever) or at least 24h"},
	} {
		t.Run(name, func(t *testing.T) {
			cfg := DefaultConfig()
			cfg.KeysDir = "/etc/clover/keys"
			tc.mutate(&cfg)
			err := cfg.Validate()
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want it to contain %q", err, tc.want)
			}
		})
	}
	cfg := DefaultConfig()
	cfg.KeysDir = "/etc/clover/keys"
	if err := cfg.Validate(); err != nil {
		t.Fatalf("the default config with keys is invalid: %v", err)
	}
	cfg = DefaultConfig()
	cfg.Insecure = true
	if err := cfg.Validate(); err != nil {
		t.Fatalf("the default config, insecure on loopback, is invalid: %v", err)
	}
}

// The Debian package's server.yaml holds only keys a server knows, with values it takes.
func TestThePackagesServerConfigLoads(t *testing.T) {
	cfg := DefaultConfig()
	if err := config.Load("../packaging/etc/server.yaml", nil, nil, &cfg); err != nil {
		t.Fatal(err)
	}
	if err := cfg.Validate(); err != nil {
		t.Fatalf("packaging/etc/server.yaml: %v", err)
	}
	if cfg.Mongo.URIFile != "/etc/clover/mongo.uri" || len(cfg.ZooKeeper.Servers) != 3 || cfg.KeysDir != "/etc/clover/keys" {
		t.Fatalf("loaded %+v", cfg)
	}
}

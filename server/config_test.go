package server

import (
	"strings"
	"testing"
	"time"
)

func TestConfigValidateNamesTheKey(t *testing.T) {
	for name, tc := range map[string]struct {
		mutate func(*Config)
		want   string
	}{
		"id":            {func(c *Config) { c.ID = "" }, `id ""`},
		"listen":        {func(c *Config) { c.Listen = "127.0.0.1:7701" }, `listen "127.0.0.1:7701"`},
		"api_listen":    {func(c *Config) { c.APIListen = "nope" }, `api_listen "nope"`},
		"zookeeper":     {func(c *Config) { c.ZooKeeper.Root = "clover" }, "zookeeper.root"},
		"session":       {func(c *Config) { c.ZooKeeper.SessionTimeout = time.Millisecond }, "zookeeper.session_timeout"},
		"mongo":         {func(c *Config) { c.Mongo.URI = "http://x" }, "mongo.uri"},
		"database":      {func(c *Config) { c.Mongo.Database = "a.b" }, "mongo.database"},
		"ack_timeout":   {func(c *Config) { c.AckTimeout = 0 }, "ack_timeout"},
		"accept_window": {func(c *Config) { c.AcceptWindow = time.Second }, "accept_window"},
		"misfire":       {func(c *Config) { c.MisfireThreshold = 2 * time.Second }, "misfire_threshold 2s: must exceed zookeeper.session_timeout"},
	} {
		t.Run(name, func(t *testing.T) {
			cfg := DefaultConfig()
			tc.mutate(&cfg)
			err := cfg.Validate()
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want it to contain %q", err, tc.want)
			}
		})
	}
	if err := DefaultConfig().Validate(); err != nil {
		t.Fatalf("the default config is invalid: %v", err)
	}
}

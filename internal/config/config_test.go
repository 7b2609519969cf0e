package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/spf13/pflag"
)

type testConfig struct {
	ID        string        `mapstructure:"id"`
	ZooKeeper ZooKeeper     `mapstructure:"zookeeper"`
	Mongo     Mongo         `mapstructure:"mongo"`
	Timeout   time.Duration `mapstructure:"timeout"`
}

func defaults() testConfig {
	return testConfig{ID: "x", ZooKeeper: DefaultZooKeeper(), Mongo: DefaultMongo(), Timeout: time.Second}
}

func TestLoadLayersFileEnvironmentAndFlags(t *testing.T) {
	file := filepath.Join(t.TempDir(), "c.yaml")
	if err := os.WriteFile(file, []byte("id: from-file\ntimeout: 3s\nzookeeper:\n  root: /file\nmongo:\n  database: filedb\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Setenv("CLOVER_ZOOKEEPER_SERVERS", "h1:1,h2:2")
	t.Setenv("CLOVER_MONGO_DATABASE", "envdb")
	flags := pflag.NewFlagSet("t", pflag.ContinueOnError)
	flags.String("zk-root", "", "")
	flags.String("id", "", "")
	if err := flags.Parse([]string{"--zk-root", "/flag"}); err != nil {
		t.Fatal(err)
	}
	cfg := defaults()
	if err := Load(file, flags, map[string]string{"zk-root": "zookeeper.root"}, &cfg); err != nil {
		t.Fatal(err)
	}
	want := testConfig{
		ID: "from-file", Timeout: 3 * time.Second,
		ZooKeeper: ZooKeeper{Servers: []string{"h1:1", "h2:2"}, Root: "/flag", SessionTimeout: DefaultZooKeeper().SessionTimeout},
		Mongo:     Mongo{URI: DefaultMongo().URI, Database: "envdb"},
	}
	if cfg.ID != want.ID || cfg.Timeout != want.Timeout || cfg.ZooKeeper.Root != want.ZooKeeper.Root ||
		strings.Join(cfg.ZooKeeper.Servers, ",") != "h1:1,h2:2" || cfg.Mongo != want.Mongo {
		t.Fatalf("loaded %+v, want %+v", cfg, want)
	}
}

func TestLoadRefusesUnknownKeysAndBadValues(t *testing.T) {
	for name, tc := range map[string]struct {
		file string
		want string
	}{
		"unknown key":  {"id: a\ncolour: red\n", "colour"},
		"bad duration": {"timeout: soon\n", "timeout"},
		"not yaml":     {"id: [unclosed\n", "c.yaml"},
	} {
		t.Run(name, func(t *testing.T) {
			file := filepath.Join(t.TempDir(), "c.yaml")
			if err := os.WriteFile(file, []byte(tc.file), 0o644); err != nil {
				t.Fatal(err)
			}
			cfg := defaults()
			err := Load(file, nil, nil, &cfg)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want it to mention %q", err, tc.want)
			}
		})
	}
}

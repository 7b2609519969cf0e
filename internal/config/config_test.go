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

func TestAdvertiseTakesTheBoundPortWhenItHasNone(t *testing.T) {
	for _, tc := range []struct{ bound, adv, want, err string }{
		{"tcp://127.0.0.1:7701", "", "tcp://127.0.0.1:7701", ""},
		{"tcp://0.0.0.0:7701", "tcp://node1.example.com", "tcp://node1.example.com:7701", ""},
		{"tcp://0.0.0.0:7701", "tcp://10.1.2.3:9701", "tcp://10.1.2.3:9701", ""},
		{"0.0.0.0:7700", "api.example.com", "api.example.com:7700", ""},
		{"[::]:7700", "[2001:db8::1]", "[2001:db8::1]:7700", ""},
		{"0.0.0.0:7700", "api.example.com:99999", "", "advertise"},
		{"0.0.0.0:7700", ":7700", "", "advertise"},
	} {
		got, err := Advertise(tc.bound, tc.adv)
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("Advertise(%q, %q) = %q, %v; want an error", tc.bound, tc.adv, got, err)
			}
			continue
		}
		if err != nil || got != tc.want {
			t.Errorf("Advertise(%q, %q) = %q, %v; want %q", tc.bound, tc.adv, got, err, tc.want)
		}
	}
}

func TestInsecureIsRefusedOffLoopback(t *testing.T) {
	if err := (Security{}).Validate(nil); err == nil || !strings.Contains(err.Error(), "keys_dir") {
		t.Fatalf("no keys and not insecure: err = %v, want keys_dir named", err)
	}
	ok := Security{Insecure: true}
	if err := ok.Validate(map[string]string{"listen": "tcp://127.0.0.1:7701", "api.listen": "localhost:7700", "metrics": ""}); err != nil {
		t.Fatalf("insecure on loopback: %v", err)
	}
	for _, addr := range []string{"0.0.0.0:7700", "tcp://*:7701", "10.0.0.5:7700", ":7700"} {
		if err := ok.Validate(map[string]string{"api.listen": addr}); err == nil || !strings.Contains(err.Error(), "api.listen") {
			t.Errorf("insecure on %s: err = %v, want a refusal naming api.listen", addr, err)
		}
	}
}

func TestAURIFileMustBePrivateAndItsURIIsShownWithoutCredentials(t *testing.T) {
	path := filepath.Join(t.TempDir(), "uri")
	if err := os.WriteFile(path, []byte("mongodb://clover:s3cret@db1:27017,db2:27017/clover?replicaSet=rs0\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	m := Mongo{URIFile: path}
	if err := m.ReadURIFile(); err == nil || !strings.Contains(err.Error(), "chmod 600") {
		t.Fatalf("a readable uri_file: err = %v", err)
	}
	if err := os.Chmod(path, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := m.ReadURIFile(); err != nil || !strings.HasSuffix(m.URI, "replicaSet=rs0") {
		t.Fatalf("uri_file: %q, %v", m.URI, err)
	}
	if got := RedactURI(m.URI); got != "mongodb://db1:27017,db2:27017" || strings.Contains(got, "s3cret") {
		t.Fatalf("RedactURI = %q", got)
	}
}

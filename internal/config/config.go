package config

import (
	"errors"
	"fmt"
	"net"
	"os"
	"reflect"
	"strconv"
	"strings"
	"time"

	"github.com/go-viper/mapstructure/v2"
	"github.com/spf13/pflag"
	"github.com/spf13/viper"
)

// ZooKeeper says where the coordination service is.
type ZooKeeper struct {
	Servers        []string      `mapstructure:"servers"`         // host:port of each ZooKeeper server
	Root           string        `mapstructure:"root"`            // every Clover znode lives under this path
	SessionTimeout time.Duration `mapstructure:"session_timeout"` // how long a silent process keeps its session (and leadership)
}

// DefaultZooKeeper is a local standalone ZooKeeper.
func DefaultZooKeeper() ZooKeeper {
	return ZooKeeper{Servers: []string{"127.0.0.1:2181"}, Root: "/clover", SessionTimeout: 5 * time.Second}
}

// Validate names the bad key.
func (z ZooKeeper) Validate() error {
	if len(z.Servers) == 0 {
		return errors.New("zookeeper.servers: at least one host:port is required")
	}
	if !strings.HasPrefix(z.Root, "/") || strings.HasSuffix(z.Root, "/") {
		return fmt.Errorf("zookeeper.root %q: must start with / and not end with /", z.Root)
	}
	if z.SessionTimeout < 400*time.Millisecond || z.SessionTimeout > time.Minute {
		return fmt.Errorf("zookeeper.session_timeout %s: must be between 400ms and 1m", z.SessionTimeout)
	}
	return nil
}

// Mongo says where the state lives.
type Mongo struct {
	URI string `mapstructure:"uri"`
	// URIFile holds the URI instead, so that credentials are in neither argv nor the environment; it
	// must not be readable by others. It wins over uri.
	URIFile  string `mapstructure:"uri_file"`
	Database string `mapstructure:"database"`
	// OpenSet is the form of open set a store made by this process keeps (store.OpenSetSingle, the
	// default, or store.OpenSetPartitioned, not finished: docs/design.md record 19); a store that exists
	// keeps its own.
	OpenSet string `mapstructure:"open_set"`
}

// ReadURIFile sets URI from URIFile when it is set.
func (m *Mongo) ReadURIFile() error {
	if m.URIFile == "" {
		return nil
	}
	uri, err := ReadURIFile("mongo.uri_file", m.URIFile)
	if err != nil {
		return err
	}
	m.URI = uri
	return nil
}

// ReadURIFile reads a URI with credentials from path, which must not be readable by others; key names
// the setting in errors.
func ReadURIFile(key, path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", fmt.Errorf("%s: %w", key, err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return "", fmt.Errorf("%s: %w", key, err)
	}
	if st.Mode()&0o077 != 0 {
		return "", fmt.Errorf("%s %s: mode %v lets others read it; chmod 600 it", key, path, st.Mode().Perm())
	}
	b := make([]byte, 4096)
	n, _ := f.Read(b)
	uri := strings.TrimSpace(string(b[:n]))
	if uri == "" {
		return "", fmt.Errorf("%s %s: empty", key, path)
	}
	return uri, nil
}

// RedactURI is uri without its credentials and options, fit for logs and alerts.
func RedactURI(uri string) string {
	scheme, rest, ok := strings.Cut(uri, "://")
	if !ok {
		return "(a URI)"
	}
	if i := strings.LastIndex(rest, "@"); i >= 0 {
		rest = rest[i+1:]
	}
	if i := strings.IndexAny(rest, "/?"); i >= 0 {
		rest = rest[:i]
	}
	return scheme + "://" + rest
}

// DefaultMongo is a local MongoDB (or FerretDB) on the default port.
func DefaultMongo() Mongo { return Mongo{URI: "mongodb://127.0.0.1:27017/", Database: "clover"} }

// Validate names the bad key.
func (m Mongo) Validate() error {
	if !strings.HasPrefix(m.URI, "mongodb://") && !strings.HasPrefix(m.URI, "mongodb+srv://") {
		return fmt.Errorf("mongo.uri %q: must start with mongodb:// or mongodb+srv://", RedactURI(m.URI))
	}
	if m.Database == "" || strings.ContainsAny(m.Database, "/\\. \"$") {
		return fmt.Errorf("mongo.database %q: must be a non-empty name without / \\ . space \" $", m.Database)
	}
	switch m.OpenSet {
	case "", "single", "partitioned":
	default:
		return fmt.Errorf("mongo.open_set %q: must be single or partitioned", m.OpenSet)
	}
	return nil
}

// Load fills out (a pointer to a struct already holding the defaults) from file (optional), CLOVER_*
// environment variables (key "zookeeper.session_timeout" is CLOVER_ZOOKEEPER_SESSION_TIMEOUT) and the flags
// that were set on the command line. keys maps a flag's name to its config key where they differ. A key in
// the file that out does not have is an error naming it.
func Load(file string, flags *pflag.FlagSet, keys map[string]string, out any) error {
	v := viper.New()
	v.SetEnvPrefix("CLOVER")
	v.SetEnvKeyReplacer(strings.NewReplacer(".", "_", "-", "_"))
	v.AutomaticEnv()

	// Register every key with its default so that environment variables are seen by Unmarshal.
	defaults := map[string]any{}
	if err := mapstructure.Decode(out, &defaults); err != nil {
		return fmt.Errorf("config: defaults: %w", err)
	}
	known := flatten("", defaults)
	for k, val := range known {
		v.SetDefault(k, val)
	}
	if file != "" {
		v.SetConfigFile(file)
		if err := v.ReadInConfig(); err != nil {
			return fmt.Errorf("config: read %s: %w", file, err)
		}
	}
	if flags != nil {
		var bindErr error
		flags.VisitAll(func(f *pflag.Flag) {
			if !f.Changed || bindErr != nil {
				return
			}
			key, ok := keys[f.Name]
			if !ok {
				key = f.Name
			}
			if _, isKey := known[key]; isKey {
				bindErr = v.BindPFlag(key, f)
			}
		})
		if bindErr != nil {
			return fmt.Errorf("config: flags: %w", bindErr)
		}
	}
	err := v.Unmarshal(out, func(dc *mapstructure.DecoderConfig) {
		dc.ErrorUnused = true
		dc.DecodeHook = mapstructure.ComposeDecodeHookFunc(
			mapstructure.StringToTimeDurationHookFunc(),
			mapstructure.StringToSliceHookFunc(","),
		)
	})
	if err != nil {
		where := "environment and flags"
		if file != "" {
			where = file
		}
		return fmt.Errorf("config: %s: %w", where, err)
	}
	return nil
}

func flatten(prefix string, m map[string]any) map[string]any {
	out := map[string]any{}
	for k, val := range m {
		key := k
		if prefix != "" {
			key = prefix + "." + k
		}
		if sub, ok := val.(map[string]any); ok && len(sub) > 0 {
			for sk, sv := range flatten(key, sub) {
				out[sk] = sv
			}
			continue
		}
		if rv := reflect.ValueOf(val); rv.Kind() == reflect.Struct {
			sub := map[string]any{}
			if err := mapstructure.Decode(val, &sub); err == nil && len(sub) > 0 {
				for sk, sv := range flatten(key, sub) {
					out[sk] = sv
				}
				continue
			}
		}
		out[key] = val
	}
	return out
}

// DefaultID names a process after its host and pid, which is unique on a machine and readable in logs.
func DefaultID(kind string) string {
	host, err := os.Hostname()
	if err != nil || host == "" {
		host = "localhost"
	}
	return fmt.Sprintf("%s-%s-%d", kind, host, os.Getpid())
}

// Security is how a process proves who it is and whom it trusts. Secure is the default: a process without
// keys_dir does not start unless insecure is set.
type Security struct {
	// KeysDir is the key directory made by `clover keys gen`; each role reads the files it needs.
	KeysDir string `mapstructure:"keys_dir"`
	// Insecure turns authentication off everywhere: NULL ZeroMQ sockets that anyone may send to, an API
	// without tokens and ZooKeeper nodes anyone may change. Allowed only when every listener is loopback.
	Insecure bool `mapstructure:"insecure"`
}

// Validate checks the settings against the process's listeners (config key -> address, "" when off).
func (s Security) Validate(listeners map[string]string) error {
	if !s.Insecure {
		if s.KeysDir == "" {
			return errors.New("keys_dir: not set; make keys with `clover keys gen --dir DIR` and set keys_dir (or CLOVER_KEYS_DIR), or set insecure: true to run without authentication on loopback only")
		}
		return nil
	}
	for key, addr := range listeners {
		if addr != "" && !Loopback(addr) {
			return fmt.Errorf("insecure: refused because %s %q is not a loopback address; an insecure process must not be reachable from the network", key, addr)
		}
	}
	return nil
}

// Loopback reports whether addr (host:port, or a tcp:// endpoint) can be reached from this machine only.
func Loopback(addr string) bool {
	addr = strings.TrimPrefix(addr, "tcp://")
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// Advertise is the address others are told to use: advertise when set (a missing port is taken from
// bound), else bound, the address actually bound. Both are host:port, or tcp://host:port endpoints.
func Advertise(bound, advertise string) (string, error) {
	if advertise == "" {
		return bound, nil
	}
	scheme := ""
	if rest, ok := strings.CutPrefix(advertise, "tcp://"); ok {
		scheme, advertise = "tcp://", rest
	}
	if _, _, err := net.SplitHostPort(advertise); err != nil {
		_, port, berr := net.SplitHostPort(strings.TrimPrefix(bound, "tcp://"))
		if berr != nil || strings.Contains(strings.Trim(advertise, "[]"), "]") {
			return "", fmt.Errorf("advertise %q: %w", advertise, err)
		}
		advertise = net.JoinHostPort(strings.Trim(advertise, "[]"), port)
	}
	host, port, err := net.SplitHostPort(advertise)
	if err != nil {
		return "", fmt.Errorf("advertise %q: %w", advertise, err)
	}
	if n, err := strconv.Atoi(port); host == "" || err != nil || n < 1 || n > 65535 {
		return "", fmt.Errorf("advertise %q: want host[:port] with a port from 1 to 65535", advertise)
	}
	return scheme + advertise, nil
}

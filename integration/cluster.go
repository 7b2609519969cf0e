package integration

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/clover-sched/clover/api"
	"github.com/clover-sched/clover/internal/job"
	"github.com/clover-sched/clover/internal/keyring"
	"github.com/clover-sched/clover/internal/store"
	"github.com/clover-sched/clover/internal/testenv"
	"github.com/clover-sched/clover/internal/transport"
)

var (
	buildOnce sync.Once
	binPath   string
	buildErr  error
)

// Binary builds bin/clover once per process (with -race when the tests run with it) and returns its path.
// CLOVER_BIN overrides it.
func Binary(t testenv.T) string {
	t.Helper()
	if p := os.Getenv("CLOVER_BIN"); p != "" {
		return p
	}
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "clover-bin-")
		if err != nil {
			buildErr = err
			return
		}
		binPath = filepath.Join(dir, "clover")
		args := []string{"build", "-o", binPath}
		if raceEnabled {
			args = append(args, "-race")
		}
		cmd := exec.Command("go", append(args, "./cmd/clover")...)
		cmd.Dir = testenv.RepoRoot(t)
		out, err := cmd.CombinedOutput()
		if err != nil {
			buildErr = fmt.Errorf("go build clover: %v\n%s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return binPath
}

// Options shape a cluster.
type Options struct {
	Servers        int
	Clients        int
	SessionTimeout time.Duration // default 1.5s
	ClientHandlers []string      // default ["shell"]
	ClientCapacity int           // default 64; -1: no --capacity, the client's own default
	ServerEnv      []string      // extra CLOVER_* settings for every server
	ClientEnv      []string
	// ClientMetrics serves each client process's /metrics on a free port, named by its Member.API.
	ClientMetrics bool
	// ClientSessionDefault leaves client processes at their own default ZooKeeper session timeout
	// instead of SessionTimeout (benchmarks run clients as in production).
	ClientSessionDefault bool
	// TLS serves the API over HTTPS, with certificates of a CA made for the cluster.
	TLS bool
	// ZooKeepers, when 3 or more, runs the cluster on an ensemble of that many ZooKeeper servers (ZKE)
	// instead of one standalone server (ZK).
	ZooKeepers int
}

// Tokens are API tokens of each role, made for the cluster.
type Tokens struct {
	Viewer, Operator, Admin string
}

// Cluster is a running Clover cluster and the services under it.
type Cluster struct {
	t        testenv.T
	opts     Options
	Dir      string
	Bin      string
	ZK       *testenv.ZooKeeper // the standalone server; nil on an ensemble
	ZKE      *testenv.Ensemble  // the ensemble (Options.ZooKeepers); nil on a standalone server
	Mongo    *testenv.FerretDB
	DB       string
	Root     string
	Servers  []*Member
	Clients  []*Member
	Monitors []*Member

	// Keys is the cluster's key directory (every member reads it; tests may make more keys in it).
	Keys   string
	Tokens Tokens
	// CAFile signed the servers' API certificates (with Options.TLS).
	CAFile string
	scheme string
	http   *http.Client

	storeOnce sync.Once
	store     *store.Store
	apps      []*AppClient
}

// Member is one clover server or client process.
type Member struct {
	ID     string
	Kind   string // "server" or "client"
	API    string // host:port (servers; clients' /metrics with Options.ClientMetrics)
	Listen string // ZeroMQ endpoint
	Proc   *testenv.Process
	args   []string
	env    []string
	log    string
}

// StartCluster starts ZooKeeper, FerretDB, the servers and the clients, and waits until a leader leads and
// every client is registered. Everything is stopped when the test ends.
func StartCluster(t testenv.T, opts Options) *Cluster {
	t.Helper()
	if opts.SessionTimeout == 0 {
		opts.SessionTimeout = 1500 * time.Millisecond
	}
	if opts.ClientHandlers == nil {
		opts.ClientHandlers = []string{"shell"}
	}
	if opts.ClientCapacity == 0 {
		opts.ClientCapacity = 64
	}
	// Shorter than the defaults so that a test of a lost dispatch does not wait long.
	opts.ServerEnv = append([]string{"CLOVER_ACK_TIMEOUT=1s", "CLOVER_ACCEPT_WINDOW=3s"}, opts.ServerEnv...)
	c := &Cluster{t: t, opts: opts, Dir: t.TempDir(), Bin: Binary(t), DB: "clover", Root: "/clover", scheme: "http", http: http.DefaultClient}
	c.makeKeys()
	if opts.TLS {
		c.makeTLS()
	}
	if opts.ZooKeepers >= 3 {
		c.ZKE = testenv.StartZooKeeperEnsemble(t, opts.ZooKeepers)
	} else {
		c.ZK = testenv.StartZooKeeper(t)
	}
	c.Mongo = testenv.StartFerretDB(t)
	for i := range opts.Servers {
		c.AddServer(fmt.Sprintf("server-%d", i+1))
	}
	c.WaitLeader(30 * time.Second)
	// Every server's API answers before a test calls "any server": a server whose first ZooKeeper connect
	// was refused (ZooKeeper just started) opens its API a second later than the others.
	for _, m := range c.Servers {
		testenv.WaitFor(t, 30*time.Second, m.ID+"'s API", func() bool {
			_, err := c.Status(m)
			return err == nil
		})
	}
	for i := range opts.Clients {
		c.AddClient(fmt.Sprintf("client-%d", i+1))
	}
	c.WaitClients(opts.Clients, 30*time.Second)
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("member logs:\n%s", c.Logs(300))
		}
		if c.store != nil {
			_ = c.store.Close(context.Background())
		}
	})
	return c
}

// makeKeys makes the cluster's key directory and a token per role. The cluster runs secure, as a
// deployment does by default.
func (c *Cluster) makeKeys() {
	c.t.Helper()
	c.Keys = filepath.Join(c.Dir, "keys")
	if _, err := keyring.GenerateCluster(c.Keys); err != nil {
		c.t.Fatalf("keys: %v", err)
	}
	for role, tok := range map[string]*string{keyring.RoleViewer: &c.Tokens.Viewer, keyring.RoleOperator: &c.Tokens.Operator, keyring.RoleAdmin: &c.Tokens.Admin} {
		t, err := keyring.AddToken(c.Keys, "test-"+role, role)
		if err != nil {
			c.t.Fatalf("token: %v", err)
		}
		*tok = t
	}
	if err := os.WriteFile(c.TokenFile(), []byte(c.Tokens.Viewer+"\n"), 0o600); err != nil {
		c.t.Fatalf("token file: %v", err)
	}
}

// TokenFile holds the viewer token (for monitors).
func (c *Cluster) TokenFile() string { return filepath.Join(c.Dir, "viewer.token") }

// ClientKeys makes client id's keypair, admitting it to the cluster.
func (c *Cluster) ClientKeys(id string) {
	c.t.Helper()
	if _, err := keyring.GenerateClient(c.Keys, id); err != nil {
		c.t.Fatalf("keys of %s: %v", id, err)
	}
}

// sessionEnv sets the members' ZooKeeper session timeout.
func (c *Cluster) sessionEnv() string {
	return "CLOVER_ZOOKEEPER_SESSION_TIMEOUT=" + c.opts.SessionTimeout.String()
}

// clientEnv is the environment of a client process.
func (c *Cluster) clientEnv() []string {
	env := append(c.commonEnv(), "CLOVER_STATE_DIR="+filepath.Join(c.Dir, "state"))
	if !c.opts.ClientSessionDefault {
		env = append(env, c.sessionEnv())
	}
	return env
}

// ZooKeeperServers are the addresses the cluster's members connect to.
func (c *Cluster) ZooKeeperServers() []string {
	if c.ZKE != nil {
		return c.ZKE.Servers()
	}
	return []string{c.ZK.Addr}
}

func (c *Cluster) commonEnv() []string {
	return []string{
		"CLOVER_KEYS_DIR=" + c.Keys,
		"CLOVER_ZOOKEEPER_SERVERS=" + strings.Join(c.ZooKeeperServers(), ","),
		"CLOVER_ZOOKEEPER_ROOT=" + c.Root,
		"CLOVER_LOG_LEVEL=debug",
		"GORACE=halt_on_error=1",
		// The open set's form the cluster's store is made with (make test runs the store's own tests in both).
		"CLOVER_MONGO_OPEN_SET=" + os.Getenv("CLOVER_TEST_OPEN_SET"),
	}
}

// AddServer starts one more server.
func (c *Cluster) AddServer(id string) *Member {
	c.t.Helper()
	m := &Member{
		ID: id, Kind: "server",
		API:    fmt.Sprintf("127.0.0.1:%d", testenv.FreePort(c.t)),
		Listen: fmt.Sprintf("tcp://127.0.0.1:%d", testenv.FreePort(c.t)),
		log:    filepath.Join(c.Dir, id+".log"),
	}
	m.args = []string{c.Bin, "server", "--id", id, "--api-listen", m.API, "--listen", m.Listen}
	m.env = append(c.commonEnv(), c.sessionEnv(), "CLOVER_MONGO_URI="+c.Mongo.URI, "CLOVER_MONGO_DATABASE="+c.DB)
	if c.CAFile != "" {
		dir := filepath.Dir(c.CAFile)
		m.env = append(m.env, "CLOVER_API_TLS_CERT_FILE="+filepath.Join(dir, "server.pem"),
			"CLOVER_API_TLS_KEY_FILE="+filepath.Join(dir, "server-key.pem"), "CLOVER_API_TLS_CA_FILE="+c.CAFile)
	}
	m.env = append(m.env, c.opts.ServerEnv...)
	c.Servers = append(c.Servers, m)
	c.Start(m)
	return m
}

// AddClient starts one more client offering the cluster's client handlers.
func (c *Cluster) AddClient(id string) *Member {
	c.t.Helper()
	m := &Member{
		ID: id, Kind: "client",
		Listen: fmt.Sprintf("tcp://127.0.0.1:%d", testenv.FreePort(c.t)),
		log:    filepath.Join(c.Dir, id+".log"),
	}
	c.ClientKeys(id)
	m.args = []string{c.Bin, "client", "--id", id, "--listen", m.Listen,
		"--handlers", strings.Join(c.opts.ClientHandlers, ",")}
	if c.opts.ClientCapacity > 0 {
		m.args = append(m.args, "--capacity", fmt.Sprint(c.opts.ClientCapacity))
	}
	m.env = c.clientEnv()
	if c.opts.ClientMetrics {
		m.API = fmt.Sprintf("127.0.0.1:%d", testenv.FreePort(c.t))
		m.env = append(m.env, "CLOVER_METRICS_LISTEN="+m.API)
	}
	m.env = append(m.env, c.opts.ClientEnv...)
	c.Clients = append(c.Clients, m)
	c.Start(m)
	return m
}

// Start (re)starts a member with its original arguments.
func (c *Cluster) Start(m *Member) {
	c.t.Helper()
	m.Proc = testenv.StartProcess(c.t, m.ID, m.log, m.env, m.args...)
}

// Kill SIGKILLs a member.
func (m *Member) Kill() { m.Proc.Kill() }

// Signal sends a signal to a member.
func (m *Member) Signal(sig syscall.Signal) error { return m.Proc.Signal(sig) }

// Log returns the member's log tail.
func (m *Member) Log(lines int) string { return m.Proc.Tail(lines) }

// Status asks one server for the cluster status.
func (c *Cluster) Status(m *Member) (api.ClusterStatus, error) {
	var st api.ClusterStatus
	err := c.Call(m, "GET", "/api/v1/cluster", nil, &st)
	return st, err
}

// Leader returns the leading server and its epoch as seen by any live server that agrees with itself
// (the leader must also report itself as leader).
func (c *Cluster) Leader() (*Member, int64, bool) {
	for _, m := range c.Servers {
		if m.Proc.Exited() {
			continue
		}
		st, err := c.Status(m)
		if err != nil || st.Leader == nil {
			continue
		}
		for _, l := range c.Servers {
			if l.ID == st.Leader.ID && !l.Proc.Exited() {
				return l, st.Leader.Epoch, true
			}
		}
	}
	return nil, 0, false
}

// WaitLeader waits until some server leads and returns it.
func (c *Cluster) WaitLeader(timeout time.Duration) (*Member, int64) {
	c.t.Helper()
	var (
		leader *Member
		epoch  int64
	)
	if !testenv.Poll(timeout, func() bool {
		var ok bool
		leader, epoch, ok = c.Leader()
		return ok && c.isLeading(leader)
	}) {
		c.t.Fatalf("no leader within %s\n%s", timeout, c.Logs(20))
	}
	return leader, epoch
}

// isLeading checks the server's own metric: the registry may name a leader whose loop has not started.
func (c *Cluster) isLeading(m *Member) bool {
	v, err := c.Metric(m, "clover_server_is_leader")
	return err == nil && v == 1
}

// WaitClients waits until n clients are registered.
func (c *Cluster) WaitClients(n int, timeout time.Duration) {
	c.t.Helper()
	if !testenv.Poll(timeout, func() bool {
		for _, m := range c.Servers {
			if m.Proc.Exited() {
				continue
			}
			if st, err := c.Status(m); err == nil && len(st.Clients) == n {
				return true
			}
		}
		return false
	}) {
		c.t.Fatalf("%d clients not registered within %s\n%s", n, timeout, c.Logs(20))
	}
}

// AnyServer returns a live server.
func (c *Cluster) AnyServer() *Member {
	for _, m := range c.Servers {
		if !m.Proc.Exited() {
			return m
		}
	}
	c.t.Fatal("no live server")
	return nil
}

// Call makes a REST call to server m as an admin, decoding a JSON answer into out. Non-2xx answers are
// errors of type *APIError.
func (c *Cluster) Call(m *Member, method, path string, body, out any) error {
	return c.CallAs(c.Tokens.Admin, m, method, path, body, out)
}

// CallAs is Call with token ("" sends none).
func (c *Cluster) CallAs(token string, m *Member, method, path string, body, out any) error {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return err
		}
		rd = bytes.NewReader(b)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, method, c.scheme+"://"+m.API+path, rd)
	if err != nil {
		return err
	}
	if method != http.MethodGet {
		req.Header.Set("Content-Type", "application/json")
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	if resp.StatusCode >= 300 {
		return &APIError{Status: resp.StatusCode, Body: string(data)}
	}
	if out != nil && len(data) > 0 {
		return json.Unmarshal(data, out)
	}
	return nil
}

// APIError is a non-2xx answer.
type APIError struct {
	Status int
	Body   string
}

func (e *APIError) Error() string { return fmt.Sprintf("HTTP %d: %s", e.Status, e.Body) }

// CreateJob creates a job through a live server's API.
func (c *Cluster) CreateJob(spec job.Spec) {
	c.t.Helper()
	if err := c.Call(c.AnyServer(), "POST", "/api/v1/jobs", spec, nil); err != nil {
		c.t.Fatalf("create job %s: %v", spec.Name, err)
	}
}

// Metric reads one unlabelled sample (or the sum over labels) of a server's /metrics.
func (c *Cluster) Metric(m *Member, name string) (float64, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, "GET", c.scheme+"://"+m.API+"/metrics", nil)
	req.Header.Set("Authorization", "Bearer "+c.Tokens.Viewer)
	resp, err := c.http.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	var sum float64
	found := false
	for _, line := range strings.Split(string(data), "\n") {
		if !strings.HasPrefix(line, name) || len(line) <= len(name) {
			continue
		}
		if rest := line[len(name)]; rest != ' ' && rest != '{' {
			continue
		}
		var v float64
		if _, err := fmt.Sscan(line[strings.LastIndexByte(line, ' ')+1:], &v); err == nil {
			sum += v
			found = true
		}
	}
	if !found {
		return 0, fmt.Errorf("metric %s not found", name)
	}
	return sum, nil
}

// Store opens the cluster's database directly, to check what was recorded.
func (c *Cluster) Store() *store.Store {
	c.t.Helper()
	c.storeOnce.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		form := os.Getenv("CLOVER_TEST_OPEN_SET")
		s, err := store.Open(ctx, c.Mongo.URI, c.DB, store.WithOpenSet(form))
		if err != nil {
			c.t.Fatalf("open store: %v", err)
		}
		if form != "" && s.OpenSetForm() != form {
			c.t.Fatalf("the cluster's store keeps its open set %s, not %s as asked", s.OpenSetForm(), form)
		}
		c.store = s
	})
	return c.store
}

// Logs returns the tail of every member's log, for failure messages.
func (c *Cluster) Logs(lines int) string {
	var b strings.Builder
	for _, m := range append(append(append([]*Member{}, c.Servers...), c.Clients...), c.Monitors...) {
		fmt.Fprintf(&b, "--- %s (%s) ---\n%s\n", m.ID, m.log, m.Log(lines))
	}
	for _, a := range c.apps {
		fmt.Fprintf(&b, "--- %s (in the test process, %s) ---\n%s\n", a.ID, a.log, a.Log(lines))
	}
	return b.String()
}

// AddMonitor starts a monitor with the cluster's ZooKeeper and MongoDB, its HTTP endpoint on a free port,
// and env (CLOVER_SMTP_*, CLOVER_OPERATORS, intervals...).
func (c *Cluster) AddMonitor(id string, env ...string) *Member {
	c.t.Helper()
	m := &Member{
		ID: id, Kind: "monitor",
		API: fmt.Sprintf("127.0.0.1:%d", testenv.FreePort(c.t)),
		log: filepath.Join(c.Dir, id+".log"),
	}
	m.args = []string{c.Bin, "monitor", "--id", id, "--listen", m.API}
	m.env = append(c.commonEnv(), c.sessionEnv(), "CLOVER_MONGO_URI="+c.Mongo.URI, "CLOVER_MONGO_DATABASE="+c.DB, "CLOVER_TOKEN_FILE="+c.TokenFile())
	if c.CAFile != "" {
		m.env = append(m.env, "CLOVER_API_CA_FILE="+c.CAFile)
	}
	m.env = append(m.env, env...)
	c.Monitors = append(c.Monitors, m)
	c.Start(m)
	return m
}

// AddClientWithConfig starts one more client that also reads the given YAML config (labels, width...).
func (c *Cluster) AddClientWithConfig(id, yaml string) *Member {
	c.t.Helper()
	path := filepath.Join(c.Dir, id+".yaml")
	if err := os.WriteFile(path, []byte(yaml), 0o600); err != nil {
		c.t.Fatalf("write client config: %v", err)
	}
	m := &Member{
		ID: id, Kind: "client",
		Listen: fmt.Sprintf("tcp://127.0.0.1:%d", testenv.FreePort(c.t)),
		log:    filepath.Join(c.Dir, id+".log"),
	}
	c.ClientKeys(id)
	m.args = []string{c.Bin, "client", "--config", path, "--id", id, "--listen", m.Listen,
		"--handlers", strings.Join(c.opts.ClientHandlers, ",")}
	m.env = c.clientEnv()
	m.env = append(m.env, c.opts.ClientEnv...)
	c.Clients = append(c.Clients, m)
	c.Start(m)
	return m
}

// peerOutboxes returns two outboxes connected to every member: one to the servers as client id (whose
// keys it makes: an admitted client), one to the clients holding the servers' key (as a server would).
// They are closed when the test ends.
func (c *Cluster) peerOutboxes(id string) (toServers, toClients *transport.Outbox) {
	c.t.Helper()
	c.ClientKeys(id)
	own, err := keyring.LoadClient(c.Keys, id)
	if err != nil {
		c.t.Fatal(err)
	}
	srv, err := keyring.LoadServer(c.Keys)
	if err != nil {
		c.t.Fatal(err)
	}
	toServers = transport.NewOutbox(slog.Default(), &transport.Curve{Public: own.Key.Public, Secret: own.Key.Secret, ServerPublic: own.ServerPublic})
	toClients = transport.NewOutbox(slog.Default(), &transport.Curve{Public: srv.Key.Public, Secret: srv.Key.Secret, ServerPublic: srv.Key.Public,
		Identify: srv.Clients.Identify, PeerKey: srv.Clients.PublicKey})
	servers, clients := map[string]transport.Peer{}, map[string]transport.Peer{}
	for _, m := range c.Servers {
		servers[m.ID] = transport.Peer{Endpoint: m.Listen, Server: true}
	}
	for _, m := range c.Clients {
		clients[m.ID] = transport.Peer{Endpoint: m.Listen}
	}
	toServers.SetPeers(servers)
	toClients.SetPeers(clients)
	c.t.Cleanup(toServers.Close)
	c.t.Cleanup(toClients.Close)
	return toServers, toClients
}

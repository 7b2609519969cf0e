package integration

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/go-zookeeper/zk"
	zmq "github.com/pebbe/zmq4"

	"github.com/clover-sched/clover/api"
	"github.com/clover-sched/clover/client"
	"github.com/clover-sched/clover/internal/job"
	"github.com/clover-sched/clover/internal/keyring"
	"github.com/clover-sched/clover/internal/registry"
	"github.com/clover-sched/clover/internal/testenv"
	"github.com/clover-sched/clover/internal/transport"
	"github.com/clover-sched/clover/internal/wire"
)

// sendFor sends frame to id through out for d, as an attacker would keep trying; sends fail while the
// handshake is refused.
func sendFor(out *transport.Outbox, id string, frame []byte, d time.Duration) {
	for end := time.Now().Add(d); time.Now().Before(end); time.Sleep(50 * time.Millisecond) {
		_ = out.Send(id, frame)
	}
}

// Nobody without the servers' key can make a client run a command: a forged dispatch (with the highest
// epoch there is, which would make a client ignore the real leader) sent from a plain PUSH socket, from a
// peer claiming to be a server with another key, and from an admitted client's key never runs, and the
// real leader's dispatches still do.
func TestForgedDispatchesNeverRunOnAClient(t *testing.T) {
	if testing.Short() {
		t.Skip("cluster test")
	}
	c, l, _ := startTicking(t, Options{Servers: 1, Clients: 1})
	target := c.Clients[0]
	marker := filepath.Join(t.TempDir(), "forged-ran")
	frame, err := wire.Encode(&wire.Dispatch{
		Header: wire.Header{From: c.Servers[0].ID, Epoch: math.MaxInt64, SentAt: time.Now()},
		ExecID: "forged@2030-01-01T00:00:00Z", Job: "forged", Handler: job.HandlerShell,
		Params: map[string]string{"command": "touch " + marker}, AcceptBy: time.Now().Add(time.Hour), Attempt: 1, Run: 1,
	})
	if err != nil {
		t.Fatal(err)
	}
	peer := map[string]transport.Peer{target.ID: {Endpoint: target.Listen}}

	null := transport.NewOutbox(slog.Default(), nil)
	defer null.Close()
	null.SetPeers(peer)

	own, err := keyring.LoadClient(c.Keys, target.ID)
	if err != nil {
		t.Fatal(err)
	}
	pub, sec, err := zmq.NewCurveKeypair()
	if err != nil {
		t.Fatal(err)
	}
	impostor := transport.NewOutbox(slog.Default(), &transport.Curve{Public: pub, Secret: sec, ServerPublic: pub,
		PeerKey: func(string) (string, bool) { return own.Key.Public, true }})
	defer impostor.Close()
	impostor.SetPeers(peer)

	c.ClientKeys("admitted")
	adm, err := keyring.LoadClient(c.Keys, "admitted")
	if err != nil {
		t.Fatal(err)
	}
	asClient := transport.NewOutbox(slog.Default(), &transport.Curve{Public: adm.Key.Public, Secret: adm.Key.Secret, ServerPublic: adm.ServerPublic})
	defer asClient.Close()
	asClient.SetPeers(map[string]transport.Peer{target.ID: {Endpoint: target.Listen, Server: true}})

	for _, out := range []*transport.Outbox{null, impostor, asClient} {
		sendFor(out, target.ID, frame, 2*time.Second)
	}
	// The real leader still dispatches to the client (its epoch was not raised), and the forged command
	// never ran.
	from := time.Now().Add(time.Second).Truncate(time.Second)
	l.waitComplete(t, c, from, from.Add(3*time.Second), 30*time.Second)
	if _, err := os.Stat(marker); err == nil {
		t.Fatal("a forged dispatch ran its command")
	}
	if target.Proc.Exited() {
		t.Fatalf("the client exited:\n%s", target.Log(30))
	}
}

// A client speaks for itself only: a result in another client's name, sent with an admitted client's
// key, is dropped and counted, and records nothing.
func TestAResultInAnotherClientsNameIsDropped(t *testing.T) {
	if testing.Short() {
		t.Skip("cluster test")
	}
	c := StartCluster(t, Options{Servers: 1, Clients: 2})
	own, err := keyring.LoadClient(c.Keys, c.Clients[0].ID)
	if err != nil {
		t.Fatal(err)
	}
	asA := transport.NewOutbox(slog.Default(), &transport.Curve{Public: own.Key.Public, Secret: own.Key.Secret, ServerPublic: own.ServerPublic})
	defer asA.Close()
	asA.SetPeers(map[string]transport.Peer{c.Servers[0].ID: {Endpoint: c.Servers[0].Listen, Server: true}})
	forged, err := wire.Encode(&wire.Result{
		Header: wire.Header{From: c.Clients[1].ID, SentAt: time.Now()},
		ExecID: "forged@2030-01-01T00:00:00Z", Job: "forged", Attempt: 1, Run: 1,
		Result: job.Result{Status: job.StateSucceeded},
	})
	if err != nil {
		t.Fatal(err)
	}
	metric := `clover_frames_dropped_total{reason="forged_sender"}`
	testenv.WaitFor(t, 20*time.Second, "the forged result to be dropped and counted", func() bool {
		_ = asA.Send(c.Servers[0].ID, forged)
		v, err := c.Metric(c.Servers[0], metric)
		return err == nil && v >= 1
	})
	if err := c.Call(c.Servers[0], "GET", "/api/v1/executions/forged@2030-01-01T00:00:00Z", nil, nil); !isStatus(err, http.StatusNotFound) {
		t.Fatalf("the forged result's execution: %v, want 404", err)
	}
	// In its own name, but for a run never sent to it (no run token): dropped as well.
	unsent, err := wire.Encode(&wire.Result{
		Header: wire.Header{From: c.Clients[0].ID, SentAt: time.Now()},
		ExecID: "unsent@2030-01-01T00:00:00Z", Job: "unsent", Attempt: 1, Run: 1,
		Result: job.Result{Status: job.StateSucceeded},
	})
	if err != nil {
		t.Fatal(err)
	}
	testenv.WaitFor(t, 20*time.Second, "the result without a run token to be dropped and counted", func() bool {
		_ = asA.Send(c.Servers[0].ID, unsent)
		v, err := c.Metric(c.Servers[0], `clover_frames_dropped_total{reason="bad_run_token"}`)
		return err == nil && v >= 1
	})
}

// The API on a cluster: no token is 401 everywhere but /healthz, roles are enforced on a follower that
// forwards to the leader, a forged forward header is 401, a browser-driven request is refused, a trigger
// cannot set the command, and profiles are not served.
func TestTheAPIAcceptsOnlyTokensOfTheRightRole(t *testing.T) {
	if testing.Short() {
		t.Skip("cluster test")
	}
	c := StartCluster(t, Options{Servers: 2, Clients: 1})
	leader, _ := c.WaitLeader(30 * time.Second)
	follower := c.otherServer(leader)
	spec := job.Spec{Name: "nightly", Schedule: "0 0 1 * * ?", Handler: job.HandlerShell, Params: map[string]string{"command": "echo hi"}}

	for _, rt := range api.Routes {
		path := strings.NewReplacer("{name}", "nightly", "{id}", "x").Replace(rt.Path)
		if err := c.CallAs("", follower, rt.Method, path, nil, nil); !isStatus(err, http.StatusUnauthorized) {
			t.Errorf("%s without a token: %v, want 401", rt.Pattern(), err)
		}
	}
	if err := c.CallAs("", follower, "GET", "/healthz", nil, nil); err != nil {
		t.Errorf("/healthz without a token: %v", err)
	}
	if err := c.CallAs(c.Tokens.Admin, follower, "GET", "/debug/pprof/", nil, nil); !isStatus(err, http.StatusNotFound) {
		t.Errorf("/debug/pprof/: %v, want 404", err)
	}
	if err := c.CallAs(c.Tokens.Viewer, follower, "POST", "/api/v1/jobs", spec, nil); !isStatus(err, http.StatusForbidden) {
		t.Errorf("a viewer creating a job: %v, want 403", err)
	}
	if err := c.CallAs(c.Tokens.Operator, follower, "POST", "/api/v1/jobs", spec, nil); !isStatus(err, http.StatusForbidden) {
		t.Errorf("an operator creating a shell job: %v, want 403", err)
	}
	if err := c.CallAs(c.Tokens.Admin, follower, "POST", "/api/v1/jobs", spec, nil); err != nil {
		t.Fatalf("an admin creating a shell job through a follower: %v, want 201", err)
	}
	entries := []map[string]any{}
	if err := c.CallAs(c.Tokens.Admin, leader, "GET", "/api/v1/audit?who=test-admin", nil, &entries); err != nil || len(entries) == 0 {
		t.Fatalf("audit: %v, %v", entries, err)
	}
	if entries[0]["via"] != follower.ID || entries[0]["server"] != leader.ID || entries[0]["target"] != "nightly" {
		t.Errorf("audit entry %v: want the write made on %s, forwarded by %s", entries[0], leader.ID, follower.ID)
	}
	if err := c.CallAs(c.Tokens.Viewer, leader, "GET", "/api/v1/audit", nil, nil); !isStatus(err, http.StatusForbidden) {
		t.Errorf("a viewer reading the audit log: %v, want 403", err)
	}

	// A forward header straight to the leader, without the cluster secret's signature.
	forged := func(req *http.Request) {
		req.Header.Set("X-Clover-Caller", "mallory")
		req.Header.Set("X-Clover-Role", "admin")
		req.Header.Set("X-Clover-Forwarded-By", follower.ID)
		req.Header.Set("X-Clover-Forward-At", fmt.Sprint(time.Now().UnixMilli()))
	}
	if code := rawCall(t, leader, "DELETE", "/api/v1/jobs/nightly", "", "", forged); code != http.StatusUnauthorized {
		t.Errorf("a forged forward: %d, want 401", code)
	}

	// A trigger may not set the command: 400, and no execution.
	var before []job.Execution
	if err := c.Call(leader, "GET", "/api/v1/executions?job=nightly", nil, &before); err != nil {
		t.Fatal(err)
	}
	err := c.CallAs(c.Tokens.Operator, follower, "POST", "/api/v1/jobs/nightly/trigger", api.TriggerRequest{Params: map[string]string{"command": "id"}}, nil)
	if !isStatus(err, http.StatusBadRequest) {
		t.Errorf("a trigger setting params.command: %v, want 400", err)
	}
	var after []job.Execution
	if err := c.Call(leader, "GET", "/api/v1/executions?job=nightly", nil, &after); err != nil {
		t.Fatal(err)
	}
	if len(after) != len(before) {
		t.Errorf("the refused trigger made an execution: %v", after)
	}

	// Browser-driven: text/plain is 415 and stores nothing; a foreign origin or host is 403.
	body := `{"name":"from-a-page","schedule":"@every 1s","handler":"shell","params":{"command":"id"}}`
	if code := rawCall(t, follower, "POST", "/api/v1/jobs", body, "text/plain", bearer(c.Tokens.Admin)); code != http.StatusUnsupportedMediaType {
		t.Errorf("text/plain POST: %d, want 415", code)
	}
	if code := rawCall(t, follower, "POST", "/api/v1/jobs", body, "application/json", bearer(c.Tokens.Admin),
		func(r *http.Request) { r.Header.Set("Origin", "http://evil.example") }); code != http.StatusForbidden {
		t.Errorf("foreign Origin: %d, want 403", code)
	}
	if code := rawCall(t, follower, "GET", "/api/v1/jobs", "", "", bearer(c.Tokens.Admin),
		func(r *http.Request) { r.Host = "rebound.evil.example" }); code != http.StatusForbidden {
		t.Errorf("unknown Host: %d, want 403", code)
	}
	if err := c.Call(leader, "GET", "/api/v1/jobs/from-a-page", nil, nil); !isStatus(err, http.StatusNotFound) {
		t.Errorf("a refused request stored its job: %v", err)
	}
}

func bearer(token string) func(*http.Request) {
	return func(r *http.Request) { r.Header.Set("Authorization", "Bearer "+token) }
}

// rawCall sends one request to m and returns its status.
func rawCall(t *testing.T, m *Member, method, path, body, contentType string, edits ...func(*http.Request)) int {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, method, "http://"+m.API+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	for _, e := range edits {
		e(req)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

// ZooKeeper refuses whoever has no key: an unauthenticated session cannot delete the leader's election
// node, write or delete a client's node, or register a client; a client cannot delete or write another's.
func TestZooKeeperRefusesWhoHasNoKey(t *testing.T) {
	if testing.Short() {
		t.Skip("cluster test")
	}
	c := StartCluster(t, Options{Servers: 1, Clients: 2})
	anon := zkConn(t, c)
	children, _, err := anon.Children(c.Root + "/election")
	if err != nil || len(children) == 0 {
		t.Fatalf("reading the election (anyone may read): %v, %v", children, err)
	}
	election := c.Root + "/election/" + children[0]
	clientA, clientB := c.Root+"/clients/"+c.Clients[0].ID, c.Root+"/clients/"+c.Clients[1].ID
	for what, op := range map[string]func(*zk.Conn) error{
		"delete the leader's election node": func(z *zk.Conn) error { return z.Delete(election, -1) },
		"write a client's node":             func(z *zk.Conn) error { _, err := z.Set(clientA, []byte("{}"), -1); return err },
		"delete a client's node":            func(z *zk.Conn) error { return z.Delete(clientA, -1) },
		"register a client": func(z *zk.Conn) error {
			_, err := z.Create(c.Root+"/clients/intruder", []byte("{}"), zk.FlagEphemeral, zk.WorldACL(zk.PermAll))
			return err
		},
		"set the leader's api_addr": func(z *zk.Conn) error {
			_, err := z.Set(election, []byte(`{"id":"x","api_addr":"evil.example:80"}`), -1)
			return err
		},
	} {
		if err := op(anon); !errors.Is(err, zk.ErrNoAuth) {
			t.Errorf("an unauthenticated session could %s: err = %v, want NoAuth", what, err)
		}
	}
	// Client A, with its own credentials, against client B's node.
	keysA, err := keyring.LoadClient(c.Keys, c.Clients[0].ID)
	if err != nil {
		t.Fatal(err)
	}
	asA := zkConn(t, c)
	for _, d := range []string{"clover-clients:" + keysA.ClientsSecret, "clover-client." + keysA.ID + ":" + keysA.ClientZooKeeperPassword()} {
		if err := asA.AddAuth("digest", []byte(d)); err != nil {
			t.Fatal(err)
		}
	}
	if err := asA.Delete(clientB, -1); !errors.Is(err, zk.ErrNoAuth) {
		t.Errorf("client A deleted client B's node: err = %v, want NoAuth", err)
	}
	if _, err := asA.Set(clientB, []byte("{}"), -1); !errors.Is(err, zk.ErrNoAuth) {
		t.Errorf("client A wrote client B's node: err = %v, want NoAuth", err)
	}
	if err := asA.Delete(election, -1); !errors.Is(err, zk.ErrNoAuth) {
		t.Errorf("client A deleted the election node: err = %v, want NoAuth", err)
	}
	if ok, _, err := anon.Exists(election); err != nil || !ok {
		t.Fatalf("the election node is gone: %v %v", ok, err)
	}
}

func zkConn(t *testing.T, c *Cluster) *zk.Conn {
	t.Helper()
	return zkConnTo(t, c.ZK.Addr)
}

func zkConnTo(t *testing.T, addr string) *zk.Conn {
	t.Helper()
	conn, _, err := zk.Connect([]string{addr}, 5*time.Second, zk.WithLogInfo(false))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(conn.Close)
	testenv.WaitFor(t, 10*time.Second, "zookeeper session", func() bool { return conn.State() == zk.StateHasSession })
	return conn
}

// What a client may report is bounded on the server: a result with 4 MiB of output is stored cut to its
// tail. And a shell job does not see the client's environment: a secret set there is not in its output.
func TestAHugeResultIsCutAndShellJobsDoNotSeeTheClientsSecrets(t *testing.T) {
	if testing.Short() {
		t.Skip("cluster test")
	}
	c := StartCluster(t, Options{Servers: 1, Clients: 1, ClientEnv: []string{"SECRET_TOKEN=hunter2-in-the-environment"}})
	c.CreateJob(job.Spec{Name: "env", Schedule: "0 0 1 1 * ?", Handler: job.HandlerShell, Params: map[string]string{"command": "env"}})
	var trig api.TriggerResponse
	if err := c.CallAs(c.Tokens.Operator, c.Servers[0], "POST", "/api/v1/jobs/env/trigger", nil, &trig); err != nil {
		t.Fatal(err)
	}
	out := waitEnded(t, c, trig.Execution)
	if !strings.Contains(out.Output, "CLOVER_JOB=env") || strings.Contains(out.Output, "hunter2") || strings.Contains(out.Output, "CLOVER_KEYS_DIR") {
		t.Fatalf("the job's environment:\n%s\nwant CLOVER_JOB and neither the secret nor the client's settings", out.Output)
	}

	release := make(chan struct{})
	app := c.StartAppClient(AppClientOptions{ID: "app", Handlers: map[string]client.HandlerFunc{
		"hold": func(ctx context.Context, jc client.JobContext) error { <-release; return nil },
	}})
	defer close(release)
	c.WaitClients(2, 30*time.Second)
	c.CreateJob(job.Spec{Name: "held", Schedule: "0 0 1 1 * ?", Handler: "hold"})
	if err := c.CallAs(c.Tokens.Operator, c.Servers[0], "POST", "/api/v1/jobs/held/trigger", nil, &trig); err != nil {
		t.Fatal(err)
	}
	testenv.WaitFor(t, 30*time.Second, "the held run to start", func() bool {
		var e job.Execution
		return c.Call(c.Servers[0], "GET", "/api/v1/executions/"+trig.Execution, nil, &e) == nil && e.State == job.StateRunning
	})
	keys, err := keyring.LoadClient(c.Keys, app.ID)
	if err != nil {
		t.Fatal(err)
	}
	asApp := transport.NewOutbox(slog.Default(), &transport.Curve{Public: keys.Key.Public, Secret: keys.Key.Secret, ServerPublic: keys.ServerPublic})
	defer asApp.Close()
	asApp.SetPeers(map[string]transport.Peer{c.Servers[0].ID: {Endpoint: c.Servers[0].Listen, Server: true}})
	// As large as a frame carries (the wire bounds a decoded frame at 4 MiB).
	// The app's own run: its result carries the run's token, as the app's would (the test derives it from
	// the cluster secret, as a server does).
	srv, err := keyring.LoadServer(c.Keys)
	if err != nil {
		t.Fatal(err)
	}
	token := keyring.RunToken([]byte(keyring.Derive(srv.Cluster, keyring.PurposeRunToken)), trig.Execution, 1, app.ID)
	huge := strings.Repeat("A", 4<<20-192<<10) + strings.Repeat("Z", 100)
	frame, err := wire.Encode(&wire.Result{
		Header: wire.Header{From: app.ID, SentAt: time.Now()},
		ExecID: trig.Execution, Job: "held", Attempt: 1, Run: 1, Token: token,
		Result: job.Result{Status: job.StateSucceeded, Output: huge, Error: strings.Repeat("E", 64<<10)},
	})
	if err != nil {
		t.Fatal(err)
	}
	testenv.WaitFor(t, 20*time.Second, "the huge result to be sent", func() bool {
		return asApp.Send(c.Servers[0].ID, frame) == nil
	})
	got := waitEnded(t, c, trig.Execution)
	if len(got.Output) > job.MaxOutput || !strings.HasSuffix(got.Output, strings.Repeat("Z", 100)) {
		t.Fatalf("stored output of %d bytes (ends %q), want its last %d bytes", len(got.Output), got.Output[max(0, len(got.Output)-10):], job.MaxOutput)
	}
	if len(got.Error) > job.MaxError+16 {
		t.Fatalf("stored error of %d bytes, want at most about %d", len(got.Error), job.MaxError)
	}
}

// waitEnded waits until execution id ended and returns its result.
func waitEnded(t *testing.T, c *Cluster, id string) job.Result {
	t.Helper()
	var e job.Execution
	testenv.WaitFor(t, 30*time.Second, id+" to end", func() bool {
		return c.Call(c.Servers[0], "GET", "/api/v1/executions/"+id, nil, &e) == nil && e.Result != nil && e.State.Terminal()
	})
	return *e.Result
}

// A tree made before the cluster was secure (open to anyone) gets the servers' ACLs from `clover keys
// secure-zookeeper`: afterwards an unauthenticated session can read it but not change it.
func TestSecureZooKeeperSetsTheACLsOnAnOldTree(t *testing.T) {
	if testing.Short() {
		t.Skip("cluster test")
	}
	z := testenv.StartZooKeeper(t)
	keys := filepath.Join(t.TempDir(), "keys")
	if _, err := keyring.GenerateCluster(keys); err != nil {
		t.Fatal(err)
	}
	conn := zkConnTo(t, z.Addr)
	for _, p := range []string{"/old", "/old/election", "/old/servers", "/old/clients", "/old/servers/s1"} {
		if _, err := conn.Create(p, nil, 0, zk.WorldACL(zk.PermAll)); err != nil {
			t.Fatalf("create %s: %v", p, err)
		}
	}
	out, err := exec.Command(Binary(t), "keys", "secure-zookeeper", "--dir", keys, "--zookeeper", z.Addr, "--zk-root", "/old").CombinedOutput()
	if err != nil {
		t.Fatalf("secure-zookeeper: %v\n%s", err, out)
	}
	if !strings.Contains(string(out), "secured /old/servers/s1") {
		t.Fatalf("output:\n%s", out)
	}
	if _, _, err := conn.Get("/old/servers/s1"); err != nil {
		t.Fatalf("reading after securing: %v", err)
	}
	if err := conn.Delete("/old/servers/s1", -1); !errors.Is(err, zk.ErrNoAuth) {
		t.Fatalf("deleting after securing: %v, want NoAuth", err)
	}
	if _, err := conn.Create("/old/clients/x", nil, 0, zk.WorldACL(zk.PermAll)); !errors.Is(err, zk.ErrNoAuth) {
		t.Fatalf("creating a client node without the clients' password: %v, want NoAuth", err)
	}
}

// With HTTPS on the API, a follower forwards writes to the leader over HTTPS (trusting the servers' CA),
// the CLI reaches it with --ca, and plain HTTP gets no answer.
func TestTheAPIOverHTTPSForwardsToTheLeader(t *testing.T) {
	if testing.Short() {
		t.Skip("cluster test")
	}
	c := StartCluster(t, Options{Servers: 2, Clients: 1, TLS: true})
	leader, _ := c.WaitLeader(30 * time.Second)
	follower := c.otherServer(leader)
	spec := job.Spec{Name: "over-tls", Schedule: "0 0 1 * * ?", Handler: job.HandlerShell, Params: map[string]string{"command": "true"}}
	if err := c.Call(follower, "POST", "/api/v1/jobs", spec, nil); err != nil {
		t.Fatalf("a write through the follower, over HTTPS: %v", err)
	}
	cmd := exec.Command(c.Bin, "job", "get", "over-tls", "--api", "https://"+follower.API, "--ca", c.CAFile)
	cmd.Env = append(os.Environ(), "CLOVER_TOKEN="+c.Tokens.Viewer)
	if out, err := cmd.CombinedOutput(); err != nil || !strings.Contains(string(out), "over-tls") {
		t.Fatalf("clover --ca: %v\n%s", err, out)
	}
	if code := rawCallErr(follower, "GET", "/healthz"); code == http.StatusOK {
		t.Fatal("plain HTTP was answered by an HTTPS API")
	}
}

// rawCallErr sends a plain-HTTP request and returns its status, or 0 when there was no HTTP answer.
func rawCallErr(m *Member, method, path string) int {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, method, "http://"+m.API+path, nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0
	}
	resp.Body.Close()
	return resp.StatusCode
}

// A client host holds the clients' shared ZooKeeper password, so it can create nodes under clients/: a
// node for an id not in the allowlist, or for an admitted id but not signed with that id's key (a host
// squatting a client that is away), is ignored, and the shell job it declares is never created.
func TestRegistrationsNotSignedByTheirClientAreIgnored(t *testing.T) {
	if testing.Short() {
		t.Skip("cluster test")
	}
	c := StartCluster(t, Options{Servers: 1, Clients: 1})
	keysA, err := keyring.LoadClient(c.Keys, c.Clients[0].ID)
	if err != nil {
		t.Fatal(err)
	}
	c.ClientKeys("away") // admitted, never started
	asA := zkConnTo(t, c.ZK.Addr)
	if err := asA.AddAuth("digest", []byte("clover-clients:"+keysA.ClientsSecret)); err != nil {
		t.Fatal(err)
	}
	declare := func(id, jobName string, key []byte) {
		t.Helper()
		specs, _ := json.Marshal([]job.Spec{{Name: jobName, Schedule: "@every 1s", Handler: job.HandlerShell,
			Params: map[string]string{"command": "touch /tmp/clover-squatted"}}})
		m := registry.Member{ID: id, Kind: registry.KindClients, Endpoint: "tcp://127.0.0.1:1", Handlers: []string{"shell"},
			Jobs: []string{jobName}, Declared: specs, StartedAt: time.Now().UTC()}
		if key != nil {
			m = m.Signed(key)
		}
		data, _ := json.Marshal(m)
		if _, err := asA.Create(c.Root+"/clients/"+id, data, 0, zk.WorldACL(zk.PermRead)); err != nil {
			t.Fatalf("create %s: %v", id, err)
		}
	}
	declare("ghost", "ghost-job", nil)
	declare("away", "squatted-job", keysA.MemberKey) // signed, but with client-1's key
	testenv.WaitFor(t, 20*time.Second, "the server to ignore both nodes", func() bool {
		log := c.Servers[0].Log(400)
		return strings.Contains(log, "not in the allowlist") && strings.Contains(log, "not signed with its key")
	})
	for _, name := range []string{"ghost-job", "squatted-job"} {
		if err := c.Call(c.Servers[0], "GET", "/api/v1/jobs/"+name, nil, nil); !isStatus(err, http.StatusNotFound) {
			t.Errorf("job %s declared by an unsigned registration: %v, want 404", name, err)
		}
	}
	var st api.ClusterStatus
	if err := c.Call(c.Servers[0], "GET", "/api/v1/cluster", nil, &st); err != nil {
		t.Fatal(err)
	}
}

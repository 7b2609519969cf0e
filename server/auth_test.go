package server

import (
	"context"
	"crypto/rand"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/clover-sched/clover/api"
	"github.com/clover-sched/clover/internal/keyring"
	"github.com/clover-sched/clover/internal/store"
	"github.com/clover-sched/clover/internal/testenv"
)

// testTokens are a token of each role.
type testTokens struct{ viewer, operator, admin string }

// secureForTest gives s what a secure server holds (a key directory with a token of each role), and a
// logger and metrics, so that its routes can be served without the rest of a server.
func secureForTest(t *testing.T, s *Server) testTokens {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "keys")
	if _, err := keyring.GenerateCluster(dir); err != nil {
		t.Fatal(err)
	}
	var tok testTokens
	for role, p := range map[string]*string{keyring.RoleViewer: &tok.viewer, keyring.RoleOperator: &tok.operator, keyring.RoleAdmin: &tok.admin} {
		v, err := keyring.AddToken(dir, role+"-1", role)
		if err != nil {
			t.Fatal(err)
		}
		*p = v
	}
	s.cfg.KeysDir = dir
	s.cfg.ID = "s1"
	s.logger = slog.New(slog.DiscardHandler)
	s.metrics = newMetrics(prometheus.NewRegistry())
	if s.now == nil {
		s.now = time.Now
	}
	if s.registry == nil {
		s.registry = prometheus.NewRegistry()
	}
	sec, err := s.loadSecurity()
	if err != nil {
		t.Fatal(err)
	}
	s.sec = sec
	return tok
}

// serveSecured serves s's routes as a secure server would, until the test ends.
func serveSecured(t *testing.T, s *Server) (*httptest.Server, testTokens) {
	t.Helper()
	tok := secureForTest(t, s)
	routes, err := s.routes()
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(routes)
	t.Cleanup(srv.Close)
	return srv, tok
}

func testStore(t *testing.T, prefix string) *store.Store {
	t.Helper()
	uri := os.Getenv("CLOVER_TEST_MONGO_URI")
	if uri == "" {
		uri = testenv.StartFerretDB(t).URI
	}
	st, err := store.Open(t.Context(), uri, prefix+rand.Text()[:8])
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close(context.Background()) })
	return st
}

type apiCall struct {
	method, path, body, token string
	header                    map[string]string
}

func (c apiCall) do(t *testing.T, srv *httptest.Server) (int, string) {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), c.method, srv.URL+c.path, strings.NewReader(c.body))
	if err != nil {
		t.Fatal(err)
	}
	if c.method != http.MethodGet {
		req.Header.Set("Content-Type", "application/json")
	}
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	for k, v := range c.header {
		req.Header.Set(k, v)
	}
	resp, err := srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// concretePath fills a route's path parameters.
func concretePath(p string) string {
	return strings.NewReplacer("{name}", "nightly", "{id}", "nightly@2030-01-01T00:00:00Z").Replace(p)
}

const contactBody = `{"name":"ops","email":"ops@example.com"}`

const shellJobBody = `{"name":"nightly","schedule":"0 0 1 * * ?","handler":"shell","params":{"command":"echo hi"}}`

// Every route refuses a caller without a token or with an unknown one (401), and a caller whose role is
// below the route's (403) before its handler runs; /healthz is open. Writes are admin's, or operator's for
// operating jobs and executions; a viewer only reads.
func TestEveryRouteNeedsATokenAndItsRole(t *testing.T) {
	t.Parallel()
	st := testStore(t, "t_auth_")
	s := &Server{store: st}
	srv, tok := serveSecured(t, s)

	byRole := map[string]string{keyring.RoleViewer: tok.viewer, keyring.RoleOperator: tok.operator, keyring.RoleAdmin: tok.admin}
	for _, rt := range api.Routes {
		path := concretePath(rt.Path)
		for _, token := range []string{"", "clv_not-a-token"} {
			if code, body := (apiCall{method: rt.Method, path: path, token: token}).do(t, srv); code != http.StatusUnauthorized {
				t.Errorf("%s with token %q: %d %s, want 401", rt.Pattern(), token, code, body)
			}
		}
		for _, role := range keyring.Roles {
			if keyring.RoleRank(role) >= keyring.RoleRank(rt.Role) {
				continue
			}
			if code, body := (apiCall{method: rt.Method, path: path, token: byRole[role]}).do(t, srv); code != http.StatusForbidden {
				t.Errorf("%s as %s: %d %s, want 403", rt.Pattern(), role, code, body)
			}
		}
	}
	if code, _ := (apiCall{method: "GET", path: "/metrics"}).do(t, srv); code != http.StatusUnauthorized {
		t.Errorf("/metrics without a token: %d, want 401 (api.public_metrics is off)", code)
	}
	if code, _ := (apiCall{method: "GET", path: "/healthz"}).do(t, srv); code != http.StatusOK {
		t.Errorf("/healthz: %d, want 200 without a token", code)
	}
	if code, _ := (apiCall{method: "GET", path: "/debug/pprof/"}).do(t, srv); code != http.StatusNotFound {
		t.Errorf("/debug/pprof/ on the API: %d, want 404 (profiles are on debug_listen only)", code)
	}

	// A shell job is refused to an operator (an admin creates one on a cluster with a leader:
	// TestTheAPIAcceptsOnlyTokensOfTheRightRole); a contact is created for an admin. Both are audited.
	if code, body := (apiCall{method: "POST", path: "/api/v1/jobs", body: shellJobBody, token: tok.operator}).do(t, srv); code != http.StatusForbidden {
		t.Fatalf("an operator creating a shell job: %d %s, want 403", code, body)
	}
	if code, body := (apiCall{method: "POST", path: "/api/v1/contacts", body: contactBody, token: tok.admin}).do(t, srv); code != http.StatusCreated {
		t.Fatalf("an admin creating a contact: %d %s, want 201", code, body)
	}
	entries, err := st.ListAudit(t.Context(), "", store.AuditCursor{}, 10)
	if err != nil {
		t.Fatal(err)
	}
	var sawRefusal, sawCreate bool
	for _, e := range entries {
		sawRefusal = sawRefusal || (e.Who == "operator-1" && e.Status == http.StatusForbidden && e.Action == "POST /api/v1/jobs")
		sawCreate = sawCreate || (e.Who == "admin-1" && e.Role == keyring.RoleAdmin && e.Status == http.StatusCreated && e.Action == "POST /api/v1/contacts")
	}
	if !sawRefusal || !sawCreate {
		t.Fatalf("audit log %+v: want the operator's refusal and the admin's creation", entries)
	}
}

// A web page cannot drive the API: a form or text/plain body (which a browser sends cross-site without a
// preflight) is refused before anything is stored, as are a foreign Origin and a Host the server does not
// know (DNS rebinding).
func TestBrowserDrivenRequestsAreRefused(t *testing.T) {
	t.Parallel()
	st := testStore(t, "t_browser_")
	s := &Server{store: st}
	srv, tok := serveSecured(t, s)

	for _, ct := range []string{"text/plain", "application/x-www-form-urlencoded", "multipart/form-data; boundary=x", ""} {
		req, _ := http.NewRequestWithContext(t.Context(), "POST", srv.URL+"/api/v1/jobs", strings.NewReader(shellJobBody))
		req.Header.Set("Authorization", "Bearer "+tok.admin)
		if ct != "" {
			req.Header.Set("Content-Type", ct)
		}
		resp, err := srv.Client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusUnsupportedMediaType {
			t.Errorf("POST with Content-Type %q: %d, want 415", ct, resp.StatusCode)
		}
	}
	if _, err := st.GetJob(t.Context(), "nightly"); err == nil {
		t.Fatal("a job was stored from a request that was refused")
	}
	for name, h := range map[string]map[string]string{
		"foreign origin": {"Origin": "https://evil.example"},
		"null origin":    {"Origin": "null"},
	} {
		if code, body := (apiCall{method: "POST", path: "/api/v1/jobs", body: shellJobBody, token: tok.admin, header: h}).do(t, srv); code != http.StatusForbidden {
			t.Errorf("%s: %d %s, want 403", name, code, body)
		}
	}
	req, _ := http.NewRequestWithContext(t.Context(), "GET", srv.URL+"/api/v1/jobs", nil)
	req.Host = "rebound.evil.example:7700"
	req.Header.Set("Authorization", "Bearer "+tok.admin)
	resp, err := srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusForbidden {
		t.Errorf("unknown Host: %d, want 403", resp.StatusCode)
	}
	// The console's own origin is the API's: allowed.
	if code, body := (apiCall{method: "GET", path: "/api/v1/jobs", token: tok.viewer, header: map[string]string{"Origin": srv.URL}}).do(t, srv); code != http.StatusOK {
		t.Errorf("same origin: %d %s, want 200", code, body)
	}
}

// A forwarded write is trusted only with a valid, fresh signature made with the cluster secret, and
// only once.
func TestForwardedIdentityMustBeSigned(t *testing.T) {
	t.Parallel()
	st := testStore(t, "t_forward_")
	s := &Server{store: st}
	srv, _ := serveSecured(t, s)

	at := strconv.FormatInt(time.Now().UnixMilli(), 10)
	forged := map[string]string{headerCaller: "mallory", headerRole: keyring.RoleAdmin, headerForwardedBy: "s2", headerForwardAt: at}
	if code, body := (apiCall{method: "POST", path: "/api/v1/contacts", body: contactBody, header: forged}).do(t, srv); code != http.StatusUnauthorized {
		t.Fatalf("unsigned forward: %d %s, want 401", code, body)
	}
	forged[headerSignature] = strings.Repeat("0", 64)
	if code, body := (apiCall{method: "POST", path: "/api/v1/contacts", body: contactBody, header: forged}).do(t, srv); code != http.StatusUnauthorized {
		t.Fatalf("badly signed forward: %d %s, want 401", code, body)
	}
	signed := func(body, when string) map[string]string {
		return map[string]string{headerCaller: "alice", headerRole: keyring.RoleAdmin, headerForwardedBy: "s2", headerForwardAt: when,
			headerSignature: forwardSignature(s.sec.forwardKey, "POST", "/api/v1/contacts", "alice", keyring.RoleAdmin, "s2", when, []byte(body))}
	}
	old := strconv.FormatInt(time.Now().Add(-10*time.Minute).UnixMilli(), 10)
	if code, body := (apiCall{method: "POST", path: "/api/v1/contacts", body: contactBody, header: signed(contactBody, old)}).do(t, srv); code != http.StatusUnauthorized {
		t.Fatalf("stale forward: %d %s, want 401", code, body)
	}
	// Signed for another body: the signature does not carry over.
	h := signed(`{"name":"other","email":"o@example.com"}`, at)
	if code, body := (apiCall{method: "POST", path: "/api/v1/contacts", body: contactBody, header: h}).do(t, srv); code != http.StatusUnauthorized {
		t.Fatalf("forward with another body: %d %s, want 401", code, body)
	}
	h = signed(contactBody, at)
	if code, body := (apiCall{method: "POST", path: "/api/v1/contacts", body: contactBody, header: h}).do(t, srv); code != http.StatusCreated {
		t.Fatalf("signed forward: %d %s, want 201", code, body)
	}
	if code, body := (apiCall{method: "POST", path: "/api/v1/contacts", body: contactBody, header: h}).do(t, srv); code != http.StatusUnauthorized {
		t.Fatalf("replayed forward: %d %s, want 401", code, body)
	}
	entries, err := st.ListAudit(t.Context(), "alice", store.AuditCursor{}, 10)
	if err != nil || len(entries) != 1 || entries[0].Via != "s2" {
		t.Fatalf("audit of the forwarded write: %+v, %v; want alice's, via s2", entries, err)
	}
}

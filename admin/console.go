package admin

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/clover-sched/clover/internal/keyring"
)

// Caller is who uses the console, as the API knows them.
type Caller struct {
	Name string
	Role string
}

// may reports whether c's role allows what role needs.
func (c Caller) may(role string) bool { return keyring.RoleRank(c.Role) >= keyring.RoleRank(role) }

// API is the REST API as the console uses it: served in the same process, as the caller, so that the
// console reads and writes exactly what the API allows the caller to, with the API's checks, audit and
// forwarding to the leader.
type API interface {
	Do(ctx context.Context, caller Caller, method, path string, body []byte) (status int, resp []byte, err error)
}

// Options is what a server gives its console.
type Options struct {
	API API
	// Holder is who holds the token whose sha256 (hex) is hash, as the tokens file says now; ok is false
	// for a token it does not list. Nil: the server runs insecure, and everyone is an anonymous admin.
	Holder func(hash string) (c Caller, ok bool, err error)
	// SessionKey signs session cookies; every server of a cluster must have the same one.
	SessionKey []byte
	// SecureCookies: the console is reached over HTTPS only.
	SecureCookies bool
	// Origins are browser origins (scheme://host:port) besides the console's own from which writes are
	// taken: a proxy's public address (the API's api.origins).
	Origins []string
	Logger  *slog.Logger
	Now     func() time.Time
}

// Console is the web console: an http.Handler for the paths under /ui/.
type Console struct {
	api      API
	holder   func(string) (Caller, bool, error)
	sessions sessions
	logger   *slog.Logger
	now      func() time.Time
	pages    *pages
	mux      *http.ServeMux
	streams  streamSlots // output streams open
	origins  []string
}

// New makes the console.
func New(o Options) (*Console, error) {
	if o.API == nil {
		return nil, errors.New("admin: no API")
	}
	if o.Holder != nil && len(o.SessionKey) < 32 {
		return nil, errors.New("admin: a session key of at least 32 bytes is needed when tokens are")
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	p, err := loadPages()
	if err != nil {
		return nil, err
	}
	c := &Console{
		api: o.API, holder: o.Holder, logger: o.Logger, now: o.Now, pages: p, origins: o.Origins,
		sessions: sessions{key: o.SessionKey, secure: o.SecureCookies, now: o.Now},
	}
	mux := http.NewServeMux()
	mux.Handle("GET /ui/static/", http.StripPrefix("/ui", Static()))
	mux.HandleFunc("GET /ui/login", c.loginPage)
	mux.HandleFunc("POST /ui/login", c.login)
	mux.HandleFunc("POST /ui/logout", c.logout)
	mux.HandleFunc("GET /ui/{$}", c.authed(c.dashboard))
	mux.HandleFunc("GET /ui/panels/dashboard", c.authed(c.dashboardPanels))
	mux.HandleFunc("GET /ui/jobs", c.authed(c.jobs))
	// Not under /ui/jobs/: a job may be named "new".
	mux.HandleFunc("GET /ui/new-job", c.authed(c.newJobPage))
	mux.HandleFunc("POST /ui/new-job", c.authed(c.saveJob))
	mux.HandleFunc("GET /ui/jobs/{name}", c.authed(c.jobPage))
	mux.HandleFunc("GET /ui/jobs/{name}/edit", c.authed(c.editJobPage))
	mux.HandleFunc("POST /ui/jobs/{name}/edit", c.authed(c.saveJob))
	mux.HandleFunc("POST /ui/jobs/{name}/delete", c.authed(c.deleteJob))
	mux.HandleFunc("POST /ui/jobs/{name}/{action}", c.authed(c.jobAction))
	mux.HandleFunc("GET /ui/jobs/{name}/history", c.authed(c.historyPage))
	mux.HandleFunc("POST /ui/jobs/{name}/history/{action}", c.authed(c.historyAction))
	mux.HandleFunc("GET /ui/executions", c.authed(c.executions))
	mux.HandleFunc("GET /ui/executions/{id}", c.authed(c.executionPage))
	mux.HandleFunc("GET /ui/executions/{id}/output", c.authed(c.outputPageHandler))
	mux.HandleFunc("GET /ui/executions/{id}/output/stream", c.authed(c.outputStream))
	mux.HandleFunc("POST /ui/executions/{id}/{action}", c.authed(c.executionAction))
	mux.HandleFunc("GET /ui/batches", c.authed(c.batches))
	mux.HandleFunc("GET /ui/batches/{name}", c.authed(c.batchPage))
	mux.HandleFunc("POST /ui/batches/{name}/run", c.authed(c.startRun))
	mux.HandleFunc("GET /ui/batches/{name}/runs/{cycle}", c.authed(c.batchRunPage))
	mux.HandleFunc("POST /ui/batches/{name}/runs/{cycle}/{action}", c.authed(c.batchRunAction))
	mux.HandleFunc("GET /ui/members", c.authed(c.members))
	mux.HandleFunc("GET /ui/logs", c.authed(c.logs))
	mux.HandleFunc("GET /ui/contacts", c.authed(c.contacts))
	mux.HandleFunc("POST /ui/contacts", c.authed(c.addContact))
	mux.HandleFunc("POST /ui/contacts/{name}/delete", c.authed(c.deleteContact))
	mux.HandleFunc("GET /ui/audit", c.authed(c.audit))
	mux.HandleFunc("GET /ui/zookeeper", c.authed(c.zookeeper))
	mux.HandleFunc("/ui/", func(w http.ResponseWriter, r *http.Request) { http.NotFound(w, r) })
	c.mux = mux
	return c, nil
}

// ServeHTTP serves the console, with headers that keep its pages from being framed or fed scripts.
func (c *Console) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	h := w.Header()
	h.Set("Content-Security-Policy", "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "+
		"connect-src 'self'; frame-ancestors 'none'; form-action 'self'; base-uri 'none'")
	h.Set("X-Frame-Options", "DENY")
	h.Set("Referrer-Policy", "same-origin")
	h.Set("X-Content-Type-Options", "nosniff")
	c.mux.ServeHTTP(w, r)
}

// viewer is the person a page is rendered for.
type viewer struct {
	Caller
	CSRF     string
	Insecure bool
}

type viewerKey struct{}

func viewerOf(ctx context.Context) viewer {
	v, _ := ctx.Value(viewerKey{}).(viewer)
	return v
}

// authed serves h to a logged-in person (anyone, insecure), and sends others to the login page. A write
// must carry the session's CSRF token and come from the console's own origin.
func (c *Console) authed(h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		var v viewer
		if c.holder == nil {
			v = viewer{Caller: Caller{Name: "anonymous", Role: keyring.RoleAdmin}, Insecure: true}
		} else {
			if r.Method != http.MethodGet && r.Method != http.MethodHead {
				if !formBody(w, r) {
					return
				}
			}
			se, err := c.sessions.read(r)
			if err == nil {
				var holder Caller
				var ok bool
				holder, ok, err = c.holder(se.Hash)
				switch {
				case err != nil:
					c.fail(w, r, http.StatusServiceUnavailable, fmt.Errorf("the server cannot read its tokens: %w", err))
					return
				case !ok:
					err = errors.New("the token of this session was revoked")
				default:
					v = viewer{Caller: holder, CSRF: c.sessions.csrf(se)}
				}
			}
			if err != nil {
				c.toLogin(w, r, err)
				return
			}
			if r.Method != http.MethodGet && r.Method != http.MethodHead && !c.sessions.checkCSRF(r, se) {
				c.fail(w, r, http.StatusForbidden, errors.New("the form is missing its CSRF token, or is from an older session: reload the page"))
				return
			}
		}
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			if !c.sameOrigin(r) || (v.Insecure && r.Header.Get("Origin") == "" && r.Header.Get("Referer") == "") {
				// Without sessions (insecure) nothing else tells a page of the console's from another's.
				c.fail(w, r, http.StatusForbidden, errors.New("request from a foreign origin refused"))
				return
			}
		}
		h(w, r.WithContext(context.WithValue(r.Context(), viewerKey{}, v)))
	}
}

// maxFormBody bounds what a console form may send (a job's definition is the largest).
const maxFormBody = 1 << 20

// formBody bounds a write's body before anything parses it, and refuses multipart forms (which would be
// spooled to disk): it answers 413 or 415 itself and reports false.
func formBody(w http.ResponseWriter, r *http.Request) bool {
	if strings.HasPrefix(r.Header.Get("Content-Type"), "multipart/") {
		http.Error(w, "console forms are sent url-encoded", http.StatusUnsupportedMediaType)
		return false
	}
	r.Body = http.MaxBytesReader(w, r.Body, maxFormBody)
	if err := r.ParseForm(); err != nil {
		http.Error(w, "the form could not be read: "+err.Error(), http.StatusRequestEntityTooLarge)
		return false
	}
	return true
}

// sameOrigin reports whether a write's Origin (or, without one, its Referer) is the console's host, or
// one of the origins it is told to take writes from.
func (c *Console) sameOrigin(r *http.Request) bool {
	o := r.Header.Get("Origin")
	if o == "" {
		o = r.Header.Get("Referer")
	}
	if o == "" {
		return true // not sent by a browser that follows a foreign page; the CSRF token still holds
	}
	u, err := url.Parse(o)
	if err != nil {
		return false
	}
	if strings.EqualFold(u.Host, r.Host) {
		return true
	}
	for _, allowed := range c.origins {
		if strings.EqualFold(u.Scheme+"://"+u.Host, strings.TrimSuffix(allowed, "/")) {
			return true
		}
	}
	return false
}

// toLogin sends a browser to the login page, keeping where it was going; an htmx request is told to
// reload the whole page there.
func (c *Console) toLogin(w http.ResponseWriter, r *http.Request, why error) {
	if !errors.Is(why, errNoSession) {
		c.sessions.clear(w)
	}
	next := "/ui/"
	if r.Method == http.MethodGet && strings.HasPrefix(r.URL.Path, "/ui/") && !strings.HasPrefix(r.URL.Path, "/ui/panels/") {
		next = r.URL.RequestURI()
	}
	to := "/ui/login?next=" + url.QueryEscape(next)
	if r.Header.Get("HX-Request") != "" {
		w.Header().Set("HX-Redirect", to)
		w.WriteHeader(http.StatusUnauthorized)
		return
	}
	http.Redirect(w, r, to, http.StatusSeeOther)
}

func (c *Console) loginPage(w http.ResponseWriter, r *http.Request) {
	if c.holder == nil {
		http.Redirect(w, r, "/ui/", http.StatusSeeOther)
		return
	}
	c.render(w, r, http.StatusOK, "login", loginData{Next: safeNext(r.URL.Query().Get("next"))})
}

type loginData struct {
	Next  string
	Error string
}

// login checks a token typed in the login form and starts a session for its holder.
func (c *Console) login(w http.ResponseWriter, r *http.Request) {
	if c.holder == nil {
		http.Redirect(w, r, "/ui/", http.StatusSeeOther)
		return
	}
	if !c.sameOrigin(r) {
		c.fail(w, r, http.StatusForbidden, errors.New("request from a foreign origin refused"))
		return
	}
	r.Body = http.MaxBytesReader(w, r.Body, 8<<10)
	token := strings.TrimSpace(r.PostFormValue("token"))
	next := safeNext(r.PostFormValue("next"))
	if token == "" {
		c.render(w, r, http.StatusUnauthorized, "login", loginData{Next: next, Error: "Paste your API token (clover keys token makes one)."})
		return
	}
	sum := sha256.Sum256([]byte(token))
	hash := hex.EncodeToString(sum[:])
	holder, ok, err := c.holder(hash)
	if err != nil {
		c.fail(w, r, http.StatusServiceUnavailable, fmt.Errorf("the server cannot read its tokens: %w", err))
		return
	}
	if !ok {
		c.logger.Info("console login refused: unknown token", "remote", r.RemoteAddr)
		c.render(w, r, http.StatusUnauthorized, "login", loginData{Next: next, Error: "Unknown or revoked token."})
		return
	}
	if _, err := c.sessions.issue(w, holder.Name, holder.Role, hash); err != nil {
		c.fail(w, r, http.StatusInternalServerError, err)
		return
	}
	c.logger.Info("console login", "caller", holder.Name, "role", holder.Role, "remote", r.RemoteAddr)
	http.Redirect(w, r, next, http.StatusSeeOther)
}

// safeNext keeps a post-login destination inside the console.
func safeNext(next string) string {
	if !strings.HasPrefix(next, "/ui/") || strings.HasPrefix(next, "//") || strings.Contains(next, "..") || strings.ContainsAny(next, "\\\r\n\t") {
		return "/ui/"
	}
	return next
}

func (c *Console) logout(w http.ResponseWriter, r *http.Request) {
	// No CSRF token (the page that asks may be an old one), but not from a foreign page: it would log
	// people out at will.
	if !c.sameOrigin(r) {
		c.fail(w, r, http.StatusForbidden, errors.New("request from a foreign origin refused"))
		return
	}
	c.sessions.clear(w)
	http.Redirect(w, r, "/ui/login", http.StatusSeeOther)
}

// apiError is an error the API answered, with its status.
type apiError struct {
	status int
	msg    string
}

func (e *apiError) Error() string { return e.msg }

// get reads path from the API as the viewer, decoding the answer into out.
func (c *Console) get(r *http.Request, path string, out any) error {
	return c.call(r, http.MethodGet, path, nil, out)
}

// call makes one API request as the viewer.
func (c *Console) call(r *http.Request, method, path string, body any, out any) error {
	var b []byte
	if body != nil {
		var err error
		if b, err = json.Marshal(body); err != nil {
			return fmt.Errorf("admin: encode %s %s: %w", method, path, err)
		}
	}
	ctx, cancel := context.WithTimeout(r.Context(), 10*time.Second)
	defer cancel()
	status, resp, err := c.api.Do(ctx, viewerOf(r.Context()).Caller, method, path, b)
	if err != nil {
		return fmt.Errorf("%s %s: %w", method, path, err)
	}
	if status >= 300 {
		var e struct {
			Error string `json:"error"`
		}
		msg := strings.TrimSpace(string(resp))
		if json.Unmarshal(resp, &e) == nil && e.Error != "" {
			msg = e.Error
		}
		return &apiError{status: status, msg: msg}
	}
	if out == nil || len(resp) == 0 {
		return nil
	}
	if err := json.Unmarshal(resp, out); err != nil {
		return fmt.Errorf("admin: decode %s %s: %w", method, path, err)
	}
	return nil
}

// fail renders an error page (or, for htmx, a fragment) with status.
func (c *Console) fail(w http.ResponseWriter, r *http.Request, status int, err error) {
	var ae *apiError
	if errors.As(err, &ae) {
		status = ae.status
	}
	if status >= 500 {
		c.logger.Warn("console request failed", "path", r.URL.Path, "err", err)
	}
	c.render(w, r, status, "error", errorData{Status: status, Message: err.Error()})
}

type errorData struct {
	Status  int
	Message string
}

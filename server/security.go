package server

import (
	"cmp"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"time"

	"github.com/clover-sched/clover/internal/keyring"
	"github.com/clover-sched/clover/internal/registry"
	"github.com/clover-sched/clover/internal/transport"
	"github.com/clover-sched/clover/internal/zkacl"
	"github.com/clover-sched/clover/internal/zksession"
)

// security is what a server holds to authenticate its peers and its callers. Every field is zero in
// insecure mode.
type security struct {
	curve      *transport.Curve
	zk         []zksession.Option
	tokens     *tokenSet
	forwardKey []byte       // signs the callers' identities on writes forwarded to the leader
	forwardTLS *tls.Config  // how a follower reaches the leader's API when it serves HTTPS
	replays    *replayGuard // signatures of forwarded requests seen lately
	// admits says whether a client id is in the allowlist; nil admits every id (insecure mode).
	admits  func(id string) bool
	cluster []byte // the cluster secret: derives each client's registration key
	runKey  []byte // keys run tokens (keyring.RunToken); nil in insecure mode
}

// runToken makes run tokens; nil in insecure mode.
func (sec *security) runToken() func(execID string, run int, client string) string {
	if sec.runKey == nil {
		return nil
	}
	return func(execID string, run int, client string) string {
		return keyring.RunToken(sec.runKey, execID, run, client)
	}
}

// memberKey derives clients' registration keys; nil in insecure mode.
func (sec *security) memberKey() func(id string) []byte {
	if sec.cluster == nil {
		return nil
	}
	return func(id string) []byte {
		if sec.admits != nil && !sec.admits(id) {
			return nil // a revoked client's key signs nothing
		}
		return keyring.MemberKey(sec.cluster, id)
	}
}

// checkRunToken checks run tokens; nil in insecure mode.
func (sec *security) checkRunToken() func(execID string, run int, client, token string) bool {
	if sec.runKey == nil {
		return nil
	}
	return func(execID string, run int, client, token string) bool {
		return keyring.CheckRunToken(sec.runKey, execID, run, client, token)
	}
}

func (s *security) insecure() bool { return s.curve == nil }

// loadSecurity reads the key directory. In insecure mode it logs an error: that must never be the
// unnoticed state of a production cluster.
func (s *Server) loadSecurity() (*security, error) {
	sec, err := s.loadKeys()
	if err != nil {
		return nil, err
	}
	if t := s.cfg.API.TLS; t.Enabled() {
		if sec.forwardTLS, err = forwardTLS(t); err != nil {
			return nil, err
		}
	}
	return sec, nil
}

func (s *Server) loadKeys() (*security, error) {
	if s.cfg.Insecure {
		s.logger.Error("INSECURE: running without authentication; anyone who can reach this server can change jobs, forge results and rewire the cluster (insecure: true)")
		return &security{replays: newReplayGuard()}, nil
	}
	keys, err := keyring.LoadServer(s.cfg.KeysDir)
	if err != nil {
		return nil, err
	}
	identify := func(pub string) (string, bool) {
		if pub == keys.Key.Public {
			return transport.ServersIdentity, true
		}
		return keys.Clients.Identify(pub)
	}
	sec := &security{
		curve: &transport.Curve{Public: keys.Key.Public, Secret: keys.Key.Secret, ServerPublic: keys.Key.Public,
			Identify: identify, PeerKey: keys.Clients.PublicKey},
		zk:         []zksession.Option{zksession.WithAccess(zkacl.Servers(s.cfg.ZooKeeper.Root, keys.Cluster))},
		tokens:     newTokenSet(filepath.Join(s.cfg.KeysDir, keyring.TokensFile)),
		forwardKey: []byte(keyring.Derive(keys.Cluster, keyring.PurposeForward)),
		replays:    newReplayGuard(),
		admits:     keys.Clients.Admits,
		cluster:    keys.Cluster,
		runKey:     []byte(keyring.Derive(keys.Cluster, keyring.PurposeRunToken)),
	}
	if _, err := sec.tokens.lookup(""); err != nil {
		return nil, err // a tokens file that does not parse stops the start, not the first request
	}
	return sec, nil
}

// forwardTLS is a follower's TLS client towards the leader: it trusts the CA that signed the servers'
// certificates (ca_file, else client_ca_file, else the system's), and presents its own certificate when
// callers must.
func forwardTLS(t TLS) (*tls.Config, error) {
	cfg := &tls.Config{MinVersion: tls.VersionTLS12}
	if ca := cmp.Or(t.CAFile, t.ClientCAFile); ca != "" {
		pool, err := certPool(ca)
		if err != nil {
			return nil, err
		}
		cfg.RootCAs = pool
	}
	if t.ClientCAFile != "" {
		cert, err := tls.LoadX509KeyPair(t.CertFile, t.KeyFile)
		if err != nil {
			return nil, fmt.Errorf("api.tls: %w", err)
		}
		cfg.Certificates = []tls.Certificate{cert}
	}
	return cfg, nil
}

func certPool(file string) (*x509.CertPool, error) {
	pem, err := os.ReadFile(file)
	if err != nil {
		return nil, fmt.Errorf("api.tls: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("api.tls: %s: no PEM certificate in it", file)
	}
	return pool, nil
}

// serverTLS is the API's TLS server configuration.
func serverTLS(t TLS) (*tls.Config, error) {
	cert, err := tls.LoadX509KeyPair(t.CertFile, t.KeyFile)
	if err != nil {
		return nil, fmt.Errorf("api.tls: %w", err)
	}
	cfg := &tls.Config{MinVersion: tls.VersionTLS12, Certificates: []tls.Certificate{cert}}
	if t.ClientCAFile != "" {
		pool, err := certPool(t.ClientCAFile)
		if err != nil {
			return nil, err
		}
		cfg.ClientCAs, cfg.ClientAuth = pool, tls.RequireAndVerifyClientCert
	}
	return cfg, nil
}

// tokenSet is the tokens file, read again when it changes (checked at most once a second), so that a
// token is added or revoked without a restart.
type tokenSet struct {
	path string

	mu      sync.Mutex
	byHash  map[string]keyring.Token
	modTime time.Time
	size    int64
	mode    os.FileMode
	checked time.Time
	err     error
}

func newTokenSet(path string) *tokenSet { return &tokenSet{path: path} }

// lookup returns the token whose hash is hash. A tokens file that cannot be read, or that others may
// read, or that does not parse, refuses every token until it is mended: deleting it, or a line of it,
// must revoke.
func (t *tokenSet) lookup(hash string) (keyring.Token, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if time.Since(t.checked) >= time.Second || t.byHash == nil {
		t.checked = time.Now()
		t.reload()
	}
	if t.byHash == nil {
		return keyring.Token{}, t.err
	}
	tok, ok := t.byHash[hash]
	if !ok {
		return keyring.Token{}, nil
	}
	return tok, nil
}

func (t *tokenSet) reload() {
	st, err := os.Stat(t.path)
	if err != nil {
		t.byHash, t.err = nil, fmt.Errorf("api tokens: %w", err)
		return
	}
	if t.byHash != nil && st.ModTime().Equal(t.modTime) && st.Size() == t.size && st.Mode() == t.mode {
		return
	}
	tokens, err := keyring.ReadTokens(t.path)
	if err != nil {
		t.byHash, t.err = nil, err
		return
	}
	t.mode = st.Mode()
	byHash := make(map[string]keyring.Token, len(tokens))
	for _, tok := range tokens {
		byHash[tok.Hash] = tok
	}
	t.byHash, t.modTime, t.size, t.err = byHash, st.ModTime(), st.Size(), nil
}

// apiScheme is the scheme of the servers' API: https when it serves TLS.
func (sec *security) apiScheme() string {
	if sec.forwardTLS != nil {
		return "https"
	}
	return "http"
}

func (sec *security) forwardTransport() http.RoundTripper {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.TLSClientConfig = sec.forwardTLS
	return tr
}

// admittedClients are the registered clients whose id is in the allowlist. Another registration (a
// node made with the clients' shared ZooKeeper password by a host whose key is not admitted, or under the
// id of a client that is away) is not a member: its declarations are not applied and nothing is routed
// to it.
func (s *Server) admittedClients() []registry.Member {
	members := s.clients.Members()
	if s.sec == nil || s.sec.admits == nil {
		return members
	}
	ignored := map[string]string{} // id -> why
	defer func() { s.noteIgnored(ignored) }()
	return slices.DeleteFunc(members, func(m registry.Member) bool {
		switch {
		case !s.sec.admits(m.ID):
			ignored[m.ID] = "registered client is not in the allowlist (keys_dir/clients/ID.pub): ignored"
		case !s.sec.signedMember(m):
			ignored[m.ID] = "registered client's node is not signed with its key (written by another host?): ignored"
		default:
			return false
		}
		return true
	})
}

// noteIgnored logs the clients newly ignored (once each, not at every look) and tells watchPeers to look
// again soon while some are.
func (s *Server) noteIgnored(ignored map[string]string) {
	s.ignoredMu.Lock()
	defer s.ignoredMu.Unlock()
	for id, why := range ignored {
		if s.ignored[id] != why {
			s.logger.Warn(why, "client", id)
		}
	}
	s.ignored = ignored
	s.ignoring.Store(len(ignored) > 0)
}

// signedMember reports whether m carries the signature of its id's registration key. Checked whenever
// the registry changes (not per firing), so it is not cached: a cache keyed by the signature would let a
// copied signature vouch for other data.
func (sec *security) signedMember(m registry.Member) bool {
	return m.SignedBy(keyring.MemberKey(sec.cluster, m.ID))
}

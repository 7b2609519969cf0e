package registry

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"net"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Kinds of member.
const (
	KindServers = "servers"
	KindClients = "clients"
)

// Member is what a server or client tells the others about itself.
type Member struct {
	ID       string            `json:"id"`
	Kind     string            `json:"kind"`
	Endpoint string            `json:"endpoint"` // ZeroMQ endpoint, tcp://host:port
	APIAddr  string            `json:"api_addr,omitempty"`
	Capacity int               `json:"capacity,omitempty"` // slots: executions it runs at once
	Width    int               `json:"width,omitempty"`    // resource width shared by its runs; 0: unbounded
	Labels   map[string]string `json:"labels,omitempty"`
	Jobs     []string          `json:"jobs,omitempty"`     // job names it serves
	Handlers []string          `json:"handlers,omitempty"` // generic handlers, e.g. "shell"
	Declared json.RawMessage   `json:"declared,omitempty"` // job specs declared by a client, opaque here
	// DeclaredBatches are batch definitions declared by a client (of its own jobs), opaque here.
	DeclaredBatches json.RawMessage `json:"declared_batches,omitempty"`

	StartedAt time.Time `json:"started_at"`
	Version   string    `json:"version,omitempty"`
	// Sig is an HMAC of the rest under a key the servers derive for this client id (see Signed): a node
	// written under the clients' shared ZooKeeper password by another host, or under the id of a client
	// that is away, does not carry it.
	Sig string `json:"sig,omitempty"`
}

// Signed is m with Sig set for key.
func (m Member) Signed(key []byte) Member {
	m.Sig = m.signature(key)
	return m
}

// SignedBy reports whether m carries a valid signature for key.
func (m Member) SignedBy(key []byte) bool {
	return m.Sig != "" && hmac.Equal([]byte(m.Sig), []byte(m.signature(key)))
}

func (m Member) signature(key []byte) string {
	m.Sig = ""
	b, err := json.Marshal(m)
	if err != nil {
		return ""
	}
	h := hmac.New(sha256.New, key)
	h.Write(b)
	return hex.EncodeToString(h.Sum(nil))
}

// namePattern keeps ids and kinds safe as znode names and in logs and URLs.
var namePattern = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._:@-]{0,127}$`)

func validName(what, s string) error {
	if !namePattern.MatchString(s) {
		return fmt.Errorf("%s %q: must be 1-128 characters of letters, digits, '.', '_', ':', '@' or '-', starting with a letter or digit", what, s)
	}
	return nil
}

// Validate checks that m can be registered: its ID is safe as a node name and its Endpoint is a ZeroMQ TCP
// endpoint that others can connect to.
func (m Member) Validate() error {
	if err := validName("id", m.ID); err != nil {
		return fmt.Errorf("registry: member: %w", err)
	}
	if m.Kind != "" {
		if err := validName("kind", m.Kind); err != nil {
			return fmt.Errorf("registry: member %s: %w", m.ID, err)
		}
	}
	if err := validEndpoint(m.Endpoint); err != nil {
		return fmt.Errorf("registry: member %s: endpoint %q: %w", m.ID, m.Endpoint, err)
	}
	if m.APIAddr != "" {
		if err := ValidAPIAddr(m.APIAddr); err != nil {
			return fmt.Errorf("registry: member %s: api_addr %q: %w", m.ID, m.APIAddr, err)
		}
	}
	if m.Capacity < 0 {
		return fmt.Errorf("registry: member %s: capacity %d is negative", m.ID, m.Capacity)
	}
	if m.Width < 0 {
		return fmt.Errorf("registry: member %s: width %d is negative", m.ID, m.Width)
	}
	return nil
}

func validEndpoint(ep string) error {
	rest, ok := strings.CutPrefix(ep, "tcp://")
	if !ok {
		return errors.New("must be tcp://host:port")
	}
	host, port, err := net.SplitHostPort(rest)
	if err != nil {
		return err
	}
	if host == "" || host == "*" {
		return errors.New("needs a host others can connect to")
	}
	if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
		return fmt.Errorf("port %q is not 1-65535", port)
	}
	return nil
}

// ValidAPIAddr checks an API address read from ZooKeeper before a server forwards to it: host:port and
// nothing else (no scheme, path or user), with a host others can connect to.
func ValidAPIAddr(addr string) error {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return err
	}
	if host == "" || strings.ContainsAny(host, "/@?#* ") {
		return errors.New("needs a plain host others can connect to")
	}
	if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
		return fmt.Errorf("port %q is not 1-65535", port)
	}
	return nil
}

// clone copies m so that a caller cannot change what the cache holds.
func (m Member) clone() Member {
	m.Labels = maps.Clone(m.Labels)
	m.Jobs = slices.Clone(m.Jobs)
	m.Handlers = slices.Clone(m.Handlers)
	m.Declared = slices.Clone(m.Declared)
	m.DeclaredBatches = slices.Clone(m.DeclaredBatches)
	return m
}

// decode reads the data of node kind/id; what is not a valid Member of that node is an error.
func decode(kind, id string, data []byte) (Member, error) {
	var m Member
	if err := json.Unmarshal(data, &m); err != nil {
		return Member{}, fmt.Errorf("registry: decode: %w", err)
	}
	if m.Kind == "" {
		m.Kind = kind
	}
	if m.ID != id || m.Kind != kind {
		return Member{}, fmt.Errorf("registry: data says %s/%s, node is %s/%s", m.Kind, m.ID, kind, id)
	}
	if err := m.Validate(); err != nil {
		return Member{}, err
	}
	return m, nil
}

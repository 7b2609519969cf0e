package keyring

import (
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"
)

// rescanEvery bounds how often an unknown key makes the allowlist read its directory again.
const rescanEvery = time.Second

// readmitEvery is how long an admitted id is trusted without reading the directory again.
const readmitEvery = 10 * time.Second

// Allowlist maps the public keys in a directory of <id>.pub files to client ids. A file added later is
// seen on the next handshake; a file removed refuses that client's next handshakes (its open connections
// stay until they drop: restart the servers to cut them at once).
type Allowlist struct {
	dir string

	mu      sync.Mutex
	byKey   map[string]string
	ids     map[string]bool
	scanned time.Time
}

// NewAllowlist reads dir lazily, on the first lookup.
func NewAllowlist(dir string) *Allowlist { return &Allowlist{dir: dir} }

// Identify returns the client id whose public key is pub.
func (a *Allowlist) Identify(pub string) (string, bool) {
	a.mu.Lock()
	defer a.mu.Unlock()
	// Lookups come with connection handshakes, which are rare: reading the directory again keeps a
	// removed key from opening new connections.
	if a.byKey == nil || time.Since(a.scanned) >= rescanEvery {
		a.scan()
	}
	id, ok := a.byKey[pub]
	return id, ok
}

// Admits reports whether client id has a public key in the allowlist.
func (a *Allowlist) Admits(id string) bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	// Asked when the registry changes and every few seconds, not per connection: read again on a miss,
	// so that a client whose key was just added is admitted, and now and then on a hit, so that a removed
	// key stops admitting its client.
	if !a.ids[id] || time.Since(a.scanned) >= readmitEvery {
		a.scan()
	}
	return a.ids[id]
}

// PublicKey returns client id's public key.
func (a *Allowlist) PublicKey(id string) (string, bool) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if !a.ids[id] && (a.ids == nil || time.Since(a.scanned) >= rescanEvery) {
		a.scan()
	}
	for pub, who := range a.byKey {
		if who == id {
			return pub, true
		}
	}
	return "", false
}

func (a *Allowlist) scan() {
	a.scanned = time.Now()
	byKey := map[string]string{}
	entries, err := os.ReadDir(a.dir)
	if err != nil {
		a.byKey, a.ids = byKey, map[string]bool{}
		return
	}
	for _, e := range entries {
		id, ok := strings.CutSuffix(e.Name(), ".pub")
		if !ok || e.IsDir() || ValidID(id) != nil {
			continue
		}
		pub, err := readPublic(filepath.Join(a.dir, e.Name()))
		if err != nil {
			continue
		}
		if _, dup := byKey[pub]; dup {
			byKey[pub] = "" // one key, two ids: neither is trusted
			continue
		}
		byKey[pub] = id
	}
	ids := map[string]bool{}
	for k, id := range byKey {
		if id == "" {
			delete(byKey, k)
			continue
		}
		ids[id] = true
	}
	a.byKey, a.ids = byKey, ids
}

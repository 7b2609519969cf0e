package admin

import (
	"bytes"
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"fmt"
	"io/fs"
	"net/http"
	"path"
	"strings"
	"sync"
	"time"
)

// The browser libraries are committed files (scripts/vendor-ui.sh writes them), embedded so that a server
// binary is the whole console: no Node build, no CDN, nothing fetched when a page loads.
//
//go:embed static
var staticFS embed.FS

// contentTypes is every kind of file served, by extension. A fixed table, not mime.TypeByExtension, whose
// answer depends on the host's /etc/mime.types: a script served as anything else is refused by browsers
// under nosniff. Files without an extension are the licenses and VERSIONS.
var contentTypes = map[string]string{
	".js":    "text/javascript; charset=utf-8",
	".css":   "text/css; charset=utf-8",
	".svg":   "image/svg+xml",
	".png":   "image/png",
	".woff2": "font/woff2",
	"":       "text/plain; charset=utf-8",
}

// A file under a directory named for its version (vendor/htmx.org-2.0.11/) never changes at that path: a new
// version is a new path, which the pages name. So browsers may keep it for a year without asking again.
// Anything else is revalidated each time against its ETag.
const (
	cacheImmutable  = "public, max-age=31536000, immutable"
	cacheRevalidate = "no-cache"
	versionedPrefix = "static/vendor/"
)

type asset struct {
	body        []byte
	contentType string
	etag        string
	cache       string
}

// assets is read once: the embedded tree cannot change while the process runs.
var assets = sync.OnceValues(func() (map[string]asset, error) {
	m := map[string]asset{}
	err := fs.WalkDir(staticFS, "static", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		body, err := staticFS.ReadFile(p)
		if err != nil {
			return err
		}
		ct, ok := contentTypes[path.Ext(p)]
		if !ok {
			ct = "application/octet-stream"
		}
		sum := sha256.Sum256(body)
		a := asset{body: body, contentType: ct, etag: `"` + hex.EncodeToString(sum[:16]) + `"`, cache: cacheRevalidate}
		if versioned(p) {
			a.cache = cacheImmutable
		}
		m["/"+p] = a
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("admin: read embedded static files: %w", err)
	}
	return m, nil
})

// versioned reports whether p lies in a vendor directory named for a version (NAME-1.2.3/).
func versioned(p string) bool {
	rest, ok := strings.CutPrefix(p, versionedPrefix)
	if !ok {
		return false
	}
	dir, _, ok := strings.Cut(rest, "/")
	if !ok {
		return false
	}
	for i := 1; i < len(dir); i++ {
		if dir[i] == '-' && startsWithDigit(dir[i+1:]) {
			return true
		}
	}
	return false
}

func startsWithDigit(s string) bool { return s != "" && s[0] >= '0' && s[0] <= '9' }

// vendorFile is the URL path of file in the vendored package pkg ("htmx.org", "htmx.min.js"), whichever
// version is embedded, so that pages name the versioned path and re-vendoring changes no template.
func vendorFile(pkg, file string) (string, error) {
	dirs, err := fs.ReadDir(staticFS, strings.TrimSuffix(versionedPrefix, "/"))
	if err != nil {
		return "", fmt.Errorf("admin: list vendored packages: %w", err)
	}
	for _, d := range dirs {
		// The version starts with a digit: "htmx" is not "htmx-ext-sse-2.2.4".
		p := versionedPrefix + d.Name() + "/" + file
		if v, ok := strings.CutPrefix(d.Name(), pkg+"-"); ok && d.IsDir() && startsWithDigit(v) {
			if _, err := fs.Stat(staticFS, p); err != nil {
				return "", fmt.Errorf("admin: vendored %s has no %s: %w", d.Name(), file, err)
			}
			return "/" + p, nil
		}
	}
	return "", fmt.Errorf("admin: %s is not vendored (scripts/vendor-ui.sh)", pkg)
}

// Static serves the embedded files at the paths they have in the source tree below admin/, such as
// /static/vendor/htmx.org-2.0.11/htmx.min.js: mount it where those paths arrive unprefixed. Only files are
// served, by exact path: a directory, an unknown or a non-canonical path is 404, so nothing is listed. The
// files are public libraries, so it asks for no token; pages that use them are where the console checks one.
func Static() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		files, err := assets()
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			w.Header().Set("Allow", "GET, HEAD")
			http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
			return
		}
		a, ok := files[r.URL.Path]
		if !ok {
			http.NotFound(w, r)
			return
		}
		h := w.Header()
		h.Set("Content-Type", a.contentType)
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("Cache-Control", a.cache)
		h.Set("ETag", a.etag)
		// ServeContent answers If-None-Match, Range and HEAD; the zero time leaves Last-Modified out, as
		// embedded files have no modification time.
		http.ServeContent(w, r, r.URL.Path, time.Time{}, bytes.NewReader(a.body))
	})
}

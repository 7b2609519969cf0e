package admin

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"io"
	"net/http"
	"net/http/httptest"
	"path"
	"strings"
	"testing"
)

// vendored is what VERSIONS lists: file path under static/vendor/ and its sha256.
func vendored(t *testing.T) map[string]string {
	t.Helper()
	b, err := staticFS.ReadFile("static/vendor/VERSIONS")
	if err != nil {
		t.Fatalf("read VERSIONS: %v", err)
	}
	files := map[string]string{}
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		line := sc.Text()
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		f := strings.Fields(line)
		if len(f) != 5 || !strings.HasPrefix(f[2], "sha512-") {
			t.Fatalf("VERSIONS: bad line %q", line)
		}
		files[f[3]] = f[4]
	}
	if len(files) == 0 {
		t.Fatal("VERSIONS lists no file")
	}
	return files
}

func get(t *testing.T, h http.Handler, method, target string, hdr ...string) *http.Response {
	t.Helper()
	req := httptest.NewRequest(method, target, nil)
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	return rec.Result()
}

func TestStaticServesEveryVendoredFile(t *testing.T) {
	want := map[string]string{
		".js":  "text/javascript; charset=utf-8",
		".css": "text/css; charset=utf-8",
		"":     "text/plain; charset=utf-8", // LICENSE
	}
	h := Static()
	for file, sum := range vendored(t) {
		resp := get(t, h, http.MethodGet, "/static/vendor/"+file)
		body, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != http.StatusOK {
			t.Errorf("%s: status %d, want 200", file, resp.StatusCode)
			continue
		}
		if ct := resp.Header.Get("Content-Type"); ct != want[path.Ext(file)] {
			t.Errorf("%s: Content-Type %q, want %q", file, ct, want[path.Ext(file)])
		}
		if got := sha256.Sum256(body); hex.EncodeToString(got[:]) != sum {
			t.Errorf("%s: served body does not match the sha256 in VERSIONS", file)
		}
		if cc := resp.Header.Get("Cache-Control"); cc != cacheImmutable {
			t.Errorf("%s: Cache-Control %q, want %q (its path names its version)", file, cc, cacheImmutable)
		}
		if resp.Header.Get("X-Content-Type-Options") != "nosniff" {
			t.Errorf("%s: no nosniff", file)
		}

		// A browser that kept the file asks again only with its ETag, and gets no body.
		again := get(t, h, http.MethodGet, "/static/vendor/"+file, "If-None-Match", resp.Header.Get("ETag"))
		if again.StatusCode != http.StatusNotModified {
			t.Errorf("%s: If-None-Match with its ETag: status %d, want 304", file, again.StatusCode)
		}
	}
}

func TestStaticVersionsFileIsRevalidated(t *testing.T) {
	resp := get(t, Static(), http.MethodGet, "/static/vendor/VERSIONS")
	if resp.StatusCode != http.StatusOK || resp.Header.Get("Cache-Control") != cacheRevalidate {
		t.Errorf("VERSIONS: status %d, Cache-Control %q; want 200, %q",
			resp.StatusCode, resp.Header.Get("Cache-Control"), cacheRevalidate)
	}
}

func TestStaticRefuses(t *testing.T) {
	htmx, err := vendorFile("htmx.org", "htmx.min.js")
	if err != nil {
		t.Fatal(err)
	}
	tests := map[string]struct {
		method, target string
		status         int
	}{
		"static root":           {http.MethodGet, "/static/", http.StatusNotFound},
		"static without slash":  {http.MethodGet, "/static", http.StatusNotFound},
		"vendor directory":      {http.MethodGet, "/static/vendor/", http.StatusNotFound},
		"package directory":     {http.MethodGet, path.Dir(htmx) + "/", http.StatusNotFound},
		"package dir, no slash": {http.MethodGet, path.Dir(htmx), http.StatusNotFound},
		"unknown file":          {http.MethodGet, "/static/vendor/nope.js", http.StatusNotFound},
		"unversioned name":      {http.MethodGet, "/static/vendor/htmx.org/htmx.min.js", http.StatusNotFound},
		"doubled slash":         {http.MethodGet, strings.Replace(htmx, "/vendor/", "/vendor//", 1), http.StatusNotFound},
		"dot segment":           {http.MethodGet, "/static/vendor/./VERSIONS", http.StatusNotFound},
		"source file":           {http.MethodGet, "/assets.go", http.StatusNotFound},
		"escape":                {http.MethodGet, "/static/../assets.go", http.StatusNotFound},
		"root":                  {http.MethodGet, "/", http.StatusNotFound},
		"post":                  {http.MethodPost, htmx, http.StatusMethodNotAllowed},
	}
	h := Static()
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			if resp := get(t, h, tc.method, tc.target); resp.StatusCode != tc.status {
				t.Errorf("%s %s: status %d, want %d", tc.method, tc.target, resp.StatusCode, tc.status)
			}
		})
	}
}

func TestStaticHead(t *testing.T) {
	htmx, err := vendorFile("htmx.org", "htmx.min.js")
	if err != nil {
		t.Fatal(err)
	}
	resp := get(t, Static(), http.MethodHead, htmx)
	if resp.StatusCode != http.StatusOK || resp.Header.Get("Content-Type") != contentTypes[".js"] {
		t.Errorf("HEAD %s: status %d, Content-Type %q", htmx, resp.StatusCode, resp.Header.Get("Content-Type"))
	}
}

func TestVendorFile(t *testing.T) {
	tests := map[string]struct {
		pkg, file string
		prefix    string // of the path, "" when an error is expected
	}{
		"htmx":             {"htmx.org", "htmx.min.js", "/static/vendor/htmx.org-2."},
		"sse extension":    {"htmx-ext-sse", "sse.min.js", "/static/vendor/htmx-ext-sse-2."},
		"uplot":            {"uplot", "uPlot.iife.min.js", "/static/vendor/uplot-1.6."},
		"uplot css":        {"uplot", "uPlot.min.css", "/static/vendor/uplot-1.6."},
		"prefix of a name": {"htmx", "sse.min.js", ""},
		"missing file":     {"htmx.org", "htmx.js", ""},
		"missing package":  {"alpinejs", "alpine.min.js", ""},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			got, err := vendorFile(tc.pkg, tc.file)
			switch {
			case tc.prefix == "" && err == nil:
				t.Errorf("vendorFile(%q, %q) = %q, want an error", tc.pkg, tc.file, got)
			case tc.prefix != "" && (err != nil || !strings.HasPrefix(got, tc.prefix)):
				t.Errorf("vendorFile(%q, %q) = %q, %v; want %s...", tc.pkg, tc.file, got, err, tc.prefix)
			}
		})
	}
}

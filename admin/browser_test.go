package admin

import (
	"fmt"
	"html/template"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/clover-sched/clover/internal/browsertest"
)

// smokePage loads htmx and its SSE extension from Static, as the console's pages will.
var smokePage = template.Must(template.New("smoke").Parse(`<!doctype html>
<html><head><meta charset="utf-8"><title>clover smoke</title>
<script src="{{.HTMX}}"></script>
<script src="{{.SSE}}"></script>
</head><body>
<button id="load" hx-get="/fragment" hx-target="#slot">Load</button>
<div id="slot">not loaded</div>
<ul id="ticks" hx-ext="sse" sse-connect="/events" sse-swap="tick" hx-swap="beforeend"></ul>
</body></html>`))

// smokeServer serves the page, the fragment the button fetches and an event stream of two ticks.
func smokeServer(t *testing.T) *httptest.Server {
	t.Helper()
	var page struct{ HTMX, SSE string }
	var err error
	if page.HTMX, err = vendorFile("htmx.org", "htmx.min.js"); err != nil {
		t.Fatal(err)
	}
	if page.SSE, err = vendorFile("htmx-ext-sse", "sse.min.js"); err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.Handle("GET /static/", Static())
	mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		if err := smokePage.Execute(w, page); err != nil {
			t.Errorf("render smoke page: %v", err)
		}
	})
	mux.HandleFunc("GET /fragment", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		fmt.Fprint(w, `<p id="fragment">swapped in by htmx</p>`)
	})
	// The stream stays open after its two events: EventSource reconnects to a stream that ends, which
	// would deliver them again. It ends when the browser goes.
	mux.HandleFunc("GET /events", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		w.Header().Set("Cache-Control", "no-store")
		rc := http.NewResponseController(w)
		for i := 1; i <= 2; i++ {
			fmt.Fprintf(w, "event: tick\ndata: <li>tick %d</li>\n\n", i)
			if err := rc.Flush(); err != nil {
				t.Errorf("flush event %d: %v", i, err)
				return
			}
		}
		<-r.Context().Done()
	})
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close) // registered before the browser's cleanup, so it runs after it: no stream is left open
	return srv
}

func TestBrowserSmoke(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a browser")
	}
	start := time.Now()
	srv := smokeServer(t)
	ctx := browsertest.Browser(t)
	const wait = 10 * time.Second

	if err := chromedp.Do(ctx, chromedp.Navigate(srv.URL+"/")); err != nil {
		t.Fatalf("open the smoke page: %v", err)
	}
	// htmx ran from the embedded copy: without it the button below would do nothing and the test would
	// only say so after its wait.
	version, err := chromedp.Run(ctx, chromedp.Poll[string](
		`typeof htmx === "object" && typeof htmx.version === "string" && htmx.version`,
		chromedp.WithPollingTimeout(wait)))
	if err != nil {
		t.Fatalf("htmx did not load from %s: %v", srv.URL, err)
	}
	if !strings.HasPrefix(version, "2.") {
		t.Fatalf("htmx.version = %q, want 2.x", version)
	}

	if err := chromedp.Do(ctx, chromedp.Click(chromedp.ID("load"))); err != nil {
		t.Fatalf("click the load button: %v", err)
	}
	swapped, err := chromedp.Run(ctx, chromedp.Poll[string](
		`document.querySelector("#slot > #fragment")?.textContent`,
		chromedp.WithPollingTimeout(wait), chromedp.WithPollingMutation()))
	if err != nil {
		t.Fatalf("the fragment was not swapped into #slot within %s: %v", wait, err)
	}
	if swapped != "swapped in by htmx" {
		t.Errorf("#slot holds %q, want the fragment's text", swapped)
	}

	ticks, err := chromedp.Run(ctx, chromedp.Poll[[]string](
		`(() => { const li = [...document.querySelectorAll("#ticks > li")].map(e => e.textContent);
		          return li.length >= 2 && li })()`,
		chromedp.WithPollingTimeout(wait), chromedp.WithPollingMutation()))
	if err != nil {
		t.Fatalf("two SSE events did not reach #ticks within %s: %v", wait, err)
	}
	if want := []string{"tick 1", "tick 2"}; strings.Join(ticks, "|") != strings.Join(want, "|") {
		t.Errorf("#ticks holds %q, want %q", ticks, want)
	}

	browsertest.Screenshot(t, ctx, "smoke")
	t.Logf("browser smoke test took %s", time.Since(start).Round(time.Millisecond))
}

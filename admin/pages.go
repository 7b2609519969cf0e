package admin

import (
	"bytes"
	"embed"
	"fmt"
	"html/template"
	"io/fs"
	"net/http"
	"net/url"
	"path"
	"strings"
	"time"

	"github.com/clover-sched/clover/internal/keyring"
)

//go:embed templates
var templatesFS embed.FS

// pages are the console's templates: each page is the layout with its own "content" (and "title").
type pages struct {
	byName map[string]*template.Template
	assets assetPaths
}

// assetPaths are the static files every page loads, by their versioned paths.
type assetPaths struct {
	HTMX, SSE, UPlot, UPlotCSS, CSS, JS string
}

// page is what a template gets.
type page struct {
	V      viewer
	D      any
	Assets assetPaths
	Now    time.Time
}

func loadPages() (*pages, error) {
	p := &pages{byName: map[string]*template.Template{}}
	for _, v := range []struct {
		dst       *string
		pkg, file string
	}{
		{&p.assets.HTMX, "htmx.org", "htmx.min.js"},
		{&p.assets.SSE, "htmx-ext-sse", "sse.min.js"},
		{&p.assets.UPlot, "uplot", "uPlot.iife.min.js"},
		{&p.assets.UPlotCSS, "uplot", "uPlot.min.css"},
	} {
		f, err := vendorFile(v.pkg, v.file)
		if err != nil {
			return nil, err
		}
		*v.dst = "/ui" + f
	}
	p.assets.CSS, p.assets.JS = "/ui/static/console.css", "/ui/static/console.js"
	funcs := template.FuncMap{
		"may": func(v viewer, role string) bool { return v.may(role) },
		"ago": ago,
		"utc": func(t time.Time) string {
			if t.IsZero() {
				return ""
			}
			return t.UTC().Format("2006-01-02 15:04:05Z")
		},
		"roles":        func() []string { return keyring.Roles },
		"excerpt":      excerpt,
		"hoursOffered": func() []int { return logsHours },
		"hoursLabel": func(h int) string {
			if h%24 == 0 {
				return fmt.Sprintf("%d days", h/24)
			}
			return fmt.Sprintf("%d hours", h)
		},
		"join": strings.Join,
		// pathEscape: an id in a path segment (a batch execution's id has slashes).
		"pathEscape": url.PathEscape,
		// ops: the operations a run in this state takes, for its buttons.
		"ops": func(state string) []string {
			switch state {
			case "running":
				return []string{"pause", "stop"}
			case "paused":
				return []string{"resume", "stop", "reset"}
			case "failed", "stopped":
				return []string{"rerun", "reset"}
			}
			return nil
		},
		"dec": func(v int64) int64 { return v - 1 },
		// jobChange: an audit entry's action changed a job's definition (its versions name revisions).
		"jobChange": func(action string) bool {
			return action == "POST /api/v1/jobs" || strings.Contains(action, " /api/v1/jobs/{name}")
		},
		"diffLines": diffLines,
	}
	layout, err := template.New("layout.html").Funcs(funcs).ParseFS(templatesFS, "templates/layout.html")
	if err != nil {
		return nil, fmt.Errorf("admin: parse the layout: %w", err)
	}
	files, err := fs.Glob(templatesFS, "templates/*.html")
	if err != nil {
		return nil, fmt.Errorf("admin: list templates: %w", err)
	}
	for _, f := range files {
		name := strings.TrimSuffix(path.Base(f), ".html")
		if name == "layout" {
			continue
		}
		t, err := template.Must(layout.Clone()).ParseFS(templatesFS, f)
		if err != nil {
			return nil, fmt.Errorf("admin: parse %s: %w", f, err)
		}
		p.byName[name] = t
	}
	return p, nil
}

// render writes page name with data; an htmx request for a fragment gets only its "content" block.
func (c *Console) render(w http.ResponseWriter, r *http.Request, status int, name string, data any) {
	which := "layout.html"
	if r.Header.Get("HX-Request") != "" && r.Header.Get("HX-Boosted") == "" {
		which = "content"
	}
	c.renderBlock(w, r, status, name, which, data)
}

// renderBlock writes one block of page name.
func (c *Console) renderBlock(w http.ResponseWriter, r *http.Request, status int, name, which string, data any) {
	t, ok := c.pages.byName[name]
	if !ok {
		http.Error(w, "admin: no page "+name, http.StatusInternalServerError)
		return
	}
	var buf bytes.Buffer
	if err := t.ExecuteTemplate(&buf, which, page{V: viewerOf(r.Context()), D: data, Assets: c.pages.assets, Now: c.now()}); err != nil {
		c.logger.Error("console page failed to render", "page", name, "err", err)
		http.Error(w, "admin: render "+name+": "+err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_, _ = buf.WriteTo(w)
}

// ago is how long before now t was, shortly.
func ago(now, t time.Time) string {
	if t.IsZero() {
		return ""
	}
	d := now.Sub(t)
	switch {
	case d < 0:
		return "in " + (-d).Round(time.Second).String()
	case d < time.Minute:
		return fmt.Sprintf("%ds ago", int(d.Seconds()))
	case d < time.Hour:
		return fmt.Sprintf("%dm ago", int(d.Minutes()))
	case d < 48*time.Hour:
		return fmt.Sprintf("%dh ago", int(d.Hours()))
	}
	return fmt.Sprintf("%dd ago", int(d.Hours()/24))
}

// Package admin will serve the web console (jobs, executions, logs, the ZooKeeper tree, contacts, charts)
// on top of the REST API in package server, mounted by every server at /ui/. Pages are html/template with
// htmx, its SSE extension and uPlot, vendored under static/vendor/ by scripts/vendor-ui.sh and embedded, so
// the binary needs no Node build and a browser fetches nothing from elsewhere. Written so far: the static
// files (Static) and a browser smoke test; the pages are the open issue.
package admin

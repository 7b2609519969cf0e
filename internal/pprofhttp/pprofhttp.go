// Package pprofhttp serves Go's profiles for a process's debug_listen: a loopback address of its own,
// never the API or the metrics endpoint (profiles reveal memory, and asking for one slows the process).
package pprofhttp

import (
	"net/http"
	"net/http/pprof"
)

// Handler serves /debug/pprof/.
func Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /debug/pprof/", pprof.Index)
	mux.HandleFunc("GET /debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("GET /debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("GET /debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("GET /debug/pprof/trace", pprof.Trace)
	return mux
}

package server

import (
	"net/http"
	"time"
)

// newHTTPServer bounds every phase of a connection, so that slow or idle peers cannot hold the server's
// connections. WriteTimeout is long enough for a large listing; a live stream (the console's) sets its
// own deadline through http.ResponseController.
func newHTTPServer(h http.Handler) *http.Server {
	return &http.Server{
		Handler:           h,
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       30 * time.Second,
		WriteTimeout:      2 * time.Minute,
		IdleTimeout:       2 * time.Minute,
		MaxHeaderBytes:    64 << 10,
	}
}

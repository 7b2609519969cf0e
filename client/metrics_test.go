package client

import (
	"context"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"
)

func TestMetricsShowTheClientsCounters(t *testing.T) {
	now := time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)
	c, runs, release := newTestClientWith(t, func() time.Time { return now }, func(cfg *Config) {})
	defer close(release)
	c.onDispatch(dispatch("m@1", "work", 1, now.Add(time.Minute)))
	waitFor(t, func() bool { return runs.Load() == 1 })
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		c.serveMetrics(ctx, ln)
	}()
	defer func() {
		cancel()
		<-done
	}()
	resp, err := http.Get("http://" + ln.Addr().String() + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, want := range []string{"clover_client_accepted_total 1", "clover_client_running 1", "clover_client_pending_results 0",
		"clover_client_zookeeper_sessions_expired_total 0", "clover_client_zookeeper_disconnects_total 0"} {
		if !strings.Contains(string(body), want+"\n") {
			t.Errorf("metrics lack %q", want)
		}
	}
}

package server

import (
	"io"
	"net/http"
	"net/http/httptest"
	"testing"
)

// A held answer goes out whole once sent, with the handler's final status: an informational one (a
// leader's 100 Continue through the forwarding proxy) passes through and does not take its place.
func TestAHeldAnswerIsSentWithItsFinalStatus(t *testing.T) {
	wentEarly := make(chan bool, 1)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		held := &heldAnswer{ResponseWriter: w}
		held.WriteHeader(http.StatusContinue)
		held.Header().Set("Content-Type", "application/json")
		held.WriteHeader(http.StatusConflict)
		held.WriteHeader(http.StatusOK) // superfluous, as net/http ignores it
		if _, err := held.Write([]byte(`{"error":"version conflict"}`)); err != nil {
			t.Error(err)
		}
		wentEarly <- held.body.Len() == 0
		held.send()
	}))
	defer srv.Close()
	resp, err := http.Post(srv.URL, "application/json", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if <-wentEarly {
		t.Error("the body was not held until sent")
	}
	if resp.StatusCode != http.StatusConflict || string(body) != `{"error":"version conflict"}` || resp.Header.Get("Content-Type") != "application/json" {
		t.Fatalf("got %d %q %v; want 409 with the body and its type", resp.StatusCode, body, resp.Header)
	}
}

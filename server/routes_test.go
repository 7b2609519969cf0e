package server

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"

	"github.com/clover-sched/clover/api"
)

// Every route the server serves is in api.Routes, hence in the OpenAPI document, and the other way round
// (routes fails otherwise); the document is served.
func TestEveryRouteIsInTheOpenAPIDocument(t *testing.T) {
	s := &Server{}
	srv, tok := serveSecured(t, s)
	req, _ := http.NewRequest("GET", srv.URL+"/api/v1/openapi.json", nil)
	req.Header.Set("Authorization", "Bearer "+tok.viewer)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var doc struct {
		Paths map[string]map[string]any `json:"paths"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&doc); err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /api/v1/openapi.json: %d, %v", resp.StatusCode, err)
	}
	for _, rt := range api.Routes {
		if _, ok := doc.Paths[rt.Path][strings.ToLower(rt.Method)]; !ok {
			t.Errorf("%s is served but not in the served document", rt.Pattern())
		}
	}
}

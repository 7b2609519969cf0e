package cli

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

func TestContactCmd(t *testing.T) {
	t.Parallel()
	type call struct{ method, path, body string }
	tests := map[string]struct {
		args    []string
		status  int
		answer  string
		want    call
		wantOut string // a part of the output
		wantErr string
	}{
		"add": {
			args:   []string{"add", "ops", "--email", "ops@example.com", "--webhook", "https://hooks.example.com/T/B/secret"},
			status: 201, answer: `{"name":"ops","email":"ops@example.com","webhook":"https://hooks.example.com/T/B/secret","created_at":"2030-01-02T03:04:05Z"}`,
			want:    call{"POST", "/api/v1/contacts", `{"name":"ops","email":"ops@example.com","webhook":"https://hooks.example.com/T/B/secret"}`},
			wantOut: "added ops <ops@example.com>",
		},
		"add without webhook": {
			args: []string{"add", "ops", "--email", "ops@example.com"}, status: 201, answer: `{"name":"ops","email":"ops@example.com"}`,
			want: call{"POST", "/api/v1/contacts", `{"name":"ops","email":"ops@example.com"}`},
		},
		"add refused": {
			args: []string{"add", "ops", "--email", "ops"}, status: 400, answer: `{"error":"contact ops: email \"ops\": mail: missing '@' or angle-addr"}`,
			want: call{"POST", "/api/v1/contacts", `{"name":"ops","email":"ops"}`}, wantErr: `email "ops"`,
		},
		"add without email": {args: []string{"add", "ops"}, wantErr: `"email" not set`},
		"list": {
			args: []string{"list"}, status: 200,
			answer:  `[{"name":"dev","email":"dev@example.com","created_at":"2030-01-02T03:04:05Z"},{"name":"ops","email":"ops@example.com","webhook":"https://hooks.example.com/T/B/secret","created_at":"2030-01-02T03:04:05Z"}]`,
			want:    call{"GET", "/api/v1/contacts", ""},
			wantOut: "https://hooks.example.com/...",
		},
		"list json": {
			args: []string{"list", "-o", "json"}, status: 200, answer: `[]`,
			want: call{"GET", "/api/v1/contacts", ""}, wantOut: "[]",
		},
		"delete": {
			args: []string{"delete", "ops"}, status: 204,
			want: call{"DELETE", "/api/v1/contacts/ops", ""}, wantOut: "deleted ops",
		},
		"delete unknown": {
			args: []string{"delete", "nobody"}, status: 404, answer: `{"error":"store: not found: contact nobody"}`,
			want: call{"DELETE", "/api/v1/contacts/nobody", ""}, wantErr: "not found",
		},
	}
	for name, tt := range tests {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			calls := make(chan call, 1)
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				b, _ := io.ReadAll(r.Body)
				calls <- call{r.Method, r.URL.Path, strings.TrimSpace(string(b))}
				w.Header().Set("Content-Type", "application/json")
				w.WriteHeader(tt.status)
				io.WriteString(w, tt.answer)
			}))
			defer srv.Close()
			var out bytes.Buffer
			cmd := newContactCmd()
			cmd.SetOut(&out)
			cmd.SetErr(io.Discard)
			cmd.SetArgs(append(tt.args, "--api", srv.URL))
			err := cmd.ExecuteContext(t.Context())
			switch {
			case tt.wantErr == "" && err != nil:
				t.Fatalf("contact %v: %v", tt.args, err)
			case tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)):
				t.Fatalf("contact %v = %v, want an error about %q", tt.args, err, tt.wantErr)
			}
			if tt.want.method == "" {
				if len(calls) != 0 {
					t.Errorf("called the API: %+v", <-calls)
				}
				return
			}
			got := <-calls
			if got.method != tt.want.method || got.path != tt.want.path || !sameJSON(got.body, tt.want.body) {
				t.Errorf("called %+v, want %+v", got, tt.want)
			}
			if !strings.Contains(out.String(), tt.wantOut) {
				t.Errorf("output %q lacks %q", out.String(), tt.wantOut)
			}
			if strings.Contains(out.String(), "secret") && !strings.Contains(strings.Join(tt.args, " "), "json") {
				t.Errorf("output shows the webhook's token: %q", out.String())
			}
		})
	}
}

func sameJSON(a, b string) bool {
	if a == "" || b == "" {
		return a == b
	}
	var x, y any
	if json.Unmarshal([]byte(a), &x) != nil || json.Unmarshal([]byte(b), &y) != nil {
		return false
	}
	xb, _ := json.Marshal(x)
	yb, _ := json.Marshal(y)
	return bytes.Equal(xb, yb)
}

package cli

import (
	"strings"
	"testing"

	"github.com/clover-sched/clover/internal/registry"
)

func TestClusterStatusListsAClientsJobsAndHandlersApartAndOnce(t *testing.T) {
	for _, tc := range []struct {
		m              registry.Member
		jobs, handlers string
	}{
		{registry.Member{Jobs: []string{"b", "a"}, Handlers: []string{"shell", "a", "b", "shell", "hello"}}, "a,b", "hello,shell"},
		{registry.Member{Handlers: []string{"shell"}}, "-", "shell"},
		{registry.Member{Jobs: []string{"j1", "j2", "j3", "j4", "j5", "j6", "j7"}}, "j1,j2,j3,j4,j5 (+2)", "-"},
	} {
		jobs, handlers := clientColumns(tc.m)
		if jobs != tc.jobs || handlers != tc.handlers {
			t.Errorf("%+v: jobs %q handlers %q, want %q and %q", tc.m, jobs, handlers, tc.jobs, tc.handlers)
		}
	}
}

// A mistake in a definition is told in the server's words before any server is reached: nothing listens
// at the API address given.
func TestJobDefinitionsAreCheckedBeforeTheNetwork(t *testing.T) {
	for name, tc := range map[string]struct {
		args []string
		want string
	}{
		"bad cron":                {[]string{"job", "add", "x", "--schedule", "0 61 * * * ?", "--command", "true"}, `job x: schedule "0 61 * * * ?"`},
		"bad zone":                {[]string{"job", "add", "x", "--schedule", "@daily", "--tz", "Mars/Olympus", "--command", "true"}, `job x: time_zone "Mars/Olympus"`},
		"bad policy":              {[]string{"job", "add", "x", "--schedule", "@daily", "--command", "true", "--overlap", "sometimes"}, `job x: overlap "sometimes"`},
		"shell without a command": {[]string{"job", "add", "x", "--schedule", "@daily", "--handler", "shell"}, `handler "shell" needs params.command`},
		"update with bad cron":    {[]string{"job", "update", "x", "--schedule", "* * * * * * * *"}, `job x: schedule "* * * * * * * *"`},
		"update with bad zone":    {[]string{"job", "update", "x", "--tz", "Nowhere/Town"}, `job x: time_zone "Nowhere/Town"`},
	} {
		t.Run(name, func(t *testing.T) {
			var out, errOut strings.Builder
			root := NewRoot(&out, &errOut)
			root.SetArgs(append(tc.args, "--api", "http://127.0.0.1:1"))
			err := root.ExecuteContext(t.Context())
			if err == nil || !strings.Contains(err.Error(), tc.want) || strings.Contains(err.Error(), "cannot reach") {
				t.Fatalf("error %v, want one saying %q before any network", err, tc.want)
			}
		})
	}
}

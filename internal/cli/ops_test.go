package cli

import (
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

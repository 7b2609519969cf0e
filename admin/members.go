package admin

import (
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/clover-sched/clover/api"
	"github.com/clover-sched/clover/internal/registry"
)

// membersData is the clients and servers page.
type membersData struct {
	Cluster    api.ClusterStatus
	Clients    []memberRow
	HeardErr   string
	InFlight   int // executions the leader follows (those listed per client are a part)
	InFlightTo string
}

// memberRow is a client with what the leader knows of it.
type memberRow struct {
	registry.Member
	HeardAt time.Time // its last heartbeat that reached the leader; zero: none this term
	Running []api.InFlight
}

func (c *Console) members(w http.ResponseWriter, r *http.Request) {
	var d membersData
	if err := c.get(r, "/api/v1/cluster", &d.Cluster); err != nil {
		c.fail(w, r, http.StatusBadGateway, err)
		return
	}
	heard := map[string]time.Time{}
	var hbs []api.ClientHeartbeat
	if err := c.get(r, "/api/v1/heartbeats", &hbs); err != nil {
		d.HeardErr = err.Error()
	}
	for _, hb := range hbs {
		heard[hb.Client] = hb.LastAt
	}
	var inflight []api.InFlight
	if err := c.get(r, "/api/v1/inflight?limit=10000", &inflight); err != nil {
		d.InFlightTo = err.Error()
	}
	d.InFlight = len(inflight)
	byClient := map[string][]api.InFlight{}
	for _, f := range inflight {
		if f.Client != "" {
			byClient[f.Client] = append(byClient[f.Client], f)
		}
	}
	for _, m := range d.Cluster.Clients {
		d.Clients = append(d.Clients, memberRow{Member: m, HeardAt: heard[m.ID], Running: byClient[m.ID]})
	}
	slices.SortFunc(d.Clients, func(a, b memberRow) int { return strings.Compare(a.ID, b.ID) })
	c.render(w, r, http.StatusOK, "members", d)
}

package admin

import (
	"net/http"
	"net/url"
	"path"
	"strings"

	"github.com/clover-sched/clover/api"
)

// zkData is the ZooKeeper page: one node of Clover's tree, its children and the way back up.
type zkData struct {
	Node     api.ZNode
	Leader   string // the leader's id, to mark the nodes that are its
	IsLeader bool   // this node is the leader's (an ephemeral node whose data names it)
	Crumbs   []zkCrumb
	Children []zkChild
}

type zkCrumb struct{ Name, Path string }

type zkChild struct {
	Name, Path string
	Ephemeral  bool
	Leader     bool
}

// zkChildLookups bounds how many children the page reads to mark the ephemeral ones and the leader's.
const zkChildLookups = 100

// zookeeper browses Clover's ZooKeeper tree, read-only (admins: ACLs name digest users).
func (c *Console) zookeeper(w http.ResponseWriter, r *http.Request) {
	if !c.mayDefine(w, r) {
		return
	}
	p := r.URL.Query().Get("path")
	var d zkData
	q := ""
	if p != "" {
		q = "?path=" + url.QueryEscape(p)
	}
	if err := c.get(r, "/api/v1/zookeeper"+q, &d.Node); err != nil {
		c.fail(w, r, http.StatusBadGateway, err)
		return
	}
	var cluster api.ClusterStatus
	if c.get(r, "/api/v1/cluster", &cluster) == nil && cluster.Leader != nil {
		d.Leader = cluster.Leader.ID
	}
	d.IsLeader = names(d.Node, d.Leader)
	acc := ""
	for _, part := range strings.Split(strings.Trim(d.Node.Path, "/"), "/") {
		acc += "/" + part
		d.Crumbs = append(d.Crumbs, zkCrumb{Name: part, Path: acc})
	}
	for i, name := range d.Node.Children {
		ch := zkChild{Name: name, Path: path.Join(d.Node.Path, name)}
		if i < zkChildLookups {
			var n api.ZNode
			if c.get(r, "/api/v1/zookeeper?path="+url.QueryEscape(ch.Path), &n) == nil {
				ch.Ephemeral, ch.Leader = n.EphemeralOwner != "", names(n, d.Leader)
			}
		}
		d.Children = append(d.Children, ch)
	}
	c.render(w, r, http.StatusOK, "zookeeper", d)
}

// names reports whether n is an ephemeral node whose data is the leader's (its election candidate, its
// registration).
func names(n api.ZNode, leader string) bool {
	return leader != "" && n.EphemeralOwner != "" && strings.Contains(n.Data, `"id": "`+leader+`"`)
}

package server

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"path"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/go-zookeeper/zk"

	"github.com/clover-sched/clover/api"
)

// getZNode shows one node of the cluster's ZooKeeper tree, read-only (the console's ZooKeeper page). A
// path outside the cluster's root is refused: the page browses Clover's tree, not the ensemble.
func (s *Server) getZNode(w http.ResponseWriter, r *http.Request) {
	root := s.sess.Root()
	p := r.URL.Query().Get("path")
	if p == "" {
		p = root
	}
	clean := path.Clean(p)
	if clean != p || (clean != root && !strings.HasPrefix(clean, root+"/")) {
		writeError(w, http.StatusBadRequest, fmt.Errorf("query path=%q: must be %s or a clean path under it", p, root))
		return
	}
	conn := s.sess.Conn()
	data, stat, err := conn.Get(clean)
	if errors.Is(err, zk.ErrNoNode) {
		writeError(w, http.StatusNotFound, fmt.Errorf("zookeeper: no node %s", clean))
		return
	}
	if err != nil {
		writeError(w, http.StatusServiceUnavailable, fmt.Errorf("zookeeper: read %s: %w", clean, err))
		return
	}
	n := api.ZNode{Path: clean, Version: stat.Version, ModifiedAt: time.UnixMilli(stat.Mtime).UTC(), ACL: []string{}}
	if stat.EphemeralOwner != 0 {
		n.EphemeralOwner = "0x" + strconv.FormatInt(stat.EphemeralOwner, 16)
	}
	switch {
	case len(data) == 0:
	case !utf8.Valid(data):
		n.Binary, n.Data = true, fmt.Sprintf("%d bytes", len(data))
	default:
		var out bytes.Buffer
		if json.Valid(data) && json.Indent(&out, data, "", "  ") == nil {
			n.Data = out.String()
		} else {
			n.Data = string(data)
		}
	}
	if stat.NumChildren > 0 {
		children, _, err := conn.Children(clean)
		if err != nil && !errors.Is(err, zk.ErrNoNode) {
			writeError(w, http.StatusServiceUnavailable, fmt.Errorf("zookeeper: children of %s: %w", clean, err))
			return
		}
		slices.Sort(children)
		n.Children = children
	}
	if acl, _, err := conn.GetACL(clean); err == nil {
		for _, a := range acl {
			n.ACL = append(n.ACL, fmt.Sprintf("%s:%s %s", a.Scheme, a.ID, perms(a.Perms)))
		}
	}
	writeJSON(w, http.StatusOK, n)
}

// perms spells ZooKeeper permissions as zkCli does (cdrwa).
func perms(p int32) string {
	var b strings.Builder
	for _, x := range []struct {
		bit int32
		c   byte
	}{{zk.PermCreate, 'c'}, {zk.PermDelete, 'd'}, {zk.PermRead, 'r'}, {zk.PermWrite, 'w'}, {zk.PermAdmin, 'a'}} {
		if p&x.bit != 0 {
			b.WriteByte(x.c)
		}
	}
	return b.String()
}

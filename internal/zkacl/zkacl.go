// Package zkacl is who may change what in Clover's ZooKeeper tree. Everyone may read it (the monitor and
// the CLI watch it); servers own it; clients may add their own node under clients/ and change only it:
//
//	<root>, election/, servers/, monitor-election/   servers: all      anyone: read
//	clients/                                         servers: all      clients: create   anyone: read
//	clients/<id>                                     that client: all  anyone: read
//
// ZooKeeper checks the right to delete a node on its parent, so no client can delete another's node (nor,
// explicitly, its own: it goes with the client's session). Identities are ZooKeeper digests made from the
// key directory (package keyring).
package zkacl

import (
	"errors"
	"fmt"
	"path"

	"github.com/go-zookeeper/zk"

	"github.com/clover-sched/clover/internal/keyring"
	"github.com/clover-sched/clover/internal/zksession"
)

const (
	serversUser = "clover-servers"
	clientsUser = "clover-clients"
	clientUser  = "clover-client."
)

func digest(user, password string) string { return user + ":" + password }

// Servers is the access of a server (and of the monitor, which holds the cluster secret too).
func Servers(root string, cluster []byte) zksession.Access {
	serversPW := keyring.Derive(cluster, keyring.PurposeZooKeeperServers)
	clientsPW := keyring.Derive(cluster, keyring.PurposeZooKeeperClients)
	owner := zk.DigestACL(zk.PermAll, serversUser, serversPW)
	read := zk.WorldACL(zk.PermRead)
	clientsCreate := zk.DigestACL(zk.PermCreate, clientsUser, clientsPW)
	return zksession.Access{
		Digests: []string{digest(serversUser, serversPW)},
		ACL: func(p string) []zk.ACL {
			return TreeACL(root, p, owner, clientsCreate, read)
		},
	}
}

// TreeACL is the ACL of a node at p made by the servers.
func TreeACL(root, p string, owner, clientsCreate, read []zk.ACL) []zk.ACL {
	acl := append(append([]zk.ACL{}, owner...), read...)
	if p == root+"/clients" {
		acl = append(acl, clientsCreate...)
	}
	return acl
}

// Client is the access of client id: it may create its own node, and nothing else.
func Client(root, id, clientsPassword, ownPassword string) zksession.Access {
	own := zk.DigestACL(zk.PermAll, clientUser+id, ownPassword)
	read := zk.WorldACL(zk.PermRead)
	mine := root + "/clients/" + id
	return zksession.Access{
		Digests: []string{digest(clientsUser, clientsPassword), digest(clientUser+id, ownPassword)},
		ACL: func(p string) []zk.ACL {
			if p != mine {
				return nil
			}
			return append(append([]zk.ACL{}, own...), read...)
		},
	}
}

// Secure sets the ACLs of an existing tree (made before Clover used ACLs, or by hand) to what the
// servers would have given it, and returns the paths it changed. The session must have the servers'
// access, and the nodes must let it administer them (the old ones were open to anyone). Clients' own
// nodes are left: they are ephemeral and come back with the right ACL when their client reconnects.
func Secure(sess *zksession.Session) ([]string, error) {
	conn := sess.Conn()
	root := sess.Root()
	var changed []string
	var walk func(p string) error
	walk = func(p string) error {
		_, stat, err := conn.Get(p)
		if errors.Is(err, zk.ErrNoNode) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("zkacl: read %s: %w", p, err)
		}
		if stat.EphemeralOwner != 0 && path.Dir(p) == root+"/clients" {
			return nil
		}
		if _, err := conn.SetACL(p, sess.ACL(p), -1); err != nil && !errors.Is(err, zk.ErrNoNode) {
			return fmt.Errorf("zkacl: set ACL of %s: %w", p, err)
		}
		changed = append(changed, p)
		children, _, err := conn.Children(p)
		if err != nil && !errors.Is(err, zk.ErrNoNode) {
			return fmt.Errorf("zkacl: list %s: %w", p, err)
		}
		for _, c := range children {
			if err := walk(p + "/" + c); err != nil {
				return err
			}
		}
		return nil
	}
	return changed, walk(root)
}

// SecureIfOpen secures the tree (Secure) when one of its main nodes lets anyone do more than read (a
// tree made by an earlier version, or by an insecure run), and returns the paths it changed. A server
// calls it at start: leaving such a tree open would let anyone rewrite the election or the servers'
// addresses.
func SecureIfOpen(sess *zksession.Session) ([]string, error) {
	conn := sess.Conn()
	for _, p := range []string{sess.Root(), sess.Path("election"), sess.Path("servers"), sess.Path("clients")} {
		acl, _, err := conn.GetACL(p)
		if errors.Is(err, zk.ErrNoNode) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("zkacl: read the ACL of %s: %w", p, err)
		}
		for _, a := range acl {
			if a.Scheme == "world" && a.Perms&^zk.PermRead != 0 {
				return Secure(sess)
			}
		}
	}
	return nil, nil
}

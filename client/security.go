package client

import (
	"github.com/clover-sched/clover/internal/keyring"
	"github.com/clover-sched/clover/internal/transport"
	"github.com/clover-sched/clover/internal/zkacl"
	"github.com/clover-sched/clover/internal/zksession"
)

// security loads this client's keys: the CURVE setup of its sockets and its ZooKeeper identity. In
// insecure mode both are empty, and that is logged as an error on every start.
func (c *Client) security() (*transport.Curve, []zksession.Option, error) {
	if c.cfg.Insecure {
		c.logger.Error("INSECURE: running without authentication; anyone who can reach this client's endpoint can run its jobs and shell commands (insecure: true)")
		return nil, nil, nil
	}
	keys, err := keyring.LoadClient(c.cfg.KeysDir, c.cfg.ID)
	if err != nil {
		return nil, nil, err
	}
	c.memberKey = keys.MemberKey
	servers := keys.ServerPublic
	curve := &transport.Curve{Public: keys.Key.Public, Secret: keys.Key.Secret, ServerPublic: servers,
		// Its inbox takes frames from the servers only.
		Identify: func(pub string) (string, bool) { return transport.ServersIdentity, pub == servers }}
	access := zkacl.Client(c.cfg.ZooKeeper.Root, c.cfg.ID, keys.ClientsSecret, keys.ClientZooKeeperPassword())
	return curve, []zksession.Option{zksession.WithAccess(access)}, nil
}

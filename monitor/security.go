package monitor

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/clover-sched/clover/internal/keyring"
	"github.com/clover-sched/clover/internal/zkacl"
	"github.com/clover-sched/clover/internal/zksession"
)

// apiAccess is how the monitor reads the servers' API.
type apiAccess struct {
	client *http.Client
	scheme string
	token  string
}

// security loads the monitor's ZooKeeper identity and API token. In insecure mode both are empty, and
// that is logged as an error on every start.
func (m *Monitor) security() ([]zksession.Option, apiAccess, error) {
	access := apiAccess{client: &http.Client{Timeout: 3 * time.Second}, scheme: "http"}
	if m.cfg.APICAFile != "" {
		pem, err := os.ReadFile(m.cfg.APICAFile)
		if err != nil {
			return nil, access, fmt.Errorf("api_ca_file: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, access, fmt.Errorf("api_ca_file %s: no PEM certificate in it", m.cfg.APICAFile)
		}
		access.scheme = "https"
		access.client.Transport = &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}}
	}
	if m.cfg.Insecure {
		m.logger.Error("INSECURE: running without authentication (insecure: true)")
		return nil, access, nil
	}
	keys, err := keyring.LoadMonitor(m.cfg.KeysDir)
	if err != nil {
		return nil, access, err
	}
	token, err := os.ReadFile(m.cfg.TokenFile)
	if err != nil {
		return nil, access, fmt.Errorf("token_file: %w", err)
	}
	if access.token = strings.TrimSpace(string(token)); access.token == "" {
		return nil, access, fmt.Errorf("token_file %s: empty", m.cfg.TokenFile)
	}
	return []zksession.Option{zksession.WithAccess(zkacl.Servers(m.cfg.ZooKeeper.Root, keys.Cluster))}, access, nil
}

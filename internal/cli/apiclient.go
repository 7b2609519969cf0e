package cli

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"
)

// apiClient calls the REST API of one server.
type apiClient struct {
	base  string
	token string
	http  *http.Client
}

func addAPIFlags(cmd *cobra.Command) {
	cmd.PersistentFlags().String("api", "", "REST API of any server (default $CLOVER_API or http://127.0.0.1:7700)")
	cmd.PersistentFlags().String("token", "", "API token (default $CLOVER_TOKEN, or the file $CLOVER_TOKEN_FILE)")
	cmd.PersistentFlags().String("ca", "", "CA certificate (PEM) the API's HTTPS certificate is checked against (default $CLOVER_CA)")
	cmd.PersistentFlags().StringP("output", "o", "table", "output format: table or json")
}

// apiToken is the token to send: --token, $CLOVER_TOKEN, or the content of $CLOVER_TOKEN_FILE.
func apiToken(cmd *cobra.Command) (string, error) {
	if t, _ := cmd.Flags().GetString("token"); t != "" {
		return t, nil
	}
	if t := os.Getenv("CLOVER_TOKEN"); t != "" {
		return t, nil
	}
	if f := os.Getenv("CLOVER_TOKEN_FILE"); f != "" {
		b, err := os.ReadFile(f)
		if err != nil {
			return "", fmt.Errorf("CLOVER_TOKEN_FILE: %w", err)
		}
		return strings.TrimSpace(string(b)), nil
	}
	return "", nil
}

// apiHTTPClient trusts --ca (or $CLOVER_CA) for HTTPS when given, else the system's CAs.
func apiHTTPClient(cmd *cobra.Command) (*http.Client, error) {
	c := &http.Client{Timeout: 30 * time.Second}
	ca, _ := cmd.Flags().GetString("ca")
	if ca == "" {
		ca = os.Getenv("CLOVER_CA")
	}
	if ca == "" {
		return c, nil
	}
	pem, err := os.ReadFile(ca)
	if err != nil {
		return nil, fmt.Errorf("--ca: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("--ca %s: no PEM certificate in it", ca)
	}
	c.Transport = &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}}
	return c, nil
}

func newAPIClient(cmd *cobra.Command) (*apiClient, error) {
	base, _ := cmd.Flags().GetString("api")
	if base == "" {
		base = os.Getenv("CLOVER_API")
	}
	if base == "" {
		base = "http://127.0.0.1:7700"
	}
	if !strings.Contains(base, "://") {
		base = "http://" + base
	}
	if _, err := url.Parse(base); err != nil {
		return nil, fmt.Errorf("--api %q: %w", base, err)
	}
	token, err := apiToken(cmd)
	if err != nil {
		return nil, err
	}
	hc, err := apiHTTPClient(cmd)
	if err != nil {
		return nil, err
	}
	return &apiClient{base: strings.TrimSuffix(base, "/"), token: token, http: hc}, nil
}

// do sends a request and decodes a JSON answer into out (when out is not nil). A non-2xx answer becomes an
// error carrying the server's message.
func (c *apiClient) do(ctx context.Context, method, path string, body, out any) error {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return err
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.base+path, rd)
	if err != nil {
		return err
	}
	if method != http.MethodGet {
		req.Header.Set("Content-Type", "application/json")
	}
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return fmt.Errorf("cannot reach the Clover API at %s: %w", c.base, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return fmt.Errorf("read answer of %s %s: %w", method, path, err)
	}
	if resp.StatusCode >= 300 {
		var e struct {
			Error string `json:"error"`
		}
		if json.Unmarshal(data, &e) == nil && e.Error != "" {
			if resp.StatusCode == http.StatusUnauthorized && c.token == "" {
				return fmt.Errorf("%s (HTTP 401; no token given: --token, CLOVER_TOKEN or CLOVER_TOKEN_FILE)", e.Error)
			}
			return fmt.Errorf("%s (HTTP %d)", e.Error, resp.StatusCode)
		}
		return fmt.Errorf("%s %s: HTTP %d: %s", method, path, resp.StatusCode, strings.TrimSpace(string(data)))
	}
	if out != nil && len(data) > 0 {
		if err := json.Unmarshal(data, out); err != nil {
			return fmt.Errorf("decode answer of %s %s: %w", method, path, err)
		}
	}
	return nil
}

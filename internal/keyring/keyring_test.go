package keyring

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
)

func TestGenerateMakesWhatEachRoleLoadsAndKeepsWhatExists(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "keys")
	wrote, err := GenerateCluster(dir)
	if err != nil || len(wrote) != 5 {
		t.Fatalf("GenerateCluster: %v, wrote %v", err, wrote)
	}
	if _, err := GenerateClient(dir, "client-a"); err != nil {
		t.Fatal(err)
	}
	srv, err := LoadServer(dir)
	if err != nil {
		t.Fatal(err)
	}
	cl, err := LoadClient(dir, "client-a")
	if err != nil {
		t.Fatal(err)
	}
	if cl.ServerPublic != srv.Key.Public {
		t.Fatal("the client's server.pub is not the servers' key")
	}
	if id, ok := srv.Clients.Identify(cl.Key.Public); !ok || id != "client-a" {
		t.Fatalf("allowlist: %q %v, want client-a", id, ok)
	}
	if _, ok := srv.Clients.Identify(srv.Key.Public); ok {
		t.Fatal("the servers' key is in the clients' allowlist")
	}
	if Derive(srv.Cluster, PurposeZooKeeperClients) != cl.ClientsSecret {
		t.Fatal("clients.secret is not derived from the cluster secret: servers could not set the ACL")
	}
	again, err := GenerateCluster(dir)
	if err != nil || len(again) != 0 {
		t.Fatalf("a second GenerateCluster wrote %v (%v); it must keep every existing file", again, err)
	}
	srv2, err := LoadServer(dir)
	if err != nil || srv2.Key != srv.Key {
		t.Fatalf("the servers' key changed on a second run: %v", err)
	}
}

func TestSecretFilesMustBePrivateAndWellFormed(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "keys")
	if _, err := GenerateCluster(dir); err != nil {
		t.Fatal(err)
	}
	key := filepath.Join(dir, ServerKeyFile)
	if err := os.Chmod(key, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadServer(dir); err == nil || !strings.Contains(err.Error(), "chmod 600") {
		t.Fatalf("a world-readable server.key: err = %v, want a refusal naming chmod 600", err)
	}
	if err := os.Chmod(key, 0o600); err != nil {
		t.Fatal(err)
	}
	b, _ := os.ReadFile(key)
	// A secret key that does not match its public key.
	other, _ := NewKeyPair()
	bad := strings.Replace(string(b), certValue(b, "secret-key"), other.Secret, 1)
	if err := os.WriteFile(key, []byte(bad), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadServer(dir); err == nil || !strings.Contains(err.Error(), "does not belong") {
		t.Fatalf("mismatched keypair: err = %v", err)
	}
	if err := os.WriteFile(key, []byte("curve\n public-key = \"short\"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadServer(dir); err == nil || !strings.Contains(err.Error(), ServerKeyFile) {
		t.Fatalf("garbage key file: err = %v, want it named", err)
	}
	if _, err := LoadClient(dir, "nobody"); err == nil || !strings.Contains(err.Error(), "clover keys gen") {
		t.Fatalf("a client without keys: err = %v, want the command that makes them", err)
	}
	if _, err := LoadClient(dir, "../server"); err == nil {
		t.Fatal("a client id with a path in it was accepted")
	}
}

func TestTokensAreStoredHashedWithARoleAndUniqueNames(t *testing.T) {
	dir := t.TempDir()
	tok, err := AddToken(dir, "alice", RoleOperator)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := os.ReadFile(filepath.Join(dir, TokensFile))
	if strings.Contains(string(b), tok) {
		t.Fatal("the tokens file holds the token itself")
	}
	tokens, err := ReadTokens(filepath.Join(dir, TokensFile))
	if err != nil || len(tokens) != 1 || tokens[0].Hash != HashToken(tok) || tokens[0].Role != RoleOperator || tokens[0].Name != "alice" {
		t.Fatalf("tokens %+v, %v", tokens, err)
	}
	if _, err := AddToken(dir, "alice", RoleAdmin); err == nil {
		t.Fatal("a second token named alice was added")
	}
	if _, err := AddToken(dir, "bob", "root"); err == nil {
		t.Fatal("a token with an unknown role was added")
	}
	for name, content := range map[string]string{
		"short line":   "abc admin\n",
		"not a hash":   strings.Repeat("z", 64) + " admin x\n",
		"unknown role": strings.Repeat("a", 64) + " root x\n",
		"same name":    strings.Repeat("a", 64) + " admin x\n" + strings.Repeat("b", 64) + " viewer x\n",
	} {
		if _, err := ParseTokens("tokens", []byte(content)); err == nil || !strings.Contains(err.Error(), "tokens:") {
			t.Errorf("%s: err = %v, want an error naming the file and line", name, err)
		}
	}
}

// RunToken reuses its HMACs: tokens made under keys used in turn, from several goroutines, are those a
// fresh HMAC makes.
func TestRunTokensFromReusedMACsAreThoseOfFreshOnes(t *testing.T) {
	fresh := func(key []byte, execID string, run int, client string) string {
		m := hmac.New(sha256.New, key)
		m.Write([]byte(execID + "\x00" + strconv.Itoa(max(run, 1)) + "\x00" + client))
		return hex.EncodeToString(m.Sum(nil)[:16])
	}
	keys := [][]byte{[]byte("key one"), []byte("key two, longer than the others"), {}}
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			for i := range 500 {
				key := keys[(g+i)%len(keys)]
				id := fmt.Sprintf("job-%d@2026-03-01T12:00:%02dZ", g, i%60)
				if got, want := RunToken(key, id, i%4, "c1"), fresh(key, id, i%4, "c1"); got != want {
					t.Errorf("RunToken(%q, %s, %d) = %s, want %s", key, id, i%4, got, want)
					return
				}
			}
		})
	}
	wg.Wait()
}

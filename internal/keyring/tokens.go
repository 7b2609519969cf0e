package keyring

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
)

// Roles an API token can have, each allowing what the one before allows and more.
const (
	RoleViewer   = "viewer"   // reads
	RoleOperator = "operator" // and operates jobs and executions: trigger, pause, stop, rerun...
	RoleAdmin    = "admin"    // and changes definitions, contacts and shell commands; reads the audit log
)

// Roles lists the roles from the least to the most allowed.
var Roles = []string{RoleViewer, RoleOperator, RoleAdmin}

// RoleRank orders roles; an unknown role ranks below every known one.
func RoleRank(role string) int { return slices.Index(Roles, role) }

const tokensHeader = `# Clover API tokens: one per line, "<sha256 of the token, hex> <role> <name>".
# Roles: viewer, operator, admin. Add one with ` + "`clover keys token --dir DIR --name NAME --role ROLE`" + `;
# delete its line to revoke it (servers read this file again within a second).
`

// Token is one line of a tokens file.
type Token struct {
	Hash string // sha256 of the token, hex
	Role string
	Name string // who holds it, as the audit log names them
}

// HashToken is what a tokens file stores of a token.
func HashToken(token string) string {
	sum := sha256.Sum256([]byte(token))
	return hex.EncodeToString(sum[:])
}

// ParseTokens reads a tokens file's content; path names it in errors.
func ParseTokens(path string, data []byte) ([]Token, error) {
	var out []Token
	names := map[string]bool{}
	sc := bufio.NewScanner(bytes.NewReader(data))
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		f := strings.Fields(line)
		if len(f) != 3 {
			return nil, fmt.Errorf("keyring: %s:%d: want \"<sha256 hex> <role> <name>\"", path, n)
		}
		if b, err := hex.DecodeString(f[0]); err != nil || len(b) != sha256.Size {
			return nil, fmt.Errorf("keyring: %s:%d: %q is not a sha256 in hex", path, n, f[0])
		}
		if RoleRank(f[1]) < 0 {
			return nil, fmt.Errorf("keyring: %s:%d: role %q: want one of %s", path, n, f[1], strings.Join(Roles, ", "))
		}
		if names[f[2]] {
			return nil, fmt.Errorf("keyring: %s:%d: name %q is used twice", path, n, f[2])
		}
		names[f[2]] = true
		out = append(out, Token{Hash: strings.ToLower(f[0]), Role: f[1], Name: f[2]})
	}
	return out, sc.Err()
}

// ReadTokens reads the tokens file at path (which must be private to this user).
func ReadTokens(path string) ([]Token, error) {
	b, err := readSecretFile(path)
	if err != nil {
		return nil, err
	}
	return ParseTokens(path, b)
}

// AddToken makes a new token for name with role, adds its hash to dir's tokens file and returns the
// token, which is shown this once and stored nowhere.
func AddToken(dir, name, role string) (string, error) {
	if RoleRank(role) < 0 {
		return "", fmt.Errorf("keyring: role %q: want one of %s", role, strings.Join(Roles, ", "))
	}
	if name == "" || strings.ContainsAny(name, " \t\n#") {
		return "", fmt.Errorf("keyring: token name %q: must be non-empty, without spaces or #", name)
	}
	path := filepath.Join(dir, TokensFile)
	if _, err := writeNew(path, []byte(tokensHeader), 0o600); err != nil {
		return "", err
	}
	existing, err := ReadTokens(path)
	if err != nil {
		return "", err
	}
	for _, t := range existing {
		if t.Name == name {
			return "", fmt.Errorf("keyring: %s already has a token named %q; delete its line first to replace it", path, name)
		}
	}
	token := "clv_" + randomHex(32)
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		return "", fmt.Errorf("keyring: %w", err)
	}
	_, werr := fmt.Fprintf(f, "%s %s %s\n", HashToken(token), role, name)
	if err := f.Close(); werr == nil {
		werr = err
	}
	if werr != nil {
		return "", fmt.Errorf("keyring: append to %s: %w", path, werr)
	}
	return token, nil
}

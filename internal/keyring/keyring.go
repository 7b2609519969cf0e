// Package keyring reads and writes a Clover key directory: the CURVE keypairs that authenticate ZeroMQ
// peers, the cluster secret that signs forwarded API calls and derives the ZooKeeper passwords, and the
// API tokens. `clover keys gen` makes one; each host gets the files its role needs:
//
//	server.pub          the servers' CURVE public key                  every process
//	server.key          the servers' CURVE keypair                     servers
//	cluster.secret      32 random bytes, hex                           servers, the monitor
//	clients.secret      the ZooKeeper password clients register with   clients
//	clients/<id>.pub    a client's public key; the file name is its id servers (the allowlist)
//	clients/<id>.key    that client's keypair                          that client only
//	clients/<id>.secret signs that client's registration (MemberKey)   that client only
//	tokens              API tokens, hashed                             servers
//
// Secret files must belong to the user and be readable by nobody else, as ssh requires of its keys.
package keyring

import (
	"bytes"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"

	zmq "github.com/pebbe/zmq4"
)

// File names inside a key directory.
const (
	ServerPublicFile  = "server.pub"
	ServerKeyFile     = "server.key"
	ClusterSecretFile = "cluster.secret"
	ClientsSecretFile = "clients.secret"
	ClientsDir        = "clients"
	TokensFile        = "tokens"
)

// KeyPair is a CURVE keypair in Z85 text (40 characters each).
type KeyPair struct {
	Public string
	Secret string
}

// Available reports whether the linked libzmq does CURVE; without it nothing secure can start.
func Available() error {
	if !zmq.HasCurve() {
		return errors.New("keyring: this libzmq was built without CURVE (libsodium); install a libzmq with CURVE")
	}
	return nil
}

// NewKeyPair makes a fresh CURVE keypair.
func NewKeyPair() (KeyPair, error) {
	if err := Available(); err != nil {
		return KeyPair{}, err
	}
	pub, sec, err := zmq.NewCurveKeypair()
	if err != nil {
		return KeyPair{}, fmt.Errorf("keyring: new CURVE keypair: %w", err)
	}
	return KeyPair{Public: pub, Secret: sec}, nil
}

// idPattern is what a client id must look like to be an allowlist file name: the ids Clover accepts,
// without '@', which the servers' own identity uses.
var idPattern = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$`)

// ValidID reports whether id can name a client in the allowlist.
func ValidID(id string) error {
	if !idPattern.MatchString(id) {
		return fmt.Errorf("client id %q: must be 1-128 letters, digits, '.', '_' or '-', starting with a letter or digit", id)
	}
	return nil
}

// Server is what a server holds.
type Server struct {
	Dir     string
	Key     KeyPair // the servers' keypair
	Cluster []byte  // the cluster secret
	Clients *Allowlist
}

// Client is what a client holds.
type Client struct {
	Dir          string
	ID           string
	Key          KeyPair // this client's keypair
	ServerPublic string
	// ClientsSecret lets it create its node under /clients in ZooKeeper.
	ClientsSecret string
	// MemberKey signs its registration (MemberKey).
	MemberKey []byte
}

// Monitor is what the monitor holds: it takes part in ZooKeeper as the servers do.
type Monitor struct {
	Dir     string
	Cluster []byte
}

// LoadServer reads a server's files from dir.
func LoadServer(dir string) (*Server, error) {
	if err := Available(); err != nil {
		return nil, err
	}
	key, err := readKeyPair(filepath.Join(dir, ServerKeyFile))
	if err != nil {
		return nil, err
	}
	cluster, err := readClusterSecret(dir)
	if err != nil {
		return nil, err
	}
	return &Server{Dir: dir, Key: key, Cluster: cluster, Clients: NewAllowlist(filepath.Join(dir, ClientsDir))}, nil
}

// LoadClient reads client id's files from dir.
func LoadClient(dir, id string) (*Client, error) {
	if err := Available(); err != nil {
		return nil, err
	}
	if err := ValidID(id); err != nil {
		return nil, fmt.Errorf("keyring: %w", err)
	}
	key, err := readKeyPair(filepath.Join(dir, ClientsDir, id+".key"))
	if err != nil {
		return nil, fmt.Errorf("%w (make it with `clover keys gen --dir %s --client %s`)", err, dir, id)
	}
	pub, err := readPublic(filepath.Join(dir, ServerPublicFile))
	if err != nil {
		return nil, err
	}
	secret, err := readSecretFile(filepath.Join(dir, ClientsSecretFile))
	if err != nil {
		return nil, err
	}
	member, err := readSecretFile(filepath.Join(dir, ClientsDir, id+".secret"))
	if err != nil {
		return nil, fmt.Errorf("%w (make it with `clover keys gen --dir %s --client %s`)", err, dir, id)
	}
	return &Client{Dir: dir, ID: id, Key: key, ServerPublic: pub, ClientsSecret: strings.TrimSpace(string(secret)),
		MemberKey: []byte(strings.TrimSpace(string(member)))}, nil
}

// LoadMonitor reads the monitor's files from dir.
func LoadMonitor(dir string) (*Monitor, error) {
	cluster, err := readClusterSecret(dir)
	if err != nil {
		return nil, err
	}
	return &Monitor{Dir: dir, Cluster: cluster}, nil
}

// Derive is a secret for one purpose, made from the cluster secret: HMAC-SHA256(cluster, purpose), hex.
func Derive(cluster []byte, purpose string) string {
	m := hmac.New(sha256.New, cluster)
	m.Write([]byte(purpose))
	return hex.EncodeToString(m.Sum(nil))
}

// Purposes of derived secrets.
const (
	PurposeZooKeeperServers = "clover zookeeper servers"
	PurposeZooKeeperClients = "clover zookeeper clients"
	PurposeForward          = "clover api forward"
	// PurposeConsoleSession is derived from the forward key, which every server holds.
	PurposeConsoleSession = "clover console session"
)

// MemberKey is the key that signs client id's registration in ZooKeeper: made from the cluster secret,
// so every server can check it, and given to that client only (clients/<id>.secret).
func MemberKey(cluster []byte, id string) []byte {
	return []byte(Derive(cluster, "clover client member "+id))
}

// ClientZooKeeperPassword is the password of client's own ZooKeeper identity, which owns its node: made
// from its secret key, so only it knows it.
func (c *Client) ClientZooKeeperPassword() string {
	m := hmac.New(sha256.New, []byte(c.Key.Secret))
	m.Write([]byte("clover zookeeper client"))
	return hex.EncodeToString(m.Sum(nil))
}

func readClusterSecret(dir string) ([]byte, error) {
	b, err := readSecretFile(filepath.Join(dir, ClusterSecretFile))
	if err != nil {
		return nil, err
	}
	secret, err := hex.DecodeString(strings.TrimSpace(string(b)))
	if err != nil || len(secret) < 32 {
		return nil, fmt.Errorf("keyring: %s: want at least 32 bytes in hex", filepath.Join(dir, ClusterSecretFile))
	}
	return secret, nil
}

// readSecretFile reads a file that must be private to this user.
func readSecretFile(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("keyring: %w", err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("keyring: %w", err)
	}
	if err := private(path, st); err != nil {
		return nil, err
	}
	b := make([]byte, 0, st.Size())
	buf := make([]byte, 4096)
	for len(b) < 1<<16 {
		n, err := f.Read(buf)
		b = append(b, buf[:n]...)
		if err != nil {
			break
		}
	}
	return b, nil
}

// readKeyPair reads a keypair file in the ZeroMQ certificate layout (public-key = "..." / secret-key = "...").
func readKeyPair(path string) (KeyPair, error) {
	b, err := readSecretFile(path)
	if err != nil {
		return KeyPair{}, err
	}
	kp := KeyPair{Public: certValue(b, "public-key"), Secret: certValue(b, "secret-key")}
	if !validZ85Key(kp.Public) || !validZ85Key(kp.Secret) {
		return KeyPair{}, fmt.Errorf("keyring: %s: want public-key and secret-key, each 40 Z85 characters", path)
	}
	pub, err := zmq.AuthCurvePublic(kp.Secret)
	if err != nil || pub != kp.Public {
		return KeyPair{}, fmt.Errorf("keyring: %s: the public key does not belong to the secret key", path)
	}
	return kp, nil
}

// readPublic reads a public key file (ZeroMQ certificate layout).
func readPublic(path string) (string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return "", fmt.Errorf("keyring: %w", err)
	}
	pub := certValue(b, "public-key")
	if !validZ85Key(pub) {
		return "", fmt.Errorf("keyring: %s: want public-key = \"<40 Z85 characters>\"", path)
	}
	return pub, nil
}

func certValue(b []byte, name string) string {
	for line := range strings.SplitSeq(string(b), "\n") {
		k, v, ok := strings.Cut(strings.TrimSpace(line), "=")
		if ok && strings.TrimSpace(k) == name {
			return strings.Trim(strings.TrimSpace(v), `"`)
		}
	}
	return ""
}

const z85Alphabet = "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ.-:+=^!/*?&<>()[]{}@%$#"

func validZ85Key(s string) bool {
	if len(s) != 40 {
		return false
	}
	for _, r := range s {
		if !strings.ContainsRune(z85Alphabet, r) {
			return false
		}
	}
	return true
}

func certText(kind string, kp KeyPair, withSecret bool) []byte {
	var b strings.Builder
	fmt.Fprintf(&b, "#   Clover CURVE %s certificate (ZeroMQ certificate layout)\n", kind)
	if withSecret {
		b.WriteString("#   Secret: keep this file readable by its owner only.\n")
	}
	b.WriteString("metadata\ncurve\n")
	fmt.Fprintf(&b, "    public-key = %q\n", kp.Public)
	if withSecret {
		fmt.Fprintf(&b, "    secret-key = %q\n", kp.Secret)
	}
	return []byte(b.String())
}

// randomHex is n random bytes in hex.
func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b) // never fails (crypto/rand)
	return hex.EncodeToString(b)
}

// PurposeRunToken derives the key of run tokens (see RunToken).
const PurposeRunToken = "clover run token"

// RunToken proves that the leader sent run of execution execID to client: the leader puts it in the
// dispatch, the client returns it with its ack, result and heartbeats, and any server (all hold the key)
// checks it without knowing who the leader chose. An admitted client therefore cannot report for, or take
// over, a run sent to another.
func RunToken(key []byte, execID string, run int, client string) string {
	// The HMAC is reused (Reset) rather than made for each token: hmac.New hashes the key's pads every
	// time, and the leader makes a token for every dispatch. One made under another key is not reused.
	t, _ := runTokenMACs.Get().(*runTokenMAC)
	if t == nil || !hmac.Equal(t.key, key) {
		t = &runTokenMAC{key: bytes.Clone(key), mac: hmac.New(sha256.New, key)}
	} else {
		t.mac.Reset()
	}
	defer runTokenMACs.Put(t)
	var b [64]byte
	buf := append(b[:0], execID...)
	buf = append(buf, 0)
	buf = strconv.AppendInt(buf, int64(max(run, 1)), 10)
	buf = append(buf, 0)
	buf = append(buf, client...)
	t.mac.Write(buf)
	sum := t.mac.Sum(t.sum[:0])
	return hex.EncodeToString(sum[:16])
}

type runTokenMAC struct {
	key []byte
	mac hash.Hash
	sum [sha256.Size]byte
}

var runTokenMACs sync.Pool

// CheckRunToken reports whether token is RunToken(key, execID, run, client), in constant time.
func CheckRunToken(key []byte, execID string, run int, client, token string) bool {
	return hmac.Equal([]byte(RunToken(key, execID, run, client)), []byte(token))
}

package keyring

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"
)

// private refuses a secret file others can read or write, or that another user owns.
func private(path string, st fs.FileInfo) error {
	if st.Mode()&0o077 != 0 {
		return fmt.Errorf("keyring: %s: mode %v lets others read it; chmod 600 it", path, st.Mode().Perm())
	}
	if sys, ok := st.Sys().(*syscall.Stat_t); ok && int(sys.Uid) != os.Geteuid() {
		return fmt.Errorf("keyring: %s: owned by uid %d, not by this user (uid %d)", path, sys.Uid, os.Geteuid())
	}
	return nil
}

// writeNew writes a file that must not exist yet. It reports whether it wrote it: an existing file is
// kept as it is, so that generating again never replaces a key in use.
func writeNew(path string, data []byte, mode os.FileMode) (bool, error) {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, mode)
	if errors.Is(err, fs.ErrExist) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("keyring: %w", err)
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		os.Remove(path)
		return false, fmt.Errorf("keyring: write %s: %w", path, err)
	}
	if err := f.Close(); err != nil {
		os.Remove(path)
		return false, fmt.Errorf("keyring: write %s: %w", path, err)
	}
	return true, nil
}

// GenerateCluster makes the cluster's files in dir (created 0700 if missing): the servers' keypair, the
// cluster secret, the clients' ZooKeeper password and an empty tokens file. Files that exist are kept. It
// returns the paths it wrote.
func GenerateCluster(dir string) ([]string, error) {
	if err := os.MkdirAll(filepath.Join(dir, ClientsDir), 0o700); err != nil {
		return nil, fmt.Errorf("keyring: %w", err)
	}
	var wrote []string
	note := func(path string, ok bool, err error) error {
		if ok {
			wrote = append(wrote, path)
		}
		return err
	}
	keyPath := filepath.Join(dir, ServerKeyFile)
	if _, err := os.Stat(keyPath); errors.Is(err, fs.ErrNotExist) {
		kp, err := NewKeyPair()
		if err != nil {
			return nil, err
		}
		ok, err := writeNew(keyPath, certText("server", kp, true), 0o600)
		if err := note(keyPath, ok, err); err != nil {
			return wrote, err
		}
	}
	kp, err := readKeyPair(keyPath)
	if err != nil {
		return wrote, err
	}
	pubPath := filepath.Join(dir, ServerPublicFile)
	ok, err := writeNew(pubPath, certText("server", kp, false), 0o644)
	if err := note(pubPath, ok, err); err != nil {
		return wrote, err
	}
	secretPath := filepath.Join(dir, ClusterSecretFile)
	ok, err = writeNew(secretPath, []byte(randomHex(32)+"\n"), 0o600)
	if err := note(secretPath, ok, err); err != nil {
		return wrote, err
	}
	cluster, err := readClusterSecret(dir)
	if err != nil {
		return wrote, err
	}
	clientsPath := filepath.Join(dir, ClientsSecretFile)
	ok, err = writeNew(clientsPath, []byte(Derive(cluster, PurposeZooKeeperClients)+"\n"), 0o600)
	if err := note(clientsPath, ok, err); err != nil {
		return wrote, err
	}
	tokensPath := filepath.Join(dir, TokensFile)
	ok, err = writeNew(tokensPath, []byte(tokensHeader), 0o600)
	return wrote, note(tokensPath, ok, err)
}

// GenerateClient makes client id's keypair in dir/clients (id.key, secret, and id.pub, which admits it to
// the servers' allowlist). An existing keypair is kept. It returns the paths it wrote.
func GenerateClient(dir, id string) ([]string, error) {
	if err := ValidID(id); err != nil {
		return nil, fmt.Errorf("keyring: %w", err)
	}
	if err := os.MkdirAll(filepath.Join(dir, ClientsDir), 0o700); err != nil {
		return nil, fmt.Errorf("keyring: %w", err)
	}
	var wrote []string
	keyPath := filepath.Join(dir, ClientsDir, id+".key")
	if _, err := os.Stat(keyPath); errors.Is(err, fs.ErrNotExist) {
		kp, err := NewKeyPair()
		if err != nil {
			return nil, err
		}
		ok, err := writeNew(keyPath, certText("client "+id, kp, true), 0o600)
		if err != nil {
			return nil, err
		}
		if ok {
			wrote = append(wrote, keyPath)
		}
	}
	kp, err := readKeyPair(keyPath)
	if err != nil {
		return wrote, err
	}
	pubPath := filepath.Join(dir, ClientsDir, id+".pub")
	ok, err := writeNew(pubPath, certText("client "+id, kp, false), 0o644)
	if ok {
		wrote = append(wrote, pubPath)
	}
	if err != nil {
		return wrote, err
	}
	cluster, err := readClusterSecret(dir)
	if err != nil {
		return wrote, fmt.Errorf("%w (a client's registration key comes from the cluster secret: make the cluster's keys first)", err)
	}
	secretPath := filepath.Join(dir, ClientsDir, id+".secret")
	ok, err = writeNew(secretPath, append(MemberKey(cluster, id), '\n'), 0o600)
	if ok {
		wrote = append(wrote, secretPath)
	}
	return wrote, err
}

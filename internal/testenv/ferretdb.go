package testenv

import (
	"cmp"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"
)

// FerretDB is a FerretDB server (MongoDB wire protocol over SQLite) on a loopback port.
type FerretDB struct {
	URI  string // mongodb://127.0.0.1:PORT/
	addr string
	dir  string
	bin  string
	t    T
	proc *Process
}

// FerretDBBinary returns the FerretDB binary, building it once through scripts/ferretdb.sh;
// CLOVER_FERRETDB overrides it.
func FerretDBBinary(t T) string {
	t.Helper()
	if p := os.Getenv("CLOVER_FERRETDB"); p != "" {
		return p
	}
	out, err := exec.Command(filepath.Join(RepoRoot(t), "scripts", "ferretdb.sh")).Output()
	if err != nil {
		t.Fatalf("testenv: build FerretDB with scripts/ferretdb.sh: %v (run `make deps`)", err)
	}
	return strings.TrimSpace(string(out))
}

// StartFerretDB starts FerretDB for the test and stops it when the test ends.
func StartFerretDB(t T) *FerretDB {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "ferretdb")
	if err := os.MkdirAll(filepath.Join(dir, "data"), 0o755); err != nil {
		t.Fatal(err)
	}
	port := FreePort(t)
	f := &FerretDB{
		addr: fmt.Sprintf("127.0.0.1:%d", port),
		dir:  dir,
		bin:  FerretDBBinary(t),
		t:    t,
	}
	f.URI = "mongodb://" + f.addr + "/"
	f.Start()
	return f
}

// Start (re)starts the server on the same port and data.
func (f *FerretDB) Start() {
	f.t.Helper()
	// CLOVER_TEST_FERRETDB_DEBUG gives FerretDB a debug address (its metrics and /debug/pprof), to profile
	// the store under a bench; one FerretDB at a time can have it.
	debug := cmp.Or(os.Getenv("CLOVER_TEST_FERRETDB_DEBUG"), "-")
	f.proc = StartProcess(f.t, "ferretdb", filepath.Join(f.dir, "ferretdb.log"), nil,
		f.bin, "--handler=sqlite", "--sqlite-url=file:"+filepath.Join(f.dir, "data")+"/",
		"--listen-addr="+f.addr, "--telemetry=disable", "--debug-addr="+debug, "--state-dir="+f.dir,
		"--log-level=warn")
	ok := Poll(30*time.Second, func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
		defer cancel()
		return f.proc.Exited() || dialOK(ctx, f.addr)
	})
	if !ok || f.proc.Exited() {
		f.t.Fatalf("testenv: ferretdb did not start on %s:\n%s", f.addr, f.proc.Tail(30))
	}
}

// Stop kills the server; Start brings it back with its data.
func (f *FerretDB) Stop() { f.proc.Kill() }

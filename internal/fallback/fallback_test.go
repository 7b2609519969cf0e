package fallback

import (
	"context"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

func e(seq int64) Entry {
	return Entry{ID: EntryID("c", 1, seq), Client: "c", Boot: 1, Seq: seq, Kind: KindResult, Payload: []byte{0, 1, 2, byte(seq)}, State: StateWaiting}
}

func seqs(entries []Entry) []int64 {
	var out []int64
	for _, x := range entries {
		out = append(out, x.Seq)
	}
	return out
}

func TestSpoolSurvivesReopenAndCutsATornLine(t *testing.T) {
	path := filepath.Join(t.TempDir(), "c.spool")
	s, err := OpenSpool(path, 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Append([]Entry{e(1), e(2)}); err != nil {
		t.Fatal(err)
	}
	s.Close()
	// A crash in the middle of the next append leaves half a line.
	f, _ := os.OpenFile(path, os.O_APPEND|os.O_WRONLY, 0)
	f.WriteString(`{"id":"c/3","client":"c","se`)
	f.Close()

	s, err = OpenSpool(path, 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if err := s.Append([]Entry{e(3)}); err != nil {
		t.Fatal(err)
	}
	got, err := s.Entries()
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(seqs(got), []int64{1, 2, 3}) || s.Len() != 3 || got[1].Payload[3] != 2 {
		t.Fatalf("entries %v (len %d), want 1 2 3 with payloads intact", seqs(got), s.Len())
	}
}

func TestSpoolIsBoundedAndNamesABadLine(t *testing.T) {
	dir := t.TempDir()
	s, err := OpenSpool(filepath.Join(dir, "c.spool"), 300)
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for ; n < 100; n++ {
		if err := s.Append([]Entry{e(int64(n + 1))}); err != nil {
			if !errors.Is(err, ErrSpoolFull) {
				t.Fatalf("append %d: %v, want ErrSpoolFull", n, err)
			}
			break
		}
	}
	if n == 0 || n == 100 {
		t.Fatalf("took %d entries in 300 bytes", n)
	}
	if err := s.Clear(); err != nil || s.Len() != 0 {
		t.Fatalf("clear: %v, len %d", err, s.Len())
	}
	if err := s.Append([]Entry{e(1)}); err != nil {
		t.Fatalf("append after clear: %v", err)
	}
	s.Close()

	bad := filepath.Join(dir, "bad.spool")
	os.WriteFile(bad, []byte("{\"id\":\"c/1\",\"client\":\"c\",\"seq\":1,\"kind\":\"result\",\"payload\":\"AA==\"}\nnot json\n"), 0o600)
	if _, err := OpenSpool(bad, 1<<20); err == nil || !strings.Contains(err.Error(), "bad.spool line 2") {
		t.Fatalf("open of a spool with a bad line: %v, want an error naming line 2", err)
	}
}

// memStore is a shared queue that can be made unreachable.
type memStore struct {
	mu      sync.Mutex
	down    bool
	entries map[string]Entry
	order   []string
}

func (m *memStore) AppendFallback(_ context.Context, entries []Entry) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.down {
		return errors.New("connection refused")
	}
	for _, x := range entries {
		if _, ok := m.entries[x.ID]; !ok {
			m.entries[x.ID] = x
			m.order = append(m.order, x.ID)
		}
	}
	return nil
}

func (m *memStore) setDown(down bool) {
	m.mu.Lock()
	m.down = down
	m.mu.Unlock()
}

func (m *memStore) ids() []string {
	m.mu.Lock()
	defer m.mu.Unlock()
	return slices.Clone(m.order)
}

func TestQueueSpoolsWhileMongoIsDownAndMovesInOrder(t *testing.T) {
	dir := t.TempDir()
	st := &memStore{entries: map[string]Entry{}}
	clock := time.Date(2026, 11, 23, 10, 0, 0, 0, time.UTC)
	now := func() time.Time { return clock }
	opens := 0
	open := func(context.Context) (Appender, error) {
		opens++
		if opens == 1 {
			return nil, errors.New("no server")
		}
		return st, nil
	}
	q, err := NewQueue("c", dir, 1<<20, open, slog.New(slog.DiscardHandler), now)
	if err != nil {
		t.Fatal(err)
	}
	ctx := t.Context()
	put := func(kind Kind) Entry {
		t.Helper()
		x, err := q.Put(ctx, kind, "", []byte("p"))
		if err != nil {
			t.Fatal(err)
		}
		return x
	}
	first := put(KindResult) // cannot connect: spooled
	if q.Spooled() != 1 {
		t.Fatalf("spooled %d after a failed connect", q.Spooled())
	}
	clock = clock.Add(reopenEvery)
	second := put(KindRequest) // connects, but the spool is not empty: behind it, in the spool
	if q.Spooled() != 2 || len(st.ids()) != 0 {
		t.Fatalf("spooled %d, stored %v: a new entry went around the spool", q.Spooled(), st.ids())
	}
	st.setDown(true)
	if _, err := q.Move(ctx); err == nil {
		t.Fatal("moved the spool to a store that is down")
	}
	st.setDown(false)
	if n, err := q.Move(ctx); err != nil || n != 0 {
		t.Fatalf("move right after a failed one = %d, %v; want it to wait", n, err)
	}
	clock = clock.Add(reopenEvery)
	if n, err := q.Move(ctx); err != nil || n != 2 {
		t.Fatalf("move = %d, %v", n, err)
	}
	third := put(KindResult) // straight to the store now
	if got, want := st.ids(), []string{first.ID, second.ID, third.ID}; !slices.Equal(got, want) || q.Spooled() != 0 {
		t.Fatalf("stored %v, want %v; spooled %d", got, want, q.Spooled())
	}

	// Down again, then the client restarts: the spool of the old process moves, nothing twice.
	st.setDown(true)
	fourth := put(KindAck)
	q.Close()
	st.setDown(false)
	q2, err := NewQueue("c", dir, 1<<20, func(context.Context) (Appender, error) { return st, nil }, slog.New(slog.DiscardHandler), func() time.Time { return clock.Add(time.Second) })
	if err != nil {
		t.Fatal(err)
	}
	defer q2.Close()
	if q2.Spooled() != 1 {
		t.Fatalf("restarted queue sees %d spooled, want 1", q2.Spooled())
	}
	fifth, err := q2.Put(ctx, KindResult, "", []byte("p"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := q2.Move(ctx); err != nil {
		t.Fatal(err)
	}
	got := st.ids()
	if want := []string{first.ID, second.ID, third.ID, fourth.ID, fifth.ID}; !slices.Equal(got, want) {
		t.Fatalf("stored %v, want %v", got, want)
	}
	if fifth.Boot <= fourth.Boot || fifth.Seq != 1 {
		t.Fatalf("the restarted client's entry %+v does not sort after the old one's %+v", fifth, fourth)
	}
}

// FuzzOpenSpool: a spool file with any content opens, or fails with an error; it never panics, and what
// it opens holds only valid entries.
func FuzzOpenSpool(f *testing.F) {
	f.Add([]byte("{\"id\":\"c/1\",\"client\":\"c\",\"seq\":1,\"kind\":\"result\",\"payload\":\"AA==\"}\n"))
	f.Add([]byte("{\"id\":\"c/1\",\"client\":\"c\",\"seq\":1,\"kind\":\"result\",\"payload\":\"AA==\"}\n{\"id\""))
	f.Add([]byte("\n\n"))
	f.Add([]byte("{\"seq\":-1}\n"))
	f.Fuzz(func(t *testing.T, content []byte) {
		path := filepath.Join(t.TempDir(), "f.spool")
		if err := os.WriteFile(path, content, 0o600); err != nil {
			t.Fatal(err)
		}
		s, err := OpenSpool(path, 1<<20)
		if err != nil {
			return
		}
		defer s.Close()
		got, err := s.Entries()
		if err != nil {
			t.Fatalf("opened, then Entries failed: %v", err)
		}
		for _, x := range got {
			if err := x.Check(); err != nil {
				t.Fatalf("opened an invalid entry: %v", err)
			}
		}
		if len(got) != s.Len() {
			t.Fatalf("Len %d, Entries %d", s.Len(), len(got))
		}
	})
}

// An entry's signature covers what its client wrote, including its time as the store keeps it.
func TestAnEntrySignatureCoversWhatTheClientWrote(t *testing.T) {
	key := []byte("member key")
	e := Entry{Client: "c1", Kind: KindDeclare, At: time.Date(2030, 1, 1, 0, 0, 0, 123_000_000, time.UTC), Payload: []byte(`[{"name":"x"}]`)}
	e.Sig = e.Signature(key)
	if !e.SignedBy(key) {
		t.Fatal("a signed entry does not verify")
	}
	for name, change := range map[string]func(*Entry){
		"client":  func(e *Entry) { e.Client = "c2" },
		"kind":    func(e *Entry) { e.Kind = KindRequest },
		"time":    func(e *Entry) { e.At = e.At.Add(time.Hour) },
		"payload": func(e *Entry) { e.Payload = []byte(`[{"name":"y"}]`) },
	} {
		f := e
		change(&f)
		if f.SignedBy(key) {
			t.Errorf("an entry whose %s changed still verifies", name)
		}
	}
	if e.SignedBy([]byte("another key")) {
		t.Fatal("an entry verifies with another key")
	}
}

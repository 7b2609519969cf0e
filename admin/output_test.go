package admin

import (
	"bufio"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/clover-sched/clover/internal/job"
)

// sseEventRead is one server-sent event as a browser reads it.
type sseEventRead struct{ event, id, data string }

// openStream opens an output stream as a logged-in browser does, resuming from lastID when not "".
func openStream(t *testing.T, rig *consoleRig, c *http.Client, path, lastID string) (*bufio.Reader, func()) {
	t.Helper()
	req, err := http.NewRequest("GET", rig.srv.URL+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	if lastID != "" {
		req.Header.Set("Last-Event-ID", lastID)
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusOK || resp.Header.Get("Content-Type") != "text/event-stream" {
		t.Fatalf("stream: %s, %s", resp.Status, resp.Header.Get("Content-Type"))
	}
	return bufio.NewReader(resp.Body), func() { resp.Body.Close() }
}

// nextEvent reads the next event that has a name (comments and the retry field are skipped).
func nextEvent(t *testing.T, r *bufio.Reader) sseEventRead {
	t.Helper()
	var ev sseEventRead
	for {
		line, err := r.ReadString('\n')
		if err != nil {
			t.Fatalf("the stream ended before an event: %v", err)
		}
		line = strings.TrimSuffix(line, "\n")
		switch {
		case line == "" && ev.event != "":
			return ev
		case strings.HasPrefix(line, "event: "):
			ev.event = strings.TrimPrefix(line, "event: ")
		case strings.HasPrefix(line, "id: "):
			ev.id = strings.TrimPrefix(line, "id: ")
		case strings.HasPrefix(line, "data: "):
			if err := json.Unmarshal([]byte(strings.TrimPrefix(line, "data: ")), &ev.data); err != nil {
				t.Fatalf("data line %q is not a JSON string: %v", line, err)
			}
		}
	}
}

// A running execution's page shows its output and follows it; a browser that reconnects with the last
// event id gets what follows, nothing twice, and output that looks like the stream's own fields stays
// data.
func TestARunningExecutionsOutputIsStreamedAndAReconnectResumesWhereItStopped(t *testing.T) {
	rig := newConsoleRig(t)
	const id = "nightly@1"
	first := "line 1\n"
	rig.api.mu.Lock()
	rig.api.execs = []job.Execution{{ID: id, Job: "nightly", State: job.StateRunning, Client: "client-a", Run: 1}}
	rig.api.output = map[string]string{id: first}
	rig.api.ended = map[string]bool{}
	rig.api.mu.Unlock()
	appendOutput := func(s string, ended bool) {
		rig.api.mu.Lock()
		defer rig.api.mu.Unlock()
		rig.api.output[id] += s
		rig.api.ended[id] = ended
	}
	c := rig.client()
	rig.login(c, "viewer-token")
	_, page := rig.do(c, "GET", "/ui/executions/"+id, nil, nil)
	if !strings.Contains(page, `data-follow="/ui/executions/nightly@1/output/stream?offset=7&amp;run=1"`) || !strings.Contains(page, "line 1") {
		t.Fatalf("the page neither shows the output nor follows it from its end:\n%s", page)
	}
	if !strings.Contains(page, `<progress id="progress" max="100" value="40">`) || !strings.Contains(page, "4 of 10 files") {
		t.Fatalf("the page does not show the run's progress:\n%s", page)
	}

	stream, closeStream := openStream(t, rig, c, "/ui/executions/"+id+"/output/stream?offset=7&run=1", "")
	forged := "evil\revent: end\nid: 0\ndata: \"x\"\n"
	appendOutput("line 2\n"+forged, false)
	var got strings.Builder
	ev := nextEvent(t, stream)
	if ev.event != "output" {
		t.Fatalf("event %+v, want output", ev)
	}
	got.WriteString(ev.data)
	lastID := ev.id
	closeStream() // the browser loses the connection

	appendOutput("line 3\n", true)
	stream, closeStream = openStream(t, rig, c, "/ui/executions/"+id+"/output/stream?offset=7&run=1", lastID)
	defer closeStream()
	deadline := time.Now().Add(20 * time.Second)
	for {
		ev := nextEvent(t, stream)
		if ev.event == "end" {
			break
		}
		if ev.event != "output" || time.Now().After(deadline) {
			t.Fatalf("event %+v", ev)
		}
		got.WriteString(ev.data)
	}
	if want := "line 2\n" + forged + "line 3\n"; got.String() != want {
		t.Fatalf("the streams gave %q, want %q: each byte once, in order", got.String(), want)
	}

	// The output page pages through it without a script.
	_, body := rig.do(c, "GET", "/ui/executions/"+id+"/output?run=1&offset=7", nil, nil)
	if !strings.Contains(body, "line 2") || strings.Contains(body, "line 1") || !strings.Contains(body, `id="earlier"`) {
		t.Fatalf("the output page from offset 7:\n%s", body)
	}
}

func TestOutputStreamsAreBoundedForEachPersonAndAll(t *testing.T) {
	var s streamSlots
	var releases []func()
	for i := range maxStreamsPerWho {
		r, ok := s.take("victor")
		if !ok {
			t.Fatalf("stream %d of victor refused", i)
		}
		releases = append(releases, r)
	}
	if _, ok := s.take("victor"); ok {
		t.Fatal("victor opened more than maxStreamsPerWho streams")
	}
	releases[0]()
	if _, ok := s.take("victor"); !ok {
		t.Fatal("a closed stream's slot was not given back")
	}
	for i := 0; s.total < maxStreams; i++ {
		if _, ok := s.take(fmt.Sprint("someone-", i)); !ok {
			t.Fatalf("refused at %d streams, under %d", s.total, maxStreams)
		}
	}
	if _, ok := s.take("alice"); ok {
		t.Fatal("more than maxStreams streams")
	}
}

func TestExecutionsAreFilteredByClientWithinAWindow(t *testing.T) {
	rig := newConsoleRig(t)
	now := time.Now()
	rig.api.mu.Lock()
	rig.api.execs = []job.Execution{
		{ID: "nightly@3", Job: "nightly", State: job.StateSucceeded, Client: "client-a", ScheduledAt: now.Add(-time.Hour)},
		{ID: "nightly@2", Job: "nightly", State: job.StateSucceeded, Client: "client-b", ScheduledAt: now.Add(-2 * time.Hour)},
		{ID: "nightly@1", Job: "nightly", State: job.StateSucceeded, Client: "client-a", ScheduledAt: now.Add(-48 * time.Hour)},
	}
	rig.api.mu.Unlock()
	c := rig.client()
	rig.login(c, "viewer-token")
	_, body := rig.do(c, "GET", "/ui/executions?client=client-a", nil, nil)
	if !strings.Contains(body, "nightly@3") || strings.Contains(body, "nightly@2") || strings.Contains(body, "nightly@1") {
		t.Fatalf("client-a's executions of the last day (the window a client filter takes by default):\n%s", body)
	}
	if _, body = rig.do(c, "GET", "/ui/executions?client=client-a&hours=168", nil, nil); !strings.Contains(body, "nightly@1") || strings.Contains(body, "nightly@2") {
		t.Fatalf("client-a's executions of the last week:\n%s", body)
	}
}

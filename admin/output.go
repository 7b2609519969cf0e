package admin

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"sync"
	"time"

	"github.com/clover-sched/clover/api"
)

// A run's output is shown three ways: the execution page shows its last outputPage bytes when it loads
// (no JavaScript needed), the output page pages through what is kept a outputPage at a time, and the
// page's script follows it live through outputStream (server-sent events). Every way reads the API's
// output route a chunk at a time, by byte offset: nothing loads a long output whole.

// outputPage is how many bytes of output one page or one read shows.
const outputPage = 64 << 10

// outputData is a chunk of a run's output as the pages show it.
type outputData struct {
	Exec   string
	C      api.OutputChunk
	Live   bool   // more may follow: the run is under way or its end is not yet known
	Stream string // the URL the script follows it at
	// Earlier and Later are the output page's neighbours ("" when there is none).
	Earlier, Later string
}

func newOutputData(exec string, c api.OutputChunk) outputData {
	d := outputData{Exec: exec, C: c, Live: !c.Ended}
	base := "/ui/executions/" + url.PathEscape(exec) + "/output"
	d.Stream = base + "/stream?" + url.Values{"run": {strconv.Itoa(c.Run)}, "offset": {strconv.FormatInt(c.Next, 10)}}.Encode()
	if c.Offset > c.First {
		d.Earlier = base + "?" + url.Values{"run": {strconv.Itoa(c.Run)}, "offset": {strconv.FormatInt(max(c.Offset-outputPage, c.First), 10)}}.Encode()
	}
	if c.Next < c.End {
		d.Later = base + "?" + url.Values{"run": {strconv.Itoa(c.Run)}, "offset": {strconv.FormatInt(c.Next, 10)}}.Encode()
	}
	return d
}

// readOutput reads a chunk of an execution's output through the API; offset -1 is its last outputPage.
func (c *Console) readOutput(r *http.Request, id string, run int, offset int64) (api.OutputChunk, error) {
	q := url.Values{"max": {strconv.Itoa(outputPage)}}
	if run > 0 {
		q.Set("run", strconv.Itoa(run))
	}
	if offset >= 0 {
		q.Set("offset", strconv.FormatInt(offset, 10))
	}
	var chunk api.OutputChunk
	err := c.get(r, "/api/v1/executions/"+url.PathEscape(id)+"/output?"+q.Encode(), &chunk)
	return chunk, err
}

// outputQuery reads the run and offset a request names (0 and -1 when it names none).
func outputQuery(r *http.Request) (run int, offset int64, err error) {
	q := r.URL.Query()
	offset = -1
	if v := q.Get("run"); v != "" {
		if run, err = strconv.Atoi(v); err != nil || run < 1 {
			return 0, 0, fmt.Errorf("run %q: want 1 or more", v)
		}
	}
	if v := q.Get("offset"); v != "" {
		if offset, err = strconv.ParseInt(v, 10, 64); err != nil || offset < 0 {
			return 0, 0, fmt.Errorf("offset %q: want a byte offset", v)
		}
	}
	return run, offset, nil
}

// outputPageHandler shows outputPage bytes of a run's output from an offset, with links to the pages
// before and after it.
func (c *Console) outputPageHandler(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	run, offset, err := outputQuery(r)
	if err != nil {
		c.fail(w, r, http.StatusBadRequest, err)
		return
	}
	chunk, err := c.readOutput(r, id, run, offset)
	if err != nil {
		c.fail(w, r, http.StatusBadGateway, err)
		return
	}
	c.render(w, r, http.StatusOK, "output", newOutputData(id, chunk))
}

// streamLife bounds one stream: the browser's EventSource comes back with the offset it reached
// (Last-Event-ID), and the session is checked again then.
const streamLife = 2 * time.Minute

// outputStream follows a run's output as server-sent events: each "output" event holds the next bytes,
// as text, with the offset after them as its id, so that a reconnecting browser (Last-Event-ID) resumes
// where it stopped, and nothing is sent twice. An "end" event says the run ended and nothing follows.
func (c *Console) outputStream(w http.ResponseWriter, r *http.Request) {
	release, ok := c.streams.take(viewerOf(r.Context()).Name)
	if !ok {
		// The browser tries again (console.js): by then a tab may have closed.
		http.Error(w, "too many output streams open; close some", http.StatusTooManyRequests)
		return
	}
	defer release()
	id := r.PathValue("id")
	run, offset, err := outputQuery(r)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	if v := r.Header.Get("Last-Event-ID"); v != "" {
		if n, err := strconv.ParseInt(v, 10, 64); err == nil && n >= 0 {
			offset = n
		}
	}
	offset = max(offset, 0)
	rc := http.NewResponseController(w)
	h := w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Accel-Buffering", "no")
	w.WriteHeader(http.StatusOK)
	ctx, cancel := context.WithTimeout(r.Context(), streamLife)
	defer cancel()
	rr := r.WithContext(ctx)
	send := func(event string) bool {
		_ = rc.SetWriteDeadline(time.Now().Add(30 * time.Second))
		if _, err := fmt.Fprint(w, event); err != nil {
			return false
		}
		return rc.Flush() == nil
	}
	if !send("retry: 2000\n\n") {
		return
	}
	idle := 0
	for ctx.Err() == nil {
		chunk, err := c.readOutput(rr, id, run, offset)
		if err != nil {
			if ctx.Err() == nil {
				send(sseEvent("failure", strconv.FormatInt(offset, 10), err.Error()))
			}
			return
		}
		run = chunk.Run
		if chunk.Next > offset || chunk.Offset > offset {
			text := chunk.Text
			if chunk.Offset > offset {
				text = fmt.Sprintf("[... %d bytes no longer kept ...]\n", chunk.Offset-offset) + text
			}
			offset = chunk.Next
			if !send(sseEvent("output", strconv.FormatInt(offset, 10), text)) {
				return
			}
			idle = 0
			continue
		}
		if chunk.Ended {
			send(sseEvent("end", strconv.FormatInt(offset, 10), "ended"))
			return
		}
		idle++
		if idle%15 == 0 && !send(": still running\n\n") {
			return
		}
		select {
		case <-ctx.Done():
		case <-time.After(time.Second):
		}
	}
}

// sseEvent is one server-sent event. Its data is a JSON string, on one line: output may hold any byte,
// and a carriage return or newline in a data line would end it (and could forge an event of its own).
func sseEvent(event, id, data string) string {
	b, _ := json.Marshal(data)
	return "event: " + event + "\nid: " + id + "\ndata: " + string(b) + "\n\n"
}

// Each stream reads the API (a store read and a question to a client) every second, so their number is
// bounded, for the console and for each person.
const (
	maxStreams       = 64
	maxStreamsPerWho = 8
)

// streamSlots counts the output streams open.
type streamSlots struct {
	mu    sync.Mutex
	total int
	byWho map[string]int
}

func (s *streamSlots) take(who string) (release func(), ok bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.byWho == nil {
		s.byWho = map[string]int{}
	}
	if s.total >= maxStreams || s.byWho[who] >= maxStreamsPerWho {
		return nil, false
	}
	s.total++
	s.byWho[who]++
	return func() {
		s.mu.Lock()
		defer s.mu.Unlock()
		s.total--
		if s.byWho[who]--; s.byWho[who] == 0 {
			delete(s.byWho, who)
		}
	}, true
}

package server

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/clover-sched/clover/api"
	"github.com/clover-sched/clover/internal/job"
	"github.com/clover-sched/clover/internal/wire"
)

// A run's output is on its client while the run is under way. A server asks for it (wire.OutputAsk) and
// waits for the answer; the client sends it to the asking server only, so any server (the one serving the
// console, a follower too) reads output without the leader.

// outputAskTimeout bounds the wait for a client's answer: a client that does not answer is shown as
// "nothing yet", and the reader asks again.
const outputAskTimeout = 3 * time.Second

// outputAsks are the asks waiting for their answers.
type outputAsks struct {
	mu      sync.Mutex
	nonce   string // random for each process: an answer to an ask of an earlier process matches none
	seq     uint64
	waiting map[string]outputWait
}

type outputWait struct {
	client string // the only peer whose answer is taken
	answer chan *wire.Output
}

func (o *outputAsks) open(server, client string) (string, chan *wire.Output) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.waiting == nil {
		o.waiting = map[string]outputWait{}
		o.nonce = rand.Text()[:8]
	}
	o.seq++
	id := server + "." + o.nonce + "." + strconv.FormatUint(o.seq, 10)
	ch := make(chan *wire.Output, 1)
	o.waiting[id] = outputWait{client: client, answer: ch}
	return id, ch
}

func (o *outputAsks) close(id string) {
	o.mu.Lock()
	defer o.mu.Unlock()
	delete(o.waiting, id)
}

// deliver hands an answer to its ask; an answer nobody waits for, or from another client than the one
// asked, is dropped (false).
func (o *outputAsks) deliver(m *wire.Output) bool {
	o.mu.Lock()
	defer o.mu.Unlock()
	w, ok := o.waiting[m.Ask]
	if !ok || w.client != m.From {
		return false
	}
	delete(o.waiting, m.Ask)
	w.answer <- m
	return true
}

// askOutput asks client for output of a run and waits for the answer.
func (s *Server) askOutput(ctx context.Context, client, execID string, run int, offset int64, max int) (*wire.Output, error) {
	id, answer := s.outputs.open(s.cfg.ID, client)
	defer s.outputs.close(id)
	frame, err := wire.Encode(&wire.OutputAsk{
		Header: wire.Header{From: s.cfg.ID, SentAt: s.now()}, Ask: id, ExecID: execID, Run: run, Offset: offset, Max: max,
	})
	if err != nil {
		return nil, err
	}
	if err := s.outbox.Send(client, frame); err != nil {
		return nil, fmt.Errorf("ask %s for output: %w", client, err)
	}
	t := time.NewTimer(outputAskTimeout)
	defer t.Stop()
	select {
	case m := <-answer:
		return m, nil
	case <-t.C:
		return nil, fmt.Errorf("ask %s for output: no answer in %s", client, outputAskTimeout)
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// getOutput serves GET /api/v1/executions/{id}/output.
func (s *Server) getOutput(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	offset := int64(-1)
	if v := q.Get("offset"); v != "" {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil || n < 0 {
			writeError(w, http.StatusBadRequest, fmt.Errorf("offset %q: want a byte offset, 0 or more", v))
			return
		}
		offset = n
	}
	maxBytes := wire.MaxOutputChunk
	if v := q.Get("max"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > wire.MaxOutputChunk {
			writeError(w, http.StatusBadRequest, fmt.Errorf("max %q: want 1-%d bytes", v, wire.MaxOutputChunk))
			return
		}
		maxBytes = n
	}
	run := 0
	if v := q.Get("run"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 {
			writeError(w, http.StatusBadRequest, fmt.Errorf("run %q: want 1 or more", v))
			return
		}
		run = n
	}
	e, err := s.store.GetExecution(r.Context(), r.PathValue("id"))
	if err != nil {
		writeError(w, storeStatus(err), err)
		return
	}
	writeJSON(w, http.StatusOK, s.readOutput(r.Context(), e, run, offset, maxBytes))
}

// readOutput reads up to n bytes of a run of e (0: the newest) from offset (-1: the last n bytes): from its client while
// it may be under way there, else from its stored result.
func (s *Server) readOutput(ctx context.Context, e job.Execution, run int, offset int64, n int) api.OutputChunk {
	if run == 0 {
		run = e.Run
		for _, ev := range e.Runs {
			run = max(run, ev.Run)
		}
		run = max(run, 1)
	}
	chunk := api.OutputChunk{Execution: e.ID, Run: run, Offset: offset, Next: offset, Source: "none", Client: e.Client}
	if res, client := storedRun(e, run); res != nil {
		chunk.Client = client
		return storedOutput(chunk, res, offset, n)
	}
	if e.Client == "" || e.State.Terminal() {
		// Not dispatched yet, or ended without output (skipped, given up): nothing, or nothing more.
		chunk.Offset, chunk.Next, chunk.Ended = max(offset, 0), max(offset, 0), e.State.Terminal()
		chunk.End = chunk.Next
		return chunk
	}
	ask := offset
	if offset < 0 {
		// The last n bytes: first learn where the output ends.
		m, err := s.askOutput(ctx, e.Client, e.ID, run, 1<<62, 1)
		if err != nil || m.Unknown {
			chunk.Offset, chunk.Next = 0, 0
			return chunk
		}
		ask = max(m.End-int64(n), 0)
	}
	m, err := s.askOutput(ctx, e.Client, e.ID, run, ask, n)
	if err == nil && (m.ExecID != e.ID || m.Run != run || m.Offset < min(ask, m.End)) {
		err = fmt.Errorf("the client answered for %s run %d from %d, not %s run %d from %d", m.ExecID, m.Run, m.Offset, e.ID, run, ask)
	}
	if err != nil || m.Unknown {
		if err != nil && !errors.Is(err, context.Canceled) {
			s.logger.Debug("no output from the client", "execution", e.ID, "client", e.Client, "err", err)
		}
		chunk.Offset, chunk.Next = max(ask, 0), max(ask, 0)
		return chunk
	}
	chunk.Source, chunk.Ended, chunk.End, chunk.First = "client", m.Ended, m.End, m.First
	return withText(chunk, m.Offset, m.Data, m.Ended && m.Offset+int64(len(m.Data)) == m.End)
}

// storedRun is the reported result of run of e, and the client that ran it; nil if it has not ended.
func storedRun(e job.Execution, run int) (*job.Result, string) {
	for _, ev := range e.Runs {
		if max(ev.Run, 1) == run && ev.Result != nil {
			return ev.Result, ev.Client
		}
	}
	if e.Result != nil && max(e.Run, 1) == run && e.State.Terminal() {
		return e.Result, e.Client
	}
	return nil, ""
}

// storedOutput is the chunk of a reported result's tail from offset.
func storedOutput(chunk api.OutputChunk, res *job.Result, offset int64, n int) api.OutputChunk {
	out := []byte(res.Output)
	end := max(res.OutputBytes, int64(len(out)))
	first := end - int64(len(out))
	if offset < 0 {
		offset = end - int64(n)
	}
	start := min(max(offset, first), end)
	data := out[start-first:]
	data = data[:min(len(data), n)]
	chunk.Source, chunk.Ended, chunk.End, chunk.First = "stored", true, end, first
	return withText(chunk, start, data, start+int64(len(data)) == end)
}

// withText sets the chunk's bytes. Unless whole (nothing follows that could complete it), a character cut
// at the end is left for the next chunk, so that no reader shows it broken; but never all of the chunk:
// bytes that are not UTF-8 may never be completed, and a reader must always get on.
func withText(chunk api.OutputChunk, start int64, data []byte, whole bool) api.OutputChunk {
	if !whole {
		for cut := 1; cut <= utf8.UTFMax && cut < len(data); cut++ {
			if utf8.RuneStart(data[len(data)-cut]) {
				if !utf8.FullRune(data[len(data)-cut:]) {
					data = data[:len(data)-cut]
				}
				break
			}
		}
	}
	chunk.Offset, chunk.Text, chunk.Next = start, string(data), start+int64(len(data))
	return chunk
}

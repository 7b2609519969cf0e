package client

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sync"

	"golang.org/x/sys/unix"

	"github.com/clover-sched/clover/internal/shellwrap"
	"github.com/clover-sched/clover/internal/wire"
)

// A run's output is read two ways: its last job.MaxOutput bytes go in the run's report, and a server may
// ask for it from a byte offset while the run is under way (wire.OutputAsk: the console's live view).
// Offsets count every byte the run wrote, so a reader that comes back with the offset it reached gets
// what follows and nothing twice, even after the oldest bytes were dropped.

// outputLog is the output of a run written through JobContext.Output (Go handlers, and shell runs that
// are not journaled): the last keep bytes, and the count of all.
type outputLog struct {
	mu    sync.Mutex
	keep  int
	buf   []byte // its last min(keep, len(buf)) bytes are kept; it holds up to 2*keep to copy less often
	total int64
	// fileEnd is, for a journaled shell run, the size of its output file when outputTail copied its tail
	// here (-1 until then): the report's byte count, without opening the file again.
	fileEnd int64
}

func newOutputLog(keep int) *outputLog { return &outputLog{keep: keep, fileEnd: -1} }

// fileSize is the size of the run's output file outputTail saw, if it copied its tail here.
func (o *outputLog) fileSize() (int64, bool) {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.fileEnd, o.fileEnd >= 0
}

// fileBytes is how many bytes the run wrote to its output file in dir: what outputTail saw, else read now.
func (o *outputLog) fileBytes(dir string) int64 {
	if n, ok := o.fileSize(); ok {
		return n
	}
	return outputFileSize(dir)
}

func (o *outputLog) Write(p []byte) (int, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	n := len(p)
	o.total += int64(n)
	if len(p) >= o.keep {
		p = p[len(p)-o.keep:]
		o.buf = o.buf[:0]
	}
	if len(o.buf)+len(p) > 2*o.keep {
		o.buf = append(o.buf[:0], o.buf[len(o.buf)-(o.keep-len(p)):]...)
	}
	o.buf = append(o.buf, p...)
	return n, nil
}

// kept is the part of buf that is kept; under mu.
func (o *outputLog) kept() []byte { return o.buf[max(len(o.buf)-o.keep, 0):] }

// String is the output kept.
func (o *outputLog) String() string {
	o.mu.Lock()
	defer o.mu.Unlock()
	return string(o.kept())
}

// tail is the last n bytes kept.
func (o *outputLog) tail(n int) string {
	o.mu.Lock()
	defer o.mu.Unlock()
	k := o.kept()
	return string(k[max(len(k)-n, 0):])
}

// size is how many bytes were written.
func (o *outputLog) size() int64 {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.total
}

// readAt returns up to n bytes from offset off, or from the oldest byte kept (first) when off is older;
// start is the offset of data, end the count of bytes written.
func (o *outputLog) readAt(off int64, n int) (data []byte, first, start, end int64) {
	o.mu.Lock()
	defer o.mu.Unlock()
	k := o.kept()
	first = o.total - int64(len(k))
	start = min(max(off, first), o.total)
	i := int(start - first)
	return append([]byte(nil), k[i:min(i+n, len(k))]...), first, start, o.total
}

// A journaled shell run writes its output to the file "out" in its directory: the command must outlive
// the client, and so cannot write to a pipe the client reads. The file keeps at most maxOutputFile bytes
// on disk: past that, its head is cut (see capOutput) and the file outputWindowFile says which offsets
// the file still holds.
const (
	// maxOutputFile bounds the bytes a shell run's output file holds, so that a chatty command cannot
	// fill the state directory.
	maxOutputFile = 1 << 20
	// outputFileKeep is what a cut keeps: enough for a reader to follow a fast writer.
	outputFileKeep = 256 << 10
	// outputWindowFile holds "first shift": the oldest offset the file holds, and the offset of its
	// first byte (not 0 only after a cut on a file system without holes, see capOutput). A slot's is
	// removed with its output file.
	outputWindowFile = shellwrap.OutputWindowFile
)

// outputFiles serializes cuts and reads of output files: a read never sees a cut half made.
var outputFiles sync.Mutex

// outputWindow reads a run directory's outputWindowFile: 0, 0 when there is none.
func outputWindow(dir string) (first, shift int64) {
	b, err := os.ReadFile(filepath.Join(dir, outputWindowFile))
	if err != nil {
		return 0, 0
	}
	if _, err := fmt.Sscan(string(b), &first, &shift); err != nil || shift < 0 || first < shift {
		return 0, 0
	}
	return first, shift
}

func writeOutputWindow(dir string, first, shift int64) error {
	return writeWhole(filepath.Join(dir, outputWindowFile), fmt.Appendf(nil, "%d %d\n", first, shift))
}

// capOutput cuts the head of a run's output file once it holds more than maxOutputFile bytes, keeping the
// last outputFileKeep or so. It punches a hole (the file keeps its size and every offset its byte, on
// disk only the tail remains), so that the command's appends (O_APPEND) race with nothing. Where the file
// system has no holes, it truncates the file and writes the tail back: a line written during that cut may
// be lost, and the window file shifts offsets so that readers still count from the run's start.
func capOutput(dir string) {
	path := filepath.Join(dir, "out")
	if fi, err := os.Stat(path); err != nil || fi.Size() <= maxOutputFile {
		return // the common case, checked every second: one stat (the size counts any hole, so it bounds end-first)
	}
	outputFiles.Lock()
	defer outputFiles.Unlock()
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		return
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return
	}
	first, shift := outputWindow(dir)
	end := shift + fi.Size()
	if end-first <= maxOutputFile {
		return
	}
	cut := (end - outputFileKeep) &^ 4095 // whole blocks: a partial one would be zeroed, not freed
	if cut <= first {
		return
	}
	// The window first: a reader never takes the hole for output.
	if writeOutputWindow(dir, cut, shift) != nil {
		return
	}
	err = unix.Fallocate(int(f.Fd()), unix.FALLOC_FL_PUNCH_HOLE|unix.FALLOC_FL_KEEP_SIZE, first-shift, cut-first)
	if err == nil || !errors.Is(err, unix.EOPNOTSUPP) && !errors.Is(err, unix.ENOSYS) {
		return
	}
	keep := make([]byte, end-cut)
	n, _ := f.ReadAt(keep, cut-shift)
	if f.Truncate(0) != nil {
		return
	}
	_, _ = f.WriteAt(keep[:n], 0) // with O_APPEND on the command's side, its writes go on after these
	_ = writeOutputWindow(dir, cut, cut)
}

// readOutputFile returns up to n bytes of a run's output file from offset off, or from the oldest the
// file holds when off is older; start is the offset of data, end the bytes the run has written.
func readOutputFile(dir string, off int64, n int) (data []byte, start, end int64, err error) {
	data, _, start, end, err = readOutputWindow(dir, off, n)
	return data, start, end, err
}

// readOutputWindow is readOutputFile that also says the oldest offset the file holds.
func readOutputWindow(dir string, off int64, n int) (data []byte, first, start, end int64, err error) {
	return readOutputAt(dir, func(int64) int64 { return off }, n)
}

// readOutputAt is readOutputWindow from the offset offAt gives for the end of the output. The file is read
// with plain system calls: os.Open costs a run twice the calls (the poller's registration, flag checks),
// and a run's output is read at its end at least once.
func readOutputAt(dir string, offAt func(end int64) int64, n int) (data []byte, first, start, end int64, err error) {
	outputFiles.Lock()
	defer outputFiles.Unlock()
	path := filepath.Join(dir, "out")
	// Not followed if the command made it a link, and not waited on if it made it a FIFO (a read under
	// outputFiles would stall every run's tail): only a regular file is read.
	fd, err := unix.Open(path, unix.O_RDONLY|unix.O_CLOEXEC|unix.O_NOFOLLOW|unix.O_NONBLOCK, 0)
	if err == unix.ENOENT {
		return nil, 0, 0, 0, nil // not started yet
	}
	if err != nil {
		return nil, 0, 0, 0, &os.PathError{Op: "open", Path: path, Err: err}
	}
	defer unix.Close(fd)
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return nil, 0, 0, 0, &os.PathError{Op: "fstat", Path: path, Err: err}
	}
	if st.Mode&unix.S_IFMT != unix.S_IFREG {
		return nil, 0, 0, 0, &os.PathError{Op: "read", Path: path, Err: errors.New("not a regular file")}
	}
	var shift int64
	first, shift = outputWindow(dir)
	end = shift + st.Size
	start = min(max(offAt(end), first), end)
	data = make([]byte, min(int64(n), end-start))
	m := 0
	for m < len(data) {
		k, err := unix.Pread(fd, data[m:], start-shift+int64(m))
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return nil, 0, 0, 0, &os.PathError{Op: "read", Path: path, Err: err}
		}
		if k == 0 {
			break // shorter than its size said: a cut made it so
		}
		m += k
	}
	return data[:m], first, start, end, nil
}

// outputFileSize is how many bytes a run wrote to its output file.
func outputFileSize(dir string) int64 {
	_, _, end, _ := readOutputFile(dir, 1<<62, 0)
	return end
}

// outputTail copies the last max bytes of a shell run's output file to w (one open of the file) and, when
// w is the run's outputLog, notes there the file's size.
func outputTail(dir string, max int64, w io.Writer) {
	data, _, _, end, err := readOutputAt(dir, func(end int64) int64 { return end - max }, int(max))
	if err != nil {
		return
	}
	_, _ = w.Write(data)
	if l, ok := w.(*outputLog); ok {
		l.mu.Lock()
		l.fileEnd = end
		l.mu.Unlock()
	}
}

// onOutputAsk answers a server that asks for a run's output (see wire.OutputAsk), from another goroutine
// so that the inbox goes on: files are read there. When outputReads are all busy the ask is dropped; the
// server asks again.
func (c *Client) onOutputAsk(x *wire.OutputAsk) {
	select {
	case c.outputReads <- struct{}{}:
	default:
		c.stats.Dropped.Add(1)
		return
	}
	go func() {
		defer func() { <-c.outputReads }()
		ans := c.readOutput(x)
		frame, err := wire.Encode(ans)
		if err != nil {
			c.logger.Error("cannot encode an output answer", "execution", x.ExecID, "err", err)
			return
		}
		if err := c.outbox.Send(x.From, frame); err != nil {
			c.dropLog.Warn(c.logger, "cannot answer an output ask", "server", x.From, "err", err)
		}
	}()
}

// readOutput is the answer to x: the bytes of the run's output file (a journaled shell run, under way or
// ended and not yet confirmed) or of its outputLog (under way).
func (c *Client) readOutput(x *wire.OutputAsk) *wire.Output {
	ans := &wire.Output{Header: wire.Header{From: c.cfg.ID, SentAt: c.now()}, Ask: x.Ask, ExecID: x.ExecID, Run: x.Run}
	c.mu.Lock()
	if ans.Run == 0 {
		a, aok := c.active.newest(x.ExecID)
		j, jok := c.journaled.newest(x.ExecID)
		if !aok && !jok {
			c.mu.Unlock()
			ans.Unknown = true
			return ans
		}
		ans.Run = max(a, j)
	}
	ar, active := c.active.get(x.ExecID, ans.Run)
	dir, _ := c.journaled.get(x.ExecID, ans.Run)
	var log *outputLog
	if active {
		log = ar.output
	}
	c.mu.Unlock()
	switch {
	case dir != "":
		data, first, start, end, err := readOutputWindow(dir, x.Offset, x.Max)
		c.mu.Lock()
		same, _ := c.journaled.get(x.ExecID, ans.Run)
		_, active = c.active.get(x.ExecID, ans.Run)
		c.mu.Unlock()
		if err != nil || same != dir {
			// Confirmed meanwhile: its directory may serve another run by now, whose bytes these may be.
			ans.Unknown = true
			return ans
		}
		ans.Data, ans.First, ans.Offset, ans.End, ans.Ended = data, first, start, end, !active
	case log != nil:
		ans.Data, ans.First, ans.Offset, ans.End = log.readAt(x.Offset, x.Max)
	default:
		ans.Unknown = true
	}
	return ans
}

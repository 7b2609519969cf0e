package transport

import (
	"context"
	"log/slog"
	"sync/atomic"
	"testing"
	"time"
)

// BenchmarkSend measures frames a second from one PUSH to one PULL, with and without CURVE (frames of
// 300 bytes, about a compressed dispatch or result).
func BenchmarkSend(b *testing.B) {
	c := newCluster(b)
	for _, mode := range []string{"null", "curve"} {
		b.Run(mode, func(b *testing.B) {
			var in *Inbox
			var out *Outbox
			var err error
			if mode == "curve" {
				in, err = Listen("tcp://127.0.0.1:0", Options{MaxFrame: 1 << 20, Curve: c.serverCurve()})
				out = NewOutbox(slog.New(slog.DiscardHandler), c.clientCurve(c.a))
			} else {
				in, err = Listen("tcp://127.0.0.1:0", Options{MaxFrame: 1 << 20})
				out = NewOutbox(slog.New(slog.DiscardHandler), nil)
			}
			if err != nil {
				b.Fatal(err)
			}
			var got atomic.Int64
			ctx, cancel := context.WithCancel(context.Background())
			done := make(chan struct{})
			go func() { defer close(done); _ = in.Run(ctx, func([]byte, Sender) { got.Add(1) }) }()
			defer func() { cancel(); <-done; out.Close() }()
			out.SetPeers(map[string]Peer{"s": {Endpoint: in.Endpoint(), Server: true}})
			frame := make([]byte, 300)
			for out.Send("s", frame) != nil {
				time.Sleep(time.Millisecond)
			}
			for got.Load() < 1 {
				time.Sleep(time.Millisecond)
			}
			got.Store(0)
			b.ResetTimer()
			sent := 0
			for sent < b.N {
				if out.Send("s", frame) == nil {
					sent++
				}
			}
			for got.Load() < int64(b.N) {
				time.Sleep(100 * time.Microsecond)
			}
			b.StopTimer()
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "frames/s")
		})
	}
}

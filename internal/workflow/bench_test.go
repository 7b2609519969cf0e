package workflow

import (
	"fmt"
	"testing"
)

// The rules' own cost per node, the part of the leader's work a batch adds: start, end, and the nodes
// after it decided by counts. Reported as nodes a second (ns/op is per node).

func benchRun(b *testing.B, d Definition) {
	b.ReportAllocs()
	nodes := 0
	for b.Loop() {
		r, err := NewRun(d, "")
		if err != nil {
			b.Fatal(err)
		}
		for ready := r.Ready(); len(ready) > 0; ready = r.Ready() {
			for _, n := range ready {
				if err := r.Start(n); err != nil {
					b.Fatal(err)
				}
				for _, p := range r.Pending(n) {
					if err := r.EndPartition(n, p, true); err != nil {
						b.Fatal(err)
					}
				}
				nodes++
			}
		}
		if !r.Done() {
			b.Fatal("not done")
		}
	}
	b.ReportMetric(float64(nodes)/b.Elapsed().Seconds(), "nodes/s")
}

func BenchmarkChainOf10000(b *testing.B) {
	d := Definition{Name: "chain"}
	for i := range 10_000 {
		d.Nodes = append(d.Nodes, Node{Name: fmt.Sprintf("n%05d", i), Job: "j"})
		if i > 0 {
			d.Edges = append(d.Edges, Edge{From: fmt.Sprintf("n%05d", i-1), To: fmt.Sprintf("n%05d", i)})
		}
	}
	benchRun(b, d)
}

func BenchmarkFanOutTo10000(b *testing.B) {
	d := Definition{Name: "fan", Nodes: []Node{{Name: "root", Job: "j"}, {Name: "join", Job: "j"}}}
	for i := range 10_000 {
		n := fmt.Sprintf("n%05d", i)
		d.Nodes = append(d.Nodes, Node{Name: n, Job: "j"})
		d.Edges = append(d.Edges, Edge{From: "root", To: n}, Edge{From: n, To: "join"})
	}
	benchRun(b, d)
}

func BenchmarkOneNodeOf10000Partitions(b *testing.B) {
	parts := make([]string, 10_000)
	for i := range parts {
		parts[i] = fmt.Sprintf("p%05d", i)
	}
	b.ReportAllocs()
	for b.Loop() {
		r, err := NewRun(Definition{Name: "p", Nodes: []Node{{Name: "load", Job: "j", Partitions: parts}}}, "")
		if err != nil {
			b.Fatal(err)
		}
		_ = r.Start("load")
		for _, p := range r.Pending("load") {
			_ = r.EndPartition("load", p, true)
		}
		if !r.Done() {
			b.Fatal("not done")
		}
	}
}

package zksession

import "testing"

func TestPublishDropsOldestNeverBlocks(t *testing.T) {
	ch := make(chan State, subscriberBuffer)
	for i := range subscriberBuffer + 5 {
		publish(ch, State{Kind: Connected, SessionID: int64(i)})
	}
	if len(ch) != subscriberBuffer {
		t.Fatalf("len = %d", len(ch))
	}
	first := <-ch
	if first.SessionID != 5 {
		t.Fatalf("oldest kept = %d, want 5", first.SessionID)
	}
	var last State
	for len(ch) > 0 {
		last = <-ch
	}
	if last.SessionID != subscriberBuffer+4 {
		t.Fatalf("newest = %d", last.SessionID)
	}
}

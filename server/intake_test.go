package server

import (
	"fmt"
	"testing"
	"time"
)

func TestRecordedIDsAreForgottenAfterTheirTime(t *testing.T) {
	in := &intake{known: map[string]bool{}}
	var batch []inbound
	for i := range 3000 {
		batch = append(batch, inbound{event: fmt.Sprint(i)})
	}
	in.remember(batch[:2000], t0)
	in.remember(batch[2000:], t0.Add(2*time.Second))
	in.remember(nil, t0.Add(recentFor+time.Second)) // the first 2,000 are now older than recentFor
	if in.known["0"] || in.known["1999"] || !in.known["2000"] || !in.known["2999"] {
		t.Fatalf("after expiry: 0=%v 1999=%v 2000=%v 2999=%v", in.known["0"], in.known["1999"], in.known["2000"], in.known["2999"])
	}
	if live := len(in.expiry) - in.head; live != len(in.known) {
		t.Fatalf("expiry holds %d live ids, known %d", live, len(in.known))
	}
}

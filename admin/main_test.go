package admin

import (
	"testing"

	"go.uber.org/goleak"
)

// The console will stream events to browsers from goroutines: one left behind by a closed page is a leak
// that only shows on a long-running server, so every test here ends with none left.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

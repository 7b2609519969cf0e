package server

import (
	"testing"

	"go.uber.org/goleak"

	"github.com/clover-sched/clover/internal/testenv"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m, testenv.KeptGoroutines()) }

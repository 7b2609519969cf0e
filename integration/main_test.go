package integration

import (
	"os"
	"path/filepath"
)

var osExit = os.Exit

func cleanupBinary() {
	if binPath != "" {
		_ = os.RemoveAll(filepath.Dir(binPath))
	}
}

package springconfig

import (
	"os"
	"testing"
)

// FuzzLoad feeds any bytes to every format's decoder: it may refuse them, never panic.
func FuzzLoad(f *testing.F) {
	for _, p := range []string{"../examples/jobs.yaml", "../examples/jobs.xml", "testdata/jobs.json", "testdata/jobs.toml",
		"testdata/batches.yaml", "testdata/batches.json", "testdata/batches.toml", "testdata/batches.xml"} {
		data, err := os.ReadFile(p)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data)
	}
	f.Add([]byte("a: &a [*a, *a]\nb: <<: *a\n"))
	f.Add([]byte("jobs:\n  - name: x\n    parent: x\n"))
	f.Add([]byte("[[jobs]]\n[jobs.retry.max]\n"))
	f.Add([]byte(`<clover><job name="a"><params><param/></params></job></clover>`))
	f.Add([]byte(`<clover><batch name="b"><node name="n" job="j"><locks><lock><x/></lock></locks></node><nodes/><node/></batch></clover>`))
	f.Add([]byte("batches:\n  - name: b\n    nodes: [{name: n, job: j, locks: [[x]], resources: {r: 99999999999999999999}}]\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		for _, name := range []string{"f.yaml", "f.json", "f.toml", "f.xml"} {
			_, _ = Parse(name, data, Options{Profile: "prod", Lookup: noEnv})
		}
	})
}

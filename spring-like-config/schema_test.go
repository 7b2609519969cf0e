package springconfig

import (
	"bytes"
	"encoding/json"
	"os"
	"slices"
	"strings"
	"testing"

	"github.com/santhosh-tekuri/jsonschema/v6"
	"go.yaml.in/yaml/v3"
)

const schemaPath = "schema/clover-jobs.schema.json"

func compileSchema(t *testing.T) *jsonschema.Schema {
	t.Helper()
	c := jsonschema.NewCompiler()
	s, err := c.Compile(schemaPath)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// asJSON reads a YAML or JSON file as the values a JSON schema validator expects.
func asJSON(t *testing.T, path string) any {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if strings.HasSuffix(path, ".yaml") {
		var v any
		if err := yaml.Unmarshal(data, &v); err != nil {
			t.Fatal(err)
		}
		if data, err = json.Marshal(v); err != nil {
			t.Fatal(err)
		}
	}
	v, err := jsonschema.UnmarshalJSON(bytes.NewReader(data))
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func TestExamplesMatchSchema(t *testing.T) {
	s := compileSchema(t)
	for _, f := range []string{"../examples/jobs.yaml", "testdata/jobs.json", "testdata/batches.json", "testdata/batches.yaml", "../examples/year-end.yaml"} {
		if err := s.Validate(asJSON(t, f)); err != nil {
			t.Errorf("%s: %v", f, err)
		}
	}
}

func TestSchemaRejects(t *testing.T) {
	s := compileSchema(t)
	tests := map[string]string{
		"unknown key":      `{"jobs": [{"name": "a", "retry": {"jiter": 1}}]}`,
		"jitter too big":   `{"jobs": [{"name": "a", "retry": {"jitter": 2}}]}`,
		"bad overlap":      `{"jobs": [{"name": "a", "overlap": "sometimes"}]}`,
		"no name":          `{"jobs": [{"schedule": "@daily"}]}`,
		"bad duration":     `{"defaults": {"timeout": "5 minutes"}}`,
		"unknown section":  `{"job": []}`,
		"unknown node key": `{"batches": [{"name": "b", "nodes": [{"name": "n", "job": "j", "partitons": ["A"]}]}]}`,
		"bad edge flag":    `{"batches": [{"name": "b", "edges": [{"from": "a", "to": "b", "flag": "sometimes"}]}]}`,
	}
	for name, doc := range tests {
		t.Run(name, func(t *testing.T) {
			v, err := jsonschema.UnmarshalJSON(strings.NewReader(doc))
			if err != nil {
				t.Fatal(err)
			}
			if s.Validate(v) == nil {
				t.Errorf("schema accepts %s", doc)
			}
		})
	}
}

// The schema lists exactly the keys the loader knows.
func TestSchemaKeysMatchLoader(t *testing.T) {
	data, err := os.ReadFile(schemaPath)
	if err != nil {
		t.Fatal(err)
	}
	type props struct {
		Properties map[string]json.RawMessage `json:"properties"`
	}
	var doc struct {
		Defs map[string]props `json:"$defs"`
	}
	if err := json.Unmarshal(data, &doc); err != nil {
		t.Fatal(err)
	}
	var keys []string
	for k, raw := range doc.Defs["job"].Properties {
		keys = append(keys, k)
		var sub props
		_ = json.Unmarshal(raw, &sub)
		if jobKeys[k].kind == vObject {
			for sk := range sub.Properties {
				keys = append(keys, k+"."+sk)
			}
		}
	}
	slices.Sort(keys)
	if !slices.Equal(keys, jobKeyIDs) {
		t.Errorf("schema job keys:\n%v\nloader keys:\n%v", keys, jobKeyIDs)
	}
}

// The schema lists exactly the batch keys the loader knows.
func TestSchemaBatchKeysMatchLoader(t *testing.T) {
	data, err := os.ReadFile(schemaPath)
	if err != nil {
		t.Fatal(err)
	}
	var doc struct {
		Defs map[string]struct {
			Properties map[string]json.RawMessage `json:"properties"`
			AnyOf      []struct {
				Properties map[string]json.RawMessage `json:"properties"`
			} `json:"anyOf"`
		} `json:"$defs"`
	}
	if err := json.Unmarshal(data, &doc); err != nil {
		t.Fatal(err)
	}
	var keys []string
	for _, d := range []struct{ def, prefix string }{{"batch", ""}, {"node", "nodes."}, {"edge", "edges."}, {"lock", "nodes.locks."}} {
		props := doc.Defs[d.def].Properties
		for _, a := range doc.Defs[d.def].AnyOf {
			if a.Properties != nil {
				props = a.Properties
			}
		}
		for k := range props {
			keys = append(keys, d.prefix+k)
		}
	}
	for _, h := range []string{"on_start", "on_success", "on_failure"} {
		keys = append(keys, "nodes.handlers."+h)
		for k := range doc.Defs["handler"].Properties {
			keys = append(keys, "nodes.handlers."+h+"."+k)
		}
	}
	var want []string
	for k := range batchKeys {
		want = append(want, k)
	}
	slices.Sort(keys)
	slices.Sort(want)
	if !slices.Equal(keys, want) {
		t.Errorf("schema batch keys:\n%v\nloader keys:\n%v", keys, want)
	}
}

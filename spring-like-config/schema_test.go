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
	for _, f := range []string{"../examples/jobs.yaml", "testdata/jobs.json"} {
		if err := s.Validate(asJSON(t, f)); err != nil {
			t.Errorf("%s: %v", f, err)
		}
	}
}

func TestSchemaRejects(t *testing.T) {
	s := compileSchema(t)
	tests := map[string]string{
		"unknown key":     `{"jobs": [{"name": "a", "retry": {"jiter": 1}}]}`,
		"jitter too big":  `{"jobs": [{"name": "a", "retry": {"jitter": 2}}]}`,
		"bad overlap":     `{"jobs": [{"name": "a", "overlap": "sometimes"}]}`,
		"no name":         `{"jobs": [{"schedule": "@daily"}]}`,
		"bad duration":    `{"defaults": {"timeout": "5 minutes"}}`,
		"unknown section": `{"job": []}`,
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

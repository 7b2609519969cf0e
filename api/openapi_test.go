package api

import (
	"context"
	"encoding/json"
	"testing"

	"github.com/getkin/kin-openapi/openapi3"
)

// The document is valid OpenAPI 3, and names every route of the table with its success status.
func TestTheOpenAPIDocumentIsValidAndComplete(t *testing.T) {
	b, err := OpenAPI()
	if err != nil {
		t.Fatal(err)
	}
	doc, err := openapi3.NewLoader().LoadFromData(b)
	if err != nil {
		t.Fatalf("the document does not load: %v", err)
	}
	if err := doc.Validate(context.Background()); err != nil {
		t.Fatalf("the document is not valid OpenAPI 3: %v", err)
	}
	for _, rt := range Routes {
		item := doc.Paths.Find(rt.Path)
		if item == nil || item.GetOperation(rt.Method) == nil {
			t.Errorf("%s is not in the document", rt.Pattern())
			continue
		}
		if item.GetOperation(rt.Method).Responses.Status(rt.Status) == nil {
			t.Errorf("%s: no %d answer in the document", rt.Pattern(), rt.Status)
		}
	}
	// The job definition's schema names its fields as the API encodes them.
	var raw map[string]any
	if err := json.Unmarshal(b, &raw); err != nil {
		t.Fatal(err)
	}
	spec := doc.Components.Schemas["Spec"]
	if spec == nil || spec.Value.Properties["schedule"] == nil || spec.Value.Properties["timeout"] == nil || spec.Value.Properties["timeout"].Value.Type.Is("string") == false {
		t.Fatalf("the Spec schema does not describe a job as the API encodes it: %+v", spec)
	}
}

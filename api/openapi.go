package api

import (
	"encoding/json"
	"fmt"
	"net/http"
	"reflect"
	"regexp"
	"strings"
	"sync"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/getkin/kin-openapi/openapi3gen"

	"github.com/clover-sched/clover/internal/job"
)

// Version is the API's version in its OpenAPI document.
const Version = "1.0.0"

var (
	docOnce  sync.Once
	docBytes []byte
	docErr   error
)

// OpenAPI is the OpenAPI 3 document of Routes, as JSON. It is made once.
func OpenAPI() ([]byte, error) {
	docOnce.Do(func() {
		doc, err := Document()
		if err != nil {
			docErr = err
			return
		}
		docBytes, docErr = json.MarshalIndent(doc, "", "  ")
	})
	return docBytes, docErr
}

var pathParam = regexp.MustCompile(`\{([a-z_]+)\}`)

// Document builds the OpenAPI document of Routes: one operation per route, the schemas of its body and
// answer generated from the Go types the server encodes.
func Document() (*openapi3.T, error) {
	doc := &openapi3.T{
		OpenAPI: "3.0.3",
		Info: &openapi3.Info{
			Title:       "Clover REST API",
			Version:     Version,
			Description: "Reads are answered by any server; writes marked leader-only are forwarded to the leader. Errors are {\"error\": \"...\"}.",
		},
		Paths:      openapi3.NewPaths(),
		Components: &openapi3.Components{Schemas: openapi3.Schemas{}},
	}
	gen := openapi3gen.NewGenerator(
		openapi3gen.SchemaCustomizer(customize),
		openapi3gen.CreateComponentSchemas(openapi3gen.ExportComponentSchemasOptions{ExportComponentSchemas: true}),
	)
	schema := func(v any) (*openapi3.SchemaRef, error) {
		return gen.NewSchemaRefForValue(v, doc.Components.Schemas)
	}
	errSchema, err := schema(Error{})
	if err != nil {
		return nil, fmt.Errorf("api: schema of Error: %w", err)
	}
	for _, rt := range Routes {
		op := openapi3.NewOperation()
		op.Summary = rt.Summary
		op.OperationID = operationID(rt)
		if rt.Leader {
			op.Description = "Made by the leader; any other server forwards it there."
		}
		for _, m := range pathParam.FindAllStringSubmatch(rt.Path, -1) {
			op.AddParameter(openapi3.NewPathParameter(m[1]).WithSchema(openapi3.NewStringSchema()))
		}
		for _, q := range rt.Query {
			op.AddParameter(openapi3.NewQueryParameter(q.Name).WithDescription(q.Description).WithSchema(openapi3.NewStringSchema()))
		}
		if rt.Body != nil {
			s, err := schema(rt.Body)
			if err != nil {
				return nil, fmt.Errorf("api: schema of %s body: %w", rt.Pattern(), err)
			}
			op.RequestBody = &openapi3.RequestBodyRef{Value: openapi3.NewRequestBody().WithJSONSchemaRef(s)}
		}
		ok := openapi3.NewResponse().WithDescription(http.StatusText(rt.Status))
		if rt.Response != nil {
			s, err := schema(rt.Response)
			if err != nil {
				return nil, fmt.Errorf("api: schema of %s answer: %w", rt.Pattern(), err)
			}
			ok.WithJSONSchemaRef(s)
		}
		op.AddResponse(rt.Status, ok)
		op.Responses.Set("default", &openapi3.ResponseRef{Value: openapi3.NewResponse().WithDescription("An error").WithJSONSchemaRef(errSchema)})
		doc.AddOperation(rt.Path, rt.Method, op)
	}
	return doc, nil
}

// customize gives the schemas of the types that encode themselves (job.Duration is "90s").
func customize(_ string, t reflect.Type, _ reflect.StructTag, s *openapi3.Schema) error {
	if t == reflect.TypeFor[job.Duration]() {
		*s = *openapi3.NewStringSchema()
		s.Description = `a Go duration ("90s", "1h30m"); a number of seconds is accepted too`
	}
	return nil
}

// operationID names an operation after its method and path: GET /api/v1/jobs/{name}/next is
// getJobsNameNext, POST /api/v1/jobs:batch postJobsBatch.
func operationID(rt Route) string {
	var b strings.Builder
	b.WriteString(strings.ToLower(rt.Method))
	for _, part := range strings.Split(strings.TrimPrefix(rt.Path, "/api/v1/"), "/") {
		part = strings.Trim(part, "{}")
		for _, w := range strings.FieldsFunc(part, func(r rune) bool { return r == '_' || r == '.' || r == ':' }) {
			b.WriteString(strings.ToUpper(w[:1]) + w[1:])
		}
	}
	return b.String()
}

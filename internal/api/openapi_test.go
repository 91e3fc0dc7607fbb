package api_test

import (
	"bufio"
	"bytes"
	"strings"
	"testing"

	apidoc "github.com/switchboard-pbx/switchboard/api"
	"github.com/switchboard-pbx/switchboard/internal/api"
)

// documented reads "METHOD /path" pairs from the paths section of openapi.yaml.
func documented(t *testing.T) map[string]bool {
	out := map[string]bool{}
	sc := bufio.NewScanner(bytes.NewReader(apidoc.OpenAPI))
	inPaths, path := false, ""
	for sc.Scan() {
		line := sc.Text()
		if line == "paths:" {
			inPaths = true
			continue
		}
		if !inPaths {
			continue
		}
		if len(line) > 0 && line[0] != ' ' {
			break
		}
		if strings.HasPrefix(line, "  /") && strings.HasSuffix(line, ":") {
			path = strings.TrimSuffix(strings.TrimSpace(line), ":")
			continue
		}
		if strings.HasPrefix(line, "    ") && !strings.HasPrefix(line, "     ") {
			m := strings.TrimSuffix(strings.TrimSpace(line), ":")
			switch m {
			case "get", "put", "post", "patch", "delete":
				out[strings.ToUpper(m)+" "+path] = true
			}
		}
	}
	if len(out) == 0 {
		t.Fatal("no paths parsed from openapi.yaml")
	}
	return out
}

// Every route the server has must be described in api/openapi.yaml.
func TestOpenAPIDescribesEveryRoute(t *testing.T) {
	doc := documented(t)
	s := &api.Server{}
	for _, r := range s.Routes() {
		if !doc[r] {
			t.Errorf("route %q is not described in api/openapi.yaml", r)
		}
	}
}

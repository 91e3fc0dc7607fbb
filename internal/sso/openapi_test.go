package sso_test

import (
	"bufio"
	"bytes"
	"strings"
	"testing"

	apidoc "github.com/switchboard-pbx/switchboard/api"
	"github.com/switchboard-pbx/switchboard/internal/sso"
)

// Every client API route is described in api/openapi.yaml.
func TestOpenAPIDescribesClientRoutes(t *testing.T) {
	doc := map[string]bool{}
	sc := bufio.NewScanner(bytes.NewReader(apidoc.OpenAPI))
	path := ""
	for sc.Scan() {
		line := sc.Text()
		if strings.HasPrefix(line, "  /") && strings.HasSuffix(line, ":") {
			path = strings.TrimSuffix(strings.TrimSpace(line), ":")
			continue
		}
		if strings.HasPrefix(line, "    ") && !strings.HasPrefix(line, "     ") {
			switch m := strings.TrimSuffix(strings.TrimSpace(line), ":"); m {
			case "get", "put", "post", "patch", "delete":
				doc[strings.ToUpper(m)+" "+path] = true
			}
		}
	}
	for _, r := range sso.Routes() {
		if !doc[r] {
			t.Errorf("client route %q is not described in api/openapi.yaml", r)
		}
	}
}

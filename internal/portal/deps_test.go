package portal_test

import (
	"go/parser"
	"go/token"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// TestImports keeps the portal's dependencies where the design puts them:
// the standard library and the domain packages it renders; never the API
// (nothing imports api), never a router or template module.
func TestImports(t *testing.T) {
	allowed := map[string]bool{
		"github.com/switchboard-pbx/switchboard/internal/directory": true,
		"github.com/switchboard-pbx/switchboard/internal/session":   true,
		"github.com/switchboard-pbx/switchboard/internal/store":     true,
	}
	files, err := filepath.Glob("*.go")
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range files {
		if strings.HasSuffix(f, "_test.go") {
			continue
		}
		pf, err := parser.ParseFile(token.NewFileSet(), f, nil, parser.ImportsOnly)
		if err != nil {
			t.Fatal(err)
		}
		for _, im := range pf.Imports {
			p, _ := strconv.Unquote(im.Path.Value)
			if strings.Contains(p, ".") && !allowed[p] {
				t.Errorf("%s imports %s", f, p)
			}
		}
	}
}

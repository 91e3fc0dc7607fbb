package main

import (
	"os/exec"
	"strings"
	"testing"
)

// The dependency budget (STYLE.md rule 13): no Graph SDK, no Azure SDK, no
// ORM, no second router in the binary.
func TestDependencyBudget(t *testing.T) {
	out, err := exec.Command("go", "list", "-deps", ".").Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	banned := []string{
		"github.com/microsoftgraph/", "github.com/Azure/", "github.com/AzureAD/",
		"gorm.io/", "entgo.io/", "github.com/jmoiron/sqlx", "github.com/uptrace/bun",
		"github.com/gorilla/mux", "github.com/go-chi/", "github.com/gin-gonic/", "github.com/labstack/echo",
	}
	for _, pkg := range strings.Fields(string(out)) {
		for _, b := range banned {
			if strings.HasPrefix(pkg, b) {
				t.Errorf("banned dependency in the binary: %s", pkg)
			}
		}
	}
}

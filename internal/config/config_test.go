package config

import (
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func env(m map[string]string) func(string) string { return func(k string) string { return m[k] } }

func TestDefaults(t *testing.T) {
	c, err := Load("serve", nil, env(nil), io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if c.Addr != "127.0.0.1:8080" || c.DB != "sqlite:./data/switchboard.db" || c.MaxExtensions != 10000 ||
		c.GraphURL != "https://graph.microsoft.com" || c.LoginURL != "https://login.microsoftonline.com" {
		t.Fatalf("defaults = %+v", c)
	}
	if c.BaseURL() != "http://127.0.0.1:8080" {
		t.Fatalf("BaseURL = %q", c.BaseURL())
	}
}

func TestEnvAndFlagPrecedence(t *testing.T) {
	e := env(map[string]string{"SWITCHBOARD_ADDR": "127.0.0.1:9000", "SWITCHBOARD_MAX_EXTENSIONS": "50", "SWITCHBOARD_PUBLIC_URL": "https://pbx.example.com/"})
	c, err := Load("serve", []string{"--max-extensions", "70"}, e, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if c.Addr != "127.0.0.1:9000" || c.MaxExtensions != 70 || c.BaseURL() != "https://pbx.example.com" {
		t.Fatalf("got %+v", c)
	}
}

func TestSecretFromFile(t *testing.T) {
	p := filepath.Join(t.TempDir(), "tok")
	os.WriteFile(p, []byte("a-very-long-admin-token\n"), 0o600)
	c, err := Load("serve", nil, env(map[string]string{"SWITCHBOARD_ADMIN_TOKEN_FILE": p}), io.Discard)
	if err != nil || c.AdminToken != "a-very-long-admin-token" {
		t.Fatalf("token %q, %v", c.AdminToken, err)
	}
}

func TestValidateNamesEveryProblem(t *testing.T) {
	_, err := Load("serve", []string{"--addr", "nope", "--db", "mysql://x", "--max-extensions", "0", "--sync-workers", "-1", "--time-zone", "Mars/Base", "--admin-token", "short"}, env(nil), io.Discard)
	if err == nil {
		t.Fatal("bad config accepted")
	}
	for _, want := range []string{"addr:", "db:", "max-extensions:", "sync-workers:", "time-zone:", "admin-token:"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not name %s", err, want)
		}
	}
	if _, err := Load("serve", nil, env(map[string]string{"SWITCHBOARD_MAX_EXTENSIONS": "ten"}), io.Discard); err == nil || !strings.Contains(err.Error(), "SWITCHBOARD_MAX_EXTENSIONS") {
		t.Fatalf("bad env not named: %v", err)
	}
}

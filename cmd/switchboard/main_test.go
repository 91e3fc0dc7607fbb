package main

import (
	"bytes"
	"strings"
	"testing"
)

func TestSubcommands(t *testing.T) {
	var out, errb bytes.Buffer
	if err := run(t.Context(), []string{"version"}, func(string) string { return "" }, &out, &errb); err != nil || !strings.HasPrefix(out.String(), "switchboard ") {
		t.Fatalf("version: %q %v", out.String(), err)
	}
	if err := run(t.Context(), []string{"frobnicate"}, func(string) string { return "" }, &out, &errb); err == nil || !strings.Contains(err.Error(), "frobnicate") {
		t.Fatalf("unknown subcommand: %v", err)
	}
	if err := run(t.Context(), nil, func(string) string { return "" }, &out, &errb); err == nil {
		t.Fatal("no subcommand accepted")
	}
	err := run(t.Context(), []string{"serve", "--db", "mysql://x"}, func(string) string { return "" }, &out, &errb)
	if err == nil || !strings.Contains(err.Error(), "db:") {
		t.Fatalf("bad serve flag: %v", err)
	}
	err = run(t.Context(), []string{"serve"}, func(k string) string {
		if k == "SWITCHBOARD_MAX_EXTENSIONS" {
			return "-1"
		}
		return ""
	}, &out, &errb)
	if err == nil || !strings.Contains(err.Error(), "max-extensions") {
		t.Fatalf("bad env: %v", err)
	}
}

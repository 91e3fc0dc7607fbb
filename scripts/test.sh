#!/usr/bin/env bash
# The whole test suite, as CI runs it (.ci/run) and as a newcomer runs it
# (make test). Installs what the tests need on a fresh Debian machine
# (PostgreSQL, Kamailio, sipp, Chromium from Debian's packages), starts a
# throwaway PostgreSQL cluster, then: gofmt, go vet, unit tests against SQLite
# and PostgreSQL, and the end-to-end suites (build tag e2e).
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="/usr/local/go/bin:$PATH"

step() { printf '\n==> %s\n' "$*"; }

step "installing test dependencies"
bash .ci/install-deps.sh

step "starting PostgreSQL"
eval "$(bash .ci/start-postgres.sh)"
trap 'bash .ci/stop-postgres.sh >/dev/null 2>&1 || true' EXIT
export TEST_DATABASE_URL

step "gofmt"
unformatted=$(gofmt -l $(git ls-files '*.go' 2>/dev/null || find . -name '*.go' -not -path './.git/*'))
if [ -n "$unformatted" ]; then
  echo "gofmt would change:"; echo "$unformatted"; exit 1
fi

step "go vet"
go vet ./...
go vet -tags e2e ./...

step "unit tests (SQLite and PostgreSQL)"
go test -count=1 ./...

step "end-to-end tests (simulated tenant over HTTP, Kamailio + sipp, Chromium)"
# Only the packages that have e2e files; the rest ran above.
mapfile -t e2e_pkgs < <(grep -rl --include='*_test.go' '^//go:build e2e' . | xargs -r -n1 dirname | sort -u)
if [ ${#e2e_pkgs[@]} -gt 0 ]; then
  go test -count=1 -tags e2e -timeout 40m -p 1 "${e2e_pkgs[@]}"
fi

# The two commands of the README: `make demo` and `make test`.
GO ?= go
BIN := bin/switchboard
VERSION ?= $(shell git describe --always --dirty 2>/dev/null || echo dev)

.PHONY: build demo test unit bench clean

build:
	$(GO) build -ldflags "-X github.com/switchboard-pbx/switchboard/internal/app.Version=$(VERSION)" -o $(BIN) ./cmd/switchboard

demo: build
	./$(BIN) demo

test:
	bash scripts/test.sh

unit:
	$(GO) test ./...

bench:
	bash scripts/bench.sh

clean:
	rm -rf bin switchboard-demo

# mailgate build, test and lint targets. See README.md, "Run the tests".

GO      ?= go
BIN     ?= bin/mailgate
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo devel)

.PHONY: all build test race lint fuzz e2e bench clean

all: build

build:
	$(GO) build -trimpath -ldflags "-X main.version=$(VERSION)" -o $(BIN) ./cmd/mailgate

# The unit and integration tests: in-process IMAP and SMTP servers, loopback only.
test:
	$(GO) test -race ./...

lint:
	@out=$$(gofmt -l $$(git ls-files '*.go')); \
	if [ -n "$$out" ]; then echo "gofmt would change:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...

# Runs every fuzz target briefly (FUZZTIME each).
FUZZTIME ?= 20s
fuzz:
	./.ci/fuzz $(FUZZTIME)

# The end-to-end suite against real Dovecot and Postfix on loopback: installs
# the Debian packages if missing (as root), builds mailgate, runs the
# scenarios. See e2e/README.md.
e2e:
	./e2e/run.sh

# The end-to-end benchmarks (Dovecot, Postfix, fetchmail; run as root);
# writes BENCHMARKS.md.
bench:
	./e2e/setup.sh --bench
	go run ./bench

clean:
	rm -rf bin

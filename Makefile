# mailgate build, test, lint and packaging targets. See README.md, "Run the
# tests" and "Install".

GO      ?= go
BIN     ?= bin/mailgate
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo devel)

# Reproducible builds: the same commit gives byte-identical binaries and
# archives. Every timestamp is the commit's time; -trimpath drops the build
# directory, -buildid= the linker's build id. -buildvcs stamps the commit
# into the binary (mailgate version) when building in a git checkout; out
# of one (a source archive) there is nothing to stamp.
SOURCE_DATE_EPOCH ?= $(shell git log -1 --format=%ct 2>/dev/null || echo 0)
export SOURCE_DATE_EPOCH
BUILDVCS ?= $(shell git rev-parse --git-dir >/dev/null 2>&1 && echo true || echo false)
GOBUILD  = $(GO) build -trimpath -buildvcs=$(BUILDVCS) -ldflags "-buildid= -X main.version=$(VERSION)"

# Architectures of make deb and make dist (Debian names, equal to GOARCH).
ARCHES ?= amd64 arm64
DIST   ?= dist

.PHONY: all build test race lint fuzz e2e bench clean deb dist check-deb FORCE

all: build

build:
	$(GOBUILD) -o $(BIN) ./cmd/mailgate

# Static Linux binaries for the packages (modernc.org/sqlite needs no cgo).
bin/linux_%/mailgate: FORCE
	CGO_ENABLED=0 GOOS=linux GOARCH=$* $(GOBUILD) -o $@ ./cmd/mailgate

# Debian packages, dist/mailgate_<version>_<arch>.deb, built by the nfpm
# library from packaging/ (a module of its own: see packaging/README.md).
deb: $(ARCHES:%=bin/linux_%/mailgate)
	cd packaging && $(GO) run . deb -root .. -out ../$(DIST) -version $(VERSION) $(ARCHES:%=-arch %)

# Release archives and packages with their SHA-256 sums in dist/SHA256SUMS.
dist: deb
	cd packaging && $(GO) run . tar -root .. -out ../$(DIST) -version $(VERSION) $(ARCHES:%=-arch %)
	cd $(DIST) && rm -f SHA256SUMS && sha256sum mailgate_* > SHA256SUMS && cat SHA256SUMS

# Installs the .deb of this machine's architecture, checks it, removes and
# purges it (root, Debian or Ubuntu). CI runs it.
check-deb: deb
	./packaging/check-deb.sh

# The unit and integration tests: in-process IMAP and SMTP servers, loopback only.
test:
	$(GO) test -race ./...

lint:
	@out=$$(gofmt -l $$(git ls-files '*.go')); \
	if [ -n "$$out" ]; then echo "gofmt would change:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...
	cd packaging && $(GO) vet ./...

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
	rm -rf bin $(DIST)

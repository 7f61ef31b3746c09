# streamworker — `make help` lists the targets. `make test` is what CI runs.

SHELL := bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help
MAKEFLAGS += --no-builtin-rules

GO ?= go
GOLANGCI_LINT_VERSION := v2.15.0
# The pinned golangci-lint in GOBIN, (re)installed by `make lint` when missing
# or of another version: the config is v2 format and findings differ by version.
GOBIN := $(shell $(GO) env GOBIN)
ifeq ($(GOBIN),)
GOBIN := $(shell $(GO) env GOPATH)/bin
endif
GOLANGCI_LINT := $(GOBIN)/golangci-lint

# bench/ is a module of its own (its go.mod keeps benchmark-only dependencies
# out of the main module); these targets skip it while it does not exist.
HAVE_BENCH := $(wildcard bench/go.mod)
HAVE_DEPLOY := $(wildcard deploy/go.mod)

# How long `make fuzz` runs each fuzz test, and `make test` (which has the
# rest of the 15-minute CI budget to share) each of them after the tests.
FUZZTIME ?= 10s
TEST_FUZZTIME ?= 5s

.PHONY: generate help test fuzz lint demo bench build clean

help: ## List the targets
	@awk 'BEGIN {FS = ":.*## "} /^[a-zA-Z_-]+:.*## / {printf "  %-8s %s\n", $$1, $$2}' $(MAKEFILE_LIST)

# The tests build with -trimpath (TEST_GOFLAGS, added to GOFLAGS and so
# passed to the go commands the tests run themselves), so what they compile
# is cached by content, not by the checkout's path: a clone elsewhere
# reuses it.
# go test -vet=all runs every go vet check on each package, tests or not, on
# the packages it compiles for the tests: a separate go vet would compile the
# whole module a second time without -race. -p 4 lets the long process tests
# (test/) run beside the compiling and the shorter packages, not after them.
TEST_GOFLAGS ?= -trimpath

test: ## Install or start what the tests need when missing (scripts/test-deps.sh), then vet and run every test with the race detector
	bash scripts/test-deps.sh
	GOFLAGS='$(strip $(GOFLAGS) $(TEST_GOFLAGS))' $(GO) test -race -vet=all -count=1 -p 4 ./...
	GOFLAGS='$(strip $(GOFLAGS) $(TEST_GOFLAGS))' FUZZTIME=$(TEST_FUZZTIME) bash scripts/fuzz.sh
ifneq ($(HAVE_BENCH),)
	cd bench && GOFLAGS='$(strip $(GOFLAGS) $(TEST_GOFLAGS))' $(GO) test -vet=all -count=1 -run . ./...
endif
ifneq ($(HAVE_DEPLOY),)
	cd deploy && GOFLAGS='$(strip $(GOFLAGS) $(TEST_GOFLAGS))' $(GO) test -vet=all -count=1 ./...
endif

fuzz: ## Run every fuzz test for FUZZTIME each (default 10s; make test runs them TEST_FUZZTIME each, 5s)
	FUZZTIME=$(FUZZTIME) bash scripts/fuzz.sh

lint: ## Run golangci-lint v2 (installing the pinned version if needed) on the main and bench modules
	@if ! "$(GOLANGCI_LINT)" version --short 2>/dev/null | grep -qx '$(GOLANGCI_LINT_VERSION:v%=%)'; then \
		echo "installing golangci-lint $(GOLANGCI_LINT_VERSION) into $(GOBIN)"; \
		$(GO) install github.com/golangci/golangci-lint/v2/cmd/golangci-lint@$(GOLANGCI_LINT_VERSION); \
	fi
	$(GOLANGCI_LINT) run ./...
ifneq ($(HAVE_BENCH),)
	cd bench && $(GOLANGCI_LINT) run ./...
endif
ifneq ($(HAVE_DEPLOY),)
	cd deploy && $(GOLANGCI_LINT) run ./...
endif

demo: ## Run the worker demo on an embedded in-memory Redis (set REDIS_URL to use a real one)
	$(GO) run ./cmd/worker --demo

bench: ## Compare streamworker with a bare go-redis loop, asynq and Watermill, then the micro-benchmarks (bench module; results in bench/results)
	$(MAKE) -C bench bench

generate: ## Regenerate internal/scriptfn/scripts_gen.go after changing a Lua script (its test fails while it is stale)
	$(GO) generate ./internal/scriptfn

build: ## Build every command into bin/
	$(GO) build -o bin/ ./cmd/...

clean: ## Remove bin/
	rm -rf bin/

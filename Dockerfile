# syntax=docker/dockerfile:1
#
# The streamworker image: the worker daemon (the entrypoint) with the producer
# and streamctl CLIs beside it, as static binaries on distroless, running as
# a non-root user. Build from the repository root:
#
#   docker build -t streamworker:dev .
#
# deploy/dockerfile_test.go checks the rules this file keeps (multi-stage,
# CGO_ENABLED=0, non-root numeric USER, exec-form ENTRYPOINT, the three
# binaries, GO_VERSION = go.mod's go line).

ARG GO_VERSION=1.26.8

FROM --platform=$BUILDPLATFORM golang:${GO_VERSION} AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN --mount=type=cache,target=/go/pkg/mod go mod download
COPY . .
ARG TARGETOS TARGETARCH
ENV CGO_ENABLED=0
RUN --mount=type=cache,target=/go/pkg/mod \
    --mount=type=cache,target=/root/.cache/go-build \
    GOOS=$TARGETOS GOARCH=$TARGETARCH \
    go build -trimpath -ldflags="-s -w" -o /out/ ./cmd/worker ./cmd/producer ./cmd/streamctl

# distroless/static: CA certificates and tzdata, no shell, no package
# manager; :nonroot is UID/GID 65532. Pin it by digest for production
# (gcr.io/distroless/static-debian12:nonroot@sha256:...).
FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/worker /out/producer /out/streamctl /usr/local/bin/
USER 65532:65532
EXPOSE 8080
# Exec form: the worker is PID 1 and gets SIGTERM itself, so Kubernetes'
# termination starts its graceful drain.
ENTRYPOINT ["/usr/local/bin/worker"]

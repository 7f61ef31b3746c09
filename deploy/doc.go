// Package deploy holds the checks of the deployment files in this folder —
// the kustomize base and overlays in k8s/, the Helm chart in helm/, the Redis
// ACL file in redis/ and the repository's Dockerfile — as tests. It is a
// module of its own so that the main module does not depend on the
// Kubernetes libraries.
package deploy

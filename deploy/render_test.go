package deploy

import (
	"bytes"
	"encoding/json"
	"fmt"
	"testing"

	monitoringv1 "github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring/v1"
	appsv1 "k8s.io/api/apps/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1 "k8s.io/api/policy/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/kustomize/api/krusty"
	"sigs.k8s.io/kustomize/kyaml/filesys"
)

// manifests is one kustomization's output, every object decoded into its
// Go type, by name.
type manifests struct {
	dir             string
	Deployments     map[string]*appsv1.Deployment
	StatefulSets    map[string]*appsv1.StatefulSet
	Jobs            map[string]*batchv1.Job
	Services        map[string]*corev1.Service
	ConfigMaps      map[string]*corev1.ConfigMap
	Secrets         map[string]*corev1.Secret
	ServiceAccounts map[string]*corev1.ServiceAccount
	Namespaces      map[string]*corev1.Namespace
	PDBs            map[string]*policyv1.PodDisruptionBudget
	NetworkPolicies map[string]*networkingv1.NetworkPolicy
	ScaledObjects   map[string]*scaledObject
	TriggerAuths    map[string]*triggerAuthentication
	ServiceMonitors map[string]*monitoringv1.ServiceMonitor
	PrometheusRules map[string]*monitoringv1.PrometheusRule
}

// render builds the kustomization in dir with the kustomize API, as
// `kubectl apply -k dir` would, and decodes every object strictly: a field
// its type does not have (a typo, a wrong level of indentation) fails the
// test, as does a kind this test has no type for.
func render(t *testing.T, dir string) *manifests {
	t.Helper()
	k := krusty.MakeKustomizer(krusty.MakeDefaultOptions())
	rm, err := k.Run(filesys.MakeFsOnDisk(), dir)
	if err != nil {
		t.Fatalf("kustomize build %s: %v", dir, err)
	}
	m := newManifests(dir)
	for _, r := range rm.Resources() {
		raw, err := r.MarshalJSON()
		if err != nil {
			t.Fatal(err)
		}
		gvk := r.GetGvk()
		m.add(t, gvk.ApiVersion(), gvk.Kind, r.GetNamespace(), r.GetName(), raw)
	}
	return m
}

func newManifests(dir string) *manifests {
	return &manifests{
		dir:         dir,
		Deployments: map[string]*appsv1.Deployment{}, StatefulSets: map[string]*appsv1.StatefulSet{}, Jobs: map[string]*batchv1.Job{},
		Services: map[string]*corev1.Service{}, ConfigMaps: map[string]*corev1.ConfigMap{},
		Secrets: map[string]*corev1.Secret{}, ServiceAccounts: map[string]*corev1.ServiceAccount{},
		Namespaces: map[string]*corev1.Namespace{}, PDBs: map[string]*policyv1.PodDisruptionBudget{},
		NetworkPolicies: map[string]*networkingv1.NetworkPolicy{}, ScaledObjects: map[string]*scaledObject{},
		TriggerAuths: map[string]*triggerAuthentication{}, ServiceMonitors: map[string]*monitoringv1.ServiceMonitor{},
		PrometheusRules: map[string]*monitoringv1.PrometheusRule{},
	}
}

// add decodes one object (JSON) into its Go type.
func (m *manifests) add(t *testing.T, apiVersion, kind, namespace, name string, raw []byte) {
	t.Helper()
	id := fmt.Sprintf("%s: %s %s/%s", m.dir, kind, namespace, name)
	switch apiVersion + " " + kind {
	case "apps/v1 Deployment":
		m.Deployments[name] = decodeStrict[appsv1.Deployment](t, id, raw)
	case "apps/v1 StatefulSet":
		m.StatefulSets[name] = decodeStrict[appsv1.StatefulSet](t, id, raw)
	case "batch/v1 Job":
		m.Jobs[name] = decodeStrict[batchv1.Job](t, id, raw)
	case "v1 Service":
		m.Services[name] = decodeStrict[corev1.Service](t, id, raw)
	case "v1 ConfigMap":
		m.ConfigMaps[name] = decodeStrict[corev1.ConfigMap](t, id, raw)
	case "v1 Secret":
		m.Secrets[name] = decodeStrict[corev1.Secret](t, id, raw)
	case "v1 ServiceAccount":
		m.ServiceAccounts[name] = decodeStrict[corev1.ServiceAccount](t, id, raw)
	case "v1 Namespace":
		m.Namespaces[name] = decodeStrict[corev1.Namespace](t, id, raw)
	case "policy/v1 PodDisruptionBudget":
		m.PDBs[name] = decodeStrict[policyv1.PodDisruptionBudget](t, id, raw)
	case "networking.k8s.io/v1 NetworkPolicy":
		m.NetworkPolicies[name] = decodeStrict[networkingv1.NetworkPolicy](t, id, raw)
	case "keda.sh/v1alpha1 ScaledObject":
		m.ScaledObjects[name] = decodeStrict[scaledObject](t, id, raw)
	case "keda.sh/v1alpha1 TriggerAuthentication":
		m.TriggerAuths[name] = decodeStrict[triggerAuthentication](t, id, raw)
	case "monitoring.coreos.com/v1 ServiceMonitor":
		m.ServiceMonitors[name] = decodeStrict[monitoringv1.ServiceMonitor](t, id, raw)
	case "monitoring.coreos.com/v1 PrometheusRule":
		m.PrometheusRules[name] = decodeStrict[monitoringv1.PrometheusRule](t, id, raw)
	default:
		t.Errorf("%s: no Go type for %s %s in this test; add one so that it is checked", id, apiVersion, kind)
	}
}

func decodeStrict[T any](t *testing.T, id string, raw []byte) *T {
	t.Helper()
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	v := new(T)
	if err := dec.Decode(v); err != nil {
		t.Errorf("%s: %v\n%s", id, err, raw)
	}
	return v
}

// KEDA's types (github.com/kedacore/keda/v2/apis/keda/v1alpha1) come with
// the whole operator as dependencies, so these mirror the fields of its
// ScaledObject and TriggerAuthentication (KEDA 2.x), with their JSON names.
// Decoding strictly into them catches a misspelt field as the API server's
// schema validation would.

type scaledObject struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata"`
	Spec              struct {
		ScaleTargetRef struct {
			Name                   string `json:"name"`
			APIVersion             string `json:"apiVersion,omitempty"`
			Kind                   string `json:"kind,omitempty"`
			EnvSourceContainerName string `json:"envSourceContainerName,omitempty"`
		} `json:"scaleTargetRef"`
		PollingInterval       *int32 `json:"pollingInterval,omitempty"`
		InitialCooldownPeriod *int32 `json:"initialCooldownPeriod,omitempty"`
		CooldownPeriod        *int32 `json:"cooldownPeriod,omitempty"`
		IdleReplicaCount      *int32 `json:"idleReplicaCount,omitempty"`
		MinReplicaCount       *int32 `json:"minReplicaCount,omitempty"`
		MaxReplicaCount       *int32 `json:"maxReplicaCount,omitempty"`
		Advanced              *struct {
			HorizontalPodAutoscalerConfig *struct {
				Name     string                                         `json:"name,omitempty"`
				Behavior *autoscalingv2.HorizontalPodAutoscalerBehavior `json:"behavior,omitempty"`
			} `json:"horizontalPodAutoscalerConfig,omitempty"`
			RestoreToOriginalReplicaCount bool `json:"restoreToOriginalReplicaCount,omitempty"`
		} `json:"advanced,omitempty"`
		Triggers []scaleTrigger `json:"triggers"`
		Fallback *struct {
			FailureThreshold int32 `json:"failureThreshold"`
			Replicas         int32 `json:"replicas"`
		} `json:"fallback,omitempty"`
	} `json:"spec"`
}

type scaleTrigger struct {
	Type              string            `json:"type"`
	Name              string            `json:"name,omitempty"`
	UseCachedMetrics  bool              `json:"useCachedMetrics,omitempty"`
	MetricType        string            `json:"metricType,omitempty"`
	Metadata          map[string]string `json:"metadata"`
	AuthenticationRef *struct {
		Name string `json:"name"`
		Kind string `json:"kind,omitempty"`
	} `json:"authenticationRef,omitempty"`
}

type triggerAuthentication struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata"`
	Spec              struct {
		SecretTargetRef []secretTargetRef `json:"secretTargetRef,omitempty"`
		Env             []struct {
			Parameter     string `json:"parameter"`
			Name          string `json:"name"`
			ContainerName string `json:"containerName,omitempty"`
		} `json:"env,omitempty"`
	} `json:"spec"`
}

type secretTargetRef struct {
	Parameter string `json:"parameter"`
	Name      string `json:"name"`
	Key       string `json:"key"`
}

// redisStreamsMetadata are the metadata keys KEDA's redis-streams scaler
// reads; redisAuthParams the parameters its TriggerAuthentication may set.
var (
	redisStreamsMetadata = set("address", "addressFromEnv", "host", "hostFromEnv", "port", "portFromEnv",
		"usernameFromEnv", "passwordFromEnv", "stream", "consumerGroup", "pendingEntriesCount",
		"streamLength", "lagCount", "activationLagCount", "activationStreamLength",
		"activationPendingEntriesCount", "databaseIndex", "enableTLS", "unsafeSsl")
	redisAuthParams = set("address", "host", "port", "username", "password", "tls", "ca", "cert", "key", "keyPassword")
)

func set(s ...string) map[string]bool {
	m := make(map[string]bool, len(s))
	for _, v := range s {
		m[v] = true
	}
	return m
}

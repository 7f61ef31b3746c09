package deploy

import (
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"

	"github.com/streamworker/streamworker/config"
)

// checkDevRedis: the dev Redis never evicts, keeps an AOF on its volume,
// loads the shipped ACL users, and its ACL rendering accepts the very
// passwords the worker's REDIS_URL and KEDA's Secret hold.
func checkDevRedis(t *testing.T, m *manifests, cfg config.Config) {
	ss, ok := m.StatefulSets["redis"]
	if !ok {
		t.Fatal("the dev overlay has no Redis StatefulSet")
	}
	pod := &ss.Spec.Template.Spec
	c := container(t, pod.Containers, "redis")
	args := map[string]string{}
	for i := 0; i+1 < len(c.Args); i += 2 {
		args[c.Args[i]] = c.Args[i+1]
	}
	if args["--maxmemory-policy"] != "noeviction" {
		t.Errorf("Redis maxmemory-policy %q: a stream Redis must not evict", args["--maxmemory-policy"])
	}
	if args["--appendonly"] != "yes" {
		t.Error("Redis runs without an append-only file")
	}
	var aofOnVolume bool
	for _, vm := range c.VolumeMounts {
		for _, vct := range ss.Spec.VolumeClaimTemplates {
			aofOnVolume = aofOnVolume || (vm.Name == vct.Name && vm.MountPath == args["--dir"])
		}
	}
	if !aofOnVolume {
		t.Errorf("Redis --dir %q is not a persistent volume", args["--dir"])
	}
	if svc, ok := m.Services["redis"]; !ok || !subset(svc.Spec.Selector, ss.Spec.Template.Labels) {
		t.Error("no Service redis selects the Redis pod")
	}
	u, err := url.Parse(cfg.RedisURL)
	if err != nil || u.Hostname() != "redis" || u.Port() != args["--port"] {
		t.Errorf("REDIS_URL %s does not point at the Redis Service (port %s)", config.Redact(cfg.RedisURL), args["--port"])
	}

	// Render the ACL file as the init container does, with its own script.
	init := container(t, pod.InitContainers, "acl")
	var tmpl *corev1.ConfigMap
	for _, v := range pod.Volumes {
		if v.ConfigMap != nil && strings.HasPrefix(v.ConfigMap.Name, "redis-acl-template") {
			tmpl = m.ConfigMaps[v.ConfigMap.Name]
		}
	}
	if tmpl == nil {
		t.Fatal("the Redis pod mounts no ConfigMap redis-acl-template that is in the output")
	}
	shipped, err := os.ReadFile("redis/users.acl")
	if err != nil {
		t.Fatal(err)
	}
	if tmpl.Data["users.acl"] != string(shipped) {
		t.Error("the ACL ConfigMap differs from deploy/redis/users.acl")
	}
	dir := t.TempDir()
	script := init.Command[len(init.Command)-1]
	for _, vm := range init.VolumeMounts {
		if err := os.MkdirAll(filepath.Join(dir, vm.MountPath), 0o700); err != nil {
			t.Fatal(err)
		}
		script = strings.ReplaceAll(script, vm.MountPath+"/", filepath.Join(dir, vm.MountPath)+"/")
	}
	if err := os.WriteFile(filepath.Join(dir, "/etc/redis/template/users.acl"), shipped, 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := execCommand(init.Command[0], append(slices.Clone(init.Command[1:len(init.Command)-1]), script)...)
	secretEnv := map[string]string{}
	for _, e := range init.Env {
		s := m.Secrets[e.ValueFrom.SecretKeyRef.Name]
		v, ok := secretValue(s, e.ValueFrom.SecretKeyRef.Key)
		if !ok {
			t.Fatalf("init env %s: no such Secret key", e.Name)
		}
		secretEnv[e.Name] = v
		cmd.Env = append(cmd.Env, e.Name+"="+v)
	}
	cmd.Env = append(cmd.Env, "PATH="+os.Getenv("PATH"))
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("the ACL init script failed: %v\n%s", err, out)
	}
	for _, pw := range secretEnv {
		if strings.Contains(string(out), pw) {
			t.Error("the ACL init script prints a password")
		}
	}
	rendered, err := os.ReadFile(filepath.Join(dir, "/etc/redis/acl/users.acl"))
	if err != nil {
		t.Fatal(err)
	}
	workerPW, _ := u.User.Password()
	kedaPW, _ := secretValue(m.Secrets["streamworker-keda-redis"], "password")
	scriptsPW := checkScriptsJob(t, m, args["--port"])
	for user, pw := range map[string]string{"worker": workerPW, "keda": kedaPW, "scripts": scriptsPW} {
		if !strings.Contains(aclLine(t, string(rendered), user), " #"+sha256Hex(pw)+" ") {
			t.Errorf("the rendered ACL file does not give %s the password its client uses", user)
		}
	}
	if strings.Contains(string(rendered), "_PASSWORD_SHA256") {
		t.Errorf("placeholders left in the rendered ACL file:\n%s", rendered)
	}
	// KEDA reaches the dev Redis through its Service, from KEDA's namespace.
	addr, _ := secretValue(m.Secrets["streamworker-keda-redis"], "address")
	if want := "redis." + ss.Namespace + ".svc:" + args["--port"]; addr != want {
		t.Errorf("KEDA's address %q, want %q", addr, want)
	}
}

// checkScriptsJob: the dev overlay loads the scripts as functions (the
// worker runs with REDIS_SCRIPTS=functions) with a Job that runs streamctl
// scripts load as the scripts ACL user, on the Redis Service; it returns
// that user's password.
func checkScriptsJob(t *testing.T, m *manifests, port string) string {
	t.Helper()
	job, ok := m.Jobs["streamworker-scripts"]
	if !ok {
		t.Fatal("the dev overlay has no Job streamworker-scripts to load the scripts as functions")
	}
	c := container(t, job.Spec.Template.Spec.Containers, "scripts")
	if want := []string{"/usr/local/bin/streamctl", "scripts", "load"}; !slices.Equal(c.Command, want) {
		t.Errorf("the scripts Job runs %v, want %v", c.Command, want)
	}
	if d := m.Deployments["streamworker"]; d == nil || c.Image != container(t, d.Spec.Template.Spec.Containers, "worker").Image {
		t.Errorf("the scripts Job's image %s is not the worker's: the libraries are the worker version's scripts", c.Image)
	}
	env := resolveEnv(t, m, nil, c)
	u, err := url.Parse(env["REDIS_URL"].value)
	if err != nil || u.User.Username() != "scripts" || u.Hostname() != "redis" || u.Port() != port {
		t.Fatalf("the scripts Job's REDIS_URL %q: want the scripts user on the Redis Service", config.Redact(env["REDIS_URL"].value))
	}
	pw, _ := u.User.Password()
	return pw
}

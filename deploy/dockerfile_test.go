package deploy

import (
	"encoding/json"
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
)

// There is no Docker engine in CI, so the Dockerfile is checked by reading
// it: what makes the image safe to run on Kubernetes must not regress.

// instruction is one Dockerfile instruction, continuation lines joined.
type instruction struct {
	cmd  string // upper case: FROM, RUN, ...
	args string
	line int
}

// stage is one FROM and the instructions after it.
type stage struct {
	from  instruction
	image string
	name  string
	body  []instruction
}

func parseDockerfile(t *testing.T, path string) (args []instruction, stages []stage) {
	t.Helper()
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var cur *instruction
	var all []instruction
	for i, line := range strings.Split(string(raw), "\n") {
		trimmed := strings.TrimSpace(line)
		if trimmed == "" || strings.HasPrefix(trimmed, "#") {
			continue // blank, comment or parser directive
		}
		if cur == nil {
			cmd, rest, _ := strings.Cut(trimmed, " ")
			cur = &instruction{cmd: strings.ToUpper(cmd), line: i + 1}
			trimmed = rest
		}
		if s, ok := strings.CutSuffix(trimmed, "\\"); ok {
			cur.args += strings.TrimSpace(s) + " "
			continue
		}
		cur.args = strings.TrimSpace(cur.args + trimmed)
		all = append(all, *cur)
		cur = nil
	}
	for _, in := range all {
		if in.cmd == "FROM" {
			f := strings.Fields(in.args)
			f = slices.DeleteFunc(f, func(s string) bool { return strings.HasPrefix(s, "--") })
			st := stage{from: in, image: f[0]}
			if len(f) == 3 && strings.EqualFold(f[1], "AS") {
				st.name = f[2]
			}
			stages = append(stages, st)
			continue
		}
		if len(stages) == 0 {
			args = append(args, in) // ARGs before the first FROM
			continue
		}
		stages[len(stages)-1].body = append(stages[len(stages)-1].body, in)
	}
	return args, stages
}

func TestDockerfile(t *testing.T) {
	globals, stages := parseDockerfile(t, "../Dockerfile")
	if len(stages) < 2 {
		t.Fatalf("%d stages: want a multi-stage build (toolchain in the build stage only)", len(stages))
	}
	final := stages[len(stages)-1]
	if !strings.HasPrefix(final.image, "gcr.io/distroless/") && final.image != "scratch" {
		t.Errorf("final image %s: want distroless or scratch", final.image)
	}
	binaries := []string{"worker", "producer", "streamctl"}

	t.Run("StaticBuild", func(t *testing.T) {
		var cgoOff bool
		var built []string
		for _, st := range stages[:len(stages)-1] {
			for _, in := range st.body {
				if (in.cmd == "ENV" || in.cmd == "RUN") && regexp.MustCompile(`\bCGO_ENABLED=0\b`).MatchString(in.args) {
					cgoOff = true
				}
				if in.cmd == "RUN" && strings.Contains(in.args, "go build") {
					if !cgoOff {
						t.Errorf("line %d: go build before CGO_ENABLED=0", in.line)
					}
					for _, b := range binaries {
						if strings.Contains(in.args, "./cmd/"+b) {
							built = append(built, b)
						}
					}
				}
			}
		}
		if !slices.Equal(built, binaries) {
			t.Errorf("go build builds %v, want %v", built, binaries)
		}
	})

	t.Run("FinalStage", func(t *testing.T) {
		var copied []string
		var user string
		var entrypoint []string
		for _, in := range final.body {
			switch in.cmd {
			case "COPY":
				if !strings.Contains(in.args, "--from=") {
					t.Errorf("line %d: the final stage copies from the build context; copy only built files", in.line)
				}
				f := strings.Fields(in.args)
				dest := f[len(f)-1]
				for _, src := range f[1 : len(f)-1] {
					name := src[strings.LastIndex(src, "/")+1:]
					copied = append(copied, strings.TrimSuffix(dest, "/")+"/"+name)
				}
			case "USER":
				user = in.args
			case "ENTRYPOINT":
				if err := json.Unmarshal([]byte(in.args), &entrypoint); err != nil {
					t.Errorf("line %d: ENTRYPOINT %s is not exec form (a JSON array): a shell would be PID 1 and SIGTERM would not reach the worker", in.line, in.args)
				}
			case "CMD":
				if !strings.HasPrefix(in.args, "[") {
					t.Errorf("line %d: CMD in shell form", in.line)
				}
			case "RUN":
				if final.image == "scratch" || strings.HasPrefix(final.image, "gcr.io/distroless/") {
					t.Errorf("line %d: RUN in a final stage without a shell", in.line)
				}
			}
		}
		for _, b := range binaries {
			if !slices.ContainsFunc(copied, func(c string) bool { return strings.HasSuffix(c, "/"+b) }) {
				t.Errorf("%s is not copied into the image (copied: %v)", b, copied)
			}
		}
		uid, _, _ := strings.Cut(user, ":")
		if n, err := strconv.Atoi(uid); err != nil || n == 0 {
			t.Errorf("USER %q: want a numeric non-root UID, so that runAsNonRoot can verify it", user)
		} else if dep := render(t, "k8s/base").Deployments["streamworker"]; dep != nil {
			sc := dep.Spec.Template.Spec.SecurityContext
			if sc == nil || sc.RunAsUser == nil || *sc.RunAsUser != int64(n) {
				t.Errorf("the Deployment's runAsUser is not the image's USER %d", n)
			}
		}
		if len(entrypoint) == 0 || !slices.Contains(copied, entrypoint[0]) || !strings.HasSuffix(entrypoint[0], "/worker") {
			t.Errorf("ENTRYPOINT %v: want the worker binary copied into the image", entrypoint)
		}
	})

	t.Run("GoVersionMatchesGoMod", func(t *testing.T) {
		mod, err := os.ReadFile("../go.mod")
		if err != nil {
			t.Fatal(err)
		}
		want := regexp.MustCompile(`(?m)^go (\S+)$`).FindSubmatch(mod)
		for _, a := range globals {
			if name, val, ok := strings.Cut(a.args, "="); a.cmd == "ARG" && ok && name == "GO_VERSION" {
				if want == nil || val != string(want[1]) {
					t.Errorf("ARG GO_VERSION=%s; go.mod says go %s", val, want[1])
				}
				return
			}
		}
		t.Error("no ARG GO_VERSION before the first FROM")
	})
}

package scriptfn_test

import (
	"context"
	"strings"
	"testing"

	"github.com/redis/go-redis/v9"

	"github.com/streamworker/streamworker/internal/scriptfn"
	"github.com/streamworker/streamworker/internal/testredis"
)

// TestCheck: Check refuses a server without the libraries, or with one of
// them in other code, naming what and how to load them, and passes once
// they are all there; other versions' libraries do not matter.
func TestCheck(t *testing.T) {
	t.Parallel()
	c := testredis.Start(t).Client(t)
	ctx := context.Background()
	libs := scriptfn.Libraries()
	err := scriptfn.Check(ctx, c, libs)
	for _, want := range []string{"REDIS_SCRIPTS=functions", "streamctl scripts load", libs[0].Name, "FUNCTION LOAD", "missing"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("Check with nothing loaded = %v; want it to say %q", err, want)
		}
	}
	loadAll(t, c, libs[1:])
	if err := scriptfn.Check(ctx, c, libs); err == nil || !strings.Contains(err.Error(), "1 missing ("+libs[0].Name+")") {
		t.Errorf("Check with one missing = %v", err)
	}
	// Another version's library, and one of ours in other code.
	other := scriptfn.Build(`return 'older'`)
	altered := strings.Replace(libs[0].Code, "local function run", "-- altered\nlocal function run", 1)
	loadAll(t, c, []scriptfn.Library{other, {Name: libs[0].Name, Code: altered}})
	err = scriptfn.Check(ctx, c, libs)
	if err == nil || !strings.Contains(err.Error(), "1 with other code ("+libs[0].Name+")") {
		t.Errorf("Check with an altered library = %v", err)
	}
	if err := c.FunctionDelete(ctx, libs[0].Name).Err(); err != nil {
		t.Fatal(err)
	}
	loadAll(t, c, libs[:1])
	if err := scriptfn.Check(ctx, c, libs); err != nil {
		t.Errorf("Check with every library loaded = %v", err)
	}
	nodes, err := scriptfn.State(ctx, c, libs)
	if err != nil || len(nodes) != 1 || len(nodes[0].Others) != 1 || nodes[0].Others[0] != other.Name || len(nodes[0].Present) != len(libs) {
		t.Errorf("State = %+v, %v; want every library present and %s among the others", nodes, err, other.Name)
	}
}

// TestCheckRefused: a user that may not list functions, and a server that
// has none, get errors that say what to change.
func TestCheckRefused(t *testing.T) {
	t.Parallel()
	srv := testredis.Start(t)
	admin := srv.Client(t)
	ctx := context.Background()
	if err := admin.Do(ctx, "ACL", "SETUSER", "nolist", "on", ">pw", "~*", "-@all", "+fcall").Err(); err != nil {
		t.Fatal(err)
	}
	c := redis.NewClient(&redis.Options{Addr: srv.Addr, Username: "nolist", Password: "pw"})
	defer c.Close()
	err := scriptfn.Check(ctx, c, scriptfn.Libraries())
	if err == nil || !strings.Contains(err.Error(), "NOPERM") || !strings.Contains(err.Error(), "+function|list") {
		t.Errorf("Check without +function|list = %v; want the NOPERM and the grant it needs", err)
	}
}

package streamadmin

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"

	"github.com/redis/go-redis/v9"

	"github.com/streamworker/streamworker/internal/scriptfn"
)

// ScriptsState is what one primary has of the function libraries that
// REDIS_SCRIPTS=functions calls: one library per Lua script of the worker
// daemon and streamctl, named sw_<the script's SHA-1>.
type ScriptsState struct {
	// Addr is the primary's host:port on a Redis Cluster; empty otherwise.
	Addr string
	// Libraries is how many libraries this version has.
	Libraries int
	// Missing and Differ name the libraries the server lacks, and those it
	// has with other code.
	Missing, Differ []string
	// Others are libraries named sw_ that this version does not have: other
	// versions' scripts, harmless while unused (FUNCTION DELETE removes one
	// once no worker of its version runs).
	Others []string
}

// Complete reports whether the primary has every library as this version
// builds it.
func (s ScriptsState) Complete() bool { return len(s.Missing) == 0 && len(s.Differ) == 0 }

// ScriptsLoaded is what LoadScripts did on one primary.
type ScriptsLoaded struct {
	// Addr is the primary's host:port on a Redis Cluster; empty otherwise.
	Addr string
	// Loaded were missing and are loaded now; Present were there as built;
	// Replaced were there with other code and are replaced.
	Loaded, Present, Replaced int
}

// ScriptsStatus lists, per primary, what the server has of this version's
// function libraries. It needs FUNCTION LIST (+function|list).
func (a *Admin) ScriptsStatus(ctx context.Context) ([]ScriptsState, error) {
	libs := scriptfn.Libraries()
	nodes, err := scriptfn.State(ctx, a.client, libs)
	if err != nil {
		return nil, scriptsHint(err, "FUNCTION LIST (+function|list)")
	}
	out := make([]ScriptsState, len(nodes))
	for i, n := range nodes {
		out[i] = ScriptsState{Addr: n.Addr, Libraries: len(libs), Missing: n.Missing, Differ: n.Differ, Others: n.Others}
	}
	return out, nil
}

// LoadScripts loads this version's function libraries on every primary (on
// a Redis Cluster each primary; replicas follow theirs, and the libraries
// are kept in RDB and AOF): the missing ones, and again with REPLACE those
// that have other code under the same name. Loading what is there changes
// nothing, so it can run at every deployment. It needs FUNCTION LOAD and
// FUNCTION LIST (+function|load +function|list): the scripts user of
// deploy/redis/users.acl, not the worker's.
func (a *Admin) LoadScripts(ctx context.Context) ([]ScriptsLoaded, error) {
	libs := scriptfn.Libraries()
	var (
		mu  sync.Mutex
		out []ScriptsLoaded
	)
	err := scriptfn.EachPrimary(ctx, a.client, func(ctx context.Context, addr string, c redis.Cmdable) error {
		code, err := scriptfn.Loaded(ctx, c)
		if err != nil {
			return err
		}
		res := ScriptsLoaded{Addr: addr}
		for _, l := range libs {
			switch c2, ok := code[l.Name]; {
			case !ok:
				err = c.FunctionLoad(ctx, l.Code).Err()
				switch {
				case err == nil:
					res.Loaded++
				case redis.HasErrorPrefix(err, "Library '"+l.Name+"' already exists"):
					err = nil // loaded meanwhile by another run; the check below tells
					res.Present++
				}
			case c2 != l.Code:
				if err = c.FunctionLoadReplace(ctx, l.Code).Err(); err == nil {
					res.Replaced++
				}
			default:
				res.Present++
			}
			if err != nil {
				return fmt.Errorf("FUNCTION LOAD %s: %w", l.Name, err)
			}
		}
		mu.Lock()
		out = append(out, res)
		mu.Unlock()
		return nil
	})
	if err != nil {
		return nil, scriptsHint(err, "FUNCTION LOAD and FUNCTION LIST (+function|load +function|list)")
	}
	slices.SortFunc(out, func(a, b ScriptsLoaded) int { return strings.Compare(a.Addr, b.Addr) })
	// Another loader of another version may have won a race above.
	if err := scriptfn.Check(ctx, a.client, libs); err != nil {
		return out, err
	}
	return out, nil
}

// scriptsHint adds to a refusal what the Redis user or server needs.
func scriptsHint(err error, needs string) error {
	switch {
	case redis.HasErrorPrefix(err, "NOPERM"):
		return fmt.Errorf("%w: the Redis user needs %s; use the scripts user of deploy/redis/users.acl (REDIS_URL=redis://scripts:<password>@host:6379/0) or an administrator, not the worker user", err, needs)
	case redis.HasErrorPrefix(err, "unknown command"):
		return fmt.Errorf("%w: Redis functions need Redis 7.0 or later; on an older server keep REDIS_SCRIPTS=eval", err)
	}
	return err
}

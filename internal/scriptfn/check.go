package scriptfn

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"

	"github.com/redis/go-redis/v9"
)

// NodeState is what one primary has of a set of libraries.
type NodeState struct {
	// Addr is the primary's host:port on a Redis Cluster; empty otherwise.
	Addr string
	// Present, Missing and Differ are the names of the libraries the server
	// has as built, does not have, and has with other code (an older build
	// of this package, or someone else's).
	Present, Missing, Differ []string
	// Others are the libraries named with Prefix that are not in the set:
	// other versions' scripts, harmless, deleted with FUNCTION DELETE once
	// no client of that version runs.
	Others []string
}

// Complete reports whether the node has every library as built.
func (n NodeState) Complete() bool { return len(n.Missing) == 0 && len(n.Differ) == 0 }

// State lists (FUNCTION LIST LIBRARYNAME sw_* WITHCODE, which the ACL
// grants as +function|list) what every primary has of libs: on a Redis
// Cluster each primary, which a replica follows; otherwise the one server.
func State(ctx context.Context, client redis.UniversalClient, libs []Library) ([]NodeState, error) {
	var (
		mu  sync.Mutex
		out []NodeState
	)
	err := EachPrimary(ctx, client, func(ctx context.Context, addr string, c redis.Cmdable) error {
		code, err := Loaded(ctx, c)
		if err != nil {
			return err
		}
		n := NodeState{Addr: addr}
		for _, l := range libs {
			switch c, ok := code[l.Name]; {
			case !ok:
				n.Missing = append(n.Missing, l.Name)
			case c != l.Code:
				n.Differ = append(n.Differ, l.Name)
			default:
				n.Present = append(n.Present, l.Name)
			}
			delete(code, l.Name)
		}
		for name := range code {
			n.Others = append(n.Others, name)
		}
		slices.Sort(n.Others)
		mu.Lock()
		out = append(out, n)
		mu.Unlock()
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("listing the script libraries (FUNCTION LIST): %w", err)
	}
	slices.SortFunc(out, func(a, b NodeState) int { return strings.Compare(a.Addr, b.Addr) })
	return out, nil
}

// Check returns an error unless every primary has every library of libs as
// built: a *MissingError (errors.Is ErrNotLoaded) naming what is missing
// where and how to load it, or the error that kept it from listing them.
func Check(ctx context.Context, client redis.UniversalClient, libs []Library) error {
	nodes, err := State(ctx, client, libs)
	if err != nil {
		if redis.HasErrorPrefix(err, "NOPERM") {
			return fmt.Errorf("REDIS_SCRIPTS=functions: %w; the user needs +function|list (read-only) beside +fcall, as the worker user of deploy/redis/users.acl has", err)
		}
		if redis.HasErrorPrefix(err, "unknown command") {
			return fmt.Errorf("REDIS_SCRIPTS=functions needs Redis 7.0 or later (functions): %w; use REDIS_SCRIPTS=eval on this server", err)
		}
		return err
	}
	var bad []NodeState
	for _, n := range nodes {
		if !n.Complete() {
			bad = append(bad, n)
		}
	}
	if len(bad) == 0 {
		return nil
	}
	return &MissingError{Nodes: bad, Libraries: len(libs)}
}

// MissingError is Check's error when libraries are missing or differ.
type MissingError struct {
	// Nodes are the primaries that lack a library as built.
	Nodes []NodeState
	// Libraries is how many libraries were checked.
	Libraries int
}

func (e *MissingError) Error() string {
	var bad []string
	for _, n := range e.Nodes {
		where := "this Redis"
		if n.Addr != "" {
			where = "primary " + n.Addr
		}
		var what []string
		if len(n.Missing) > 0 {
			what = append(what, fmt.Sprintf("%d missing (%s)", len(n.Missing), abbreviate(n.Missing)))
		}
		if len(n.Differ) > 0 {
			what = append(what, fmt.Sprintf("%d with other code (%s)", len(n.Differ), abbreviate(n.Differ)))
		}
		bad = append(bad, fmt.Sprintf("%s: %d script libraries, %s", where, e.Libraries, strings.Join(what, ", ")))
	}
	return "REDIS_SCRIPTS=functions, and the scripts are not all loaded as functions: " + strings.Join(bad, "; ") + ". " +
		"Run `streamctl scripts load` once, with the same REDIS_* settings and REDIS_URL naming a user allowed FUNCTION LOAD " +
		"(the scripts user of deploy/redis/users.acl), then start again"
}

// Is makes errors.Is(err, ErrNotLoaded) true.
func (e *MissingError) Is(target error) bool { return target == ErrNotLoaded }

// abbreviate lists names, at most three of them.
func abbreviate(names []string) string {
	if len(names) <= 3 {
		return strings.Join(names, ", ")
	}
	return strings.Join(names[:3], ", ") + fmt.Sprintf(" and %d more", len(names)-3)
}

// EachPrimary calls fn with every primary of client's Redis: each primary of
// a Redis Cluster, at once, with its address; the one server of any other
// client, with an empty address. It returns the first error.
func EachPrimary(ctx context.Context, client redis.UniversalClient, fn func(ctx context.Context, addr string, c redis.Cmdable) error) error {
	cc, ok := client.(*redis.ClusterClient)
	if !ok {
		return fn(ctx, "", client)
	}
	return cc.ForEachMaster(ctx, func(ctx context.Context, c *redis.Client) error {
		addr := c.Options().Addr
		if err := fn(ctx, addr, c); err != nil {
			return fmt.Errorf("%s: %w", addr, err)
		}
		return nil
	})
}

// Loaded returns the code of every library of ours (named Prefix…) that one
// node has, by library name.
func Loaded(ctx context.Context, c redis.Cmdable) (map[string]string, error) {
	have, err := c.FunctionList(ctx, redis.FunctionListQuery{LibraryNamePattern: Prefix + "*", WithCode: true}).Result()
	if err != nil {
		return nil, err
	}
	code := make(map[string]string, len(have))
	for _, l := range have {
		code[l.Name] = l.Code
	}
	return code, nil
}

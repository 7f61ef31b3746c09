package main

import (
	"fmt"
	"io"
	"strings"

	"github.com/spf13/cobra"

	"github.com/streamworker/streamworker/internal/cli"
	"github.com/streamworker/streamworker/streamadmin"
)

func (a *app) scriptsCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "scripts",
		Short: "Load or check the Lua scripts as Redis functions (REDIS_SCRIPTS=functions)",
		Long: `Load or check the function libraries that REDIS_SCRIPTS=functions calls: one per
Lua script of the worker and streamctl, named sw_<the script's SHA-1>, so that
the worker's Redis user needs FCALL and never EVAL (deploy/redis/users.acl).

Load them once per Redis (on a Cluster: every primary) before starting workers
with REDIS_SCRIPTS=functions, again after upgrading to a version whose scripts
changed (old and new libraries coexist during a rolling update), and after
adding a Cluster primary. Loading needs a Redis user allowed FUNCTION LOAD:
the scripts user of deploy/redis/users.acl, or an administrator, never the
worker user. Redis 7.0 or later.`,
		Args: cli.UnknownCommand,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return cli.Usagef(cmd, "missing command: load or status")
		},
	}
	cmd.AddCommand(a.scriptsLoadCommand(), a.scriptsStatusCommand())
	return cmd
}

func (a *app) scriptsLoadCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "load",
		Short: "Load the script libraries on every primary",
		Long: `Load this version's script libraries on every primary: the missing ones, and
again (FUNCTION LOAD REPLACE) any that has other code under its name. What is
loaded already is left alone, so it is safe to run at every deployment. Exit
status 1 when Redis refuses (the user lacks +function|load +function|list, or
Redis is older than 7.0).`,
		Example: `  REDIS_URL=redis://scripts:$SCRIPTS_PASSWORD@redis:6379/0 streamctl scripts load`,
		Args:    cli.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			admin, done, err := a.admin()
			if err != nil {
				return err
			}
			defer done()
			loaded, err := admin.LoadScripts(cmd.Context())
			for _, l := range loaded {
				fmt.Fprintf(a.io.out, "%s%d script libraries: %d loaded, %d already there, %d replaced\n",
					where(l.Addr), l.Loaded+l.Present+l.Replaced, l.Loaded, l.Present, l.Replaced)
			}
			if err != nil {
				return fmt.Errorf("loading the script libraries: %w", err)
			}
			return nil
		},
	}
}

func (a *app) scriptsStatusCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "status",
		Short: "Show which script libraries every primary has",
		Long: `Show, per primary, whether it has every script library of this version, which
are missing or have other code, and the libraries of other versions (harmless;
FUNCTION DELETE removes one once no worker of its version runs). Exit status 1
when a library is missing or differs: run streamctl scripts load.`,
		Args: cli.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			admin, done, err := a.admin()
			if err != nil {
				return err
			}
			defer done()
			states, err := admin.ScriptsStatus(cmd.Context())
			if err != nil {
				return err
			}
			complete := true
			for _, s := range states {
				writeScriptsState(a.io.out, s)
				complete = complete && s.Complete()
			}
			if !complete {
				fmt.Fprintln(a.io.err, "streamctl: script libraries are missing or differ: run streamctl scripts load as a user allowed FUNCTION LOAD")
				return &cli.ExitError{Code: 1}
			}
			return nil
		},
	}
}

func writeScriptsState(w io.Writer, s streamadmin.ScriptsState) {
	have := s.Libraries - len(s.Missing) - len(s.Differ)
	fmt.Fprintf(w, "%s%d of %d script libraries loaded", where(s.Addr), have, s.Libraries)
	if len(s.Missing) > 0 {
		fmt.Fprintf(w, "; missing: %s", strings.Join(s.Missing, " "))
	}
	if len(s.Differ) > 0 {
		fmt.Fprintf(w, "; other code: %s", strings.Join(s.Differ, " "))
	}
	if len(s.Others) > 0 {
		fmt.Fprintf(w, "; %d of other versions: %s", len(s.Others), strings.Join(s.Others, " "))
	}
	fmt.Fprintln(w)
}

// where prefixes a line with a Cluster primary's address.
func where(addr string) string {
	if addr == "" {
		return ""
	}
	return addr + ": "
}

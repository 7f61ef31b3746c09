#!/usr/bin/env bash
# Gets this machine ready for `make test` (which runs it first): the tests
# need a redis-server on PATH (or TEST_REDIS_URL, or Docker), promtool on
# PATH for the deploy module, chromium on PATH for the dashboard's browser
# tests, and a PostgreSQL for handlers/users
# (TEST_DATABASE_URL, or one at 127.0.0.1:5432 with trust auth and a `test`
# database). What is missing is installed with apt-get and
# started when this runs as root or with password-less sudo, saying each step
# on stderr; otherwise it says exactly what is missing and how to get it, and
# exits 1. It never touches a PostgreSQL that already answers.
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive

say() { echo "test-deps: $*" >&2; }

can_root() { ((EUID == 0)) || sudo -n true 2>/dev/null; }
as_root() { if ((EUID == 0)); then "$@"; else sudo -n "$@"; fi; }

# quietly runs a command with its output captured, and shows the output only
# if the command fails.
quietly() {
	local log rc=0
	log="$(mktemp)"
	"$@" >"$log" 2>&1 || rc=$?
	if ((rc != 0)); then
		say "failed (exit $rc): $*"
		cat "$log" >&2
	fi
	rm -f "$log"
	return "$rc"
}

updated=""
apt_install() {
	if ! can_root || ! command -v apt-get >/dev/null; then
		return 1
	fi
	say "installing $* with apt-get"
	if [[ -z $updated ]]; then
		quietly as_root apt-get update -qq
		updated=1
	fi
	quietly as_root apt-get install -y -qq --no-install-recommends "$@"
}

missing=()

# Redis: internal/testredis starts its own redis-server processes.
if [[ -z ${TEST_REDIS_URL:-} ]] && ! command -v redis-server >/dev/null; then
	# redis-tools brings redis-cli, for debugging a failed run.
	if ! apt_install redis-server redis-tools; then
		if command -v docker >/dev/null && docker info >/dev/null 2>&1; then
			say "no redis-server on PATH: the tests start a Redis container with Docker instead"
		else
			missing+=("redis-server on PATH: 'sudo apt-get install redis-server' (or set TEST_REDIS_URL to a Redis the tests may flush, or run Docker)")
		fi
	fi
fi

# promtool: the deploy module's tests check the alert rules and run their
# unit tests (deploy/prometheus) with it. Debian ships it in the prometheus
# package, whose postinst also starts a Prometheus server on :9090 where an
# init system runs (not in a container whose policy-rc.d forbids it); the
# tests use no port of it.
if ! command -v promtool >/dev/null; then
	if ! apt_install prometheus; then
		missing+=("promtool on PATH: 'sudo apt-get install --no-install-recommends prometheus' (or a release from https://prometheus.io/download/)")
	fi
fi

# chromium: the dashboard's browser tests (streamadmin/web) drive Debian's
# chromium; with CI=true they fail without it. fonts-dejavu-core gives its
# screenshots a font where nothing else brought one.
if ! command -v chromium >/dev/null; then
	if ! apt_install chromium fonts-dejavu-core; then
		missing+=("chromium on PATH: 'sudo apt-get install chromium' (the browser tests of streamadmin/web drive it)")
	fi
fi

# PostgreSQL for handlers/users.
pg_up() { command -v pg_isready >/dev/null && pg_isready -q -h 127.0.0.1 -p 5432; }
if [[ -z ${TEST_DATABASE_URL:-} ]] && ! pg_up; then
	if ! command -v pg_ctlcluster >/dev/null; then
		apt_install postgresql || true
	fi
	if command -v pg_ctlcluster >/dev/null && can_root; then
		pgver="$(ls /etc/postgresql | sort -V | tail -1)"
		hba="/etc/postgresql/${pgver}/main/pg_hba.conf"
		if ! as_root grep -q '^host all all 127.0.0.1/32 trust' "$hba"; then
			# A test database on loopback: trust local TCP, first match wins.
			say "letting loopback TCP connect without a password in $hba"
			as_root sed -i -e '1i host all all 127.0.0.1/32 trust' -e '1i host all all ::1/128 trust' "$hba"
		fi
		say "starting PostgreSQL $pgver"
		quietly as_root pg_ctlcluster --skip-systemctl-redirect "$pgver" main restart ||
			quietly as_root pg_ctlcluster --skip-systemctl-redirect "$pgver" main start || true
		for _ in $(seq 100); do pg_up && break; sleep 0.2; done
	fi
	if ! pg_up; then
		missing+=("PostgreSQL at 127.0.0.1:5432 with trust auth for loopback: 'sudo apt-get install postgresql', then add 'host all all 127.0.0.1/32 trust' at the top of pg_hba.conf and restart it (or set TEST_DATABASE_URL=postgres://user:pass@host:port/db)")
	fi
fi
if [[ -z ${TEST_DATABASE_URL:-} ]] && pg_up; then
	if ! psql -h 127.0.0.1 -U postgres -d postgres -tAc "SELECT 1 FROM pg_database WHERE datname = 'test'" 2>/dev/null | grep -q 1; then
		say "creating the database 'test'"
		quietly psql -h 127.0.0.1 -U postgres -d postgres -c 'CREATE DATABASE test' ||
			missing+=("a database 'test' that user postgres reaches without a password on 127.0.0.1:5432 (or set TEST_DATABASE_URL)")
	fi
fi

if ((${#missing[@]} > 0)); then
	say "the tests cannot run on this machine yet (this script installs what is missing only as root or with password-less sudo, with apt-get). Missing:"
	for m in "${missing[@]}"; do say "  - $m"; done
	exit 1
fi

#!/usr/bin/env bash
# What the suite needs besides Python packages, started or installed when missing (make test runs this).
set -euo pipefail
# The queue tests run against PostgreSQL too: start the machine's cluster if it is not running.
if ! pg_isready -q -h 127.0.0.1 -p 5432 2>/dev/null; then
    if command -v pg_ctlcluster >/dev/null && [ -d /etc/postgresql ]; then
        pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | sort -V | tail -1)" main start
        for _ in $(seq 30); do pg_isready -q -h 127.0.0.1 -p 5432 && break; sleep 1; done
    else
        echo "PostgreSQL is not running at 127.0.0.1:5432: start one or set CODER_TEST_POSTGRES_URL" >&2
    fi
fi
# The workbench's browser tests drive Debian's Chromium (Playwright's own browser download cannot work here).
if ! command -v chromium >/dev/null; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
        apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium
    else
        echo "Debian's chromium is missing: run 'apt-get install chromium' as root (the browser tests need it)" >&2
    fi
fi

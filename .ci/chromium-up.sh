#!/usr/bin/env bash
# Debian's Chromium and ChromeDriver for the page tests (tests/pages_browser.rs), which
# fail without them. Idempotent; quiet on success. Nothing is downloaded but the packages.
set -euo pipefail
command -v chromium >/dev/null 2>&1 && command -v chromedriver >/dev/null 2>&1 && exit 0
export DEBIAN_FRONTEND=noninteractive
{ apt-get update -qq && apt-get install -y -qq chromium chromium-driver; } >/tmp/gocd-dind-apt-chromium.log 2>&1 ||
  { echo "chromium-up: apt-get failed:" >&2; tail -n 30 /tmp/gocd-dind-apt-chromium.log >&2; exit 1; }

#!/usr/bin/env bash
# Install Debian's chromium for the demo's browser test (tests/test_demo_browser.py).
#
# Idempotent: does nothing when /usr/bin/chromium is there. Never fails the CI run: if the
# install cannot happen (no root, no apt, no network), it says so and the browser test skips
# with its reason. Playwright drives this system chromium; `playwright install` is not used.
set -u

if [ -x /usr/bin/chromium ]; then
    echo "install-browser: /usr/bin/chromium is already installed"
    exit 0
fi
if ! command -v apt-get >/dev/null 2>&1; then
    echo "install-browser: no apt-get here; the browser test will skip"
    exit 0
fi
if [ "$(id -u)" -eq 0 ]; then
    as_root=""
elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
    as_root="sudo -n"
else
    echo "install-browser: not root and no password-less sudo; the browser test will skip"
    exit 0
fi

echo "install-browser: installing chromium with apt-get"
if $as_root apt-get update -qq \
    && $as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; then
    echo "install-browser: $(/usr/bin/chromium --version 2>/dev/null || echo chromium installed)"
else
    echo "install-browser: apt-get could not install chromium; the browser test will skip"
fi
exit 0

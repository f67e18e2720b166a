#!/usr/bin/env bash
# Debian packages the test suite and the benchmarks use as real peers; installs the missing ones.
# Called by `make test` (and so by .ci/run). Needs root (or sudo); without it, prints what is missing.
set -u
PACKAGES=(
  chromium            # browser tests (Playwright drives Debian's chromium; never a downloaded browser)
  swaks               # a real SMTP client for submission tests
  postfix             # a null client relaying to SMTP submission with SASL (tests), smtp-source (benches);
                      # noninteractive install, not started by it (tests run a private instance)
  libsasl2-modules    # Postfix's SASL client mechanisms (PLAIN, LOGIN)
  libmail-dkim-perl   # Mail::DKIM: an independent DKIM verifier
  opendkim-tools      # opendkim-testmsg and friends: a second independent verifier
  stress-ng           # loading the machine while the flaky-test checks run
  wrk                 # HTTP load generator: a webhook receiver's own capacity (bench/webhooks.py)
)
missing=()
for p in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo -n"
echo "installing Debian packages: ${missing[*]}"
if ! ($SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}") >/tmp/mailtrack-apt.log 2>&1; then
  echo "warning: could not install ${missing[*]} (see /tmp/mailtrack-apt.log); tests that need them are skipped"
fi
exit 0

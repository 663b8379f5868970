#!/usr/bin/env bash
# Installs every Debian package sigrelay needs to build, test, benchmark
# (bench/e2e.sh --quick) and run the quickstart. Each package is named here
# on purpose: apt runs with --no-install-recommends, so nothing arrives only
# because another package happens to recommend it. Idempotent; prints what
# it installs; nothing is fetched from anywhere but Debian's archive.
set -euo pipefail

build=(
  build-essential g++ dpkg-dev meson ninja-build pkg-config
  liburing-dev android-libboringssl-dev libsimdjson-dev libjemalloc-dev
  libbenchmark-dev doctest-dev libc-ares-dev
  # sd_notify (src/notify): READY=1, reloads, STOPPING=1, STATUS=, the watchdog
  # for packaging/sigrelay.service's Type=notify.
  libsystemd-dev
)
fuzz=(clang libclang-rt-14-dev)  # libFuzzer and the sanitizer runtimes for clang
tests=(
  openssl ca-certificates python3
  # swaks speaks STARTTLS only through these two Perl modules, which it
  # merely recommends.
  swaks libnet-ssleay-perl libio-socket-ssl-perl
  # systemd-analyze, for tests/integration/systemd_test.py's `verify` of the
  # unit (nothing is started through systemd: the relay is run directly).
  systemd
  # the admin page's browser test (tests/integration/admin_test.py): headless
  # Chromium driven through ChromeDriver by Selenium, with a font to render.
  chromium chromium-driver python3-selenium fonts-dejavu-core
  # the fleet test (tests/integration/fleet_test.py): two relays behind HAProxy
  haproxy
  # man -l, for the install test's check of every man page
  man-db groff-base
)
# tools/sigrelay-directory: OAuth2 client credentials (MSAL) and Graph over HTTPS.
directory=(python3-msal python3-requests)
# bench/compare.sh (and its --quick run among the tests): Postfix with TLS on
# both legs and with the altermime content filter, the set-ups sigrelay is
# measured against. Skipped when another MTA is installed: Debian lets one
# package provide mail-transport-agent, and installing Postfix would remove it.
bench=(postfix altermime)
other_mta=$(dpkg-query -W -f='${Package} ${Status}\n' exim4-daemon-light exim4-daemon-heavy sendmail-bin \
              opensmtpd nullmailer msmtp-mta dma ssmtp 2>/dev/null | awk '/install ok installed/ {print $1}' || true)
if [ -n "$other_mta" ]; then
  echo "setup: $other_mta is installed, so postfix is not (bench/compare.sh's Postfix rows will fail)"
  bench=()
fi
scripts=(procps coreutils mawk sed findutils hostname)  # ps/kill, timeout, awk in the scripts

packages=("${build[@]}" "${fuzz[@]}" "${tests[@]}" "${directory[@]}" ${bench[@]+"${bench[@]}"} "${scripts[@]}")
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
  echo "setup: all ${#packages[@]} packages present"
  exit 0
fi
echo "setup: installing ${missing[*]}"
sudo=""
if [ "$(id -u)" -ne 0 ]; then
  command -v sudo >/dev/null || { echo "setup: run as root, or install sudo" >&2; exit 1; }
  sudo="sudo"
fi
$sudo apt-get update -qq
# Postfix's package would otherwise ask how to configure it; bench/compare.sh
# runs a private instance and needs no system-wide configuration.
echo "postfix postfix/main_mailer_type select No configuration" | $sudo debconf-set-selections
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
echo "setup: installed ${#missing[@]} packages"

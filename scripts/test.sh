#!/usr/bin/env bash
# Installs what is missing, builds, runs every test, and ends with the line
# "N passed, N failed" (test cases, summed over every test program).
#   1. release-style build (-Werror under CI): unit, integration, corpus tests
#   2. the same suite under AddressSanitizer + UBSan
#   3. each libFuzzer target for a short run over its seed corpus (clang)
# SIGRELAY_TEST_QUICK=1 skips 2 and 3.
set -uo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)

bash scripts/setup.sh || { echo "setup failed"; echo "0 passed, 1 failed"; exit 1; }

werror=false
[ "${CI:-}" = "true" ] && werror=true
jobs=$(nproc)
logs=()
status=0

configure() {  # dir, args...
  local dir=$1; shift
  if [ -f "$dir/build.ninja" ]; then
    meson configure "$dir" "$@" >/dev/null
  else
    meson setup "$dir" "$@" >/dev/null
  fi
}

run_suite() {  # name dir
  local name=$1 dir=$2
  echo "== $name: building in $dir"
  if ! ninja -C "$dir" -j "$jobs" >"$dir/build.log" 2>&1; then
    tail -40 "$dir/build.log"
    echo "== $name: BUILD FAILED"
    status=1
    logs+=("buildfail:$name")
    return
  fi
  echo "== $name: testing"
  meson test -C "$dir" --num-processes 2 --print-errorlogs >"$dir/test.log" 2>&1 || status=1
  grep -E "^ *[0-9]+/[0-9]+ " "$dir/test.log" | sed 's/^/   /'
  logs+=("$dir/meson-logs/testlog.json")
}

configure build --buildtype=debugoptimized -Dwerror=$werror
run_suite "main" build

if [ "${SIGRELAY_TEST_QUICK:-0}" != "1" ]; then
  configure build-asan --buildtype=debug -Db_sanitize=address,undefined -Db_lundef=false -Dbench=disabled -Dwerror=$werror
  # The large-message cases shrink under the sanitizers (sizes, not counts).
  ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 \
    SIGRELAY_TEST_SCALE=0.1 run_suite "sanitizers" build-asan

  echo "== fuzz: building in build-fuzz"
  if [ -f build-fuzz/build.ninja ] || CXX=clang++ meson setup build-fuzz -Dfuzz=true -Db_sanitize=address,undefined \
        -Db_lundef=false -Dbench=disabled --buildtype=debugoptimized >/dev/null; then
    # Only the fuzz targets and what they link: the rest was built twice already.
    ninja -C build-fuzz build.ninja >/dev/null 2>&1 || true  # regenerate first if meson.build changed
    fuzz_targets=$(meson introspect build-fuzz --targets | python3 -c '
import json, os, sys
for t in json.load(sys.stdin):
    if t["name"].endswith("_fuzz"):
        print(os.path.relpath(t["filename"][0], "build-fuzz"))')
    if ninja -C build-fuzz -j "$jobs" $fuzz_targets >build-fuzz/build.log 2>&1; then
      : >build-fuzz/fuzz.results
      for target in $(find build-fuzz/src -maxdepth 2 -type f -name '*_fuzz' -perm -u+x | sort); do
        name=$(basename "$target" _fuzz)
        seeds=tests/fuzz/corpus/$name
        dict=$(ls tests/fuzz/*.dict 2>/dev/null | grep -E "/(${name%%_*})\.dict$" | head -1)
        # Inputs that once crashed it must keep passing.
        regressions=$(ls tests/fuzz/regressions/"$name"-* 2>/dev/null || true)
        if [ -n "$regressions" ]; then
          if "$target" $regressions >"build-fuzz/$name-regressions.log" 2>&1; then
            echo "fuzz $name-regressions ok" >>build-fuzz/fuzz.results
            echo "   fuzz $name regressions: OK ($(echo $regressions | wc -w) inputs)"
          else
            echo "fuzz $name-regressions fail" >>build-fuzz/fuzz.results
            echo "   fuzz $name regressions: FAILED"; tail -30 "build-fuzz/$name-regressions.log"; status=1
          fi
        fi
        work=$(mktemp -d)
        [ -d "$seeds" ] && cp -r "$seeds/." "$work/"
        if "$target" -max_total_time="${SIGRELAY_FUZZ_SECONDS:-20}" -timeout=10 -rss_limit_mb=2048 \
             -print_final_stats=1 -artifact_prefix="build-fuzz/$name-" \
             ${dict:+-dict=$dict} "$work" >"build-fuzz/$name.log" 2>&1; then
          echo "fuzz $name ok" >>build-fuzz/fuzz.results
          echo "   fuzz $name: OK ($(grep -oE 'stat::number_of_executed_units: [0-9]+' "build-fuzz/$name.log" | awk '{print $2}') runs)"
        else
          echo "fuzz $name fail" >>build-fuzz/fuzz.results
          echo "   fuzz $name: FAILED"; tail -30 "build-fuzz/$name.log"; status=1
        fi
        rm -rf "$work"
      done
      logs+=("build-fuzz/fuzz.results")
    else
      tail -40 build-fuzz/build.log; echo "== fuzz: BUILD FAILED"; status=1; logs+=("buildfail:fuzz")
    fi
  else
    echo "== fuzz: configure failed"; status=1; logs+=("buildfail:fuzz")
  fi
fi

python3 scripts/count-tests.py "${logs[@]}"
rc=$?
[ $status -ne 0 ] && exit 1
exit $rc

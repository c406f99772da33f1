#!/usr/bin/env bash
# The system packages a make target needs, installed when missing.
#
#   scripts/system-deps.sh GROUP...      e.g. `scripts/system-deps.sh java browser`
#
# Why a script: a new machine has none of these, and `make run` / `make test` must work there as they
# are. Run as root on Debian (CI, containers) it installs what is missing with apt-get; anyone else
# gets the exact command to run and a non-zero exit before anything else happens, so a missing
# package never surfaces later as a failed test.
set -euo pipefail

# One line per Debian package: GROUP PACKAGE PROOF. PROOF is an executable that exists once the
# package is installed, or the name of a function below that says whether the need is already met
# some other way (e.g. a JDK found through JAVA_HOME). To need another package, add a line here and
# its group to the target's call in the Makefile.
PACKAGES='
java      openjdk-17-jre-headless   java_17_or_newer
browser   chromium                  /usr/bin/chromium
browser   chromium-driver           /usr/bin/chromedriver
postgres  postgresql-15             postgres_server_tools
'

# PySpark 4 needs Java 17 or newer, from JAVA_HOME or the PATH; any vendor's will do.
java_17_or_newer() {
  local java_bin=java version major
  if [ -n "${JAVA_HOME:-}" ] && [ -x "$JAVA_HOME/bin/java" ]; then java_bin="$JAVA_HOME/bin/java"; fi
  version=$("$java_bin" -version 2>&1 | awk -F'"' '/version/ {print $2; exit}') || true
  major=${version%%.*}
  if [ "$major" = "1" ]; then major=$(echo "$version" | cut -d. -f2); fi
  [ -n "$version" ] && [ "$major" -ge 17 ] 2>/dev/null
}

# The team-deployment tests start their own PostgreSQL server with initdb and pg_ctl: any version's
# will do, on the PATH or where Debian puts them.
postgres_server_tools() {
  if command -v initdb >/dev/null 2>&1 && command -v pg_ctl >/dev/null 2>&1; then return 0; fi
  compgen -G '/usr/lib/postgresql/*/bin/pg_ctl' >/dev/null
}

is_present() {
  case "$1" in
    /*) [ -x "$1" ] ;;
    *) "$1" ;;
  esac
}

missing_packages() {
  local group package proof wanted
  while read -r group package proof; do
    [ -n "$group" ] || continue
    for wanted in "$@"; do
      if [ "$group" = "$wanted" ] && ! is_present "$proof"; then
        echo "$package"
        break
      fi
    done
  done <<<"$PACKAGES"
}

if [ $# -eq 0 ]; then
  echo "usage: $0 GROUP...   (groups: $(awk 'NF {print $1}' <<<"$PACKAGES" | sort -u | xargs))" >&2
  exit 2
fi
for wanted in "$@"; do
  if ! awk -v g="$wanted" '$1 == g {found = 1} END {exit !found}' <<<"$PACKAGES"; then
    echo "$0: unknown group '$wanted'" >&2
    exit 2
  fi
done

mapfile -t missing < <(missing_packages "$@")
[ ${#missing[@]} -eq 0 ] && exit 0

if ! command -v apt-get >/dev/null 2>&1; then
  echo "Missing system packages (Debian names): ${missing[*]}." >&2
  echo "Install their equivalents with your system's package manager (e.g. macOS: brew install openjdk@17" >&2
  echo "chromium chromedriver), or set JAVA_HOME to a JDK 17+, then run make again." >&2
  exit 1
fi
if [ "$(id -u)" -ne 0 ]; then
  echo "Missing system packages: ${missing[*]}. Install them with:" >&2
  echo "  sudo apt-get update && sudo apt-get install -y ${missing[*]}" >&2
  exit 1
fi

echo "Installing system packages: ${missing[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq "${missing[@]}" >/dev/null

mapfile -t still_missing < <(missing_packages "$@")
if [ ${#still_missing[@]} -ne 0 ]; then
  echo "Installed ${missing[*]}, but still not usable: ${still_missing[*]} (check the PATH / JAVA_HOME)." >&2
  exit 1
fi

#!/usr/bin/env bash
# PySpark 4 needs Java 17 or newer on the PATH (or JAVA_HOME). Say how to get it when it is missing.
set -u
java_bin="java"
[ -n "${JAVA_HOME:-}" ] && [ -x "$JAVA_HOME/bin/java" ] && java_bin="$JAVA_HOME/bin/java"
version=$("$java_bin" -version 2>&1 | awk -F'"' '/version/ {print $2; exit}')
major=${version%%.*}
[ "$major" = "1" ] && major=$(echo "$version" | cut -d. -f2)
if [ -z "$version" ] || ! [ "$major" -ge 17 ] 2>/dev/null; then
  echo "Java 17 or newer is required (PySpark 4); found: ${version:-none}." >&2
  echo "  Debian/Ubuntu: sudo apt-get install -y openjdk-17-jre-headless" >&2
  echo "  macOS:         brew install openjdk@17" >&2
  echo "  or set JAVA_HOME to a JDK 17+." >&2
  exit 1
fi

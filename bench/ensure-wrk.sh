#!/bin/sh
# Install wrk, the HTTP load generator of the benchmarks, from the system's packages
# when it is missing (Debian/Ubuntu apt, Fedora dnf, Alpine apk, macOS Homebrew).
set -e
command -v wrk >/dev/null 2>&1 && exit 0
SUDO=""
if [ "$(id -u)" -ne 0 ] && command -v sudo >/dev/null 2>&1; then SUDO="sudo"; fi
if command -v apt-get >/dev/null 2>&1; then
    $SUDO apt-get update -qq && $SUDO apt-get install -y -qq wrk >/dev/null
elif command -v dnf >/dev/null 2>&1; then
    $SUDO dnf install -y -q wrk
elif command -v apk >/dev/null 2>&1; then
    $SUDO apk add --quiet wrk
elif command -v brew >/dev/null 2>&1; then
    brew install wrk
else
    echo "Please install wrk (https://github.com/wg/wrk) and run again." >&2
    exit 1
fi
command -v wrk >/dev/null 2>&1

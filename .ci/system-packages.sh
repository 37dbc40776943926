#!/usr/bin/env bash
# Debian packages the toolkit uses beyond npm: Chromium (PNG plots, browser tests) and Jupyter (executing the
# notebooks headless). `npm run setup:system` runs this; so does CI.
set -euo pipefail
if ! command -v apt-get >/dev/null 2>&1; then
  echo "setup:system: no apt-get here; install Chromium (or set PERSONA_CHROMIUM) and Jupyter (nbconvert, nbclient, ipykernel) yourself" >&2
  exit 1
fi
sudo=""
if [ "$(id -u)" -ne 0 ]; then sudo="sudo"; fi
$sudo apt-get update -qq
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends \
  chromium jupyter-nbconvert python3-nbclient jupyter-client python3-ipykernel >/dev/null

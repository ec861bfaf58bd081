#!/usr/bin/env bash
# Installs the Debian packages the build, tests and benchmarks need, only when
# one is missing, so that a fresh machine needs nothing but `make test`.
set -euo pipefail

pkgs=(
  gcc make pkg-config
  clang libclang-rt-dev clang-format
  librdkafka-dev libpq-dev libprotobuf-c-dev protobuf-c-compiler libuv1-dev uuid-dev
  # the notification sender speaks SMTP and HTTP through libcurl; its tests' SMTP sink
  libcurl4-openssl-dev python3-aiosmtpd
  postgresql protobuf-compiler kcat
  # promtool: the scrapes, the alert rules and the Prometheus configuration (test_dashboards.py)
  prometheus
  python3 python3-pytest python3-pytest-xdist python3-psycopg2 python3-protobuf python3-confluent-kafka
  # the embedded real Kafka broker (scripts/kafka.sh): Java 17 runs it, Maven fetches its jars
  openjdk-17-jre-headless maven
)

missing=()
for p in "${pkgs[@]}"; do
  st=$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null || true)
  [[ "$st" == "install ok installed" ]] || missing+=("$p")
done
[[ ${#missing[@]} -eq 0 ]] && exit 0

if [[ $(id -u) -ne 0 ]]; then
  echo "deps: missing Debian packages: ${missing[*]} (run as root, or install them)" >&2
  exit 1
fi
echo "deps: installing ${missing[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null

#!/usr/bin/env bash
# Puts hadoop-aws + the AWS SDK bundle (Spark's s3a in local mode) into DEST, from the hash-locked sdist in
# s3a-jars.lock (no Maven access needed). Used by the local set-up and by the spark-batch image.
#   fetch-s3a-jars.sh PYTHON DEST
set -euo pipefail
python=$1 dest=$2
lock="$(dirname "$0")/s3a-jars.lock"
jars=(hadoop-aws-3.3.1.jar aws-java-sdk-bundle-1.11.901.jar)
missing=0
for jar in "${jars[@]}"; do [ -f "$dest/$jar" ] || missing=1; done
[ "$missing" = 1 ] || exit 0
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
"$python" -m pip download -q --disable-pip-version-check --no-deps --no-binary :all: --require-hashes \
  -r "$lock" -d "$tmp"
tar -xzf "$tmp"/sagemaker_pyspark-*.tar.gz -C "$tmp" --wildcards "${jars[@]/#/*/deps/jars/}"
mkdir -p "$dest"
find "$tmp" -name '*.jar' -exec mv {} "$dest/" \;

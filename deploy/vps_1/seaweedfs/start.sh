#!/bin/sh
# SeaweedFS in one process (master, volume, filer, S3 API), the flags the local stack uses.
# The S3 identity is written from the environment at start, so no credential ever sits in a file on disk.
set -eu
umask 077
# the container's paths; the tests run this script unchanged with others
DATA=${SEAWEEDFS_DATA:-/data}
S3_CONFIG=${SEAWEEDFS_S3_CONFIG:-/tmp/s3.json}
printf '{"identities":[{"name":"platform","credentials":[{"accessKey":"%s","secretKey":"%s"}],"actions":["Admin","Read","Write","List","Tagging"]}]}' \
  "$S3_ACCESS_KEY_ID" "$S3_SECRET_ACCESS_KEY" > "$S3_CONFIG"
exec weed -logtostderr=true server -ip=seaweedfs -ip.bind=0.0.0.0 -dir="$DATA" \
  -master.port=9333 -master.volumeSizeLimitMB=1024 -master.telemetry=false \
  -volume.port=8080 -volume.max=0 \
  -filer -filer.port=8888 \
  -s3 -s3.port=8333 -s3.config="$S3_CONFIG" -s3.port.iceberg=0 -s3.port.lance=0  # no Iceberg/Lance listeners

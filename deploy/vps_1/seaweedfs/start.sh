#!/bin/sh
# SeaweedFS in one process (master, volume, filer, S3 API), the flags the local stack uses.
# The S3 identity is written from the environment at start, so no credential ever sits in a file on disk.
set -eu
umask 077
printf '{"identities":[{"name":"platform","credentials":[{"accessKey":"%s","secretKey":"%s"}],"actions":["Admin","Read","Write","List","Tagging"]}]}' \
  "$S3_ACCESS_KEY_ID" "$S3_SECRET_ACCESS_KEY" > /tmp/s3.json
exec weed -logtostderr=true server -ip=seaweedfs -ip.bind=0.0.0.0 -dir=/data \
  -master.port=9333 -master.volumeSizeLimitMB=1024 -master.telemetry=false \
  -volume.port=8080 -volume.max=0 \
  -filer -filer.port=8888 \
  -s3 -s3.port=8333 -s3.config=/tmp/s3.json -s3.port.iceberg=0

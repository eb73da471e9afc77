#!/usr/bin/env bash
# Build the reference ML service image with buildah: no Docker daemon needed (`make image`).
#
#   IMAGE       the tag to build              (default localhost/jobstream-ml:dev)
#   BASE_IMAGE  a Debian-like Python 3.11+    (default localhost/debian-py:bookworm, built here
#               with debootstrap from the Debian mirror of this machine's apt sources when it
#               does not exist yet; pass e.g. docker.io/library/python:3.12-slim-bookworm where a
#               registry can be reached)
set -euo pipefail
cd "$(dirname "$0")/../.."

IMAGE=${IMAGE:-localhost/jobstream-ml:dev}
LOCAL_BASE=localhost/debian-py:bookworm
BASE_IMAGE=${BASE_IMAGE:-$LOCAL_BASE}

need() {
    command -v "$1" >/dev/null 2>&1 || {
        echo "build-image: $1 is not installed (Debian: apt-get install -y $2)" >&2
        exit 2
    }
}
need buildah podman

debian_mirror() {
    # The first Debian archive URI of the apt sources (deb822 or one-line format).
    local uri
    uri=$(grep -hoE '^URIs: *[^ ]+' /etc/apt/sources.list.d/*.sources 2>/dev/null | head -n1 | awk '{print $2}' || true)
    if [[ -z $uri ]]; then
        uri=$(grep -hoE '^deb +(\[[^]]*\] +)?[^ ]+' /etc/apt/sources.list 2>/dev/null | head -n1 | awk '{print $NF}' || true)
    fi
    echo "${uri:-http://deb.debian.org/debian}"
}

if [[ $BASE_IMAGE == "$LOCAL_BASE" ]] && ! buildah inspect --type image "$LOCAL_BASE" >/dev/null 2>&1; then
    need debootstrap debootstrap
    rootfs=$(mktemp -d /tmp/jobstream-rootfs-XXXXXX)
    trap 'rm -rf "$rootfs"' EXIT
    mirror=$(debian_mirror)
    echo "build-image: $LOCAL_BASE: debootstrap bookworm from $mirror"
    debootstrap --variant=minbase --include=python3,python3-venv bookworm "$rootfs" "$mirror" >/dev/null
    tar -C "$rootfs" -c . | podman import - "$LOCAL_BASE" >/dev/null
fi

# pip inside the build trusts what this machine trusts (a TLS-inspecting proxy's CA, say): the
# host's bundle is mounted for the build steps only and is not part of the image.
ca_args=()
host_ca=${PIP_CERT:-/etc/ssl/certs/ca-certificates.crt}
if [[ -r $host_ca ]]; then
    ca_args=(--volume "$host_ca:/run/build-ca.crt:ro" --build-arg PIP_CERT=/run/build-ca.crt)
fi

echo "build-image: $IMAGE from $BASE_IMAGE"
buildah bud --isolation chroot --quiet --layers=false \
    --build-arg "BASE_IMAGE=$BASE_IMAGE" "${ca_args[@]}" \
    -f examples/ml-service/Dockerfile -t "$IMAGE" .
buildah inspect --type image --format '{{.FromImage}}: entrypoint {{.OCIv1.Config.Entrypoint}}, user {{.OCIv1.Config.User}}' "$IMAGE"

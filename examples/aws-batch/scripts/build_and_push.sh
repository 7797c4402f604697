#!/usr/bin/env bash
# Build the spotlake collector image from this repository and push it to Amazon ECR.
# The ECR repository is created on first use (scan on push). Prints the image URI for deploy.sh -i.
set -euo pipefail

usage() {
  cat <<'USAGE'
Usage: build_and_push.sh [-r REGION] [-p PROFILE] [-n REPOSITORY] [-t TAG] [-P PLATFORM]

Build examples/aws-batch/Dockerfile (context: the repository root, `pip install .` inside) and
push it to ECR. The account comes from your AWS credentials; nothing is hard-coded.

  -r REGION      AWS region (default: $AWS_REGION, $AWS_DEFAULT_REGION or us-west-2)
  -p PROFILE     AWS CLI profile (default: the usual credential chain)
  -n REPOSITORY  ECR repository name (default: spotlake-collector)
  -t TAG         image tag (default: latest; a version or commit id makes deploys traceable)
  -P PLATFORM    docker build platform (default: linux/amd64, matching the default instance types)
  -h             this help

Needs: docker (with a running daemon), aws CLI v2. Network at build time: PyPI only.
Example: ./build_and_push.sh -r us-west-2 -p my-profile -t 0.1.0
USAGE
}

die() { echo "build_and_push.sh: $*" >&2; exit 1; }

region="${AWS_REGION:-${AWS_DEFAULT_REGION:-us-west-2}}"
repository="spotlake-collector"
tag="latest"
platform="linux/amd64"
while getopts ":r:p:n:t:P:h" opt; do
  case "$opt" in
    r) region="$OPTARG" ;;
    p) export AWS_PROFILE="$OPTARG" ;;
    n) repository="$OPTARG" ;;
    t) tag="$OPTARG" ;;
    P) platform="$OPTARG" ;;
    h) usage; exit 0 ;;
    :) usage >&2; die "option -$OPTARG needs a value" ;;
    *) usage >&2; die "unknown option -$OPTARG" ;;
  esac
done
shift $((OPTIND - 1))
[[ $# -eq 0 ]] || { usage >&2; die "unexpected argument: $1"; }
[[ "$repository" =~ ^[a-z0-9]+([._/-][a-z0-9]+)*$ ]] || die "invalid repository name: $repository"
[[ "$tag" =~ ^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$ ]] || die "invalid image tag: $tag"
command -v docker >/dev/null || die "docker is not installed"
command -v aws >/dev/null || die "the aws CLI is not installed"

script_dir="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo_root="$(cd "$script_dir/../../.." && pwd)"
dockerfile="$script_dir/../Dockerfile"
[[ -f "$repo_root/pyproject.toml" ]] || die "cannot find the repository root (pyproject.toml) at $repo_root"


if ! aws ecr describe-repositories --region "$region" --repository-names "$repository" >/dev/null 2>&1; then
  echo "creating ECR repository $repository in $region" >&2
  aws ecr create-repository --region "$region" --repository-name "$repository" \
    --image-scanning-configuration scanOnPush=true \
    --encryption-configuration encryptionType=AES256 >/dev/null
fi
# ECR returns the URI for this account, region and partition: no account id is built by hand.
repository_uri="$(aws ecr describe-repositories --region "$region" --repository-names "$repository" \
  --query 'repositories[0].repositoryUri' --output text)"
registry="${repository_uri%%/*}"
image="$repository_uri:$tag"

aws ecr get-login-password --region "$region" | docker login --username AWS --password-stdin "$registry" >/dev/null

# Context is the repository root; Dockerfile.dockerignore (next to the Dockerfile) keeps it to
# pyproject.toml, README.md and src/. No credentials go into the build.
docker build --platform "$platform" -f "$dockerfile" -t "$image" "$repo_root"
docker push "$image"

echo "pushed $image" >&2
echo "$image"

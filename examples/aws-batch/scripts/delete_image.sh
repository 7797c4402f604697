#!/usr/bin/env bash
# Delete one tag of the collector image from ECR (the repository itself is kept).
set -euo pipefail

usage() {
  cat <<'USAGE'
Usage: delete_image.sh [-r REGION] [-p PROFILE] [-n REPOSITORY] [-t TAG] [-R]

  -r REGION      AWS region (default: $AWS_REGION, $AWS_DEFAULT_REGION or us-west-2)
  -p PROFILE     AWS CLI profile
  -n REPOSITORY  ECR repository name (default: spotlake-collector)
  -t TAG         image tag to delete (default: latest)
  -R             delete the whole repository with every image instead of one tag
  -h             this help

A deployed job definition that still names the image fails to start its next job: deploy a new
image first, or destroy the deployment.
USAGE
}

die() { echo "delete_image.sh: $*" >&2; exit 1; }

region="${AWS_REGION:-${AWS_DEFAULT_REGION:-us-west-2}}"
repository="spotlake-collector"
tag="latest"
whole_repository=false
while getopts ":r:p:n:t:Rh" opt; do
  case "$opt" in
    r) region="$OPTARG" ;;
    p) export AWS_PROFILE="$OPTARG" ;;
    n) repository="$OPTARG" ;;
    t) tag="$OPTARG" ;;
    R) whole_repository=true ;;
    h) usage; exit 0 ;;
    :) usage >&2; die "option -$OPTARG needs a value" ;;
    *) usage >&2; die "unknown option -$OPTARG" ;;
  esac
done
shift $((OPTIND - 1))
[[ $# -eq 0 ]] || { usage >&2; die "unexpected argument: $1"; }
command -v aws >/dev/null || die "the aws CLI is not installed"

if [[ "$whole_repository" == true ]]; then
  aws ecr delete-repository --region "$region" --repository-name "$repository" --force >/dev/null
  echo "deleted repository $repository in $region" >&2
  exit 0
fi

# batch-delete-image exits 0 even when nothing was deleted: the failures list says why.
failures="$(aws ecr batch-delete-image --region "$region" --repository-name "$repository" --image-ids "imageTag=$tag" \
  --query 'failures[].[imageId.imageTag,failureCode,failureReason]' --output text)"
[[ -z "$failures" ]] || die "could not delete $repository:$tag: $failures"
echo "deleted $repository:$tag in $region" >&2

#!/usr/bin/env bash
# Deploy the spotlake collector (AWS Batch on Spot + EventBridge Scheduler) with Terraform.
# The values given here are saved in terraform/deploy.auto.tfvars.json, so destroy.sh and later
# deploys reuse them.
set -euo pipefail

usage() {
  cat <<'USAGE'
Usage: deploy.sh -i IMAGE_URI -b BUCKET -s SUBNETS -g SECURITY_GROUPS [-r REGION] [-x PREFIX]
                 [-p PROFILE] [-y] [-- TERRAFORM_APPLY_ARGS...]

  -i IMAGE_URI        image pushed by build_and_push.sh (required)
  -b BUCKET           S3 bucket to create for the store (required; globally unique)
  -s SUBNETS          comma-separated subnet ids, e.g. subnet-0a1b,subnet-2c3d (required)
  -g SECURITY_GROUPS  comma-separated security group ids, e.g. sg-0a1b (required)
  -r REGION           AWS region (default: us-west-2)
  -x PREFIX           store prefix inside the bucket (default: spotlake)
  -p PROFILE          AWS CLI profile
  -y                  apply without the interactive confirmation
  --                  anything after it goes to `terraform apply`, e.g.
                      -- -var enable_timestream=false -var enable_slack=false

Without -i/-b/-s/-g/-r/-x, the values saved by the previous deploy are used.
Needs: terraform >= 1.5 and AWS credentials allowed to create the resources in terraform/main.tf.
Example:
  ./deploy.sh -i "$(./build_and_push.sh)" -b my-spotlake-data -s subnet-0a1b,subnet-2c3d -g sg-0a1b -y
USAGE
}

die() { echo "deploy.sh: $*" >&2; exit 1; }

# ["a","b"] from "a,b", refusing anything that is not a plain AWS id (so the JSON needs no escaping).
json_list() {
  local what="$1" csv="$2" item out=""
  local -a items
  IFS=',' read -r -a items <<<"$csv"
  [[ ${#items[@]} -gt 0 ]] || die "$what: empty list"
  for item in "${items[@]}"; do
    item="${item// /}"
    [[ "$item" =~ ^[a-z]+-[0-9a-f]+$ ]] || die "$what: '$item' is not an id like subnet-0a1b2c3d / sg-0a1b2c3d"
    out+="${out:+,}\"$item\""
  done
  printf '[%s]' "$out"
}

image="" bucket="" subnets="" groups="" region="us-west-2" prefix="spotlake" auto_approve=() given=""
while getopts ":i:b:s:g:r:x:p:yh" opt; do
  case "$opt" in
    i) image="$OPTARG" ;;
    b) bucket="$OPTARG" ;;
    s) subnets="$OPTARG" ;;
    g) groups="$OPTARG" ;;
    r) region="$OPTARG"; given+="r" ;;
    x) prefix="$OPTARG"; given+="x" ;;
    p) export AWS_PROFILE="$OPTARG" ;;
    y) auto_approve=(-auto-approve) ;;
    h) usage; exit 0 ;;
    :) usage >&2; die "option -$OPTARG needs a value" ;;
    *) usage >&2; die "unknown option -$OPTARG" ;;
  esac
done
shift $((OPTIND - 1))
if [[ $# -gt 0 && "$1" == "--" ]]; then shift; fi
tf_dir="$(cd "$(dirname "${BASH_SOURCE[0]}")/../terraform" && pwd)"
tfvars="$tf_dir/deploy.auto.tfvars.json"

if [[ -n "$image$bucket$subnets$groups$given" ]]; then
  [[ -n "$image" && -n "$bucket" && -n "$subnets" && -n "$groups" ]] \
    || { usage >&2; die "-i, -b, -s and -g (and -r, -x) go together, or none of them to reuse $tfvars"; }
  [[ "$image" =~ ^[A-Za-z0-9._/:@-]+$ ]] || die "-i: '$image' does not look like an image URI"
  [[ "$bucket" =~ ^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$ ]] || die "-b: '$bucket' is not a valid bucket name"
  [[ "$region" =~ ^[a-z]{2}(-[a-z]+)+-[0-9]+$ ]] || die "-r: '$region' is not an AWS region"
  [[ "$prefix" =~ ^[A-Za-z0-9._/-]+$ ]] || die "-x: '$prefix' is not a plain key prefix"
  subnets_json="$(json_list -s "$subnets")"
  groups_json="$(json_list -g "$groups")"
  command -v terraform >/dev/null || die "terraform is not installed (https://developer.hashicorp.com/terraform/install)"
  umask 077
  cat >"$tfvars" <<JSON
{
  "region": "$region",
  "image_uri": "$image",
  "bucket_name": "$bucket",
  "store_prefix": "$prefix",
  "subnet_ids": $subnets_json,
  "security_group_ids": $groups_json
}
JSON
  echo "saved the deployment's values in $tfvars" >&2
elif [[ ! -f "$tfvars" ]]; then
  usage >&2
  die "first deploy: -i, -b, -s and -g are required"
fi
command -v terraform >/dev/null || die "terraform is not installed (https://developer.hashicorp.com/terraform/install)"

terraform -chdir="$tf_dir" init -input=false
terraform -chdir="$tf_dir" apply -input=false ${auto_approve[@]+"${auto_approve[@]}"} "$@"
terraform -chdir="$tf_dir" output

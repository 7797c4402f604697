#!/usr/bin/env bash
# Remove what deploy.sh created. The store's bucket is kept while it holds data unless the
# deployment set force_destroy_bucket=true: collected history is not deleted by accident.
set -euo pipefail

usage() {
  cat <<'USAGE'
Usage: destroy.sh [-p PROFILE] [-F] [-y] [-- TERRAFORM_DESTROY_ARGS...]

Runs `terraform destroy` with the values deploy.sh saved in terraform/deploy.auto.tfvars.json.

  -p PROFILE  AWS CLI profile
  -F          also delete the collected data: first sets force_destroy_bucket=true on the bucket
              (a targeted apply; Terraform deletes with the setting recorded in its state)
  -y          no interactive confirmation
  --          anything after it goes to `terraform destroy`

Without -F, a bucket that still holds data stops the destroy with BucketNotEmpty and everything
else is gone: copy the data away, then run again with -F (or empty the bucket yourself).
The ECR image is not touched: delete it with delete_image.sh.
USAGE
}

die() { echo "destroy.sh: $*" >&2; exit 1; }

auto_approve=() force=false
while getopts ":p:Fyh" opt; do
  case "$opt" in
    p) export AWS_PROFILE="$OPTARG" ;;
    F) force=true ;;
    y) auto_approve=(-auto-approve) ;;
    h) usage; exit 0 ;;
    :) usage >&2; die "option -$OPTARG needs a value" ;;
    *) usage >&2; die "unknown option -$OPTARG" ;;
  esac
done
shift $((OPTIND - 1))
if [[ $# -gt 0 && "$1" == "--" ]]; then shift; fi
command -v terraform >/dev/null || die "terraform is not installed"

tf_dir="$(cd "$(dirname "${BASH_SOURCE[0]}")/../terraform" && pwd)"
[[ -f "$tf_dir/deploy.auto.tfvars.json" ]] \
  || die "no $tf_dir/deploy.auto.tfvars.json: nothing deployed from here (or pass -var values after --)"

terraform -chdir="$tf_dir" init -input=false
if [[ "$force" == true ]]; then
  terraform -chdir="$tf_dir" apply -input=false ${auto_approve[@]+"${auto_approve[@]}"} \
    -target=aws_s3_bucket.data -var force_destroy_bucket=true
  set -- -var force_destroy_bucket=true "$@"
fi
terraform -chdir="$tf_dir" destroy -input=false ${auto_approve[@]+"${auto_approve[@]}"} "$@"

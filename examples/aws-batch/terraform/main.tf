# spotlake collector on AWS Batch (examples/README.md): one container job every 10 minutes on Spot capacity.
#
# What is created: an S3 bucket for the store (spotlake's Parquet layout under var.store_prefix),
# optionally the DynamoDB table holding the Azure credentials item and the Timestream database/table,
# the CloudWatch log group/stream and metrics the job writes, a Batch compute environment on SPOT
# (SPOT_PRICE_CAPACITY_OPTIMIZED), a job queue and a job definition running
# `spotlake collect azure --store s3://... --credentials dynamodb --timestream --cloudwatch --slack --quiet`,
# and IAM roles granting exactly what that command touches. The schedule is in events.tf.
#
# Secrets are never in Terraform: the Azure service principal goes into the DynamoDB item and the
# Slack webhook into the SSM SecureString parameter by hand (see examples/README.md), so neither
# lands in the Terraform state.

terraform {
  required_version = ">= 1.5"
  required_providers {
    aws = {
      source = "hashicorp/aws"
      # 5.60+ for compute_environment_order on job queues; 6.x renamed Batch arguments.
      version = ">= 5.60, < 6.0"
    }
  }
}

provider "aws" {
  region = var.region
  default_tags {
    tags = merge({ Project = "spotlake", ManagedBy = "terraform" }, var.tags)
  }
}

data "aws_caller_identity" "current" {}
data "aws_partition" "current" {}

locals {
  account_id = data.aws_caller_identity.current.account_id
  partition  = data.aws_partition.current.partition

  store_prefix = trim(var.store_prefix, "/")
  store_url    = "s3://${aws_s3_bucket.data.bucket}/${local.store_prefix}"

  # The item the CLI reads with --credentials dynamodb (spotlake.collect.auth, docs/sps-and-credentials.md):
  # key attribute "id", "login_auth_az_true" for zonal runs and "login_auth_az_false" with --regional.
  auth_item_key  = var.regional ? "login_auth_az_false" : "login_auth_az_true"
  auth_table_arn = "arn:${local.partition}:dynamodb:${var.region}:${local.account_id}:table/${var.auth_table_name}"

  # The CLI reads the Slack webhook from this SSM parameter name (it is not a CLI option).
  slack_parameter_name = "error_notification_slack_webhook_url"
  slack_parameter_arn  = "arn:${local.partition}:ssm:${var.region}:${local.account_id}:parameter/${local.slack_parameter_name}"

  # CloudWatchSink's default stream name; the CLI sets only the group (--log-group).
  metrics_log_stream = "collector"

  timestream_table_arn = "arn:${local.partition}:timestream:${var.region}:${local.account_id}:database/${var.timestream_database}/table/${var.timestream_table}"

  job_name = "${var.name}-collect-azure"

  # Arguments after the image's ENTRYPOINT ["spotlake"]: the whole job is this one CLI call.
  # tests/test_examples.py parses every combination of these lists with spotlake's real parser.
  collect_command = concat(
    [
      "collect", "azure",
      "--store", local.store_url,
      "--credentials", "dynamodb",
      "--dynamodb-table", var.auth_table_name,
      "--cloudwatch",
      "--log-group", var.log_group_name,
      "--metrics-namespace", var.metrics_namespace,
      "--lock-timeout", tostring(var.lock_timeout_seconds),
      "--quiet",
    ],
    var.regional ? ["--regional"] : [],
    var.enable_timestream ? [
      "--timestream",
      "--timestream-database", var.timestream_database,
      "--timestream-table", var.timestream_table,
      "--timestream-layout", var.timestream_layout,
    ] : [],
    var.enable_slack ? ["--slack"] : [],
  )
}

# --- store: S3 -------------------------------------------------------------------------------

resource "aws_s3_bucket" "data" {
  #checkov:skip=CKV_AWS_145: SSE-S3 (below) on purpose: the store holds market data (Azure prices, placement scores, eviction rates), no secrets or personal data, and its readers (pandas, DuckDB, Athena, other accounts) then need no KMS grants and pay no KMS requests.
  #checkov:skip=CKV_AWS_21: spotlake keeps its own state generations (`spotlake rollback`) and deletes old ones itself; versioning would keep every deleted generation and every lock-object renewal. Add it with a noncurrent-version expiry to guard against manual deletes.
  #checkov:skip=CKV_AWS_144: one region is enough for an example store; replication needs versioning and a second bucket. Add both if you need the history to survive a regional outage.
  #checkov:skip=CKV_AWS_18: one role (the job) writes here; server access logs need a second bucket of their own. Use an organisation CloudTrail trail with S3 data events if you need an access audit.
  #checkov:skip=CKV2_AWS_62: nothing consumes bucket events; readers poll (`spotlake status`, queries).
  bucket = var.bucket_name
  # false by default: `destroy` then refuses to delete collected data (see destroy.sh).
  force_destroy = var.force_destroy_bucket
}

resource "aws_s3_bucket_public_access_block" "data" {
  bucket                  = aws_s3_bucket.data.id
  block_public_acls       = true
  block_public_policy     = true
  ignore_public_acls      = true
  restrict_public_buckets = true
}

resource "aws_s3_bucket_ownership_controls" "data" {
  bucket = aws_s3_bucket.data.id
  rule {
    object_ownership = "BucketOwnerEnforced"
  }
}

resource "aws_s3_bucket_server_side_encryption_configuration" "data" {
  bucket = aws_s3_bucket.data.id
  rule {
    # SSE-S3: no KMS key, so the job role needs no kms:* permission for the store.
    apply_server_side_encryption_by_default {
      sse_algorithm = "AES256"
    }
  }
}

# No versioning and no expiration rule on purpose: spotlake keeps its own state generations and
# deletes old ones itself (docs/operations.md: never expire objects under state/). The only rule
# cleans up the parts of multipart uploads that a killed run left behind (they are billed, unseen).
resource "aws_s3_bucket_lifecycle_configuration" "data" {
  bucket = aws_s3_bucket.data.id
  rule {
    id     = "abort-incomplete-multipart-uploads"
    status = "Enabled"
    filter {}
    abort_incomplete_multipart_upload {
      days_after_initiation = 7
    }
  }
}

# --- credentials: DynamoDB (optional; an existing AzureAuth table works too) -----------------

resource "aws_dynamodb_table" "auth" {
  #checkov:skip=CKV_AWS_119: DynamoDB always encrypts at rest (AWS owned key); who may read the one credentials item is decided by IAM (dynamodb:LeadingKeys on the job role). Set server_side_encryption with kms_key_arn if your policy requires a customer managed key.
  count        = var.create_auth_table ? 1 : 0
  name         = var.auth_table_name
  billing_mode = "PAY_PER_REQUEST"
  hash_key     = "id"

  attribute {
    name = "id"
    type = "S"
  }

  point_in_time_recovery {
    enabled = true
  }
}

# --- time series: Timestream (optional; closed to new AWS customers) -------------------------

resource "aws_timestreamwrite_database" "spotlake" {
  #checkov:skip=CKV_AWS_160: Timestream always encrypts with KMS (the AWS managed aws/timestream key without kms_key_id); the data are market data (Azure prices and placement scores), no secrets.
  count         = var.enable_timestream && var.create_timestream ? 1 : 0
  database_name = var.timestream_database
}

resource "aws_timestreamwrite_table" "azure" {
  count         = var.enable_timestream && var.create_timestream ? 1 : 0
  database_name = aws_timestreamwrite_database.spotlake[0].database_name
  table_name    = var.timestream_table

  retention_properties {
    memory_store_retention_period_in_hours  = var.timestream_memory_hours
    magnetic_store_retention_period_in_days = var.timestream_magnetic_days
  }
}

# --- monitoring: CloudWatch ------------------------------------------------------------------

# Per-run counts written by `--cloudwatch`. Terraform creates the group and the stream so the job
# needs only logs:PutLogEvents (CloudWatchSink creates them itself only when they are missing).
resource "aws_cloudwatch_log_group" "runs" {
  #checkov:skip=CKV_AWS_158: CloudWatch Logs encrypts every log group at rest; these hold run counts and run summaries, which the CLI writes with secrets redacted. A customer managed key would need a key policy for the logs service.
  name              = var.log_group_name
  retention_in_days = var.log_retention_days
}

resource "aws_cloudwatch_log_stream" "runs" {
  name           = local.metrics_log_stream
  log_group_name = aws_cloudwatch_log_group.runs.name
}

# The container's stdout/stderr (the run summary and any error message).
resource "aws_cloudwatch_log_group" "job" {
  #checkov:skip=CKV_AWS_158: CloudWatch Logs encrypts every log group at rest; these hold run counts and run summaries, which the CLI writes with secrets redacted. A customer managed key would need a key policy for the logs service.
  name              = "/aws/batch/${var.name}"
  retention_in_days = var.log_retention_days
}

# --- IAM: the job (what `spotlake collect azure` touches, nothing more) ----------------------

data "aws_iam_policy_document" "ecs_tasks_assume" {
  statement {
    actions = ["sts:AssumeRole"]
    principals {
      type        = "Service"
      identifiers = ["ecs-tasks.amazonaws.com"]
    }
  }
}

data "aws_iam_policy_document" "job" {
  statement {
    sid       = "StoreObjects"
    actions   = ["s3:GetObject", "s3:PutObject", "s3:DeleteObject"]
    resources = ["${aws_s3_bucket.data.arn}/${local.store_prefix}/*"]
  }

  statement {
    # Listing is needed for the store's layout and so that a missing key (the first run's state
    # pointer) answers 404 rather than 403. The bucket holds only this store, so listing it reveals
    # nothing else; add an s3:prefix condition if you share the bucket.
    sid       = "StoreList"
    actions   = ["s3:ListBucket"]
    resources = [aws_s3_bucket.data.arn]
  }

  statement {
    sid       = "AzureCredentialsItem"
    actions   = ["dynamodb:GetItem"]
    resources = [local.auth_table_arn]
    condition {
      test     = "ForAllValues:StringEquals"
      variable = "dynamodb:LeadingKeys"
      values   = [local.auth_item_key]
    }
  }

  statement {
    sid       = "RunCountsLog"
    actions   = ["logs:PutLogEvents"]
    resources = ["${aws_cloudwatch_log_group.runs.arn}:log-stream:${local.metrics_log_stream}"]
  }

  statement {
    # PutMetricData has no resource type; the namespace condition is how it is scoped.
    sid       = "RunCountsMetrics"
    actions   = ["cloudwatch:PutMetricData"]
    resources = ["*"]
    condition {
      test     = "StringEquals"
      variable = "cloudwatch:namespace"
      values   = [var.metrics_namespace]
    }
  }

  dynamic "statement" {
    for_each = var.enable_timestream ? [1] : []
    content {
      sid       = "TimestreamWrite"
      actions   = ["timestream:WriteRecords"]
      resources = [local.timestream_table_arn]
    }
  }

  dynamic "statement" {
    # boto3's timestream-write client discovers its endpoint first; the action has no resource type.
    for_each = var.enable_timestream ? [1] : []
    content {
      sid       = "TimestreamEndpoints"
      actions   = ["timestream:DescribeEndpoints"]
      resources = ["*"]
    }
  }

  dynamic "statement" {
    for_each = var.enable_slack ? [1] : []
    content {
      sid       = "SlackWebhookParameter"
      actions   = ["ssm:GetParameter"]
      resources = [local.slack_parameter_arn]
    }
  }

  dynamic "statement" {
    # Only for a SecureString encrypted with a customer managed key (the default aws/ssm key needs
    # no IAM grant), and only through SSM.
    for_each = var.enable_slack && var.slack_kms_key_arn != "" ? [1] : []
    content {
      sid       = "SlackWebhookDecrypt"
      actions   = ["kms:Decrypt"]
      resources = [var.slack_kms_key_arn]
      condition {
        test     = "StringEquals"
        variable = "kms:ViaService"
        values   = ["ssm.${var.region}.amazonaws.com"]
      }
    }
  }
}

resource "aws_iam_role" "job" {
  name_prefix        = "${var.name}-job-"
  assume_role_policy = data.aws_iam_policy_document.ecs_tasks_assume.json
}

resource "aws_iam_role_policy" "job" {
  name   = "spotlake-collect-azure"
  role   = aws_iam_role.job.id
  policy = data.aws_iam_policy_document.job.json
}

# --- IAM: the Batch container instances ------------------------------------------------------

data "aws_iam_policy_document" "ec2_assume" {
  statement {
    actions = ["sts:AssumeRole"]
    principals {
      type        = "Service"
      identifiers = ["ec2.amazonaws.com"]
    }
  }
}

resource "aws_iam_role" "ecs_instance" {
  name_prefix        = "${var.name}-ecs-instance-"
  assume_role_policy = data.aws_iam_policy_document.ec2_assume.json
}

# What the ECS agent needs (register with the cluster, pull from ECR, ship container logs).
# The job itself cannot use this role: the launch template below keeps containers off IMDS.
resource "aws_iam_role_policy_attachment" "ecs_instance" {
  role       = aws_iam_role.ecs_instance.name
  policy_arn = "arn:${local.partition}:iam::aws:policy/service-role/AmazonEC2ContainerServiceforEC2Role"
}

resource "aws_iam_instance_profile" "ecs_instance" {
  name_prefix = "${var.name}-ecs-instance-"
  role        = aws_iam_role.ecs_instance.name
}

# --- Batch -----------------------------------------------------------------------------------

resource "aws_launch_template" "batch" {
  name_prefix = "${var.name}-batch-"
  metadata_options {
    # IMDSv2 only, hop limit 1: containers on the bridge network (Batch's default on EC2) cannot
    # reach the instance role's credentials; the job gets its own role from the ECS credentials
    # endpoint instead.
    http_endpoint               = "enabled"
    http_tokens                 = "required"
    http_put_response_hop_limit = 1
  }
}

# No service_role: Batch then uses its service-linked role (AWSServiceRoleForBatch), which AWS
# maintains with the minimum Batch needs.
resource "aws_batch_compute_environment" "spot" {
  compute_environment_name_prefix = "${var.name}-spot-"
  type                            = "MANAGED"

  compute_resources {
    type                = "SPOT"
    allocation_strategy = "SPOT_PRICE_CAPACITY_OPTIMIZED"
    bid_percentage      = var.spot_bid_percentage
    min_vcpus           = 0
    max_vcpus           = var.max_vcpus
    instance_type       = var.instance_types
    instance_role       = aws_iam_instance_profile.ecs_instance.arn
    subnets             = var.subnet_ids
    security_group_ids  = var.security_group_ids

    ec2_configuration {
      image_type = "ECS_AL2023"
    }

    launch_template {
      launch_template_id = aws_launch_template.batch.id
      version            = aws_launch_template.batch.latest_version
    }
  }

  lifecycle {
    create_before_destroy = true
  }
}

resource "aws_batch_job_queue" "collector" {
  name     = "${var.name}-queue"
  state    = "ENABLED"
  priority = 1

  compute_environment_order {
    order               = 1
    compute_environment = aws_batch_compute_environment.spot.arn
  }
}

resource "aws_batch_job_definition" "collector" {
  name                  = local.job_name
  type                  = "container"
  platform_capabilities = ["EC2"]
  propagate_tags        = true

  # Killed before the S3 run lock (30 min) expires, so a hung run never overlaps the next holder.
  timeout {
    attempt_duration_seconds = var.job_timeout_seconds
  }

  retry_strategy {
    attempts = 2
    # Retry only when Spot took the instance away; a run that exited (0, 1, 2, 3 or 75) is final
    # and the next scheduled run picks up where the state says.
    evaluate_on_exit {
      on_status_reason = "Host EC2*"
      action           = "RETRY"
    }
    evaluate_on_exit {
      on_reason = "*"
      action    = "EXIT"
    }
  }

  container_properties = jsonencode({
    image      = var.image_uri
    command    = local.collect_command
    jobRoleArn = aws_iam_role.job.arn
    resourceRequirements = [
      { type = "VCPU", value = tostring(var.job_vcpus) },
      { type = "MEMORY", value = tostring(var.job_memory_mib) },
    ]
    environment = [
      { name = "AWS_DEFAULT_REGION", value = var.region },
    ]
    logConfiguration = {
      logDriver = "awslogs"
      options = {
        "awslogs-group"         = aws_cloudwatch_log_group.job.name
        "awslogs-stream-prefix" = "collect"
      }
    }
  })
}

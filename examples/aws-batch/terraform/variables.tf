# Inputs of the spotlake AWS Batch example. Required: image_uri, bucket_name, subnet_ids,
# security_group_ids (deploy.sh asks for them). Defaults that mirror a CLI default say so: keep
# them equal, or the IAM grants would name a different resource than the job writes to.

variable "region" {
  description = "AWS region for every resource."
  type        = string
  default     = "us-west-2"
}

variable "name" {
  description = "Prefix of every resource name (compute environment, queue, job, roles, schedule)."
  type        = string
  default     = "spotlake"
  validation {
    # 16 at most: IAM name prefixes ("<name>-ecs-instance-") are limited to 38 characters.
    condition     = can(regex("^[a-z][a-z0-9-]{1,15}$", var.name))
    error_message = "name: 2-16 characters, lower-case letters, digits and dashes, starting with a letter."
  }
}

variable "tags" {
  description = "Extra tags for every resource."
  type        = map(string)
  default     = {}
}

# --- image and network -----------------------------------------------------------------------

variable "image_uri" {
  description = "Container image built by scripts/build_and_push.sh (ECR URI with tag or digest)."
  type        = string
}

variable "subnet_ids" {
  description = "Subnets for the Batch instances; they need outbound HTTPS to Azure and AWS APIs (NAT or public IPs)."
  type        = list(string)
  validation {
    condition     = length(var.subnet_ids) > 0
    error_message = "subnet_ids: give at least one subnet (several zones widen the Spot pools)."
  }
}

variable "security_group_ids" {
  description = "Security groups for the Batch instances; outbound 443 is all the job needs, no inbound."
  type        = list(string)
  validation {
    condition     = length(var.security_group_ids) > 0
    error_message = "security_group_ids: give at least one security group."
  }
}

# --- store -----------------------------------------------------------------------------------

variable "bucket_name" {
  description = "S3 bucket created for the store (globally unique name)."
  type        = string
}

variable "store_prefix" {
  description = "Key prefix of the store inside the bucket: the job runs with --store s3://bucket/prefix."
  type        = string
  default     = "spotlake"
  validation {
    condition     = length(trim(var.store_prefix, "/")) > 0
    error_message = "store_prefix must not be empty: the job role is scoped to bucket/prefix/*."
  }
}

variable "force_destroy_bucket" {
  description = "Let `terraform destroy` delete the bucket with its data. Keep false unless you mean it."
  type        = bool
  default     = false
}

# --- compute ---------------------------------------------------------------------------------

variable "instance_types" {
  description = "Instance types for the Spot compute environment; several types widen the Spot pools."
  type        = list(string)
  default     = ["m6i.large", "m5.large", "m6a.large", "c6i.large", "c5.large"]
}

variable "max_vcpus" {
  description = "Upper bound of the compute environment (one job needs job_vcpus)."
  type        = number
  default     = 4
}

variable "spot_bid_percentage" {
  description = "Maximum Spot price as a percentage of the On-Demand price."
  type        = number
  default     = 100
}

variable "job_vcpus" {
  description = "vCPUs per collection job."
  type        = number
  default     = 1
}

variable "job_memory_mib" {
  description = "Memory per collection job (MiB); the price crawl holds every Linux VM meter in memory."
  type        = number
  default     = 3072
}

variable "job_timeout_seconds" {
  description = "Batch kills a run after this long; keep it under the S3 run lock's 30-minute expiry."
  type        = number
  default     = 1500
  validation {
    condition     = var.job_timeout_seconds >= 60 && var.job_timeout_seconds < 1800
    error_message = "job_timeout_seconds must be at least 60 and below 1800 (the S3 lock expiry)."
  }
}

variable "lock_timeout_seconds" {
  description = "--lock-timeout: seconds a run waits for the previous one before exiting 75."
  type        = number
  default     = 60
}

# --- schedule --------------------------------------------------------------------------------

variable "schedule_expression" {
  description = "EventBridge Scheduler expression (UTC): every 10 minutes, on the minute."
  type        = string
  default     = "cron(0/10 * * * ? *)"
}

variable "schedule_enabled" {
  description = "Create the schedule enabled (false: deploy everything, submit jobs by hand)."
  type        = bool
  default     = true
}

# --- collection options ------------------------------------------------------------------------

variable "regional" {
  description = "--regional: regional SPS requests (reads item login_auth_az_false) instead of zonal."
  type        = bool
  default     = false
}

variable "auth_table_name" {
  description = "--dynamodb-table: the table holding the Azure credentials item (CLI default AzureAuth)."
  type        = string
  default     = "AzureAuth"
}

variable "create_auth_table" {
  description = "Create the credentials table (false: use an existing one, e.g. the original deployment's)."
  type        = bool
  default     = true
}

variable "enable_slack" {
  description = "--slack: notify Slack on failure (webhook in SSM parameter error_notification_slack_webhook_url)."
  type        = bool
  default     = true
}

variable "slack_kms_key_arn" {
  description = "Customer managed KMS key of the Slack SecureString parameter; empty for the aws/ssm key."
  type        = string
  default     = ""
}

variable "enable_timestream" {
  description = "--timestream: write each run's changes to Timestream (closed to new AWS customers)."
  type        = bool
  default     = true
}

variable "create_timestream" {
  description = "Create the Timestream database and table (false: they exist already)."
  type        = bool
  default     = true
}

variable "timestream_database" {
  description = "--timestream-database (CLI default spotlake)."
  type        = string
  default     = "spotlake"
}

variable "timestream_table" {
  description = "--timestream-table (CLI default azure)."
  type        = string
  default     = "azure"
}

variable "timestream_layout" {
  description = "--timestream-layout: spotlake (default) or original (the original deployment's table)."
  type        = string
  default     = "spotlake"
  validation {
    condition     = contains(["spotlake", "original"], var.timestream_layout)
    error_message = "timestream_layout must be spotlake or original."
  }
}

variable "timestream_memory_hours" {
  description = "Timestream memory store retention (hours)."
  type        = number
  default     = 24
}

variable "timestream_magnetic_days" {
  description = "Timestream magnetic store retention (days)."
  type        = number
  default     = 3650
}

variable "log_group_name" {
  description = "--log-group: CloudWatch log group of the per-run counts (CLI default /spotlake/azure)."
  type        = string
  default     = "/spotlake/azure"
}

variable "metrics_namespace" {
  description = "--metrics-namespace: CloudWatch metrics namespace (CLI default spotlake)."
  type        = string
  default     = "spotlake"
}

variable "log_retention_days" {
  description = "Retention of the job's log groups (days); a year of run summaries is a few MB."
  type        = number
  default     = 365
}

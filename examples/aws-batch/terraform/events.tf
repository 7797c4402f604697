# The trigger: EventBridge Scheduler submits the collection job every 10 minutes (UTC).
#
# Scheduler's universal target calls batch:SubmitJob directly; its role may submit exactly this
# job definition revision to exactly this queue. A run whose minute is already committed is a
# no-op, and one that finds the previous run still going waits --lock-timeout then exits 75.

data "aws_iam_policy_document" "scheduler_assume" {
  statement {
    actions = ["sts:AssumeRole"]
    principals {
      type        = "Service"
      identifiers = ["scheduler.amazonaws.com"]
    }
    # Only schedules of this account may use the role (confused-deputy protection).
    condition {
      test     = "StringEquals"
      variable = "aws:SourceAccount"
      values   = [local.account_id]
    }
  }
}

data "aws_iam_policy_document" "scheduler" {
  statement {
    sid     = "SubmitCollectJob"
    actions = ["batch:SubmitJob"]
    resources = [
      aws_batch_job_queue.collector.arn,
      aws_batch_job_definition.collector.arn,
    ]
  }
}

resource "aws_iam_role" "scheduler" {
  name_prefix        = "${var.name}-scheduler-"
  assume_role_policy = data.aws_iam_policy_document.scheduler_assume.json
}

resource "aws_iam_role_policy" "scheduler" {
  name   = "submit-spotlake-collect"
  role   = aws_iam_role.scheduler.id
  policy = data.aws_iam_policy_document.scheduler.json
}

resource "aws_scheduler_schedule" "collect" {
  #checkov:skip=CKV_AWS_297: the schedule's target input holds only the job name and two ARNs (no data, no secret); Scheduler encrypts it at rest with an AWS owned key.
  name                         = local.job_name
  description                  = "spotlake collect azure, every 10 minutes"
  schedule_expression          = var.schedule_expression
  schedule_expression_timezone = "UTC"
  state                        = var.schedule_enabled ? "ENABLED" : "DISABLED"

  flexible_time_window {
    mode = "OFF"
  }

  target {
    arn      = "arn:${local.partition}:scheduler:::aws-sdk:batch:submitJob"
    role_arn = aws_iam_role.scheduler.arn
    # The revision ARN: a new job definition revision updates the schedule on the next apply.
    input = jsonencode({
      JobName       = local.job_name
      JobQueue      = aws_batch_job_queue.collector.arn
      JobDefinition = aws_batch_job_definition.collector.arn
    })

    # A submit that fails is retried briefly; after 5 minutes the next run is close anyway.
    retry_policy {
      maximum_event_age_in_seconds = 300
      maximum_retry_attempts       = 3
    }
  }
}

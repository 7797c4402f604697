# What deploy.sh prints after `terraform apply`, and what the other scripts read.

output "store_url" {
  description = "The job's --store: open it with `spotlake status/show --store ...` or pandas/DuckDB."
  value       = local.store_url
}

output "bucket_name" {
  description = "The store's bucket."
  value       = aws_s3_bucket.data.bucket
}

output "job_queue_arn" {
  description = "Batch job queue of the collector."
  value       = aws_batch_job_queue.collector.arn
}

output "job_definition_arn" {
  description = "Batch job definition (this revision) of the collector."
  value       = aws_batch_job_definition.collector.arn
}

output "job_role_arn" {
  description = "The job's IAM role (least privilege: the store prefix, the credentials item, the Slack parameter, Timestream table, CloudWatch)."
  value       = aws_iam_role.job.arn
}

output "schedule_name" {
  description = "EventBridge Scheduler schedule that submits the job."
  value       = aws_scheduler_schedule.collect.name
}

output "job_log_group" {
  description = "CloudWatch log group of the container output (run summaries, errors)."
  value       = aws_cloudwatch_log_group.job.name
}

output "run_counts_log_group" {
  description = "CloudWatch log group of the per-run counts written by --cloudwatch."
  value       = aws_cloudwatch_log_group.runs.name
}

output "auth_item" {
  description = "Where the Azure credentials item must be: table and key (see examples/README.md)."
  value       = "${var.auth_table_name} id=${local.auth_item_key}"
}

output "status_command" {
  description = "Check the store from any machine with the spotlake CLI and read access."
  value       = "spotlake status --store ${local.store_url}"
}

output "submit_command" {
  description = "Run the collector once now, outside the schedule."
  value       = "aws batch submit-job --region ${var.region} --job-name ${local.job_name}-manual --job-queue ${aws_batch_job_queue.collector.name} --job-definition ${aws_batch_job_definition.collector.name}"
}

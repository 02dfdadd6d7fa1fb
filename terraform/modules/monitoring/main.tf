# Alarms of SPEC 5, all to one topic; the same set as template.yaml. `dimension` names the
# dimension (QueueName, FunctionName, or Service for TMS's own metrics) and `target` the queue or
# function key it applies to (or the dimension's value, for Service).

locals {
  alarms = {
    work-dlq-depth      = { namespace = "AWS/SQS", metric = "ApproximateNumberOfMessagesVisible", dimension = "QueueName", target = "work_dlq", statistic = "Maximum", threshold = 0, description = "Messages in the work DLQ (infrastructure failures) - inspect and redrive." }
    import-dlq-depth    = { namespace = "AWS/SQS", metric = "ApproximateNumberOfMessagesVisible", dimension = "QueueName", target = "import_dlq", statistic = "Maximum", threshold = 0, description = "Notifications in the import DLQ - an import failed five times." }
    work-queue-age      = { namespace = "AWS/SQS", metric = "ApproximateAgeOfOldestMessage", dimension = "QueueName", target = "work", statistic = "Maximum", threshold = 300, description = "The oldest work message is older than 5 minutes - the worker is not keeping up." }
    import-queue-age    = { namespace = "AWS/SQS", metric = "ApproximateAgeOfOldestMessage", dimension = "QueueName", target = "import", statistic = "Maximum", threshold = 300, description = "The oldest import notification is older than 5 minutes." }
    tasks-dead          = { namespace = "TMS", metric = "TasksDead", dimension = "Service", target = "tms", statistic = "Sum", threshold = 0, description = "Tasks ended dead (business DLQ) - inspect with GET /v1/tasks?status=dead and redrive." }
    api-errors          = { namespace = "AWS/Lambda", metric = "Errors", dimension = "FunctionName", target = "api", statistic = "Sum", threshold = 0, description = "tms-api reported invocation errors." }
    api-throttles       = { namespace = "AWS/Lambda", metric = "Throttles", dimension = "FunctionName", target = "api", statistic = "Sum", threshold = 0, description = "tms-api invocations were throttled." }
    worker-errors       = { namespace = "AWS/Lambda", metric = "Errors", dimension = "FunctionName", target = "worker", statistic = "Sum", threshold = 0, description = "tms-worker reported invocation errors." }
    worker-throttles    = { namespace = "AWS/Lambda", metric = "Throttles", dimension = "FunctionName", target = "worker", statistic = "Sum", threshold = 0, description = "tms-worker invocations were throttled." }
    importer-errors     = { namespace = "AWS/Lambda", metric = "Errors", dimension = "FunctionName", target = "importer", statistic = "Sum", threshold = 0, description = "tms-importer reported invocation errors." }
    importer-throttles  = { namespace = "AWS/Lambda", metric = "Throttles", dimension = "FunctionName", target = "importer", statistic = "Sum", threshold = 0, description = "tms-importer invocations were throttled." }
    scheduler-errors    = { namespace = "AWS/Lambda", metric = "Errors", dimension = "FunctionName", target = "scheduler", statistic = "Sum", threshold = 0, description = "tms-scheduler reported invocation errors." }
    scheduler-throttles = { namespace = "AWS/Lambda", metric = "Throttles", dimension = "FunctionName", target = "scheduler", statistic = "Sum", threshold = 0, description = "tms-scheduler invocations were throttled." }
    bootstrap-errors    = { namespace = "AWS/Lambda", metric = "Errors", dimension = "FunctionName", target = "bootstrap", statistic = "Sum", threshold = 0, description = "tms-bootstrap reported invocation errors." }
    bootstrap-throttles = { namespace = "AWS/Lambda", metric = "Throttles", dimension = "FunctionName", target = "bootstrap", statistic = "Sum", threshold = 0, description = "tms-bootstrap invocations were throttled." }
  }
}

resource "aws_sns_topic" "alarms" {
  # checkov:skip=CKV_AWS_26:CloudWatch alarms cannot publish to a topic under the AWS-managed aws/sns key; alarm notifications carry no task data.
  name = "${var.name}-alarms"
}

resource "aws_sns_topic_subscription" "email" {
  count = var.alarm_email == "" ? 0 : 1

  topic_arn = aws_sns_topic.alarms.arn
  protocol  = "email"
  endpoint  = var.alarm_email
}

resource "aws_cloudwatch_metric_alarm" "this" {
  for_each = local.alarms

  alarm_name          = "${var.name}-${each.key}"
  alarm_description   = each.value.description
  namespace           = each.value.namespace
  metric_name         = each.value.metric
  statistic           = each.value.statistic
  period              = 300
  evaluation_periods  = 1
  threshold           = each.value.threshold
  comparison_operator = "GreaterThanThreshold"
  treat_missing_data  = "notBreaching"
  alarm_actions       = [aws_sns_topic.alarms.arn]
  ok_actions          = [aws_sns_topic.alarms.arn]

  dimensions = {
    for name, target in { (each.value.dimension) = each.value.target } :
    name => (name == "QueueName" ? var.queue_names[target] : name == "FunctionName" ? var.function_names[target] : target) if name != ""
  }
}

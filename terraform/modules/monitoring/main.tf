# Alarms, all to one topic; the same set as template.yaml. `dimension` names the dimension
# (QueueName, FunctionName, ApiId, DBInstanceIdentifier, or Service for TMS's own metrics) and
# `target` the queue, function, API or database it applies to (or the dimension's value, for
# Service). `database` alarms exist only with a created instance. The function alarms of the API,
# worker, importer and scheduler roll their deployments back (output rollback_alarms).
#
# M of N where one datapoint is noise (throttles, queue age, a gauge seen once); 1 of 1 where a
# single one is the news (a dead-letter message, a dead task, an import or a bootstrap near its
# timeout). Periods: 60 s where a deployment waits on the alarm, 300 s where the metric comes
# every 5 minutes (the stats gauges) or moves slowly.

locals {
  alarms = {
    work-dlq-depth        = { namespace = "AWS/SQS", metric = "ApproximateNumberOfMessagesVisible", dimension = "QueueName", target = "work_dlq", statistic = "Maximum", period = 300, evaluation_periods = 1, datapoints = 1, threshold = 0, comparison = "GreaterThanThreshold", missing = "notBreaching", database = false, description = "Messages in the work DLQ (infrastructure failures) - inspect and redrive." }
    events-dlq-depth      = { namespace = "AWS/SQS", metric = "ApproximateNumberOfMessagesVisible", dimension = "QueueName", target = "events_dlq", statistic = "Maximum", period = 300, evaluation_periods = 1, datapoints = 1, threshold = 0, comparison = "GreaterThanThreshold", missing = "notBreaching", database = false, description = "Events EventBridge could not deliver to the work queue are in the events DLQ (their attributes say why) - fix the cause, then send their bodies to the work queue." }
    import-dlq-depth      = { namespace = "AWS/SQS", metric = "ApproximateNumberOfMessagesVisible", dimension = "QueueName", target = "import_dlq", statistic = "Maximum", period = 300, evaluation_periods = 1, datapoints = 1, threshold = 0, comparison = "GreaterThanThreshold", missing = "notBreaching", database = false, description = "Notifications in the import DLQ - an import failed five times." }
    work-queue-age        = { namespace = "AWS/SQS", metric = "ApproximateAgeOfOldestMessage", dimension = "QueueName", target = "work", statistic = "Maximum", period = 300, evaluation_periods = 3, datapoints = 2, threshold = 300, comparison = "GreaterThanThreshold", missing = "notBreaching", database = false, description = "The oldest work message is older than 5 minutes in 2 of 3 periods - the worker is not keeping up." }
    high-work-dlq-depth   = { namespace = "AWS/SQS", metric = "ApproximateNumberOfMessagesVisible", dimension = "QueueName", target = "high_work_dlq", statistic = "Maximum", period = 300, evaluation_periods = 1, datapoints = 1, threshold = 0, comparison = "GreaterThanThreshold", missing = "notBreaching", database = false, description = "Messages in the high-priority work DLQ (infrastructure failures) - inspect and redrive to the work-high queue." }
    high-work-queue-age   = { namespace = "AWS/SQS", metric = "ApproximateAgeOfOldestMessage", dimension = "QueueName", target = "high_work", statistic = "Maximum", period = 300, evaluation_periods = 3, datapoints = 2, threshold = 300, comparison = "GreaterThanThreshold", missing = "notBreaching", database = false, description = "The oldest high-priority work message is older than 5 minutes in 2 of 3 periods - the worker's high-priority mapping is not keeping up." }
    import-queue-age      = { namespace = "AWS/SQS", metric = "ApproximateAgeOfOldestMessage", dimension = "QueueName", target = "import", statistic = "Maximum", period = 300, evaluation_periods = 3, datapoints = 2, threshold = 3600, comparison = "GreaterThanThreshold", missing = "notBreaching", database = false, description = "The oldest import notification waited over an hour in 2 of 3 periods - two imports of up to 15 minutes run at a time, so the importer is more than two rounds behind." }
    dead-tasks            = { namespace = "TMS", metric = "DeadTasks", dimension = "Service", target = "tms", statistic = "Maximum", period = 300, evaluation_periods = 1, datapoints = 1, threshold = 0, comparison = "GreaterThanThreshold", missing = "notBreaching", database = false, description = "Dead tasks await an operator (the stats job's gauge) - inspect with GET /v1/tasks?status=dead and redrive." }
    oldest-pending        = { namespace = "TMS", metric = "OldestPendingAgeSeconds", dimension = "Service", target = "tms", statistic = "Maximum", period = 300, evaluation_periods = 2, datapoints = 2, threshold = 900, comparison = "GreaterThanThreshold", missing = "notBreaching", database = false, description = "A due task has waited over 15 minutes in two consecutive stats runs - the worker or the relay is not keeping up." }
    stats-heartbeat       = { namespace = "TMS", metric = "DeadTasks", dimension = "Service", target = "tms", statistic = "SampleCount", period = 300, evaluation_periods = 2, datapoints = 2, threshold = 1, comparison = "LessThanThreshold", missing = "breaching", database = false, description = "The stats job emitted no gauge for 10 minutes - the scheduler is not running (missing data is breaching)." }
    api-latency-p99       = { namespace = "AWS/ApiGateway", metric = "Latency", dimension = "ApiId", target = "api", statistic = "p99", period = 60, evaluation_periods = 5, datapoints = 3, threshold = 1000, comparison = "GreaterThanThreshold", missing = "notBreaching", database = false, description = "The API's p99 latency exceeded 1 s in 3 of 5 minutes." }
    api-errors            = { namespace = "AWS/Lambda", metric = "Errors", dimension = "FunctionName", target = "api", statistic = "Sum", period = 60, evaluation_periods = 5, datapoints = 2, threshold = 0, comparison = "GreaterThanThreshold", missing = "notBreaching", database = false, description = "tms-api reported invocation errors in 2 of 5 minutes (rolls a deployment back)." }
    worker-errors         = { namespace = "AWS/Lambda", metric = "Errors", dimension = "FunctionName", target = "worker", statistic = "Sum", period = 60, evaluation_periods = 5, datapoints = 2, threshold = 0, comparison = "GreaterThanThreshold", missing = "notBreaching", database = false, description = "tms-worker reported invocation errors in 2 of 5 minutes (rolls a deployment back)." }
    importer-errors       = { namespace = "AWS/Lambda", metric = "Errors", dimension = "FunctionName", target = "importer", statistic = "Sum", period = 60, evaluation_periods = 5, datapoints = 2, threshold = 0, comparison = "GreaterThanThreshold", missing = "notBreaching", database = false, description = "tms-importer reported invocation errors in 2 of 5 minutes (rolls a deployment back)." }
    scheduler-errors      = { namespace = "AWS/Lambda", metric = "Errors", dimension = "FunctionName", target = "scheduler", statistic = "Sum", period = 300, evaluation_periods = 3, datapoints = 2, threshold = 0, comparison = "GreaterThanThreshold", missing = "notBreaching", database = false, description = "tms-scheduler reported invocation errors in 2 of 3 periods (a job failing again on its next runs)." }
    bootstrap-errors      = { namespace = "AWS/Lambda", metric = "Errors", dimension = "FunctionName", target = "bootstrap", statistic = "Sum", period = 300, evaluation_periods = 1, datapoints = 1, threshold = 0, comparison = "GreaterThanThreshold", missing = "notBreaching", database = false, description = "tms-bootstrap reported invocation errors (a deploy's bootstrap or a rotation step failed)." }
    api-throttles         = { namespace = "AWS/Lambda", metric = "Throttles", dimension = "FunctionName", target = "api", statistic = "Sum", period = 300, evaluation_periods = 3, datapoints = 2, threshold = 0, comparison = "GreaterThanThreshold", missing = "notBreaching", database = false, description = "tms-api invocations were throttled in 2 of 3 periods." }
    worker-throttles      = { namespace = "AWS/Lambda", metric = "Throttles", dimension = "FunctionName", target = "worker", statistic = "Sum", period = 300, evaluation_periods = 3, datapoints = 2, threshold = 0, comparison = "GreaterThanThreshold", missing = "notBreaching", database = false, description = "tms-worker invocations were throttled in 2 of 3 periods." }
    importer-throttles    = { namespace = "AWS/Lambda", metric = "Throttles", dimension = "FunctionName", target = "importer", statistic = "Sum", period = 300, evaluation_periods = 3, datapoints = 2, threshold = 0, comparison = "GreaterThanThreshold", missing = "notBreaching", database = false, description = "tms-importer invocations were throttled in 2 of 3 periods." }
    scheduler-throttles   = { namespace = "AWS/Lambda", metric = "Throttles", dimension = "FunctionName", target = "scheduler", statistic = "Sum", period = 300, evaluation_periods = 3, datapoints = 2, threshold = 0, comparison = "GreaterThanThreshold", missing = "notBreaching", database = false, description = "tms-scheduler invocations were throttled in 2 of 3 periods." }
    bootstrap-throttles   = { namespace = "AWS/Lambda", metric = "Throttles", dimension = "FunctionName", target = "bootstrap", statistic = "Sum", period = 300, evaluation_periods = 3, datapoints = 2, threshold = 0, comparison = "GreaterThanThreshold", missing = "notBreaching", database = false, description = "tms-bootstrap invocations were throttled in 2 of 3 periods." }
    api-duration          = { namespace = "AWS/Lambda", metric = "Duration", dimension = "FunctionName", target = "api", statistic = "Maximum", period = 300, evaluation_periods = 3, datapoints = 2, threshold = 23200, comparison = "GreaterThanThreshold", missing = "notBreaching", database = false, description = "tms-api ran longer than 80% of its 29 s timeout in 2 of 3 periods." }
    worker-duration       = { namespace = "AWS/Lambda", metric = "Duration", dimension = "FunctionName", target = "worker", statistic = "Maximum", period = 300, evaluation_periods = 3, datapoints = 2, threshold = 48000, comparison = "GreaterThanThreshold", missing = "notBreaching", database = false, description = "tms-worker ran longer than 80% of its 60 s timeout in 2 of 3 periods." }
    importer-duration     = { namespace = "AWS/Lambda", metric = "Duration", dimension = "FunctionName", target = "importer", statistic = "Maximum", period = 300, evaluation_periods = 1, datapoints = 1, threshold = 720000, comparison = "GreaterThanThreshold", missing = "notBreaching", database = false, description = "tms-importer ran longer than 80% of its 900 s timeout." }
    scheduler-duration    = { namespace = "AWS/Lambda", metric = "Duration", dimension = "FunctionName", target = "scheduler", statistic = "Maximum", period = 300, evaluation_periods = 3, datapoints = 2, threshold = 96000, comparison = "GreaterThanThreshold", missing = "notBreaching", database = false, description = "tms-scheduler ran longer than 80% of its 120 s timeout in 2 of 3 periods." }
    bootstrap-duration    = { namespace = "AWS/Lambda", metric = "Duration", dimension = "FunctionName", target = "bootstrap", statistic = "Maximum", period = 300, evaluation_periods = 1, datapoints = 1, threshold = 240000, comparison = "GreaterThanThreshold", missing = "notBreaching", database = false, description = "tms-bootstrap ran longer than 80% of its 300 s timeout." }
    database-cpu          = { namespace = "AWS/RDS", metric = "CPUUtilization", dimension = "DBInstanceIdentifier", target = "database", statistic = "Average", period = 300, evaluation_periods = 3, datapoints = 3, threshold = 80, comparison = "GreaterThanThreshold", missing = "notBreaching", database = true, description = "The database's CPU stayed above 80% for 15 minutes." }
    database-cpu-credits  = { namespace = "AWS/RDS", metric = "CPUCreditBalance", dimension = "DBInstanceIdentifier", target = "database", statistic = "Minimum", period = 300, evaluation_periods = 3, datapoints = 2, threshold = 20, comparison = "LessThanThreshold", missing = "notBreaching", database = true, description = "The database's CPU credit balance fell below 20 in 2 of 3 periods - a burstable class about to be throttled." }
    database-free-storage = { namespace = "AWS/RDS", metric = "FreeStorageSpace", dimension = "DBInstanceIdentifier", target = "database", statistic = "Minimum", period = 300, evaluation_periods = 2, datapoints = 2, threshold = 2147483648, comparison = "LessThanThreshold", missing = "notBreaching", database = true, description = "Less than 2 GiB of database storage left for 10 minutes - storage autoscaling is at DatabaseMaxAllocatedStorage." }
    database-connections  = { namespace = "AWS/RDS", metric = "DatabaseConnections", dimension = "DBInstanceIdentifier", target = "database", statistic = "Maximum", period = 60, evaluation_periods = 5, datapoints = 3, threshold = var.database_connections_alarm_threshold, comparison = "GreaterThanThreshold", missing = "notBreaching", database = true, description = "Database connections above DatabaseConnectionsAlarmThreshold in 3 of 5 minutes - near max_connections (README, Database connections)." }
  }

  dimension_values = {
    QueueName            = var.queue_names
    FunctionName         = var.function_names
    ApiId                = { api = var.api_id }
    DBInstanceIdentifier = { database = var.database_identifier }
    Service              = { tms = "tms" }
  }

  rollback = {
    api       = ["api-errors", "api-5xx-rate", "api-latency-p99"]
    worker    = ["worker-errors"]
    importer  = ["importer-errors"]
    scheduler = ["scheduler-errors"]
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
  for_each = { for key, alarm in local.alarms : key => alarm if var.create_database || !alarm.database }

  alarm_name          = "${var.name}-${each.key}"
  alarm_description   = each.value.description
  namespace           = each.value.namespace
  metric_name         = each.value.metric
  statistic           = startswith(each.value.statistic, "p") ? null : each.value.statistic
  extended_statistic  = startswith(each.value.statistic, "p") ? each.value.statistic : null
  period              = each.value.period
  evaluation_periods  = each.value.evaluation_periods
  datapoints_to_alarm = each.value.datapoints
  threshold           = each.value.threshold
  comparison_operator = each.value.comparison
  treat_missing_data  = each.value.missing
  alarm_actions       = [aws_sns_topic.alarms.arn]
  ok_actions          = [aws_sns_topic.alarms.arn]

  dimensions = {
    (each.value.dimension) = local.dimension_values[each.value.dimension][each.value.target]
  }
}

# A failed delivery lands in the events DLQ (events-dlq-depth); this one catches what even the DLQ
# refused (its policy or the queue itself broken): events lost without a trace. A rule on a custom
# bus reports its metrics under both dimensions.
resource "aws_cloudwatch_metric_alarm" "events_undelivered" {
  alarm_name          = "${var.name}-events-undelivered"
  alarm_description   = "EventBridge could deliver events neither to the work queue nor to the events DLQ - they are lost; check both queues' policies."
  namespace           = "AWS/Events"
  metric_name         = "InvocationsFailedToBeSentToDLQ"
  statistic           = "Sum"
  period              = 300
  evaluation_periods  = 1
  datapoints_to_alarm = 1
  threshold           = 0
  comparison_operator = "GreaterThanThreshold"
  treat_missing_data  = "notBreaching"
  alarm_actions       = [aws_sns_topic.alarms.arn]
  ok_actions          = [aws_sns_topic.alarms.arn]

  dimensions = {
    EventBusName = var.event_bus_name
    RuleName     = var.event_rule_name
  }
}

resource "aws_cloudwatch_metric_alarm" "api_5xx_rate" {
  alarm_name          = "${var.name}-api-5xx-rate"
  alarm_description   = "Over 5% of the API's responses were 5xx in 3 of 5 minutes (minutes with fewer than 10 requests count as 0%; rolls a deployment back)."
  evaluation_periods  = 5
  datapoints_to_alarm = 3
  threshold           = 5
  comparison_operator = "GreaterThanThreshold"
  treat_missing_data  = "notBreaching"
  alarm_actions       = [aws_sns_topic.alarms.arn]
  ok_actions          = [aws_sns_topic.alarms.arn]

  metric_query {
    id          = "errors"
    return_data = false

    metric {
      namespace   = "AWS/ApiGateway"
      metric_name = "5xx"
      dimensions  = { ApiId = var.api_id }
      period      = 60
      stat        = "Sum"
    }
  }

  metric_query {
    id          = "requests"
    return_data = false

    metric {
      namespace   = "AWS/ApiGateway"
      metric_name = "Count"
      dimensions  = { ApiId = var.api_id }
      period      = 60
      stat        = "Sum"
    }
  }

  metric_query {
    id          = "rate"
    label       = "5xx percent"
    expression  = "IF(requests >= 10, 100 * errors / requests, 0)"
    return_data = true
  }
}

# The dashboard: the API (requests, errors, latency), each queue (depth, age, DLQ), each function
# (invocations, errors, duration, concurrency), the task gauges, the database, the events rule
# (deliveries, failures, its DLQ), the high-priority work queue.
locals {
  dashboard_widgets = [
    {
      title = "API requests"
      metrics = [
        ["AWS/ApiGateway", "Count", "ApiId", var.api_id, { stat = "Sum" }],
      ]
    },
    {
      title = "API errors"
      metrics = [
        ["AWS/ApiGateway", "5xx", "ApiId", var.api_id, { stat = "Sum" }],
        ["AWS/ApiGateway", "4xx", "ApiId", var.api_id, { stat = "Sum" }],
      ]
    },
    {
      title = "API latency"
      metrics = [
        ["AWS/ApiGateway", "Latency", "ApiId", var.api_id, { stat = "p50" }],
        ["AWS/ApiGateway", "Latency", "ApiId", var.api_id, { stat = "p99" }],
      ]
    },
    {
      title = "Work queue: depth, oldest age, DLQ depth"
      metrics = [
        ["AWS/SQS", "ApproximateNumberOfMessagesVisible", "QueueName", var.queue_names["work"], { stat = "Maximum" }],
        ["AWS/SQS", "ApproximateAgeOfOldestMessage", "QueueName", var.queue_names["work"], { stat = "Maximum" }],
        ["AWS/SQS", "ApproximateNumberOfMessagesVisible", "QueueName", var.queue_names["work_dlq"], { stat = "Maximum" }],
      ]
    },
    {
      title = "Import queue: depth, oldest age, DLQ depth"
      metrics = [
        ["AWS/SQS", "ApproximateNumberOfMessagesVisible", "QueueName", var.queue_names["import"], { stat = "Maximum" }],
        ["AWS/SQS", "ApproximateAgeOfOldestMessage", "QueueName", var.queue_names["import"], { stat = "Maximum" }],
        ["AWS/SQS", "ApproximateNumberOfMessagesVisible", "QueueName", var.queue_names["import_dlq"], { stat = "Maximum" }],
      ]
    },
    {
      title = "Function invocations"
      metrics = [
        ["AWS/Lambda", "Invocations", "FunctionName", var.function_names["api"], { stat = "Sum" }],
        ["AWS/Lambda", "Invocations", "FunctionName", var.function_names["worker"], { stat = "Sum" }],
        ["AWS/Lambda", "Invocations", "FunctionName", var.function_names["importer"], { stat = "Sum" }],
        ["AWS/Lambda", "Invocations", "FunctionName", var.function_names["scheduler"], { stat = "Sum" }],
        ["AWS/Lambda", "Invocations", "FunctionName", var.function_names["bootstrap"], { stat = "Sum" }],
      ]
    },
    {
      title = "Function errors"
      metrics = [
        ["AWS/Lambda", "Errors", "FunctionName", var.function_names["api"], { stat = "Sum" }],
        ["AWS/Lambda", "Errors", "FunctionName", var.function_names["worker"], { stat = "Sum" }],
        ["AWS/Lambda", "Errors", "FunctionName", var.function_names["importer"], { stat = "Sum" }],
        ["AWS/Lambda", "Errors", "FunctionName", var.function_names["scheduler"], { stat = "Sum" }],
        ["AWS/Lambda", "Errors", "FunctionName", var.function_names["bootstrap"], { stat = "Sum" }],
      ]
    },
    {
      title = "Function duration p99"
      metrics = [
        ["AWS/Lambda", "Duration", "FunctionName", var.function_names["api"], { stat = "p99" }],
        ["AWS/Lambda", "Duration", "FunctionName", var.function_names["worker"], { stat = "p99" }],
        ["AWS/Lambda", "Duration", "FunctionName", var.function_names["importer"], { stat = "p99" }],
        ["AWS/Lambda", "Duration", "FunctionName", var.function_names["scheduler"], { stat = "p99" }],
        ["AWS/Lambda", "Duration", "FunctionName", var.function_names["bootstrap"], { stat = "p99" }],
      ]
    },
    {
      title = "Function concurrent executions"
      metrics = [
        ["AWS/Lambda", "ConcurrentExecutions", "FunctionName", var.function_names["api"], { stat = "Maximum" }],
        ["AWS/Lambda", "ConcurrentExecutions", "FunctionName", var.function_names["worker"], { stat = "Maximum" }],
        ["AWS/Lambda", "ConcurrentExecutions", "FunctionName", var.function_names["importer"], { stat = "Maximum" }],
        ["AWS/Lambda", "ConcurrentExecutions", "FunctionName", var.function_names["scheduler"], { stat = "Maximum" }],
        ["AWS/Lambda", "ConcurrentExecutions", "FunctionName", var.function_names["bootstrap"], { stat = "Maximum" }],
      ]
    },
    {
      title = "Tasks by status"
      metrics = [
        ["TMS", "TasksInStatus", "Service", "tms", "Status", "pending", { stat = "Maximum" }],
        ["TMS", "TasksInStatus", "Service", "tms", "Status", "running", { stat = "Maximum" }],
        ["TMS", "TasksInStatus", "Service", "tms", "Status", "failed", { stat = "Maximum" }],
        ["TMS", "TasksInStatus", "Service", "tms", "Status", "dead", { stat = "Maximum" }],
      ]
    },
    {
      title = "Oldest due pending task (s) and dead tasks"
      metrics = [
        ["TMS", "OldestPendingAgeSeconds", "Service", "tms", { stat = "Maximum" }],
        ["TMS", "DeadTasks", "Service", "tms", { stat = "Maximum" }],
      ]
    },
    {
      title = "Database CPU and credits"
      metrics = [
        ["AWS/RDS", "CPUUtilization", "DBInstanceIdentifier", var.database_identifier, { stat = "Average" }],
        ["AWS/RDS", "CPUCreditBalance", "DBInstanceIdentifier", var.database_identifier, { stat = "Minimum" }],
      ]
    },
    {
      title = "Database connections"
      metrics = [
        ["AWS/RDS", "DatabaseConnections", "DBInstanceIdentifier", var.database_identifier, { stat = "Maximum" }],
      ]
    },
    {
      title = "Database free storage (bytes)"
      metrics = [
        ["AWS/RDS", "FreeStorageSpace", "DBInstanceIdentifier", var.database_identifier, { stat = "Minimum" }],
      ]
    },
    {
      title = "Events to the work queue: deliveries, failures, DLQ depth"
      metrics = [
        ["AWS/Events", "Invocations", "EventBusName", var.event_bus_name, "RuleName", var.event_rule_name, { stat = "Sum" }],
        ["AWS/Events", "FailedInvocations", "EventBusName", var.event_bus_name, "RuleName", var.event_rule_name, { stat = "Sum" }],
        ["AWS/SQS", "ApproximateNumberOfMessagesVisible", "QueueName", var.queue_names["events_dlq"], { stat = "Maximum" }],
      ]
    },
    {
      title = "High-priority work queue: depth, oldest age, DLQ depth"
      metrics = [
        ["AWS/SQS", "ApproximateNumberOfMessagesVisible", "QueueName", var.queue_names["high_work"], { stat = "Maximum" }],
        ["AWS/SQS", "ApproximateAgeOfOldestMessage", "QueueName", var.queue_names["high_work"], { stat = "Maximum" }],
        ["AWS/SQS", "ApproximateNumberOfMessagesVisible", "QueueName", var.queue_names["high_work_dlq"], { stat = "Maximum" }],
      ]
    },
  ]
}

resource "aws_cloudwatch_dashboard" "this" {
  dashboard_name = var.name
  dashboard_body = jsonencode({
    widgets = [
      for index, widget in local.dashboard_widgets : {
        type   = "metric"
        x      = (index % 3) * 8
        y      = floor(index / 3) * 6
        width  = 8
        height = 6
        properties = {
          title   = widget.title
          region  = data.aws_region.current.name
          view    = "timeSeries"
          period  = 300
          metrics = widget.metrics
        }
      }
    ]
  })
}

data "aws_region" "current" {}

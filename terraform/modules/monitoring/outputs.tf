output "topic_arn" {
  value = aws_sns_topic.alarms.arn
}

# function key => names of the alarms that roll its deployments back.
output "rollback_alarms" {
  value = {
    for key, names in local.rollback : key => [
      for name in names : name == "api-5xx-rate" ? aws_cloudwatch_metric_alarm.api_5xx_rate.alarm_name : aws_cloudwatch_metric_alarm.this[name].alarm_name
    ]
  }
}

output "dashboard_name" {
  value = aws_cloudwatch_dashboard.this.dashboard_name
}

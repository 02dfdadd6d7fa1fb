output "api_url" {
  description = "Base URL of the HTTP API"
  value       = module.api.api_url
}

output "work_queue_url" {
  value = module.queues.work_queue_url
}

output "work_dlq_url" {
  value = module.queues.work_dlq_url
}

output "high_work_queue_url" {
  description = "The work queue of high-priority tasks (the worker consumes it beside the work queue)"
  value       = module.queues.high_work_queue_url
}

output "high_work_dlq_url" {
  value = module.queues.high_work_dlq_url
}

output "import_queue_url" {
  value = module.queues.import_queue_url
}

output "import_dlq_url" {
  value = module.queues.import_dlq_url
}

output "event_bus_name" {
  description = "The event bus producers put events on (events:PutEvents; the events reach the work queue)"
  value       = module.events.bus_name
}

output "event_bus_arn" {
  value = module.events.bus_arn
}

output "events_dlq_url" {
  description = "Events EventBridge could not deliver to the work queue"
  value       = module.queues.events_dlq_url
}

output "bucket_name" {
  value = module.storage.bucket_name
}

output "alarm_topic_arn" {
  value = module.monitoring.topic_arn
}

output "database_endpoint" {
  value = module.database.connection.host
}

output "database_proxy_endpoint" {
  value = module.database.connection.proxy_host
}

output "dashboard_name" {
  description = "The CloudWatch dashboard of the stack"
  value       = module.monitoring.dashboard_name
}

output "github_deploy_role_arn" {
  description = "The role the deploy workflow assumes (repository variable TMS_DEPLOY_ROLE_ARN)"
  value       = module.cicd.deploy_role_arn
}

output "rds_ca_layer_arn" {
  description = "Passed to `make deploy-fn LAYER=...` so that a code-only update keeps the layer"
  value       = module.functions.rds_ca_layer_arn
}

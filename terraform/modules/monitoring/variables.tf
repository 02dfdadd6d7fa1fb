variable "name" {
  type = string
}

variable "alarm_email" {
  type = string
}

variable "queue_names" {
  description = "work, work_dlq, high_work, high_work_dlq, import, import_dlq, events_dlq => queue name"
  type        = map(string)
}

variable "event_bus_name" {
  type = string
}

variable "event_rule_name" {
  description = "The rule delivering the bus's events to the work queue."
  type        = string
}

variable "function_names" {
  description = "api, worker, importer, scheduler, bootstrap => function name"
  type        = map(string)
}

variable "api_id" {
  type = string
}

variable "database_identifier" {
  description = "The created instance's identifier (\"none\" without one)."
  type        = string
}

variable "create_database" {
  type = bool
}

variable "database_connections_alarm_threshold" {
  type = number
}

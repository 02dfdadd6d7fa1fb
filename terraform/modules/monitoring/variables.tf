variable "name" {
  type = string
}

variable "alarm_email" {
  type = string
}

variable "queue_names" {
  description = "work, work_dlq, import, import_dlq => queue name"
  type        = map(string)
}

variable "function_names" {
  description = "api, worker, importer, scheduler, bootstrap => function name"
  type        = map(string)
}

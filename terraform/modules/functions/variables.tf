variable "name" {
  type = string
}

variable "artifacts_dir" {
  description = "Directory holding <binary>/bootstrap.zip (cargo lambda build --release --arm64 --output-format zip)."
  type        = string
}

variable "ca_layer_zip" {
  type = string
}

variable "log_retention_days" {
  type = number
}

variable "task_retention_days" {
  type = number
}

variable "oidc_issuer" {
  description = "The console's OpenID Connect issuer (the JWT authorizer's), or empty."
  type        = string
  default     = ""
}

variable "console_oidc_client_id" {
  description = "The console's OpenID Connect client id, or empty."
  type        = string
  default     = ""
}

variable "tokens_parameter_name" {
  type = string
}

variable "producers_parameter_name" {
  type = string
}

variable "event_bus_name" {
  description = "The bus the functions publish lifecycle events to (TMS_EVENT_BUS)."
  type        = string
}

variable "event_bus_arn" {
  type = string
}

variable "email_identity" {
  description = "The SES identity email tasks are delivered from, or empty (no delivery)."
  type        = string
}

variable "email_deliver_default" {
  type = bool
}

variable "subnet_ids" {
  type = list(string)
}

variable "security_group_ids" {
  type = list(string)
}

variable "egress_ready" {
  description = "Changes when the private subnets' route to AWS APIs is (re)created; the bootstrap invocation waits for it."
  type        = string
}

variable "work_queue_arn" {
  type = string
}

variable "high_work_queue_arn" {
  description = "The work queue of high-priority tasks: the worker's second mapping reads it."
  type        = string
}

variable "high_work_queue_url" {
  description = "TMS_HIGH_WORK_QUEUE_URL of every function that sends work messages."
  type        = string
}

variable "work_queue_url" {
  type = string
}

variable "work_dlq_arn" {
  type = string
}

variable "work_dlq_url" {
  type = string
}

variable "import_queue_arn" {
  type = string
}

variable "bucket_name" {
  type = string
}

variable "bucket_arn" {
  type = string
}

variable "database" {
  description = "The database module's connection output."
  type = object({
    host                = string
    proxy_host          = string
    port                = number
    name                = string
    admin_user          = string
    admin_secret_arn    = string
    migrator_secret_arn = string
    app_secret_arn      = string
    dev_secret_arn      = string
  })
}

variable "api_reserved_concurrency" {
  type = number
}

variable "deployment_strategy" {
  description = "CodeDeploy's Lambda configuration without its CodeDeployDefault.Lambda prefix."
  type        = string
}

variable "login_rotation_days" {
  type = string
}

variable "rollback_alarms" {
  description = "function key => names of the alarms that roll its deployment back"
  type        = map(list(string))
}

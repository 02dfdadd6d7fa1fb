variable "region" {
  description = "AWS region of the stack."
  type        = string
  default     = "us-east-1"
}

variable "name" {
  description = "Prefix of every resource name (the SAM stack name's counterpart)."
  type        = string
  default     = "tms"

  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{1,30}$", var.name))
    error_message = "name: lower-case letters, digits and dashes, 2 to 31 characters."
  }
}

variable "artifacts_dir" {
  description = "Directory holding <binary>/bootstrap.zip from `cargo lambda build --release --arm64 --output-format zip`; default ../target/lambda."
  type        = string
  default     = null
}

variable "ca_layer_zip" {
  description = "The RDS CA bundle layer made by scripts/rds-ca-bundle.sh; default ../build/layers/rds-ca.zip."
  type        = string
  default     = null
}

variable "log_retention_days" {
  description = "Retention of the functions' and the API's log groups, in days."
  type        = number
  default     = 30
}

variable "task_retention_days" {
  description = "The retention job deletes succeeded and cancelled tasks older than this (TMS_RETENTION_DAYS)."
  type        = number
  default     = 30
}

variable "tokens_parameter_name" {
  description = "SSM SecureString holding the API token map {\"<sha256 hex of token>\": \"<tenant>\"}, created by the operator."
  type        = string
  default     = "/tms/api-tokens"
}

variable "producers_parameter_name" {
  description = "SSM SecureString holding the queue producer map {\"<SQS SenderId>\": \"*\" | \"<tenant>\" | [\"<tenant>\", ...]}, created by the operator ({} refuses every queue submission)."
  type        = string
  default     = "/tms/queue-producers"
}

variable "jwt_issuer" {
  description = "OIDC issuer URL; non-empty enables the JWT authorizer on the /v1 routes."
  type        = string
  default     = ""
}

variable "jwt_audience" {
  description = "Accepted JWT audiences (client ids), when jwt_issuer is set."
  type        = list(string)
  default     = []
}

variable "cors_allow_origins" {
  description = "Origins allowed by CORS on the HTTP API."
  type        = list(string)
  default     = ["*"]
}

variable "api_throttling_rate_limit" {
  description = "Steady-state requests per second for the HTTP API stage."
  type        = number
  default     = 50
}

variable "api_throttling_burst_limit" {
  description = "Burst of requests for the HTTP API stage."
  type        = number
  default     = 100
}

variable "alarm_email" {
  description = "Optional e-mail address subscribed to the alarm topic."
  type        = string
  default     = ""
}

variable "vpc_cidr" {
  description = "The stack's VPC (a /16; four /24 subnets are carved from it)."
  type        = string
  default     = "10.40.0.0/16"
}

variable "existing_database_host" {
  description = "Empty: create an RDS PostgreSQL instance. Otherwise the host of an existing PostgreSQL (RDS CA-signed TLS) reachable from the VPC."
  type        = string
  default     = ""
}

variable "existing_database_admin_secret_name" {
  description = "With existing_database_host: the Secrets Manager secret holding the admin's {\"username\",\"password\"}."
  type        = string
  default     = ""
}

variable "existing_database_cidr" {
  description = "With existing_database_host: the CIDR the functions may reach on database_port."
  type        = string
  default     = "10.0.0.0/8"
}

variable "database_admin_user" {
  description = "Master user of the created instance, or the existing database's admin user."
  type        = string
  default     = "tms_admin"
}

variable "database_name" {
  type    = string
  default = "tms"
}

variable "database_port" {
  type    = number
  default = 5432
}

variable "database_instance_class" {
  type    = string
  default = "db.t4g.micro"
}

variable "database_allocated_storage" {
  type    = number
  default = 20
}

variable "database_engine_version" {
  description = "PostgreSQL major version (the parameter group family follows it)."
  type        = string
  default     = "16"
}

variable "database_multi_az" {
  type    = bool
  default = false
}

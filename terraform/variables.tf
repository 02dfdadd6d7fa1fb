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

# The validations mirror template.yaml's parameter constraints (AllowedValues, AllowedPattern,
# MinValue, MaxValue); tools/infra/parity.py compares them.

variable "log_retention_days" {
  description = "Retention of the functions', the API's and the database's log groups, in days."
  type        = number
  default     = 30

  validation {
    condition     = contains([1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827, 2192, 2557, 2922, 3288, 3653], var.log_retention_days)
    error_message = "log_retention_days: one of the retention periods CloudWatch Logs accepts (1, 3, 5, 7, 14, 30, 60, 90, ... 3653)."
  }
}

variable "task_retention_days" {
  description = "The retention job deletes succeeded and cancelled tasks older than this (TMS_RETENTION_DAYS)."
  type        = number
  default     = 30

  validation {
    condition     = var.task_retention_days >= 1
    error_message = "task_retention_days: at least 1."
  }
}

variable "tokens_parameter_name" {
  description = "SSM SecureString holding the API token map {\"<sha256 hex of token>\": \"<tenant>\"}, created by the operator."
  type        = string
  default     = "/tms/api-tokens"

  validation {
    condition     = can(regex("^/[A-Za-z0-9_.\\-/]+$", var.tokens_parameter_name))
    error_message = "tokens_parameter_name: an SSM parameter path such as /tms/api-tokens."
  }
}

variable "producers_parameter_name" {
  description = "SSM SecureString holding the producer map {\"<SQS SenderId or, for events on the bus, account id>\": \"*\" | \"<tenant>\" | [\"<tenant>\", ...]}, created by the operator ({} refuses every queue submission and event)."
  type        = string
  default     = "/tms/queue-producers"

  validation {
    condition     = can(regex("^/[A-Za-z0-9_.\\-/]+$", var.producers_parameter_name))
    error_message = "producers_parameter_name: an SSM parameter path such as /tms/queue-producers."
  }
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

variable "console_oidc_client_id" {
  description = "Client id of an app client of jwt_issuer (public: authorization code with PKCE, no secret) whose callback URL is https://<API host>/console/callback; with jwt_issuer the console offers sign-in through that provider besides API tokens."
  type        = string
  default     = ""

  validation {
    condition     = can(regex("^[A-Za-z0-9._:\\-]*$", var.console_oidc_client_id))
    error_message = "console_oidc_client_id: letters, digits and . _ : - only."
  }
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

  validation {
    condition     = var.api_throttling_rate_limit >= 1
    error_message = "api_throttling_rate_limit: at least 1."
  }
}

variable "api_throttling_burst_limit" {
  description = "Burst of requests for the HTTP API stage."
  type        = number
  default     = 100

  validation {
    condition     = var.api_throttling_burst_limit >= 1
    error_message = "api_throttling_burst_limit: at least 1."
  }
}

variable "api_reserved_concurrency" {
  description = "0 leaves the API's concurrency unreserved; N reserves and caps it at N concurrent executions, so at most N database connections (README, \"Database connections\")."
  type        = number
  default     = 0

  validation {
    condition     = var.api_reserved_concurrency >= 0
    error_message = "api_reserved_concurrency: 0 (off) or more."
  }
}

variable "alarm_email" {
  description = "Optional e-mail address subscribed to the alarm topic."
  type        = string
  default     = ""
}

variable "email_identity" {
  description = "The SES identity, verified in this account and region, that email tasks are delivered from (TMS_EMAIL_IDENTITY): an address (every message is sent from it, replies go to the task's sender) or a domain (messages are sent as their sender, who must be at that domain). The worker may send as this identity only (ses:SendEmail on its ARN). Empty: no email is delivered."
  type        = string
  default     = ""

  validation {
    condition     = can(regex("^$|^([A-Za-z0-9._%+-]+@)?([A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?\\.)+[A-Za-z]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?$", var.email_identity))
    error_message = "email_identity: an email address (tms@example.com), a domain (example.com) or empty."
  }
}

variable "email_deliver_default" {
  description = "true delivers every email task whose payload does not say \"deliver\": false (TMS_EMAIL_DELIVER); false delivers only those that say \"deliver\": true. true needs email_identity."
  type        = bool
  default     = false

  # template.yaml's rule DeliveringNeedsAnIdentity.
  validation {
    condition     = !var.email_deliver_default || var.email_identity != ""
    error_message = "email_deliver_default true needs email_identity, the identity emails are sent from."
  }
}

variable "vpc_cidr" {
  description = "The stack's VPC (a /16; four /24 subnets are carved from it)."
  type        = string
  default     = "10.40.0.0/16"

  validation {
    condition     = can(regex("^\\d{1,3}\\.\\d{1,3}\\.\\d{1,3}\\.\\d{1,3}/16$", var.vpc_cidr))
    error_message = "vpc_cidr: a /16 such as 10.40.0.0/16."
  }
}

variable "nat_gateway_per_az" {
  description = "true puts a NAT gateway in each of the two zones, so the loss of one zone does not cut the other's functions off AWS APIs and webhooks; false keeps one (half the hourly cost)."
  type        = bool
  default     = false
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

  validation {
    condition     = can(regex("^[A-Za-z0-9/_+=.@!-]*$", var.existing_database_admin_secret_name))
    error_message = "existing_database_admin_secret_name: a Secrets Manager secret name."
  }

  # template.yaml's rule ExistingDatabaseNeedsSecret.
  validation {
    condition     = var.existing_database_host == "" || var.existing_database_admin_secret_name != ""
    error_message = "existing_database_admin_secret_name is required with existing_database_host."
  }
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

  validation {
    condition     = can(regex("^[a-z][a-z0-9_]{0,62}$", var.database_admin_user))
    error_message = "database_admin_user: a lower-case PostgreSQL identifier."
  }
}

variable "database_name" {
  type    = string
  default = "tms"

  validation {
    condition     = can(regex("^[a-z][a-z0-9_]{0,62}$", var.database_name))
    error_message = "database_name: a lower-case PostgreSQL identifier."
  }
}

variable "database_port" {
  type    = number
  default = 5432

  validation {
    condition     = var.database_port >= 1150 && var.database_port <= 65535
    error_message = "database_port: 1150 to 65535 (the ports RDS accepts)."
  }
}

variable "database_instance_class" {
  type    = string
  default = "db.t4g.micro"
}

variable "database_allocated_storage" {
  type    = number
  default = 20

  validation {
    condition     = var.database_allocated_storage >= 20
    error_message = "database_allocated_storage: at least 20 (GiB)."
  }
}

variable "database_max_allocated_storage" {
  description = "Storage autoscaling grows the volume up to this many GiB (at least database_allocated_storage)."
  type        = number
  default     = 100

  validation {
    condition     = var.database_max_allocated_storage >= 20
    error_message = "database_max_allocated_storage: at least 20 (GiB)."
  }

  validation {
    condition     = var.database_max_allocated_storage >= var.database_allocated_storage
    error_message = "database_max_allocated_storage: at least database_allocated_storage."
  }
}

variable "database_slow_statement_ms" {
  description = "log_min_duration_statement - statements running longer are logged with their duration (-1 turns it off)."
  type        = number
  default     = 500

  validation {
    condition     = var.database_slow_statement_ms >= -1
    error_message = "database_slow_statement_ms: -1 (off) or more."
  }
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

variable "database_connections_alarm_threshold" {
  description = "The DatabaseConnections alarm's threshold: about 80% of the instance class's max_connections (about 80 on db.t4g.micro; README, \"Database connections\")."
  type        = number
  default     = 64

  validation {
    condition     = var.database_connections_alarm_threshold >= 1
    error_message = "database_connections_alarm_threshold: at least 1."
  }
}

variable "enable_rds_proxy" {
  description = "true puts an RDS Proxy between the API and the worker and the created instance (the scheduler, importer and bootstrapper hold session locks and connect directly by design)."
  type        = bool
  default     = false
}

variable "login_rotation_days" {
  description = "Secrets Manager rotates the passwords of tms_migrator, tms_app and tms_dev every this many days (the bootstrapper rotates them)."
  type        = number
  default     = 30

  validation {
    condition     = var.login_rotation_days >= 1 && var.login_rotation_days <= 90
    error_message = "login_rotation_days: 1 to 90."
  }
}

variable "deployment_strategy" {
  description = "How CodeDeploy shifts the live alias of the API, the worker and the importer to a new version; their alarms roll it back."
  type        = string
  default     = "Canary10Percent5Minutes"

  validation {
    condition     = contains(["Canary10Percent5Minutes", "Canary10Percent10Minutes", "Canary10Percent15Minutes", "Canary10Percent30Minutes", "Linear10PercentEvery1Minute", "Linear10PercentEvery2Minutes", "Linear10PercentEvery3Minutes", "Linear10PercentEvery10Minutes", "AllAtOnce"], var.deployment_strategy)
    error_message = "deployment_strategy: one of CodeDeploy's Lambda configurations without its CodeDeployDefault.Lambda prefix, e.g. Canary10Percent5Minutes or AllAtOnce."
  }
}

variable "github_repository" {
  description = "owner/name of the GitHub repository whose workflows deploy this stack through OIDC; empty creates no deploy role."
  type        = string
  default     = ""

  validation {
    condition     = can(regex("^$|^[A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+$", var.github_repository))
    error_message = "github_repository: owner/name, or empty."
  }
}

variable "github_deploy_subject" {
  description = "The part of the OIDC token's subject after repo:<owner/name>: the deploy workflow's environment (environment:production) or branch (ref:refs/heads/main)."
  type        = string
  default     = "environment:production"

  validation {
    condition     = can(regex("^(ref:refs/heads/[A-Za-z0-9_./-]+|environment:[A-Za-z0-9_.-]+)$", var.github_deploy_subject))
    error_message = "github_deploy_subject: environment:<name> or ref:refs/heads/<branch>."
  }
}

variable "github_oidc_provider_arn" {
  description = "Empty creates the account's GitHub OIDC provider with the deploy role (an account holds one); otherwise the ARN of the existing provider."
  type        = string
  default     = ""

  validation {
    condition     = can(regex("^$|^arn:aws[a-z-]*:iam::\\d{12}:oidc-provider/token\\.actions\\.githubusercontent\\.com$", var.github_oidc_provider_arn))
    error_message = "github_oidc_provider_arn: the ARN of the token.actions.githubusercontent.com provider, or empty."
  }
}

variable "name" {
  type = string
}

variable "vpc_id" {
  type = string
}

variable "private_subnet_ids" {
  type = list(string)
}

variable "function_security_group_id" {
  type = string
}

variable "existing_host" {
  description = "Empty: create the RDS instance."
  type        = string
}

variable "existing_admin_secret_name" {
  type = string
}

variable "existing_cidr" {
  type = string
}

variable "admin_user" {
  type = string
}

variable "database_name" {
  type = string
}

variable "port" {
  type = number
}

variable "instance_class" {
  type = string
}

variable "allocated_storage" {
  type = number
}

variable "engine_version" {
  type = string
}

variable "multi_az" {
  type = bool
}

variable "max_allocated_storage" {
  type = number
}

variable "slow_statement_ms" {
  type = number
}

variable "log_retention_days" {
  type = number
}

variable "enable_proxy" {
  type = bool
}

# The TMS stack, module by module; the same resources and settings as ../template.yaml
# (`make lint-infra` checks the parity of functions and their environments, roles' statements,
# queues and their policies, mappings, schedules, the event bus and its rule, alarms, the
# dashboard, log retention and the variables' validations). Remote state: backend.tf.example.

provider "aws" {
  region = var.region

  default_tags {
    tags = {
      Application = "tms"
      Stack       = var.name
    }
  }
}

data "aws_caller_identity" "current" {}
data "aws_region" "current" {}

# Like the SAM stack's bucket: account, region and a short random key; globally unique.
resource "random_id" "bucket" {
  byte_length = 4
}

locals {
  artifacts_dir = coalesce(var.artifacts_dir, "${path.root}/../target/lambda")
  ca_layer_zip  = coalesce(var.ca_layer_zip, "${path.root}/../build/layers/rds-ca.zip")
  bucket_name   = "tms-data-${data.aws_caller_identity.current.account_id}-${data.aws_region.current.name}-${random_id.bucket.hex}"
}

module "network" {
  source = "./modules/network"

  name               = var.name
  vpc_cidr           = var.vpc_cidr
  nat_gateway_per_az = var.nat_gateway_per_az
}

module "database" {
  source = "./modules/database"

  name                       = var.name
  vpc_id                     = module.network.vpc_id
  private_subnet_ids         = module.network.private_subnet_ids
  function_security_group_id = module.network.function_security_group_id
  existing_host              = var.existing_database_host
  existing_admin_secret_name = var.existing_database_admin_secret_name
  existing_cidr              = var.existing_database_cidr
  admin_user                 = var.database_admin_user
  database_name              = var.database_name
  port                       = var.database_port
  instance_class             = var.database_instance_class
  allocated_storage          = var.database_allocated_storage
  max_allocated_storage      = var.database_max_allocated_storage
  slow_statement_ms          = var.database_slow_statement_ms
  engine_version             = var.database_engine_version
  multi_az                   = var.database_multi_az
  log_retention_days         = var.log_retention_days
  enable_proxy               = var.enable_rds_proxy
}

module "queues" {
  source = "./modules/queues"

  name = var.name
}

module "events" {
  source = "./modules/events"

  name           = var.name
  work_queue_arn = module.queues.work_queue_arn
  work_queue_url = module.queues.work_queue_url
  events_dlq_arn = module.queues.events_dlq_arn
  events_dlq_url = module.queues.events_dlq_url
}

module "storage" {
  source = "./modules/storage"

  bucket_name      = local.bucket_name
  import_queue_arn = module.queues.import_queue_arn
  import_queue_url = module.queues.import_queue_url
}

module "functions" {
  source = "./modules/functions"

  name                     = var.name
  artifacts_dir            = local.artifacts_dir
  ca_layer_zip             = local.ca_layer_zip
  log_retention_days       = var.log_retention_days
  task_retention_days      = var.task_retention_days
  tokens_parameter_name    = var.tokens_parameter_name
  oidc_issuer              = var.jwt_issuer
  console_oidc_client_id   = var.console_oidc_client_id
  producers_parameter_name = var.producers_parameter_name
  event_bus_name           = module.events.bus_name
  event_bus_arn            = module.events.bus_arn
  email_identity           = var.email_identity
  email_deliver_default    = var.email_deliver_default
  subnet_ids               = module.network.private_subnet_ids
  security_group_ids       = [module.network.function_security_group_id]
  egress_ready             = module.network.egress_ready
  work_queue_arn           = module.queues.work_queue_arn
  work_queue_url           = module.queues.work_queue_url
  work_dlq_arn             = module.queues.work_dlq_arn
  work_dlq_url             = module.queues.work_dlq_url
  high_work_queue_arn      = module.queues.high_work_queue_arn
  high_work_queue_url      = module.queues.high_work_queue_url
  import_queue_arn         = module.queues.import_queue_arn
  bucket_name              = module.storage.bucket_name
  bucket_arn               = module.storage.bucket_arn
  database                 = module.database.connection
  api_reserved_concurrency = var.api_reserved_concurrency
  deployment_strategy      = var.deployment_strategy
  login_rotation_days      = var.login_rotation_days
  rollback_alarms          = module.monitoring.rollback_alarms
}

module "api" {
  source = "./modules/api"

  name                   = var.name
  function_name          = module.functions.function_names["api"]
  function_alias_arn     = module.functions.alias_arns["api"]
  function_alias         = module.functions.alias_name
  jwt_issuer             = var.jwt_issuer
  jwt_audience           = var.jwt_audience
  cors_allow_origins     = var.cors_allow_origins
  throttling_rate_limit  = var.api_throttling_rate_limit
  throttling_burst_limit = var.api_throttling_burst_limit
  log_retention_days     = var.log_retention_days
}

module "monitoring" {
  source = "./modules/monitoring"

  name                                 = var.name
  alarm_email                          = var.alarm_email
  queue_names                          = module.queues.queue_names
  event_bus_name                       = module.events.bus_name
  event_rule_name                      = module.events.rule_name
  function_names                       = module.functions.function_names
  api_id                               = module.api.api_id
  database_identifier                  = module.database.instance_identifier
  create_database                      = var.existing_database_host == ""
  database_connections_alarm_threshold = var.database_connections_alarm_threshold
}

module "cicd" {
  source = "./modules/cicd"

  name                     = var.name
  github_repository        = var.github_repository
  github_deploy_subject    = var.github_deploy_subject
  github_oidc_provider_arn = var.github_oidc_provider_arn
}

# Discovery parameters for operators and scripts (plain strings, no secrets).
resource "aws_ssm_parameter" "discovery" {
  # checkov:skip=CKV2_AWS_34:Plain discovery values (URLs, bucket name), no secret to encrypt.
  for_each = {
    api-url             = module.api.api_url
    work-queue-url      = module.queues.work_queue_url
    high-work-queue-url = module.queues.high_work_queue_url
    bucket              = module.storage.bucket_name
  }

  name  = "/tms/${var.name}/${each.key}"
  type  = "String"
  value = each.value
}

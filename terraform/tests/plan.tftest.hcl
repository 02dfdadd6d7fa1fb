# `terraform test` (after `terraform init`): plans the stack in its main configurations against a
# mocked AWS provider (no credentials, nothing created), and checks that the variables' validations
# refuse what template.yaml's parameter constraints refuse. The zips are stand-ins: a plan only
# hashes them.

mock_provider "aws" {
  mock_data "aws_caller_identity" {
    defaults = { account_id = "123456789012" }
  }
  mock_data "aws_region" {
    defaults = { name = "eu-west-1" }
  }
  mock_data "aws_partition" {
    defaults = { partition = "aws" }
  }
  mock_data "aws_availability_zones" {
    defaults = { names = ["eu-west-1a", "eu-west-1b"] }
  }
  mock_data "aws_iam_policy_document" {
    defaults = { json = "{}" }
  }
  mock_data "aws_secretsmanager_secret" {
    defaults = { arn = "arn:aws:secretsmanager:eu-west-1:123456789012:secret:admin-AbC123" }
  }
  mock_resource "aws_secretsmanager_secret_version" {
    defaults = { arn = "arn:aws:secretsmanager:eu-west-1:123456789012:secret:tms-app-password-abcdef-AbC123" }
  }
  mock_resource "aws_db_instance" {
    defaults = { master_user_secret = [{ secret_arn = "arn:aws:secretsmanager:eu-west-1:123456789012:secret:rds!db-1-AbC123", kms_key_id = "k", secret_status = "active" }] }
  }
}

variables {
  artifacts_dir = "./tests/fixtures/lambda"
  ca_layer_zip  = "./tests/fixtures/rds-ca.zip"
}

run "defaults" {
  command = plan

  assert {
    condition     = output.database_proxy_endpoint == ""
    error_message = "No RDS Proxy unless enable_rds_proxy."
  }

  assert {
    condition     = output.github_deploy_role_arn == null
    error_message = "No deploy role unless github_repository."
  }

  assert {
    condition     = output.event_bus_name == "tms-events"
    error_message = "The event bus is named after the stack (name-events)."
  }
}

run "proxy_nat_per_zone_reserved_concurrency_and_github_deploys" {
  command = plan

  variables {
    enable_rds_proxy         = true
    nat_gateway_per_az       = true
    api_reserved_concurrency = 20
    github_repository        = "acme/tms"
    deployment_strategy      = "Linear10PercentEvery1Minute"
  }
}

run "existing_database_and_oidc_provider" {
  command = plan

  variables {
    existing_database_host              = "db.example.internal"
    existing_database_admin_secret_name = "admin"
    github_repository                   = "acme/tms"
    github_oidc_provider_arn            = "arn:aws:iam::123456789012:oidc-provider/token.actions.githubusercontent.com"
  }
}

run "validations_refuse_what_the_template_refuses" {
  command = plan

  variables {
    existing_database_host   = "db.example.internal"
    login_rotation_days      = 120
    deployment_strategy      = "Canary50Percent1Minute"
    log_retention_days       = 2
    database_port            = 80
    github_deploy_subject    = "pull_request"
    api_reserved_concurrency = -1
  }

  expect_failures = [
    var.existing_database_admin_secret_name,
    var.login_rotation_days,
    var.deployment_strategy,
    var.log_retention_days,
    var.database_port,
    var.github_deploy_subject,
    var.api_reserved_concurrency,
  ]
}

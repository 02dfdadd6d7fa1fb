# PostgreSQL: the instance created here, or an existing one (existing_host). The three login
# users' secrets ({"username", "password"}, the shape RDS Proxy reads) are stored in Secrets
# Manager and read by the functions through SSM's /aws/reference/secretsmanager/<name> path; the
# bootstrapper sets them on the roles and rotates them (the rotation is wired in
# modules/functions, beside the bootstrapper).
#
# The instance's identifier is fixed (<name>-postgres) so that the log groups of its exported logs
# exist, with their retention, before RDS writes to them.

locals {
  create     = var.existing_host == ""
  proxy      = local.create && var.enable_proxy
  identifier = "${var.name}-postgres"
}

resource "aws_security_group" "database" {
  count = local.create ? 1 : 0

  name_prefix = "${var.name}-database-"
  description = "TMS PostgreSQL - only from the functions"
  vpc_id      = var.vpc_id

  lifecycle {
    create_before_destroy = true
  }
}

resource "aws_vpc_security_group_ingress_rule" "database_from_functions" {
  count = local.create ? 1 : 0

  security_group_id            = aws_security_group.database[0].id
  description                  = "PostgreSQL from the TMS functions"
  ip_protocol                  = "tcp"
  from_port                    = var.port
  to_port                      = var.port
  referenced_security_group_id = var.function_security_group_id
}

resource "aws_vpc_security_group_egress_rule" "functions_to_database" {
  security_group_id            = var.function_security_group_id
  description                  = "PostgreSQL"
  ip_protocol                  = "tcp"
  from_port                    = var.port
  to_port                      = var.port
  referenced_security_group_id = local.create ? aws_security_group.database[0].id : null
  cidr_ipv4                    = local.create ? null : var.existing_cidr
}

resource "aws_db_subnet_group" "this" {
  count = local.create ? 1 : 0

  name_prefix = "${var.name}-"
  description = "TMS private subnets"
  subnet_ids  = var.private_subnet_ids
}

resource "aws_db_parameter_group" "this" {
  count = local.create ? 1 : 0

  name_prefix = "${var.name}-"
  description = "TMS - TLS required, slow statements logged"
  family      = "postgres${var.engine_version}"

  parameter {
    name  = "rds.force_ssl"
    value = "1"
  }

  parameter {
    name  = "log_min_duration_statement"
    value = tostring(var.slow_statement_ms)
  }

  lifecycle {
    create_before_destroy = true
  }
}

resource "aws_cloudwatch_log_group" "exports" {
  # checkov:skip=CKV_AWS_158:CloudWatch Logs encrypts at rest by default; the database's logs hold statements' durations and errors, not payloads (log_statement stays off), so a customer-managed key adds cost without a new boundary.
  # checkov:skip=CKV_AWS_338:Operational logs are kept log_retention_days (30 by default).
  for_each = local.create ? toset(["postgresql", "upgrade"]) : toset([])

  name              = "/aws/rds/instance/${local.identifier}/${each.key}"
  retention_in_days = var.log_retention_days
}

# A final snapshot name of its own for each instance: a destroy after an earlier destroy and
# re-create does not collide with the snapshot that one left.
resource "random_id" "final_snapshot" {
  count = local.create ? 1 : 0

  byte_length = 4
  keepers = {
    identifier = local.identifier
  }
}

resource "aws_db_instance" "this" {
  # checkov:skip=CKV_AWS_161:The functions authenticate with passwords from Secrets Manager; IAM auth tokens expire every 15 minutes, which the long-lived per-sandbox pool does not refresh.
  # checkov:skip=CKV_AWS_118:Enhanced monitoring needs an extra role and costs per instance; CloudWatch RDS metrics, Performance Insights and the stats job's gauges cover operations.
  # checkov:skip=CKV_AWS_157:Multi-AZ is the database_multi_az variable (false by default to keep a small deployment cheap); production sets it to true.
  # checkov:skip=CKV_AWS_354:Performance Insights data is encrypted with the AWS-managed aws/rds key; a customer-managed key adds key-policy wiring without narrowing who reads it.
  # checkov:skip=CKV2_AWS_30:Statement logging (log_statement) would write task payloads into the database logs; slow statements (log_min_duration_statement) and errors are logged.
  count = local.create ? 1 : 0

  identifier                      = local.identifier
  engine                          = "postgres"
  engine_version                  = var.engine_version
  instance_class                  = var.instance_class
  allocated_storage               = var.allocated_storage
  max_allocated_storage           = var.max_allocated_storage
  storage_type                    = "gp3"
  storage_encrypted               = true
  username                        = var.admin_user
  manage_master_user_password     = true
  db_name                         = var.database_name
  port                            = var.port
  db_subnet_group_name            = aws_db_subnet_group.this[0].name
  vpc_security_group_ids          = [aws_security_group.database[0].id]
  parameter_group_name            = aws_db_parameter_group.this[0].name
  publicly_accessible             = false
  multi_az                        = var.multi_az
  backup_retention_period         = 7
  deletion_protection             = true
  auto_minor_version_upgrade      = true
  copy_tags_to_snapshot           = true
  enabled_cloudwatch_logs_exports = ["postgresql", "upgrade"]
  # 7 days of Performance Insights is free of charge.
  performance_insights_enabled          = true
  performance_insights_retention_period = 7
  skip_final_snapshot                   = false
  final_snapshot_identifier             = "${local.identifier}-final-${random_id.final_snapshot[0].hex}"

  depends_on = [aws_cloudwatch_log_group.exports]
}

data "aws_secretsmanager_secret" "existing_admin" {
  count = local.create ? 0 : 1

  name = var.existing_admin_secret_name
}

resource "random_password" "login" {
  for_each = toset(["migrator", "app", "dev"])

  length  = 32
  special = false
}

resource "aws_secretsmanager_secret" "login" {
  # checkov:skip=CKV_AWS_149:Encrypted with the AWS-managed Secrets Manager key; a customer-managed key adds cost and key-policy wiring without narrowing access, which IAM already scopes to the one role per secret.
  # checkov:skip=CKV2_AWS_57:Rotated: aws_secretsmanager_secret_rotation.login in modules/functions (beside the bootstrapper, which rotates it), which this graph check does not follow across modules.
  for_each = random_password.login

  name_prefix = "${var.name}-${each.key}-password-"
  description = "${var.name} - password of the PostgreSQL user tms_${each.key}"
}

# The first value only: rotation writes the later ones, which an apply must not put back.
resource "aws_secretsmanager_secret_version" "login" {
  for_each = random_password.login

  secret_id     = aws_secretsmanager_secret.login[each.key].id
  secret_string = jsonencode({ username = "tms_${each.key}", password = each.value.result })

  lifecycle {
    ignore_changes = [secret_string]
  }
}

locals {
  admin_secret_arn = local.create ? aws_db_instance.this[0].master_user_secret[0].secret_arn : data.aws_secretsmanager_secret.existing_admin[0].arn
}

# RDS Proxy (enable_proxy, created instance only) for the API and the worker, whose connections
# come and go with their sandboxes. It authenticates tms_app against the app secret's current
# value (rotation included) and verifies TLS with Amazon's root CAs, which the CA layer holds
# besides the RDS CAs. The scheduler's job locks and the importer's import session are session
# state (advisory locks, a temporary table) that would pin a proxy connection for the session's
# life anyway: they connect to the instance directly, as the bootstrapper does (admin, DDL). See
# README, "Database connections".
resource "aws_security_group" "proxy" {
  # checkov:skip=CKV2_AWS_5:Attached to aws_db_proxy.this (vpc_security_group_ids) below, which this graph check does not count as an attachment.
  count = local.proxy ? 1 : 0

  name_prefix = "${var.name}-proxy-"
  description = "TMS RDS Proxy - from the functions, to the database"
  vpc_id      = var.vpc_id

  lifecycle {
    create_before_destroy = true
  }
}

resource "aws_vpc_security_group_ingress_rule" "proxy_from_functions" {
  count = local.proxy ? 1 : 0

  security_group_id            = aws_security_group.proxy[0].id
  description                  = "PostgreSQL from the TMS functions"
  ip_protocol                  = "tcp"
  from_port                    = var.port
  to_port                      = var.port
  referenced_security_group_id = var.function_security_group_id
}

resource "aws_vpc_security_group_egress_rule" "proxy_to_database" {
  count = local.proxy ? 1 : 0

  security_group_id            = aws_security_group.proxy[0].id
  description                  = "PostgreSQL to the database"
  ip_protocol                  = "tcp"
  from_port                    = var.port
  to_port                      = var.port
  referenced_security_group_id = aws_security_group.database[0].id
}

resource "aws_vpc_security_group_ingress_rule" "database_from_proxy" {
  count = local.proxy ? 1 : 0

  security_group_id            = aws_security_group.database[0].id
  description                  = "PostgreSQL from RDS Proxy"
  ip_protocol                  = "tcp"
  from_port                    = var.port
  to_port                      = var.port
  referenced_security_group_id = aws_security_group.proxy[0].id
}

resource "aws_vpc_security_group_egress_rule" "functions_to_proxy" {
  count = local.proxy ? 1 : 0

  security_group_id            = var.function_security_group_id
  description                  = "PostgreSQL through RDS Proxy"
  ip_protocol                  = "tcp"
  from_port                    = var.port
  to_port                      = var.port
  referenced_security_group_id = aws_security_group.proxy[0].id
}

data "aws_iam_policy_document" "proxy_assume" {
  statement {
    actions = ["sts:AssumeRole"]

    principals {
      type        = "Service"
      identifiers = ["rds.amazonaws.com"]
    }
  }
}

data "aws_iam_policy_document" "proxy" {
  statement {
    sid       = "ReadAppLogin"
    actions   = ["secretsmanager:GetSecretValue"]
    resources = [aws_secretsmanager_secret.login["app"].arn]
  }
}

resource "aws_iam_role" "proxy" {
  count = local.proxy ? 1 : 0

  name_prefix        = "${var.name}-proxy-"
  assume_role_policy = data.aws_iam_policy_document.proxy_assume.json
}

resource "aws_iam_role_policy" "proxy" {
  count = local.proxy ? 1 : 0

  name   = "secrets"
  role   = aws_iam_role.proxy[0].id
  policy = data.aws_iam_policy_document.proxy.json
}

resource "aws_cloudwatch_log_group" "proxy" {
  # checkov:skip=CKV_AWS_158:CloudWatch Logs encrypts at rest by default; the proxy's logs hold connection events, not payloads, so a customer-managed key adds cost without a new boundary.
  # checkov:skip=CKV_AWS_338:Operational logs are kept log_retention_days (30 by default).
  count = local.proxy ? 1 : 0

  name              = "/aws/rds/proxy/${var.name}-proxy"
  retention_in_days = var.log_retention_days
}

resource "aws_db_proxy" "this" {
  count = local.proxy ? 1 : 0

  name                   = "${var.name}-proxy"
  engine_family          = "POSTGRESQL"
  require_tls            = true
  idle_client_timeout    = 1800
  role_arn               = aws_iam_role.proxy[0].arn
  vpc_subnet_ids         = var.private_subnet_ids
  vpc_security_group_ids = [aws_security_group.proxy[0].id]

  auth {
    auth_scheme               = "SECRETS"
    secret_arn                = aws_secretsmanager_secret.login["app"].arn
    iam_auth                  = "DISABLED"
    client_password_auth_type = "POSTGRES_SCRAM_SHA_256"
  }

  depends_on = [aws_cloudwatch_log_group.proxy, aws_iam_role_policy.proxy]
}

# The proxy opens at most 60% of max_connections; the scheduler, the importer and the
# bootstrapper keep the rest (README, "Database connections").
resource "aws_db_proxy_default_target_group" "this" {
  count = local.proxy ? 1 : 0

  db_proxy_name = aws_db_proxy.this[0].name

  connection_pool_config {
    max_connections_percent      = 60
    max_idle_connections_percent = 30
    connection_borrow_timeout    = 10
  }
}

resource "aws_db_proxy_target" "this" {
  count = local.proxy ? 1 : 0

  db_proxy_name          = aws_db_proxy.this[0].name
  target_group_name      = aws_db_proxy_default_target_group.this[0].name
  db_instance_identifier = aws_db_instance.this[0].identifier
}

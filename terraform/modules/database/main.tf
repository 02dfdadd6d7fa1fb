# PostgreSQL: the instance created here, or an existing one (existing_host). The three login
# users' passwords are stored in Secrets Manager and read by the functions through SSM's
# /aws/reference/secretsmanager/<name> path; the bootstrapper sets them on the roles.

locals {
  create = var.existing_host == ""
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
  description = "TMS - TLS required"
  family      = "postgres${var.engine_version}"

  parameter {
    name  = "rds.force_ssl"
    value = "1"
  }

  lifecycle {
    create_before_destroy = true
  }
}

resource "aws_db_instance" "this" {
  # checkov:skip=CKV_AWS_161:The functions authenticate with passwords from Secrets Manager; IAM auth tokens expire every 15 minutes, which the long-lived per-sandbox pool does not refresh.
  # checkov:skip=CKV_AWS_118:Enhanced monitoring needs an extra role and costs per instance; CloudWatch RDS metrics and the stats job's gauges cover operations.
  # checkov:skip=CKV_AWS_157:Multi-AZ is the database_multi_az variable (false by default to keep a small deployment cheap); production sets it to true.
  # checkov:skip=CKV_AWS_353:Performance Insights is optional diagnostics left to the operator; the instance's logs are exported to CloudWatch.
  # checkov:skip=CKV_AWS_354:Performance Insights is not enabled (see CKV_AWS_353).
  # checkov:skip=CKV2_AWS_30:Statement logging (log_statement) would write task payloads into the database logs; errors and slow queries are logged by default.
  count = local.create ? 1 : 0

  identifier_prefix               = "${var.name}-"
  engine                          = "postgres"
  engine_version                  = var.engine_version
  instance_class                  = var.instance_class
  allocated_storage               = var.allocated_storage
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
  skip_final_snapshot             = false
  final_snapshot_identifier       = "${var.name}-final"
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
  # checkov:skip=CKV2_AWS_57:The bootstrapper sets this password on the role at each apply; Secrets Manager rotation would change the secret without changing the role.
  for_each = random_password.login

  name_prefix = "${var.name}-${each.key}-password-"
  description = "${var.name} - password of the PostgreSQL user tms_${each.key}"
}

resource "aws_secretsmanager_secret_version" "login" {
  for_each = random_password.login

  secret_id     = aws_secretsmanager_secret.login[each.key].id
  secret_string = each.value.result
}

locals {
  admin_secret_arn = local.create ? aws_db_instance.this[0].master_user_secret[0].secret_arn : data.aws_secretsmanager_secret.existing_admin[0].arn
}

# Gradual deployments, the Terraform counterpart of SAM's AutoPublishAlias + DeploymentPreference:
# each app function's alias `live` is what its callers invoke; an apply publishes a new version
# and CodeDeploy shifts the alias to it (deployment_strategy; the scheduler all at once), rolling
# back when one of the function's alarms fires. Terraform creates the alias on the first version
# and leaves its version to CodeDeploy afterwards (ignore_changes); `shift-alias.sh` starts the
# CodeDeployment of each new version and waits for it, so a rolled-back deployment fails the apply.
# The machine running `terraform apply` needs the AWS CLI (GitHub's runners have it).

resource "aws_lambda_alias" "live" {
  for_each = local.app_functions

  name             = "live"
  function_name    = aws_lambda_function.this[each.key].function_name
  function_version = aws_lambda_function.this[each.key].version

  lifecycle {
    ignore_changes = [function_version, routing_config]
  }
}

resource "aws_codedeploy_app" "this" {
  name             = var.name
  compute_platform = "Lambda"
}

data "aws_iam_policy_document" "codedeploy_assume" {
  statement {
    actions = ["sts:AssumeRole"]

    principals {
      type        = "Service"
      identifiers = ["codedeploy.amazonaws.com"]
    }
  }
}

# The role SAM creates for DeploymentPreference (CodeDeployServiceRole), with the same AWS
# managed policy.
resource "aws_iam_role" "codedeploy" {
  name_prefix        = "${var.name}-codedeploy-"
  assume_role_policy = data.aws_iam_policy_document.codedeploy_assume.json
}

resource "aws_iam_role_policy_attachment" "codedeploy" {
  role       = aws_iam_role.codedeploy.name
  policy_arn = "arn:${data.aws_partition.current.partition}:iam::aws:policy/service-role/AWSCodeDeployRoleForLambda"
}

resource "aws_codedeploy_deployment_group" "this" {
  for_each = local.app_functions

  app_name               = aws_codedeploy_app.this.name
  deployment_group_name  = "${var.name}-${each.key}"
  service_role_arn       = aws_iam_role.codedeploy.arn
  deployment_config_name = "CodeDeployDefault.Lambda${each.value.deployment}"

  deployment_style {
    deployment_type   = "BLUE_GREEN"
    deployment_option = "WITH_TRAFFIC_CONTROL"
  }

  auto_rollback_configuration {
    enabled = true
    events  = ["DEPLOYMENT_FAILURE", "DEPLOYMENT_STOP_ON_ALARM", "DEPLOYMENT_STOP_ON_REQUEST"]
  }

  alarm_configuration {
    enabled = true
    alarms  = var.rollback_alarms[each.key]
  }

  depends_on = [aws_iam_role_policy_attachment.codedeploy]
}

resource "terraform_data" "shift" {
  for_each = local.app_functions

  triggers_replace = aws_lambda_function.this[each.key].version

  provisioner "local-exec" {
    command = "${path.module}/shift-alias.sh"
    environment = {
      APPLICATION = aws_codedeploy_app.this.name
      GROUP       = aws_codedeploy_deployment_group.this[each.key].deployment_group_name
      FUNCTION    = aws_lambda_function.this[each.key].function_name
      ALIAS       = aws_lambda_alias.live[each.key].name
      VERSION     = aws_lambda_function.this[each.key].version
      REGION      = data.aws_region.current.name
    }
  }
}

# CI/CD (github_repository): GitHub Actions deploy this stack by assuming the deploy role through
# the account's GitHub OIDC provider (created here unless github_oidc_provider_arn names it). Only
# workflows of that repository running for github_deploy_subject (a protected environment or
# branch) may assume it. The role applies the stack: PowerUserAccess (no IAM), plus IAM on the
# roles and policies whose names start with the stack's name (every role and policy of this
# stack is named with that prefix) and on the GitHub OIDC provider.

data "aws_partition" "current" {}
data "aws_caller_identity" "current" {}

locals {
  enabled       = var.github_repository != ""
  create_oidc   = local.enabled && var.github_oidc_provider_arn == ""
  provider_arn  = local.create_oidc ? aws_iam_openid_connect_provider.github[0].arn : var.github_oidc_provider_arn
  iam_arn_start = "arn:${data.aws_partition.current.partition}:iam::${data.aws_caller_identity.current.account_id}"
}

resource "aws_iam_openid_connect_provider" "github" {
  count = local.create_oidc ? 1 : 0

  url             = "https://token.actions.githubusercontent.com"
  client_id_list  = ["sts.amazonaws.com"]
  thumbprint_list = ["6938fd4d98bab03faadb97b34396831e3780aea1", "1c58a3a8518e8759bf075b76b750d4f2df264fcd"]
}

data "aws_iam_policy_document" "assume" {
  statement {
    sid     = "GitHubActions"
    actions = ["sts:AssumeRoleWithWebIdentity"]

    principals {
      type        = "Federated"
      identifiers = [local.provider_arn]
    }

    condition {
      test     = "StringEquals"
      variable = "token.actions.githubusercontent.com:aud"
      values   = ["sts.amazonaws.com"]
    }

    condition {
      test     = "StringEquals"
      variable = "token.actions.githubusercontent.com:sub"
      values   = ["repo:${var.github_repository}:${var.github_deploy_subject}"]
    }
  }
}

data "aws_iam_policy_document" "stack_iam" {
  statement {
    sid = "ManageStackRoles"
    actions = [
      "iam:AttachRolePolicy",
      "iam:CreateRole",
      "iam:DeleteRole",
      "iam:DeleteRolePolicy",
      "iam:DetachRolePolicy",
      "iam:GetRole",
      "iam:GetRolePolicy",
      "iam:ListAttachedRolePolicies",
      "iam:ListRolePolicies",
      "iam:PassRole",
      "iam:PutRolePolicy",
      "iam:TagRole",
      "iam:UntagRole",
      "iam:UpdateAssumeRolePolicy",
      "iam:UpdateRole",
      "iam:UpdateRoleDescription",
    ]
    resources = ["${local.iam_arn_start}:role/${var.name}-*"]
  }
  statement {
    sid = "ManageStackPolicies"
    actions = [
      "iam:CreatePolicy",
      "iam:CreatePolicyVersion",
      "iam:DeletePolicy",
      "iam:DeletePolicyVersion",
      "iam:GetPolicy",
      "iam:GetPolicyVersion",
      "iam:ListPolicyVersions",
      "iam:TagPolicy",
    ]
    resources = ["${local.iam_arn_start}:policy/${var.name}-*"]
  }
  statement {
    sid = "ManageGitHubOidcProvider"
    actions = [
      "iam:AddClientIDToOpenIDConnectProvider",
      "iam:CreateOpenIDConnectProvider",
      "iam:DeleteOpenIDConnectProvider",
      "iam:GetOpenIDConnectProvider",
      "iam:TagOpenIDConnectProvider",
      "iam:UpdateOpenIDConnectProviderThumbprint",
    ]
    resources = ["${local.iam_arn_start}:oidc-provider/token.actions.githubusercontent.com"]
  }
  statement {
    sid       = "CreateServiceLinkedRoles"
    actions   = ["iam:CreateServiceLinkedRole"]
    resources = ["${local.iam_arn_start}:role/aws-service-role/*"]
  }
}

resource "aws_iam_role" "deploy" {
  count = local.enabled ? 1 : 0

  name_prefix          = "${var.name}-github-deploy-"
  description          = "Deploys ${var.name} from GitHub Actions of ${var.github_repository} (${var.github_deploy_subject})"
  max_session_duration = 7200
  assume_role_policy   = data.aws_iam_policy_document.assume.json
}

resource "aws_iam_role_policy_attachment" "power_user" {
  count = local.enabled ? 1 : 0

  role       = aws_iam_role.deploy[0].name
  policy_arn = "arn:${data.aws_partition.current.partition}:iam::aws:policy/PowerUserAccess"
}

resource "aws_iam_role_policy" "stack_iam" {
  count = local.enabled ? 1 : 0

  name   = "stack-iam"
  role   = aws_iam_role.deploy[0].id
  policy = data.aws_iam_policy_document.stack_iam.json
}

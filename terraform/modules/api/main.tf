# HTTP API (payload format 2.0) in front of tms-api. The JWT authorizer is optional (jwt_issuer);
# it guards the /v1 routes only: /health, /openapi.json, /docs and the console (which signs its
# users in itself) never need it. Without it the function checks API tokens itself.

data "aws_region" "current" {}

locals {
  use_jwt = var.jwt_issuer != ""

  # route key => whether the route is a /v1 route (behind the authorizer when enabled)
  routes = {
    "POST /v1/tasks"                            = true
    "POST /v1/tasks/batch"                      = true
    "GET /v1/tasks"                             = true
    "GET /v1/tasks/{id}"                        = true
    "GET /v1/tasks/{id}/events"                 = true
    "POST /v1/tasks/{id}/cancel"                = true
    "POST /v1/tasks/{id}/redrive"               = true
    "POST /v1/imports"                          = true
    "GET /v1/imports"                           = true
    "GET /v1/imports/{id}"                      = true
    "POST /v1/tasks/cancel"                     = true
    "POST /v1/tasks/redrive"                    = true
    "GET /v1/stats"                             = true
    "GET /v1/limits"                            = true
    "PUT /v1/limits"                            = true
    "POST /v1/triggers"                         = true
    "GET /v1/triggers"                          = true
    "GET /v1/triggers/{id}"                     = true
    "DELETE /v1/triggers/{id}"                  = true
    "POST /v1/schedules"                        = true
    "GET /v1/schedules"                         = true
    "GET /v1/schedules/{id}"                    = true
    "PATCH /v1/schedules/{id}"                  = true
    "DELETE /v1/schedules/{id}"                 = true
    "POST /v1/subscriptions"                    = true
    "GET /v1/subscriptions"                     = true
    "GET /v1/subscriptions/{id}"                = true
    "PATCH /v1/subscriptions/{id}"              = true
    "DELETE /v1/subscriptions/{id}"             = true
    "POST /v1/subscriptions/{id}/rotate-secret" = true
    "POST /v1/subscriptions/{id}/test"          = true
    "GET /v1/webhook-signing"                   = true
    "PUT /v1/webhook-signing"                   = true
    "DELETE /v1/webhook-signing"                = true
    "POST /v1/webhook-signing/rotate"           = true
    "GET /health"                               = false
    "GET /openapi.json"                         = false
    "GET /docs"                                 = false
    "GET /docs/assets/{proxy+}"                 = false
    # The console signs its users in itself and keeps a session cookie.
    "ANY /console"          = false
    "ANY /console/{proxy+}" = false
  }
}

resource "aws_cloudwatch_log_group" "access" {
  # checkov:skip=CKV_AWS_158:CloudWatch Logs encrypts at rest by default; access logs hold no secrets, so a customer-managed key adds cost without a new boundary.
  # checkov:skip=CKV_AWS_338:Operational logs are kept log_retention_days (30 by default).
  name              = "/aws/apigateway/${var.name}-http-api"
  retention_in_days = var.log_retention_days
}

resource "aws_apigatewayv2_api" "this" {
  name          = "${var.name}-api"
  protocol_type = "HTTP"

  cors_configuration {
    allow_origins  = var.cors_allow_origins
    allow_methods  = ["GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]
    allow_headers  = ["authorization", "content-type", "idempotency-key", "x-correlation-id"]
    expose_headers = ["x-correlation-id", "idempotent-replayed", "location"]
    max_age        = 600
  }
}

resource "aws_apigatewayv2_stage" "default" {
  api_id      = aws_apigatewayv2_api.this.id
  name        = "$default"
  auto_deploy = true

  default_route_settings {
    throttling_rate_limit    = var.throttling_rate_limit
    throttling_burst_limit   = var.throttling_burst_limit
    detailed_metrics_enabled = true
  }

  access_log_settings {
    destination_arn = aws_cloudwatch_log_group.access.arn
    format = jsonencode({
      requestId          = "$context.requestId"
      ip                 = "$context.identity.sourceIp"
      requestTime        = "$context.requestTime"
      method             = "$context.httpMethod"
      routeKey           = "$context.routeKey"
      status             = "$context.status"
      protocol           = "$context.protocol"
      responseLength     = "$context.responseLength"
      latency            = "$context.responseLatency"
      integrationLatency = "$context.integrationLatency"
      integrationError   = "$context.integrationErrorMessage"
      authorizerError    = "$context.authorizer.error"
    })
  }
}

# The alias: CodeDeploy shifts which version answers.
resource "aws_apigatewayv2_integration" "function" {
  api_id                 = aws_apigatewayv2_api.this.id
  integration_type       = "AWS_PROXY"
  integration_uri        = var.function_alias_arn
  payload_format_version = "2.0"
  timeout_milliseconds   = 30000
}

resource "aws_apigatewayv2_authorizer" "jwt" {
  count = local.use_jwt ? 1 : 0

  api_id           = aws_apigatewayv2_api.this.id
  name             = "jwt"
  authorizer_type  = "JWT"
  identity_sources = ["$request.header.Authorization"]

  jwt_configuration {
    issuer   = var.jwt_issuer
    audience = var.jwt_audience
  }
}

resource "aws_apigatewayv2_route" "this" {
  # checkov:skip=CKV_AWS_309:/v1 routes use the JWT authorizer when jwt_issuer is set, else the function authenticates the bearer API token itself (SPEC 4); /health, /openapi.json and /docs are public by contract.
  for_each = local.routes

  api_id             = aws_apigatewayv2_api.this.id
  route_key          = each.key
  target             = "integrations/${aws_apigatewayv2_integration.function.id}"
  authorization_type = each.value && local.use_jwt ? "JWT" : "NONE"
  authorizer_id      = each.value && local.use_jwt ? one(aws_apigatewayv2_authorizer.jwt[*].id) : null
}

resource "aws_lambda_permission" "api" {
  statement_id  = "http-api"
  action        = "lambda:InvokeFunction"
  function_name = var.function_name
  qualifier     = var.function_alias
  principal     = "apigateway.amazonaws.com"
  source_arn    = "${aws_apigatewayv2_api.this.execution_arn}/*"
}

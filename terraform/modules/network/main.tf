# Functions run in private subnets. AWS APIs are reached through a NAT gateway, which the worker
# needs anyway for partners' webhooks (public HTTPS); one NAT costs less than four interface
# endpoints (SQS, SSM, Secrets Manager, X-Ray) in two AZs. nat_gateway_per_az adds a second one in
# the second zone, with that zone's own route table, so each zone keeps its way out when the
# other fails. S3 traffic takes the free gateway endpoint, whose policy stays open: the
# bootstrapper's CloudFormation counterpart answers through a presigned S3 URL of a bucket that
# is not ours (kept equal to template.yaml).

locals {
  # One NAT gateway and private route table per zone, or one for both.
  nat_count = var.nat_gateway_per_az ? 2 : 1
}

data "aws_availability_zones" "available" {
  # checkov:skip=CKV_AWS_394:Only the first two zones (names[0], names[1]) are used, as the SAM template's !GetAZs does; a region-agnostic module cannot allowlist zone names.
  state = "available"
}

data "aws_region" "current" {}

resource "aws_vpc" "this" {
  # checkov:skip=CKV2_AWS_11:Flow logs cost per GB and add nothing the function logs and X-Ray traces do not; enable when a compliance regime needs them.
  cidr_block           = var.vpc_cidr
  enable_dns_support   = true
  enable_dns_hostnames = true

  tags = {
    Name = var.name
  }
}

# No rules: nothing may use the default security group.
resource "aws_default_security_group" "this" {
  vpc_id = aws_vpc.this.id
}

resource "aws_subnet" "public" {
  count = 2

  vpc_id            = aws_vpc.this.id
  availability_zone = data.aws_availability_zones.available.names[count.index]
  cidr_block        = cidrsubnet(var.vpc_cidr, 8, count.index)

  tags = {
    Name = "${var.name}-public-${count.index}"
  }
}

resource "aws_subnet" "private" {
  count = 2

  vpc_id            = aws_vpc.this.id
  availability_zone = data.aws_availability_zones.available.names[count.index]
  cidr_block        = cidrsubnet(var.vpc_cidr, 8, count.index + 2)

  tags = {
    Name = "${var.name}-private-${count.index}"
  }
}

resource "aws_internet_gateway" "this" {
  vpc_id = aws_vpc.this.id
}

resource "aws_route_table" "public" {
  vpc_id = aws_vpc.this.id
}

resource "aws_route" "public_default" {
  route_table_id         = aws_route_table.public.id
  destination_cidr_block = "0.0.0.0/0"
  gateway_id             = aws_internet_gateway.this.id
}

resource "aws_route_table_association" "public" {
  count = 2

  subnet_id      = aws_subnet.public[count.index].id
  route_table_id = aws_route_table.public.id
}

resource "aws_eip" "nat" {
  count = local.nat_count

  domain     = "vpc"
  depends_on = [aws_internet_gateway.this]
}

resource "aws_nat_gateway" "this" {
  count = local.nat_count

  allocation_id = aws_eip.nat[count.index].id
  subnet_id     = aws_subnet.public[count.index].id
  depends_on    = [aws_internet_gateway.this]
}

resource "aws_route_table" "private" {
  count = local.nat_count

  vpc_id = aws_vpc.this.id
}

resource "aws_route" "private_default" {
  count = local.nat_count

  route_table_id         = aws_route_table.private[count.index].id
  destination_cidr_block = "0.0.0.0/0"
  nat_gateway_id         = aws_nat_gateway.this[count.index].id
}

# Each private subnet to its zone's route table (both to the one table without a NAT per zone).
resource "aws_route_table_association" "private" {
  count = 2

  subnet_id      = aws_subnet.private[count.index].id
  route_table_id = aws_route_table.private[min(count.index, local.nat_count - 1)].id
}

resource "aws_vpc_endpoint" "s3" {
  vpc_id            = aws_vpc.this.id
  vpc_endpoint_type = "Gateway"
  service_name      = "com.amazonaws.${data.aws_region.current.name}.s3"
  route_table_ids   = aws_route_table.private[*].id
}

resource "aws_security_group" "functions" {
  # checkov:skip=CKV2_AWS_5:Attached to the five functions' vpc_config in modules/functions through the root module, which this graph check does not follow.
  name_prefix = "${var.name}-functions-"
  description = "TMS functions - HTTPS out (AWS APIs, webhooks) and PostgreSQL"
  vpc_id      = aws_vpc.this.id

  lifecycle {
    create_before_destroy = true
  }
}

resource "aws_vpc_security_group_egress_rule" "functions_https" {
  security_group_id = aws_security_group.functions.id
  description       = "HTTPS to AWS APIs and webhook targets"
  ip_protocol       = "tcp"
  from_port         = 443
  to_port           = 443
  cidr_ipv4         = "0.0.0.0/0"
}

# The single NAT gateway and route table of earlier versions are the first of each now.
moved {
  from = aws_eip.nat
  to   = aws_eip.nat[0]
}

moved {
  from = aws_nat_gateway.this
  to   = aws_nat_gateway.this[0]
}

moved {
  from = aws_route_table.private
  to   = aws_route_table.private[0]
}

moved {
  from = aws_route.private_default
  to   = aws_route.private_default[0]
}

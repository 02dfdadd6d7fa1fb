variable "name" {
  type = string
}

variable "vpc_cidr" {
  type = string
}

# Infrastructure: packaging, deployment and the infrastructure lint. Included by the Makefile.
#
# The lint tools and the deployment tools live in their own Python environments
# (.local/venv-lint, .local/venv-build): checkov and the SAM CLI pin boto3, click and pydantic
# versions that conflict with the emulator's (.local/venv). scripts/venv.sh installs into the
# environment that TMS_VENV names.

FUNCTIONS := api worker importer scheduler bootstrap
LINT_VENV := $(CURDIR)/.local/venv-lint
BUILD_VENV := $(CURDIR)/.local/venv-build
# The stack (SAM) or name prefix (Terraform) whose functions deploy-fn updates.
STACK ?= $(or $(shell sed -n 's/^stack_name *= *"\(.*\)"/\1/p' samconfig.toml 2>/dev/null | head -n1),tms)
# CloudFormation re-runs the bootstrapper custom resource only when one of its properties
# changes: every `make deploy` passes a new DeployId.
DEPLOY_ID := $(shell date -u +%Y%m%dT%H%M%SZ)

empty :=
space := $(empty) $(empty)

# $(call venv,DIR,NAME): install tools/python/NAME.txt into the environment DIR.
define venv
@grep -q 'TMS_VENV' scripts/lib.sh || { echo "scripts/lib.sh must honour TMS_VENV (VENV=\"\$${TMS_VENV:-\$$LOCAL/venv}\")" >&2; exit 1; }
@TMS_VENV=$(1) scripts/venv.sh $(2)
endef

.PHONY: build deploy deploy-fn lint-infra tf-test

# cargo lambda and sam find cargo-lambda and zig on PATH.
build deploy deploy-fn: export PATH := $(BUILD_VENV)/bin:$(PATH)

build: ## build the five functions' arm64 zips (target/lambda/<binary>/bootstrap.zip) and the RDS CA layer
	$(call venv,$(BUILD_VENV),build)
	@scripts/rds-ca-bundle.sh
	cargo lambda build --release --arm64 --output-format zip $(addprefix --package tms-,$(FUNCTIONS))

deploy: ## deploy the stack with SAM (guided on the first run or with GUIDED=1); the database bootstrap runs as part of it
	$(call venv,$(BUILD_VENV),build)
	@scripts/rds-ca-bundle.sh
	sam build --beta-features
	@# Later runs reuse samconfig.toml; parameters not overridden keep their deployed values.
	@if [ -f samconfig.toml ] && [ -z "$(GUIDED)" ]; then \
	  echo "sam deploy --parameter-overrides DeployId=$(DEPLOY_ID)"; \
	  sam deploy --parameter-overrides DeployId=$(DEPLOY_ID); \
	else \
	  echo "sam deploy --guided --parameter-overrides DeployId=$(DEPLOY_ID)"; \
	  sam deploy --guided --parameter-overrides DeployId=$(DEPLOY_ID); \
	fi

# `cargo lambda deploy` resets a function's layers unless they are given, so the RDS CA layer's
# ARN is read from the stack's outputs (or given as LAYER=..., e.g. from `terraform output`).
# The app functions are invoked through their alias `live`: the new code is published as a
# version and the alias moved to it at once (no gradual deployment: for iterations, not releases).
ALIAS_ARG = $(if $(filter bootstrap,$(FN)),,--alias live)
deploy-fn: ## update one function's code in place: make deploy-fn FN=api|worker|importer|scheduler|bootstrap [STACK=tms] [LAYER=arn]
	@case " $(FUNCTIONS) " in *" $(FN) "*) ;; *) echo "usage: make deploy-fn FN=<$(subst $(space),|,$(FUNCTIONS))> [STACK=$(STACK)] [LAYER=<layer version arn>]" >&2; exit 2;; esac
	$(call venv,$(BUILD_VENV),build)
	cargo lambda build --release --arm64 --package tms-$(FN)
	@layer="$(LAYER)"; \
	if [ -z "$$layer" ]; then \
	  layer="$$(sam list stack-outputs --stack-name "$(STACK)" --output json \
	    | python3 -c 'import json, sys; print(next(o["OutputValue"] for o in json.load(sys.stdin) if o["OutputKey"] == "RdsCaLayerArn"))')" \
	    || { echo "cannot read RdsCaLayerArn from stack $(STACK): pass STACK=... or LAYER=..." >&2; exit 1; }; \
	fi; \
	echo "cargo lambda deploy --binary-name tms-$(FN) --layer $$layer --tracing active $(ALIAS_ARG) $(STACK)-$(FN)"; \
	cargo lambda deploy --binary-name tms-$(FN) --layer "$$layer" --tracing active $(ALIAS_ARG) "$(STACK)-$(FN)"

lint-infra: ## lint template.yaml, terraform/ and .github/workflows (cfn-lint, checkov, terraform fmt, own checks and parity, their self-test, actionlint)
	$(call venv,$(LINT_VENV),lint)
	$(LINT_VENV)/bin/cfn-lint template.yaml
	$(LINT_VENV)/bin/checkov --skip-download --quiet --compact --framework cloudformation -f template.yaml
	$(LINT_VENV)/bin/checkov --skip-download --quiet --compact --framework terraform -d terraform
	@command -v terraform >/dev/null 2>&1 || { echo "terraform not found: install Terraform >= 1.6 for 'terraform fmt'" >&2; exit 1; }
	TF_CLI_CONFIG_FILE= terraform fmt -check -recursive -diff terraform
	$(LINT_VENV)/bin/python tools/infra/check.py
	$(LINT_VENV)/bin/python tools/infra/selftest.py
	scripts/actionlint.sh

# `terraform init` downloads the providers the lock file pins: it needs the Terraform registry,
# which `make lint-infra` does not (CI runs this target; see .github/workflows/ci.yml).
tf-test: ## plan terraform/ in its main configurations against a mocked AWS provider (terraform init, then terraform test)
	@command -v terraform >/dev/null 2>&1 || { echo "terraform not found: install Terraform >= 1.9" >&2; exit 1; }
	cd terraform && TF_CLI_CONFIG_FILE= terraform init -backend=false -input=false -lockfile=readonly
	cd terraform && TF_CLI_CONFIG_FILE= terraform test

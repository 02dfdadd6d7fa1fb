"""The operational part of the model (model.py calls it for each source): what production
depends on beyond sizes and wiring.

Added sections, the same shape for both sources:

    env:          {function: {variable: normalised value}}
    function_ops: {function: {alias, deployment, rollback_alarms: [alarm keys], reserved,
                              via_proxy}}
    invocations:  {(kind, name): through the alias `live` (bool)}   kind: mapping, api, schedule
    alarms:       (replaces model.py's) {(namespace, metric, dimension, target, statistic):
                   {period, evaluation_periods, datapoints, threshold, comparison,
                    treat_missing, actions, ok_actions}}
    roles:        {role: {sid: {effect, actions, resources, when?}}}, trust: {role: [conditions]}
                  (`when`: the condition a statement is granted under, e.g. "param.x != ''")
    log_groups:   {normalised name: retention}
    dashboard:    {widget title: ["namespace metric stat", ...]}
    rotations:    {secret: schedule}
    proxy:        {setting: value} (empty without a proxy)
    database:     {setting: value}
    network:      {setting: value}
    parameters:   {snake_case name: {allowed, pattern, min, max}}   (SAM parameters, TF variables)
    providers:    {module: {"used": [...], "versioned": [...]}}      (Terraform only)
    event_buses:  {bus name: {arn}}
    event_rules:  {rule name: {arn, bus, pattern, state, targets: {id: {arn, dlq, retry_attempts,
                                                                        max_age}}}}
                  (rules with an event pattern; the schedules are `schedules`)
    queue_policies: {queue key: {sid: {effect, principals, actions, resources, conditions}}}
    outputs:      {snake_case name: value}   (template Outputs, the root module's outputs)

Values are normalised to symbols both sources can produce: a template parameter or a root
variable is `param.<snake_case name>`; a queue, bucket, secret, log group, topic or alias is
`<kind>.<key>.<attribute>` (queue.work.arn, queue.work.url, bucket.data.name, secret.app.arn,
loggroup.api.arn, topic.alarms.arn, bus.events.arn, rule.work.arn); an event bus's or rule's name
is the name it is given (both stacks name them); a literal is itself; `{partition}`, `{region}`,
`{account}` and `{name}` (stack name, Terraform's var.name) stand for the pseudo parameters;
anything else is `<expr>` (compared only as "some expression").
"""

from __future__ import annotations

import ast
import json
import os
import re

OPAQUE = "<expr>"

# --------------------------------------------------------------------------------------------
# Shared
# --------------------------------------------------------------------------------------------


def snake(name: str) -> str:
    """DatabaseMultiAz -> database_multi_az, GitHubRepository -> github_repository."""
    name = name.replace("GitHub", "Github")
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()


def _as_list(value) -> list:
    if value is None:
        return []
    return value if isinstance(value, list) else [value]


def _one(value):
    if isinstance(value, list) and len(value) == 1:
        return value[0]
    return value


def _number(value):
    if isinstance(value, bool):
        return value
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return value
    return value


def _normalise_arn_text(text: str) -> str:
    # CloudFormation's LogGroup Arn ends with ":*"; Terraform's arn does not, and the grants add it.
    text = re.sub(r"^(loggroup\.\w+\.arn):\*$", r"\1", text)
    # Secrets Manager references by name: SAM grants the whole reference path (it cannot derive a
    # secret's name from its ARN); Terraform each exact path. The GetSecretValue grants decide.
    text = re.sub(r"parameter/aws/reference/secretsmanager/.*$", "parameter/aws/reference/secretsmanager/*", text)
    text = re.sub(r"/aws/rds/instance/[^/]+/", "/aws/rds/instance/{db}/", text)
    text = re.sub(r"/aws/rds/proxy/[^/]+$", "/aws/rds/proxy/{proxy}", text)
    # The template names the data bucket (account, region, a key of the stack id) so that the
    # import queue's policy can name it before the bucket exists; Terraform refers to the bucket.
    text = re.sub(r"^arn:\{partition\}:s3:::tms-data-\{account\}-\{region\}-<expr>$", "bucket.data.arn", text)
    return text


def cfn_statement_entries(statements) -> list[tuple[dict, str | None]]:
    """A policy document's statements, each with the name of the condition it is granted under:
    `!If [Cond, statement, !Ref AWS::NoValue]` is the statement under Cond (a statement in the
    false branch is under "not Cond")."""
    out = []
    for st in _as_list(statements):
        if isinstance(st, dict) and set(st) == {"Fn::If"} and len(st["Fn::If"]) == 3:
            name, when_true, when_false = st["Fn::If"]
            for branch, prefix in ((when_true, ""), (when_false, "not ")):
                if isinstance(branch, dict) and branch != {"Ref": "AWS::NoValue"}:
                    out.append((branch, f"{prefix}{name}"))
        else:
            out.append((st, None))
    return out


def tf_statement_entries(document: dict) -> list[tuple[dict, str | None]]:
    """A policy document's statements, each with the `for_each` of the dynamic block that
    grants it (None for a plain statement block)."""
    out = [(st, None) for st in document.get("statement", [])]
    for block in document.get("dynamic", []):
        for name, spec in block.items():
            if name == "statement":
                out += [(content, str(_one(spec.get("for_each")))) for content in spec.get("content", [])]
    return out


# --------------------------------------------------------------------------------------------
# SAM
# --------------------------------------------------------------------------------------------

# logical id -> (kind, key) for the symbols.
SAM_SYMBOLS = {
    "WorkQueue": ("queue", "work"),
    "WorkDeadLetterQueue": ("queue", "work_dlq"),
    "HighWorkQueue": ("queue", "high_work"),
    "HighWorkDeadLetterQueue": ("queue", "high_work_dlq"),
    "ImportQueue": ("queue", "import"),
    "ImportDeadLetterQueue": ("queue", "import_dlq"),
    "EventsDeadLetterQueue": ("queue", "events_dlq"),
    "EventBus": ("bus", "events"),
    "EventsRule": ("rule", "work"),
    "DataBucket": ("bucket", "data"),
    "MigratorPasswordSecret": ("secret", "migrator"),
    "AppPasswordSecret": ("secret", "app"),
    "DevPasswordSecret": ("secret", "dev"),
    "AlarmTopic": ("topic", "alarms"),
    "HttpApi": ("api", "http"),
    "Database": ("database", "instance"),
    "DatabaseProxy": ("database", "proxy"),
    "GitHubOidcProvider": ("oidc", "github"),
    "FunctionNetworkAndTracingPolicy": ("policy", "network_and_tracing"),
}
for _fn in ("Api", "Worker", "Importer", "Scheduler", "Bootstrap"):
    SAM_SYMBOLS[f"{_fn}LogGroup"] = ("loggroup", _fn.lower())
    SAM_SYMBOLS[f"{_fn}Function"] = ("function", _fn.lower())

# What !Ref returns, per kind.
_REF_ATTRIBUTE = {"queue": "url", "bucket": "name", "secret": "arn", "topic": "arn", "loggroup": "name",
                  "function": "name", "api": "id", "database": "id", "oidc": "arn", "policy": "arn"}
_PSEUDO = {"AWS::Partition": "{partition}", "AWS::Region": "{region}", "AWS::AccountId": "{account}",
           "AWS::StackName": "{name}", "AWS::URLSuffix": "{urlsuffix}"}

SAM_ROLES = {"ApiRole": "api", "WorkerRole": "worker", "ImporterRole": "importer", "SchedulerRole": "scheduler",
             "BootstrapRole": "bootstrap", "DatabaseProxyRole": "proxy", "GitHubDeployRole": "github_deploy",
             "FunctionNetworkAndTracingPolicy": "network_and_tracing"}


class Sam:
    def __init__(self, template: dict):
        self.template = template
        self.resources = template.get("Resources", {})
        self.parameters = template.get("Parameters", {})

    def symbol(self, logical: str, attribute: str | None) -> str:
        if logical in _PSEUDO:
            return _PSEUDO[logical]
        if logical in self.parameters:
            return f"param.{snake(logical)}"
        if logical.endswith(".Alias"):
            fn = SAM_SYMBOLS.get(logical[: -len(".Alias")])
            return f"alias.{fn[1]}.arn" if fn else OPAQUE
        resource = self.resources.get(logical) or {}
        if resource.get("Type") in ("AWS::Events::EventBus", "AWS::Events::Rule") and attribute in (None, "Name"):
            props = resource.get("Properties") or {}
            name = self.value(props["Name"]) if "Name" in props else OPAQUE
            if resource["Type"] == "AWS::Events::Rule" and attribute is None and "EventBusName" in props:
                # What CloudFormation's Ref returns for a rule on a custom bus (not its name).
                return f"{self.value(props['EventBusName'])}|{name}"
            return name
        kind_key = SAM_SYMBOLS.get(logical)
        if kind_key is None:
            return OPAQUE
        kind, key = kind_key
        if attribute is None:
            attribute = _REF_ATTRIBUTE.get(kind, "ref")
        attribute = {"Arn": "arn", "QueueName": "queuename", "Endpoint.Address": "host", "Endpoint": "host",
                     "AllocationId": "allocation"}.get(attribute, attribute)
        if logical == "Database" and attribute == "MasterUserSecret.SecretArn":
            return "secret.admin.arn"
        return f"{kind}.{key}.{attribute}"

    def condition(self, name: str) -> str:
        """A condition of the template, normalised: `param.x != ''` for
        `!Not [!Equals [!Ref X, ""]]`, `param.x == ''` for `!Equals [!Ref X, ""]`."""
        negated = name.startswith("not ")
        definition = (self.template.get("Conditions") or {}).get(name.removeprefix("not "))
        if isinstance(definition, dict) and set(definition) == {"Fn::Not"}:
            negated, definition = not negated, _one(definition["Fn::Not"])
        if isinstance(definition, dict) and set(definition) == {"Fn::Equals"}:
            left, right = (self.value(v) for v in definition["Fn::Equals"])
            return f"{left} {'!=' if negated else '=='} {right!r}"
        return OPAQUE

    def value(self, value, variables: dict | None = None):
        """A CloudFormation value, normalised."""
        variables = variables or {}
        if isinstance(value, (int, float, bool)):
            return _number(value)
        if isinstance(value, str):
            return value
        if isinstance(value, list):
            return [self.value(v, variables) for v in value]
        if not isinstance(value, dict) or len(value) != 1:
            return OPAQUE
        (fn, arg), = value.items()
        if fn == "Ref":
            if arg == "AWS::NoValue":
                return None
            return self.symbol(arg, None)
        if fn == "Fn::GetAtt":
            logical, attribute = (arg[0], ".".join(arg[1:])) if isinstance(arg, list) else arg.split(".", 1)
            return self.symbol(logical, attribute)
        if fn == "Fn::Sub":
            template, extra = (arg, {}) if isinstance(arg, str) else (arg[0], arg[1])
            local = dict(variables)
            for k, v in (extra or {}).items():
                local[k] = self.value(v, variables)

            def sub(match):
                name = match.group(1)
                if name in local:
                    v = local[name]
                    return v if isinstance(v, str) else OPAQUE
                logical, _, attribute = name.partition(".")
                return self.symbol(logical, attribute or None)

            return _normalise_arn_text(re.sub(r"\$\{([^}!]+)\}", sub, template))
        if fn == "Fn::If":
            # The admin secret: the created instance's, or the named existing one.
            text = json.dumps(arg)
            if "MasterUserSecret" in text:
                return "secret.admin.arn"
            return OPAQUE
        return OPAQUE


def _sam_alarm_key(sam: Sam, props: dict):
    if "Metrics" in props:
        metrics = _as_list(props.get("Metrics"))
        expression = next((m.get("Expression") for m in metrics if m.get("Expression")), "")
        stat = next((m["MetricStat"] for m in metrics if m.get("MetricStat")), {})
        metric = stat.get("Metric", {})
        dimension, target = _dimensions({d.get("Name", ""): sam.value(d.get("Value")) for d in _as_list(metric.get("Dimensions"))})
        return (metric.get("Namespace"), f"expr:{expression}", dimension, target, "math"), stat.get("Period")
    dimension, target = _dimensions({d.get("Name", ""): sam.value(d.get("Value")) for d in _as_list(props.get("Dimensions"))})
    statistic = props.get("ExtendedStatistic") or props.get("Statistic")
    return (props.get("Namespace"), props.get("MetricName"), dimension, target, statistic), props.get("Period")


def _dimensions(values: dict) -> tuple[str, str]:
    """An alarm's dimensions as (names, targets), each joined with "+" in the names' order
    (one dimension for most alarms; a rule on a custom bus has two, EventBusName and RuleName)."""
    names = sorted(values)
    return "+".join(names), "+".join(_target(values[n]) for n in names)


def _principals(principal) -> list[str]:
    """A resource policy's Principal: "*" for anyone, else "<type>:<identifier>"."""
    if principal == "*":
        return ["*"]
    out = []
    for kind, identifiers in (principal or {}).items():
        for identifier in _as_list(identifiers):
            out.append("*" if kind == "AWS" and identifier == "*" else f"{kind}:{identifier}")
    return sorted(out)


def _target(symbol) -> str:
    """A dimension value's symbol as the alarm target both sources name it with."""
    if not isinstance(symbol, str):
        return "?"
    match = re.fullmatch(r"(queue|function)\.(\w+)\.\w+", symbol)
    if match:
        return match.group(2)
    if symbol.startswith("api."):
        return "api"
    if symbol.startswith("database.instance"):
        return "database"
    return symbol


def sam_extend(template: dict, model: dict) -> None:
    sam = Sam(template)
    resources = sam.resources
    function_globals = (template.get("Globals") or {}).get("Function", {})
    model.update({"env": {}, "function_ops": {}, "invocations": {}, "alarms": {}, "roles": {}, "trust": {},
                  "log_groups": {}, "dashboard": {}, "rotations": {}, "proxy": {}, "database": {}, "network": {},
                  "parameters": {}, "providers": None, "event_buses": {}, "event_rules": {}, "queue_policies": {},
                  "outputs": {}})
    alarm_keys = {}
    for logical, resource in resources.items():
        if resource.get("Type") == "AWS::CloudWatch::Alarm":
            props = resource.get("Properties") or {}
            key, period = _sam_alarm_key(sam, props)
            alarm_keys[logical] = key
            model["alarms"][key] = {
                "period": period,
                "evaluation_periods": props.get("EvaluationPeriods"),
                "datapoints": props.get("DatapointsToAlarm", props.get("EvaluationPeriods")),
                "threshold": _number(sam.value(props.get("Threshold"))),
                "comparison": props.get("ComparisonOperator"),
                "treat_missing": props.get("TreatMissingData", "missing"),
                "actions": sorted(str(sam.value(a)) for a in _as_list(props.get("AlarmActions"))),
                "ok_actions": sorted(str(sam.value(a)) for a in _as_list(props.get("OKActions"))),
            }

    for logical, resource in resources.items():
        kind = resource.get("Type")
        props = resource.get("Properties") or {}
        if kind == "AWS::Serverless::Function":
            key = SAM_SYMBOLS.get(logical, ("function", logical))[1]
            merged = {**function_globals, **props}
            env = ((merged.get("Environment") or {}).get("Variables")) or {}
            model["env"][key] = {name: sam.value(v) for name, v in env.items()}
            preference = props.get("DeploymentPreference") or {}
            reserved = props.get("ReservedConcurrentExecutions")
            if isinstance(reserved, dict) and "Fn::If" in reserved:
                reserved = next((sam.value(v) for v in reserved["Fn::If"][1:] if sam.value(v) is not None), None)
            model["function_ops"][key] = {
                "alias": props.get("AutoPublishAlias"),
                "deployment": sam.value(preference.get("Type")) if preference else None,
                "rollback_alarms": sorted(str(alarm_keys.get((a or {}).get("Ref"), "?")) for a in _as_list(preference.get("Alarms"))),
                "reserved": sam.value(reserved) if reserved is not None else None,
                "via_proxy": "DatabaseProxy" in json.dumps(env.get("TMS_DATABASE_URL", "")),
            }
            for event_id, event in (props.get("Events") or {}).items():
                event_props = event.get("Properties") or {}
                through_alias = bool(props.get("AutoPublishAlias"))
                if event.get("Type") == "SQS":
                    queue = SAM_SYMBOLS.get((event_props.get("Queue") or {}).get("Fn::GetAtt", ["?"])[0], ("", "?"))[1]
                    model["invocations"][("mapping", f"{key}<-{queue}")] = through_alias
                elif event.get("Type") in ("Schedule", "ScheduleV2"):
                    job = json.loads(event_props.get("Input", "{}")).get("job", event_id)
                    model["invocations"][("schedule", job)] = through_alias
        elif kind == "AWS::ApiGatewayV2::Integration":
            model["invocations"][("api", "integration")] = str(sam.value(props.get("IntegrationUri"))).startswith("alias.")
        elif kind == "AWS::Lambda::Permission" and props.get("Principal") == "apigateway.amazonaws.com":
            model["invocations"][("api", "permission")] = str(sam.value(props.get("FunctionName"))).startswith("alias.")
        elif kind in ("AWS::IAM::Role", "AWS::IAM::ManagedPolicy") and logical in SAM_ROLES:
            role = SAM_ROLES[logical]
            documents = [p.get("PolicyDocument") for p in _as_list(props.get("Policies"))] if kind == "AWS::IAM::Role" else [props.get("PolicyDocument")]
            statements = model["roles"].setdefault(role, {})
            for document in documents:
                for st, when in cfn_statement_entries((document or {}).get("Statement")):
                    resources_ = []
                    for r in _as_list(st.get("Resource")):
                        v = sam.value(r)
                        resources_ += [str(x) for x in _as_list(v)]
                    statements[st.get("Sid", "?")] = {
                        "effect": st.get("Effect", "Allow"),
                        "actions": sorted(_as_list(st.get("Action"))),
                        "resources": sorted(set(resources_)),
                        **({"when": sam.condition(when)} if when else {}),
                    }
            if kind == "AWS::IAM::Role":
                conditions = []
                for st in _as_list((props.get("AssumeRolePolicyDocument") or {}).get("Statement")):
                    for test, pairs in (st.get("Condition") or {}).items():
                        for variable, values in pairs.items():
                            conditions.append(f"{test} {variable} {[sam.value(v) for v in _as_list(values)]}")
                if conditions:
                    model["trust"][role] = sorted(conditions)
        elif kind == "AWS::Logs::LogGroup":
            name = sam.value(props.get("LogGroupName"))
            model["log_groups"][str(name)] = sam.value(props.get("RetentionInDays"))
        elif kind == "AWS::CloudWatch::Dashboard":
            body = props.get("DashboardBody")
            text = body["Fn::Sub"][0] if isinstance(body, dict) and isinstance(body.get("Fn::Sub"), list) else (
                body["Fn::Sub"] if isinstance(body, dict) else body)
            try:
                widgets = json.loads(re.sub(r"\$\{[^}]+\}", "X", text)).get("widgets", [])
            except (TypeError, ValueError):
                widgets = []
                model["problems"].append(("parity", f"{logical}: the dashboard body is not JSON"))
            for widget in widgets:
                properties = widget.get("properties") or {}
                model["dashboard"][properties.get("title", "?")] = sorted(
                    f"{row[0]} {row[1]} {(row[-1] if isinstance(row[-1], dict) else {}).get('stat', '?')}"
                    for row in properties.get("metrics", [])
                )
        elif kind == "AWS::SecretsManager::RotationSchedule":
            secret = sam.value(props.get("SecretId"))
            rules = props.get("RotationRules") or {}
            model["rotations"][str(secret)] = sam.value(rules.get("AutomaticallyAfterDays", rules.get("ScheduleExpression")))
        elif kind == "AWS::RDS::DBProxy":
            auth = _as_list(props.get("Auth"))
            model["proxy"].update({
                "engine": props.get("EngineFamily"),
                "require_tls": props.get("RequireTLS"),
                "idle_client_timeout": _number(props.get("IdleClientTimeout")),
                "auth": sorted(f"{a.get('AuthScheme')} {sam.value(a.get('SecretArn'))} {a.get('IAMAuth')} {a.get('ClientPasswordAuthType')}" for a in auth),
            })
        elif kind == "AWS::RDS::DBProxyTargetGroup":
            pool = props.get("ConnectionPoolConfigurationInfo") or {}
            model["proxy"].update({
                "max_connections_percent": _number(pool.get("MaxConnectionsPercent")),
                "max_idle_connections_percent": _number(pool.get("MaxIdleConnectionsPercent")),
                "connection_borrow_timeout": _number(pool.get("ConnectionBorrowTimeout")),
            })
        elif kind == "AWS::RDS::DBInstance":
            model["database"].update({
                "performance_insights": props.get("EnablePerformanceInsights", False),
                "performance_insights_retention": _number(props.get("PerformanceInsightsRetentionPeriod")),
                "max_allocated_storage": sam.value(props.get("MaxAllocatedStorage")),
                "log_exports": sorted(_as_list(props.get("EnableCloudwatchLogsExports"))),
                "deletion_protection": props.get("DeletionProtection"),
            })
        elif kind == "AWS::RDS::DBParameterGroup":
            for name, value in (props.get("Parameters") or {}).items():
                model["database"][f"parameter {name}"] = sam.value(value)
        elif kind == "AWS::EC2::NatGateway":
            model["network"]["nat_gateways"] = model["network"].get("nat_gateways", 0) + 1
            if resource.get("Condition"):
                model["network"]["nat_per_az_condition"] = True
        elif kind == "AWS::Events::EventBus":
            model["event_buses"][str(sam.value(props.get("Name")))] = {"arn": sam.symbol(logical, "Arn")}
        elif kind == "AWS::Events::Rule" and "EventPattern" in props:
            pattern = props["EventPattern"]
            if isinstance(pattern, str):
                try:
                    pattern = json.loads(pattern)
                except ValueError:
                    model["problems"].append(("event-delivery", f"{logical}: the event pattern is not JSON"))
            targets = {}
            for target in _as_list(props.get("Targets")):
                retry = target.get("RetryPolicy") or {}
                dead_letter = (target.get("DeadLetterConfig") or {}).get("Arn")
                targets[target.get("Id", "?")] = {
                    "arn": sam.value(target.get("Arn")),
                    "dlq": sam.value(dead_letter) if dead_letter is not None else None,
                    "retry_attempts": _number(retry.get("MaximumRetryAttempts")),
                    "max_age": _number(retry.get("MaximumEventAgeInSeconds")),
                }
            model["event_rules"][str(sam.value(props.get("Name")))] = {
                "arn": sam.symbol(logical, "Arn"),
                "bus": sam.value(props.get("EventBusName", "default")),
                "pattern": pattern,
                "state": props.get("State", "ENABLED"),
                "targets": targets,
                "where": logical,
            }
        elif kind == "AWS::SQS::QueuePolicy":
            statements = {}
            for st in _as_list((props.get("PolicyDocument") or {}).get("Statement")):
                conditions = []
                for test, pairs in (st.get("Condition") or {}).items():
                    for variable, values in pairs.items():
                        conditions.append(f"{test} {variable} {[sam.value(v) for v in _as_list(values)]}")
                statements[st.get("Sid", "?")] = {
                    "effect": st.get("Effect", "Allow"),
                    "principals": _principals(st.get("Principal")),
                    "actions": sorted(_as_list(st.get("Action"))),
                    "resources": sorted(str(sam.value(r)) for r in _as_list(st.get("Resource"))),
                    "conditions": sorted(conditions),
                }
            for queue in _as_list(props.get("Queues")):
                match = re.fullmatch(r"queue\.(\w+)\.url", str(sam.value(queue)))
                model["queue_policies"][match.group(1) if match else f"?{logical}"] = statements

    for name, output in (template.get("Outputs") or {}).items():
        model["outputs"][snake(name)] = sam.value(output.get("Value"))

    for name, spec in sam.parameters.items():
        constraints = {}
        if "AllowedValues" in spec:
            constraints["allowed"] = sorted(str(v) for v in spec["AllowedValues"])
        if "AllowedPattern" in spec:
            constraints["pattern"] = spec["AllowedPattern"]
        if "MinValue" in spec:
            constraints["min"] = float(spec["MinValue"])
        if "MaxValue" in spec:
            constraints["max"] = float(spec["MaxValue"])
        model["parameters"][snake(name)] = constraints


# --------------------------------------------------------------------------------------------
# Terraform
# --------------------------------------------------------------------------------------------

_TF_RESOURCE_SYMBOLS = [
    (r"aws_sqs_queue\.(\w+)\.(arn|url|name)", lambda m: f"queue.{m.group(1)}.{ {'name': 'queuename'}.get(m.group(2), m.group(2))}"),
    (r"aws_s3_bucket\.data\.(arn)", lambda m: "bucket.data.arn"),
    (r"aws_s3_bucket\.data\.(id|bucket)", lambda m: "bucket.data.name"),
    (r'aws_cloudwatch_log_group\.function\["(\w+)"\]\.(arn|name)', lambda m: f"loggroup.{m.group(1)}.{m.group(2)}"),
    (r'aws_secretsmanager_secret(?:_version)?\.login\["(\w+)"\]\.arn', lambda m: f"secret.{m.group(1)}.arn"),
    (r"master_user_secret", lambda m: "secret.admin.arn"),
    (r"aws_sns_topic\.alarms\.arn", lambda m: "topic.alarms.arn"),
    (r"aws_apigatewayv2_api\.this\.id", lambda m: "api.http.id"),
    (r'aws_lambda_alias\.live\["(\w+)"\]\.arn', lambda m: f"alias.{m.group(1)}.arn"),
    (r"aws_cloudwatch_event_bus\.this\.arn", lambda m: "bus.events.arn"),
    (r"aws_cloudwatch_event_rule\.(\w+)\.arn", lambda m: f"rule.{m.group(1)}.arn"),
    (r"aws_db_instance\.this\[0\]\.address", lambda m: "database.instance.host"),
    (r"aws_db_instance\.this\[0\]\.identifier", lambda m: "database.instance.id"),
    (r"aws_db_proxy\.this\[0\]\.endpoint", lambda m: "database.proxy.host"),
    (r"data\.aws_partition\.current\.partition", lambda m: "{partition}"),
    (r"data\.aws_region\.current\.name", lambda m: "{region}"),
    (r"data\.aws_caller_identity\.current\.account_id", lambda m: "{account}"),
]


class Tf:
    def __init__(self, modules: dict, root_variables: set):
        self.modules = modules
        self.root_variables = root_variables

    def _call(self, module_dir: str):
        """(parent dir, call body) of the module call whose source is module_dir."""
        for parent_dir, parent in self.modules.items():
            for call in parent["module"].values():
                source = os.path.normpath(os.path.join(parent_dir, _one(call.get("source", ""))))
                if source == os.path.normpath(module_dir):
                    return parent_dir, call
        return None, None

    def reference(self, module_dir: str, ref: str, depth: int = 0):
        """A reference (var.x.y, local.x, module.m.o, a resource attribute) normalised."""
        if depth > 12:
            return OPAQUE
        var = re.fullmatch(r"var\.(\w+)((?:\.\w+|\[\"\w+\"\])*)", ref)
        if var:
            name, path = var.group(1), var.group(2)
            if module_dir == ".":
                return f"param.{name}" if not path else OPAQUE
            parent_dir, call = self._call(module_dir)
            if call is None or name not in call:
                return OPAQUE
            value = _one(call[name])
            return self.follow(parent_dir, value, path, depth + 1)
        local = re.fullmatch(r"local\.(\w+)((?:\.\w+|\[\"\w+\"\])*)", ref)
        if local:
            value = self.modules.get(module_dir, {}).get("locals", {}).get(local.group(1))
            if value is None:
                return OPAQUE
            return self.follow(module_dir, value, local.group(2), depth + 1)
        output = re.fullmatch(r"module\.(\w+)\.(\w+)((?:\.\w+|\[\"\w+\"\])*)", ref)
        if output:
            call = self.modules.get(module_dir, {}).get("module", {}).get(output.group(1))
            if not call:
                return OPAQUE
            child_dir = os.path.normpath(os.path.join(module_dir, _one(call.get("source", ""))))
            body = self.modules.get(child_dir, {}).get("output", {}).get(output.group(2))
            if not body:
                return OPAQUE
            return self.follow(child_dir, _one(body.get("value")), output.group(3), depth + 1)
        named = re.fullmatch(r"(aws_cloudwatch_event_bus|aws_cloudwatch_event_rule)\.(\w+)\.name", ref)
        if named:
            body = self.modules.get(module_dir, {}).get("resource", {}).get((named.group(1), named.group(2)))
            return self.value(module_dir, _one(body.get("name")), depth + 1) if body else OPAQUE
        for pattern, symbol in _TF_RESOURCE_SYMBOLS:
            match = re.fullmatch(pattern, ref) if "master_user_secret" not in pattern else re.search(pattern, ref)
            if match:
                return symbol(match)
        return OPAQUE

    def follow(self, module_dir: str, value, path: str, depth: int):
        """`value` (from module_dir) with `path` (.y or ["k"] steps) applied, normalised."""
        steps = re.findall(r"\.(\w+)|\[\"(\w+)\"\]", path or "")
        if steps and isinstance(value, str):
            picked = self._for_expression_item(module_dir, value, steps[0][1] or steps[0][0], depth)
            if picked is not None:
                return picked
        for attribute, key in steps:
            step = attribute or key
            if isinstance(value, dict) and step in value:
                value = _one(value[step])
            elif isinstance(value, str) and re.fullmatch(r"\$\{[^{}]+\}", value):
                return self.reference(module_dir, value[2:-1] + "".join(f".{a}" if a else f'["{k}"]' for a, k in steps[steps.index((attribute, key)):]), depth + 1)
            else:
                return OPAQUE
        return self.value(module_dir, value, depth)

    def _for_expression_item(self, module_dir: str, value: str, key: str, depth: int):
        """One item of a map built by a for expression, the two forms the modules use:
        `{for k, v in RESOURCE : k => v.ATTR}` and `{for k, v in {MAP} : k => "...${...}"}`
        (the latter's template applied to the map's item as the secret references are)."""
        over_resource = re.fullmatch(r"\$\{\{for (\w+) , (\w+) in ([\w.]+) : \1 => \2\.(\w+)\}\}", value)
        if over_resource:
            return self.reference(module_dir, f'{over_resource.group(3)}["{key}"].{over_resource.group(4)}', depth + 1)
        over_map = re.fullmatch(r"\$\{\{for (\w+) , (\w+) in \{(.*)\} : \1 => \"([^$\"]*)\$\{.*\}\"\}\}", value, re.S)
        if over_map:
            item = re.search(r"'%s': '([^']*)'" % re.escape(key), over_map.group(3))
            if item:
                return over_map.group(4) + str(self.value(module_dir, item.group(1), depth + 1))
        return None

    def value(self, module_dir: str, value, depth: int = 0):
        if isinstance(value, (int, float, bool)):
            return _number(value)
        if isinstance(value, list):
            return [self.value(module_dir, v, depth) for v in value]
        if not isinstance(value, str):
            return OPAQUE
        wrapped_template = re.fullmatch(r'\$\{"(.*)"\}', value, re.S)
        if wrapped_template:
            value = wrapped_template.group(1)
        for_list = re.fullmatch(r"\$\{\[for (\w+) in \[([^\]]*)\] : \"(.*)\"\]\}", value, re.S)
        if for_list:
            items = [x.strip().strip("'\"") for x in for_list.group(2).split(",") if x.strip()]
            return [self.value(module_dir, for_list.group(3).replace(f"[{for_list.group(1)}]", f'["{item}"]'), depth) for item in items]
        whole = re.fullmatch(r"\$\{(.*)\}", value, re.S)
        if whole and "${" not in whole.group(1):
            inner = whole.group(1).strip()
            wrapped = re.fullmatch(r"tostring\((.*)\)", inner)
            if wrapped:
                inner = wrapped.group(1)
            if re.search(r"master_user_secret", inner):
                return "secret.admin.arn"
            if re.fullmatch(r"[\w.\[\]\"]+", inner):
                return self.reference(module_dir, inner, depth)
            return OPAQUE

        def sub(match):
            inner = match.group(1)
            if re.fullmatch(r"[\w.\[\]\"]+", inner):
                v = self.reference(module_dir, inner, depth)
                if inner == "var.name" or v == "param.name":
                    return "{name}"
                return v if isinstance(v, str) else OPAQUE
            return OPAQUE

        return _normalise_arn_text(re.sub(r"\$\{([^{}]+)\}", sub, value))


def _tf_condition(tf: Tf, module_dir: str, for_each: str) -> str:
    """A dynamic block's for_each as the condition it grants under: `param.x != ''` for
    `var.x == "" ? [] : [...]` (the form the template's `!Not [!Equals [!Ref X, ""]]` takes)."""
    match = re.fullmatch(r'\$\{(var\.\w+) == "" \? \[\] : \[.*\]\}', for_each, re.S)
    return f"{tf.reference(module_dir, match.group(1))} != ''" if match else OPAQUE


def _tf_for_each_keys(tf: Tf, module_dir: str, body: dict) -> list | None:
    for_each = _one(body.get("for_each"))
    if for_each is None:
        return None
    if isinstance(for_each, dict):
        return list(for_each)
    match = re.fullmatch(r"\$\{local\.(\w+)\}", str(for_each))
    if match:
        value = tf.modules[module_dir]["locals"].get(match.group(1))
        if isinstance(value, dict):
            return list(value)
        if isinstance(value, str) and "local.functions" in value and "bootstrap" in value:
            return [k for k in tf.modules[module_dir]["locals"].get("functions", {}) if k != "bootstrap"]
    sets = re.findall(r"toset\(\[([^\]]*)\]\)", str(for_each))
    if sets:
        return [x.strip().strip("'\"") for x in sets[0].split(",") if x.strip()]
    match = re.fullmatch(r"\$\{(aws_\w+|random_\w+)\.(\w+)\}", str(for_each))
    if match:
        other = tf.modules[module_dir]["resource"].get((match.group(1), match.group(2)), {})
        return _tf_for_each_keys(tf, module_dir, other)
    return None


def _tf_alarm_symbol(dimension: str, target: str) -> str:
    return target


def _tf_pattern(tf: Tf, module_dir: str, expression):
    """An event_pattern: jsonencode() of an object (python-hcl2 shows it as a Python literal),
    of a local, or a JSON string."""
    text = str(expression)
    encoded = re.fullmatch(r"\$\{jsonencode\((.*)\)\}", text, re.S)
    if encoded:
        inner = encoded.group(1).strip()
        local = re.fullmatch(r"local\.(\w+)", inner)
        if local:
            return tf.modules[module_dir]["locals"].get(local.group(1))
        try:
            return ast.literal_eval(inner)
        except (ValueError, SyntaxError):
            return OPAQUE
    try:
        return json.loads(text)
    except ValueError:
        return OPAQUE


def _tf_principals(statement: dict) -> list[str]:
    out = []
    for principal in statement.get("principals", []):
        kind = _one(principal.get("type"))
        for identifier in _one(principal.get("identifiers")) or []:
            out.append("*" if kind in ("*", "AWS") and identifier == "*" else f"{kind}:{identifier}")
    return sorted(out)


def tf_extend(modules: dict, model: dict, root: str) -> None:
    root_variables = {}
    for path in sorted(os.listdir(root)):
        if path.endswith(".tf"):
            from model import _hcl_load  # noqa: PLC0415 - the hcl2 import lives there

            for block in _hcl_load(os.path.join(root, path)).get("variable", []):
                root_variables.update(block)
    tf = Tf(modules, set(root_variables))
    model.update({"env": {}, "function_ops": {}, "invocations": {}, "alarms": {}, "roles": {}, "trust": {},
                  "log_groups": {}, "dashboard": {}, "rotations": {}, "proxy": {}, "database": {}, "network": {},
                  "parameters": {}, "providers": {}, "event_buses": {}, "event_rules": {}, "queue_policies": {},
                  "outputs": {}})

    alarm_names = {}
    for module_dir, module in modules.items():
        locals_ = module["locals"]
        alarms = locals_.get("alarms")
        if isinstance(alarms, dict):
            for name, spec in alarms.items():
                key = (spec["namespace"], spec["metric"], spec["dimension"], spec["target"], spec["statistic"])
                alarm_names[name] = key
                resource = module["resource"].get(("aws_cloudwatch_metric_alarm", "this"), {})
                model["alarms"][key] = {
                    "period": spec.get("period"),
                    "evaluation_periods": spec.get("evaluation_periods"),
                    "datapoints": spec.get("datapoints"),
                    "threshold": _number(tf.value(module_dir, spec.get("threshold"))),
                    "comparison": spec.get("comparison"),
                    "treat_missing": spec.get("missing"),
                    "actions": sorted(str(tf.value(module_dir, a)) for a in _one(resource.get("alarm_actions", [[]])) or []),
                    "ok_actions": sorted(str(tf.value(module_dir, a)) for a in _one(resource.get("ok_actions", [[]])) or []),
                }
        for (kind, name), body in module["resource"].items():
            if kind == "aws_cloudwatch_metric_alarm" and "metric_query" not in body and "for_each" not in body:
                dimensions = _one(body.get("dimensions")) or {}
                dimension, target = _dimensions({d: tf.value(module_dir, v) for d, v in dimensions.items()})
                statistic = _one(body.get("extended_statistic")) or _one(body.get("statistic"))
                key = (_one(body.get("namespace")), _one(body.get("metric_name")), dimension, target, statistic)
                alarm_names[_one(body.get("alarm_name", "")).split("}-", 1)[-1]] = key
                model["alarms"][key] = {
                    "period": _one(body.get("period")),
                    "evaluation_periods": _one(body.get("evaluation_periods")),
                    "datapoints": _one(body.get("datapoints_to_alarm")),
                    "threshold": _number(_one(body.get("threshold"))),
                    "comparison": _one(body.get("comparison_operator")),
                    "treat_missing": _one(body.get("treat_missing_data", "missing")),
                    "actions": sorted(str(tf.value(module_dir, a)) for a in _one(body.get("alarm_actions", [[]])) or []),
                    "ok_actions": sorted(str(tf.value(module_dir, a)) for a in _one(body.get("ok_actions", [[]])) or []),
                }
            elif kind == "aws_cloudwatch_metric_alarm" and "metric_query" in body:
                queries = body["metric_query"]
                expression = next((_one(q.get("expression")) for q in queries if q.get("expression")), "")
                metric = next((_one(q["metric"]) for q in queries if q.get("metric")), {})
                dimensions = _one(metric.get("dimensions")) or {}
                dimension, target = _dimensions({d: tf.value(module_dir, v) for d, v in dimensions.items()})
                key = (_one(metric.get("namespace")), f"expr:{expression}", dimension, target, "math")
                alarm_names[_one(body.get("alarm_name", "")).split("}-", 1)[-1]] = key
                model["alarms"][key] = {
                    "period": _one(metric.get("period")),
                    "evaluation_periods": _one(body.get("evaluation_periods")),
                    "datapoints": _one(body.get("datapoints_to_alarm")),
                    "threshold": _number(_one(body.get("threshold"))),
                    "comparison": _one(body.get("comparison_operator")),
                    "treat_missing": _one(body.get("treat_missing_data", "missing")),
                    "actions": sorted(str(tf.value(module_dir, a)) for a in _one(body.get("alarm_actions", [[]])) or []),
                    "ok_actions": sorted(str(tf.value(module_dir, a)) for a in _one(body.get("ok_actions", [[]])) or []),
                }

    rollback = {}
    for module in modules.values():
        if isinstance(module["locals"].get("rollback"), dict):
            rollback = module["locals"]["rollback"]

    for module_dir, module in modules.items():
        locals_ = module["locals"]
        functions = locals_.get("functions")
        if isinstance(functions, dict):
            aliased = set(_tf_for_each_keys(tf, module_dir, module["resource"].get(("aws_lambda_alias", "live"), {})) or [])
            for key, spec in functions.items():
                env = spec.get("environment") or {}
                model["env"][key] = {name: tf.value(module_dir, v) for name, v in env.items()}
                url = env.get("TMS_DATABASE_URL", "")
                url_local = re.fullmatch(r"\$\{local\.(\w+)\}", str(url))
                url_text = str(locals_.get(url_local.group(1))) if url_local else str(url)
                reserved = tf.value(module_dir, spec.get("reserved_concurrency"))
                deployment = tf.value(module_dir, spec.get("deployment"))
                model["function_ops"][key] = {
                    "alias": "live" if key in aliased else None,
                    "deployment": deployment if deployment not in ("", None) else None,
                    "rollback_alarms": sorted(str(alarm_names.get(a, "?")) for a in rollback.get(key, [])),
                    "reserved": None if reserved in (0.0, None) else reserved,
                    "via_proxy": "proxy" in url_text,
                }
        for (kind, name), body in module["resource"].items():
            if kind == "aws_lambda_event_source_mapping":
                function = re.search(r'aws_lambda_(?:function|alias)\.\w+\["(\w+)"\]', str(_one(body.get("function_name"))))
                queue = tf.value(module_dir, _one(body.get("event_source_arn")))
                queue_key = re.fullmatch(r"queue\.(\w+)\.arn", str(queue))
                model["invocations"][("mapping", f"{function.group(1) if function else '?'}<-{queue_key.group(1) if queue_key else '?'}")] = "aws_lambda_alias" in str(body.get("function_name"))
            elif kind == "aws_cloudwatch_event_target" and "aws_lambda" in str(body.get("arn")):
                keys = _tf_for_each_keys(tf, module_dir, body) or [name]
                for job in keys:
                    model["invocations"][("schedule", job)] = "aws_lambda_alias" in str(body.get("arn"))
            elif kind == "aws_apigatewayv2_integration":
                model["invocations"][("api", "integration")] = str(tf.value(module_dir, _one(body.get("integration_uri")))).startswith("alias.")
            elif kind == "aws_lambda_permission" and _one(body.get("principal")) == "apigateway.amazonaws.com":
                model["invocations"][("api", "permission")] = body.get("qualifier") is not None and tf.value(module_dir, _one(body.get("qualifier"))) != OPAQUE
            elif kind in ("aws_iam_role_policy", "aws_iam_policy"):
                role_names = {"function": None, "network_and_tracing": "network_and_tracing", "proxy": "proxy", "stack_iam": "github_deploy"}
                if name not in role_names:
                    continue
                policy = _one(body.get("policy"))
                for_each = _one(body.get("for_each"))
                pairs = [(k, v) for k, v in for_each.items()] if policy == "${each.value}" and isinstance(for_each, dict) else [(role_names[name], policy)]
                for role, expression in pairs:
                    match = re.fullmatch(r"\$\{data\.aws_iam_policy_document\.(\w+)\.json\}", str(expression))
                    document = module["data"].get(("aws_iam_policy_document", match.group(1))) if match else None
                    statements = model["roles"].setdefault(role, {})
                    for st, for_each in tf_statement_entries(document or {}):
                        statements[_one(st.get("sid", "?"))] = {
                            "effect": _one(st.get("effect", ["Allow"])),
                            "actions": sorted(_one(st.get("actions", [[]])) or []),
                            "resources": sorted({str(x) for r in _as_list(_one(st.get("resources", [[]])) or []) for x in _as_list(tf.value(module_dir, r))}),
                            **({"when": _tf_condition(tf, module_dir, for_each)} if for_each else {}),
                        }
            elif kind == "aws_iam_role" and name == "deploy":
                match = re.fullmatch(r"\$\{data\.aws_iam_policy_document\.(\w+)\.json\}", str(_one(body.get("assume_role_policy"))))
                document = module["data"].get(("aws_iam_policy_document", match.group(1))) if match else {}
                conditions = []
                for st in document.get("statement", []):
                    for c in st.get("condition", []):
                        values = [tf.value(module_dir, v) for v in _one(c.get("values")) or []]
                        conditions.append(f"{_one(c.get('test'))} {_one(c.get('variable'))} {values}")
                model["trust"]["github_deploy"] = sorted(conditions)
            elif kind == "aws_cloudwatch_log_group":
                keys = _tf_for_each_keys(tf, module_dir, body)
                for each in keys if keys is not None else [None]:
                    raw = str(_one(body.get("name")))
                    if each is not None:
                        raw = raw.replace("${each.key}", each)
                    model["log_groups"][str(tf.value(module_dir, raw))] = tf.value(module_dir, _one(body.get("retention_in_days")))
            elif kind == "aws_cloudwatch_dashboard":
                widgets = locals_.get("dashboard_widgets") or []
                for widget in widgets:
                    model["dashboard"][widget.get("title", "?")] = sorted(
                        f"{row[0]} {row[1]} {(row[-1] if isinstance(row[-1], dict) else {}).get('stat', '?')}"
                        for row in widget.get("metrics", [])
                    )
            elif kind == "aws_secretsmanager_secret_rotation":
                keys = _tf_for_each_keys(tf, module_dir, body) or []
                rules = _one(body.get("rotation_rules", [{}]))
                for key in keys:
                    model["rotations"][f"secret.{key}.arn"] = tf.value(module_dir, _one(rules.get("automatically_after_days", rules.get("schedule_expression"))))
            elif kind == "aws_db_proxy":
                auth = body.get("auth", [])
                model["proxy"].update({
                    "engine": _one(body.get("engine_family")),
                    "require_tls": _one(body.get("require_tls")),
                    "idle_client_timeout": _number(_one(body.get("idle_client_timeout"))),
                    "auth": sorted(f"{_one(a.get('auth_scheme'))} {tf.value(module_dir, _one(a.get('secret_arn')))} {_one(a.get('iam_auth'))} {_one(a.get('client_password_auth_type'))}" for a in auth),
                })
            elif kind == "aws_db_proxy_default_target_group":
                pool = _one(body.get("connection_pool_config", [{}]))
                model["proxy"].update({
                    "max_connections_percent": _number(_one(pool.get("max_connections_percent"))),
                    "max_idle_connections_percent": _number(_one(pool.get("max_idle_connections_percent"))),
                    "connection_borrow_timeout": _number(_one(pool.get("connection_borrow_timeout"))),
                })
            elif kind == "aws_db_instance":
                model["database"].update({
                    "performance_insights": _one(body.get("performance_insights_enabled", [False])),
                    "performance_insights_retention": _number(_one(body.get("performance_insights_retention_period"))),
                    "max_allocated_storage": tf.value(module_dir, _one(body.get("max_allocated_storage"))),
                    "log_exports": sorted(_one(body.get("enabled_cloudwatch_logs_exports", [[]])) or []),
                    "deletion_protection": _one(body.get("deletion_protection")),
                })
            elif kind == "aws_db_parameter_group":
                for parameter in body.get("parameter", []):
                    model["database"][f"parameter {_one(parameter.get('name'))}"] = tf.value(module_dir, _one(parameter.get("value")))
            elif kind == "aws_cloudwatch_event_bus":
                model["event_buses"][str(tf.value(module_dir, _one(body.get("name"))))] = {
                    "arn": tf.reference(module_dir, f"{kind}.{name}.arn"),
                }
            elif kind == "aws_cloudwatch_event_rule" and body.get("event_pattern"):
                targets = {}
                for (other_kind, _), target in module["resource"].items():
                    rule = re.fullmatch(r"\$\{aws_cloudwatch_event_rule\.(\w+)\.name\}", str(_one(target.get("rule"))))
                    if other_kind != "aws_cloudwatch_event_target" or not rule or rule.group(1) != name:
                        continue
                    retry = _one(target.get("retry_policy", [{}]))
                    dead_letter = _one(target.get("dead_letter_config", [{}]))
                    targets[_one(target.get("target_id", "?"))] = {
                        "arn": tf.value(module_dir, _one(target.get("arn"))),
                        "dlq": tf.value(module_dir, _one(dead_letter.get("arn"))) if dead_letter.get("arn") else None,
                        "retry_attempts": _number(_one(retry.get("maximum_retry_attempts"))),
                        "max_age": _number(_one(retry.get("maximum_event_age_in_seconds"))),
                    }
                model["event_rules"][str(tf.value(module_dir, _one(body.get("name"))))] = {
                    "arn": tf.reference(module_dir, f"{kind}.{name}.arn"),
                    "bus": tf.value(module_dir, _one(body.get("event_bus_name", "default"))),
                    "pattern": _tf_pattern(tf, module_dir, _one(body.get("event_pattern"))),
                    "state": _one(body.get("state", "ENABLED")),
                    "targets": targets,
                    "where": f"{module_dir}: {kind}.{name}",
                }
            elif kind == "aws_sqs_queue_policy":
                match = re.fullmatch(r"\$\{data\.aws_iam_policy_document\.(\w+)\.json\}", str(_one(body.get("policy"))))
                document = module["data"].get(("aws_iam_policy_document", match.group(1))) if match else {}
                statements = {}
                for st in (document or {}).get("statement", []):
                    conditions = [
                        f"{_one(c.get('test'))} {_one(c.get('variable'))} {[tf.value(module_dir, v) for v in _one(c.get('values')) or []]}"
                        for c in st.get("condition", [])
                    ]
                    statements[_one(st.get("sid", "?"))] = {
                        "effect": _one(st.get("effect", ["Allow"])),
                        "principals": _tf_principals(st),
                        "actions": sorted(_one(st.get("actions", [[]])) or []),
                        "resources": sorted(str(tf.value(module_dir, r)) for r in _one(st.get("resources", [[]])) or []),
                        "conditions": sorted(conditions),
                    }
                queue = re.fullmatch(r"queue\.(\w+)\.url", str(tf.value(module_dir, _one(body.get("queue_url")))))
                model["queue_policies"][queue.group(1) if queue else f"?{module_dir}:{name}"] = statements
            elif kind == "aws_nat_gateway":
                count = str(_one(body.get("count", [1])))
                per_az = "nat_count" in count or "nat_gateway_per_az" in count
                model["network"]["nat_gateways"] = 2 if per_az else 1
                if per_az:
                    model["network"]["nat_per_az_condition"] = True

    for name, spec in root_variables.items():
        constraints = {}
        if "bool" in str(_one(spec.get("type"))):
            model["parameters"][name] = {"type": "bool"}
            continue
        for validation in spec.get("validation", []):
            condition = str(_one(validation.get("condition")))
            allowed = re.search(r"contains\(\[(.*?)\],\s*var\.\w+\)", condition)
            if allowed:
                constraints["allowed"] = sorted(x.strip().strip("'\"") for x in allowed.group(1).split(",") if x.strip())
            pattern = re.search(r'regex\("((?:[^"\\]|\\.)*)",\s*var\.\w+\)', condition)
            if pattern:
                constraints["pattern"] = pattern.group(1).replace("\\\\", "\\")
            minimum = re.search(r"var\.\w+ >= (-?\d+)(?!\.)", condition)
            if minimum and f"var.{name} >= var." not in condition:
                constraints["min"] = float(minimum.group(1))
            maximum = re.search(r"var\.\w+ <= (-?\d+)", condition)
            if maximum:
                constraints["max"] = float(maximum.group(1))
        model["parameters"][name] = constraints

    for name, body in modules.get(".", {}).get("output", {}).items():
        model["outputs"][name] = tf.value(".", _one(body.get("value")))

    for module_dir, module in modules.items():
        used = sorted({kind.split("_", 1)[0] for kind, _ in module["resource"]} | {kind.split("_", 1)[0] for kind, _ in module["data"]})
        versioned = sorted(module.get("providers", {}).get("versioned", []))
        model["providers"][module_dir] = {"used": [u for u in used if u in ("aws", "random")], "versioned": versioned}

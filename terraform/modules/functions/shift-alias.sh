#!/usr/bin/env bash
# Shifts a function's alias to a new version through CodeDeploy and waits for the outcome: the
# Terraform counterpart of SAM's DeploymentPreference (deploy.tf). Environment: APPLICATION,
# GROUP (CodeDeploy), FUNCTION, ALIAS, VERSION (the target), REGION.
# Exits non-zero when the deployment fails or is rolled back by an alarm.
set -euo pipefail

current="$(aws lambda get-alias --region "$REGION" --function-name "$FUNCTION" --name "$ALIAS" \
  --query FunctionVersion --output text)"
if [ "$current" = "$VERSION" ]; then
  echo "$FUNCTION:$ALIAS is at version $VERSION already"
  exit 0
fi

appspec=$(printf '{"version":0.0,"Resources":[{"function":{"Type":"AWS::Lambda::Function","Properties":{"Name":"%s","Alias":"%s","CurrentVersion":"%s","TargetVersion":"%s"}}}]}' \
  "$FUNCTION" "$ALIAS" "$current" "$VERSION")
revision=$(python3 -c 'import json, sys; print(json.dumps({"revisionType": "AppSpecContent", "appSpecContent": {"content": sys.argv[1]}}))' "$appspec")

id="$(aws deploy create-deployment --region "$REGION" --application-name "$APPLICATION" \
  --deployment-group-name "$GROUP" --revision "$revision" --query deploymentId --output text)"
echo "$FUNCTION:$ALIAS $current -> $VERSION: CodeDeploy deployment $id"
# The slowest configuration (Canary10Percent30Minutes) takes half an hour; wait up to 75 minutes.
for _ in $(seq 1 300); do
  status="$(aws deploy get-deployment --region "$REGION" --deployment-id "$id" \
    --query deploymentInfo.status --output text)"
  case "$status" in
    Succeeded)
      echo "$FUNCTION:$ALIAS is at version $VERSION"
      exit 0
      ;;
    Failed | Stopped)
      aws deploy get-deployment --region "$REGION" --deployment-id "$id" \
        --query deploymentInfo.errorInformation.message --output text >&2 || true
      echo "$FUNCTION: deployment $id $status; the alias stays at (or went back to) version $current" >&2
      exit 1
      ;;
  esac
  sleep 15
done
echo "$FUNCTION: deployment $id still $status after 75 minutes" >&2
exit 1

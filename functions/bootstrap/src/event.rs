//! The event shapes the bootstrapper accepts, told apart by their fields: the three ways a
//! deployment runs the bootstrap, and Secrets Manager's rotation steps.

use aws_lambda_events::event::cloudformation::CloudFormationCustomResourceRequest;
use serde::Deserialize;
use serde_json::Value;

/// A Terraform `aws_lambda_invocation` lifecycle action (`lifecycle_scope = "CRUD"`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TerraformAction {
    Create,
    Update,
    Delete,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Invocation {
    /// A CloudFormation custom-resource request: always answered at its `ResponseURL`.
    CloudFormation(Box<CloudFormationCustomResourceRequest>),
    /// A Terraform `aws_lambda_invocation` input with its lifecycle key (`tf`).
    Terraform(TerraformAction),
    /// `{"action": "bootstrap"}`.
    Direct,
    /// A step of Secrets Manager's rotation of a login user's secret.
    Rotation(crate::rotation::RotationRequest),
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum EventError {
    #[error("invalid CloudFormation custom-resource event: {0}")]
    CloudFormation(String),
    #[error("invalid Terraform lifecycle key \"tf\": {0}")]
    Terraform(String),
    #[error("invalid Secrets Manager rotation event: {0}")]
    Rotation(String),
    #[error(
        "unrecognised event: expected a CloudFormation custom-resource event, a Terraform \
         aws_lambda_invocation input, or {{\"action\": \"bootstrap\"}}"
    )]
    Unrecognised,
}

#[derive(Deserialize)]
struct TerraformKey {
    action: TerraformAction,
}

/// Tells the event shape apart.
///
/// # Errors
/// [`EventError`] for an event of none of the shapes or a malformed one.
pub fn classify(event: &Value) -> Result<Invocation, EventError> {
    if event.get("RequestType").is_some() && event.get("ResponseURL").is_some() {
        return serde_json::from_value(event.clone())
            .map(|req| Invocation::CloudFormation(Box::new(req)))
            .map_err(|e| EventError::CloudFormation(e.to_string()));
    }
    if event.get("Step").is_some() && event.get("SecretId").is_some() {
        return serde_json::from_value(event.clone())
            .map(Invocation::Rotation)
            .map_err(|e| EventError::Rotation(e.to_string()));
    }
    if let Some(tf) = event.get("tf") {
        return serde_json::from_value::<TerraformKey>(tf.clone())
            .map(|k| Invocation::Terraform(k.action))
            .map_err(|e| EventError::Terraform(e.to_string()));
    }
    match event.get("action").and_then(Value::as_str) {
        Some("bootstrap") => Ok(Invocation::Direct),
        _ => Err(EventError::Unrecognised),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn cfn(request_type: &str) -> Value {
        let mut event = json!({
            "RequestType": request_type,
            "ServiceToken": "arn:aws:lambda:eu-west-1:123456789012:function:tms-bootstrap",
            "ResponseURL": "https://cloudformation-custom-resource-response-euwest1.s3.amazonaws.com/x",
            "StackId": "arn:aws:cloudformation:eu-west-1:123456789012:stack/tms/abc",
            "RequestId": "req-1",
            "ResourceType": "Custom::DatabaseBootstrap",
            "LogicalResourceId": "DatabaseBootstrap",
            "ResourceProperties": {"ServiceToken": "arn", "DeployId": "1"}
        });
        if request_type != "Create" {
            event["PhysicalResourceId"] = json!("tms-bootstrap/DatabaseBootstrap");
        }
        if request_type == "Update" {
            event["OldResourceProperties"] = json!({"DeployId": "0"});
        }
        event
    }

    #[test]
    fn cloudformation_requests_of_each_type() {
        for rt in ["Create", "Update", "Delete"] {
            let Invocation::CloudFormation(req) = classify(&cfn(rt)).unwrap() else {
                panic!("{rt} is a CloudFormation event");
            };
            let matches = matches!(
                (rt, *req),
                ("Create", CloudFormationCustomResourceRequest::Create(_))
                    | ("Update", CloudFormationCustomResourceRequest::Update(_))
                    | ("Delete", CloudFormationCustomResourceRequest::Delete(_))
            );
            assert!(matches, "{rt}");
        }
        let mut broken = cfn("Update");
        broken.as_object_mut().unwrap().remove("StackId");
        assert!(matches!(
            classify(&broken),
            Err(EventError::CloudFormation(_))
        ));
    }

    #[test]
    fn terraform_lifecycle_actions() {
        for (action, want) in [
            ("create", TerraformAction::Create),
            ("update", TerraformAction::Update),
            ("delete", TerraformAction::Delete),
        ] {
            let event =
                json!({"action": "bootstrap", "tf": {"action": action, "prev_input": null}});
            assert_eq!(classify(&event).unwrap(), Invocation::Terraform(want));
        }
        assert!(matches!(
            classify(&json!({"tf": {"action": "read"}})),
            Err(EventError::Terraform(_))
        ));
    }

    #[test]
    fn rotation_steps() {
        let event = json!({"SecretId": "arn:aws:secretsmanager:eu-west-1:1:secret:x-AbC123",
                           "ClientRequestToken": "t-1", "Step": "setSecret"});
        let Invocation::Rotation(request) = classify(&event).unwrap() else {
            panic!("a rotation step");
        };
        assert_eq!(request.step, crate::rotation::Step::Set);
        assert_eq!(request.token, "t-1");
        assert!(matches!(
            classify(&json!({"SecretId": "x", "Step": "dropSecret", "ClientRequestToken": "t"})),
            Err(EventError::Rotation(_))
        ));
    }

    #[test]
    fn direct_and_unknown_events() {
        assert_eq!(
            classify(&json!({"action": "bootstrap"})).unwrap(),
            Invocation::Direct
        );
        for other in [
            json!({}),
            json!({"action": "drop"}),
            json!([1]),
            json!("bootstrap"),
        ] {
            assert_eq!(
                classify(&other).unwrap_err(),
                EventError::Unrecognised,
                "{other}"
            );
        }
    }
}

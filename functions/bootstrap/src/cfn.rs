//! The CloudFormation custom-resource response: built to fit CloudFormation's 4096-byte limit
//! and PUT to the request's presigned `ResponseURL`.

use std::collections::HashMap;
use std::time::Duration;

use aws_lambda_events::event::cloudformation::{
    CloudFormationCustomResourceRequest as Request,
    CloudFormationCustomResourceResponse as Response,
    CloudFormationCustomResourceResponseStatus as Status,
};

/// CloudFormation refuses response bodies larger than this.
pub const MAX_BODY_BYTES: usize = 4096;

/// The fields every response echoes from its request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestIds {
    pub response_url: String,
    pub stack_id: String,
    pub request_id: String,
    pub logical_resource_id: String,
    /// The request's own physical id (Update, Delete), if any.
    pub physical_resource_id: Option<String>,
}

impl RequestIds {
    pub fn of(request: &Request) -> Self {
        match request {
            Request::Create(r) => Self {
                response_url: r.response_url.clone(),
                stack_id: r.stack_id.clone(),
                request_id: r.request_id.clone(),
                logical_resource_id: r.logical_resource_id.clone(),
                physical_resource_id: None,
            },
            Request::Update(r) => Self {
                response_url: r.response_url.clone(),
                stack_id: r.stack_id.clone(),
                request_id: r.request_id.clone(),
                logical_resource_id: r.logical_resource_id.clone(),
                physical_resource_id: Some(r.physical_resource_id.clone()),
            },
            Request::Delete(r) => Self {
                response_url: r.response_url.clone(),
                stack_id: r.stack_id.clone(),
                request_id: r.request_id.clone(),
                logical_resource_id: r.logical_resource_id.clone(),
                physical_resource_id: Some(r.physical_resource_id.clone()),
            },
            _ => unreachable!("CloudFormation has three request types"),
        }
    }

    /// The same physical id on every response for this resource: the request's own when it
    /// has one, otherwise one derived from the logical id, so an Update never looks like a
    /// replacement to CloudFormation.
    pub fn physical_resource_id(&self) -> String {
        self.physical_resource_id
            .clone()
            .unwrap_or_else(|| format!("tms-bootstrap/{}", self.logical_resource_id))
    }
}

/// Serialises the response, shortening the reason until the body fits in
/// [`MAX_BODY_BYTES`].
pub fn response_body(
    ids: &RequestIds,
    outcome: Result<HashMap<String, String>, String>,
) -> Vec<u8> {
    let mut response = Response::default();
    response.stack_id = ids.stack_id.clone();
    response.request_id = ids.request_id.clone();
    response.logical_resource_id = ids.logical_resource_id.clone();
    response.physical_resource_id = ids.physical_resource_id();
    match outcome {
        Ok(data) => {
            response.status = Status::Success;
            response.data = data;
        }
        Err(reason) => {
            response.status = Status::Failed;
            response.reason = Some(reason);
        }
    }
    loop {
        let body = serde_json::to_vec(&response).expect("a response serialises");
        if body.len() <= MAX_BODY_BYTES {
            return body;
        }
        let excess = body.len() - MAX_BODY_BYTES;
        match response.reason.as_mut() {
            Some(reason) if !reason.is_empty() => {
                let mut keep = reason.len().saturating_sub(excess + 16);
                while !reason.is_char_boundary(keep) {
                    keep -= 1;
                }
                reason.truncate(keep);
                reason.push_str(" [truncated]");
            }
            _ => response.data.clear(),
        }
    }
}

#[derive(Debug, thiserror::Error)]
#[error("could not deliver the CloudFormation response: {0}")]
pub struct DeliveryError(String);

/// PUTs the body to the presigned URL (no content type: the URL is signed without one),
/// trying three times.
///
/// # Errors
/// [`DeliveryError`] when every attempt failed.
pub async fn deliver(
    http: &reqwest::Client,
    url: &str,
    body: Vec<u8>,
) -> Result<(), DeliveryError> {
    let mut last = String::new();
    for attempt in 1..=3u64 {
        let sent = http
            .put(url)
            .header(reqwest::header::CONTENT_TYPE, "")
            .timeout(Duration::from_secs(10))
            .body(body.clone())
            .send()
            .await;
        match sent {
            Ok(resp) if resp.status().is_success() => return Ok(()),
            Ok(resp) => last = format!("HTTP {}", resp.status()),
            Err(e) => last = e.to_string(),
        }
        tracing::warn!(attempt, error = %last, "CloudFormation response not accepted");
        tokio::time::sleep(Duration::from_millis(200 * attempt)).await;
    }
    Err(DeliveryError(last))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;

    fn ids() -> RequestIds {
        RequestIds {
            response_url: "http://127.0.0.1/x".into(),
            stack_id: "arn:aws:cloudformation:eu-west-1:1:stack/tms/x".into(),
            request_id: "r-1".into(),
            logical_resource_id: "DatabaseBootstrap".into(),
            physical_resource_id: None,
        }
    }

    #[test]
    fn success_carries_every_identifier() {
        let body = response_body(
            &ids(),
            Ok(HashMap::from([("Database".into(), "tms".into())])),
        );
        let v: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(v["Status"], "SUCCESS");
        assert_eq!(v["PhysicalResourceId"], "tms-bootstrap/DatabaseBootstrap");
        assert_eq!(
            v["StackId"],
            "arn:aws:cloudformation:eu-west-1:1:stack/tms/x"
        );
        assert_eq!(v["RequestId"], "r-1");
        assert_eq!(v["LogicalResourceId"], "DatabaseBootstrap");
        assert_eq!(v["Data"]["Database"], "tms");
    }

    #[test]
    fn a_long_reason_is_cut_to_fit_4096_bytes() {
        for reason in ["x".repeat(10_000), "é".repeat(5_000), "😀".repeat(3_000)] {
            let body = response_body(&ids(), Err(reason));
            assert!(body.len() <= MAX_BODY_BYTES, "{}", body.len());
            let v: Value = serde_json::from_slice(&body).unwrap();
            assert_eq!(v["Status"], "FAILED");
            assert!(v["Reason"].as_str().unwrap().ends_with("[truncated]"));
        }
    }

    #[test]
    fn the_physical_id_is_kept_once_assigned() {
        let mut update = ids();
        update.physical_resource_id = Some("tms-bootstrap/DatabaseBootstrap".into());
        assert_eq!(update.physical_resource_id(), ids().physical_resource_id());
    }
}

//! [`Mailer`] on Amazon SES v2: one `SendEmail` of a plain-text message per email, and what a
//! failed call means for sending the message again.

use std::time::Duration;

use async_trait::async_trait;
use aws_sdk_sesv2::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_sdk_sesv2::operation::send_email::SendEmailError;
use aws_sdk_sesv2::types::{Body, Content, Destination, EmailContent, Message};
use aws_sdk_sesv2::Client;
use aws_smithy_runtime_api::http::Response as HttpResponse;
use aws_smithy_types::timeout::TimeoutConfig;

use crate::domain::email::OutgoingEmail;
use crate::ports::{MailError, Mailer};

/// How long one `SendEmail`, with the SDK's own retries, may take.
pub const SEND_TIMEOUT: Duration = Duration::from_secs(10);

/// An SES v2 client for `config`, whose calls give up after [`SEND_TIMEOUT`].
pub fn client(config: &aws_config::SdkConfig) -> Client {
    let timeouts = config
        .timeout_config()
        .map_or_else(TimeoutConfig::builder, TimeoutConfig::to_builder)
        .operation_timeout(SEND_TIMEOUT)
        .build();
    Client::from_conf(
        aws_sdk_sesv2::config::Builder::from(config)
            .timeout_config(timeouts)
            .build(),
    )
}

pub struct SesMailer {
    client: Client,
}

impl SesMailer {
    pub fn new(client: Client) -> Self {
        Self { client }
    }
}

fn utf8(data: &str) -> Result<Content, MailError> {
    Content::builder()
        .data(data)
        .charset("UTF-8")
        .build()
        .map_err(|e| MailError::Rejected {
            code: "ConstructionFailure".into(),
            message: e.to_string(),
        })
}

#[async_trait]
impl Mailer for SesMailer {
    #[tracing::instrument(skip_all)]
    async fn send(&self, email: &OutgoingEmail) -> Result<String, MailError> {
        let message = Message::builder()
            .subject(utf8(&email.subject)?)
            .body(Body::builder().text(utf8(&email.body)?).build())
            .build();
        let sent = self
            .client
            .send_email()
            .from_email_address(&email.envelope.from)
            .set_reply_to_addresses(email.envelope.reply_to.clone().map(|r| vec![r]))
            .destination(
                Destination::builder()
                    .to_addresses(&email.recipient)
                    .build(),
            )
            .content(EmailContent::builder().simple(message).build())
            .send()
            .await
            .map_err(|e| classify(&e))?;
        sent.message_id.ok_or_else(|| MailError::Unavailable {
            code: "NoMessageId".into(),
            message: "SES answered without a message id".into(),
        })
    }
}

/// The shape's name and its own message, for the errors `SendEmail` models.
fn modelled(err: &SendEmailError) -> (Option<&'static str>, Option<&str>) {
    match err {
        SendEmailError::TooManyRequestsException(x) => {
            (Some("TooManyRequestsException"), x.message())
        }
        SendEmailError::LimitExceededException(x) => (Some("LimitExceededException"), x.message()),
        SendEmailError::MessageRejected(x) => (Some("MessageRejected"), x.message()),
        SendEmailError::MailFromDomainNotVerifiedException(x) => {
            (Some("MailFromDomainNotVerifiedException"), x.message())
        }
        SendEmailError::AccountSuspendedException(x) => {
            (Some("AccountSuspendedException"), x.message())
        }
        SendEmailError::SendingPausedException(x) => (Some("SendingPausedException"), x.message()),
        SendEmailError::BadRequestException(x) => (Some("BadRequestException"), x.message()),
        SendEmailError::NotFoundException(x) => (Some("NotFoundException"), x.message()),
        _ => (None, None),
    }
}

/// Error codes that mean "slow down", also when the SDK does not model them for `SendEmail`.
const THROTTLING_CODES: [&str; 6] = [
    "Throttling",
    "ThrottlingException",
    "TooManyRequestsException",
    "LimitExceededException",
    "RequestLimitExceeded",
    "SlowDown",
];

/// What a failed `SendEmail` means: throttled (a sending rate or quota), unavailable (a server
/// error, a timeout, a broken connection, an unreadable answer) or rejected (what SES refuses
/// for the message, its addresses, the identity or the account, and any other client error).
pub fn classify(e: &SdkError<SendEmailError, HttpResponse>) -> MailError {
    let described = || DisplayErrorContext(e).to_string();
    // A modelled error is named by its shape when the answer's metadata names no code.
    let (shape, own_message) = match e {
        SdkError::ServiceError(context) => modelled(context.err()),
        _ => (None, None),
    };
    let code = e
        .code()
        .filter(|c| !c.is_empty())
        .or(shape)
        .unwrap_or_default()
        .to_owned();
    let message = e
        .message()
        .or(own_message)
        .map_or_else(described, str::to_owned);
    let named = |fallback: &str| {
        if code.is_empty() {
            fallback.to_owned()
        } else {
            code.clone()
        }
    };
    match e {
        SdkError::ServiceError(context) => {
            let status = context.raw().status().as_u16();
            match context.err() {
                SendEmailError::TooManyRequestsException(_)
                | SendEmailError::LimitExceededException(_) => {
                    MailError::Throttled { code, message }
                }
                SendEmailError::MessageRejected(_)
                | SendEmailError::MailFromDomainNotVerifiedException(_)
                | SendEmailError::AccountSuspendedException(_)
                | SendEmailError::SendingPausedException(_)
                | SendEmailError::BadRequestException(_)
                | SendEmailError::NotFoundException(_) => MailError::Rejected { code, message },
                _ if THROTTLING_CODES.contains(&code.as_str()) || status == 429 => {
                    MailError::Throttled {
                        code: named("HTTP 429"),
                        message,
                    }
                }
                _ if status >= 500 || status == 408 => MailError::Unavailable {
                    code: named(&format!("HTTP {status}")),
                    message,
                },
                _ => MailError::Rejected {
                    code: named(&format!("HTTP {status}")),
                    message,
                },
            }
        }
        SdkError::TimeoutError(_) => MailError::Unavailable {
            code: "Timeout".into(),
            message,
        },
        SdkError::ConstructionFailure(_) => MailError::Rejected {
            code: "ConstructionFailure".into(),
            message,
        },
        // A broken connection, an answer that could not be read, or what a later SDK adds.
        _ => MailError::Unavailable {
            code: named("DispatchFailure"),
            message,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_sdk_sesv2::error::ErrorMetadata;
    use aws_sdk_sesv2::types::error::{
        AccountSuspendedException, BadRequestException, LimitExceededException,
        MailFromDomainNotVerifiedException, MessageRejected, NotFoundException,
        SendingPausedException, TooManyRequestsException,
    };
    use aws_smithy_runtime_api::client::result::ConnectorError;
    use aws_smithy_types::body::SdkBody;

    fn answered(status: u16, err: SendEmailError) -> SdkError<SendEmailError, HttpResponse> {
        let raw = HttpResponse::new(status.try_into().unwrap(), SdkBody::empty());
        SdkError::service_error(err, raw)
    }

    fn unmodelled(code: &str) -> SendEmailError {
        SendEmailError::generic(
            ErrorMetadata::builder()
                .code(code)
                .message("from the service")
                .build(),
        )
    }

    fn class(e: &SdkError<SendEmailError, HttpResponse>) -> (&'static str, String) {
        match classify(e) {
            MailError::Throttled { code, .. } => ("throttled", code),
            MailError::Unavailable { code, .. } => ("unavailable", code),
            MailError::Rejected { code, .. } => ("rejected", code),
        }
    }

    #[test]
    fn throttling_and_quotas_are_throttled() {
        let cases = [
            answered(
                429,
                SendEmailError::TooManyRequestsException(
                    TooManyRequestsException::builder()
                        .message("Maximum sending rate exceeded.")
                        .build(),
                ),
            ),
            answered(
                400,
                SendEmailError::LimitExceededException(
                    LimitExceededException::builder()
                        .message("Daily message quota exceeded.")
                        .build(),
                ),
            ),
            answered(400, unmodelled("ThrottlingException")),
            answered(400, unmodelled("Throttling")),
            answered(429, unmodelled("")),
        ];
        for e in &cases {
            assert_eq!(class(e).0, "throttled", "{e:?}");
        }
        assert_eq!(class(&cases[0]).1, "TooManyRequestsException");
        assert_eq!(class(&cases[4]).1, "HTTP 429");
    }

    #[test]
    fn server_errors_timeouts_and_broken_connections_are_unavailable() {
        let cases = [
            answered(500, unmodelled("InternalFailure")),
            answered(503, unmodelled("ServiceUnavailable")),
            answered(502, unmodelled("")),
            answered(408, unmodelled("RequestTimeout")),
            SdkError::timeout_error("operation timed out after 10s"),
            SdkError::dispatch_failure(ConnectorError::io("connection reset".into())),
            SdkError::response_error(
                "truncated body",
                HttpResponse::new(200.try_into().unwrap(), SdkBody::empty()),
            ),
        ];
        for e in &cases {
            assert_eq!(class(e).0, "unavailable", "{e:?}");
        }
        assert_eq!(class(&cases[2]).1, "HTTP 502");
        assert_eq!(class(&cases[4]).1, "Timeout");
    }

    #[test]
    fn refused_messages_addresses_identities_and_accounts_are_rejected() {
        let cases = [
            SendEmailError::MessageRejected(
                MessageRejected::builder()
                    .message("Email address is not verified.")
                    .build(),
            ),
            SendEmailError::MailFromDomainNotVerifiedException(
                MailFromDomainNotVerifiedException::builder().build(),
            ),
            SendEmailError::AccountSuspendedException(AccountSuspendedException::builder().build()),
            SendEmailError::SendingPausedException(SendingPausedException::builder().build()),
            SendEmailError::BadRequestException(
                BadRequestException::builder()
                    .message("Missing final '@domain'")
                    .build(),
            ),
            SendEmailError::NotFoundException(NotFoundException::builder().build()),
            unmodelled("AccessDeniedException"),
        ];
        for err in cases {
            let e = answered(400, err);
            assert_eq!(class(&e).0, "rejected", "{e:?}");
        }
        let rejected = classify(&answered(
            400,
            SendEmailError::MessageRejected(
                MessageRejected::builder()
                    .message("Email address is not verified.")
                    .build(),
            ),
        ));
        assert_eq!(
            rejected.to_string(),
            "email rejected (MessageRejected): Email address is not verified."
        );
        assert_eq!(
            class(&SdkError::construction_failure("no destination")).0,
            "rejected"
        );
    }
}

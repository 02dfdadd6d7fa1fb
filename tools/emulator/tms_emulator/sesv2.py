"""Amazon SES v2 for the local emulator.

LocalStack's community package (4.4.0) routes SES v2 requests (`/v2/email/...`) to a service
`sesv2` for which it registers no provider: every call answers 501 InternalFailure. This provider
serves that API on the emulator's own SES:

- `CreateEmailIdentity` records the identity (moto's SES v2; `AlreadyExistsException` for one it
  has) and verifies it at once in the SES that sends, as LocalStack's `VerifyEmailIdentity` and
  `VerifyDomainIdentity` do; `GetEmailIdentity` says whether an identity is verified there;
- `SendEmail` of simple content sends through that SES, which refuses senders that are not a
  verified address or at a verified domain, and invalid addresses; its refusals are answered as
  SES v2 errors (`MessageRejected`, `BadRequestException`), and sent messages are listed, like SES
  v1's, at `GET /_aws/ses` (with their reply-to addresses);
- every other operation is moto's SES v2.
"""

from __future__ import annotations

from localstack.aws.api import CommonServiceException, RequestContext, handler
from localstack.aws.spec import load_service
from localstack.services.moto import MotoFallbackDispatcher, call_moto
from localstack.services.plugins import Service, ServiceLifecycleHook, aws_provider
from localstack.services.ses.models import SentEmail, SentEmailBody
from localstack.services.ses.provider import register_ses_api_resource, save_for_retrospection
from moto.core.exceptions import RESTError
from moto.ses import ses_backends
from moto.sesv2.models import sesv2_backends

# moto's SES errors, as SES v2 names them.
V2_ERRORS = {
    "MessageRejected": "MessageRejected",
    "InvalidParameterValue": "BadRequestException",
}


def _backend(context: RequestContext):
    """The SES that sends (moto's SES v1, as LocalStack's SES uses it)."""
    return ses_backends[context.account_id][context.region]


def _identities(context: RequestContext) -> dict:
    """The identities created through SES v2."""
    return sesv2_backends[context.account_id][context.region].email_identities


class Sesv2Provider(ServiceLifecycleHook):
    service = "sesv2"

    def on_after_init(self):
        register_ses_api_resource()

    @handler("CreateEmailIdentity", expand=False)
    def create_email_identity(self, context: RequestContext, request: dict):
        identity = request["EmailIdentity"]
        if identity in _identities(context):
            raise CommonServiceException("AlreadyExistsException", f"Email identity {identity} already exist.", status_code=400)
        response = call_moto(context)
        if "@" in identity:
            _backend(context).verify_email_identity(identity)
        else:
            _backend(context).verify_domain(identity)
        response["VerifiedForSendingStatus"] = True
        return response

    @handler("GetEmailIdentity", expand=False)
    def get_email_identity(self, context: RequestContext, request: dict):
        # Not moto's: it looks the identity up by its URL-encoded name (tms%40example.com).
        identity = request["EmailIdentity"]
        if identity not in _identities(context):
            raise CommonServiceException("NotFoundException", f"Email identity {identity} does not exist.", status_code=404)
        backend = _backend(context)
        verified = identity in backend.addresses or identity in backend.domains
        return {
            "IdentityType": "EMAIL_ADDRESS" if "@" in identity else "DOMAIN",
            "VerifiedForSendingStatus": verified,
            "VerificationStatus": "SUCCESS" if verified else "PENDING",
            "FeedbackForwardingStatus": True,
        }

    @handler("SendEmail", expand=False)
    def send_email(self, context: RequestContext, request: dict):
        simple = (request.get("Content") or {}).get("Simple")
        if simple is None:
            # Raw content: moto's SES v2.
            raise NotImplementedError
        destination = request.get("Destination") or {}
        body = simple.get("Body") or {}
        text = (body.get("Text") or {}).get("Data")
        html = (body.get("Html") or {}).get("Data")
        subject = (simple.get("Subject") or {}).get("Data")
        try:
            message = _backend(context).send_email(
                source=request.get("FromEmailAddress"),
                subject=subject,
                body=text if text is not None else html,
                destinations=destination,
            )
        except RESTError as e:
            raise CommonServiceException(
                V2_ERRORS.get(e.error_type, "BadRequestException"), e.message, status_code=400, sender_fault=True
            ) from e
        sent = SentEmail(
            Id=message.id,
            Region=context.region,
            Destination=destination,
            Source=request.get("FromEmailAddress"),
            Subject=subject,
            Body=SentEmailBody(text_part=text, html_part=html),
        )
        if request.get("ReplyToAddresses"):
            sent["ReplyToAddresses"] = request["ReplyToAddresses"]
        save_for_retrospection(sent)
        return {"MessageId": message.id}


def _dispatch_table(provider: Sesv2Provider) -> dict:
    """The provider's operations, and moto's for every other operation of SES v2."""
    table = MotoFallbackDispatcher(provider)
    for operation in load_service("sesv2").operation_names:
        table.setdefault(operation, lambda context, _request: call_moto(context))
    return table


@aws_provider(api="sesv2")
def sesv2():
    return Service.for_provider(Sesv2Provider(), dispatch_table_factory=_dispatch_table)

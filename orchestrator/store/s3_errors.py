"""S3 errors for people: which ones are worth retrying, and messages with every credential
removed (:func:`redact`). Part of :class:`~orchestrator.store.s3.S3Store`."""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from ..spec.urls import redact_url
from .base import StoreError

_RETRY_CODES = frozenset(
    {
        "SlowDown",
        "Throttling",
        "ThrottlingException",
        "ThrottledException",
        "RequestThrottled",
        "RequestLimitExceeded",
        "TooManyRequests",
        "TooManyRequestsException",
        "BandwidthLimitExceeded",
        "RequestTimeout",
        "RequestTimeoutException",
        "InternalError",
        "ServiceUnavailable",
        "PriorRequestNotComplete",
        "ConditionalRequestConflict",  # 409 while a concurrent conditional write is in flight
    }
)
_RETRY_STATUS = frozenset({429, 500, 502, 503, 504})

# -- redaction ---------------------------------------------------------------------------------

_REDACTIONS: list[tuple[re.Pattern[str], str]] = [
    # presigned URL query parameters (SigV4 and SigV2)
    (
        re.compile(
            r"(?i)\b(X-Amz-(?:Signature|Credential|Security-Token)|Signature|AWSAccessKeyId"
            r"|x-amz-security-token)=[^&\s\"'<>]+"
        ),
        r"\1=<redacted>",
    ),
    # Authorization headers and XML error fields that echo the signature or the key
    (re.compile(r"(?i)(Authorization[\"']?\s*[:=]\s*[\"']?)[^\"'\n,}]+"), r"\1<redacted>"),
    (
        re.compile(
            r"(?i)<(AWSAccessKeyId|SignatureProvided|StringToSign|CanonicalRequest"
            r"|StringToSignBytes|CanonicalRequestBytes)>[^<]*</\1>"
        ),
        r"<\1><redacted></\1>",
    ),
    # access key ids
    (
        re.compile(r"\b(?:AKIA|ASIA|AIDA|AROA|AGPA|ANPA|ANVA|AIPA|ABIA|ACCA|APKA)[A-Z0-9]{12,}\b"),
        "<redacted-key-id>",
    ),
    # anything shaped like a secret access key (40 base64 characters)
    (re.compile(r"(?<![A-Za-z0-9/+=])[A-Za-z0-9/+]{40}(?![A-Za-z0-9/+=])"), "<redacted>"),
    # user:password@ in URLs
    (re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://)[^/@\s]+@"), r"\1<redacted>@"),
]


def redact(text: str, secrets: Iterable[str] = ()) -> str:
    """``text`` with credentials removed: key ids, secret-shaped strings, presigned signatures,
    ``Authorization`` values, userinfo in URLs, and the literal ``secrets`` given (the
    credentials in use) wherever they appear."""
    for s in sorted({s for s in secrets if s and len(s) >= 4}, key=len, reverse=True):
        text = text.replace(s, "<redacted>")
    for pattern, repl in _REDACTIONS:
        text = pattern.sub(repl, text)
    return text


def _safe_url(url: str | None) -> str:
    """An endpoint URL without userinfo, query or fragment."""
    if not url:
        return "AWS"
    try:
        p = urlsplit(url)
        if not p.hostname:  # no scheme: "user:secret@host:9000" parses as scheme "user"
            return redact_url(url).partition("?")[0].partition("#")[0]
        netloc = p.hostname
        if p.port:
            netloc = f"{netloc}:{p.port}"
        return urlunsplit((p.scheme, netloc, p.path, "", ""))
    except ValueError:
        return "<invalid endpoint>"


class S3Errors:
    """Classifies botocore's exceptions and turns them into one-line store errors
    (:class:`StoreError`). Expects ``_session``, ``url``, ``endpoint`` and ``bucket`` on the
    store."""

    _session: Any
    url: str
    endpoint: str
    bucket: str

    def _secrets(self) -> list[str]:
        try:
            creds = self._session.get_credentials()
            if creds is None:
                return []
            frozen = creds.get_frozen_credentials()
            return [frozen.access_key or "", frozen.secret_key or "", frozen.token or ""]
        except Exception:  # noqa: BLE001 - resolving credentials must never mask the error
            return []

    def _redact(self, text: str) -> str:
        return redact(text, self._secrets())

    @staticmethod
    def _code(e: BaseException) -> tuple[str, int]:
        from botocore.exceptions import ClientError

        if isinstance(e, ClientError):
            err = e.response.get("Error", {}) or {}
            status = e.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0) or 0
            return str(err.get("Code", "")), int(status)
        return "", 0

    def _retryable(self, e: BaseException) -> bool:
        from botocore.exceptions import (
            ClientError,
            ConnectionError,
            FlexibleChecksumError,
            HTTPClientError,
            IncompleteReadError,
            SSLError,
        )

        if isinstance(e, SSLError):
            return False
        if isinstance(
            e, (ConnectionError, HTTPClientError, IncompleteReadError, FlexibleChecksumError)
        ):
            return True
        if isinstance(e, ClientError):
            code, status = self._code(e)
            return code in _RETRY_CODES or status in _RETRY_STATUS
        return False


    def _describe(self, e: BaseException) -> str:
        code, status = self._code(e)
        if code or status:
            from botocore.exceptions import ClientError

            assert isinstance(e, ClientError)
            msg = str(e.response.get("Error", {}).get("Message", "") or "")
            text = f"{code or 'error'} ({status})" + (f": {msg}" if msg else "")
        else:
            text = f"{type(e).__name__}: {e}"
        return self._redact(text)

    def _error(self, op: str, key: str, e: BaseException) -> StoreError:
        from botocore.exceptions import NoCredentialsError, PartialCredentialsError

        where = f"{self.url} (endpoint {self.endpoint})"
        if isinstance(e, (NoCredentialsError, PartialCredentialsError)):
            return StoreError(
                f"{where}: no usable AWS credentials; set AWS_ACCESS_KEY_ID and "
                "AWS_SECRET_ACCESS_KEY, AWS_PROFILE, or use an instance or pod role"
            )
        code, status = self._code(e)
        detail = self._describe(e)
        attempts = getattr(e, "_reelfarm_attempts", None)
        tries = f" after {attempts} attempts" if attempts else ""
        hint = ""
        if code == "NoSuchBucket":
            hint = f"; bucket {self.bucket!r} does not exist"
        elif status == 403 or code in (
            "AccessDenied",
            "InvalidAccessKeyId",
            "SignatureDoesNotMatch",
        ):
            hint = "; check the credentials in the AWS chain and the bucket policy"
        elif code in ("InvalidRequest", "NotImplemented", "XAmzContentSHA256Mismatch") or (
            "checksum" in detail.lower()
        ):
            hint = "; if this server rejects checksum headers, set REELFARM_S3_CHECKSUM"
        elif code == "BadDigest":
            hint = "; the bytes sent do not match their checksum (did the file change?)"
        return StoreError(f"{where}: {op} {self._redact(key)} failed{tries}: {detail}{hint}")


    def _is_missing(self, e: BaseException) -> bool:
        code, status = self._code(e)
        return code in ("NoSuchKey", "404", "NotFound") or (
            status == 404 and code != "NoSuchBucket"
        )


"""The tracking server's artifacts in S3-compatible object storage: is the bucket there?

``mlflow server --artifacts-destination s3://...`` starts whether or not the bucket can be
reached, then answers every client's upload with a 500 whose cause is only in the server's log.
So ``mltrail tracking server`` asks the bucket first (one ``HeadBucket``, as the server's own
credentials: ``AWS_ACCESS_KEY_ID``/``AWS_SECRET_ACCESS_KEY``, ``AWS_PROFILE`` or
``~/.aws/credentials``) and refuses to start with what is wrong and what to do.
"""

from __future__ import annotations

from urllib.parse import urlsplit

from mltrail.errors import MltrailError

S3_ENDPOINT_ENV = "MLFLOW_S3_ENDPOINT_URL"
"""MLflow's S3 artifact repository connects here instead of AWS (MinIO, moto, ...)."""
CREDENTIALS_HINT = (
    "give the server AWS credentials: AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or "
    "AWS_PROFILE / ~/.aws/credentials (never on the command line)"
)


def split_s3_uri(uri: str) -> tuple[str, str]:
    """``s3://bucket/some/path`` -> (``bucket``, ``some/path``)."""
    parts = urlsplit(uri)
    if parts.scheme != "s3" or not parts.netloc:
        raise MltrailError(
            f"{uri!r} is not an S3 location", hint="write it as s3://BUCKET or s3://BUCKET/PATH"
        )
    return parts.netloc, parts.path.strip("/")


def check_bucket(uri: str, endpoint_url: str | None = None) -> None:
    """Raise :class:`MltrailError` unless the bucket of ``uri`` answers at ``endpoint_url``
    (AWS when None) to the credentials the environment gives."""
    bucket, _ = split_s3_uri(uri)
    try:
        import boto3
        from botocore.config import Config
        from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError
    except ImportError:
        raise MltrailError(
            f"artifacts in {uri} need boto3 on the tracking server (MLflow's S3 store uses it)",
            hint="pip install 'mltrail[s3]'",
        ) from None
    where = f"bucket {bucket!r} at {endpoint_url or 'AWS S3'}"
    # Fail fast: a wrong endpoint should not hold the start for botocore's default retries.
    config = Config(connect_timeout=5, read_timeout=10, retries={"max_attempts": 1})
    client = boto3.client("s3", endpoint_url=endpoint_url, config=config)
    try:
        client.head_bucket(Bucket=bucket)
    except NoCredentialsError:
        raise MltrailError(f"no AWS credentials to reach {where}", hint=CREDENTIALS_HINT) from None
    except ClientError as exc:
        raise _refused(bucket, where, exc) from None
    except BotoCoreError as exc:  # connection refused, DNS, timeout, bad URL
        raise MltrailError(
            f"cannot reach {where}: {exc}",
            hint="start the object store, or give --s3-endpoint-url http(s)://HOST:PORT of an "
            "S3-compatible store (none: AWS)",
        ) from None


def _refused(bucket: str, where: str, exc: Exception) -> MltrailError:
    code = str(getattr(exc, "response", {}).get("Error", {}).get("Code", ""))
    if code in ("404", "NoSuchBucket"):
        return MltrailError(
            f"{where} does not exist",
            hint=f"create it (aws s3 mb s3://{bucket} --endpoint-url URL, or the store's "
            "console), or give --artifacts s3://AN_EXISTING_BUCKET/PATH",
        )
    if code in ("403", "AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch"):
        return MltrailError(
            f"{where} refused the server's credentials ({code})",
            hint=f"{CREDENTIALS_HINT}; they must allow s3:ListBucket, GetObject, PutObject",
        )
    return MltrailError(f"{where} answered {code or 'an error'}: {exc}")

"""Cross-checks of the gateway's signers against independent implementations.

Random requests go through `tollgate-sign-check` (the Rust signers behind a JSON-lines pipe) and through:
- `botocore.auth.SigV4Auth` (the AWS SDK for Python's SigV4, at the same fixed time): the Authorization header,
  X-Amz-Date and X-Amz-Security-Token must be identical;
- `PyJWT` (RS256 is deterministic): the service-account assertion must be the very same token, and must verify
  with the public key.

Run: `.venv/bin/pytest tests/python/test_signatures.py -q` (after `cargo build -p tollgate-tests`). The binary
defaults to `target/debug/tollgate-sign-check`; `TOLLGATE_SIGN_CHECK_BIN` overrides it. `TOLLGATE_SIGN_SEED`
picks another random sample (the seed is printed on failure).
"""

from __future__ import annotations

import base64
import datetime
import hashlib
import json
import os
import random
import string
import subprocess
from pathlib import Path
from typing import Any
from unittest import mock
from urllib.parse import quote

import jwt
import pytest
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

REPO = Path(__file__).resolve().parents[2]
SEED = int(os.environ.get("TOLLGATE_SIGN_SEED", "20240620"))
SIGV4_CASES = 400
JWT_CASES = 40
CLOUD_PLATFORM = "https://www.googleapis.com/auth/cloud-platform"

BEDROCK_MODELS = [
    "anthropic.claude-3-5-sonnet-20240620-v1:0",
    "us.anthropic.claude-3-7-sonnet-20250219-v1:0",
    "global.anthropic.claude-sonnet-4-20250514-v1:0",
    "amazon.nova-pro-v1:0",
    "meta.llama3-1-70b-instruct-v1:0",
    "arn:aws:bedrock:us-east-1:123456789012:inference-profile/us.anthropic.claude-3-5-haiku-20241022-v1:0",
    "arn:aws:bedrock:eu-west-1::foundation-model/mistral.mistral-large-2407-v1:0",
]
BEDROCK_OPERATIONS = ["converse", "converse-stream", "invoke", "invoke-with-response-stream"]
REGIONS = ["us-east-1", "us-west-2", "eu-central-1", "ap-northeast-1", "eu-west-3"]
PATH_PIECES = list(string.ascii_letters + string.digits + "-._~") + [
    "%3A", "%2F", "%20", "%25", ":", "@", "!", "$", "&", "'", "(", ")", "*", "+", ",", ";", "=", "é", "ሴ", "%",
]
QUERY_CHARS = string.ascii_letters + string.digits + "-._~ =&+/:%?#é中"
VALUE_CHARS = string.ascii_letters + string.digits + " \t!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~"
HEADER_NAMES = ["content-type", "accept", "user-agent", "x-amz-target", "X-Custom-Header", "x-amzn-bedrock-trace",
                "anthropic-beta", "Accept-Encoding", "connection", "x-amzn-trace-id", "traceparent", "X-Amz-Meta-Tag"]


@pytest.fixture(scope="module")
def sign_check() -> Path:
    path = Path(os.environ.get("TOLLGATE_SIGN_CHECK_BIN") or REPO / "target" / "debug" / "tollgate-sign-check")
    if not path.is_file():
        pytest.exit(f"{path} not found: run `cargo build -p tollgate-tests` or set TOLLGATE_SIGN_CHECK_BIN", 2)
    return path


def run_rust(binary: Path, requests: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One process for the whole batch: a JSON request per line in, a JSON answer per line out."""
    stdin = "".join(json.dumps(r) + "\n" for r in requests)
    done = subprocess.run([str(binary)], input=stdin, capture_output=True, text=True, timeout=120, check=True)
    answers = [json.loads(line) for line in done.stdout.splitlines()]
    assert len(answers) == len(requests)
    return answers


# ---- SigV4 vs botocore ----


def random_text(rng: random.Random, chars: str, low: int, high: int) -> str:
    return "".join(rng.choice(chars) for _ in range(rng.randint(low, high)))


def random_path(rng: random.Random) -> str:
    if rng.random() < 0.5:
        model = rng.choice(BEDROCK_MODELS)
        # As botocore serialises a path member: one segment, `:` and `/` percent-encoded.
        return f"/model/{quote(model, safe='')}/{rng.choice(BEDROCK_OPERATIONS)}"
    segments = []
    for _ in range(rng.randint(0, 6)):
        roll = rng.random()
        if roll < 0.08:
            segments.append(".")
        elif roll < 0.16:
            segments.append("..")
        elif roll < 0.22:
            segments.append("")
        else:
            segments.append("".join(rng.choice(PATH_PIECES) for _ in range(rng.randint(1, 12))))
    path = "/" + "/".join(segments)
    if rng.random() < 0.2:
        path += "/"
    return path


def random_query(rng: random.Random) -> str:
    """A query in canonical form (each name and value strictly encoded), as SDKs put it on the wire."""
    pairs = []
    names: list[str] = []
    for _ in range(rng.choice([0, 0, 1, 2, 3, 5])):
        if names and rng.random() < 0.2:
            name = rng.choice(names)  # a repeated name, sorted by value
        else:
            name = random_text(rng, QUERY_CHARS, 1, 10)
            names.append(name)
        encoded = quote(name, safe="-_.~")
        roll = rng.random()
        if roll < 0.15:
            pairs.append(encoded)  # no `=`
        elif roll < 0.3:
            pairs.append(encoded + "=")
        else:
            pairs.append(encoded + "=" + quote(random_text(rng, QUERY_CHARS, 1, 16), safe="-_.~"))
    return "&".join(pairs)


def random_headers(rng: random.Random, host: str) -> list[list[str]]:
    headers = []
    for name in rng.sample(HEADER_NAMES, rng.randint(0, 5)):
        value = random_text(rng, VALUE_CHARS, 0, 30)
        if rng.random() < 0.3:
            value = "  " + value.replace(" ", "   ") + " \t "
        headers.append([name, value.strip() if rng.random() < 0.3 else value])
    if rng.random() < 0.2:
        headers.append(["Host", host])
    rng.shuffle(headers)
    return headers


def random_sigv4_case(rng: random.Random) -> dict[str, Any]:
    region = rng.choice(REGIONS)
    scheme, host = rng.choice([
        ("https", f"bedrock-runtime.{region}.amazonaws.com"),
        ("https", f"bedrock-runtime.{region}.amazonaws.com:443"),
        ("https", f"bedrock-runtime-fips.{region}.amazonaws.com:8443"),
        ("http", "localhost:4566"),
        ("http", "127.0.0.1:80"),
    ])
    query = random_query(rng)
    url = f"{scheme}://{host}{random_path(rng)}" + (f"?{query}" if query else "")
    body_kind = rng.random()
    if body_kind < 0.2:
        body = b""
    elif body_kind < 0.8:
        body = json.dumps({"messages": [{"role": "user", "content": [{"text": random_text(rng, VALUE_CHARS, 0, 200)}]}]}).encode()
    else:
        body = bytes(rng.getrandbits(8) for _ in range(rng.randint(1, 300)))
    token = None
    if rng.random() < 0.4:
        token = random_text(rng, string.ascii_letters + string.digits + "/+=", 40, 300)
    return {
        "kind": "sigv4",
        "access_key_id": "AKIA" + random_text(rng, string.ascii_uppercase + string.digits, 16, 16),
        "secret_access_key": random_text(rng, string.ascii_letters + string.digits + "/+", 40, 40),
        "session_token": token,
        "region": region,
        "service": "bedrock" if rng.random() < 0.8 else rng.choice(["bedrock-mantle", "sts", "execute-api"]),
        "method": rng.choice(["POST", "POST", "GET", "PUT", "DELETE"]),
        "url": url,
        "headers": random_headers(rng, host.removesuffix(":443").removesuffix(":80")),
        "body_base64": base64.b64encode(body).decode(),
        "time": rng.randint(1_420_070_400, 2_082_758_399),  # 2015 .. 2035
        "content_sha256_header": rng.random() < 0.3,
    }


def botocore_signed_headers(case: dict[str, Any]) -> dict[str, str]:
    body = base64.b64decode(case["body_base64"])
    headers = {name: value for name, value in case["headers"]}
    if case["content_sha256_header"]:
        # botocore's SigV4Auth signs this header and uses its value as the payload hash.
        headers["X-Amz-Content-SHA256"] = hashlib.sha256(body).hexdigest()
    request = AWSRequest(method=case["method"], url=case["url"], headers=headers, data=body)
    credentials = Credentials(case["access_key_id"], case["secret_access_key"], case["session_token"])
    now = datetime.datetime.fromtimestamp(case["time"], tz=datetime.timezone.utc)
    with mock.patch("botocore.auth.get_current_datetime", return_value=now):
        SigV4Auth(credentials, case["service"], case["region"]).add_auth(request)
    return {name.lower(): value for name, value in request.headers.items()}


def test_sigv4_matches_botocore_on_random_requests(sign_check: Path) -> None:
    rng = random.Random(SEED)
    cases = [random_sigv4_case(rng) for _ in range(SIGV4_CASES)]
    answers = run_rust(sign_check, cases)
    for case, answer in zip(cases, answers):
        assert "error" not in answer, (SEED, case, answer)
        ours = answer["headers"]
        theirs = botocore_signed_headers(case)
        context = (SEED, case["url"], case["headers"])
        assert ours["authorization"] == theirs["authorization"], context
        assert ours["x-amz-date"] == theirs["x-amz-date"], context
        assert ours.get("x-amz-security-token") == theirs.get("x-amz-security-token"), context
        assert ours.get("x-amz-content-sha256") == theirs.get("x-amz-content-sha256"), context
        expected = {"authorization", "x-amz-date"}
        expected |= {"x-amz-security-token"} if case["session_token"] else set()
        expected |= {"x-amz-content-sha256"} if case["content_sha256_header"] else set()
        assert set(ours) == expected, context


def test_botocore_signs_bedrock_model_ids_doubly_encoded(sign_check: Path) -> None:
    """The rule the Rust signer encodes (`%3A` on the wire, `%253A` signed) is botocore's too."""
    model = "anthropic.claude-3-5-sonnet-20240620-v1:0"
    url = f"https://bedrock-runtime.us-east-1.amazonaws.com/model/{quote(model, safe='')}/converse"
    request = AWSRequest(method="POST", url=url, data=b"{}", headers={"X-Amz-Date": "20240620T000000Z"})
    auth = SigV4Auth(Credentials("AKIDEXAMPLE", "secret"), "bedrock", "us-east-1")
    canonical = auth.canonical_request(request)
    assert canonical.splitlines()[1] == "/model/anthropic.claude-3-5-sonnet-20240620-v1%253A0/converse"
    case = {
        "kind": "sigv4", "access_key_id": "AKIDEXAMPLE", "secret_access_key": "secret", "region": "us-east-1",
        "service": "bedrock", "method": "POST", "url": url, "headers": [["content-type", "application/json"]],
        "body_base64": base64.b64encode(b"{}").decode(), "time": 1_718_841_600,
    }
    [answer] = run_rust(sign_check, [case])
    assert answer["headers"]["authorization"] == botocore_signed_headers({**case, "session_token": None,
                                                                          "content_sha256_header": False})["authorization"]


# ---- RS256 service-account assertions vs PyJWT ----


def service_account(rng: random.Random, key: rsa.RSAPrivateKey, pkcs1: bool) -> dict[str, Any]:
    fmt = serialization.PrivateFormat.TraditionalOpenSSL if pkcs1 else serialization.PrivateFormat.PKCS8
    pem = key.private_bytes(serialization.Encoding.PEM, fmt, serialization.NoEncryption()).decode()
    account = {
        "type": "service_account",
        "project_id": "tollgate-test",
        "private_key": pem,
        "client_email": f"{random_text(rng, string.ascii_lowercase + string.digits + '-', 6, 30)}"
        f"@tollgate-test.iam.gserviceaccount.com",
        "token_uri": rng.choice(["https://oauth2.googleapis.com/token", "https://sts.example.test/v1/token",
                                 "http://127.0.0.1:8089/token"]),
    }
    if rng.random() < 0.7:
        account["private_key_id"] = random_text(rng, string.hexdigits.lower(), 40, 40)
    return account


def test_jwt_assertion_is_identical_to_pyjwt(sign_check: Path) -> None:
    rng = random.Random(SEED)
    keys = [rsa.generate_private_key(public_exponent=65537, key_size=size) for size in (2048, 3072, 4096)]
    cases, accounts = [], []
    for _ in range(JWT_CASES):
        key = rng.choice(keys)
        account = service_account(rng, key, pkcs1=rng.random() < 0.2)
        accounts.append((account, key))
        cases.append({"kind": "jwt", "service_account_json": json.dumps(account),
                      "issued_at": rng.randint(1_420_070_400, 2_082_758_399)})
    answers = run_rust(sign_check, cases)
    for case, answer, (account, key) in zip(cases, answers, accounts):
        assert "error" not in answer, (SEED, answer)
        iat = case["issued_at"]
        claims = {"iss": account["client_email"], "scope": CLOUD_PLATFORM, "aud": account["token_uri"],
                  "iat": iat, "exp": iat + 3600}
        kid = account.get("private_key_id")
        expected = jwt.encode(claims, account["private_key"], algorithm="RS256",
                              headers={"kid": kid} if kid else None)
        assert answer["assertion"] == expected, (SEED, account["client_email"])
        decoded = jwt.decode(answer["assertion"], key.public_key(), algorithms=["RS256"],
                             audience=account["token_uri"], options={"verify_exp": False, "verify_iat": False})
        assert decoded == claims
        assert jwt.get_unverified_header(answer["assertion"]) == (
            {"alg": "RS256", "kid": kid, "typ": "JWT"} if kid else {"alg": "RS256", "typ": "JWT"})


def test_sign_check_reports_refused_requests(sign_check: Path) -> None:
    answers = run_rust(sign_check, [
        {"kind": "jwt", "service_account_json": json.dumps({"client_email": "a@b", "private_key": "not a pem"}),
         "issued_at": 0},
        {"kind": "sigv4", "access_key_id": "A", "secret_access_key": "s", "region": "r", "service": "s",
         "method": "GET", "url": "/relative", "headers": [], "body_base64": "", "time": 0},
    ])
    assert "service-account private_key is not a PEM block" in answers[0]["error"]
    assert "not absolute" in answers[1]["error"]

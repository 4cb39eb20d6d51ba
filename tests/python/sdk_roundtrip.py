"""Drives FakeScalekit with Scalekit's official Python SDK (scalekit-sdk-python), over TLS.

Run by tests/python_sdk.rs with SCALEKIT_ENVIRONMENT_URL / SCALEKIT_CLIENT_ID /
SCALEKIT_CLIENT_SECRET pointing at the fake, and GRPC_DEFAULT_SSL_ROOTS_FILE_PATH and
REQUESTS_CA_BUNDLE naming the fake's CA. Every step asserts what Scalekit would answer; the
last line of stdout is a JSON summary (token ids only, never a key) for the Rust side.
"""
import json
import os
import sys

from scalekit import ScalekitClient
from scalekit.common.exceptions import ScalekitValidateTokenFailureException

ORG = "org_59615193906282635"
USER = "usr_63261492986167383"


def check(condition, what):
    if not condition:
        print(f"FAILED: {what}", file=sys.stderr)
        sys.exit(1)


def main():
    client = ScalekitClient(
        os.environ["SCALEKIT_ENVIRONMENT_URL"],
        os.environ["SCALEKIT_CLIENT_ID"],
        os.environ["SCALEKIT_CLIENT_SECRET"],
    )
    tokens = client.tokens

    # Create: an organization-scoped key, and a user-scoped one with claims.
    org = tokens.create_token(organization_id=ORG, description="sdk org key")
    check(org.token and org.token_id.startswith("apit_"), "org key created")
    check(org.token_info.organization_id == ORG, "org key's organization")
    check(not org.token_info.HasField("user_id"), "org key has no user")
    check(org.token_info.token_suffix == org.token[-4:], "token_suffix is the key's tail")
    user = tokens.create_token(
        organization_id=ORG,
        user_id=USER,
        custom_claims={"team": "engineering", "environment": "production"},
        description="sdk user key",
    )
    check(user.token_info.user_id == USER, "user key's user")
    check(dict(user.token_info.custom_claims) == {"team": "engineering", "environment": "production"},
          "claims echoed")

    # Validate, by key and by token id (Scalekit accepts both).
    info = tokens.validate_token(user.token).token_info
    check(info.token_id == user.token_id, "validate returns the token id")
    check(info.user_id == USER and info.custom_claims["team"] == "engineering", "validate facts")
    check(info.HasField("created_at") and info.created_at.seconds > 0, "created_at set")
    by_id = tokens.validate_token(user.token_id).token_info
    check(by_id.token_id == user.token_id, "validate by token id")

    # List: both keys of the organization; the user's alone with user_id.
    page = tokens.list_tokens(organization_id=ORG, page_size=30)
    ids = {t.token_id for t in page.tokens}
    check({org.token_id, user.token_id} <= ids, f"list holds both keys: {sorted(ids)}")
    check(page.total_count >= 2, "total_count")
    mine = tokens.list_tokens(organization_id=ORG, user_id=USER)
    check([t.token_id for t in mine.tokens] == [user.token_id], "list by user")
    # Paging with page_size 1 walks both keys.
    first = tokens.list_tokens(organization_id=ORG, page_size=1)
    check(len(first.tokens) == 1 and first.next_page_token, "a first page with a cursor")
    second = tokens.list_tokens(organization_id=ORG, page_size=1, page_token=first.next_page_token)
    check(len(second.tokens) == 1 and second.tokens[0].token_id != first.tokens[0].token_id,
          "the second page is another key")

    # Update: claims merged by the SDK (it validates first), description replaced.
    updated = tokens.update_token(user.token, custom_claims={"team": "platform"},
                                  description="renamed").token_info
    check(updated.custom_claims["team"] == "platform", "claim updated")
    check(updated.custom_claims["environment"] == "production", "other claim kept")
    check(updated.description == "renamed", "description updated")

    # Invalidate the org key; validating it now raises the SDK's own exception.
    tokens.invalidate_token(org.token)
    try:
        tokens.validate_token(org.token)
        check(False, "a revoked key must not validate")
    except ScalekitValidateTokenFailureException:
        pass
    # Idempotent: invalidating again is no error.
    tokens.invalidate_token(org.token_id)

    # A key nobody minted.
    try:
        tokens.validate_token("Zz9" * 19 + "00000000000000000001")
        check(False, "an unknown key must not validate")
    except ScalekitValidateTokenFailureException:
        pass

    after = {t.token_id for t in tokens.list_tokens(organization_id=ORG, page_size=30).tokens}
    check(org.token_id not in after and user.token_id in after, "list after invalidate")

    # The keys themselves go to a file the test made (never to stdout).
    keys_file = os.environ.get("SDK_KEYS_FILE")
    if keys_file:
        with open(keys_file, "w") as f:
            json.dump({"alive": user.token, "revoked": org.token}, f)
    print(json.dumps({"revoked": org.token_id, "alive": user.token_id}))


if __name__ == "__main__":
    main()

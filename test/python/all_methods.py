"""Every method of the Python CommunicationIdentityClient, sync and aio, against the emulator.

Reads COMMUNICATION_SERVICES_CONNECTION_STRING, and TEAMS_AAD_TOKEN / TEAMS_APP_ID / TEAMS_USER_ID
for the Teams exchange. TLS trust comes from REQUESTS_CA_BUNDLE (requests) and SSL_CERT_FILE
(aiohttp's default SSL context). Prints one JSON line per call; exits 1 at the first wrong answer.
"""
import asyncio
import json
import os
import sys
import re
import time
from datetime import datetime, timedelta

from azure.communication.identity import CommunicationIdentityClient, CommunicationTokenScope
from azure.communication.identity.aio import CommunicationIdentityClient as AsyncClient
from azure.core.exceptions import HttpResponseError

conn = os.environ["COMMUNICATION_SERVICES_CONNECTION_STRING"]
teams = (os.environ["TEAMS_AAD_TOKEN"], os.environ["TEAMS_APP_ID"], os.environ["TEAMS_USER_ID"])


def report(mode, method, **fields):
    print(json.dumps({"mode": mode, "method": method, **fields}), flush=True)


def check(condition, message):
    if not condition:
        print("CHECK FAILED: " + message, file=sys.stderr, flush=True)
        sys.exit(1)


def epoch(expires_on):
    """This SDK version hands `expiresOn` through as the service's string (7 fractional digits)."""
    if isinstance(expires_on, (int, float)):
        return float(expires_on)
    match = re.fullmatch(r"(.+T\d\d:\d\d:\d\d)(?:\.(\d+))?(Z|[+-]\d\d:\d\d)", expires_on)
    check(match is not None, "expiresOn is ISO 8601: " + expires_on)
    base, fraction, zone = match.groups()
    fraction = (fraction or "0")[:6].ljust(6, "0")
    return datetime.fromisoformat(base + "." + fraction + zone.replace("Z", "+00:00")).timestamp()


def check_token(token, minutes):
    check(token.token.count(".") == 2, "token is a JWT")
    left = epoch(token.expires_on) - time.time()
    check(minutes * 60 - 120 < left <= minutes * 60 + 1, "expires in %d minutes, got %.0f s" % (minutes, left))


def run_sync():
    client = CommunicationIdentityClient.from_connection_string(conn)
    user = client.create_user()
    check(user.properties["id"].startswith("8:acs:"), "create_user returns an ACS id")
    report("sync", "create_user", id=user.properties["id"])

    token = client.get_token(user, [CommunicationTokenScope.CHAT, CommunicationTokenScope.VOIP])
    check_token(token, 1440)
    report("sync", "get_token", expires_on=token.expires_on)

    token = client.get_token(user, [CommunicationTokenScope.CHAT], token_expires_in=timedelta(hours=1))
    check_token(token, 60)
    report("sync", "get_token(1h)", expires_on=token.expires_on)

    user2, token2 = client.create_user_and_token([CommunicationTokenScope.VOIP], token_expires_in=timedelta(minutes=90))
    check_token(token2, 90)
    report("sync", "create_user_and_token", id=user2.properties["id"])

    client.revoke_tokens(user)
    report("sync", "revoke_tokens")

    teams_token = client.get_token_for_teams_user(*teams)
    check(teams_token.token.count(".") == 2, "teams token is a JWT")
    report("sync", "get_token_for_teams_user", expires_on=teams_token.expires_on)

    try:
        client.get_token(user, ["chat"], token_expires_in=timedelta(minutes=59))
        check(False, "59 minutes must be refused")
    except HttpResponseError as error:
        check(error.status_code == 400, "59 minutes answers 400")
        report("sync", "get_token(59m)", status=error.status_code)

    client.delete_user(user)
    client.delete_user(user2)
    report("sync", "delete_user")
    try:
        client.get_token(user, ["chat"])
        check(False, "a deleted user cannot get a token")
    except HttpResponseError as error:
        report("sync", "get_token(deleted)", status=error.status_code)


async def run_async():
    async with AsyncClient.from_connection_string(conn) as client:
        user = await client.create_user()
        check(user.properties["id"].startswith("8:acs:"), "aio create_user returns an ACS id")
        report("aio", "create_user", id=user.properties["id"])

        token = await client.get_token(user, [CommunicationTokenScope.VOIP])
        check_token(token, 1440)
        report("aio", "get_token", expires_on=token.expires_on)

        user2, token2 = await client.create_user_and_token([CommunicationTokenScope.CHAT], token_expires_in=timedelta(hours=2))
        check_token(token2, 120)
        report("aio", "create_user_and_token", id=user2.properties["id"])

        await client.revoke_tokens(user)
        report("aio", "revoke_tokens")

        teams_token = await client.get_token_for_teams_user(*teams)
        check(teams_token.token.count(".") == 2, "aio teams token is a JWT")
        report("aio", "get_token_for_teams_user", expires_on=teams_token.expires_on)

        await client.delete_user(user)
        await client.delete_user(user2)
        report("aio", "delete_user")


run_sync()
asyncio.run(run_async())
print("ALL METHODS OK", flush=True)

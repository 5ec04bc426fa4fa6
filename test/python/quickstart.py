"""The ACS user-access-token quickstart, in Python, as a developer would run it against Azure.

Only the connection string (and, for the emulator's throwaway CA, REQUESTS_CA_BUNDLE) comes from
the environment; the SDK speaks its default api-version. Any failure exits non-zero.
"""
import os
from datetime import timedelta

from azure.communication.identity import CommunicationIdentityClient, CommunicationTokenScope

connection_string = os.environ["COMMUNICATION_SERVICES_CONNECTION_STRING"]
client = CommunicationIdentityClient.from_connection_string(connection_string)

identity = client.create_user()
print("Created an identity with ID: " + identity.properties["id"])

token_result = client.get_token(identity, [CommunicationTokenScope.VOIP])
print("Issued an access token with 'voip' scope that expires at " + str(token_result.expires_on))

one_hour = client.get_token(identity, [CommunicationTokenScope.VOIP], token_expires_in=timedelta(hours=1))
print("Issued a one-hour access token that expires at " + str(one_hour.expires_on))

identity2, token2 = client.create_user_and_token([CommunicationTokenScope.CHAT])
print("Created an identity with ID " + identity2.properties["id"] + " and a token expiring at " + str(token2.expires_on))

client.revoke_tokens(identity)
print("Revoked access tokens for " + identity.properties["id"])

client.delete_user(identity)
client.delete_user(identity2)
print("Deleted the identities")
print("QUICKSTART OK")

"""A valid set of values for every provider and auth method, shared by the registry and model tests."""

import json

from providers.catalogue import PROVIDER_LIST

SERVICE_ACCOUNT = {
    "type": "service_account",
    "project_id": "my-project-123",
    "client_email": "gateway@my-project-123.iam.gserviceaccount.com",
    "private_key": "-----BEGIN PRIVATE KEY-----\nMIIplanted\n-----END PRIVATE KEY-----\n",
    "token_uri": "https://oauth2.googleapis.com/token",
}

VALID_SECRET_VALUES = {
    "api_key": "sk-valid-0123456789abcdefghijklmn",
    "client_secret": "client-secret-0123456789abcdef",
    "service_account_json": json.dumps(SERVICE_ACCOUNT),
    "aws_access_key_id": "AKIAIOSFODNN7EXAMPLE",
    "aws_secret_access_key": "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
    "aws_session_token": "FwoGZXIvYXdzEXAMPLEsessiontoken0123456789",
    "token": "dapi0123456789abcdef0123456789abcdef",
}

VALID_CONFIG_VALUES = {
    "endpoint_url": "https://my-resource.openai.azure.com",
    "api_version": "2024-10-21",
    "tenant_id": "72f988bf-86f1-41af-91ab-2d7cd011db47",
    "client_id": "00000000-1111-2222-3333-444444444444",
    "project_id": "my-project-123",
    "location": "europe-west4",
    "region": "us-east-1",
    "host": "https://dbc-1234.cloud.databricks.com",
    "base_url": "https://llm.example.com/v1",
    "organization": "org-abc123",
}


def all_methods():
    """(provider, method) for every auth method in the registry."""
    return [(provider, method) for provider in PROVIDER_LIST for method in provider.auth_methods]


def method_id(case) -> str:
    provider, method = case
    return f"{provider.id}/{method.id}"


def valid_secrets(method) -> dict:
    return {f.name: VALID_SECRET_VALUES[f.name] for f in method.secret_fields}


def valid_config(method, *, required_only: bool = False) -> dict:
    return {
        f.name: VALID_CONFIG_VALUES[f.name] for f in method.config_fields if f.required or not required_only
    }

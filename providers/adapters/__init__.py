"""Adapters are named in the catalogue (`Provider.adapter`); this finds and shares their instances."""

from functools import cache

from django.utils.module_loading import import_string

from .. import errors
from ..catalogue import PROVIDERS
from ..errors import GatewayError
from .base import Adapter


@cache
def adapter_for(provider_id: str) -> Adapter:
    """The adapter instance for a provider; a 501 when no client can call that provider yet."""
    provider = PROVIDERS.get(provider_id)
    if provider is None or not provider.adapter:
        label = provider.label if provider else f"provider '{provider_id}'"
        raise GatewayError(
            501, errors.INVALID_REQUEST, "provider_not_supported", f"The gateway cannot call {label} yet."
        )
    return import_string(provider.adapter)()

"""A system check run at start-up (and by `manage.py check`): every catalogue entry's client imports."""

from django.core.checks import Error, register
from django.utils.module_loading import import_string

from .adapters.base import Adapter
from .catalogue import PROVIDER_LIST, Provider


@register()
def adapters_import(app_configs, **kwargs) -> list[Error]:
    """A provider whose adapter does not import would fail on its first call: fail at start-up instead."""
    return adapter_problems(PROVIDER_LIST)


def adapter_problems(providers: tuple[Provider, ...]) -> list[Error]:
    problems = []
    for provider in providers:
        try:
            adapter = import_string(provider.adapter)
        except ImportError as error:
            problems.append(Error(
                f"The catalogue names '{provider.adapter}' as the client of {provider.label}, but it does not import: "
                f"{error}",
                hint="Fix the dotted path in providers/catalogue.py, or the module it names.",
                obj=provider.id, id="providers.E001",
            ))
            continue
        if not (isinstance(adapter, type) and issubclass(adapter, Adapter)):
            problems.append(Error(
                f"The catalogue names '{provider.adapter}' as the client of {provider.label}, which is not an Adapter.",
                obj=provider.id, id="providers.E002",
            ))
    return problems

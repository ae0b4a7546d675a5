"""The start-up check: every catalogue entry names a client that imports (`manage.py migrate` runs it first)."""

import subprocess
import sys
from dataclasses import replace
from pathlib import Path

from providers.catalogue import PROVIDER_LIST, PROVIDERS
from providers.checks import adapter_problems

REPO = Path(__file__).resolve().parent.parent.parent


def test_the_shipped_catalogue_passes():
    assert adapter_problems(PROVIDER_LIST) == []


def test_an_adapter_that_does_not_import_is_an_error_naming_the_provider_and_the_path():
    broken = replace(PROVIDERS["mistral"], adapter="providers.adapters.no_such_module.MistralAdapter")
    not_an_adapter = replace(PROVIDERS["groq"], adapter="providers.catalogue.Provider")

    problems = adapter_problems((PROVIDERS["openai"], broken, not_an_adapter))

    assert [(problem.id, problem.obj) for problem in problems] == [
        ("providers.E001", "mistral"), ("providers.E002", "groq")]
    assert "providers.adapters.no_such_module.MistralAdapter" in problems[0].msg and "Mistral" in problems[0].msg


def test_manage_py_check_runs_it():
    result = subprocess.run([sys.executable, "manage.py", "check"], cwd=REPO, capture_output=True, text=True,
                            env={"PATH": "/usr/bin:/bin", "DJANGO_SETTINGS_MODULE": "config.settings_test"})
    assert result.returncode == 0, result.stderr
    assert "System check identified no issues" in result.stdout

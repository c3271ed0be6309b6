"""Fixtures for the abuse tests. This process moves into a network namespace of its own
before anything else runs (abusebed.enter_client_namespace), so what it sends stays in the
namespaces made here."""
import os
import shutil
import sys
import tempfile

import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import abusebed  # noqa: E402

FIGURES = []


def pytest_configure(config):
    abusebed.enter_client_namespace()


def pytest_unconfigure(config):
    abusebed.leave_client_namespace()


def pytest_terminal_summary(terminalreporter):
    if FIGURES:
        terminalreporter.section("abuse figures")
        for line in FIGURES:
            terminalreporter.write_line(line)


@pytest.fixture
def figures(request):
    """Lines for the summary at the end of the run (they show whether the test passed or not)."""
    def add(line):
        FIGURES.append(f"{request.node.name}: {line}")
    return add


@pytest.fixture
def workdir():
    d = tempfile.mkdtemp(prefix="videophone-abuse-")
    yield d
    shutil.rmtree(d, ignore_errors=True)


@pytest.fixture
def bed(workdir):
    b = abusebed.AbuseBed(workdir)
    yield b
    b.close()

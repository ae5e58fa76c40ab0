"""A loopback OTLP/HTTP receiver shared by the telemetry tests."""

from __future__ import annotations

import pytest

from app.devstack.threaded import ThreadedServer
from tests.support.otlp_receiver import OtlpReceiver


@pytest.fixture(scope="session")
def otlp():
    receiver = OtlpReceiver()
    with ThreadedServer(receiver.app) as server:
        receiver.url = server.url
        yield receiver


@pytest.fixture
def receiver(otlp):
    otlp.reset()
    yield otlp
    otlp.reset()

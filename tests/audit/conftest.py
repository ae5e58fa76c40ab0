"""Fixtures for the audit store: Azurite over HTTPS and a managed-identity stand-in, both on loopback."""

from __future__ import annotations

import uuid

import pytest
from azure.identity import ManagedIdentityCredential
from azure.storage.blob import BlobServiceClient

from app.devstack.threaded import ThreadedServer
from tests.support.azurite import Azurite, IdentityStandIn


@pytest.fixture(scope="session")
def identity():
    standin = IdentityStandIn()
    with ThreadedServer(standin.app) as server:
        standin.url = server.url
        yield standin


@pytest.fixture
def credential(identity, monkeypatch):
    """The same credential class the server uses in Azure, pointed at the stand-in by its env vars."""
    for name, value in identity.env().items():
        monkeypatch.setenv(name, value)
    return ManagedIdentityCredential(client_id=identity.client_id)


@pytest.fixture(scope="session")
def azurite(tmp_path_factory):
    """One Azurite for the read/write tests; tests that stop it start their own."""
    instance = Azurite(tmp_path_factory.mktemp("azurite")).start()
    yield instance
    instance.stop()


def make_container(azurite: Azurite, credential) -> str:
    """A fresh container, created the way the deployment creates it (not by the app)."""
    name = f"audit-{uuid.uuid4().hex[:12]}"
    with BlobServiceClient(azurite.account_url, credential=credential, connection_verify=azurite.ca_file) as service:
        service.create_container(name)
    return name


@pytest.fixture
def container(azurite, credential) -> str:
    return make_container(azurite, credential)

"""Settings are validated in one place and refuse unsafe combinations with a clear message."""

from __future__ import annotations

import pytest

from app.config import ConfigError, load_settings
from app.urls import is_loopback_host


class TestGitHubApiUrl:
    @pytest.mark.parametrize("url", ["https://api.github.com", "https://ghe.example.com/api/v3",
                                     "http://127.0.0.1:8000", "http://localhost:9"])
    def test_https_or_loopback_http_is_accepted(self, url):
        assert load_settings({"GITHUB_API_URL": url}).github_api_url == url.rstrip("/")

    @pytest.mark.parametrize("url", ["http://api.github.com", "ftp://api.github.com", "api.github.com"])
    def test_the_token_never_travels_in_clear_to_another_host(self, url):
        with pytest.raises(ConfigError, match="GITHUB_API_URL"):
            load_settings({"GITHUB_API_URL": url})


class TestModesAndTransports:
    def test_defaults_are_safe(self):
        settings = load_settings({})
        assert (settings.host, settings.port, settings.mode, settings.auth) == ("127.0.0.1", 8080, "env", None)

    def test_stdio_needs_an_audit_file(self):
        with pytest.raises(ConfigError, match="MCP_AUDIT_LOG"):
            load_settings({}, transport="stdio")
        assert load_settings({"MCP_AUDIT_LOG": "/tmp/a.jsonl"}, transport="stdio").transport == "stdio"

    @pytest.mark.parametrize("host, loopback", [("127.0.0.1", True), ("127.9.9.9", True), ("::1", True),
                                                ("localhost", True), ("0.0.0.0", False), ("10.0.0.1", False)])
    def test_loopback_detection(self, host, loopback):
        assert is_loopback_host(host) is loopback

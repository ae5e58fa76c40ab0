"""The GitHub stand-in honours the search qualifiers the README shows (issue 14, item 12)."""

from __future__ import annotations

import httpx
import pytest

from app.devstack.standins import GitHubStandIn
from app.devstack.threaded import ThreadedServer

TOKEN = "standin-token"


@pytest.fixture(scope="module")
def search():
    standin = GitHubStandIn(tokens={TOKEN})
    with ThreadedServer(standin.app) as server:
        def run(query: str) -> list[dict]:
            response = httpx.get(f"{server.url}/search/issues", params={"q": query, "per_page": 100},
                                 headers={"Authorization": f"Bearer {TOKEN}"})
            return response.json()["items"]
        yield run


class TestQualifiers:
    def test_open_bugs_are_only_open_bugs(self, search):
        found = search("is:open label:bug")
        assert found and all(item["state"] == "open" and item["labels"][0]["name"] == "bug" for item in found)

    def test_closed_and_repo_narrow_together(self, search):
        found = search("is:closed repo:acme/api crash")
        assert found and all(item["state"] == "closed" and item["repo"] == "acme/api" for item in found)
        assert {item["title"] for item in found} == {"Crash on start with empty config"}

    def test_a_label_nobody_has_finds_nothing(self, search):
        assert search("label:wontfix") == []

"""Client credentials in the query string are not forwarded, like credential headers."""

from __future__ import annotations

from proxy.settings import Provider
from proxy.upstream import upstream_query

SERVICE = Provider(name="p", base_url="http://u")
BYOK = Provider(name="p", base_url="http://u", bring_your_own_key=True)


def test_credential_parameters_are_dropped_and_the_rest_kept_byte_exact() -> None:
    query = "a=1&key=sk-x&api%5Fkey=sk-y&Token=t&b=%20two+three&empty="
    assert upstream_query(query, SERVICE) == "a=1&b=%20two+three&empty="


def test_nothing_left_is_no_query() -> None:
    assert upstream_query("key=sk-x", SERVICE) is None
    assert upstream_query("", SERVICE) is None


def test_bring_your_own_key_providers_get_the_clients_key() -> None:
    assert upstream_query("key=sk-x&a=1", BYOK) == "key=sk-x&a=1"

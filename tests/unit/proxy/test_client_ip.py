"""X-Forwarded-For is believed only from trusted proxies."""

from __future__ import annotations

import ipaddress

from proxy.client_ip import resolve_client_ip


def test_client_ip_ignores_forwarded_for_from_untrusted_peers() -> None:
    trusted = [ipaddress.ip_network("10.0.0.0/8")]
    assert resolve_client_ip("203.0.113.9", "1.1.1.1", trusted) == "203.0.113.9"
    assert resolve_client_ip("10.0.0.5", "6.6.6.6, 198.51.100.7", trusted) == "198.51.100.7"
    assert resolve_client_ip("10.0.0.5", "198.51.100.7, 10.0.0.9", trusted) == "198.51.100.7"
    assert resolve_client_ip("10.0.0.5", "1.1.1.1", []) == "10.0.0.5"

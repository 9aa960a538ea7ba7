"""Toxiproxy v2 compatible fault proxy: the embedded server and a typed client.

Server: `python -m harness.toxiproxy --host 127.0.0.1 --port 8474 [--config FILE] [--seed N]`.
Client: `harness.toxiproxy.client.ToxiproxyClient`.
"""

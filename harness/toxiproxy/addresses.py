"""host:port parsing, resolving and binding, with Go's wording in errors."""

from __future__ import annotations

import asyncio
import socket

from .errors import ApiError, listen_error


def split_host_port(address: str) -> tuple[str, int]:
    """Split `host:port` / `[v6]:port` like Go's net.SplitHostPort; ValueError with Go text.

    An empty address is the wildcard with port 0, as Go's net.Listen takes it.
    """
    if address == "":
        return "", 0
    if address.startswith("["):
        end = address.find("]")
        if end < 0:
            raise ValueError(f"address {address}: missing ']' in address")
        host, rest = address[1:end], address[end + 1 :]
        if not rest.startswith(":"):
            raise ValueError(f"address {address}: missing port in address")
        port_text = rest[1:]
    else:
        if ":" not in address:
            raise ValueError(f"address {address}: missing port in address")
        host, _, port_text = address.rpartition(":")
        if ":" in host:
            raise ValueError(f"address {address}: too many colons in address")
    if port_text == "":
        return host, 0
    if not port_text.isdigit() or int(port_text) > 65535:
        raise ValueError(f"address {address}: invalid port")
    return host, int(port_text)


def join_host_port(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


async def resolve(address: str) -> tuple[int, str, int]:
    """(family, ip, port) for a listen address, IPv4 first, as Go's ResolveTCPAddr."""
    host, port = split_host_port(address)
    if host == "":
        return (socket.AF_INET6 if socket.has_ipv6 else socket.AF_INET), "", port
    loop = asyncio.get_running_loop()
    try:
        infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror:
        raise ValueError(f"lookup {host}: no such host") from None
    infos.sort(key=lambda info: info[0] != socket.AF_INET)
    family, _, _, _, sockaddr = infos[0]
    return family, str(sockaddr[0]), port


async def resolved_string(address: str) -> str:
    """Go's `net.ResolveTCPAddr(...).String()`; errors become a 500."""
    try:
        _, ip, port = await resolve(address)
    except ValueError as exc:
        raise ApiError(str(exc), 500) from None
    return join_host_port(ip, port) if ip else f":{port}"


async def bind(address: str) -> tuple[socket.socket, str]:
    """A listening socket for address and its real `ip:port` (port 0 picks one)."""
    try:
        family, ip, port = await resolve(address)
    except ValueError as exc:
        raise ApiError(f"listen tcp: {exc}", 500) from None
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if family == socket.AF_INET6 and ip == "":
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
            ip = "::"
        sock.bind((ip, port))
        sock.listen(1024)
        sock.setblocking(False)
    except OSError as exc:
        sock.close()
        raise listen_error(join_host_port(ip, port), exc) from None
    real = sock.getsockname()
    return sock, join_host_port(str(real[0]), int(real[1]))

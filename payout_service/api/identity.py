"""Who is calling: the name every servicer records as the actor of a change."""

from __future__ import annotations

import grpc


def caller_identity(context: grpc.aio.ServicerContext) -> str:
    """Client certificate CN when the caller uses mTLS, else its peer address."""
    auth = context.auth_context() or {}
    names = auth.get("x509_common_name") or auth.get("x509_subject_alternative_name")
    if names:
        return str(names[0].decode())
    return str(context.peer())

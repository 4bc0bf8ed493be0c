"""Connecting to RabbitMQ: connection parameters with safe defaults, and telling configuration errors
(wrong credentials, unknown vhost or host) from outages worth retrying.

pika reconnects on nothing by itself; the worker and the asset decide from this classification
whether to back off and retry or to stop with a message an operator can act on.
"""

from __future__ import annotations

import contextlib
import os
import re
import socket
from urllib.parse import parse_qs, urlsplit

import pika
import pika.exceptions

from killreport_assets.envvars import redact_url

# Broker-side heartbeat (seconds) unless the URL sets one: dead peers are noticed in about a minute,
# and every connection thread of this program runs its I/O loop far more often than that.
DEFAULT_HEARTBEAT = 30
# A publisher blocked by a broker memory or disk alarm fails after this long instead of hanging.
DEFAULT_BLOCKED_TIMEOUT = 300


# pika raises these whenever a connection ends during its handshake, whether the broker refused the
# login or spoke another protocol, or the network reset the connection (then its message names the
# lost stream): only the former are configuration errors.
_LOST_LINK = re.compile(r"StreamLostError|Connection reset|ConnectionResetError|EOF|timed out", re.I)
_CONFIG_ERRORS = (
    pika.exceptions.AuthenticationError,
    pika.exceptions.ProbableAuthenticationError,
    pika.exceptions.ProbableAccessDeniedError,
    pika.exceptions.IncompatibleProtocolError,
)


class BrokerConfigError(RuntimeError):
    """RabbitMQ refused this program's configuration; retrying cannot help. The message says what to fix."""


def parameters(url: str, role: str) -> pika.URLParameters:
    """pika parameters for `url`, tagged with `role` so operators can tell connections apart."""
    params = pika.URLParameters(url)
    query = parse_qs(urlsplit(url).query)
    if "heartbeat" not in query:
        params.heartbeat = DEFAULT_HEARTBEAT
    if "blocked_connection_timeout" not in query:
        params.blocked_connection_timeout = DEFAULT_BLOCKED_TIMEOUT
    params.client_properties = {
        "connection_name": f"killreport {role} {socket.gethostname()}:{os.getpid()}",
        "product": "killreport_assets",
    }
    return params


def config_error(exc: BaseException, url: str) -> BrokerConfigError | None:
    """A `BrokerConfigError` explaining `exc` when it is a configuration error, else None."""
    where = redact_url(url)
    if isinstance(exc, _CONFIG_ERRORS) and _LOST_LINK.search(str(exc)):
        return None  # pika's guess when the link dropped during the handshake: a network failure
    if isinstance(exc, pika.exceptions.ProbableAccessDeniedError):
        return BrokerConfigError(
            f"RabbitMQ at {where} denied access to the virtual host (does it exist, and may this user use "
            f"it? `rabbitmqctl list_vhosts`, `rabbitmqctl list_permissions -p VHOST`): {exc}"
        )
    if isinstance(exc, _CONFIG_ERRORS):
        return BrokerConfigError(
            f"RabbitMQ at {where} refused the login: check the user and password in "
            f"KILLREPORT_RABBITMQ_URL: {exc}"
        )
    if isinstance(exc, socket.gaierror):
        return BrokerConfigError(f"cannot resolve the RabbitMQ host of {where}: {exc}")
    if isinstance(exc, pika.exceptions.ChannelClosedByBroker) and exc.reply_code in (403, 406):
        return BrokerConfigError(
            f"RabbitMQ at {where} rejected the queue topology ({exc.reply_code} {exc.reply_text}). Either "
            "the user lacks configure permission on the vhost, or a queue with the same name but other "
            "arguments exists (declared by another program or an older version): delete it with "
            "`rabbitmqctl delete_queue NAME -p VHOST` once it is drained, or use another vhost."
        )
    return None


def broker_problem(exc: BaseException, url: str) -> str:
    """One line on why RabbitMQ at `url` could not be used: the configuration error when it is one,
    else what failed (pika's connection errors often carry no message of their own)."""
    error = config_error(exc, url)
    if error is not None:
        return str(error)
    detail = str(exc).strip() or "connection refused, or no broker listening there"
    return f"cannot reach RabbitMQ at {redact_url(url)}: {detail} ({type(exc).__name__}); is it running?"


def close_quietly(connection: pika.BlockingConnection | None) -> None:
    """Close `connection` if still open; a broken one has nothing left to hand back (the broker
    requeues whatever was unacknowledged)."""
    if connection is not None and connection.is_open:
        with contextlib.suppress(pika.exceptions.AMQPError):
            connection.close()

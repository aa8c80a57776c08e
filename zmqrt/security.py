"""Transport security: CURVE encryption of the ingest socket, with ZAP authentication of producers' keys.

Why: the ingest PULL accepts any peer that reaches its endpoint, so on a network anyone could inject tasks. With
CURVE on, libzmq runs a CURVE handshake on every ingest connection and asks the context's ZAP handler (a pyzmq
``ThreadAuthenticator``) whether the producer's public key is in the allowed-keys directory. A refused producer
never completes the handshake, so not one of its frames reaches the server: no task, no result.

Key files are pyzmq/czmq certificates made by :func:`make_keys` (``zmqrt keys DIR --name NAME``):
``NAME.key`` holds the public key (hand it to the other side), ``NAME.key_secret`` holds both keys (keep it, mode
0600). The server loads its own ``.key_secret``; producers' ``.key`` files go into the allowed-keys directory,
which is read once at start (restart the server to add or revoke a producer).
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
import warnings
import weakref
from pathlib import Path

import zmq
import zmq.auth
from zmq.auth.thread import ThreadAuthenticator

__all__ = ["CurveServer", "apply_client", "load_allowed", "load_public", "load_secret", "make_keys"]

log = logging.getLogger(__name__)

_SECRET_MODE = 0o600


def make_keys(directory: str | os.PathLike, name: str) -> tuple[str, str]:
    """Create ``DIR/NAME.key`` (public) and ``DIR/NAME.key_secret`` (mode 0600); return their paths.

    Refuses to overwrite either file: replacing a key silently would lock out every peer that trusts the old one.
    """
    if not name or os.sep in name or name.startswith("."):
        raise ValueError(f"key name must be a plain file name, got {name!r}")
    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    public, secret = out / f"{name}.key", out / f"{name}.key_secret"
    for path in (public, secret):
        if path.exists():
            raise FileExistsError(f"{path} already exists; refusing to overwrite a key (pick another name or "
                                  "delete the old pair first)")
    # pyzmq writes the files with the umask's mode. Write them into a private (0700) scratch directory, tighten the
    # secret, then hard-link into place: the secret is never readable by others, and link() never overwrites a file
    # that appeared meanwhile.
    scratch = tempfile.mkdtemp(prefix=f".{name}-", dir=out)
    try:
        tmp_public, tmp_secret = zmq.auth.create_certificates(scratch, name)
        os.chmod(tmp_secret, _SECRET_MODE)
        os.link(tmp_public, public)
        try:
            os.link(tmp_secret, secret)
        except BaseException:
            public.unlink()
            raise
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return str(public), str(secret)


def load_public(path: str | os.PathLike) -> bytes:
    """The public key (z85) of a certificate file (``NAME.key`` or ``NAME.key_secret``)."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f"CURVE key file {path} not found (make one with `zmqrt keys DIR --name NAME`)")
    try:
        public, _ = zmq.auth.load_certificate(path)
    except ValueError as exc:
        raise ValueError(f"{path} is not a zmq certificate: {exc}") from None
    return public


def load_secret(path: str | os.PathLike) -> tuple[bytes, bytes]:
    """``(public, secret)`` keys (z85) of a ``NAME.key_secret`` file."""
    load_public(path)  # the clear errors for a missing or malformed file
    public, secret = zmq.auth.load_certificate(path)
    if not secret:
        raise ValueError(f"{path} holds no secret key: it is a public certificate; give the NAME.key_secret file")
    return public, secret


def load_allowed(directory: str | os.PathLike) -> dict[bytes, bool]:
    """The public keys of every ``*.key`` certificate in ``directory``; at least one, else an error."""
    if not os.path.isdir(directory):
        raise FileNotFoundError(f"allowed-keys directory {directory} not found")
    try:
        keys = zmq.auth.load_certificates(directory)
    except ValueError as exc:
        raise ValueError(f"allowed-keys directory {directory}: {exc}") from None
    if not keys:
        # an empty directory would refuse every producer: almost certainly a mistake, so say so at start
        raise ValueError(f"allowed-keys directory {directory} holds no public certificate (*.key); copy each "
                         "producer's NAME.key there")
    return keys


def _stop_leaked(auth: ThreadAuthenticator) -> None:
    if auth.is_alive():
        warnings.warn("CurveServer was not closed", ResourceWarning, stacklevel=2)
        auth.stop()


class CurveServer:
    """ZAP authenticator on ``ctx`` admitting only the keys in ``allowed_dir``; :meth:`apply` makes a socket a
    CURVE server with the secret key in ``secret_file``. One per context (ZAP has one endpoint per context)."""

    def __init__(self, ctx: zmq.Context, secret_file: str | os.PathLike | None,
                 allowed_dir: str | os.PathLike | None) -> None:
        if secret_file is None or allowed_dir is None:  # half a configuration must not run open
            raise ValueError("CURVE needs both the server's secret key file (NAME.key_secret) and the allowed-keys "
                             "directory of producers' NAME.key files")
        self.public_key, self._secret_key = load_secret(secret_file)
        keys = load_allowed(allowed_dir)
        self.allowed_dir = str(allowed_dir)
        auth = ThreadAuthenticator(ctx, log=logging.getLogger(f"{__name__}.zap"))
        # configure before start: the handler never runs without its key list
        auth.configure_curve(domain="*", location=self.allowed_dir)
        try:
            auth.start()
        except zmq.ZMQError as exc:
            auth.stop()
            if exc.errno == zmq.EADDRINUSE:
                raise RuntimeError("this zmq.Context already has a ZAP handler (another CurveServer or "
                                   "Authenticator); use one per context") from None
            raise
        self._auth: ThreadAuthenticator | None = auth
        self._finalizer = weakref.finalize(self, _stop_leaked, auth)
        log.info("CURVE on: %d allowed producer key(s) from %s", len(keys), self.allowed_dir)

    def apply(self, sock: zmq.Socket) -> None:
        """Make ``sock`` a CURVE server. Call before bind/connect: options apply to connections made later."""
        if self._auth is None:
            raise RuntimeError("CurveServer is closed")
        sock.curve_secretkey = self._secret_key
        sock.curve_publickey = self.public_key
        sock.curve_server = True

    def close(self) -> None:
        """Stop the ZAP handler (after closing the sockets it guards: a new handshake then fails). Idempotent."""
        if self._auth is not None:
            self._auth.stop()
            self._auth = None
            self._finalizer.detach()

    @property
    def closed(self) -> bool:
        return self._auth is None

    def __enter__(self) -> CurveServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"CurveServer(public_key={self.public_key.decode()!r}, allowed_dir={self.allowed_dir!r})"


def apply_client(sock: zmq.Socket, client_secret_file: str | os.PathLike,
                 server_public_file: str | os.PathLike) -> None:
    """Make ``sock`` (a producer's PUSH) a CURVE client of the server whose public certificate is
    ``server_public_file``, authenticating with ``client_secret_file``. Call before connect."""
    public, secret = load_secret(client_secret_file)
    sock.curve_serverkey = load_public(server_public_file)
    sock.curve_publickey = public
    sock.curve_secretkey = secret

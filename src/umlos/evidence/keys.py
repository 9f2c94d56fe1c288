"""The local signing-key store behind ``umlos keys generate|show``.

Layout under :func:`home` (``$UMLOS_HOME``, else ``$XDG_CONFIG_HOME/umlos``, else
``~/.config/umlos``)::

    keys/                         mode 0700
        ed25519-<hex>.pem         one Ed25519 private key, PKCS#8 PEM, mode 0600
        default                   the key_id signing uses when none is named
    trust_store.cbor              TrustStore (canonical CBOR): the public keys this store trusts

``key_id = "ed25519:" + hex(SHA-256(raw 32-byte public key))`` (SIGNING_KEY_ID in
``contracts/digest_tags.yaml``); the file name uses ``-`` for the ``:``, which not every file
system accepts. Private keys stay here: nothing in this module writes one anywhere else, no
record or error message carries one, and :func:`load_signing_key` refuses a key file that group
or others can read (like ssh). Failures raise :class:`~umlos.errors.ContractViolationError`
with reason ``KEY_MISSING``, ``KEY_PERMISSIONS`` or ``KEY_MALFORMED``.

>>> import os, tempfile
>>> os.environ["UMLOS_HOME"] = tempfile.mkdtemp()  # a scratch store for this example
>>> info = generate_key()
>>> info.key_id == key_id(load_signing_key().public_key())
True
>>> trust_store().trust_roots == (info.public_key,)
True
>>> oct(info.path.stat().st_mode & 0o777)
'0o600'
>>> del os.environ["UMLOS_HOME"]
"""

from __future__ import annotations

import hashlib
import os
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from umlos._generated.records import TrustStore
from umlos.codec import decode, encode
from umlos.errors import ContractViolationError, Error
from umlos.evidence._frames import atomic_write, fsync_dir

KEY_ID_PREFIX: Final = "ed25519:"
KEYS_DIR: Final = "keys"
DEFAULT_FILE: Final = "default"
TRUST_STORE_FILE: Final = "trust_store.cbor"
# Spec decision 40: a local store is labelled local-v1 and declares no issuer policies.
LOCAL_TRUST_STORE_VERSION: Final = "local-v1"
NO_ISSUER_POLICIES: Final = bytes(32)
# A PKCS#8 PEM of an Ed25519 key is 119 bytes; anything far larger is not one.
MAX_KEY_FILE_BYTES: Final = 4096


@dataclass(frozen=True, slots=True)
class KeyInfo:
    """Public facts about one stored key (never the private key)."""

    key_id: str
    public_key: bytes
    path: Path
    is_default: bool


def home() -> Path:
    """The key store's root directory (``$UMLOS_HOME`` relocates it; tests set it)."""
    explicit = os.environ.get("UMLOS_HOME")
    if explicit:
        return Path(explicit)
    xdg = os.environ.get("XDG_CONFIG_HOME")
    return (Path(xdg) if xdg else Path.home() / ".config") / "umlos"


def public_key_bytes(key: Ed25519PublicKey | Ed25519PrivateKey) -> bytes:
    """The raw 32-byte public key."""
    public = key.public_key() if isinstance(key, Ed25519PrivateKey) else key
    return public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def key_id(public_key: Ed25519PublicKey | bytes) -> str:
    """``"ed25519:" + hex(SHA-256(raw public key))``.

    >>> key_id(bytes(32))
    'ed25519:66687aadf862bd776c8fc18b8e9f8e20089714856ee233b3902a591d0d5f2925'
    """
    raw = public_key if isinstance(public_key, bytes) else public_key_bytes(public_key)
    if len(raw) != 32:
        raise ContractViolationError(
            f"an Ed25519 public key has 32 bytes, not {len(raw)}", reason="KEY_MALFORMED"
        )
    return KEY_ID_PREFIX + hashlib.sha256(raw).hexdigest()


def _key_file(root: Path, kid: str) -> Path:
    return root / KEYS_DIR / f"ed25519-{kid.removeprefix(KEY_ID_PREFIX)}.pem"


def generate_key(*, make_default: bool = True) -> KeyInfo:
    """Create a new Ed25519 key (mode 0600), trust it, and (by default) make it the default."""
    root = home()
    keys = root / KEYS_DIR
    keys.mkdir(parents=True, exist_ok=True, mode=0o700)
    os.chmod(keys, 0o700)
    private = Ed25519PrivateKey.generate()
    raw = public_key_bytes(private)
    kid = key_id(raw)
    pem = private.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    path = _key_file(root, kid)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        os.fchmod(fd, 0o600)  # whatever the umask
        view = memoryview(pem)
        while view:
            view = view[os.write(fd, view) :]
        os.fsync(fd)
    finally:
        os.close(fd)
    fsync_dir(keys)
    add_trusted_key(raw)
    if make_default:
        atomic_write(keys / DEFAULT_FILE, (kid + "\n").encode())
    return KeyInfo(kid, raw, path, make_default)


def _default_id(root: Path) -> str | None:
    try:
        return (root / KEYS_DIR / DEFAULT_FILE).read_text().strip() or None
    except FileNotFoundError:
        return None


def _resolve(kid: str | None) -> tuple[Path, str, Path]:
    root = home()
    chosen = kid or _default_id(root)
    if chosen is None:
        raise ContractViolationError(
            f"no key named and no default key in {root / KEYS_DIR} (run `umlos keys generate`)",
            reason="KEY_MISSING",
        )
    path = _key_file(root, chosen)
    if not path.is_file():
        raise ContractViolationError(
            f"no private key for {chosen}", reason="KEY_MISSING", artifact=str(path)
        )
    return root, chosen, path


def load_signing_key(kid: str | None = None) -> Ed25519PrivateKey:
    """The private key ``kid`` (default: the store's default key), checked before use: mode
    0600 or stricter, an Ed25519 PKCS#8 PEM, and a public key that hashes to ``kid``."""
    _, chosen, path = _resolve(kid)
    mode = stat.S_IMODE(path.stat().st_mode)
    if os.name == "posix" and mode & 0o077:
        raise ContractViolationError(
            f"key file is readable by others (mode {mode:o}); chmod 600 it",
            reason="KEY_PERMISSIONS",
            artifact=str(path),
        )
    data = path.read_bytes()[: MAX_KEY_FILE_BYTES + 1]
    try:
        if len(data) > MAX_KEY_FILE_BYTES:
            raise ValueError("file too large")
        key = serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError, UnsupportedAlgorithm) as exc:
        # The cryptography message never contains key material, but keep it out regardless.
        raise ContractViolationError(
            "key file is not an unencrypted PKCS#8 PEM private key",
            reason="KEY_MALFORMED",
            artifact=str(path),
        ) from exc
    if not isinstance(key, Ed25519PrivateKey):
        raise ContractViolationError(
            "key file holds a key that is not Ed25519", reason="KEY_MALFORMED", artifact=str(path)
        )
    if key_id(key.public_key()) != chosen:
        raise ContractViolationError(
            f"key file does not hold {chosen}", reason="KEY_MALFORMED", artifact=str(path)
        )
    return key


def show_key(kid: str | None = None) -> KeyInfo:
    """Public facts of key ``kid`` (default: the default key), for ``umlos keys show``."""
    root, chosen, path = _resolve(kid)
    raw = public_key_bytes(load_signing_key(chosen))
    return KeyInfo(chosen, raw, path, chosen == _default_id(root))


def list_keys() -> list[KeyInfo]:
    """Every stored key, sorted by key_id."""
    root = home()
    default = _default_id(root)
    out = []
    for path in sorted((root / KEYS_DIR).glob("ed25519-*.pem")):
        kid = KEY_ID_PREFIX + path.stem.removeprefix("ed25519-")
        out.append(KeyInfo(kid, public_key_bytes(load_signing_key(kid)), path, kid == default))
    return out


def trust_store() -> TrustStore:
    """The store's TrustStore record (``KEY_MISSING`` before any key was generated or added)."""
    path = home() / TRUST_STORE_FILE
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise ContractViolationError(
            "no trust store yet (run `umlos keys generate`)",
            reason="KEY_MISSING",
            artifact=str(path),
        ) from None
    try:
        return TrustStore.from_obj(decode(data))
    except Error as exc:
        raise ContractViolationError(
            f"trust store does not decode: {exc.message}",
            reason="KEY_MALFORMED",
            artifact=str(path),
        ) from exc


def add_trusted_key(public_key: Ed25519PublicKey | bytes) -> TrustStore:
    """Add a public key (e.g. a colleague's, to verify their certificates) to the trust store."""
    raw = public_key if isinstance(public_key, bytes) else public_key_bytes(public_key)
    key_id(raw)  # length check
    try:
        Ed25519PublicKey.from_public_bytes(raw)
    except ValueError as exc:
        raise ContractViolationError("not an Ed25519 public key", reason="KEY_MALFORMED") from exc
    root = home()
    root.mkdir(parents=True, exist_ok=True)
    try:
        roots = set(trust_store().trust_roots)
    except ContractViolationError as exc:
        if exc.reason != "KEY_MISSING":
            raise
        roots = set()
    store = TrustStore(
        trust_roots=tuple(sorted(roots | {raw})),
        version=LOCAL_TRUST_STORE_VERSION,
        issuer_policies_hash=NO_ISSUER_POLICIES,
    )
    atomic_write(root / TRUST_STORE_FILE, encode(store.to_obj()))
    return store

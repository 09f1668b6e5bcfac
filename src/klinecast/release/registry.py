"""Model artifacts and the model registry (a local directory or s3://bucket/prefix).

An artifact is a directory with `model.json` (XGBoost's JSON format, which KServe's stock
xgboost runtime loads from a storageUri directory) and `metadata.json`.

Registry layout, under the registry URI:

    <model_name>/versions/<version>/model.json, metadata.json, _COMPLETE
    <model_name>/production.json     {"version": ..., "uri": ..., "earlier": [...]}
    <model_name>/challenger.json     {"version": ..., "uri": ..., "since": ...}: in shadow
    <model_name>/decisions/<time>-<action>.json   who moved a pointer, when, from what, why
    _looks/<symbol>/<span>/<time>-<digest>.json   one evaluation of an out-of-sample span

A version is immutable. `_COMPLETE` is written after every other file of the version and
`production.json` only after that, so a failed or partial upload never sits behind the pointer;
readers ignore versions without `_COMPLETE`.

The pointer remembers the versions it pointed at before (`earlier`, newest first, up to
EARLIER_KEPT), so `rollback` returns to the last one in one step, and a second rollback to the
one before. Every move of the pointer is also recorded as a decision of its own.

A challenger is a version the trader asks in shadow beside production (the champion): its
calls are booked on paper, never traded, until `klinecast challenger decide` promotes it
(`promote_challenger`), rejects it (`end_challenger`), or a newer challenger replaces it. A
storage URI of the version CHALLENGER follows its pointer as one of PRODUCTION follows
production's, so the challenger's InferenceService serves whichever version is in shadow.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import json
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol
from urllib.parse import urlparse

from klinecast import atomic
from klinecast.errors import KlinecastError
from klinecast.release.metadata import ArtifactMetadata, MetadataError

MODEL_FILE = "model.json"
METADATA_FILE = "metadata.json"
COMPLETE_MARKER = "_COMPLETE"
POINTER_FILE = "production.json"
CHALLENGER_FILE = "challenger.json"
#: The version a storage URI may name instead of a real one: whichever the model's production
#: pointer names when a server loads it (the InferenceService of several symbols names its
#: models so, since nothing patches a version into it per symbol).
PRODUCTION_VERSION = "PRODUCTION"
#: ... and the one the challenger's pointer names (the challenger's InferenceService).
CHALLENGER_VERSION = "CHALLENGER"
#: Each pointer a storage URI may follow, by the version name that follows it.
POINTERS = {PRODUCTION_VERSION: POINTER_FILE, CHALLENGER_VERSION: CHALLENGER_FILE}
#: How many earlier production versions a pointer remembers: how far rollback can go back.
EARLIER_KEPT = 20
DECISIONS = "decisions"


class RegistryError(KlinecastError):
    """The registry could not be read or written."""


class NoProductionVersion(RegistryError):
    """The model has no production version (its gate never passed), or no challenger where one
    was followed: not a passing fault."""


def write_artifact(out_dir: Path, booster, metadata: ArtifactMetadata) -> None:
    """Writes model.json + metadata.json into out_dir, replacing it only once complete."""
    out_dir = Path(out_dir)
    staging = out_dir.with_name(f".{out_dir.name}.staging")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    booster.save_model(str(staging / MODEL_FILE))
    metadata.write(staging / METADATA_FILE)
    previous = out_dir.with_name(f".{out_dir.name}.previous")
    shutil.rmtree(previous, ignore_errors=True)
    if out_dir.exists():
        out_dir.rename(previous)
    staging.rename(out_dir)
    shutil.rmtree(previous, ignore_errors=True)


def version_of(storage_uri: str, metadata: ArtifactMetadata) -> str:
    """The model version a server reports: the registry version its URI names, else (a copy
    such as KServe's /mnt/models) when the model was made."""
    last = storage_uri.rstrip("/").rsplit("/", 1)[-1]
    return last if last.startswith("v") and "-" in last else metadata.created_at


def read_artifact_metadata(artifact_dir: Path) -> ArtifactMetadata:
    """metadata.json of an artifact, after checking the model file is there.

    Raises:
        RegistryError: the directory is not a complete artifact, or its metadata is unreadable.
    """
    artifact_dir = Path(artifact_dir)
    for name in (MODEL_FILE, METADATA_FILE):
        if not (artifact_dir / name).is_file():
            raise RegistryError(f"{artifact_dir} is not a model artifact: {name} is missing")
    try:
        return ArtifactMetadata.read(artifact_dir / METADATA_FILE)
    except MetadataError as exc:
        raise RegistryError(str(exc)) from None


class Store(Protocol):
    """The few object-store operations the registry needs."""

    def uri(self, key: str) -> str: ...
    def put(self, key: str, content: bytes) -> None: ...
    def get(self, key: str) -> bytes | None: ...
    def keys(self, prefix: str) -> list[str]: ...
    def delete(self, keys: list[str]) -> None: ...


class LocalStore:
    """A directory; file system errors surface as RegistryError, like S3Store's."""

    def __init__(self, root: Path):
        self.root = Path(root)

    def uri(self, key: str) -> str:
        return str((self.root / key).resolve())

    def put(self, key: str, content: bytes) -> None:
        self._call("write", key, lambda: atomic.write_bytes(self.root / key, content))

    def get(self, key: str) -> bytes | None:
        path = self.root / key
        return self._call("read", key, lambda: path.read_bytes() if path.is_file() else None)

    def keys(self, prefix: str) -> list[str]:
        base = self.root / prefix
        if not base.is_dir():
            return []
        return sorted(
            str(p.relative_to(self.root))
            for p in base.rglob("*")
            if p.is_file() and not atomic.is_partial(p)  # another writer's file, half written
        )

    def delete(self, keys: list[str]) -> None:
        for key in keys:
            path = self.root / key
            self._call("delete", key, lambda p=path: p.unlink(missing_ok=True))
            # directories the deleted files leave empty go too, up to the registry's root
            for parent in path.parents:
                if parent == self.root or not parent.is_relative_to(self.root):
                    break
                try:
                    parent.rmdir()
                except OSError:
                    break

    def _call(self, what: str, key: str, action):
        try:
            return action()
        except OSError as exc:
            raise RegistryError(f"{what} of {self.uri(key)} failed: {exc}") from None


class S3Store:
    """boto3 on s3://bucket/prefix; AWS_ENDPOINT_URL selects MinIO or another S3 API."""

    def __init__(self, bucket: str, prefix: str, client=None):
        import boto3

        self.bucket = bucket
        self.prefix = prefix.strip("/")
        self.client = client or boto3.client("s3")

    def _key(self, key: str) -> str:
        return f"{self.prefix}/{key}" if self.prefix else key

    def uri(self, key: str) -> str:
        return f"s3://{self.bucket}/{self._key(key)}"

    def put(self, key: str, content: bytes) -> None:
        self._call(
            "upload",
            key,
            lambda: self.client.put_object(Bucket=self.bucket, Key=self._key(key), Body=content),
        )

    def get(self, key: str) -> bytes | None:
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            return self.client.get_object(Bucket=self.bucket, Key=self._key(key))["Body"].read()
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("NoSuchKey", "404"):
                return None
            raise RegistryError(f"cannot read {self.uri(key)}: {exc}") from None
        except BotoCoreError as exc:  # no credentials, the endpoint unreachable, a cut connection
            raise RegistryError(f"cannot read {self.uri(key)}: {exc}") from None

    def keys(self, prefix: str) -> list[str]:
        found = []
        paginator = self.client.get_paginator("list_objects_v2")
        strip = len(self._key("")) if self.prefix else 0
        pages = paginator.paginate(Bucket=self.bucket, Prefix=self._key(prefix))
        for page in self._call("list", prefix, lambda: list(pages)):
            found += [obj["Key"][strip:] for obj in page.get("Contents", [])]
        return sorted(found)

    def delete(self, keys: list[str]) -> None:
        for key in keys:
            self._call(
                "delete",
                key,
                lambda k=key: self.client.delete_object(Bucket=self.bucket, Key=self._key(k)),
            )

    def _call(self, what: str, key: str, action):
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            return action()
        except (BotoCoreError, ClientError) as exc:
            raise RegistryError(f"{what} of {self.uri(key)} failed: {exc}") from None


def open_store(registry_uri: str) -> Store:
    parsed = urlparse(registry_uri)
    if parsed.scheme == "s3":
        if not parsed.netloc:
            raise RegistryError(f"registry {registry_uri!r} names no bucket")
        return S3Store(parsed.netloc, parsed.path)
    if parsed.scheme in ("", "file"):
        return LocalStore(Path(parsed.path if parsed.scheme == "file" else registry_uri))
    raise RegistryError(f"registry {registry_uri!r}: expected a directory or s3://bucket/prefix")


@dataclass(frozen=True)
class PublishReceipt:
    version: str
    uri: str  # the version directory: what an InferenceService's storageUri points at
    promoted: bool
    production: dict | None  # the pointer after publishing
    challenger: dict | None = None  # the challenger's pointer after publishing

    def as_dict(self) -> dict:
        return {
            "version": self.version,
            "uri": self.uri,
            "promoted": self.promoted,
            "production": self.production,
            "challenger": self.challenger,
        }


def publish(
    artifact_dir: Path,
    *,
    store: Store,
    model_name: str,
    promote: bool,
    challenge: str = "",
    now: dt.datetime | None = None,
    by: str = "klinecast publish",
) -> PublishReceipt:
    """Copies the artifact into the registry as a new version (or finds the version that holds
    the same bytes already: publishing again adds none); moves production to it if promote
    (`move_production`: the decision recorded as by's), or else names it the challenger when
    `challenge` gives the reason (`set_challenger`).

    Raises:
        RegistryError: the artifact is incomplete or an upload failed. The production pointer
            is untouched and the partial version (no _COMPLETE) is removed where possible.
    """
    metadata = read_artifact_metadata(artifact_dir)
    files = {name: (Path(artifact_dir) / name).read_bytes() for name in (MODEL_FILE, METADATA_FILE)}
    now = now or dt.datetime.now(dt.UTC)
    digest = hashlib.sha256(files[MODEL_FILE] + files[METADATA_FILE]).hexdigest()[:8]
    same = [v for v in versions(store, model_name) if v.endswith(f"-{digest}")]
    version = same[-1] if same else f"v{now:%Y%m%dT%H%M%S}-{digest}"
    prefix = f"{model_name}/versions/{version}"
    if store.get(f"{prefix}/{COMPLETE_MARKER}") is None:
        try:
            for name, content in files.items():
                store.put(f"{prefix}/{name}", content)
            store.put(f"{prefix}/{COMPLETE_MARKER}", digest.encode())
        except RegistryError:
            try:
                store.delete(store.keys(prefix))
            except RegistryError:
                pass  # the version stays incomplete, which readers ignore
            raise
    uri = store.uri(prefix)
    target = {"version": version, "uri": uri, "evaluation": _evaluation(metadata)}
    if promote:
        move_production(
            store, model_name, target, action="promote", by=by, reason="passed its gate", now=now
        )
    elif challenge:
        set_challenger(store, model_name, target, by=by, reason=challenge, now=now)
    return PublishReceipt(
        version, uri, promote, production(store, model_name), challenger(store, model_name)
    )


def _evaluation(metadata: ArtifactMetadata) -> dict | None:
    """What a pointer and a decision keep of a version's gate: its excess return over each
    baseline (None for a model evaluated by nothing)."""
    return metadata.metrics.excess_return if metadata.metrics else None


def move_production(
    store: Store, model_name: str, target: dict, *, action: str, by: str, reason: str,
    now: dt.datetime, earlier: list[dict] | None = None, evidence: dict | None = None,
) -> dict:  # fmt: skip
    """Points production at target (its version, uri, evaluation), remembering the version it
    pointed at before (or `earlier` as given: a rollback's), and records the decision: who,
    when, from which version to which, why, and the evidence (default: target's evaluation).
    A challenger of target's version is shadowed no more: its pointer is removed. Returns the
    new pointer (the current one, unmoved and unrecorded, when it names target's version
    already).

    Raises:
        RegistryError: the registry cannot be written; the pointer is put back as it was.
    """
    current = production(store, model_name)
    if current is not None and current["version"] == target["version"]:
        return current  # already production (a rerun publishing the same bytes): no move
    if earlier is None:  # the current version first, then what it remembered
        earlier = []
        if current is not None:
            former = {k: v for k, v in current.items() if k != "earlier"}
            earlier = [former, *current.get("earlier", [])][:EARLIER_KEPT]
    pointer = {
        "version": target["version"],
        "uri": target["uri"],
        "promoted_at": now.isoformat(),
        "evaluation": target.get("evaluation"),
        "earlier": earlier,
    }
    decision = {
        "at": now.isoformat(), "action": action, "version": target["version"],
        "from": current["version"] if current else None, "by": by, "reason": reason,
        # the gate's excess return over each baseline, or a challenger's shadow evidence
        "evidence": evidence if evidence is not None else target.get("evaluation"),
    }  # fmt: skip
    _move(store, model_name, POINTER_FILE, pointer, current, decision)
    shadowed = challenger(store, model_name)
    if shadowed is not None and shadowed["version"] == target["version"]:
        store.delete([f"{model_name}/{CHALLENGER_FILE}"])
    return pointer


def _move(
    store: Store, model_name: str, pointer_file: str, pointer: dict | None, current: dict | None,
    decision: dict,
) -> None:  # fmt: skip
    """Writes the model's pointer_file (None: removes it), then its decision; when the
    decision cannot be written the pointer is put back as it was (current), since no move
    stands unrecorded.

    Raises:
        RegistryError: the registry cannot be written.
    """
    key = f"{model_name}/{pointer_file}"
    if pointer is None:
        store.delete([key])
    else:
        store.put(key, json.dumps(pointer, indent=2).encode())
    at = dt.datetime.fromisoformat(decision["at"])
    try:
        content = json.dumps(decision, indent=2).encode()
        store.put(f"{model_name}/{DECISIONS}/{at:%Y%m%dT%H%M%S%f}-{decision['action']}.json", content)
    except RegistryError:
        if current is None:
            store.delete([key])
        else:
            store.put(key, json.dumps(current, indent=2).encode())
        raise


def challenger(store: Store, model_name: str) -> dict | None:
    """The challenger's pointer (the version in shadow), or None."""
    return _pointer(store, model_name, CHALLENGER_FILE)


def set_challenger(
    store: Store, model_name: str, target: dict, *, by: str, reason: str, now: dt.datetime
) -> dict | None:
    """Names target (its version, uri, evaluation) the model's challenger, in shadow from now
    (a newer one replaces the challenger before it, whose shadow book ends), and records the
    decision. Returns the pointer; None when target is production already (nothing to shadow).

    Raises:
        RegistryError: the registry cannot be written; the challenger is as it was.
    """
    champion, current = production(store, model_name), challenger(store, model_name)
    if champion is not None and champion["version"] == target["version"]:
        return None
    if current is not None and current["version"] == target["version"]:
        return current  # a rerun publishing the same bytes: its shadow goes on
    pointer = {
        "version": target["version"], "uri": target["uri"], "since": now.isoformat(),
        "evaluation": target.get("evaluation"),
    }  # fmt: skip
    decision = {
        "at": now.isoformat(), "action": "challenge", "version": target["version"],
        "from": current["version"] if current else None, "by": by, "reason": reason,
        "evidence": target.get("evaluation"),
    }  # fmt: skip
    _move(store, model_name, CHALLENGER_FILE, pointer, current, decision)
    return pointer


def promote_challenger(
    store: Store, model_name: str, *, by: str, reason: str, evidence: dict,
    now: dt.datetime | None = None,
) -> dict:  # fmt: skip
    """Production moves to the challenger (whose shadow ends), recorded with its shadow
    evidence. Returns the new production pointer.

    Raises:
        RegistryError: there is no challenger, or the registry cannot be written.
    """
    current = challenger(store, model_name)
    if current is None:
        raise RegistryError(f"{model_name} has no challenger to promote")
    return move_production(
        store, model_name, current, action="promote", by=by, reason=reason,
        now=now or dt.datetime.now(dt.UTC), evidence=evidence,
    )  # fmt: skip


def end_challenger(
    store: Store, model_name: str, *, by: str, reason: str, evidence: dict | None = None,
    now: dt.datetime | None = None,
) -> dict:  # fmt: skip
    """Rejects the challenger: its shadow ends and production stays, recorded with the
    evidence. Returns the pointer that was removed.

    Raises:
        RegistryError: there is no challenger, or the registry cannot be written.
    """
    current = challenger(store, model_name)
    if current is None:
        raise RegistryError(f"{model_name} has no challenger to reject")
    now = now or dt.datetime.now(dt.UTC)
    decision = {
        "at": now.isoformat(), "action": "reject", "version": current["version"],
        "from": None, "by": by, "reason": reason, "evidence": evidence,
    }  # fmt: skip
    _move(store, model_name, CHALLENGER_FILE, None, current, decision)
    return current


def rollback(
    store: Store, model_name: str, *, by: str, reason: str, now: dt.datetime | None = None
) -> dict:
    """Moves production back to the version it pointed at before the current one (a second
    rollback goes one further back), and records the decision. Returns the new pointer.

    Raises:
        RegistryError: there is no production version, or none before it is remembered, or
            the earlier version is no longer complete; the pointer is as it was.
    """
    current = production(store, model_name)
    if current is None:
        raise NoProductionVersion(f"{model_name} has no production version to roll back")
    earlier = current.get("earlier") or []
    if not earlier:
        raise RegistryError(
            f"{model_name}: production {current['version']} has no earlier production version "
            "on record (promoted before the registry remembered them, or the first); promote "
            "the version you want with `klinecast publish`"
        )
    # its uri as this model's own copy: a pointer copied by `registry migrate` remembers URIs
    # under the old name
    target = dict(earlier[0], uri=store.uri(f"{model_name}/versions/{earlier[0]['version']}"))
    if target["version"] not in versions(store, model_name):
        raise RegistryError(
            f"{model_name}: the earlier production version {target['version']} is no longer "
            "complete in the registry; nothing was changed"
        )
    return move_production(
        store, model_name, target, action="rollback", by=by, reason=reason,
        now=now or dt.datetime.now(dt.UTC), earlier=earlier[1:],
    )  # fmt: skip


def promote_version(
    store: Store, model_name: str, version: str, *, by: str, reason: str,
    now: dt.datetime | None = None, action: str = "promote",
) -> dict:  # fmt: skip
    """An operator's promotion: production moves to a version already in the registry (one
    its gate refused, or an earlier one), recorded as by's decision (`action`: a canary's
    breach records a rollback) with the version's own evaluation as evidence. Returns the new
    pointer (the current one when it names version).

    Raises:
        RegistryError: the version is not complete in the registry (the versions there are
            named), or its metadata is unreadable; the pointer is as it was.
    """
    known = versions(store, model_name)
    if version not in known:
        raise RegistryError(
            f"{model_name} has no complete version {version!r}; it has: "
            f"{', '.join(known[-5:]) or 'none'}{' (the last 5)' if len(known) > 5 else ''}"
        )
    raw = store.get(f"{model_name}/versions/{version}/{METADATA_FILE}")
    try:
        metadata = ArtifactMetadata.from_dict(json.loads(raw or b"null"), source=version)
    except (MetadataError, TypeError, json.JSONDecodeError) as exc:
        raise RegistryError(f"{model_name} {version}: unreadable metadata ({exc})") from None
    target = {
        "version": version,
        "uri": store.uri(f"{model_name}/versions/{version}"),
        "evaluation": _evaluation(metadata),
    }
    return move_production(
        store, model_name, target, action=action, by=by, reason=reason,
        now=now or dt.datetime.now(dt.UTC),
    )  # fmt: skip


def decisions(store: Store, model_name: str) -> list[dict]:
    """Every recorded move of the model's production and challenger pointers, oldest first."""
    found = []
    for key in sorted(store.keys(f"{model_name}/{DECISIONS}/")):
        raw = store.get(key)
        if raw is not None:
            found.append(json.loads(raw))
    return found


LOOKS_PREFIX = "_looks"


@dataclass(frozen=True)
class Look:
    """One evaluation of a symbol's out-of-sample span: every look is one more chance to tune
    to those months, by hand or by rerunning until the verdict suits."""

    symbol: str
    span: str  # "first_day .. last_day"
    data_version: str  # the features' digest
    code_version: str  # the klinecast that evaluated (`code_version`)
    at: str  # UTC, ISO 8601

    def as_dict(self) -> dict:
        return dataclasses.asdict(self)


def code_version() -> str:
    """The evaluating code: klinecast's version and the tuning's scoring version."""
    from importlib.metadata import PackageNotFoundError, version

    from klinecast.research.tuning import SCORING_VERSION

    try:
        package = version("klinecast")
    except PackageNotFoundError:  # a source tree that was never installed
        package = "unknown"
    return f"klinecast {package}, scoring {SCORING_VERSION}"


def record_look(
    store: Store,
    *,
    symbol: str,
    span: str,
    data_version: str,
    code_version: str,
    now: dt.datetime | None = None,
) -> int:
    """Records one more look at the symbol's out-of-sample span in the registry, with the data
    and code version, and returns how many looks there have been (this one included).

    Each look is its own object, never an update of a counter, so two evaluations at once
    (a pipeline's symbol branches) both count, on S3 as on a directory.

    Raises:
        RegistryError: the registry cannot be written or listed.
    """
    now = now or dt.datetime.now(dt.UTC)
    look = Look(symbol, span, data_version, code_version, now.isoformat())
    content = json.dumps(look.as_dict(), indent=2).encode()
    digest = hashlib.sha256(content).hexdigest()[:12]
    store.put(f"{_looks_prefix(symbol, span)}{now:%Y%m%dT%H%M%S%f}-{digest}.json", content)
    return len(looks(store, symbol=symbol, span=span))


def looks(store: Store, *, symbol: str, span: str) -> list[Look]:
    """Every recorded look at the symbol's span, oldest first."""
    found = []
    for key in sorted(store.keys(_looks_prefix(symbol, span))):
        raw = store.get(key)
        if raw is not None:
            found.append(Look(**json.loads(raw)))
    return found


def _looks_prefix(symbol: str, span: str) -> str:
    return f"{LOOKS_PREFIX}/{symbol}/{span.replace(' .. ', '_')}/"


def production(store: Store, model_name: str) -> dict | None:
    """The production pointer, or None before the first promotion."""
    return _pointer(store, model_name, POINTER_FILE)


def _pointer(store: Store, model_name: str, pointer_file: str) -> dict | None:
    raw = store.get(f"{model_name}/{pointer_file}")
    return json.loads(raw) if raw is not None else None


def versions(store: Store, model_name: str) -> list[str]:
    """Complete versions, oldest first."""
    marker = f"/{COMPLETE_MARKER}"
    return sorted(
        key.split("/")[-2] for key in store.keys(f"{model_name}/versions/") if key.endswith(marker)
    )


def fetch_artifact(uri: str, dest: Path) -> Path:
    """Makes the artifact at uri (a directory, or an s3:// version prefix) available locally.

    Returns:
        A local directory holding model.json and metadata.json (uri itself when it is local).

    Raises:
        RegistryError: the artifact is missing, incomplete or unreadable.
    """
    parsed = urlparse(uri)
    if parsed.scheme in ("", "file"):
        local = Path(parsed.path if parsed.scheme == "file" else uri)
        read_artifact_metadata(local)
        return local
    if parsed.scheme != "s3":
        raise RegistryError(f"storage URI {uri!r}: expected a directory or s3://bucket/prefix")
    store = S3Store(parsed.netloc, "")
    dest.mkdir(parents=True, exist_ok=True)
    for name in (MODEL_FILE, METADATA_FILE):
        content = store.get(f"{parsed.path.strip('/')}/{name}")
        if content is None:
            raise RegistryError(f"{uri} is not a model artifact: {name} is missing")
        atomic.write_bytes(dest / name, content)
    read_artifact_metadata(dest)
    return dest


def follows_pointer(uri: str) -> bool:
    """Whether uri names the version PRODUCTION or CHALLENGER: whichever version that pointer
    names now."""
    head, _, version = uri.rstrip("/").rpartition("/versions/")
    return version in POINTERS and "/" in head


def resolve_pointer(uri: str) -> str:
    """uri itself, or for `<registry>/<model>/versions/PRODUCTION` (or CHALLENGER) the URI of
    the version the model's production (or challenger) pointer names now.

    Raises:
        NoProductionVersion: the model has no such version (its gate never passed, or no
            challenger is in shadow).
        RegistryError: the pointer could not be read (the store unreachable: a passing fault).
    """
    if not follows_pointer(uri):
        return uri
    head, _, version = uri.rstrip("/").rpartition("/versions/")
    registry_uri, _, model_name = head.rpartition("/")
    pointer = _pointer(open_store(registry_uri), model_name, POINTERS[version])
    if pointer is None:
        what = "production version" if version == PRODUCTION_VERSION else "challenger"
        raise NoProductionVersion(f"no {what} of {model_name} in {registry_uri}")
    return pointer["uri"]


def production_uri(registry_uri: str, model_name: str) -> str:
    """The storage URI of the version PRODUCTION: whichever version the pointer names when a
    server reads it (the servers follow it, see resolve_pointer)."""
    return f"{registry_uri.rstrip('/')}/{model_name}/versions/{PRODUCTION_VERSION}"


def resolve_serving_uri(registry_uri: str, model_name: str, *, fallback: Path) -> tuple[str, str]:
    """The production version, followed (a later promotion is served too), else the local
    candidate artifact.

    Returns:
        (uri, why) where why says which one was chosen, for the log.
    """
    pointer = production(open_store(registry_uri), model_name)
    if pointer is not None:
        return production_uri(registry_uri, model_name), (
            f"production, version {pointer['version']} now; a later promotion is followed"
        )
    return str(
        fallback
    ), f"no production version in {registry_uri}; serving the candidate {fallback}"


@dataclass(frozen=True)
class Renaming:
    """What copying one model's versions to a new name did."""

    old: str
    new: str
    versions: tuple[str, ...]  # the versions copied (those the new name already held are not)
    production: str | None  # the version the new name's production pointer names


def copy_model(
    store: Store, *, old: str, new: str, take_production: bool = False
) -> Renaming:
    """Copies every complete version of `old` to `new`, byte for byte (its files, then its
    _COMPLETE marker), then `old`'s production pointer, pointing at the copy. `old` is left as
    it was, so a server still reading it keeps working until it is pointed at the new name.
    (A copied version's metadata.json still names the model it was published as.)

    Args:
        take_production: when `new` already has another production version, point it at
            `old`'s anyway (its versions are kept; only the pointer moves).

    Raises:
        RegistryError: old has no version; new already has another production version and
            take_production is not set (nothing is copied); or a copy failed (a partial version
            has no _COMPLETE, which readers ignore).
    """
    found = versions(store, old)
    if not found:
        raise RegistryError(f"{store.uri(old)} holds no complete version to copy")
    pointer, theirs = production(store, old), production(store, new)
    if theirs and pointer and theirs["version"] != pointer["version"] and not take_production:
        raise RegistryError(
            f"{new} already has production version {theirs['version']}, not {old}'s "
            f"{pointer['version']}: nothing was copied (--take-production points {new} at "
            f"{old}'s, keeping every version of both)"
        )
    held = set(versions(store, new))
    copied = []
    for version in found:
        if version in held:
            continue
        source, target = f"{old}/versions/{version}", f"{new}/versions/{version}"
        names = [k.rsplit("/", 1)[-1] for k in store.keys(f"{source}/")]
        for name in sorted(names, key=lambda n: n == COMPLETE_MARKER):  # the marker last
            content = store.get(f"{source}/{name}")
            if content is None:
                raise RegistryError(f"{store.uri(source)}/{name} vanished while it was copied")
            store.put(f"{target}/{name}", content)
        copied.append(version)
    if pointer is not None:
        moved = dict(pointer, uri=store.uri(f"{new}/versions/{pointer['version']}"))
        store.put(f"{new}/{POINTER_FILE}", json.dumps(moved, indent=2).encode())
    return Renaming(old, new, tuple(copied), pointer["version"] if pointer else None)

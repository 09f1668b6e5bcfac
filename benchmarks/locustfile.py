"""Locust users for the serving benchmark. Run by bench_serve.py as the locust CLI.

Only json and locust are imported here: importing the scientific stack before locust breaks
gevent's monkey patching. Bodies are prepared by bench_serve.py in $BENCH_BODIES.
"""

import base64
import json
import os
import random

from locust import FastHttpUser, constant, constant_throughput, task

BODIES = json.load(open(os.environ["BENCH_BODIES"]))  # noqa: SIM115
MODEL = BODIES["model_name"]
# Encoded once: with 2 cores shared by locust and both servers, re-encoding a 4,900-candle
# body per request would measure locust more than the servers.
ENCODED = {
    kind: [json.dumps(b).encode() for b in BODIES[kind]]
    for kind in ("transformer", "compact", "v2_compact", "predictor", "symbol", "mix", "batch")
    if kind in BODIES
}
#: V2 binary tensors: (body, the JSON object's length), prepared by bench_serve.py
BINARY = [(base64.b64decode(b["body"]), str(b["json_length"])) for b in BODIES.get("binary", [])]
#: the five-symbol service's name (bench_serve.py's book case)
BOOK = BODIES.get("book_model_name", MODEL)
HEADERS = {"Content-Type": "application/json"}
#: requests/s each user offers ($BENCH_USER_RATE, bench_serve.py's at-rate runs); unset: as fast
#: as the server answers (a closed loop at saturation)
USER_RATE = float(os.environ.get("BENCH_USER_RATE") or 0)


class _Post(FastHttpUser):
    """One request per task, a body of ENCODED[kind] to path: as fast as the server answers, or
    at USER_RATE requests/s per user."""

    abstract = True
    wait_time = constant_throughput(USER_RATE) if USER_RATE else constant(0)
    path = f"/v1/models/{MODEL}:predict"
    kind = ""
    label = ""

    def request(self) -> tuple[bytes, dict]:
        return random.choice(ENCODED[self.kind]), HEADERS

    @task
    def predict(self):
        data, headers = self.request()
        self.client.post(self.path, data=data, headers=headers, name=self.label)


class TransformerUser(_Post):
    """The full path: raw candles -> transformer -> predictor -> answer."""

    kind, label = "transformer", "transformer v1"


class CompactUser(_Post):
    """Raw candles in V1's compact form: open times and one row of nine columns per candle."""

    kind, label = "compact", "transformer v1 compact"


class V2CompactUser(_Post):
    """Raw candles in V2's compact form as JSON: open_time [n] and candles [n, 9]."""

    path, kind, label = f"/v2/models/{MODEL}/infer", "v2_compact", "transformer v2 compact"


class BinaryUser(_Post):
    """Raw candles in V2's compact form as binary tensors (tritonclient's default)."""

    path, label = f"/v2/models/{MODEL}/infer", "transformer v2 binary"

    def request(self) -> tuple[bytes, dict]:
        body, json_length = random.choice(BINARY)
        return body, {"Content-Type": "application/octet-stream",
                      "Inference-Header-Content-Length": json_length}  # fmt: skip


class SymbolUser(_Post):
    """By symbol: the online store's features -> predictor (cached for the hour) -> answer."""

    kind, label = "symbol", "transformer v1 symbol"


class PredictorUser(_Post):
    """The predictor alone: one feature row per request."""

    kind, label = "predictor", "predictor v1"


class MixUser(_Post):
    """Several symbols served by one service: each request one symbol, drawn from the mix."""

    path, kind, label = f"/v1/models/{BOOK}:predict", "mix", "book v1 one symbol"


class BatchUser(_Post):
    """Several symbols served by one service: each request a batch of all of them."""

    path, kind, label = f"/v1/models/{BOOK}:predict", "batch", "book v1 batch"

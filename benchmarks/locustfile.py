"""Locust users for the serving benchmark. Run by bench_serve.py as the locust CLI.

Only json and locust are imported here: importing the scientific stack before locust breaks
gevent's monkey patching. Bodies are prepared by bench_serve.py in $BENCH_BODIES.
"""

import base64
import json
import os
import random

from locust import FastHttpUser, constant, task

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


class TransformerUser(FastHttpUser):
    """The full path: raw candles -> transformer -> predictor -> answer."""

    wait_time = constant(0)

    @task
    def predict(self):
        body = random.choice(ENCODED["transformer"])
        self.client.post(
            f"/v1/models/{MODEL}:predict", data=body, headers=HEADERS, name="transformer v1"
        )


class CompactUser(FastHttpUser):
    """Raw candles in V1's compact form: open times and one row of nine columns per candle."""

    wait_time = constant(0)

    @task
    def predict(self):
        body = random.choice(ENCODED["compact"])
        self.client.post(
            f"/v1/models/{MODEL}:predict", data=body, headers=HEADERS, name="transformer v1 compact"
        )


class V2CompactUser(FastHttpUser):
    """Raw candles in V2's compact form as JSON: open_time [n] and candles [n, 9]."""

    wait_time = constant(0)

    @task
    def predict(self):
        body = random.choice(ENCODED["v2_compact"])
        self.client.post(
            f"/v2/models/{MODEL}/infer", data=body, headers=HEADERS, name="transformer v2 compact"
        )


class BinaryUser(FastHttpUser):
    """Raw candles in V2's compact form as binary tensors (tritonclient's default)."""

    wait_time = constant(0)

    @task
    def predict(self):
        body, json_length = random.choice(BINARY)
        headers = {"Content-Type": "application/octet-stream",
                   "Inference-Header-Content-Length": json_length}  # fmt: skip
        self.client.post(
            f"/v2/models/{MODEL}/infer", data=body, headers=headers, name="transformer v2 binary"
        )


class SymbolUser(FastHttpUser):
    """By symbol: the online store's features -> predictor (cached for the hour) -> answer."""

    wait_time = constant(0)

    @task
    def predict(self):
        self.client.post(
            f"/v1/models/{MODEL}:predict",
            data=ENCODED["symbol"][0],
            headers=HEADERS,
            name="transformer v1 symbol",
        )


class PredictorUser(FastHttpUser):
    """The predictor alone: one feature row per request."""

    wait_time = constant(0)

    @task
    def predict(self):
        body = random.choice(ENCODED["predictor"])
        self.client.post(
            f"/v1/models/{MODEL}:predict", data=body, headers=HEADERS, name="predictor v1"
        )


class MixUser(FastHttpUser):
    """Several symbols served by one service: each request one symbol, drawn from the mix."""

    wait_time = constant(0)

    @task
    def predict(self):
        body = random.choice(ENCODED["mix"])
        self.client.post(
            f"/v1/models/{BOOK}:predict", data=body, headers=HEADERS, name="book v1 one symbol"
        )


class BatchUser(FastHttpUser):
    """Several symbols served by one service: each request a batch of all of them."""

    wait_time = constant(0)

    @task
    def predict(self):
        self.client.post(
            f"/v1/models/{BOOK}:predict", data=ENCODED["batch"][0], headers=HEADERS,
            name="book v1 batch",
        )

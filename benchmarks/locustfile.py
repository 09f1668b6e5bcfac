"""Locust users for the serving benchmark. Run by bench_serve.py as the locust CLI.

Only json and locust are imported here: importing the scientific stack before locust breaks
gevent's monkey patching. Bodies are prepared by bench_serve.py in $BENCH_BODIES.
"""

import json
import os
import random

from locust import FastHttpUser, constant, task

BODIES = json.load(open(os.environ["BENCH_BODIES"]))  # noqa: SIM115
MODEL = BODIES["model_name"]
# Encoded once: with 2 cores shared by locust and both servers, re-encoding a 540-candle
# body per request would measure locust more than the servers.
ENCODED = {
    kind: [json.dumps(b).encode() for b in BODIES[kind]]
    for kind in ("transformer", "predictor", "symbol", "mix", "batch")
    if kind in BODIES
}
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

"""Throughput of the offline token recount (pipeline.recount.count_many), per tokenizer.

Generates N synthetic chat requests (deterministic, seeded), counts them with count_many and
prints tokens/s and requests/s for each tokenizer. Tokenizer loading is timed separately, so
the rates describe steady-state counting. Not a test; run it by hand:

    .venv/bin/python bench/recount_bench.py --n 20000
"""

from __future__ import annotations

import argparse
import json
import random
import time

from pipeline.recount import count_many, count_request
from pipeline.sample_logs import chat_messages, chat_text

MODELS = {"o200k_base": "openai/gpt-5.5", "deepseek_v4": "deepseek-v4-flash"}


def _request(rng: random.Random) -> tuple[str, str]:
    """(messages_json, output_text) of one synthetic chat request."""
    return json.dumps(chat_messages(rng), ensure_ascii=False), chat_text(rng, 20, 300)


def _bench(tokenizer: str, requests: list[tuple[str, str]]) -> None:
    """Count one tokenizer's rows and print its rates."""
    model = MODELS[tokenizer]
    started = time.perf_counter()
    count_request(model, None, "warm up")  # load the tokenizer outside the timed section
    loaded = time.perf_counter()
    results = count_many((model, messages, output) for messages, output in requests)
    elapsed = time.perf_counter() - loaded
    tokens = sum(r.input_tokens + r.output_tokens for r in results if r is not None)
    print(
        f"{tokenizer:<12} load {loaded - started:5.2f}s  {len(requests)} requests "
        f"{tokens:,} tokens in {elapsed:6.2f}s  -> {tokens / elapsed:12,.0f} tokens/s "
        f"{len(requests) / elapsed:10,.0f} requests/s"
    )


def main() -> None:
    """Parse arguments, generate the requests once, and benchmark each tokenizer on them."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=20000, help="synthetic requests per tokenizer")
    parser.add_argument("--seed", type=int, default=5)
    args = parser.parse_args()
    rng = random.Random(args.seed)
    requests = [_request(rng) for _ in range(args.n)]
    for tokenizer in MODELS:
        _bench(tokenizer, requests)


if __name__ == "__main__":
    main()

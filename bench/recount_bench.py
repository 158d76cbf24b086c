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

MODELS = {"o200k_base": "openai/gpt-5.5", "deepseek_v4": "deepseek-v4-flash"}

WORDS = (
    "the invoice usage tokens price model request gateway account billing statement "
    "nightly ingest replay auditor finance period cached reasoning output input upstream "
    "rate limit retry attempt stream DuckDB Parquet JSON schema decimal rounding cents"
).split()
EXTRA = [
    "数据",
    "計費",
    "トークン",
    "счёт",
    "فاتورة",
    "😀",
    "naïve",
    "def f(x):\n    return x * 2\n",
    '{"a": [1, 2, 3]}',
    "\n\n",
    "    ",
]


def _text(rng: random.Random, low: int, high: int) -> str:
    """A sentence-ish string of ``low``..``high`` words, with some non-English and code."""
    words = [
        rng.choice(EXTRA) if rng.random() < 0.08 else rng.choice(WORDS)
        for _ in range(rng.randint(low, high))
    ]
    return " ".join(words).capitalize() + "."


def _request(rng: random.Random) -> tuple[str, str]:
    """(messages_json, output_text) of one synthetic chat request."""
    messages = [{"role": "system", "content": _text(rng, 5, 30)}]
    for turn in range(rng.randint(1, 3)):
        if turn:
            messages.append({"role": "assistant", "content": _text(rng, 10, 80)})
        messages.append({"role": "user", "content": _text(rng, 5, 120)})
    return json.dumps(messages, ensure_ascii=False), _text(rng, 20, 300)


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

"""The catalog's search engine (marketplace.catalog.search, Tantivy) on 1,000,000 entries.

    .venv/bin/python bench/search_engine.py                 # 1M entries, 400 queries
    .venv/bin/python bench/search_engine.py --n 100000      # quicker

Synthetic catalog: titles, summaries and tags drawn from Zipf-like vocabularies (so common words
match tens of thousands of entries), categories, licenses, formats, publishers, prices, dates and
purchase counts. Measures the build (generating the entries, then the index from them through
`build_index`, the code the rebuild command uses), then 400 queries, one client, top 20: a quarter
common words (10,000 to 100,000 matches, counted on the built index), a quarter mid words, a
quarter rare words, a quarter two-word queries; each with facets by relevance, with a category
filter, sorted by price, and without facets; then the same mix from 8 threads. Facets are
counted for every query (the engine's facet cache is off) except on the line that says so.

This calls the engine in-process: the API's figures through gunicorn add HTTP, Django and the
PostgreSQL row fetch on top.
"""
from __future__ import annotations

import argparse
import bisect
from concurrent.futures import ThreadPoolExecutor
import datetime as dt
import itertools
import os
from pathlib import Path
import random
import shutil
import statistics
import sys
import tempfile
import time

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from marketplace.catalog.search import (  # noqa: E402
    CatalogIndex,
    SearchDoc,
    SearchQuery,
    build_index,
)

CATEGORIES = [
    "climate", "finance", "health", "transport", "energy", "agriculture", "education",
    "retail", "sports", "government", "genomics", "astronomy", "social", "real-estate",
    "manufacturing", "telecom", "media", "security", "tourism", "other",
]
LICENSES = [
    "CC-BY-4.0", "CC0-1.0", "MIT", "ODbL-1.0", "CC-BY-SA-4.0", "Apache-2.0", "CC-BY-NC-4.0",
    "PDDL-1.0", "ODC-By-1.0", "GPL-3.0-only", "proprietary", "CDLA-Permissive-2.0",
]
FORMATS = ["csv", "parquet", "jsonl", "json", "xlsx", "zip"]
SYLLABLES = [c + v for c in "bcdfghjklmnprstvwz" for v in ["a", "e", "i", "o", "u", "ai", "ou"]]


def zipf_cum_weights(n: int, s: float) -> list[float]:
    return list(itertools.accumulate(1.0 / (r**s) for r in range(1, n + 1)))


def make_vocab(rng: random.Random, n: int, syllables: tuple[int, int]) -> list[str]:
    words: list[str] = []
    seen: set[str] = set()
    while len(words) < n:
        w = "".join(rng.choice(SYLLABLES) for _ in range(rng.randint(*syllables)))
        if w not in seen:
            seen.add(w)
            words.append(w)
    return words


class Sampler:
    """Draws from a Zipf-like distribution quickly (one random() and a bisect per draw)."""

    def __init__(self, rng: random.Random, items: list, s: float):
        self.items, self.rng = items, rng
        self.cum = zipf_cum_weights(len(items), s)
        self.total = self.cum[-1]

    def draw(self, k: int) -> list:
        rnd, cum, items, total = self.rng.random, self.cum, self.items, self.total
        return [items[bisect.bisect(cum, rnd() * total)] for _ in range(k)]


def generate(n: int, seed: int) -> tuple[list[SearchDoc], list[str]]:
    rng = random.Random(seed)
    vocab = make_vocab(rng, 30_000, (2, 4))
    words = Sampler(rng, vocab, 1.0)
    tags = Sampler(rng, make_vocab(rng, 3_000, (2, 3)), 1.1)
    categories = Sampler(rng, CATEGORIES, 0.8)
    licenses = Sampler(rng, LICENSES, 1.0)
    formats = Sampler(rng, FORMATS, 1.0)
    publishers = [f"0x{rng.getrandbits(160):040x}" for _ in range(20_000)]
    publisher = Sampler(rng, publishers, 0.9)
    start = dt.datetime(2023, 1, 1, tzinfo=dt.timezone.utc)
    span = 3 * 365 * 86400
    docs = []
    for i in range(1, n + 1):
        title = words.draw(rng.randint(3, 7))
        docs.append(
            SearchDoc(
                id=i,
                title=" ".join(title).capitalize(),
                summary=" ".join(words.draw(rng.randint(10, 20))),
                description="",
                tags=tags.draw(rng.randint(2, 4)),
                category=categories.draw(1)[0],
                license=licenses.draw(1)[0],
                format=formats.draw(1)[0],
                publisher=publisher.draw(1)[0],
                price=round(rng.lognormvariate(2.5, 1.2), 2),
                created_at=start + dt.timedelta(seconds=rng.randrange(span)),
                purchases=int(rng.expovariate(0.5)) if rng.random() < 0.3 else 0,
            )
        )
    return docs, vocab


def pick_queries(index, vocab: list[str], count: int, seed: int) -> dict[str, list[str]]:
    """Classify words by how many entries they match on the built index, then draw the mix."""
    rng = random.Random(seed + 1)

    def matches(text: str) -> int:
        return index.search(SearchQuery(text=text, limit=0, facets=False)).total

    # Zipf ranks: the head is very common, the tail rare; probe a spread of ranks.
    probe = sorted(set(list(range(0, 400)) + rng.sample(range(400, len(vocab)), 1200)))
    df = {vocab[r]: matches(vocab[r]) for r in probe}
    common = [w for w, c in df.items() if 10_000 <= c <= 100_000]
    mid = [w for w, c in df.items() if 500 <= c < 10_000]
    rare = [w for w, c in df.items() if 1 <= c < 500]
    q = count // 4
    two = [f"{rng.choice(common + mid)} {rng.choice(mid)}" for _ in range(count - 3 * q)]
    picked = {
        "common": [rng.choice(common) for _ in range(q)],
        "mid": [rng.choice(mid) for _ in range(q)],
        "rare": [rng.choice(rare) for _ in range(q)],
        "two words": two,
    }
    sizes = {k: [df.get(w) or matches(w) for w in v] for k, v in picked.items()}
    for k, v in sizes.items():
        print(f"  {k:<10} {len(v):>4} queries, matches median {statistics.median(v):>9,.0f}, "
              f"min {min(v):,}, max {max(v):,}")
    return picked


def pct(values: list[float], p: float) -> float:
    values = sorted(values)
    k = max(0, min(len(values) - 1, round(p / 100 * len(values) + 0.5) - 1))
    return values[k]


def run(index, queries: list[str], make) -> list[float]:
    times = []
    for text in queries:
        q = make(text)
        t = time.perf_counter()
        index.search(q)
        times.append((time.perf_counter() - t) * 1000)
    return times


def report(label: str, times: list[float]) -> None:
    print(f"  {label:<44} p50 {pct(times, 50):6.2f} ms   p95 {pct(times, 95):6.2f} ms   "
          f"p99 {pct(times, 99):6.2f} ms   max {max(times):6.2f} ms")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--n", type=int, default=1_000_000, help="catalog entries (default 1M)")
    ap.add_argument("--queries", type=int, default=400)
    ap.add_argument("--threads", type=int, default=8)
    ap.add_argument("--seed", type=int, default=12)
    ap.add_argument("--dir", type=Path, help="where to build (default: a temporary directory)")
    ap.add_argument("--keep", action="store_true", help="keep the index afterwards")
    args = ap.parse_args()

    workdir = args.dir or Path(tempfile.mkdtemp(prefix="search-bench-"))
    path = workdir / "index"
    if path.exists():
        shutil.rmtree(path)
    print(f"tantivy {__import__('tantivy').__version__}, {os.cpu_count()} cores, "
          f"{args.n:,} entries, index in {path}")

    t0 = time.perf_counter()
    docs, vocab = generate(args.n, args.seed)
    t_gen = time.perf_counter() - t0
    t1 = time.perf_counter()
    index = build_index(path, docs)
    t_idx = time.perf_counter() - t1
    size = sum(f.stat().st_size for f in path.iterdir() if f.is_file())
    segments = index._index.searcher().num_segments
    print("\nbuild")
    print(f"  generate entries (stands for reading PostgreSQL)  {t_gen:7.1f} s")
    print(f"  index them (build_index: documents, commit, merges) {t_idx:7.1f} s"
          f"   ({args.n / t_idx:,.0f} entries/s)")
    print(f"  total                                             {t_gen + t_idx:7.1f} s")
    print(f"  {index.doc_count():,} documents, {segments} segments, {size / 1e6:,.0f} MB on disk")
    del docs
    # Measure with the facet cache off: every query counts its facets (the worst case).
    index = CatalogIndex(path, facet_ttl=0)

    print("\nquery mix")
    picked = pick_queries(index, vocab, args.queries, args.seed)
    mix = [q for v in picked.values() for q in v]
    random.Random(args.seed + 2).shuffle(mix)

    # warm up: page cache and allocator, with other words than the measured ones
    warmup = random.Random(args.seed + 3).sample(vocab[:2000], 100)
    run(index, warmup, lambda t: SearchQuery(text=t))

    rng = random.Random(args.seed + 4)
    cats = {t: rng.choice(CATEGORIES[:8]) for t in mix}
    print(f"\nlatency, one client, top 20 ({len(mix)} queries each)")
    relevance = run(index, mix, lambda t: SearchQuery(text=t))
    report("relevance + facets", relevance)
    for kind, words in picked.items():
        report(f"  {kind}", run(index, words, lambda t: SearchQuery(text=t)))
    report("relevance + facets + category filter",
           run(index, mix, lambda t: SearchQuery(text=t, category=cats[t])))
    report("relevance + facets + price 5-50",
           run(index, mix, lambda t: SearchQuery(text=t, price_min=5.0, price_max=50.0)))
    report("price ascending + facets",
           run(index, mix, lambda t: SearchQuery(text=t, sort="price_asc")))
    report("price ascending + facets + category filter",
           run(index, mix, lambda t: SearchQuery(text=t, sort="price_asc", category=cats[t])))
    report("newest + facets", run(index, mix, lambda t: SearchQuery(text=t, sort="newest")))
    report("relevance, no facets", run(index, mix, lambda t: SearchQuery(text=t, facets=False)))
    report("relevance + facets, page at offset 5,000",
           run(index, picked["common"], lambda t: SearchQuery(text=t, offset=5000)))
    browse = [""] * 50
    report("browse all (empty text) newest + facets",
           run(index, browse, lambda t: SearchQuery(text=t)))
    report("browse category, price ascending + facets",
           run(index, list(cats.values())[:50],
               lambda t: SearchQuery(category=t, sort="price_asc")))
    cached = CatalogIndex(path)  # the default: facets cached per (text, filters) for 5 s
    report("browse all newest, facets from the cache",
           run(cached, browse, lambda t: SearchQuery(text=t))[1:])

    print(f"\nthroughput, relevance + facets, the {len(mix)}-query mix")
    for threads in (1, args.threads):
        with ThreadPoolExecutor(threads) as pool:
            t = time.perf_counter()
            lat = list(pool.map(lambda text: run(index, [text], lambda s: SearchQuery(text=s))[0],
                                mix * 2))
            wall = time.perf_counter() - t
        print(f"  {threads} thread(s): {len(lat) / wall:7.0f} queries/s, "
              f"p50 {pct(lat, 50):.2f} ms, p95 {pct(lat, 95):.2f} ms")

    if args.keep:
        print(f"\nkept {path}")
    else:
        shutil.rmtree(workdir if not args.dir else path, ignore_errors=True)


if __name__ == "__main__":
    main()

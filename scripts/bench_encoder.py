"""Speed and accuracy of the sentence-encoder backends (citeenv.search.encoder) against
sentence-transformers `encode` (backend "st"), all in one process. Prints JSON.

    .venv/bin/python scripts/bench_encoder.py            # ~5 minutes on 2 cores
    .venv/bin/python scripts/bench_encoder.py --quick    # a smoke run

Texts are real: HotpotQA dev questions (the queries) and the sentences of their context
paragraphs (the passages), from the shared data folder.

    single_ms       p50/p90 of encode([question]) on one thread, as a dense search runs it;
                    the backends take turns query by query, so load changes hit all alike
    torch-int8      torch.ao.quantization.quantize_dynamic of the Linear layers (per channel):
                    measured here only, citeenv does not offer it
    batch64_per_s   texts/s encoding --batch-texts sentences with batch_size=64 (median of
                    --repeats), on torch's default threads; ONNX sessions on 1 thread and,
                    as "<backend>@2t", on 2
    accuracy        cosine of each vector with st's (mean, min over questions + sentences), and
                    top-10 agreement with st's ranking (mean |top10 & top10_st| / 10) when
                    (both) questions and sentences use the backend, and (queries) only the
                    questions do, against st's sentence vectors: an index built by st and
                    searched by the backend
Ratios are against st, measured in the same run.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import random
import statistics
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "env"))

import numpy as np  # noqa: E402


def log(msg: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def hotpot_texts(n_questions: int, n_sentences: int) -> tuple[list[str], list[str]]:
    from citeenv.sources.hotpotqa import read_hotpotqa_records

    questions, sentences, seen = [], [], set()
    for record in read_hotpotqa_records():
        if len(questions) < n_questions:
            questions.append(record["question"])
        for title, sents in record["context"]:
            for s in sents:
                s = s.strip()
                if s and s not in seen and len(sentences) < n_sentences:
                    seen.add(s)
                    sentences.append(s)
        if len(questions) >= n_questions and len(sentences) >= n_sentences:
            break
    return questions, sentences


def summary(ms: list[float]) -> dict:
    ms = sorted(ms)
    return {"p50": round(statistics.median(ms), 3), "p90": round(ms[int(0.9 * (len(ms) - 1))], 3), "n": len(ms)}


def top10(queries: np.ndarray, passages: np.ndarray) -> np.ndarray:
    return np.argsort(-(queries @ passages.T), axis=1, kind="stable")[:, :10]


def agreement(a: np.ndarray, b: np.ndarray) -> float:
    return round(float(np.mean([len(set(x) & set(y)) / 10 for x, y in zip(a.tolist(), b.tolist())])), 4)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--backends", default="st,torch,torch-int8,onnx,onnx-int8")
    ap.add_argument("--questions", type=int, default=200)
    ap.add_argument("--sentences", type=int, default=1000)
    ap.add_argument("--batch-texts", type=int, default=512)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--quick", action="store_true")
    args = ap.parse_args(argv)
    if args.quick:
        args.questions, args.sentences, args.batch_texts, args.repeats = 30, 200, 128, 1

    import torch

    from citeenv.search.dense import one_thread
    from citeenv.search.encoder import Encoder, OnnxBackend, TorchBackend, load_encoder, model_directory

    def torch_int8() -> Encoder:
        """Measured, not offered: torch's dynamic int8 Linear layers, per output channel."""
        backend = TorchBackend(model_directory("minilm"))
        backend.model = torch.ao.quantization.quantize_dynamic(
            backend.model, {torch.nn.Linear: torch.ao.quantization.per_channel_dynamic_qconfig})
        return Encoder(backend)

    names = args.backends.split(",")
    if "st" not in names:
        names.insert(0, "st")
    out: dict = {"command": "scripts/bench_encoder.py " + " ".join(argv if argv is not None else sys.argv[1:]),
                 "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "torch": torch.__version__,
                             "torch_threads": torch.get_num_threads(), "load_avg_at_start": os.getloadavg()}}
    questions, sentences = hotpot_texts(args.questions, args.sentences)
    log(f"{len(questions)} questions, {len(sentences)} sentences")

    encoders, load_s = {}, {}
    for name in names:
        t = time.perf_counter()
        encoders[name] = torch_int8() if name == "torch-int8" else load_encoder("minilm", backend=name)
        encoders[name].encode(questions[:2])  # first call: lazy set-up, ONNX export on a fresh home
        load_s[name] = round(time.perf_counter() - t, 2)
        log(f"loaded {name} in {load_s[name]} s")
    out["load_s"] = load_s

    log("accuracy")
    vectors = {name: (enc.encode(questions), enc.encode(sentences)) for name, enc in encoders.items()}
    ref_q, ref_s = vectors["st"]
    ref_top = top10(ref_q, ref_s)
    accuracy = {}
    for name, (q, s) in vectors.items():
        cos = np.concatenate([(q * ref_q).sum(1), (s * ref_s).sum(1)])
        accuracy[name] = {"cosine_mean": round(float(cos.mean()), 5), "cosine_min": round(float(cos.min()), 5),
                          "top10_agreement_both": agreement(top10(q, s), ref_top),
                          "top10_agreement_queries": agreement(top10(q, ref_s), ref_top)}
    out["accuracy"] = accuracy

    log("single-text latency")
    rng = random.Random(args.seed)
    single: dict[str, list[float]] = {name: [] for name in encoders}
    order = list(encoders)
    with one_thread():
        for i, q in enumerate(questions[:5] + questions):
            rng.shuffle(order)
            for name in order:
                t = time.perf_counter()
                encoders[name].encode([q])
                if i >= 5:
                    single[name].append((time.perf_counter() - t) * 1000)
    out["single_ms"] = {name: summary(ms) for name, ms in single.items()}

    log("batch throughput")
    texts = (sentences * (args.batch_texts // max(1, len(sentences)) + 1))[: args.batch_texts]
    directory = model_directory("minilm")
    batchers = dict(encoders)
    for name in names:
        if name.startswith("onnx"):
            batchers[f"{name}@2t"] = Encoder(OnnxBackend(directory, int8=name.endswith("int8"), threads=2))
    rates: dict[str, list[float]] = {name: [] for name in batchers}
    order = list(batchers)
    for _ in range(args.repeats):
        rng.shuffle(order)
        for name in order:
            t = time.perf_counter()
            batchers[name].encode(texts, batch_size=64)
            rates[name].append(len(texts) / (time.perf_counter() - t))
    out["batch64_per_s"] = {name: round(statistics.median(r), 1) for name, r in rates.items()}

    st_single, st_rate = out["single_ms"]["st"]["p50"], out["batch64_per_s"]["st"]
    out["ratios_vs_st"] = {
        "single_p50_time": {n: round(v["p50"] / st_single, 3) for n, v in out["single_ms"].items()},
        "batch64_speed": {n: round(v / st_rate, 3) for n, v in out["batch64_per_s"].items()},
    }
    out["machine"]["load_avg_at_end"] = os.getloadavg()
    print(json.dumps(out, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())

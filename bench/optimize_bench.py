"""fp32 against int8 (dynamic, static, static per channel): latency and accuracy, gated.

Two digits classifiers (scikit-learn's bundled 8x8 digits, 70/30 stratified split) are trained
here: a small CNN in torch (two 3x3 convolutions, max pool, two dense layers) and an MLP in
scikit-learn (256-128 hidden units). Each is converted and verified with ``modelport.convert``,
registered in a temporary repository, and optimized with ``modelport.optimize`` exactly as
``modelport optimize NAME --quantize auto --calibration calib.npy --eval eval.npz --labels y``
does (calibration: 512 training rows; evaluation: the 540 test rows with their labels; budget:
0.5 accuracy points). Every candidate is timed, also those the gate refuses, with one intra-op
thread, interleaved with the float model in short slices; the figure is the median latency of
one call at batch 1 and 32.

    python -m bench optimize [--seconds 4] [--out bench/RESULTS-optimize.md]
"""

from __future__ import annotations

import argparse
import platform
import shlex
import sys
import tempfile
import time
import warnings
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_OUT = ROOT / "bench" / "RESULTS-optimize.md"
# The target, checked and reported (not asserted): int8 at least this much faster than
# fp32 at batch 32 while losing at most this many accuracy points.
TARGET_SPEEDUP_B32 = 1.5
TARGET_MAX_DROP_PT = 0.5
CALIBRATION_ROWS = 512


def log(message: str) -> None:
    print(f"[optimize-bench] {message}", file=sys.stderr, flush=True)


# --------------------------------------------------------------------------- data and models
def digits() -> dict[str, np.ndarray]:
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    x, y = load_digits(return_X_y=True)
    x = (x / 16.0).astype(np.float32)
    x_train, x_test, y_train, y_test = train_test_split(
        x, y, test_size=0.3, random_state=0, stratify=y
    )
    return {"x_train": x_train, "x_test": x_test, "y_train": y_train, "y_test": y_test}


def train_cnn(data: dict[str, np.ndarray], epochs: int) -> Any:
    import torch
    from torch import nn

    torch.manual_seed(0)
    net = nn.Sequential(
        nn.Conv2d(1, 32, 3, padding=1), nn.ReLU(),
        nn.Conv2d(32, 64, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(), nn.Linear(64 * 4 * 4, 128), nn.ReLU(), nn.Linear(128, 10),
    )  # fmt: skip
    x = torch.from_numpy(data["x_train"].reshape(-1, 1, 8, 8))
    y = torch.from_numpy(data["y_train"])
    opt = torch.optim.Adam(net.parameters(), lr=1e-3)
    for _ in range(epochs):
        order = torch.randperm(len(x))
        for start in range(0, len(x), 64):
            idx = order[start : start + 64]
            opt.zero_grad()
            nn.functional.cross_entropy(net(x[idx]), y[idx]).backward()
            opt.step()
    return net.eval()


def train_mlp(data: dict[str, np.ndarray]) -> Any:
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.neural_network import MLPClassifier

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        return MLPClassifier((256, 128), max_iter=60, random_state=0).fit(
            data["x_train"], data["y_train"]
        )


# --------------------------------------------------------------------------- the benchmark
def run_case(
    repo: Any, name: str, model: Any, data: dict[str, np.ndarray], image: bool,
    workdir: Path, seconds: float,
) -> dict[str, Any]:  # fmt: skip
    from modelport.convert import convert
    from modelport.errors import VerificationFailedError
    from modelport.optimize import optimize

    shape = (-1, 1, 8, 8) if image else (-1, 64)
    x_train, x_test = data["x_train"].reshape(shape), data["x_test"].reshape(shape)
    log(f"{name}: converting and registering")
    result = convert(model, x_train[:8])
    if not result.report:
        raise SystemExit(f"{name}: conversion did not verify: {result.report.summary()}")
    version = repo.register(result, name)
    input_name = version.signature.input_names[0]
    calibration, evaluation = workdir / f"{name}-calib.npy", workdir / f"{name}-eval.npz"
    np.save(calibration, x_train[:CALIBRATION_ROWS])
    np.savez(evaluation, **{input_name: x_test, "y": data["y_test"]})

    log(f"{name}: optimize --quantize auto ({seconds:g} s of timing per model)")
    start = time.perf_counter()
    try:
        report = optimize(
            repo,
            version.ref,
            quantize="auto",
            calibration=calibration,
            eval_data=evaluation,
            labels="y",
            max_accuracy_drop=TARGET_MAX_DROP_PT / 100,
            speed_budget_s=seconds,
            measure_all=True,
        )
    except VerificationFailedError as exc:
        report = exc.report
    wall = time.perf_counter() - start
    tags = repo.load(report.registered).tags if report.registered else {}
    return {"name": name, "report": report, "wall_s": wall, "tags": tags}


def cpu_description() -> dict[str, Any]:
    from modelport.optimize.quantize import cpu_features

    model_name = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model_name = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    import os

    return {"model": model_name, "cores": os.cpu_count(), **cpu_features()}


def render(cases: list[dict[str, Any]], argv: list[str], cpu: dict[str, Any]) -> str:
    versions = {p: _version(p) for p in ("onnxruntime", "onnx", "torch", "scikit-learn")}
    isa = ", ".join(f"{flag} {'yes' if cpu[flag] else 'no'}" for flag in ("avx2", "avx512", "vnni"))
    lines = [
        "# Optimize and quantize: fp32 against int8, behind the accuracy gate",
        "",
        f"Command: `{shlex.join(['python', '-m', 'bench', 'optimize', *argv])}`",
        "",
        f"Machine: {cpu['model']}, {cpu['cores']} cores ({isa}); "
        + ", ".join(f"{k} {v}" for k, v in versions.items()),
        "",
        "Latency: median of one call, ONNX Runtime CPU with 1 intra-op thread, all graph "
        "optimizations on at load (as modelport serves); each candidate interleaved with the "
        "float model. Accuracy: the 540 held-out digits. Gate: at most "
        f"{TARGET_MAX_DROP_PT} accuracy points lost. Speed-up = fp32 ms / candidate ms.",
        "",
        "| model | variant | accuracy | change (pt) | gate | batch 1 ms | speed-up | "
        "batch 32 ms | speed-up | size |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    verdicts = []
    for case in cases:
        report = case["report"]
        base = report.baseline
        first = next((c for c in report.candidates if c.gate is not None), None)
        acc_float = first.gate.metrics.get("accuracy_float") if first else None
        lines.append(
            f"| {case['name']} | fp32 | {_pct(acc_float)} | | reference | "
            f"{_ms(base, 1)} | 1.00x | {_ms(base, 32)} | 1.00x | {_kib(report.baseline_size)} |"
        )
        best = None
        for cand in report.candidates:
            gate = cand.gate
            if cand.error or gate is None:
                lines.append(
                    f"| {case['name']} | {cand.name} | | | error: {cand.error} | | | | | |"
                )
                continue
            drop = gate.metrics.get("accuracy_drop", 0.0) * 100 + 0.0  # no "-0.00"
            chosen = " (chosen)" if cand.name == report.chosen else ""
            lines.append(
                f"| {case['name']} | {cand.name}{chosen} | "
                f"{_pct(gate.metrics.get('accuracy_candidate'))} | {0.0 - drop:+.2f} | "
                f"{'pass' if gate.passed else 'fail'} | {_ms(cand.speed, 1)} | "
                f"{_ratio(cand.speedup(base, 1))} | {_ms(cand.speed, 32)} | "
                f"{_ratio(cand.speedup(base, 32))} | {_kib(cand.size_bytes)} |"
            )
            ratio = cand.speedup(base, 32) or 0.0
            if gate.passed and (best is None or ratio > best[1]):
                best = (cand.name, ratio, drop)
        if best is None:
            verdicts.append(f"- {case['name']}: no int8 candidate passed the gate.")
        else:
            met = best[1] >= TARGET_SPEEDUP_B32 and best[2] <= TARGET_MAX_DROP_PT
            verdicts.append(
                f"- {case['name']}: the fastest int8 at batch 32 is {best[0]}, at {best[1]:.2f}x "
                f"the fp32 speed, accuracy change {0.0 - best[2]:+.2f} pt: target "
                f"(>= {TARGET_SPEEDUP_B32}x, at most {TARGET_MAX_DROP_PT} pt lost) "
                f"{'MET' if met else 'NOT met'}."
            )
        if report.registered:
            tags = ", ".join(f"`{k}={v}`" for k, v in sorted(case["tags"].items()))
            verdicts.append(
                f"  modelport registered {report.registered} ({report.chosen}, the fastest that "
                f"passed; tags {tags}); the whole optimize call took {case['wall_s']:.0f} s."
            )
        elif any(c.passed for c in report.candidates):
            verdicts.append(
                "  modelport registered nothing: candidates passed the accuracy gate, but "
                "`--quantize auto` registers only one that is faster than the float model here."
            )
    lines += ["", "## Against the target", "", *verdicts, "", "## Reading", ""]
    lines += [f"- {line}" for line in reading(cases, cpu)]
    lines.append("")
    return "\n".join(lines)


def reading(cases: list[dict[str, Any]], cpu: dict[str, Any]) -> list[str]:
    """What the numbers say, from the numbers (so a re-run on another machine stays true)."""
    notes = []
    if cpu["machine"] in ("x86_64", "amd64") and not cpu["vnni"]:
        notes.append(
            "This processor has no VNNI (avx512_vnni / avx_vnni): ONNX Runtime's int8 kernels "
            "multiply u8 by s8 with 16-bit intermediate sums (vpmaddubsw + vpmaddwd), about "
            "twice the fp32 FMA rate at the very best, and fp32 already runs on AVX-512 here; "
            "on layers this small the quantize/dequantize steps and layout changes eat most of "
            "that. "
            "Weights were quantized to 7 bits (reduce_range) as ONNX Runtime advises without "
            "VNNI."
        )
    for case in cases:
        report = case["report"]
        dyn = next((c for c in report.candidates if c.quantize == "dynamic"), None)
        ratio = dyn.speedup(report.baseline, 32) if dyn else None
        if dyn is not None and ratio is not None and ratio < 0.7:
            notes.append(
                f"{case['name']}: dynamic int8 is {1 / ratio:.1f}x slower than fp32 at batch 32: "
                "it re-quantizes activations at every call and runs convolutions as "
                "ConvInteger, which has no fast kernel. The gate passed it; the timing is what "
                "keeps it out, which is why auto measures rather than assumes."
            )
    shrink = [
        case["report"].baseline_size / c.size_bytes
        for case in cases
        for c in case["report"].candidates
        if c.size_bytes and case["report"].baseline_size
    ]
    notes.append(
        f"int8 shrinks the stored model {min(shrink):.1f}-{max(shrink):.1f}x whatever the "
        "speed; registered versions carry "
        "their measured speed-ups as tags (`speedup_b1`, `speedup_b32`) and the full timings in "
        "the manifest, so a version that is not faster on the serving machine says so."
    )
    notes.append(
        "Timings on this shared 2-core machine move by 10-30% from run to run; each candidate is "
        "timed in short slices interleaved with the float model so that load bursts hit all "
        "alike, and ratios are steadier than absolute milliseconds."
    )
    return notes


def _version(package: str) -> str:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return "-"


def _ms(speed: Any, batch: int) -> str:
    value = speed.median_ms(batch) if speed is not None else None
    return "-" if value is None else f"{value:.3f}"


def _ratio(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}x"


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{value * 100:.2f}%"


def _kib(value: int | None) -> str:
    return "-" if value is None else f"{value / 1024:.0f} KiB"


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench optimize")
    parser.add_argument("--seconds", type=float, default=4.0, help="timing per model")
    parser.add_argument("--epochs", type=int, default=6, help="CNN training epochs")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = parser.parse_args(argv)

    from modelport.repository import Repository

    cpu = cpu_description()
    log(f"CPU: {cpu}")
    data = digits()
    log("training the CNN (torch) and the MLP (scikit-learn)")
    cnn, mlp = train_cnn(data, args.epochs), train_mlp(data)
    with tempfile.TemporaryDirectory(prefix="modelport-optimize-bench-") as tmp:
        work = Path(tmp)
        with Repository(work / "repo") as repo:
            cases = [
                run_case(repo, "digits-cnn", cnn, data, True, work, args.seconds),
                run_case(repo, "digits-mlp", mlp, data, False, work, args.seconds),
            ]
    text = render(cases, argv, cpu)
    args.out.write_text(text)
    print(text)
    for case in cases:
        from rich.console import Console

        Console(stderr=True).print(case["report"].render())
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

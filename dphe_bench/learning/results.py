"""Run results: the summary table printed at the end of a run, and the JSON and CSV files written for it.

runs.csv has one row per run: its time, every setting that changes its result (``RUN_SETTINGS``, empty where a
setting is unset or does not apply, see ``run_settings``), then its results.
"""

import csv
import io
import json
import time
from pathlib import Path

from dphe_bench.crypto.packing import quantization_step
from dphe_bench.errors import DestinationError
from dphe_bench.files import prepare_file, write_text_atomically
from dphe_bench.learning.pipeline import PipelineResult
from dphe_bench.learning.run_settings import RUN_SETTINGS, run_settings
from dphe_bench.schemes import SCHEMES, ckks
from dphe_bench.schemes.federation import PHASES

CSV_NAME = "runs.csv"
CSV_COLUMNS = (
    "time_utc",
    *RUN_SETTINGS,
    "dimension",
    "accuracy_centralised",
    "accuracy_plain",
    "accuracy_scheme",
    "max_abs_diff_vs_plain",
    "user_sparsity_mean",
    "union_sparsity",
    "ciphertexts_per_round_mean",
    *(f"{phase}_s" for phase in ("train", *PHASES)),
    "bytes_key_generator",
    "bytes_users",
    "bytes_aggregator",
    "results_file",
)


def format_summary(result: PipelineResult) -> str:
    """The human-readable summary table of a run."""
    cfg = result.config
    scheme = cfg.crypto.scheme
    main = result.outcomes[scheme]
    lines = [
        f"dphe-bench run: {cfg.data.dataset} ({cfg.data.features}), D = {result.dimension} weights, "
        f"{cfg.federation.users} users ({cfg.federation.split}), {cfg.federation.rounds} rounds, seed {cfg.run.seed}",
        f"scheme {scheme}, " + _backend_description(result) + _crypto_description(cfg),
        "",
        "accuracy (test)",
        f"  {'centralised':<26}{result.centralised_accuracy:>8.4f}",
    ]
    for name, outcome in result.outcomes.items():
        lines.append(f"  {'federated ' + name:<26}{outcome.accuracy:>8.4f}")
    errors = [r["max_abs_error"] for r in main.rounds if "error_bound" in r]
    if errors:
        bound = max(r["error_bound"] for r in main.rounds)
        lines += [
            "",
            "aggregation error per round (max |published average - exact mean of that round's updates|):",
            "  " + ", ".join(f"{error:.3g}" for error in errors) + f" (bound {bound:.3g} per weight and round)",
        ]
    if result.max_abs_diff_vs_plain is not None:
        lines += [
            "",
            f"difference from the plain run after {cfg.federation.rounds} rounds: "
            f"max |w_{scheme} - w_plain| = {result.max_abs_diff_vs_plain:.3g}",
        ]
        if errors:
            lines.append(
                "  (each round trains from slightly different averages, so the two trajectories drift apart round by "
                "round: not bounded by the per-round error)"
            )
    lines += [
        "",
        f"sparsity (last round): per user {_mean(main.user_sparsity):.3f} (mean), union {main.union_sparsity:.3f}",
    ]
    if SCHEMES[scheme].encrypted:
        lines.append(
            f"ciphertexts per round: {_mean(main.ciphertexts_per_round):.0f} "
            f"(dense would send {result.dimension * cfg.federation.users})"
        )
    lines += [
        "",
        f"{'time (s)':<15}" + "".join(f"{name:>12}" for name in result.outcomes),
    ]
    for phase in ("train", *PHASES):
        lines.append(f"  {phase:<13}" + "".join(f"{o.timings[phase]:>12.3f}" for o in result.outcomes.values()))
    lines += ["", f"{'bytes sent':<15}" + "".join(f"{name:>12}" for name in result.outcomes)]
    for party in ("key_generator", "users", "aggregator"):
        lines.append(f"  {party:<13}" + "".join(f"{_size(o.bytes_sent[party]):>12}" for o in result.outcomes.values()))
    return "\n".join(lines)


def _backend_description(result: PipelineResult) -> str:
    """``backend gmpy2 (standard obfuscation)``, or what runs instead for schemes that use no Paillier backend."""
    scheme = result.config.crypto.scheme
    if scheme == "plain":
        return "no encryption"
    if not SCHEMES[scheme].paillier:
        return f"TenSEAL (the Paillier backend {result.backend} is not used)"
    return f"backend {result.backend_description}"


def _crypto_description(cfg) -> str:
    """Key size and encoding of the run's scheme, e.g. ', 2048-bit keys, 32-bit fixed point'."""
    scheme = cfg.crypto.scheme
    if scheme == "plain":
        return ""
    if scheme == "ckks":
        return (
            f", CKKS N = {ckks.POLY_MODULUS_DEGREE}, coefficient moduli {'/'.join(map(str, ckks.COEFF_MODULUS_BITS))} "
            f"bits, scale 2**{ckks.SCALE_BITS} ({ckks.SECURITY_BITS}-bit security; the Paillier key_bits is not used), "
            f"average rounded to 2**-{ckks.PUBLISH_PRECISION_BITS}"
        )
    text = f", {cfg.crypto.key_bits}-bit keys"
    if scheme == "packed":
        step = quantization_step(cfg.crypto.quantization_bits, cfg.crypto.quantization_range)
        return (
            text + f", {cfg.crypto.quantization_bits}-bit quantisation of +-{cfg.crypto.quantization_range:g} "
            f"(step {step:.3g}: error <= {step / 2:.3g} per weight and round)"
        )
    return text + f", {cfg.crypto.precision_bits}-bit fixed point"


def check_results_destination(output_dir: str | Path) -> Path:
    """The runs.csv path under ``output_dir``, made and probed for writing now.

    Call it before a long run, so that a bad destination fails at once instead of after the run: raises
    DestinationError when the folder cannot be made or written, ValueError when runs.csv has other columns.
    """
    csv_path = Path(output_dir) / CSV_NAME
    if Path(output_dir).exists() and not Path(output_dir).is_dir():
        raise DestinationError(f"run.output_dir {output_dir} exists and is not a folder")
    prepare_file(csv_path, "run.output_dir")
    if csv_path.exists():
        with csv_path.open(encoding="utf-8") as handle:
            header = handle.readline().rstrip("\n")
        if header != ",".join(CSV_COLUMNS):
            raise ValueError(f"{csv_path} has different columns than this version writes; move it aside")
    return csv_path


def write_run_results(result: PipelineResult) -> tuple[Path, Path]:
    """Write the run's JSON file and append its row to runs.csv in ``config.run.output_dir``.

    Both writes go through a temporary file and a rename, so a failure leaves no half-written file.
    Returns (json_path, csv_path). Raises DestinationError saying what was not saved when a write fails.
    """
    try:
        return _write_run_results(result)
    except OSError as exc:
        raise DestinationError(
            f"the run's results were not saved in {result.config.run.output_dir}: {exc.strerror or exc}"
        ) from None


def _write_run_results(result: PipelineResult) -> tuple[Path, Path]:
    csv_path = check_results_destination(result.config.run.output_dir)
    out_dir = csv_path.parent
    existing = csv_path.read_text(encoding="utf-8") if csv_path.exists() else ""
    if existing and not existing.endswith("\n"):
        existing += "\n"

    now_ns = time.time_ns()
    stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime(now_ns // 10**9)) + f"-{now_ns // 1000 % 1_000_000:06d}"
    cfg = result.config
    json_path = out_dir / f"run-{stamp}-{cfg.crypto.scheme}-{result.backend}.json"
    data = result.to_dict()
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=CSV_COLUMNS, lineterminator="\n")
    if not existing:
        writer.writeheader()
    writer.writerow(_csv_row(result, data, json_path.name))
    write_text_atomically(json_path, json.dumps(data, indent=2) + "\n")
    write_text_atomically(csv_path, existing + buffer.getvalue())
    return json_path, csv_path


def _csv_row(result: PipelineResult, data: dict, json_name: str) -> dict:
    """The run's runs.csv row; its settings read from ``data`` (the JSON written), None written as empty."""
    main = result.outcomes[result.config.crypto.scheme]
    plain = result.outcomes.get("plain")
    row = {
        "time_utc": result.environment["time_utc"],
        **run_settings(data),
        "dimension": result.dimension,
        "accuracy_centralised": result.centralised_accuracy,
        "accuracy_plain": plain.accuracy if plain else "",
        "accuracy_scheme": main.accuracy,
        "max_abs_diff_vs_plain": "" if result.max_abs_diff_vs_plain is None else result.max_abs_diff_vs_plain,
        "user_sparsity_mean": _mean(main.user_sparsity),
        "union_sparsity": main.union_sparsity,
        "ciphertexts_per_round_mean": _mean(main.ciphertexts_per_round),
        "bytes_key_generator": main.bytes_sent["key_generator"],
        "bytes_users": main.bytes_sent["users"],
        "bytes_aggregator": main.bytes_sent["aggregator"],
        "results_file": json_name,
    }
    row.update({f"{phase}_s": main.timings[phase] for phase in ("train", *PHASES)})
    return row


def _mean(values: list) -> float:
    return sum(values) / len(values) if values else 0.0


def _size(nbytes: int) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if nbytes < 1024 or unit == "GiB":
            return f"{nbytes:.0f} {unit}" if unit == "B" else f"{nbytes:.1f} {unit}"
        nbytes /= 1024
    return f"{nbytes:.1f} GiB"

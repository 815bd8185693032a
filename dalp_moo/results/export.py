"""Export for deployment: the front's IR at the end of a run, and one candidate on request.

    ir/<arch_id>.xml + .bin     the deployed network (input normalisation included), batch 1

The IR is the format the Myriad X plugin consumed; ``benchmark_app -m ir/<id>.xml`` or
``openvino.Core().compile_model`` runs it. :func:`export_candidate` writes one candidate (IR,
torch state dict, config, model card) into a folder (``python -m dalp_moo export``);
:func:`pick_candidate` chooses one of the front (knee point, best, best under a budget).
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from dalp_moo.config import RunConfig
from dalp_moo.errors import DalpError
from dalp_moo.evaluation.artifacts import ArtifactStore
from dalp_moo.evaluation.evaluator import get_evaluator
from dalp_moo.evaluation.record import EvalRecord
from dalp_moo.log import logger


def _int8_deployment(evaluator: Any) -> bool:
    """True when the run's backend quantises on data (OpenVINO INT8)."""
    return bool(getattr(getattr(evaluator, "backend", None), "needs_calibration", False))


def quantised_ir(ov_model: Any, evaluator: Any) -> Any:
    """``ov_model`` quantised to INT8 as the run's evaluations were: NNCF from the evaluator's
    calibration tiles (:meth:`~dalp_moo.evaluation.segmentation.SegmentationEvaluator.calibration_batch`)."""
    from dalp_moo.backends.openvino_backend import quantize_int8

    return quantize_int8(ov_model, evaluator.calibration_batch().numpy())


def export_front_ir(run_dir: str | Path, cfg: RunConfig, front: Sequence[EvalRecord]) -> list[Path]:
    """Write the IR of every front candidate whose weights are stored; returns the .xml paths.
    Runs that deploy in INT8 get the quantised IR (the model their figures were measured on).
    A candidate that cannot be exported is logged and skipped (the run's results stay intact)."""
    from dalp_moo.backends.openvino_backend import convert, save_ir

    store = ArtifactStore(run_dir)
    evaluator = get_evaluator(cfg)
    int8 = _int8_deployment(evaluator)
    paths = []
    for record in front:
        try:
            _, model = evaluator.build(list(record.genome))
            model.load_state_dict(store.weights(record.arch_id))
            example = torch.zeros(evaluator.input_shape)
            ov_model = convert(model.eval(), example)
            if int8:
                ov_model = quantised_ir(ov_model, evaluator)
            paths.append(save_ir(ov_model, Path(run_dir) / "ir" / record.arch_id))
        except (DalpError, RuntimeError, OSError) as exc:
            logger.warning("IR export of %s failed: %s", record.arch_id, str(exc).splitlines()[0])
    return paths


# -- one candidate: IR + state dict + model card ------------------------------------------------
CARD_FILE = "model_card.json"
CARD_FORMAT = 1
#: relative error (max |ir - torch| / max |torch|) above which the export check warns (fraction)
CHECK_TOLERANCE = 2e-2


def parse_pick(spec: str) -> tuple[str, str | None, float | None]:
    """``knee`` | ``best`` | ``best:BUDGET`` | ``best:KEY<=VALUE`` -> (method, key, bound).
    ``best:BUDGET`` bounds the latency objective (unit ms) or, without one, the second objective."""
    text = spec.strip()
    if text == "knee":
        return "knee", None, None
    method, _, rest = text.partition(":")
    if method != "best":
        raise DalpError(f"--pick {spec!r}: use knee, best, best:BUDGET or best:KEY<=VALUE")
    if not rest:
        return "best", None, None
    key, sep, value = rest.partition("<=")
    if not sep:
        key, value = "", rest
    try:
        bound = float(value)
    except ValueError:
        raise DalpError(f"--pick {spec!r}: {value!r} is not a number") from None
    return "best", key.strip() or None, bound


def _budget_objective(objectives: Sequence[Any], key: str | None) -> Any:
    if key is not None:
        for o in objectives:
            if o.key == key:
                return o
        raise DalpError(f"--pick: {key!r} is not an objective (choose from {', '.join(o.key for o in objectives)})")
    for o in objectives:
        if o.unit == "ms" and o.direction == "min":
            return o
    if len(objectives) < 2:
        raise DalpError("--pick best:BUDGET needs a second objective to bound")
    return objectives[1]


def pick_candidate(front: Sequence[EvalRecord], scoring: Any, spec: str) -> tuple[EvalRecord, str]:
    """Choose a candidate of ``front`` (feasible, non-dominated) by ``spec`` (see
    :func:`parse_pick`); returns it and one line saying why.

    ``knee``: pymoo's high trade-off point (:class:`pymoo.mcdm.high_tradeoff.HighTradeoffPoints`)
    on the objectives normalised by the run's ideal and reference point; when it finds none (or
    several) the point nearest the ideal (Euclidean, normalised) among its answer (or the whole
    front) is taken. ``best``: the best on the first objective; ``best:BUDGET``: the same among
    candidates whose bounded objective is <= BUDGET (natural units; ms for latency)."""
    import numpy as np

    if not front:
        raise DalpError("--pick: the run has no feasible candidate on its front")
    objectives = scoring.objectives
    method, key, bound = parse_pick(spec)
    if method == "best":
        pool = list(front)
        why = f"best {objectives[0].name}"
        if bound is not None:
            o = _budget_objective(objectives, key)
            pool = [r for r in front if o.natural(r.metrics.get(o.key)) <= bound]
            why += f" with {o.key} <= {bound:g}{' ' + o.unit if o.unit not in ('', 'fraction') else ''}"
            if not pool:
                best_value = min(o.natural(r.metrics.get(o.key)) for r in front)
                raise DalpError(f"--pick {spec}: no front candidate has {o.key} <= {bound:g} "
                                f"(the smallest is {best_value:.4g})")
        return min(pool, key=lambda r: r.objectives(objectives)[0]), why
    F = np.array([[o.normalised(r.metrics.get(o.key), scoring.reference_point[o.key]) for o in objectives]
                  for r in front], dtype=float)
    candidates = list(range(len(front)))
    how = "nearest the ideal point (normalised objectives)"
    if len(front) >= 3 and len(objectives) >= 2:
        from pymoo.mcdm.high_tradeoff import HighTradeoffPoints

        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            found = HighTradeoffPoints().do(F)
        if found is not None and len(found):
            candidates = [int(i) for i in np.atleast_1d(found)]
            how = ("pymoo high trade-off point" if len(candidates) == 1
                   else f"pymoo high trade-off points ({len(candidates)}), the one nearest the ideal")
        else:
            how = "no pronounced pymoo high trade-off point; " + how
    else:
        how = f"front of {len(front)}: too small for trade-off analysis; " + how
    i = min(candidates, key=lambda k: float(np.linalg.norm(F[k])))
    return front[i], f"knee: {how}"


def _profile_description(cfg: RunConfig) -> dict[str, Any]:
    train = cfg.sections.get("train")
    name = getattr(train, "profile", None)
    if name is None:
        return {}
    from dalp_moo.precision import get_profile

    options = dict(getattr(train, "profile_options", {}) or {})
    return {"name": name, "options": options, "regime": getattr(train, "regime", None),
            "switches": get_profile(name, **options).to_dict()}


def _input_norm(model: torch.nn.Module) -> dict[str, Any] | None:
    from dalp_moo.model.unet import InputNorm

    for m in model.modules():
        if isinstance(m, InputNorm):
            buffers = m.state_dict()
            return {"shift": buffers["shift"].flatten().tolist(), "scale": buffers["scale"].flatten().tolist(),
                    "formula": "(x - shift) * scale, per band, inside the network"}
    return None


def export_candidate(run_dir: str | Path, arch_id: str, out: str | Path) -> dict[str, Any]:
    """Export one evaluated candidate of a run for deployment into the folder ``out``::

        <arch_id>.xml + .bin   OpenVINO IR, FP16 weights, batch 1 (input normalisation included)
        <arch_id>_int8.xml     runs deployed in INT8 only: the quantised IR they were measured on
        <arch_id>.pt           torch state dict (tensors only: torch.load(..., weights_only=True))
        config.toml            the run's resolved config (rebuilds the architecture)
        model_card.json        genome, description, objectives (natural units, how obtained),
                               all metrics, numerics profile, data normalisation, input/output,
                               backend, software versions, files, the export check

    The IR is read back by OpenVINO and run on one validation tile against the torch model
    (FP32 inference precision); the relative error is recorded in the card (``check``).
    Returns the card."""
    from dalp_moo.backends.openvino_backend import convert, core, save_ir
    from dalp_moo.evaluation.artifacts import check_arch_id
    from dalp_moo.results.run_folder import RunFolder, atomic_write_text
    from dalp_moo.results.view import objective_tag

    check_arch_id(arch_id)
    folder = RunFolder.open(run_dir)
    cfg = folder.config()
    records = {r.arch_id: r for r in folder.records()}
    record = records.get(arch_id)
    if record is None:
        raise DalpError(f"candidate {arch_id} is not in {folder.journal.path}")
    if not record.ok:
        raise DalpError(f"candidate {arch_id}: its evaluation {record.status} ({record.reason}); nothing to export")
    store = ArtifactStore(folder.path)
    if not (store.weights_dir / f"{arch_id}.pt").is_file():
        raise DalpError(f"candidate {arch_id}: no stored weights in {store.weights_dir} (problem {cfg.problem} "
                        "stores none, or the run predates weight storage)")
    evaluator = get_evaluator(cfg)
    if not hasattr(evaluator, "build") or not hasattr(evaluator, "input_shape"):
        raise DalpError(f"problem {cfg.problem}: its evaluator cannot rebuild candidates for export")
    weights = store.weights(arch_id)
    _, model = evaluator.build(list(record.genome))
    model.load_state_dict(weights)
    model.eval()
    out_dir = Path(out)
    out_dir.mkdir(parents=True, exist_ok=True)
    example = torch.zeros(evaluator.input_shape)
    ov_model = convert(model, example)
    xml = save_ir(ov_model, out_dir / arch_id)
    xml_int8 = save_ir(quantised_ir(ov_model, evaluator), out_dir / f"{arch_id}_int8") \
        if _int8_deployment(evaluator) else None
    state_path = out_dir / f"{arch_id}.pt"
    torch.save({k: v.detach().cpu().clone() for k, v in model.state_dict().items()}, state_path)
    atomic_write_text(out_dir / "config.toml", folder.config_path.read_text())

    # the check: OpenVINO reads the IR back and agrees with torch on a validation tile
    val = getattr(evaluator, "val_set", None)
    tile = val[0][0].unsqueeze(0) if val is not None and len(val) else torch.rand(evaluator.input_shape)
    with torch.no_grad():
        ref = model(tile.float()).numpy()
    compiled = core().compile_model(core().read_model(str(xml)), "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
    got = compiled(tile.numpy())[0]
    scale = float(abs(ref).max()) or 1.0
    rel = float(abs(got - ref).max()) / scale
    if rel > CHECK_TOLERANCE:
        logger.warning("export check of %s: IR and torch outputs differ by %.3g (relative)", arch_id, rel)

    meta = folder.meta()
    scoring = folder.scoring(cfg)
    all_records = list(records.values())
    objectives = [{"name": o.name, "key": o.key, "direction": o.direction, "unit": o.unit,
                   "value": record.metrics.get(o.key), "obtained": objective_tag(o, all_records) or "counted"}
                  for o in scoring.objectives]
    card = {
        "format": CARD_FORMAT,
        "arch_id": arch_id,
        "application": {"name": cfg.problem, "version": cfg.application.version},
        "description": record.description,
        "genome": list(record.genome),
        "objectives": objectives,
        "metrics": record.metrics,
        "emulated": record.emulated,
        "numerics_profile": _profile_description(cfg),
        "data_normalisation": {"config": meta.get("input_normalization"), "in_network": _input_norm(model)},
        "input": {"shape": list(evaluator.input_shape), "dtype": "float32", "layout": "NCHW",
                  "bands": (meta.get("data") or {}).get("band_names"),
                  "value_range": (meta.get("data") or {}).get("value_range")},
        "output": {"shape": list(ref.shape), "meaning": "class logits per pixel (argmax over classes)"},
        "backend": meta.get("backend"),
        "run": {"folder": str(folder.path), "config_hash": record.config_hash, "seed": cfg.search.seed,
                "generation": record.generation, "evaluated_at": record.ended_at},
        "software": meta.get("versions"),
        "files": {"ir": xml.name, "ir_weights": xml.with_suffix(".bin").name, "state_dict": state_path.name,
                  "config": "config.toml",
                  **({"ir_int8": xml_int8.name, "ir_int8_note": "the deployed model: NNCF post-training INT8 "
                      "from the run's calibration tiles (the check below is on the FP32 IR)"} if xml_int8 else {})},
        "check": {"what": "OpenVINO CPU (f32 inference precision) on the IR vs torch FP32, one validation tile",
                  "max_relative_error": rel, "tolerance": CHECK_TOLERANCE, "ok": rel <= CHECK_TOLERANCE},
        "reload": {"openvino": f"openvino.Core().compile_model('{xml.name}', 'CPU')",
                   "torch": "dalp_moo.results.export.load_exported(FOLDER)"},
    }
    atomic_write_text(out_dir / CARD_FILE, json.dumps(card, indent=2, default=str))
    logger.info("exported %s to %s (IR check: relative error %.2g)", arch_id, out_dir, rel)
    return card


def load_exported(folder: str | Path) -> torch.nn.Module:
    """Rebuild the torch module of an export folder (its config.toml and model card) and load
    its state dict (``weights_only=True``)."""
    from dalp_moo.config import load_config

    folder = Path(folder)
    try:
        card = json.loads((folder / CARD_FILE).read_text())
    except (OSError, ValueError) as exc:
        raise DalpError(f"export folder {folder}: no readable {CARD_FILE} ({exc})") from exc
    cfg = load_config(path=folder / card["files"]["config"])
    evaluator = get_evaluator(cfg)
    _, model = evaluator.build(list(card["genome"]))
    state = torch.load(folder / card["files"]["state_dict"], map_location="cpu", weights_only=True)
    model.load_state_dict(state)
    return model.eval()

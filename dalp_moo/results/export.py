"""Export of the Pareto front for deployment: OpenVINO IR with FP16 weights per candidate.

    ir/<arch_id>.xml + .bin     the deployed network (input normalisation included), batch 1

The IR is the format the Myriad X plugin consumed; ``benchmark_app -m ir/<id>.xml`` or
``openvino.Core().compile_model`` runs it.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch

from dalp_moo.config import RunConfig
from dalp_moo.errors import DalpError
from dalp_moo.evaluation.artifacts import ArtifactStore
from dalp_moo.evaluation.evaluator import get_evaluator
from dalp_moo.evaluation.record import EvalRecord
from dalp_moo.log import logger


def export_front_ir(run_dir: str | Path, cfg: RunConfig, front: Sequence[EvalRecord]) -> list[Path]:
    """Write the IR of every front candidate whose weights are stored; returns the .xml paths.
    A candidate that cannot be exported is logged and skipped (the run's results stay intact)."""
    from dalp_moo.backends.openvino_backend import convert, save_ir

    store = ArtifactStore(run_dir)
    evaluator = get_evaluator(cfg)
    paths = []
    for record in front:
        try:
            _, model = evaluator.build(list(record.genome))
            model.load_state_dict(store.weights(record.arch_id))
            example = torch.zeros(evaluator.input_shape)
            paths.append(save_ir(convert(model.eval(), example), Path(run_dir) / "ir" / record.arch_id))
        except (DalpError, RuntimeError, OSError) as exc:
            logger.warning("IR export of %s failed: %s", record.arch_id, str(exc).splitlines()[0])
    return paths

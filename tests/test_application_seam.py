"""The application seam, proven: a second application defined here -- a real (tiny) MLP
classification search on generated data -- registered through the registry and searched end to
end by the generic framework, with no framework file changed for it."""

from __future__ import annotations

import hashlib
import json
import pickle
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn

from dalp_moo import applications
from dalp_moo.application import (
    Application,
    CandidateEvaluator,
    Constraint,
    Objective,
    SearchSpaceProtocol,
    constraint_values,
    feasible,
)
from dalp_moo.config import check, load_config, to_toml
from dalp_moo.errors import ConfigError
from dalp_moo.evaluation.record import STATUS_FAILED, STATUS_INFEASIBLE, EvalRecord
from dalp_moo.training import torch_threads

WIDTHS = (2, 4, 8, 16, 32)
ACTS = ("relu", "tanh")
MAX_LAYERS = 3


@dataclass(frozen=True)
class ToyConfig:
    """The toy's own section: generated data and training."""

    samples: int = 240  #: points over train (2/3) and validation (1/3)
    features: int = 6
    classes: int = 3
    epochs: int = 60  #: full-batch Adam steps
    lr: float = 0.05

    def __post_init__(self) -> None:
        check(self.samples >= 30, "toy.samples", "must be >= 30")


@dataclass(frozen=True)
class ToyConstraints:
    max_params: int = 600  #: parameters


@dataclass(frozen=True)
class MLPArch:
    genome: tuple[int, ...]
    widths: tuple[int, ...]
    activation: str

    @property
    def arch_id(self) -> str:
        return hashlib.sha1(",".join(map(str, self.genome)).encode()).hexdigest()[:12]

    def describe(self) -> str:
        return f"mlp {'-'.join(map(str, self.widths))} {self.activation}"


class MLPSpace:
    """Genome ``[n_layers - 1, width_0, width_1, width_2, activation]`` (indices)."""

    def __init__(self, features: int, classes: int) -> None:
        self.features, self.classes = features, classes
        self.xl = np.zeros(2 + MAX_LAYERS, dtype=int)
        self.xu = np.array([MAX_LAYERS - 1, *[len(WIDTHS) - 1] * MAX_LAYERS, len(ACTS) - 1])

    @property
    def n_var(self) -> int:
        return len(self.xu)

    def canonical(self, genome: Any) -> np.ndarray:
        g = np.clip(np.rint(np.asarray(genome, dtype=float)), self.xl, self.xu).astype(int)
        g[2 + g[0]:1 + MAX_LAYERS] = 0  # widths of absent layers
        return g

    def canonical_batch(self, X: Any) -> np.ndarray:
        return np.array([self.canonical(x) for x in np.atleast_2d(X)])

    def decode(self, genome: Any) -> MLPArch:
        g = self.canonical(genome)
        return MLPArch(tuple(int(v) for v in g), tuple(WIDTHS[i] for i in g[1:2 + g[0]]), ACTS[g[-1]])

    def sample(self, n: int, rng: np.random.Generator) -> np.ndarray:
        return rng.integers(self.xl, self.xu + 1, size=(n, self.n_var))

    def repair(self, genome: Any) -> np.ndarray:
        return self.canonical(genome)

    def static_metrics(self, genome: Any) -> dict[str, int]:
        return {"params": count(self.decode(genome), self.features, self.classes)}


def build(arch: MLPArch, features: int, classes: int) -> nn.Module:
    layers: list[nn.Module] = []
    width = features
    for w in arch.widths:
        layers += [nn.Linear(width, w), nn.ReLU() if arch.activation == "relu" else nn.Tanh()]
        width = w
    return nn.Sequential(*layers, nn.Linear(width, classes))


def count(arch: MLPArch, features: int, classes: int) -> int:
    return sum(p.numel() for p in build(arch, features, classes).parameters())


@dataclass(frozen=True)
class HostInfo:
    name: str = "host-fp32"
    emulated: bool = False  # accuracy measured on this host, nothing emulated


class ToyEvaluator:
    """Generates the data once per process; trains and scores MLPs for real."""

    backend_info = HostInfo()

    def __init__(self, cfg: Any, space: MLPSpace) -> None:
        self.cfg, self.space, t = cfg, space, cfg.toy
        rng = np.random.default_rng(cfg.search.seed)
        centres = rng.normal(0, 2.0, size=(t.classes, t.features))
        y = rng.integers(0, t.classes, size=t.samples)
        x = centres[y] + rng.normal(0, 1.0, size=(t.samples, t.features))
        n_train = 2 * t.samples // 3
        self.x_train, self.y_train = torch.tensor(x[:n_train], dtype=torch.float32), torch.tensor(y[:n_train])
        self.x_val, self.y_val = torch.tensor(x[n_train:], dtype=torch.float32), torch.tensor(y[n_train:])
        self.config_hash = cfg.evaluation_hash()

    def describe(self) -> dict:
        return {"backend": {"name": self.backend_info.name, "emulated": False},
                "data": {"train": len(self.y_train), "val": len(self.y_val), "generator": "gaussian blobs"}}

    def evaluate(self, genome: Any) -> tuple[EvalRecord, dict | None]:
        arch = self.space.decode(genome)
        metrics: dict[str, Any] = dict(self.space.static_metrics(genome))
        base = dict(arch_id=arch.arch_id, genome=arch.genome, description=arch.describe(),
                    config_hash=self.config_hash, backend=self.backend_info.name, emulated=False)
        cap = self.cfg.constraints.max_params
        if metrics["params"] > cap:
            return EvalRecord(status=STATUS_INFEASIBLE, reason=f"params > {cap}", metrics=metrics, **base), None
        torch.manual_seed(int(arch.arch_id[:8], 16))
        model = build(arch, self.cfg.toy.features, self.cfg.toy.classes)
        opt = torch.optim.Adam(model.parameters(), lr=self.cfg.toy.lr)
        with torch_threads(1):  # tiny tensors: threads only add overhead
            for _ in range(self.cfg.toy.epochs):
                opt.zero_grad()
                nn.functional.cross_entropy(model(self.x_train), self.y_train).backward()
                opt.step()
            with torch.no_grad():
                accuracy = float((model(self.x_val).argmax(1) == self.y_val).float().mean())
        metrics["accuracy"] = accuracy
        return EvalRecord(metrics=metrics, **base), {"weights": model.state_dict()}


class ToyClassification(Application):
    name = "toy-classification"
    version = "1"
    sections = {"toy": ToyConfig}
    constraints_section = ToyConstraints
    table_columns = ("accuracy", "params")

    def space(self, cfg: Any) -> MLPSpace:
        return MLPSpace(cfg.toy.features, cfg.toy.classes)

    def objectives(self, cfg: Any) -> tuple[Objective, ...]:
        return (Objective("validation accuracy", "accuracy", "max", "fraction", worst=0.0, ideal=1.0),
                Objective("parameters", "params", "min", "parameters", worst=1e9, ideal=0.0))

    def constraints(self, cfg: Any) -> tuple[Constraint, ...]:
        return (Constraint("parameter cap", "params", cfg.constraints.max_params, "parameters"),)

    def reference_point(self, cfg: Any) -> dict[str, float]:
        return {"accuracy": 0.0, "params": float(cfg.constraints.max_params)}

    def evaluator(self, cfg: Any) -> ToyEvaluator:
        return ToyEvaluator(cfg, self.space(cfg))

    def validate(self, cfg: Any) -> None:
        if cfg.toy.classes > cfg.toy.samples // 10:
            raise ConfigError("config value toy.classes: too many classes for toy.samples")


TOY = ToyClassification()


@pytest.fixture
def toy():
    applications.register(TOY.name, TOY)
    yield TOY
    applications.unregister(TOY.name)


def toy_config(**search: Any):
    values = {"search": {"population": 6, "generations": 2, **search}}
    return load_config(problem="toy-classification", overrides=[values])


def test_registry_lists_and_rejects(toy):
    assert applications.available()["toy-classification"] == "1"
    assert applications.available()["vessel-segmentation"] == "2"
    with pytest.raises(ConfigError, match="unknown problem 'toy-clasification' \\(did you mean 'toy-classification'"):
        applications.get("toy-clasification")


def test_config_of_the_toy(toy, tmp_path):
    cfg = toy_config()
    assert cfg.problem == "toy-classification" and cfg.preset == "" and cfg.toy == ToyConfig()
    assert isinstance(cfg.constraints, ToyConstraints) and not hasattr(cfg, "train")
    path = tmp_path / "c.toml"
    path.write_text(to_toml(cfg))
    assert load_config(path=path) == cfg  # the problem key comes back from the file
    with pytest.raises(ConfigError, match="unknown config key section 'train'"):
        load_config(problem="toy-classification", overrides=[{"train": {"epochs": 2}}])
    with pytest.raises(ConfigError, match="toy.classes"):
        load_config(problem="toy-classification", overrides=[{"toy": {"classes": 9, "samples": 40}}])
    assert cfg.evaluation_hash() != load_config("smoke").evaluation_hash()


def test_toy_parts_follow_the_protocols(toy):
    cfg = toy_config()
    space = toy.space(cfg)
    assert isinstance(space, SearchSpaceProtocol)
    assert isinstance(toy.evaluator(cfg), CandidateEvaluator)
    cons = toy.constraints(cfg)
    big = EvalRecord("a" * 12, (0,), metrics={"params": 10_000, "accuracy": 0.9})
    failed = EvalRecord("b" * 12, (0,), status=STATUS_FAILED, metrics={"params": 10})
    assert constraint_values(big, cons) == [10_000 - 600] and not feasible(big, cons)
    assert constraint_values(failed, cons) == [1.0] and not feasible(failed, cons)


def test_toy_search_end_to_end(toy, tmp_path):
    from dalp_moo.search import run_search

    cfg = toy_config()
    out = run_search(cfg, tmp_path / "toy")
    folder = tmp_path / "toy"
    lines = [json.loads(line) for line in (folder / "journal.jsonl").read_text().splitlines()]
    assert len(lines) == len(out.records) >= 6
    assert all(d["format"] == 2 and d["application"] == "toy-classification" for d in lines)
    assert [d["eval_index"] for d in lines] == list(range(len(lines)))
    assert {d["generation"] for d in lines} == {0, 1}
    ok = [r for r in out.records if r.ok]
    assert ok and all(r.metrics["params"] <= 600 for r in out.front)
    # trained for real: the best network separates the blobs far above chance (1/3)
    assert max(r.metrics["accuracy"] for r in ok) > 0.6
    summary = json.loads((folder / "summary.json").read_text())
    assert summary["best_objective"] == "accuracy" and summary["front_size"] == len(out.front) >= 1
    assert summary["hypervolume_reference"] == {"accuracy": 0.0, "params": 600.0}
    assert 0 < summary["hypervolume"] <= 1 and summary["emulated"] is False
    table = pd.read_csv(folder / "evaluations.csv")
    assert {"accuracy", "params", "generation", "eval_index"} <= set(table.columns)
    assert (folder / "pareto.png").stat().st_size > 5000
    meta = json.loads((folder / "meta.json").read_text())
    assert meta["application"] == {"name": "toy-classification", "version": "1"}
    assert meta["data"]["generator"] == "gaussian blobs"
    assert (folder / "weights").is_dir()


def test_toy_problem_with_plain_pymoo(toy):
    from pymoo.algorithms.moo.nsga2 import NSGA2
    from pymoo.optimize import minimize

    from dalp_moo.problem import ApplicationProblem
    from dalp_moo.search import integer_operators

    problem = ApplicationProblem(toy_config())
    assert (problem.n_obj, problem.n_ieq_constr) == (2, 1)
    res = minimize(problem, NSGA2(pop_size=4, **integer_operators(problem.space)), ("n_gen", 2), seed=3,
                   verbose=False)
    assert np.issubdtype(np.atleast_2d(res.X).dtype, np.integer)
    assert len(pickle.dumps(problem)) < 20_000

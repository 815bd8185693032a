"""One candidate -> objectives (:class:`Evaluator`), and populations -> records with cache,
journal and executors (:class:`EvaluationService`)."""

from dalp_moo.evaluation.evaluator import Evaluator, evaluate_genome, get_evaluator
from dalp_moo.evaluation.journal import Journal
from dalp_moo.evaluation.record import EvalRecord
from dalp_moo.evaluation.service import EvaluationService, SerialExecutor

__all__ = ["EvalRecord", "EvaluationService", "Evaluator", "Journal", "SerialExecutor",
           "evaluate_genome", "get_evaluator"]

"""One candidate -> record (the application's evaluator, wrapped by :func:`evaluate_task`), and
populations -> records with cache, journal and executors (:class:`EvaluationService`)."""

from dalp_moo.evaluation.evaluator import evaluate_genome, evaluate_task, failed_record, get_evaluator, get_space
from dalp_moo.evaluation.journal import Journal
from dalp_moo.evaluation.record import (
    FORMAT,
    STATUS_FAILED,
    STATUS_INFEASIBLE,
    STATUS_OK,
    STATUSES,
    EvalRecord,
)
from dalp_moo.evaluation.service import EvaluationService, SerialExecutor

__all__ = ["FORMAT", "STATUSES", "STATUS_FAILED", "STATUS_INFEASIBLE", "STATUS_OK", "EvalRecord",
           "EvaluationService", "Journal", "SerialExecutor", "evaluate_genome", "evaluate_task",
           "failed_record", "get_evaluator", "get_space"]

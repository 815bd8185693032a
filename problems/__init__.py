"""pymoo Problems of dalp_moo. Problems are thin: they hold a configuration, and an
evaluation service (excluded from pickling) does the heavy work."""

from problems.vessel_segmentation import VesselSegmentationProblem

__all__ = ["VesselSegmentationProblem"]

"""Applications of dalp_moo, one module each (``problems/<name>.py`` exposing ``APPLICATION``
and a thin pymoo Problem); :mod:`dalp_moo.applications` discovers them. Presets live in
``problems/presets/<module>/``."""

from problems.vessel_segmentation import VesselSegmentationProblem

__all__ = ["VesselSegmentationProblem"]

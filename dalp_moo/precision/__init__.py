"""FP16 deployment numerics: profiles, deployed-model emulation, deployment-aligned training,
regimes and diagnostics.

Public API::

    get_profile(name, **overrides) -> NumericsProfile       # 'ieee' | 'myriadx' | 'bf16'
    check_profile_backend(profile, backend, options)       # coherent profile/backend pair
    deploy_fp16(model, profile="myriadx") -> DeployedFP16  # eval-only emulated copy
    aligned_training(model, profile)  (context manager)    # FP16 forward + STE inside
    constrain(model, profile) -> nn.Module                 # same, as a wrapper
    run_regimes(...), diagnose(...), format_diagnostics(...)
"""

from dalp_moo.precision.diagnostics import diagnose, format_diagnostics
from dalp_moo.precision.emulate import (
    Constrained,
    DeployedFP16,
    aligned_context,
    aligned_training,
    constrain,
    deploy_fp16,
)
from dalp_moo.precision.numerics import (
    round_fp16,
    round_profile,
    ste_round_fp16,
    weights_analysis_shift,
)
from dalp_moo.precision.profiles import PROFILES, NumericsProfile, check_profile_backend, get_profile
from dalp_moo.precision.regimes import REGIMES, gap_recovered, run_regimes

__all__ = [
    "PROFILES", "REGIMES", "Constrained", "DeployedFP16", "NumericsProfile", "aligned_context",
    "aligned_training", "check_profile_backend",
    "constrain", "deploy_fp16", "diagnose", "format_diagnostics", "gap_recovered", "get_profile",
    "run_regimes", "round_fp16", "round_profile", "ste_round_fp16",
    "weights_analysis_shift",
]

"""Rules and harmlessness (Sparrow, Glaese et al. 2022; Bai et al. 2022): the rule set
(rules.py, rules.toml), the rule-violation classifier (rule_model.py), the harmlessness preference
model (harmless_pm.py), the reward that combines them with the support reward model
(combined.py) and the gate that makes the agent decline (gate.py).

This module stays light (no torch): the command line imports it to build its parsers."""
from __future__ import annotations

from pathlib import Path

WEIGHTS_DIR = Path(__file__).parent / "weights"
HARMLESS_PM_DIR = WEIGHTS_DIR / "harmless_pm"  # the trained heads ship in the repository (a few hundred KB)
RULES_CLF_DIR = WEIGHTS_DIR / "rules"

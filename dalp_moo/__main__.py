"""``python -m dalp_moo``."""

from dalp_moo.cli import main

main(prog_name="python -m dalp_moo")

"""``python -m evoagent.cli``: the ``evoagent`` command."""
from evoagent.cli import main

main()
